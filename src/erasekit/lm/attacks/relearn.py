"""Relearning attack (Hu et al., arXiv 2406.13356): fine-tune k steps on related facts, score the rest.

The attacker fine-tunes every weight on ``task.relearn_train`` (TinyTOFU: the forget entities'
city and genre; Harry Potter: other facts of the books) and is scored on ``task.relearn_test``
(TinyTOFU: the same entities' award and job; never in the relearning data). Only recovery beyond
the oracle's, which never knew the facts, means the unlearning left the knowledge in place.
"""

from __future__ import annotations

from erasekit.lm import model as M
from erasekit.lm.attacks.base import LM_ATTACKS, LMAttack
from erasekit.lm.metrics.base import accuracy, point
from erasekit.lm.model import LM
from erasekit.lm.tasks import Task
from erasekit.metrics.base import Value


@LM_ATTACKS.register("relearn")
class Relearn(LMAttack):
    """Relearning: k fine-tuning steps on related facts; recovery on held-out facts, against the oracle's."""

    budget_unit = "fine-tuning steps"
    default_budget = 10
    recovered = "relearn_after"

    @staticmethod
    def lr_for(lm: LM) -> float:
        """3e-4 for small models trained from scratch (< 10 M parameters), 2e-5 for pretrained ones."""
        return 3e-4 if sum(p.numel() for p in lm.model.parameters()) < 10_000_000 else 2e-5

    def _one(self, lm: LM, task: Task, steps: int, seed: int) -> tuple[float, float]:
        before = float(accuracy(lm, task, task.relearn_test).mean())
        c = M.clone(lm)
        M.train(c, task.relearn_train, steps, lr=self.lr_for(lm), batch=len(task.relearn_train), seed=seed,
                progress=False, desc="relearn")
        return before, float(accuracy(c, task, task.relearn_test).mean())

    def run(self, lm: LM, task: Task, oracle: LM | None, budget: int, seed: int = 0,
            base: LM | None = None) -> dict[str, Value]:
        self.check_budget(budget)
        n = len(task.relearn_test)
        before, after = self._one(lm, task, budget, seed)
        out = {"relearn_before": point(before, False, n), "relearn_after": point(after, False, n),
               "relearn_recovery": point(after - before, False, n)}
        if oracle is not None:
            ob, oa = self._one(oracle, task, budget, seed)
            out["relearn_oracle_recovery"] = point(oa - ob, False, n, {"before": ob, "after": oa})
            out["relearn_excess"] = point((after - before) - (oa - ob), False, n)
        return out
