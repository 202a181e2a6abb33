"""RealEra's neighbour mining: inside the radius and the cosine band, only the concept's tokens move."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from erasekit.methods.realera import mined, perturbed


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 2**16), st.floats(0.2, 1.0), st.floats(0.5, 0.9))
def test_a_neighbour_is_within_the_radius_and_the_band(seed, radius, low):
    gen = torch.Generator().manual_seed(seed)
    e = torch.randn(32, generator=gen)
    high = min(0.999, low + 0.08)
    out = perturbed(e, radius, low, high, gen)
    assert float((out - e).norm()) <= radius * float(e.norm()) + 1e-5
    cos = float(F.cosine_similarity(e, out, dim=0))
    if (1 - radius ** 2) ** 0.5 <= high:  # the band is reachable within the radius: it is met
        assert max(low, (1 - radius ** 2) ** 0.5) - 1e-4 <= cos <= high + 1e-4


def test_mined_prompts_move_only_the_concept_tokens():
    gen = torch.Generator().manual_seed(0)
    states = torch.randn(2, 6, 16, generator=gen)
    tokens = torch.zeros(2, 6, dtype=torch.bool)
    tokens[0, 2] = tokens[1, 3:5] = True
    near = mined(states, tokens, 3, 0.5, 0.85, 0.98, gen)
    assert near.shape == (6, 6, 16)
    for j in range(6):
        k = j // 3
        moved = (near[j] - states[k]).abs().sum(-1) > 0
        assert torch.equal(moved, tokens[k])


def test_an_unreachable_band_is_one_line():
    import pytest

    from erasekit.erasure import make_config
    from erasekit.errors import UserError

    with pytest.raises(UserError, match="cannot reach cosines up to 0.9"):
        make_config("realera", {"radius": 0.1, "cos_high": 0.9, "cos_low": 0.5})
