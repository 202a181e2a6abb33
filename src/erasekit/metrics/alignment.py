"""Alignment: share of images in which the judge agrees with every attribute the prompt names
(decoy prompts, drawn as no shape, are left out)."""

from __future__ import annotations

from erasekit.concepts import DECOY
from erasekit.metrics.base import METRICS, OTHER, Answers, Metric, Value, mean_value


@METRICS.register("alignment")
class Alignment(Metric):
    """Alignment: the judge agrees with all attributes the prompt names (all prompts, and the
    non-target prompts alone)."""

    needs = ("judge", "attributes")
    order = 40
    report = {"alignment": "alignment"}

    def compute(self, answers: Answers) -> dict[str, Value]:
        assert answers.verdicts is not None
        verdicts = answers.verdicts

        def score(p, j: int) -> float:
            return float(all(verdicts[j][f] == v for f, v in p.attributes.items()))

        out = {}
        for key, keep in (("alignment", lambda p: p.split != DECOY), ("alignment_other", lambda p: p.split == OTHER)):
            v = mean_value(answers, keep, score)
            if v is not None:
                out[key] = v
        return out
