"""DUSK's measures (Jeung et al., "DUSK: Do Not Unlearn Shared Knowledge", arXiv 2505.15209), read
on the ``dusk`` task: unlearning one style's documents should remove their text and the facts only
they state, and keep the facts they share with the other documents.

- ``dusk_verbatim``: ROUGE-L recall of the greedy answer to each forget document's request
  against the document (verbatim memorisation; lower is better).
- ``dusk_forget_unique_acc``: cloze accuracy on the facts only the forget documents state (lower).
- ``dusk_shared_acc``: on the facts every document states, asked in the retain documents (higher).
- ``dusk_retain_unique_acc``: on the facts only a retain document states (higher).
- ``dusk_retain_dev``: ``|AUC - AUC_oracle| / AUC_oracle * 100`` with the Min-K% AUC of retain
  against never-trained documents: how far the retain documents' membership signal moved from the
  retrained model's (DUSK's RetainDeviation); ``dusk_retain_dev_base`` against the model before
  unlearning instead.

Privacy leakage (DUSK's PrivLeak, forget against never-trained documents, relative to the oracle)
is the ``mia`` metric's ``privleak`` on this task.
"""

from __future__ import annotations

from erasekit.lm.metrics.base import LM_METRICS, Context, LMMetric, Scores, auc, mean_of, point
from erasekit.metrics.base import Value

#: DUSK's fact sets, in its order: (value name, eval set, higher is better)
FACT_SETS = (("dusk_forget_unique_acc", "forget_unique", False), ("dusk_shared_acc", "shared", True),
             ("dusk_retain_unique_acc", "retain_unique", True))


def retain_auc(s: Scores) -> float:
    """Min-K% AUC of the retain documents (members) against the never-trained authors' documents in the same styles."""
    return auc(s.mia_mink["retain"], s.mia_mink["holdout_retain"])


@LM_METRICS.register("dusk")
class Dusk(LMMetric):
    """DUSK: forget-document verbatim ROUGE-L, cloze accuracy on forget-unique, shared and
    retain-unique facts, and retain deviation against the oracle and the model before unlearning."""

    needs = ("oracle", "base")

    def compute(self, ctx: Context) -> dict[str, Value]:
        s = ctx.scores
        if "shared" not in s.correct:
            return {}
        out = {"dusk_verbatim": mean_of(s.verbatim["forget"], False)}
        out |= {key: mean_of(s.correct[name], hib) for key, name, hib in FACT_SETS}
        n = len(s.mia_mink["retain"]) + len(s.mia_mink["holdout_retain"])
        for key, ref in (("dusk_retain_dev", ctx.oracle), ("dusk_retain_dev_base", ctx.base)):
            if ref is not None:
                a_ref = retain_auc(ref)
                out[key] = point(abs(retain_auc(s) - a_ref) / a_ref * 100.0, False, n, {"reference_auc": round(a_ref, 4)})
        return out
