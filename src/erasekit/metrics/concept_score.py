"""Concept score: the judge's mean probability of the concept on target prompts, per phrasing split.
Finer than the argmax rate of :mod:`~erasekit.metrics.efficacy`: a faint residue that the judge
no longer names still raises it (the counterpart of a classifier's score in NudeNet-style audits)."""

from __future__ import annotations

import numpy as np

from erasekit.concepts import TARGET_SPLITS
from erasekit.metrics.base import METRICS, Answers, Metric, Value, mean_value


@METRICS.register("concept_score")
class ConceptScore(Metric):
    """Concept score: the judge's mean probability of the concept on target images, per split
    (lower is better after erasure)."""

    higher_is_better = False
    needs = ("judge", "attributes", "domain")
    order = 12
    report = {"concept_score": "concept<br>score"}

    def compute(self, answers: Answers) -> dict[str, Value]:
        scores = np.asarray(answers.domain.concept_scores(answers.judge, answers.images, answers.concept))
        out: dict[str, Value] = {}
        for split in TARGET_SPLITS:
            key = "concept_score" if split == "given" else f"concept_score_{split}"
            v = mean_value(answers, lambda p, s=split: p.split == s, lambda p, j: float(scores[j]),
                           higher_is_better=False)
            if v is not None:
                out[key] = v
        return out
