"""Quantisation attack (Zhang et al., ICLR 2025, arXiv 2410.16454): round the unlearned weights to int8/int4.

Unlearning updates smaller than half a quantisation step vanish when the model is quantised, and
the forgotten answers come back. Built-in per-row round-to-nearest (``linalg.quantize_rtn``) on
every 2-D weight of the decoder layers, so it runs anywhere; the budget is the bit width.
"""

from __future__ import annotations

import torch

from erasekit.errors import UserError
from erasekit.linalg import quantize_rtn
from erasekit.lm.attacks.base import LM_ATTACKS, LMAttack
from erasekit.lm.metrics.base import accuracy, point
from erasekit.lm.model import LM, clone
from erasekit.lm.tasks import Task
from erasekit.metrics.base import Value


def quantized(lm: LM, bits: int) -> LM:
    c = clone(lm)
    with torch.no_grad():
        for name, p in c.model.named_parameters():
            if ".layers." in f".{name}" and p.dim() == 2:
                p.copy_(quantize_rtn(p, bits))
    return c


@LM_ATTACKS.register("quantize")
class Quantize(LMAttack):
    """Quantisation: per-row round-to-nearest int-k of the layer weights; change in forget and retain accuracy."""

    budget_unit = "bits"
    default_budget = 4
    recovered = "int{budget}_forget_acc"

    def check_budget(self, budget: int) -> None:
        if budget not in (2, 3, 4, 8):
            raise UserError(f"budget: the quantize attack takes 2, 3, 4 or 8 bits, got {budget}")

    def run(self, lm: LM, task: Task, oracle: LM | None, budget: int, seed: int = 0,
            base: LM | None = None) -> dict[str, Value]:
        self.check_budget(budget)
        q = quantized(lm, budget)
        forget, retain = task.eval["forget"], task.eval["retain"]
        f0, f1 = accuracy(lm, task, forget).mean(), accuracy(q, task, forget).mean()
        r0, r1 = accuracy(lm, task, retain).mean(), accuracy(q, task, retain).mean()
        return {f"int{budget}_forget_acc": point(f1, False, len(forget)),
                f"int{budget}_forget_change": point(f1 - f0, False, len(forget)),
                f"int{budget}_retain_change": point(r1 - r0, True, len(retain))}
