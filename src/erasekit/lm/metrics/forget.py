"""Forgetting, TOFU's way (Maini et al. 2024; open-unlearning's definitions).

- ``forget_acc`` / ``forget_prob``: exact match and length-normalised answer probability on the
  forget questions in the phrasing unlearning saw; ``surrogate_acc`` (trained, never unlearned
  phrasing: Erasure Illusion's surrogate), ``unseen_acc`` (never-trained phrasing) and
  ``two_hop_acc`` (Sleek-style indirect questions) on the same facts.
- ``forget_truth_ratio``: mean of ``min(TR, 1/TR)``, ``TR = mean p(perturbed) / p(answer)``.
- ``forget_quality``: the KS-test p-value between the model's and the oracle's forget truth
  ratios (``scipy.stats.ks_2samp``); 1 means indistinguishable from never having trained on them.
"""

from __future__ import annotations

import numpy as np

from erasekit.lm.metrics.base import LM_METRICS, Context, LMMetric, mean_of, point, truth_ratio
from erasekit.metrics.base import Value


@LM_METRICS.register("forget")
class ForgetAccuracy(LMMetric):
    """Forget-set accuracy and answer probability, plus surrogate, unseen-phrasing and two-hop accuracy."""

    def compute(self, ctx: Context) -> dict[str, Value]:
        s = ctx.scores
        out = {"forget_acc": mean_of(s.correct["forget"], False)}
        if "forget" in s.prob:
            out["forget_prob"] = mean_of(s.prob["forget"], False)
        for key, name in (("surrogate_acc", "surrogate"), ("unseen_acc", "unseen"), ("two_hop_acc", "two_hop")):
            if name in s.correct:
                out[key] = mean_of(s.correct[name], False)
        return out


def forget_tr(ctx_scores) -> np.ndarray:
    tr = truth_ratio(ctx_scores.prob["forget"], ctx_scores.perturbed["forget"])
    return np.minimum(tr, 1.0 / np.maximum(tr, 1e-30))


@LM_METRICS.register("truth_ratio")
class TruthRatio(LMMetric):
    """Forget truth ratio ``mean(min(TR, 1/TR))`` (TOFU; higher = the model no longer prefers the truth)."""

    def compute(self, ctx: Context) -> dict[str, Value]:
        if "forget" not in ctx.scores.perturbed:
            return {}
        return {"forget_truth_ratio": mean_of(forget_tr(ctx.scores), True)}


@LM_METRICS.register("forget_quality")
class ForgetQuality(LMMetric):
    """Forget quality: KS-test p-value of forget truth ratios against the oracle's (TOFU)."""

    needs = ("oracle",)

    def compute(self, ctx: Context) -> dict[str, Value]:
        from scipy.stats import ks_2samp

        if ctx.oracle is None or "forget" not in ctx.scores.perturbed:
            return {}
        p = ks_2samp(forget_tr(ctx.scores), forget_tr(ctx.oracle)).pvalue
        return {"forget_quality": point(float(p), True, len(ctx.scores.prob["forget"]))}
