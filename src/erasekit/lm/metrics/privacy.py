"""Membership inference on the forget set (MUSE's privleak; Shi et al. 2024's Min-K% Prob).

Members are the forget questions, non-members the holdout entities' questions (never trained).
``mia_auc_loss`` scores by minus the mean token loss, ``mia_auc_mink`` by the mean of the lowest
20% token log-probabilities. ``privleak = (AUC - AUC_oracle) / AUC_oracle * 100`` with the
Min-K% AUC: near 0 is ideal; strongly negative means over-unlearning (the "Streisand" signal).
"""

from __future__ import annotations

from erasekit.lm.metrics.base import LM_METRICS, Context, LMMetric, auc, point
from erasekit.metrics.base import Value


@LM_METRICS.register("mia")
class MembershipInference(LMMetric):
    """MIA AUC (loss and Min-K%) of forget vs holdout, and privleak against the oracle (MUSE)."""

    def compute(self, ctx: Context) -> dict[str, Value]:
        s = ctx.scores
        if "forget" not in s.mia_loss or "holdout" not in s.mia_loss:
            return {}
        n = len(s.mia_loss["forget"]) + len(s.mia_loss["holdout"])
        a_loss = auc(s.mia_loss["forget"], s.mia_loss["holdout"])
        a_mink = auc(s.mia_mink["forget"], s.mia_mink["holdout"])
        out = {"mia_auc_loss": point(a_loss, False, n), "mia_auc_mink": point(a_mink, False, n)}
        if ctx.oracle is not None and "forget" in ctx.oracle.mia_mink:
            a_or = auc(ctx.oracle.mia_mink["forget"], ctx.oracle.mia_mink["holdout"])
            out["privleak"] = point((a_mink - a_or) / a_or * 100.0, False, n, {"oracle_auc": round(a_or, 4)})
        return out
