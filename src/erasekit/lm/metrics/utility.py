"""Model utility and drift.

- ``model_utility``: harmonic mean over the retain, neighbour (facts shared with forget entities,
  DUSK-style) and general sets of accuracy, answer probability and ``max(0, 1 - TR)`` (TOFU's
  nine-score harmonic mean, on our sets); ``retain_acc``, ``neighbour_acc``, ``general_acc``.
- ``first_token_kl``: mean ``KL(base || model)`` of the next-token distribution at the end of
  benign prompts (Heretic's drift measure), against the model before unlearning.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import hmean

from erasekit.lm.metrics.base import LM_METRICS, Context, LMMetric, mean_of, point, truth_ratio
from erasekit.metrics.base import Value

UTILITY_SETS = ("retain", "neighbour", "general")


@LM_METRICS.register("utility")
class ModelUtility(LMMetric):
    """Model utility: harmonic mean of accuracy, probability and truth score on retain, neighbour, general."""

    def compute(self, ctx: Context) -> dict[str, Value]:
        s = ctx.scores
        out: dict[str, Value] = {}
        parts = []
        for name in UTILITY_SETS:
            if name not in s.correct or not len(s.correct[name]):
                continue
            out[f"{name}_acc"] = mean_of(s.correct[name], True)
            parts.append(float(s.correct[name].mean()))
            if name in s.prob:
                parts.append(float(s.prob[name].mean()))
            if name in s.perturbed:
                parts.append(float(np.maximum(0.0, 1.0 - truth_ratio(s.prob[name], s.perturbed[name])).mean()))
        if parts:
            hm = 0.0 if min(parts) <= 0 else float(hmean(parts))
            out["model_utility"] = point(hm, True, len(parts), {"parts": [round(p, 4) for p in parts]})
        return out


@LM_METRICS.register("kl")
class FirstTokenKL(LMMetric):
    """First-token KL on benign prompts against the model before unlearning (drift; lower is better)."""

    needs = ("base",)

    def compute(self, ctx: Context) -> dict[str, Value]:
        if ctx.base is None or ctx.scores.first_token is None or ctx.base.first_token is None:
            return {}
        ref, cur = ctx.base.first_token, ctx.scores.first_token
        kl = (ref.exp() * (ref - cur)).sum(-1).clamp(min=0).numpy()
        return {"first_token_kl": mean_of(kl, False)}
