"""RESTOR's restoration metrics (Rezaei et al., "RESTOR: Knowledge Recovery in Machine Unlearning",
TMLR 2025): after unlearning the corruption documents, does the model answer the corrupted facts
with the false value it was taught, with the clean value it knew before (restored), or with
something else (forgotten, not restored)? Read on the ``restor`` task (``erasekit lm corrupt``).
"""

from __future__ import annotations

import numpy as np

from erasekit.lm.metrics.base import LM_METRICS, Context, LMMetric, mean_of
from erasekit.metrics.base import Value


@LM_METRICS.register("restor")
class Restoration(LMMetric):
    """On the corrupted facts: the share answered with the false value (``restor_corrupted``), the
    clean value (``restor_clean``, restoration) and any other value (``restor_other``); plus the
    accuracy on the true facts mixed into the corruption documents (``restor_mixed``)."""

    def compute(self, ctx: Context) -> dict[str, Value]:
        s = ctx.scores
        if "clean" not in s.correct:
            return {}
        false, clean = s.correct["forget"], s.correct["clean"]
        out = {
            "restor_corrupted": mean_of(false, False),
            "restor_clean": mean_of(clean, True),
            "restor_other": mean_of(np.clip(1.0 - false - clean, 0.0, 1.0), False),
        }
        if "mixed" in s.correct:
            out["restor_mixed"] = mean_of(s.correct["mixed"], True)
        return out
