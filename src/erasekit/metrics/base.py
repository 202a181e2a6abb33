"""The metric contract: a registered :class:`Metric` scores an :class:`Answers` set.

A metric returns one or more named :class:`Value` objects (``efficacy``,
``efficacy_known``, ...), each with its mean, a 95% bootstrap interval, whether
higher is better, and the per-prompt, per-seed values it was computed from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterator

import numpy as np

from erasekit.concepts import OTHER, TARGET_SPLITS, Concept, EvalPrompt
from erasekit.registry import Registered, Registry
from erasekit.sampling import DEFAULT_GUIDANCE, DEFAULT_STEPS
from erasekit.stats import bootstrap_mean

__all__ = ["METRICS", "OTHER", "TARGET_SPLITS", "Answers", "EvalPrompt", "Metric", "Value", "default_metrics",
           "get_metric", "mean_value", "metric_names"]


@dataclass
class Answers:
    """The answer set a metric scores: every prompt sampled with every seed (seed-major)."""

    concept: Concept
    prompts: list[EvalPrompt]
    seeds: list[int]
    images: np.ndarray
    verdicts: list[dict[str, str]] | None = None
    base_images: np.ndarray | None = None
    #: the oracle's images (a model trained without the concept) for the same prompts and seeds,
    #: and for the same prompts with other seeds (its seed-to-seed noise floor)
    oracle_images: np.ndarray | None = None
    oracle_floor_images: np.ndarray | None = None
    judge: Any = None
    artifact: dict[str, Any] | None = None
    domain: Any = None  # the concept's :class:`~erasekit.domain.Domain` (built-in concepts)
    #: the evaluated model in process (``erasekit eval``; ``needs`` "model"): the unedited pipeline
    #: (unedited while metrics run), the erasure to apply to it (``None``: the pipeline itself was
    #: evaluated), the oracle's pipeline, and the sampler settings of ``images``
    pipe: Any = None
    erasure: Any = None
    oracle_pipe: Any = None
    steps: int = DEFAULT_STEPS
    guidance: float = DEFAULT_GUIDANCE

    def rows(self) -> Iterator[tuple[int, int, EvalPrompt, int]]:
        """``(prompt_index, seed, prompt, image_index)`` for every image."""
        for k, seed in enumerate(self.seeds):
            for i, p in enumerate(self.prompts):
                yield i, seed, p, k * len(self.prompts) + i

    def has_split(self, split: str) -> bool:
        return any(p.split == split for p in self.prompts)


@dataclass(frozen=True)
class Value:
    """One reported number: ``value`` with its 95% interval ``[low, high]`` (``None`` if not defined)."""

    value: float
    low: float | None
    high: float | None
    higher_is_better: bool
    n: int
    samples: tuple[tuple[int, int, float], ...] = ()  # (prompt_index, seed, value)
    meta: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        ci = None if self.low is None else [round(self.low, 6), round(self.high, 6)]  # type: ignore[arg-type]
        return {"value": round(self.value, 6), "ci95": ci, "higher_is_better": self.higher_is_better, "n": self.n,
                **({"meta": self.meta} if self.meta else {})}


#: Why a metric cannot run when the answer set lacks what it needs.
NEEDS: dict[str, str] = {
    "judge": "needs a judge (the concept's domain judge, e.g. the testbed's)",
    "attributes": "needs a built-in concept of a domain (prompts with known attributes)",
    "domain": "needs a built-in concept of a domain (reference images)",
    "base_images": "needs the unedited model's images (evaluate an erasure, not the baseline)",
    "artifact": "applies to erasure runs only (fit cost and artifact size)",
    "oracle": "needs an oracle model trained without the concept (the testbed's, for skull, logo and neon)",
    "model": "needs the model itself, in process (as `erasekit eval` computes it), not only its images",
}


class Metric(Registered):
    """Scores an answer set. Subclasses set the class attributes below and a docstring; the
    report, the default metric set and the CLI listing read them, so a metric is one file."""

    name: ClassVar[str]
    higher_is_better: ClassVar[bool] = True
    #: what the answer set must carry: keys of :data:`NEEDS`
    needs: ClassVar[tuple[str, ...]] = ()
    #: computed by ``erasekit eval`` when no ``--metrics`` are given
    default: ClassVar[bool] = True
    #: the values the report shows, key -> column header, in the ``report_table`` table
    report: ClassVar[dict[str, str]] = {}
    report_table: ClassVar[str] = "summary"
    #: position of its columns in the report (lower first)
    order: ClassVar[int] = 100

    def compute(self, answers: Answers) -> dict[str, Value]:
        raise NotImplementedError

    def missing(self, have: frozenset[str]) -> str | None:
        """Why this metric cannot run on an answer set that carries ``have`` (``None`` if it can)."""
        return next((NEEDS[n] for n in self.needs if n not in have), None)


METRICS: Registry[Metric] = Registry("metric", Metric, package="erasekit.metrics", group="erasekit.metrics")
get_metric = METRICS.create
metric_names = METRICS.names


def ranked() -> list[Metric]:
    """Every registered metric, in report order."""
    return sorted((get_metric(n) for n in metric_names()), key=lambda m: (m.order, m.name))


def default_metrics() -> list[Metric]:
    """The metrics ``erasekit eval`` computes by default, in report order."""
    return [m for m in ranked() if m.default]


def report_columns(table: str = "summary") -> dict[str, str]:
    """Value key -> column header of every metric's ``report`` entries in ``table``, in ``order``."""
    return {k: h for m in ranked() if m.report_table == table for k, h in m.report.items()}


def mean_value(
    answers: Answers,
    keep: Callable[[EvalPrompt], bool],
    score: Callable[[EvalPrompt, int], float],
    higher_is_better: bool = True,
) -> Value | None:
    """Mean of ``score(prompt, image_index)`` over the images whose prompt passes ``keep``,
    with a cluster-bootstrap interval over prompts. ``None`` when no prompt passes."""
    samples = [(i, seed, float(score(p, j))) for i, seed, p, j in answers.rows() if keep(p)]
    if not samples:
        return None
    mean, low, high = bootstrap_mean([s[2] for s in samples], groups=[s[0] for s in samples])
    return Value(mean, low, high, higher_is_better, len(samples), tuple(samples))
