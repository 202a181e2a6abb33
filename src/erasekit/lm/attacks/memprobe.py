"""Cross-sequence memorisation probe (Probe-Geometry Alignment, Rupa & Andy, arXiv 2605.01699).

Can a linear probe on the hidden states still tell the facts the model was trained on and then
unlearned from facts it never saw? Pairs (forget author ``i``, holdout author ``i``), each with all
its questions and answers: the holdout authors were never trained, so theirs are the "clean"
texts. For each layer, a logistic regression (C = 1) on standardised states at the answer's last token is fitted
on all pairs but one and tested on the left-out pair's texts (leave-one-pair-out, as the paper's
notebook does; a pair is two authors, so no author is on both sides); the layer's accuracy is
over all held-out texts. A model that forgot at the representation level sits at chance (0.5), as the
oracle does; the paper reports 0.07-0.45 after its alignment and +0.2 to +0.3 gaps before. The
value is the best layer's accuracy. Budget: the number of author pairs (the paper's N).
"""

from __future__ import annotations

import numpy as np

from erasekit.errors import UserError
from erasekit.lm import model as M
from erasekit.lm.attacks.base import LM_ATTACKS, LMAttack
from erasekit.lm.metrics.base import point
from erasekit.lm.model import LM
from erasekit.lm.tasks import Task
from erasekit.metrics.base import Value


def loo_probe_accuracy(lm: LM, members: list[list[str]], clean: list[list[str]], seed: int = 0) -> list[float]:
    """Per layer output (embeddings first): leave-one-pair-out accuracy of a member-vs-clean probe;
    ``members[i]`` and ``clean[i]`` are the texts of pair ``i``'s two authors."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    n = min(len(members), len(clean))
    texts = [t for group in members[:n] + clean[:n] for t in group]
    y = np.array([1] * sum(len(g) for g in members[:n]) + [0] * sum(len(g) for g in clean[:n]))
    pair = np.array([i for i, g in enumerate(members[:n]) for _ in g] + [i for i, g in enumerate(clean[:n]) for _ in g])
    states = M.text_states(lm, texts)
    out = []
    for h in states:
        x = h.numpy().astype(np.float64)
        hits = 0
        for i in range(n):
            train, test = pair != i, pair == i
            scaler = StandardScaler().fit(x[train])
            clf = LogisticRegression(C=1.0, max_iter=1000, random_state=seed).fit(scaler.transform(x[train]), y[train])
            hits += int((clf.predict(scaler.transform(x[test])) == y[test]).sum())
        out.append(hits / len(texts))
    return out


def by_author(lm: LM, items: list) -> list[list[str]]:
    """Each question with its answer, as the model was trained on them, grouped by author."""
    groups: dict[str, list[str]] = {}
    for q in items:
        groups.setdefault(q.entity, []).append(lm.prompt(q.question) + lm.answer_text(q.answer))
    return list(groups.values())


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
        forget, holdout = task.eval.get("forget", []), task.eval.get("holdout", [])
        if budget < 2:
            raise UserError(f"budget: the mem_probe attack needs >= 2 author pairs, got {budget}")
        members, clean = by_author(lm, forget)[:budget], by_author(lm, holdout)[:budget]
        if len(members) < 2 or len(clean) < 2:
            raise UserError("the mem_probe attack needs questions about >= 2 forget and >= 2 holdout authors")
        accs = loo_probe_accuracy(lm, members, clean, seed)
        n = sum(len(g) for g in members[: len(clean)] + clean[: len(members)])
        out = {"mem_probe_acc": point(max(accs), False, n, {"per_layer": [round(a, 4) for a in accs]})}
        if oracle is not None:
            o = loo_probe_accuracy(oracle, members, clean, seed)
            out["mem_probe_oracle_acc"] = point(max(o), False, n, {"per_layer": [round(a, 4) for a in o]})
        return out
