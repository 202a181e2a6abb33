"""erasekit.attention: recorded cross-attention equals the UNet's own and leaves it as it was."""

from __future__ import annotations

import torch

from erasekit.attention import cross_attentions, recorded_cross_attention, token_mass


def test_recording_changes_nothing_and_restores_the_processors(tiny_sd):
    unet = tiny_sd.unet
    before = {n: m.processor for n, m in cross_attentions(unet).items()}
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    states = torch.randn(2, 16, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        plain = unet(x, 10, encoder_hidden_states=states).sample
        with recorded_cross_attention(unet) as maps:
            recorded = unet(x, 10, encoder_hidden_states=states).sample
            unet(x, 10, encoder_hidden_states=states)
    torch.testing.assert_close(recorded, plain, rtol=1e-5, atol=1e-5)
    assert {n: m.processor for n, m in cross_attentions(unet).items()} == before
    assert set(maps) == set(before) and all(len(calls) == 2 for calls in maps.values())
    for calls in maps.values():
        probs = calls[0]  # (batch, heads, pixels, tokens): each pixel's attention sums to one
        assert probs.shape[0] == 2 and probs.shape[-1] == 16
        torch.testing.assert_close(probs.sum(-1), torch.ones(probs.shape[:-1]))
        tokens = torch.zeros(2, 16, dtype=torch.bool)
        tokens[:, 3:5] = True
        mass = token_mass(probs, tokens)
        torch.testing.assert_close(mass, probs[..., 3:5].sum(-1).mean(1))


def test_processors_come_back_after_an_error(tiny_sd):
    unet = tiny_sd.unet
    before = {n: m.processor for n, m in cross_attentions(unet).items()}
    try:
        with recorded_cross_attention(unet):
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert {n: m.processor for n, m in cross_attentions(unet).items()} == before
