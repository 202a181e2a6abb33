"""Black-box prompt attacks on the forgotten facts: other phrasings and two-hop questions.

``paraphrase`` asks the forget facts in the phrasing that was trained but never unlearned (the
Erasure Illusion surrogate, arXiv 2512.19025) and in a never-trained phrasing; ``two_hop`` asks
them indirectly ("Where does the author of <book> live?", Sleek, arXiv 2506.17279). Each reports
accuracy with the oracle's for reference. Budget: phrasings tried per fact.
"""

from __future__ import annotations

from erasekit.errors import UserError
from erasekit.lm.attacks.base import LM_ATTACKS, LMAttack
from erasekit.lm.metrics.base import accuracy, point
from erasekit.lm.model import LM
from erasekit.lm.tasks import Task
from erasekit.metrics.base import Value


def _accs(lm: LM, task: Task, sets: tuple[str, ...]) -> dict[str, float]:
    return {s: float(accuracy(lm, task, task.eval[s]).mean()) for s in sets}


class _SetAttack(LMAttack):
    threat_model = "black-box"
    sets: tuple[str, ...] = ()

    def run(self, lm: LM, task: Task, oracle: LM | None, budget: int, seed: int = 0,
            base: LM | None = None) -> dict[str, Value]:
        self.check_budget(budget)
        sets = tuple(s for s in self.sets[:budget] if s in task.eval)
        if not sets:
            raise UserError(f"the {self.name} attack needs {', '.join(self.sets)} questions; task "
                             f"{task.spec.task!r} has none")
        mine = _accs(lm, task, sets)
        theirs = _accs(oracle, task, sets) if oracle is not None else {}
        out = {}
        for s in sets:
            n = len(task.eval[s])
            out[f"{self.name}_{s}_acc"] = point(mine[s], False, n,
                                                {"oracle": round(theirs[s], 4)} if s in theirs else {})
        out[f"{self.name}_asr"] = point(max(mine.values()), False, sum(len(task.eval[s]) for s in sets))
        return out


@LM_ATTACKS.register("paraphrase")
class Paraphrase(_SetAttack):
    """Paraphrase: the forget facts in a trained-but-not-unlearned phrasing and in a never-trained one."""

    budget_unit = "phrasings"
    default_budget = 2
    recovered = "paraphrase_asr"
    sets = ("surrogate", "unseen")


@LM_ATTACKS.register("two_hop")
class TwoHop(_SetAttack):
    """Two-hop: the forget facts asked through another fact (Sleek-style multi-hop prompts)."""

    budget_unit = "question kinds"
    default_budget = 1
    recovered = "two_hop_asr"
    sets = ("two_hop",)
