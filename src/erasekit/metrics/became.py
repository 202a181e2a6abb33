"""What the erased concept turned into: the distribution of judged values on target prompts (given,
known and unseen phrasings pooled), including the other protected concepts and ``none`` (no
recognisable shape), so that an erasure that destroys the image or swaps one protected concept for
another shows up (cf. the "where does the concept go" analyses of ESD and MACE)."""

from __future__ import annotations

from erasekit.concepts import TARGET_SPLITS
from erasekit.metrics.base import METRICS, Answers, Metric, Value, mean_value


@METRICS.register("became")
class Became(Metric):
    """Became: share of target images judged as each value of the concept's family (``became_<value>``)."""

    needs = ("judge", "attributes")
    higher_is_better = False  # for the erased value itself; a share, not a score, for the others
    order = 14
    report_table = "became"

    def compute(self, answers: Answers) -> dict[str, Value]:
        family = answers.concept.family
        assert answers.verdicts is not None and family is not None
        verdicts = answers.verdicts
        judged = getattr(answers.judge, "families", {}).get(family, ())
        values = list(dict.fromkeys([*judged, *sorted({v[family] for v in verdicts})]))
        out: dict[str, Value] = {}
        for value in values:
            v = mean_value(answers, lambda p: p.split in TARGET_SPLITS,
                           lambda p, j, value=value: verdicts[j][family] == value)
            if v is not None:
                out[f"became_{value}"] = Value(v.value, v.low, v.high, v.higher_is_better, v.n, v.samples,
                                               {"value": value})
        return out
