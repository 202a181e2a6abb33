"""Cost of an erasure, as UnlearnCanvas reports it: fit wall time, peak memory, storage.

:func:`track` measures a fit: wall time, and the peak resident memory above the level before
the fit (sampled from ``/proc/self/statm`` every 20 ms; on CUDA, ``max_memory_allocated``).
"""

from __future__ import annotations

import os
import threading
import time
from contextlib import contextmanager
from typing import Any, Iterator

import torch

from erasekit.metrics.base import METRICS, Answers, Metric, Value


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):  # not Linux: fall back to the lifetime peak
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@contextmanager
def track() -> Iterator[dict[str, Any]]:
    """``with track() as cost: fit(...)``; afterwards ``cost`` holds ``fit_seconds``,
    ``peak_memory_mb`` (above the level at entry) and ``memory_kind``."""
    cost: dict[str, Any] = {}
    start_rss = _rss_bytes()
    peak = [start_rss]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            peak[0] = max(peak[0], _rss_bytes())

    thread = threading.Thread(target=sample, daemon=True)
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    thread.start()
    t0 = time.perf_counter()
    try:
        yield cost
    finally:
        cost["fit_seconds"] = round(time.perf_counter() - t0, 3)
        done.set()
        thread.join()
        peak[0] = max(peak[0], _rss_bytes())
        if cuda:
            cost["peak_memory_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
            cost["memory_kind"] = "cuda max_memory_allocated"
        else:
            cost["peak_memory_mb"] = round((peak[0] - start_rss) / 2**20, 1)
            cost["memory_kind"] = "CPU resident memory above the level before the fit"


@METRICS.register("cost")
class Cost(Metric):
    """Cost: fit wall time, peak memory, artifact size on disk, parameters changed."""

    higher_is_better = False
    needs = ("artifact",)

    def missing(self, answers: Answers) -> str | None:
        return None if answers.artifact is not None else "applies to erasure runs only"

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
