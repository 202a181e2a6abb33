"""Cross-attention maps of a diffusers UNet, recorded through attention processors installed by a
context manager that puts the UNet's own processors back on exit.

The recording processor computes the attention probabilities explicitly (``softmax(q k^T / sqrt(d))``,
as diffusers' ``AttnProcessor`` does) so they can be read and differentiated: MACE's attention
loss and the cross-attention masks are built on them.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator

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
        return attention_output(attn, attn.batch_to_head_dim(torch.bmm(probs, value)), residual, shape)


def attention_output(attn: Any, out: torch.Tensor, residual: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """The end of diffusers' attention processor: the output projection, the input's layout
    (``shape``), the residual where the block has one, the output rescale."""
    out = attn.to_out[1](attn.to_out[0](out))
    if len(shape) == 4:
        out = out.transpose(1, 2).reshape(shape)
    if attn.residual_connection:
        out = out + residual
    return out / attn.rescale_output_factor


@contextmanager
def cross_attention_processors(unet: torch.nn.Module, make: Callable[[str], Any]) -> Iterator[None]:
    """Every cross-attention of ``unet`` runs ``make(name)``'s processor while the block runs; the
    UNet's own processors come back afterwards, also on error."""
    modules = cross_attentions(unet)
    saved = {name: m.processor for name, m in modules.items()}
    try:
        for name, m in modules.items():
            m.set_processor(make(name))
        yield
    finally:
        for name, m in modules.items():
            m.set_processor(saved[name])


@contextmanager
def recorded_cross_attention(unet: torch.nn.Module) -> Iterator[dict[str, list[torch.Tensor]]]:
    """Record every cross-attention call's probabilities while the block runs (one list entry per
    UNet call); the UNet's processors are restored afterwards, also on error."""
    store: dict[str, list[torch.Tensor]] = {}
    with cross_attention_processors(unet, lambda name: RecordingProcessor(name, store)):
        yield store


def token_mass(probs: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """The attention on ``tokens`` (a boolean ``(batch, tokens)`` mask) per pixel, mean over heads:
    ``(batch, pixels)``."""
    return (probs * tokens[:, None, None, :].to(probs.dtype)).sum(-1).mean(1)
