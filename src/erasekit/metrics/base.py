"""The metric contract: a registered :class:`Metric` scores an :class:`Answers` set.

A metric returns one or more named :class:`Value` objects (``efficacy``,
``efficacy_heldout_phrasings``, ...), each with its mean, a 95% bootstrap interval, whether
higher is better, and the per-prompt, per-seed values it was computed from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterator

import numpy as np

from erasekit.concepts import Concept
from erasekit.registry import Registered, Registry
from erasekit.stats import bootstrap_mean

#: Prompt splits of an evaluation prompt set (see :func:`erasekit.evaluation.eval_prompts`).
TARGET_SPLITS = ("target", "target_heldout_phrasings", "target_heldout_pairs")
OTHER = "other"


@dataclass(frozen=True)
class EvalPrompt:
    """One prompt of an evaluation set: its text, split, and the attributes it names (testbed)."""

    text: str
    split: str
    attributes: dict[str, str] | None = None


@dataclass
class Answers:
    """The answer set a metric scores: every prompt sampled with every seed (seed-major)."""

    concept: Concept
    prompts: list[EvalPrompt]
    seeds: list[int]
    images: np.ndarray
    verdicts: list[dict[str, str]] | None = None
    base_images: np.ndarray | None = None
    judge: Any = None
    artifact: dict[str, Any] | None = None

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


class Metric(Registered):
    """Scores an answer set. Subclasses set ``higher_is_better``, ``needs`` and a docstring."""

    name: ClassVar[str]
    higher_is_better: ClassVar[bool] = True
    #: what the answer set must carry: ``"judge"``, ``"attributes"``, ``"base_images"``, ``"artifact"``
    needs: ClassVar[tuple[str, ...]] = ()

    def compute(self, answers: Answers) -> dict[str, Value]:
        raise NotImplementedError

    def missing(self, answers: Answers) -> str | None:
        """Why this metric cannot score ``answers`` (``None`` if it can)."""
        if "judge" in self.needs and (answers.judge is None or answers.verdicts is None):
            return "needs the testbed judge"
        if "attributes" in self.needs and any(p.attributes is None for p in answers.prompts):
            return "needs a built-in testbed concept (prompts with known attributes)"
        if "base_images" in self.needs and answers.base_images is None:
            return "needs the unedited model's images"
        return None


METRICS: Registry[Metric] = Registry("metric", Metric, package="erasekit.metrics")


def get_metric(name: str) -> Metric:
    return METRICS.create(name)


def metric_names() -> list[str]:
    return METRICS.names()


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
