"""Cost of an erasure, as UnlearnCanvas reports it: fit wall time, peak memory, storage.

The fit's time and peak memory are measured when it runs (:func:`erasekit.artifact.track`, called
by :func:`erasekit.artifact.fit_recorded`) and kept in the artifact; this metric reports them.
"""

from __future__ import annotations

from erasekit.metrics.base import METRICS, Answers, Metric, Value


@METRICS.register("cost")
class Cost(Metric):
    """Cost: fit wall time, peak memory, artifact size on disk, parameters changed."""

    higher_is_better = False
    needs = ("artifact",)
    order = 60
    report_table = "cost"
    report = {"fit_seconds": "fit s", "peak_memory_mb": "peak memory MB", "artifact_bytes": "artifact bytes",
              "params_changed": "params changed"}

    def compute(self, answers: Answers) -> dict[str, Value]:
        art = answers.artifact or {}
        extra = art.get("extra", {})
        out = {}
        for key, value in (("fit_seconds", extra.get("fit_seconds")), ("peak_memory_mb", extra.get("peak_memory_mb")),
                           ("artifact_bytes", art.get("artifact_bytes")),
                           ("params_changed", art.get("params_changed"))):
            if value is not None:
                meta = {"memory_kind": extra["memory_kind"]} if key == "peak_memory_mb" and "memory_kind" in extra else {}
                out[key] = Value(float(value), None, None, higher_is_better=False, n=1, meta=meta)
        return out
