"""SPM's and CGCE's pieces on toy sizes: the anchor acceptance rule, the gate, the low-rank hooks
and their sum, the classifier's training and its refinement, and that prompts the gate keeps
closed get pixel-identical images."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from erasekit.concepts import Concept
from erasekit.erasure import get_method, make_config
from erasekit.methods.cgce import CGCEConfig, ConceptClassifier, Member, refine, train_classifier, training_prompts
from erasekit.methods.spm import Gate, acceptance, attach, multipliers, sample_anchors, token_overlap
from erasekit.pipelines import encode

SETTINGS = dict(deadline=None, derandomize=True, max_examples=40, suppress_health_check=[HealthCheck.too_slow])
CONCEPT = Concept(name="skull", target=("skull",), templates=("a {}", "a red {} on a plain background"),
                  preserve=("a red circle on a plain background", "a blue star on polka dots"))
CONCEPT_PROMPT, OTHER_PROMPT = "a red skull on a plain background", "a blue star on polka dots"


# -- SPM ------------------------------------------------------------------------------------------------
def test_anchor_acceptance_follows_one_minus_cosine():
    """Proposals in the plane have a uniform angle; kept with probability ``min(1, 1 - cos)``, the
    kept ones have mean cosine ``E[cos w] / E[w] = (-1/4) / (1 - 1/pi)`` with the concept."""
    concept = torch.tensor([[3.0, 4.0]])
    assert acceptance(concept, concept) == pytest.approx(0.0, abs=1e-12)
    assert acceptance(-concept, concept) == 1.0
    assert acceptance(torch.tensor([[4.0, -3.0]]), concept) == pytest.approx(1.0)
    anchors = sample_anchors(concept, 4000, torch.Generator().manual_seed(0))
    cos = torch.nn.functional.cosine_similarity(anchors.flatten(1), concept.flatten()[None])
    assert float(cos.mean()) == pytest.approx(-0.25 / (1 - 1 / np.pi), abs=0.03)


@settings(**SETTINGS)
@given(shape=st.tuples(st.integers(1, 6), st.integers(1, 8)), scale=st.floats(1e-3, 1e3), n=st.integers(0, 5),
       seed=st.integers(0, 2**16))
def test_anchors_have_the_concepts_shape_and_a_rescaled_norm(shape, scale, n, seed):
    concept = torch.randn(shape, generator=torch.Generator().manual_seed(seed)) * scale
    anchors = sample_anchors(concept, n, torch.Generator().manual_seed(seed))
    assert anchors.shape == (n, *shape)
    ratio = anchors.flatten(1).norm(dim=1) / concept.norm()
    assert bool(((ratio >= 0.8 - 1e-5) & (ratio <= 1.2 + 1e-5)).all())


@settings(**SETTINGS)
@given(prompt=st.frozensets(st.integers(0, 30), max_size=12), phrase=st.frozensets(st.integers(0, 30), max_size=6))
def test_token_overlap_is_the_share_of_the_phrase_in_the_prompt(prompt, phrase):
    value = token_overlap(prompt, phrase)
    assert 0 <= value <= 1
    assert value == (len(prompt & phrase) / len(phrase) if phrase else 0.0)
    assert token_overlap(prompt | phrase, phrase) == (1.0 if phrase else 0.0)


def test_gate_is_the_larger_of_cosine_and_token_overlap():
    phrase = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    states = torch.stack([phrase, torch.tensor([[0.0, 1.0], [0.0, 0.0]]), torch.tensor([[0.6, 0.8], [0.0, 0.0]]),
                          -phrase])
    ids = [frozenset({5}), frozenset({1, 2})]
    prompt_ids = [frozenset(), frozenset({1, 9}), None, frozenset()]
    gate = multipliers(states, phrase[None], [ids[1]], prompt_ids, threshold=0.0)
    # cosine 1; cosine 0 but half the phrase's tokens; cosine 0.6, tokens unknown; cosine -1 clipped to 0
    torch.testing.assert_close(gate, torch.tensor([1.0, 0.5, 0.6, 0.0]))
    # over several phrases the largest; below the threshold exactly 0
    two = multipliers(states, torch.stack([phrase, -phrase]), ids, [frozenset({5})] * 4, threshold=0.0)
    torch.testing.assert_close(two, torch.tensor([1.0, 1.0, 1.0, 1.0]))
    closed = multipliers(states, phrase[None], [ids[1]], prompt_ids, threshold=0.55)
    assert closed.tolist() == [1.0, 0.0, pytest.approx(0.6), 0.0]


@pytest.mark.parametrize("layer", [torch.nn.Linear(6, 5), torch.nn.Conv2d(6, 5, 1)], ids=["linear", "conv1x1"])
def test_gated_adapters_add_up_and_a_closed_gate_changes_nothing(layer):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn((3, 6) if isinstance(layer, torch.nn.Linear) else (3, 6, 2, 2), generator=gen)
    factors = [{"m.down": torch.randn(1, 6, generator=gen), "m.up": torch.randn(5, 1, generator=gen)} for _ in range(2)]
    gates = [Gate(), Gate()]
    base = layer(x).detach()
    removers = [attach({"m": layer}, f, 0.5, g) for f, g in zip(factors, gates)]
    assert torch.equal(layer(x), base)  # both gates closed: the adapters are skipped
    gates[0].value, gates[1].value = torch.tensor([1.0, 0.0, 0.3]), 2.0
    expected = base.clone()
    for f, g in zip(factors, (torch.tensor([1.0, 0.0, 0.3]), torch.tensor([2.0] * 3))):
        w = (f["m.up"] @ f["m.down"]) * 0.5
        delta = x @ w.T if x.dim() == 2 else torch.einsum("oi,bihw->bohw", w, x)
        expected += g.view(-1, *[1] * (x.dim() - 1)) * delta
    torch.testing.assert_close(layer(x), expected)
    for remove in removers:
        remove()
    assert torch.equal(layer(x), base)


def _images(pipe, prompts: list[str]) -> np.ndarray:
    gens = [torch.Generator().manual_seed(i) for i in range(len(prompts))]
    return pipe(prompts, num_inference_steps=3, guidance_scale=3.0, generator=gens, output_type="np").images


def test_two_spm_artifacts_combine(tiny_sd):
    star = Concept(name="star", target=("star",), templates=CONCEPT.templates)
    config = make_config("spm", get_method("spm").test_config)
    a, b = (get_method("spm").fit(tiny_sd, c, config, progress=False) for c in (CONCEPT, star))
    prompts = [CONCEPT_PROMPT, OTHER_PROMPT]
    base = _images(tiny_sd, prompts)
    with a.applied(tiny_sd):
        only_a = _images(tiny_sd, prompts)
        with b.applied(tiny_sd):
            both = _images(tiny_sd, prompts)
    assert np.abs(both - only_a).max() > 0
    np.testing.assert_array_equal(_images(tiny_sd, prompts), base)


# -- CGCE -----------------------------------------------------------------------------------------------
def test_training_prompts_keep_the_concepts_words_out_of_the_negatives():
    other = Concept(name="star", target=("star", "skull star"), templates=("a {} on dots",), preserve=("a skull",))
    positives, negatives = training_prompts(CONCEPT, [other])
    assert set(CONCEPT.erase_prompts()) <= set(positives) and "a skull on dots" in positives
    assert "a star on dots" in negatives and "a red star on a plain background" in negatives and "" in negatives
    assert not any("skull" in p for p in negatives)


@pytest.fixture(scope="module")
def classifier(tiny_sd):
    positives, negatives = training_prompts(CONCEPT, [])
    positives += [f"a {c} skull" for c in ("green", "blue", "big", "small")]
    negatives += [f"a {c} {s}" for c in ("green", "blue", "big") for s in ("star", "circle", "square")]
    states = encode(tiny_sd, positives + negatives).states
    labels = torch.cat([torch.ones(len(positives)), torch.zeros(len(negatives))])
    clf, losses = train_classifier(states, labels, CGCEConfig(iterations=150, batch=16))
    return clf, losses, states, labels


def test_classifier_training_reduces_its_loss(classifier):
    clf, losses, states, labels = classifier
    assert np.mean(losses[-15:]) < 0.5 * np.mean(losses[:15])
    assert float(((clf(states) > 0).float() == labels).float().mean()) == 1.0


def test_refinement_lowers_the_score_of_flagged_rows_only(classifier):
    clf, _, states, labels = classifier
    member = Member(clf, 0.5, 10, 0.05)
    refined, flagged = refine(states, [member])
    assert flagged.tolist() == (labels == 1).tolist()
    assert bool((clf(refined[flagged]) < clf(states[flagged]) - 1).all())
    assert torch.equal(refined[~flagged], states[~flagged])  # bit for bit


def test_refinement_sums_the_gradients_of_the_classifiers_that_flag(classifier):
    clf, _, states, _ = classifier
    never = ConceptClassifier(states.shape[-1], 8, 2).requires_grad_(False)
    torch.nn.init.constant_(never.out.bias, -50.0)  # flags nothing
    alone, _ = refine(states, [Member(clf, 0.5, 5, 0.05)])
    torch.testing.assert_close(refine(states, [Member(clf, 0.5, 5, 0.05), Member(never, 0.5, 5, 0.05)])[0], alone)
    twice, _ = refine(states, [Member(clf, 0.5, 5, 0.05), Member(clf, 0.5, 5, 0.05)])
    torch.testing.assert_close(twice, alone)  # the normalised step of 2 g is the step of g
    with torch.no_grad():
        both = torch.nn.functional.softplus(clf(twice)).sum()
    assert float(both) < float(torch.nn.functional.softplus(clf(states)).sum())


# -- closed gates: pixel-identical images ---------------------------------------------------------------
@pytest.mark.parametrize("method,overrides", [("spm", {"gate_threshold": 0.95}), ("cgce", {})])
def test_a_closed_gate_leaves_other_prompts_pixel_identical(method, overrides, pipe):
    """The unrelated prompt's images, alone and batched with a concept prompt, are bit-identical with
    the artifact applied; the concept prompt's change."""
    fitter = get_method(method)
    erasure = fitter.fit(pipe, CONCEPT, make_config(method, {**fitter.test_config, **overrides}), progress=False)
    alone, mixed = _images(pipe, [OTHER_PROMPT]), _images(pipe, [CONCEPT_PROMPT, OTHER_PROMPT])
    with erasure.applied(pipe):
        alone_after, mixed_after = _images(pipe, [OTHER_PROMPT]), _images(pipe, [CONCEPT_PROMPT, OTHER_PROMPT])
    np.testing.assert_array_equal(alone_after, alone)
    np.testing.assert_array_equal(mixed_after[1], mixed[1])
    assert np.abs(mixed_after[0] - mixed[0]).max() > 0


@pytest.mark.parametrize("method,key,value,says", [
    ("spm", "gate_threshold", 1.5, "must be in [0, 1]"), ("spm", "la_strength", -1.0, "0 turns latent anchoring off"),
    ("spm", "rank", 0, "integer >= 1"), ("cgce", "hidden", 30, "multiple of heads (4)"),
    ("cgce", "threshold", 1.0, "probability in (0, 1)"), ("cgce", "refine_lr", 0.0, "relative to the embedding's norm"),
])
def test_bad_configs_name_the_value_and_the_rule(method, key, value, says):
    with pytest.raises(ValueError) as err:
        make_config(method, {key: value})
    line = str(err.value)
    assert "\n" not in line and line.startswith(f"{key}: ") and says in line and str(value) in line
