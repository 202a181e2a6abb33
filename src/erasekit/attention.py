"""Cross-attention maps of a diffusers UNet, recorded through attention processors installed by a
context manager that puts the UNet's own processors back on exit.

The recording processor computes the attention probabilities explicitly (``softmax(q k^T / sqrt(d))``,
as diffusers' ``AttnProcessor`` does) so they can be read and differentiated: MACE's attention
loss and the cross-attention masks are built on them.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import torch


def cross_attentions(unet: torch.nn.Module) -> dict[str, Any]:
    """The UNet's cross-attention modules (``...attn2``), by name."""
    return {name: m for name, m in unet.named_modules() if name.endswith("attn2") and hasattr(m, "set_processor")}


class RecordingProcessor:
    """Cross-attention that stores its probabilities ``(batch, heads, pixels, tokens)`` in ``store[name]``."""

    def __init__(self, name: str, store: dict[str, list[torch.Tensor]]) -> None:
        self.name, self.store = name, store

    def __call__(self, attn: Any, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, temb: torch.Tensor | None = None, **_: Any) -> torch.Tensor:
        residual = hidden_states
        shape = hidden_states.shape
        if hidden_states.ndim == 4:  # (B, C, H, W) -> (B, HW, C)
            hidden_states = hidden_states.flatten(2).transpose(1, 2)
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        batch = hidden_states.shape[0]
        query = attn.head_to_batch_dim(attn.to_q(hidden_states))
        key = attn.head_to_batch_dim(attn.to_k(context))
        value = attn.head_to_batch_dim(attn.to_v(context))
        probs = attn.get_attention_scores(query, key, None)  # (B * heads, pixels, tokens)
        self.store.setdefault(self.name, []).append(probs.reshape(batch, -1, *probs.shape[1:]))
        out = attn.batch_to_head_dim(torch.bmm(probs, value))
        out = attn.to_out[1](attn.to_out[0](out))
        if len(shape) == 4:
            out = out.transpose(1, 2).reshape(shape)
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor


@contextmanager
def recorded_cross_attention(unet: torch.nn.Module) -> Iterator[dict[str, list[torch.Tensor]]]:
    """Record every cross-attention call's probabilities while the block runs (one list entry per
    UNet call); the UNet's processors are restored afterwards, also on error."""
    store: dict[str, list[torch.Tensor]] = {}
    modules = cross_attentions(unet)
    saved = {name: m.processor for name, m in modules.items()}
    try:
        for name, m in modules.items():
            m.set_processor(RecordingProcessor(name, store))
        yield store
    finally:
        for name, m in modules.items():
            m.set_processor(saved[name])


def token_mass(probs: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """The attention on ``tokens`` (a boolean ``(batch, tokens)`` mask) per pixel, mean over heads:
    ``(batch, pixels)``."""
    return (probs * tokens[:, None, None, :].to(probs.dtype)).sum(-1).mean(1)
