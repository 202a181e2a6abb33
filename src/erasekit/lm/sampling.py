"""How the gradient loop pairs forget and retain items at each step (MELU, "Standard vs. Modular
Sampling: Best Practices for Reliable LLM Unlearning", arXiv 2509.05316; github.com/praveensonu/MELU).

- ``random``: a random forget batch and an independent random retain batch (TOFU's 1:1 random
  pairing, OpenUnlearning's ``ForgetRetainDataset``; erasekit's default).
- ``cyclic``: both sets walked in a seeded order, item ``i mod len`` (MELU's ``gd_cyclic``).
- ``neighbours``: each forget item paired with a retain item about *another* entity that shares
  the answer (same attribute, same value: DUSK's shared facts), else a random retain item (MELU's
  neighbour-only variants, scaled to TinyTOFU's shared-value structure).
- ``modular``: one forget entity per step (MELU's entity-level modules): its forget items, and
  retain items from its module, the retain questions that share any of its attribute values.
  Inferred: MELU builds modules from a curated CSV of related entities; TinyTOFU has no relations
  between authors beyond shared values, so the module is built from those.

``neighbours`` and ``modular`` need items that name their entity and attribute (TinyTOFU).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Sequence

import torch

from erasekit.errors import UserError
from erasekit.lm.data import QA

SAMPLING = ("random", "cyclic", "neighbours", "modular")


def _draw(items: Sequence[QA], n: int, gen: torch.Generator) -> list[QA]:
    return [items[i] for i in torch.randint(len(items), (min(n, len(items)),), generator=gen).tolist()]


class PairSampler:
    """``sampler()`` -> ``(forget_batch, retain_batch)`` for one step of the gradient loop."""

    def __init__(self, forget: Sequence[QA], retain: Sequence[QA], scheme: str, batch: int,
                 gen: torch.Generator) -> None:
        if scheme not in SAMPLING:
            raise UserError(f"sampling must be one of {', '.join(SAMPLING)}, got {scheme!r}")
        self.forget, self.retain, self.scheme, self.batch, self.gen = list(forget), list(retain), scheme, batch, gen
        self.step = 0
        if scheme in ("neighbours", "modular") and not all(q.entity and q.attribute for q in self.forget):
            raise UserError(f"sampling {scheme!r} pairs items by entity and attribute; this task's forget items "
                            "name none (use random or cyclic, or the tinytofu task)")
        by_value: dict[tuple[str, str], list[QA]] = defaultdict(list)
        for q in self.retain:
            if q.entity:
                by_value[(q.attribute, q.answer)].append(q)
        self.by_value = dict(by_value)
        if scheme == "cyclic":
            self.f_order = torch.randperm(len(self.forget), generator=gen).tolist()
            self.r_order = torch.randperm(len(self.retain), generator=gen).tolist()
        if scheme == "modular":
            entities: dict[str, list[QA]] = defaultdict(list)
            for q in self.forget:
                entities[q.entity].append(q)
            self.entities = sorted(entities.items())
            self.modules = {name: self._module(name, qs) for name, qs in self.entities}

    def _module(self, entity: str, items: list[QA]) -> list[QA]:
        values = {(q.attribute, q.answer) for q in items}
        module = [r for v in sorted(values) for r in self.by_value.get(v, []) if r.entity != entity]
        return module or self.retain

    def _neighbour(self, q: QA) -> QA:
        pool = [r for r in self.by_value.get((q.attribute, q.answer), []) if r.entity != q.entity]
        return _draw(pool or self.retain, 1, self.gen)[0]

    def __call__(self) -> tuple[list[QA], list[QA]]:
        k, n = self.step, self.batch
        self.step += 1
        if self.scheme == "random":
            return _draw(self.forget, n, self.gen), _draw(self.retain, n, self.gen)
        if self.scheme == "cyclic":
            f = [self.forget[self.f_order[(k * n + i) % len(self.forget)]] for i in range(min(n, len(self.forget)))]
            r = [self.retain[self.r_order[(k * n + i) % len(self.retain)]] for i in range(n)]
            return f, r
        if self.scheme == "neighbours":
            f = _draw(self.forget, n, self.gen)
            return f, [self._neighbour(q) for q in f]
        name, items = self.entities[k % len(self.entities)]
        return _draw(items, n, self.gen), _draw(self.modules[name], n, self.gen)
