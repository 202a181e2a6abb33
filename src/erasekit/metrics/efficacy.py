"""Efficacy, the UnlearnCanvas "UA": share of target-prompt images in which the judge does NOT
find the concept (Zhang et al., UnlearnCanvas, 2024). Reported per prompt split."""

from __future__ import annotations

from erasekit.metrics.base import METRICS, TARGET_SPLITS, Answers, Metric, Value, mean_value

KEYS = {"target": "efficacy", "target_heldout_phrasings": "efficacy_heldout_phrasings",
        "target_heldout_pairs": "efficacy_heldout_pairs"}


@METRICS.register("efficacy")
class Efficacy(Metric):
    """Efficacy (UA): target images the judge does not see the concept in (training phrasings,
    held-out phrasings, held-out combinations)."""

    higher_is_better = True
    needs = ("judge", "attributes")
    order = 10
    report = {"efficacy": "efficacy<br>(UA)", "efficacy_heldout_phrasings": "efficacy<br>held-out phrasings",
              "efficacy_heldout_pairs": "efficacy<br>held-out pairs"}

    def compute(self, answers: Answers) -> dict[str, Value]:
        family, value = answers.concept.family, answers.concept.name
        assert answers.verdicts is not None and family is not None
        verdicts = answers.verdicts
        out: dict[str, Value] = {}
        for split in TARGET_SPLITS:
            v = mean_value(answers, lambda p, s=split: p.split == s, lambda p, j: verdicts[j][family] != value)
            if v is not None:
                out[KEYS[split]] = v
        return out
