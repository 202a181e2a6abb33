"""Retention (UnlearnCanvas IRA and CRA; Zhang et al., 2024).

* ``ira``: judge accuracy for the erased concept's family on the prompts of the family's other
  values (other shapes when a shape was erased).
* ``cra``: judge accuracy of the other families on every prompt, the target's included (erasing
  ``skull`` should keep "a red skull" red); decoy prompts (drawn as no shape) are left out.
"""

from __future__ import annotations

from erasekit.concepts import DECOY
from erasekit.metrics.base import METRICS, OTHER, Answers, Metric, Value, mean_value


@METRICS.register("ira")
class InDomainRetention(Metric):
    """In-domain retention (IRA): judge accuracy on the same family's other concepts."""

    needs = ("judge", "attributes")
    order = 20
    report = {"ira": "IRA"}

    def compute(self, answers: Answers) -> dict[str, Value]:
        family = answers.concept.family
        assert answers.verdicts is not None and family is not None
        verdicts = answers.verdicts
        v = mean_value(answers, lambda p: p.split == OTHER,
                       lambda p, j: verdicts[j][family] == p.attributes[family])  # type: ignore[index]
        return {} if v is None else {"ira": v}


@METRICS.register("cra")
class CrossDomainRetention(Metric):
    """Cross-domain retention (CRA): judge accuracy of the other families on all prompts."""

    needs = ("judge", "attributes")
    order = 30
    report = {"cra": "CRA"}

    def compute(self, answers: Answers) -> dict[str, Value]:
        family = answers.concept.family
        assert answers.verdicts is not None
        verdicts = answers.verdicts

        def score(p, j: int) -> float:
            others = [f for f in p.attributes if f != family]
            return sum(verdicts[j][f] == p.attributes[f] for f in others) / len(others)

        v = mean_value(answers, lambda p: p.split != DECOY, score)
        return {} if v is None else {"cra": v}
