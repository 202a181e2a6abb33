"""UCE's key-token choices against the official scripts' formulas, computed independently in
float64 on cross-attention layers of SD-1.4's shapes (320 x 768 and 640 x 768)."""

from __future__ import annotations

import pytest
import torch

from erasekit.concepts import Concept
from erasekit.erasure import get_method, make_config
from erasekit.pipelines import kv_layers

CONCEPT = Concept("thing", target=("skull", "death's head"), templates=("a {} on a wall", "{} in the rain"),
                  guide="cat", preserve=("a red star", "a dog on a wall", ""))
LAMB, ERASE, PRESERVE = 0.5, 1.0, 0.3


@pytest.fixture(scope="module")
def sd_shaped():
    from erasekit.tiny import tiny_sd_pipeline

    pipe = tiny_sd_pipeline(cross_attention_dim=768, block_out_channels=(320, 640))
    pipe.unet.to(torch.float64)
    pipe.text_encoder.to(torch.float64)
    return pipe


def _tokens(pipe, text: str) -> tuple[torch.Tensor, int]:
    """The prompt's encoder states (as SD's encode_prompt gives them) and its attention-mask sum."""
    tok = pipe.tokenizer(text, padding="max_length", max_length=pipe.tokenizer.model_max_length, truncation=True,
                         return_tensors="pt")
    with torch.no_grad():
        states = pipe.encode_prompt(text, "cpu", 1, False)[0][0]
    return states.double(), int(tok.attention_mask.sum())


def _solve(w0: torch.Tensor, pairs: list[tuple[torch.Tensor, torch.Tensor]],
           kept: list[torch.Tensor]) -> torch.Tensor:
    """Eq. 7 as the scripts code it: (lamb W + sum v* c^T + sum W r r^T)(lamb I + sum c c^T + sum r r^T)^-1."""
    mat1 = LAMB * w0
    mat2 = LAMB * torch.eye(w0.shape[1], dtype=torch.float64)
    for c, g in pairs:
        mat1 = mat1 + ERASE * torch.outer(w0 @ g, c)
        mat2 = mat2 + ERASE * torch.outer(c, c)
    for r in kept:
        mat1 = mat1 + PRESERVE * torch.outer(w0 @ r, r)
        mat2 = mat2 + PRESERVE * torch.outer(r, r)
    return mat1 @ torch.inverse(mat2)


def _official_current(pipe, w0):
    """trainscripts/uce_sd_erase.py: one key per prompt, index attention_mask.sum() - 2."""
    def last(text):
        states, n = _tokens(pipe, text)
        return states[n - 2]

    pairs = [(last(e), last(g)) for e, g in zip(CONCEPT.erase_prompts(), CONCEPT.guide_prompts())]
    return _solve(w0, pairs, [last(p) for p in CONCEPT.preserve])


def _official_2023(pipe, w0):
    """train-scripts/train_erase.py: from each prompt's last word token to the end, cut to the same
    count between erase and guide; every token of each preserved prompt."""
    pairs = []
    for e, g in zip(CONCEPT.erase_prompts(), CONCEPT.guide_prompts()):
        (se, ne), (sg, ng) = _tokens(pipe, e), _tokens(pipe, g)
        fe, fg = ne - 2, ng - 2
        far = max(fe, fg)
        old = se[fe:len(se) - max(0, far - fe)]
        new = sg[fg:len(sg) - max(0, far - fg)]
        pairs += list(zip(old, new))
    kept = [row for p in CONCEPT.preserve for row in _tokens(pipe, p)[0]]
    return _solve(w0, pairs, kept)


@pytest.mark.parametrize("tokens, official", [("last", _official_current), ("last_and_after", _official_2023)])
def test_each_official_selection_matches_its_script_in_float64(sd_shaped, tokens, official):
    layers = kv_layers(sd_shaped)
    shapes = {tuple(m.weight.shape) for m in layers.values()}
    assert {(320, 768), (640, 768)} <= shapes  # SD-1.4's cross-attention K/V shapes
    cfg = make_config("uce", {"tokens": tokens, "lamb": LAMB, "erase_scale": ERASE, "preserve_scale": PRESERVE})
    erasure = get_method("uce").fit(sd_shaped, CONCEPT, cfg, progress=False)
    assert len(erasure.tensors) == len(layers)
    for name, layer in layers.items():
        w0 = layer.weight.detach()
        want = official(sd_shaped, w0)
        got = erasure.tensors[f"{name}.weight"]
        assert got.dtype == torch.float64
        rel = float((got - want).abs().max() / want.abs().max())
        assert rel < 1e-10, (name, rel)


def test_the_three_selections_differ_and_a_bad_choice_is_one_line(sd_shaped):
    from erasekit.errors import UserError

    fits = {t: get_method("uce").fit(sd_shaped, CONCEPT, make_config("uce", {"tokens": t}), progress=False)
            for t in ("aligned", "last", "last_and_after")}
    keys = {t: f.extra["erase_keys"] for t, f in fits.items()}
    assert keys["last"] == len(CONCEPT.erase_prompts()) < keys["last_and_after"] < keys["aligned"]
    name = next(iter(fits["last"].tensors))
    assert not torch.allclose(fits["last"].tensors[name], fits["aligned"].tensors[name])
    with pytest.raises(UserError, match="tokens: must be one of aligned, last, last_and_after"):
        make_config("uce", {"tokens": "first"})
