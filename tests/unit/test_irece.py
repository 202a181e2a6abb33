"""IRECE: its attention map is the layers' real attention, its mask and re-noising do what the
method says, an empty mask changes nothing, and it stacks on a UCE weight edit and comes off exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from erasekit.concepts import Concept
from erasekit.erasure import get_method, make_config
from erasekit.attention import recorded_cross_attention
from erasekit.methods.irece import concept_map, concept_mask, concept_tokens, renoised
from erasekit.pipelines import encode

CONCEPT = Concept(name="skull", target=("skull",), templates=("a {}", "a red {} on a plain background"),
                  preserve=("a red circle on a plain background",))
PROMPTS = ["a red skull on a plain background", "a blue star on polka dots"]


@pytest.fixture(scope="module")
def tiny_sd():
    from erasekit.tiny import tiny_sd_pipeline

    return tiny_sd_pipeline()


def _images(pipe, steps: int = 4, guidance: float = 3.0) -> np.ndarray:
    gens = [torch.Generator().manual_seed(i) for i in range(len(PROMPTS))]
    return pipe(PROMPTS, num_inference_steps=steps, guidance_scale=guidance, generator=gens, output_type="np").images


def _state(pipe) -> dict[str, torch.Tensor]:
    return {f"{c}.{k}": v.clone() for c in ("unet", "text_encoder") for k, v in getattr(pipe, c).state_dict().items()}


def test_concept_map_from_recorded_attention(tiny_sd):
    """The map over every cross-attention layer, from one UNet call's recorded probabilities."""
    unet = tiny_sd.unet
    states, tokens = concept_tokens(tiny_sd, "skull")
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), recorded_cross_attention(unet) as maps:
        unet(x, 500, encoder_hidden_states=states.expand(2, -1, -1))
    amap = concept_map(maps, tokens, (8, 8))
    assert amap.shape == (2, 8, 8) and bool((amap >= 0).all()) and bool((amap <= 1 + 1e-6).all())
    # one layer by hand: its attention on the concept's tokens, mean over heads, at full size
    name = next(n for n in maps if maps[n][0].shape[2] == 64)
    one = concept_map({name: maps[name]}, tokens, (8, 8))
    torch.testing.assert_close(one, maps[name][0][..., tokens].sum(-1).mean(1).view(2, 8, 8))


@settings(max_examples=60, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**16), threshold=st.floats(0, 1), flat=st.booleans())
def test_mask_is_the_normalised_map_above_the_threshold(seed, threshold, flat):
    amap = torch.rand(3, 6, 5, generator=torch.Generator().manual_seed(seed))
    if flat:
        amap = torch.full_like(amap, 0.3)
    mask = concept_mask(amap, threshold)
    assert mask.shape == (3, 1, 6, 5) and mask.dtype == torch.bool
    if flat or threshold >= 1:
        assert not mask.any()
        return
    for b in range(3):
        lo, hi = amap[b].min(), amap[b].max()
        expected = (amap[b] - lo) / (hi - lo) > threshold
        assert torch.equal(mask[b, 0], expected)
        assert mask[b, 0].flatten()[amap[b].argmax()]  # the peak is always in
        assert torch.equal(concept_mask(amap, min(1.0, threshold + 0.1))[b] & ~mask[b], torch.zeros_like(mask[b]))


@settings(max_examples=40, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**16), strength=st.floats(0.01, 1), alpha=st.floats(0.01, 0.99))
def test_renoising_replaces_the_noise_part_inside_the_mask_only(seed, strength, alpha):
    g = torch.Generator().manual_seed(seed)
    x0, eps, xi = (torch.randn(2, 3, 4, 4, generator=g) for _ in range(3))
    mask = torch.rand(2, 1, 4, 4, generator=g) > 0.5
    a = torch.tensor(alpha)
    prev = a.sqrt() * x0 + (1 - a).sqrt() * eps
    out = renoised(prev, x0, a, mask, xi, strength)
    expected = a.sqrt() * x0 + (1 - a).sqrt() * ((1 - strength**2) ** 0.5 * eps + strength * xi)
    m = mask.expand_as(prev)
    torch.testing.assert_close(out[m], expected[m], rtol=1e-4, atol=1e-5)
    assert torch.equal(out[~m], prev[~m])


@pytest.mark.parametrize("which", ["tiny_sd", "testbed"])
def test_an_empty_mask_leaves_sampling_unchanged(which, tiny_sd, random_testbed):
    """threshold 1: the mask is always empty; the step wrapper and the extra UNet pass change nothing."""
    pipe = tiny_sd if which == "tiny_sd" else random_testbed
    base = _images(pipe)
    off = get_method("irece").fit(pipe, CONCEPT, make_config("irece", {"threshold": 1.0}), progress=False)
    with off.applied(pipe):
        np.testing.assert_array_equal(_images(pipe), base)
    on = get_method("irece").fit(pipe, CONCEPT, make_config("irece"), progress=False)
    with on.applied(pipe):
        assert np.abs(_images(pipe) - base).max() > 0
    np.testing.assert_array_equal(_images(pipe), base)
    assert "step" not in vars(pipe.scheduler)


@pytest.mark.parametrize("which", ["tiny_sd", "testbed"])
def test_irece_stacks_on_uce_and_both_come_off_exactly(which, tiny_sd, random_testbed):
    pipe = tiny_sd if which == "tiny_sd" else random_testbed
    state, base = _state(pipe), _images(pipe)
    uce = get_method("uce").fit(pipe, CONCEPT, make_config("uce"), progress=False)
    irece = get_method("irece").fit(pipe, CONCEPT, make_config("irece"), progress=False)
    negative = get_method("negative_prompt").fit(pipe, CONCEPT, make_config("negative_prompt"), progress=False)
    uce.apply(pipe)
    uce_only = _images(pipe)
    with pytest.raises(ValueError, match="fitted on base weights"):  # a method that does not stack still checks
        negative.apply(pipe)
    irece.apply(pipe)  # no force: IRECE reads nothing fitted on the base weights
    both = _images(pipe)
    assert np.abs(both - uce_only).max() > 0
    irece.remove(pipe)
    np.testing.assert_array_equal(_images(pipe), uce_only)
    irece.apply(pipe)
    uce.remove(pipe)  # either order comes off
    irece.remove(pipe)
    np.testing.assert_array_equal(_images(pipe), base)
    after = _state(pipe)
    for k, v in state.items():
        torch.testing.assert_close(after[k], v, rtol=0, atol=0)
    assert "step" not in vars(pipe.scheduler)


def test_the_map_pass_is_conditioned_on_the_concept_words(tiny_sd):
    states, tokens = concept_tokens(tiny_sd, "skull, death's head")
    ids = encode(tiny_sd, ["skull, death's head"]).input_ids[0].tolist()
    words = tiny_sd.tokenizer.convert_ids_to_tokens([ids[i] for i in tokens])
    assert words == ["skull", "death", "'", "s", "head"]
    with pytest.raises(ValueError, match="no word tokens"):
        get_method("irece").fit(tiny_sd, CONCEPT, make_config("irece", {"concept_prompt": ", ,"}), progress=False)
