"""The language-model attack contract: ``run(lm, task, oracle, budget, seed, base) -> {key: Value}``.

``lm`` has the erasure applied; attacks never change it (they work on :func:`~erasekit.lm.model.clone` copies). Attacks that mean
something only against the oracle (relearning, probing) run on the oracle too and report both.
``base`` is the model before unlearning, given to attacks whose ``needs`` include :data:`BASE`
(an attacker who kept the original weights, as in restoration attacks).
"""

from __future__ import annotations

from typing import ClassVar

from erasekit.errors import UserError
from erasekit.lm.model import LM
from erasekit.lm.tasks import Task
from erasekit.metrics.base import Value
from erasekit.registry import Registered, Registry


#: What an attack lists in ``needs`` to be given the model before unlearning as ``base``.
BASE = "the model before unlearning"


class LMAttack(Registered):
    """Subclasses set ``threat_model``, ``budget_unit``, ``default_budget`` and a docstring."""

    name: ClassVar[str]
    threat_model: ClassVar[str] = "white-box"
    budget_unit: ClassVar[str] = ""
    default_budget: ClassVar[int] = 0
    needs: ClassVar[tuple[str, ...]] = ()
    #: The value that is what the attacker got back: accuracy on the forgotten facts (``{budget}``
    #: filled in); the benchmark leaderboard's worst case is the highest over the attacks.
    recovered: ClassVar[str] = ""
    #: Whether the leaderboard's worst case counts this attack. Analyses whose attacker already
    #: holds the facts (restoration from the original weights) are shown but not counted.
    worst_case: ClassVar[bool] = True

    def recovered_key(self, budget: int) -> str:
        return self.recovered.format(budget=budget)

    def run(self, lm: LM, task: Task, oracle: LM | None, budget: int, seed: int = 0,
            base: LM | None = None) -> dict[str, Value]:
        raise NotImplementedError

    def check_budget(self, budget: int) -> None:
        if budget < 1:
            raise UserError(f"budget: must be >= 1 {self.budget_unit}, got {budget}")


LM_ATTACKS: Registry[LMAttack] = Registry("language-model attack", LMAttack, package="erasekit.lm.attacks",
                                          group="erasekit.lm_attacks")
get_lm_attack = LM_ATTACKS.create
lm_attack_names = LM_ATTACKS.names
