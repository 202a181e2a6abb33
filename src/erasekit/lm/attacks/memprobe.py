"""Cross-sequence memorisation probe as an attack (Probe-Geometry Alignment, Rupa & Andy, arXiv 2605.01699).

The ``mem_probe`` metric's probe (:mod:`erasekit.lm.metrics.memprobe`: per layer, a logistic
regression on the states at the answer's last token separates the forget authors' facts from the
never-trained holdout authors', leave-one-author-pair-out) on the first ``budget`` author pairs
(the paper's N), on the model and on the oracle. The value is the best layer's accuracy; 0.5 is chance.
"""

from __future__ import annotations

from erasekit.errors import UserError
from erasekit.lm import model as M
from erasekit.lm.attacks.base import LM_ATTACKS, LMAttack
from erasekit.lm.metrics.base import point
from erasekit.lm.metrics.memprobe import author_pairs, loo_accuracy
from erasekit.lm.model import LM
from erasekit.lm.tasks import Task
from erasekit.metrics.base import Value


@LM_ATTACKS.register("mem_probe")
class MemorisationProbe(LMAttack):
    """Cross-sequence probe: unlearned facts vs never-trained ones, leave-one-pair-out, per layer (PGA)."""

    threat_model = "white-box: hidden states"
    budget_unit = "pairs"
    default_budget = 12
    recovered = "mem_probe_acc"

    def run(self, lm: LM, task: Task, oracle: LM | None, budget: int, seed: int = 0,
            base: LM | None = None) -> dict[str, Value]:
        self.check_budget(budget)
        if budget < 2:
            raise UserError(f"budget: the mem_probe attack needs >= 2 author pairs, got {budget}")
        items = task.eval.get("forget", []) + task.eval.get("holdout", [])
        idx, y, pair = author_pairs(task.eval.get("forget", []), task.eval.get("holdout", []), budget)
        if len(set(pair.tolist())) < 2:
            raise UserError("the mem_probe attack needs questions about >= 2 forget and >= 2 holdout authors")
        texts = [lm.qa_text(items[i].question, items[i].answer) for i in idx]
        out = {}
        for key, model in (("mem_probe_acc", lm), ("mem_probe_oracle_acc", oracle)):
            if model is not None:
                accs = loo_accuracy(M.text_states(model, texts), y, pair, seed)
                out[key] = point(max(accs), False, len(y), {"per_layer": [round(a, 4) for a in accs]})
        return out
