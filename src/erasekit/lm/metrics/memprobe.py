"""PGA's cross-sequence memorisation probe (Rupa & Andy, "Probe-Geometry Alignment: Erasing the
Cross-Sequence Memorization Signature Below Chance", arXiv 2605.01699).

Can a linear probe on the hidden states tell the facts the model was trained on (and perhaps then
unlearned) from facts it never saw? Pairs (forget author ``i``, holdout author ``i``), each with all
its questions and answers: the holdout authors were never trained, so theirs are the "clean"
texts. For each layer output, a logistic regression (C = 1) on standardised states at the answer's
last token is fitted on all pairs but one and tested on the left-out pair's texts
(leave-one-pair-out, as the paper's notebook does; no author is on both sides); the layer's
accuracy is over all held-out texts. 0.5 is chance; the paper reports +0.19 to +0.32 above it
on memorising models and 0.06-0.45 after its alignment. Steps of ``1 / (texts)``: report N.

``mem_probe_acc`` is the best layer's accuracy (every layer in ``meta``); with the model before
unlearning and the oracle, ``mem_probe_before_acc`` and ``mem_probe_oracle_acc`` beside it. The
``mem_probe`` attack runs the same probe on fewer pairs (its budget).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from erasekit.lm.data import QA
from erasekit.lm.metrics.base import LM_METRICS, Context, LMMetric, Scores, point
from erasekit.metrics.base import Value

#: the eval sets the probe reads (members, never-trained): their answer states are in :class:`Scores`
PROBE_SETS = ("forget", "holdout")


def author_pairs(members: list[QA], clean: list[QA], n: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For the first ``n`` (member author, clean author) pairs: the indices of their items in
    ``members + clean``, the labels (1: member) and each item's pair index."""
    def groups(items: list[QA], offset: int) -> list[list[int]]:
        out: dict[str, list[int]] = {}
        for i, q in enumerate(items):
            out.setdefault(q.entity, []).append(offset + i)
        return list(out.values())

    m, c = groups(members, 0), groups(clean, len(members))
    idx: list[int] = []
    y: list[int] = []
    pair: list[int] = []
    for p in range(min(len(m), len(c), len(m) if n is None else n)):
        for label, g in ((1, m[p]), (0, c[p])):
            idx, y, pair = idx + g, y + [label] * len(g), pair + [p] * len(g)
    return np.array(idx, dtype=int), np.array(y, dtype=int), np.array(pair, dtype=int)


def fit_probe(x: np.ndarray, y: np.ndarray, seed: int = 0) -> tuple[Any, Any]:
    """The paper's probe: logistic regression (C = 1) on standardised features; ``(scaler, classifier)``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(x)
    return scaler, LogisticRegression(C=1.0, max_iter=1000, random_state=seed).fit(scaler.transform(x), y)


def probe_direction(x: torch.Tensor, y: np.ndarray, seed: int = 0) -> torch.Tensor:
    """The probe's unit direction in the raw state space: ``w = (coef / scale) / |coef / scale|``."""
    scaler, clf = fit_probe(x.detach().double().numpy(), y, seed)
    w = torch.from_numpy(clf.coef_[0] / scaler.scale_).float()
    return w / w.norm().clamp(min=1e-12)


def loo_accuracy(states: list[torch.Tensor], y: np.ndarray, pair: np.ndarray, seed: int = 0) -> list[float]:
    """Per layer output: the leave-one-pair-out accuracy of a member-vs-clean probe on ``states[l][i]``."""
    out = []
    for h in states:
        x = h.numpy().astype(np.float64)
        hits = 0
        for p in np.unique(pair):
            train, test = pair != p, pair == p
            scaler, clf = fit_probe(x[train], y[train], seed)
            hits += int((clf.predict(scaler.transform(x[test])) == y[test]).sum())
        out.append(hits / len(y))
    return out


def probe_of(scores: Scores, members: list[QA], clean: list[QA]) -> Value | None:
    """The best layer's leave-one-pair-out accuracy on a model's stored answer states."""
    if not all(name in scores.answer_states for name in PROBE_SETS):
        return None
    idx, y, pair = author_pairs(members, clean)
    if len(np.unique(pair)) < 2:
        return None
    states = [torch.cat([a, b])[idx] for a, b in zip(*(scores.answer_states[n] for n in PROBE_SETS))]
    accs = loo_accuracy(states, y, pair)
    return point(max(accs), False, len(y), {"per_layer": [round(a, 4) for a in accs], "pairs": int(pair.max()) + 1})


@LM_METRICS.register("mem_probe")
class MemorisationProbe(LMMetric):
    """PGA's cross-sequence probe: forget vs never-trained authors' facts, leave-one-pair-out (0.5 = chance)."""

    reads = ("answer_states",)

    def compute(self, ctx: Context) -> dict[str, Value]:
        members, clean = ctx.task.eval.get("forget", []), ctx.task.eval.get("holdout", [])
        if not members or not clean or not all(q.entity for q in members + clean):
            return {}
        out = {}
        for key, scores in (("mem_probe_acc", ctx.scores), ("mem_probe_before_acc", ctx.base),
                            ("mem_probe_oracle_acc", ctx.oracle)):
            v = probe_of(scores, members, clean) if scores is not None else None
            if v is not None:
                out[key] = v
        return out
