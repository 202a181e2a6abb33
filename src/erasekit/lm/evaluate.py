"""Evaluate and attack language models into the shared results database.

An LM evaluation is a row of the same ``runs`` table as a diffusion evaluation (``kind`` =
``lm-base``, ``lm-oracle`` or ``lm-erasure``) with its values in ``metric_values`` /
``sample_values``; an attack is a row of the same ``attack_runs`` table as a diffusion attack,
pointing at the run it attacked, with its values in ``attack_values``. Ids are content ids
(:func:`erasekit.provenance.content_id`) of the inputs: base weights, task, kind and artifact.
"""

from __future__ import annotations

import hashlib
import json
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from erasekit.errors import UserError
from erasekit.lm import model as M
from erasekit.lm.attacks.base import BASE, get_lm_attack
from erasekit.lm.methods.base import LMErasure
from erasekit.lm.metrics.base import Context, Scores, compute_scores, get_lm_metric, lm_metric_names
from erasekit.lm.tasks import Forget, Task, get_task
from erasekit.metrics.base import Value
from erasekit.provenance import content_id, record, utc_now
from erasekit.store import Store


def tensor_digest(tensors: dict) -> str:
    """SHA-256 (16 hex digits) over an artifact's tensors, in key order."""
    h = hashlib.sha256()
    for k in sorted(tensors):
        h.update(k.encode() + b"\0" + tensors[k].float().numpy().tobytes())
    return h.hexdigest()[:16]


def run_id_for(lm: M.LM, spec: Forget, erasure: LMErasure | None, kind: str) -> str:
    artifact = None if erasure is None else {**erasure.to_json(), "tensors": tensor_digest(erasure.tensors)}
    return content_id({"base": M.fingerprint(lm.model), "task": spec.to_dict(), "kind": kind, "artifact": artifact})


def metric_values(task: Task, scores: Scores, oracle: Scores | None, base: Scores | None,
                  metrics: tuple[str, ...] | None = None) -> dict[str, dict[str, Value]]:
    ctx = Context(task, scores, oracle, base)
    return {name: get_lm_metric(name).compute(ctx) for name in (metrics or tuple(lm_metric_names()))}


def evaluate(store: Store, lm: M.LM, spec: Forget, *, erasure: LMErasure | None = None,
             oracle: M.LM | None = None, name: str | None = None, artifact: str | None = None,
             kind: str | None = None, metrics: tuple[str, ...] | None = None,
             force: bool = False) -> dict[str, Any]:
    """Score ``lm`` (with ``erasure`` applied if given) on the task; store and return the values.

    The oracle (never trained on the forget set) and the model without the erasure are scored
    too, for forget quality, privleak and first-token KL.
    """
    task = get_task(spec)
    kind = kind or ("lm-erasure" if erasure is not None else "lm-base")
    run_id = run_id_for(lm, spec, erasure, kind)
    if store.run(run_id) is not None and not force and store.metric_names_done(run_id):
        return {"run_id": run_id, "metrics": store.metrics(run_id), "cached": True}
    start = time.perf_counter()
    base_scores = compute_scores(lm, task, metrics)
    oracle_scores = (base_scores if oracle is lm else compute_scores(oracle, task, metrics)) if oracle is not None else None
    if erasure is not None:
        with erasure.applied(lm):
            scores = compute_scores(lm, task, metrics)
    else:
        scores = base_scores
    values = metric_values(task, scores, oracle_scores, base_scores if erasure is not None else None, metrics)
    row = {
        "run_id": run_id, "name": name or (erasure.method if erasure else Path(lm.name).name), "kind": kind,
        "method": erasure.method if erasure else None, "concept": spec.task, "artifact": artifact,
        "config": json.dumps({"task": spec.to_dict(), "model": lm.name,
                              "erasure": erasure.to_json() if erasure else None,
                              "oracle": oracle.name if oracle is not None else None}),
        "seeds": json.dumps([spec.seed]), **record(),
    }
    if store.run(run_id) is not None:
        store.delete_run(run_id)
    store.add_run(row)
    for metric, vals in values.items():
        store.add_metric(run_id, metric, vals)
    store.complete_run(run_id, utc_now(), round(time.perf_counter() - start, 2))
    return {"run_id": run_id, "metrics": store.metrics(run_id), "cached": False}


def attack(store: Store, run_id: str, lm: M.LM, spec: Forget, attack_name: str, *,
           erasure: LMErasure | None = None, oracle: M.LM | None = None, budget: int | None = None,
           seed: int = 0) -> dict[str, Any]:
    """Run one attack on ``lm`` (with ``erasure`` applied) and store it as an attack run on ``run_id``."""
    atk = get_lm_attack(attack_name)
    budget = atk.default_budget if budget is None else budget
    atk.check_budget(budget)
    run = store.run(run_id)
    if run is None:
        raise UserError(f"run {run_id} is not in {store.path}; evaluate the model first")
    settings = {"attack": attack_name, "budget": budget, "seed": seed,
                "oracle": oracle.name if oracle is not None else None}
    attack_id = content_id({"run_id": run_id, **settings})
    stored = store.attack_run(attack_id)
    if stored is not None:  # the same attack on the same run: reuse it
        return {"run_id": run_id, "attack_id": attack_id, "attack": attack_name, "budget": budget,
                "wall_seconds": stored["wall_seconds"], "cached": True,
                "values": {k: v for k, v in store.attack_values(attack_id).items()}}
    task = get_task(spec)
    start = time.perf_counter()
    base = (M.clone(lm) if erasure is not None else lm) if BASE in atk.needs else None
    with erasure.applied(lm) if erasure is not None else nullcontext():
        values = atk.run(lm, task, oracle, budget, seed, base=base)
    wall = round(time.perf_counter() - start, 2)
    values = {k: Value(v.value, v.low, v.high, v.higher_is_better, v.n, v.samples,
                       {**v.meta, "budget": budget, "budget_unit": atk.budget_unit, "wall_seconds": wall})
              for k, v in values.items()}
    store.add_attack({
        "attack_id": attack_id, "run_name": run["name"], "kind": run["kind"], "method": run["method"],
        "concept": run["concept"], "artifact": run["artifact"], "attack": attack_name,
        "threat_model": atk.threat_model, "budget": budget, "budget_unit": atk.budget_unit,
        "config": json.dumps(settings), "n": max((v.n for v in values.values()), default=0), "wall_seconds": wall,
        "run_id": run_id, **record(),
    }, [], values)
    return {"run_id": run_id, "attack_id": attack_id, "attack": attack_name, "budget": budget, "wall_seconds": wall,
            "cached": False, "values": {k: v.to_json() for k, v in values.items()}}
