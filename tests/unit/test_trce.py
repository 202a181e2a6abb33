"""TRCE's pieces: which token states stage 1 edits, and the contrastive hinge of stage 2."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from erasekit.concepts import Concept
from erasekit.erasure import get_method, make_config
from erasekit.errors import UserError
from erasekit.methods.trce import hinge, trigger_keys
from erasekit.pipelines import encode

CONCEPT = Concept("skull", target=("skull",), templates=("a red {} on a plain background", "{}"),
                  preserve=("a blue star on dots",))


def test_trigger_keys_pick_sot_first_eot_last_and_concept(tiny_sd):
    erase, guide = encode(tiny_sd, CONCEPT.erase_prompts()), encode(tiny_sd, CONCEPT.guide_prompts())
    c, g = trigger_keys(erase, guide, (0.0, 1.0, 0.0, 0.0))  # TRCE's default: the first [EoT] only
    assert c.shape[0] == len(CONCEPT.erase_prompts())
    first_eot = [int(n) - 1 for n in erase.lengths]
    torch.testing.assert_close(c, torch.stack([erase.states[k, i] for k, i in enumerate(first_eot)]))
    c4, _ = trigger_keys(erase, guide, (4.0, 0.0, 0.0, 0.0))  # weight 4 -> rows scaled by 2
    torch.testing.assert_close(c4, 2 * erase.states[:, 0])
    every, _ = trigger_keys(erase, guide, (1.0, 1.0, 1.0, 1.0))
    assert every.shape[0] == sum(3 + 1 for _ in CONCEPT.erase_prompts())  # "skull" is one token here


@settings(max_examples=40, deadline=None)
@given(st.floats(0, 1), st.floats(0.1, 5), st.integers(0, 2**16))
def test_hinge_is_zero_once_the_prediction_is_closer_to_the_positive_by_the_margin(margin, beta, seed):
    gen = torch.Generator().manual_seed(seed)
    pos, neg = torch.randn(2, 3, 4, 4, generator=gen)
    assert float(hinge(pos, pos, neg, beta, margin)) == pytest.approx(
        max(0.0, beta * (0 - float(((pos - neg) ** 2).mean()) + margin)), abs=1e-5)
    assert float(hinge(neg, pos, neg, beta, margin)) > 0  # at the negative: always penalised


def test_stage_one_only_edits_just_the_kv_and_bad_weights_are_one_line(tiny_sd):
    erasure = get_method("trce").fit(tiny_sd, CONCEPT, make_config("trce", {"iterations": 0}), progress=False)
    assert erasure.tensors and all(".attn2.to_k." in k or ".attn2.to_v." in k for k in erasure.tensors)
    with pytest.raises(UserError, match="token_weights"):
        make_config("trce", {"token_weights": [0, 0, 0, 0]})
