"""Linear probing attack (latent traces; KIF, PGA arXiv 2605.01699): is the answer still decodable inside?

For every attribute and layer, a logistic-regression probe on the last-prompt-token residual
stream is fitted on retain entities' questions and tested on the forget entities' questions. The
best layer's accuracy (mean over attributes) is compared with the same probe on the oracle, which
never learnt the forget facts. Budget: the probe's maximum optimiser iterations.
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


def probe_accuracy(lm: LM, task: Task, max_iter: int = 500, seed: int = 0) -> list[float]:
    """Per layer output (embeddings first): mean over attributes of the forget-entity probe accuracy."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    per_layer: list[list[float]] = []
    for rows in task.probe.values():
        states = M.last_token_states(lm, [q for q, _, _ in rows])
        y = np.array([v for _, v, _ in rows])
        train = np.array([s == "retain" for _, _, s in rows])
        for li, h in enumerate(states):
            x = h.numpy()
            scaler = StandardScaler().fit(x[train])
            clf = LogisticRegression(max_iter=max_iter, random_state=seed)
            clf.fit(scaler.transform(x[train]), y[train])
            acc = float((clf.predict(scaler.transform(x[~train])) == y[~train]).mean())
            if len(per_layer) <= li:
                per_layer.append([])
            per_layer[li].append(acc)
    return [float(np.mean(a)) for a in per_layer]


@LM_ATTACKS.register("probe")
class Probe(LMAttack):
    """Probing: logistic regression on hidden states, fit on retain entities, tested on forget entities."""

    budget_unit = "probe iterations"
    default_budget = 500
    recovered = "probe_acc"
    needs = ("attribute labels",)

    def run(self, lm: LM, task: Task, oracle: LM | None, budget: int, seed: int = 0,
            base: LM | None = None) -> dict[str, Value]:
        self.check_budget(budget)
        if not task.probe:
            raise UserError(f"the probe attack needs attribute labels; task {task.spec.task!r} has none (use tinytofu)")
        accs = probe_accuracy(lm, task, budget, seed)
        n = sum(1 for rows in task.probe.values() for r in rows if r[2] == "forget")
        out = {"probe_acc": point(max(accs), False, n, {"per_layer": [round(a, 4) for a in accs]})}
        if oracle is not None:
            o = probe_accuracy(oracle, task, budget, seed)
            out["probe_oracle_acc"] = point(max(o), False, n, {"per_layer": [round(a, 4) for a in o]})
        return out
