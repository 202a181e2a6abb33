"""ItD and its sparse autoencoder: training lowers the reconstruction error, the contrast picks
features that fire on the concept's token, the gate leaves other prompts' embeddings untouched,
and ``erasekit sae train`` trains what ``--set sae=...`` uses (bad input: exit 2, one line)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from erasekit.cli import main
from erasekit.concepts import Concept
from erasekit.erasure import Erasure, get_method, make_config
from erasekit.methods.itd import layer_states, peak_activation
from erasekit.pipelines import encode
from erasekit.sae import SAE, SAEConfig, load_sae, normalised_mse, save_sae, train_sae

COLOURS = ("red", "blue", "green", "yellow")
SHAPES = ("circle", "square", "star", "triangle")
CONCEPT = Concept(name="skull", target=("skull",), templates=tuple(f"a {c} {{}} on a plain background" for c in COLOURS),
                  preserve=tuple(f"a {c} {s} on a plain background" for c in COLOURS for s in SHAPES))
FIT = {"n_dirs": 256, "k": 8, "sae_steps": 300, "n_features": 8}


def _sparse_data(n: int = 2000, d: int = 16, atoms: int = 32, active: int = 3) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    D = torch.randn(atoms, d, generator=g)
    codes = torch.zeros(n, atoms)
    idx = torch.stack([torch.randperm(atoms, generator=g)[:active] for _ in range(n)])
    codes.scatter_(1, idx, torch.rand(n, active, generator=g) + 0.5)
    return codes @ D + 0.3


def test_sae_training_lowers_the_reconstruction_error():
    x = _sparse_data()
    cfg = SAEConfig(n_dirs=64, k=4, steps=1, lr=3e-3)
    start = normalised_mse(train_sae(x, cfg, progress=False), x)
    trained = train_sae(x, cfg.replace(steps=600), progress=False)
    end = normalised_mse(trained, x)
    assert end < 0.5 * start and end < 0.25, (start, end)
    torch.testing.assert_close(trained.W_dec.norm(dim=0), torch.ones(64))  # unit decoder columns
    again = train_sae(x, cfg.replace(steps=600), progress=False)  # deterministic in its seed
    assert torch.equal(again.W_enc, trained.W_enc)


@settings(max_examples=30, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**16), k=st.integers(1, 12))
def test_topk_codes_are_sparse_and_non_negative(seed, k):
    g = torch.Generator().manual_seed(seed)
    sae = SAE.from_tensors({"W_enc": torch.randn(12, 5, generator=g), "b_enc": torch.randn(12, generator=g),
                            "W_dec": torch.randn(5, 12, generator=g), "b_pre": torch.randn(5, generator=g)}, k)
    z = sae.encode(torch.randn(7, 3, 5, generator=g))
    assert bool((z >= 0).all()) and bool(((z > 0).sum(-1) <= k).all())


def test_sae_file_round_trip(tmp_path):
    sae = train_sae(_sparse_data(200), SAEConfig(n_dirs=32, k=4, steps=5), progress=False)
    save_sae(sae, tmp_path / "s.safetensors", {"layer": 3})
    back, meta = load_sae(tmp_path / "s.safetensors")
    assert meta["layer"] == "3" and back.k == 4
    for name, t in sae.tensors().items():
        assert torch.equal(back.tensors()[name], t)
    (tmp_path / "bad.safetensors").write_bytes(b"not a tensor file")
    with pytest.raises(ValueError, match="not a sparse autoencoder"):
        load_sae(tmp_path / "bad.safetensors")
    with pytest.raises(ValueError, match="no sparse autoencoder"):
        load_sae(tmp_path / "missing.safetensors")


@pytest.fixture(scope="module")
def itd(random_testbed):
    return get_method("itd").fit(random_testbed, CONCEPT, make_config("itd", FIT), progress=False)


def test_the_contrast_picks_features_that_fire_on_the_concept_token(itd, random_testbed):
    sae = SAE.from_tensors(itd.adapter("sae."), itd.extra["k"])
    features = itd.tensors["adapter.features"]
    assert 0 < len(features) <= FIT["n_features"]
    layer = itd.extra["layer"]
    erase = layer_states(random_testbed, CONCEPT.erase_prompts(), layer)
    retain = layer_states(random_testbed, list(CONCEPT.preserve), layer)
    skull = random_testbed.tokenizer.convert_tokens_to_ids("skull")
    ids = encode(random_testbed, CONCEPT.erase_prompts()).input_ids
    at_token = torch.stack([erase[i, ids[i].tolist().index(skull)] for i in range(len(ids))])
    with torch.no_grad():
        on_token = sae.encode(at_token)[:, features]
    assert bool((on_token > 0).any(1).all())  # every erase prompt's concept token fires a chosen feature
    erase_act, retain_act = peak_activation(sae, erase)[features], peak_activation(sae, retain)[features]
    assert float(erase_act.sum()) > 3 * float(retain_act.sum())


def test_the_gate_leaves_other_prompts_untouched(itd, random_testbed):
    others = ["a blue star on polka dots", "a red circle on a plain background", "a green square"]
    concept = ["a red skull on a plain background"]
    before = encode(random_testbed, others + concept).states
    with itd.applied(random_testbed):
        after = encode(random_testbed, others + concept).states
    assert torch.equal(after[:3], before[:3])
    assert not torch.allclose(after[3], before[3])
    assert itd.extra["retain_gated"] <= 0.25
    assert torch.equal(encode(random_testbed, concept).states, before[3:])  # the hook is gone


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["sae", "train", "--out", "OUT"], "give the prompts to train on"),
        (["sae", "train", "--out", "DIR/sae.pt", "--concept", "heart"], "name a new .safetensors file"),
        (["sae", "train", "--out", "OUT", "--prompts", "MISSING"], "cannot read it"),
        (["sae", "train", "--out", "OUT", "--prompts", "EMPTY"], "holds no prompt"),
        (["sae", "train", "--out", "OUT", "--concept", "hart"], "did you mean 'heart'"),
        (["sae", "train", "--out", "OUT", "--concept", "heart", "--dirs", "8", "--k", "9"], "--k: must be in"),
        (["sae", "train", "--out", "OUT", "--concept", "heart", "--steps", "0"], "--steps: must be a positive"),
        (["sae", "train", "--out", "OUT", "--concept", "heart", "--layer", "9", "--steps", "1"], "--layer: the text"),
        (["sae", "train", "--out", "OUT", "--concept", "heart", "--weights", "MISSING"], "weights folder"),
    ],
)
def test_sae_train_bad_input_is_one_line_and_exit_2(argv, needle, tmp_path, capsys):
    (tmp_path / "empty.txt").write_text("\n  \n")
    subs = {"OUT": str(tmp_path / "sae.safetensors"), "MISSING": str(tmp_path / "missing"),
            "EMPTY": str(tmp_path / "empty.txt"), "DIR": str(tmp_path)}
    argv = [next((a.replace(k, v) for k, v in subs.items() if k in a), a) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("erasekit: error: "), err
    assert needle in err, err
    assert not (tmp_path / "sae.safetensors").exists()


def test_sae_train_then_erase_with_it(tmp_path, capsys):
    sae = tmp_path / "sae.safetensors"
    (tmp_path / "corpus.txt").write_text("a purple heart on a grid background\na pink star\n")
    argv = ["sae", "train", "--out", str(sae), "--prompts", str(tmp_path / "corpus.txt"), "--concept", "heart",
            "--dirs", "128", "--k", "8", "--steps", "100"]
    assert main(argv) == 0
    assert "saved to" in capsys.readouterr().out
    _, meta = load_sae(sae)
    assert meta["layer"] == "4" and meta["prompts"] == str(2 + 48 + 168)
    assert main(["sae", "train", "--out", str(sae), "--concept", "heart"]) == 2  # never overwrites
    capsys.readouterr()
    out = tmp_path / "art"
    assert main(["erase", "--concept", "heart", "--method", "itd", "--set", f"sae={sae}", "--set", "n_features=16",
                 "--out", str(out)]) == 0
    erasure = Erasure.load(out)
    assert sorted(erasure.adapter("sae.")) == ["W_dec", "W_enc", "b_enc", "b_pre"]
    assert erasure.extra["layer"] == 4 and len(erasure.tensors["adapter.features"]) > 0
    assert main(["erase", "--concept", "heart", "--method", "itd", "--set", f"sae={sae}", "--set", "layer=2",
                 "--out", str(tmp_path / "art2")]) == 2
    assert "trained on text-encoder layer 4" in capsys.readouterr().err
