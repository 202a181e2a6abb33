"""Low-rank adapters added by forward hooks (LoRA, Hu et al. 2021, arXiv 2106.09685).

One class serves every method that trains ``W + scale * B A`` on a few linear layers and then
merges it: MACE's and RealEra's rank-1 attention LoRAs, PGA's rank-16 decoder LoRA. The base
weights are never touched while training; the adapters act only inside :meth:`LoRA.installed`.
"""

from __future__ import annotations

import math
from contextlib import ExitStack, contextmanager
from typing import Iterator, Literal

import torch
import torch.nn.functional as F


def uniform_down(rank: int, fan_in: int, gen: torch.Generator) -> torch.Tensor:
    """LoRA's ``A`` initialisation: uniform in ``+-1/sqrt(fan_in)`` (``nn.Linear``'s), float32 on the CPU."""
    return (torch.rand(rank, fan_in, generator=gen) * 2 - 1) / math.sqrt(fan_in)


class LoRA:
    """Rank-``rank`` deltas ``scale * B A`` on linear layers, added by forward hooks while installed.

    ``B`` starts at zero, so an installed, untrained adapter changes nothing. ``init`` draws ``A``:
    ``"uniform"`` (LoRA's, :func:`uniform_down`) or ``"normal"`` (``N(0, 1/fan_in)``, MACE's).
    """

    def __init__(self, layers: dict[str, torch.nn.Linear], gen: torch.Generator, rank: int = 1,
                 scale: float = 1.0, init: Literal["uniform", "normal"] = "normal") -> None:
        if rank < 1:
            raise ValueError(f"LoRA rank must be >= 1, got {rank}")
        self.layers, self.scale = layers, scale
        self.a: dict[str, torch.nn.Parameter] = {}
        self.b: dict[str, torch.nn.Parameter] = {}
        for k, m in layers.items():
            w = m.weight
            if init == "uniform":
                a = uniform_down(rank, m.in_features, gen).to(w)
            elif init == "normal":
                a = (torch.randn(rank, m.in_features, generator=gen, dtype=w.dtype) / math.sqrt(m.in_features)).to(w.device)
            else:
                raise ValueError(f"unknown LoRA init {init!r}: use 'uniform' or 'normal'")
            self.a[k] = torch.nn.Parameter(a)
            self.b[k] = torch.nn.Parameter(w.new_zeros(m.out_features, rank))

    def parameters(self) -> list[torch.nn.Parameter]:
        return [*self.a.values(), *self.b.values()]

    def delta(self, key: str) -> torch.Tensor:
        """``scale * B A`` of one layer, detached."""
        return (self.scale * self.b[key] @ self.a[key]).detach()

    def merged(self) -> dict[str, torch.Tensor]:
        """Each layer's weight with its adapter added in (a method's artifact tensors)."""
        return {k: (m.weight + self.delta(k)).detach().clone() for k, m in self.layers.items()}

    @contextmanager
    def installed(self) -> Iterator[None]:
        """The adapters as forward hooks on their layers for the ``with`` block, removed on exit."""
        def hook(key: str):
            return lambda _m, inputs, out: out + self.scale * F.linear(F.linear(inputs[0], self.a[key]), self.b[key])

        with ExitStack() as stack:
            for k, m in self.layers.items():
                stack.enter_context(m.register_forward_hook(hook(k)))
            yield
