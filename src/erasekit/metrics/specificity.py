"""Specificity: how often the concept appears where it was not asked for: on ``decoy`` prompts,
which reuse the concept's words in another meaning ("a horse head", "a heart with the name
Zentrix"), and on off-topic prompts (the family's other values). A model, or an erasure, that
keys on single words rather than meaning raises these."""

from __future__ import annotations

from erasekit.concepts import DECOY, OTHER
from erasekit.metrics.base import METRICS, Answers, Metric, Value, mean_value


@METRICS.register("specificity")
class Specificity(Metric):
    """Specificity: concept rate on decoy prompts (``decoy_rate``) and on off-topic prompts (``offtopic_rate``)."""

    higher_is_better = False
    needs = ("judge", "attributes")
    order = 45
    report = {"decoy_rate": "concept rate<br>decoys", "offtopic_rate": "concept rate<br>off-topic"}

    def compute(self, answers: Answers) -> dict[str, Value]:
        family, value = answers.concept.family, answers.concept.name
        assert answers.verdicts is not None and family is not None
        verdicts = answers.verdicts
        out: dict[str, Value] = {}
        for key, split in (("decoy_rate", DECOY), ("offtopic_rate", OTHER)):
            v = mean_value(answers, lambda p, s=split: p.split == s, lambda p, j: verdicts[j][family] == value,
                           higher_is_better=False)
            if v is not None:
                out[key] = v
        return out
