"""FMN lowers the attention the concept's tokens receive in the UNet's cross-attention."""

from __future__ import annotations

import torch

from erasekit.attention import recorded_cross_attention
from erasekit.concepts import Concept
from erasekit.erasure import get_method, make_config
from erasekit.methods.fmn import attention_resteering_loss
from erasekit.methods.mace import concept_tokens
from erasekit.pipelines import encode

CONCEPT = Concept(name="skull", target=("skull",), templates=("a red {} on a plain background", "a {}"),
                  preserve=("a blue star on polka dots",))


def _concept_attention(pipe) -> float:
    erase, guide = encode(pipe, CONCEPT.erase_prompts()), encode(pipe, CONCEPT.guide_prompts())
    tokens = concept_tokens(erase, guide)
    g = torch.Generator().manual_seed(0)
    cfg = pipe.unet.config
    x = torch.randn(len(tokens), cfg.in_channels, cfg.sample_size, cfg.sample_size, generator=g)
    with torch.no_grad(), recorded_cross_attention(pipe.unet) as maps:
        pipe.unet(x, torch.full((len(tokens),), 500), encoder_hidden_states=erase.states)
    return float(attention_resteering_loss(maps, tokens))


def test_fmn_lowers_the_concept_tokens_attention(tiny_sd):
    before = _concept_attention(tiny_sd)
    config = make_config("fmn", {**get_method("fmn").test_config, "iterations": 10, "lr": 1e-2})
    erasure = get_method("fmn").fit(tiny_sd, CONCEPT, config, progress=False)
    with erasure.applied(tiny_sd):
        after = _concept_attention(tiny_sd)
    assert after < 0.8 * before
