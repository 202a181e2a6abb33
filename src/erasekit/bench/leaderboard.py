"""The leaderboard of a benchmark: per concept, each method's evaluation metrics and attack success
rates over the spec's seeds, the worst case over the attack ladder, and cost.

Intervals: an evaluation metric's is a t interval over the seeds' values (one seed: that run's own
bootstrap interval); an attack's ASR pools the targets of every seed and takes the Wilson interval.
``overlaps_best`` marks the methods whose interval overlaps the best method's on that column: the
data cannot tell them apart.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from typing import Any

import numpy as np

from erasekit.bench.lm_cells import FAMILY as LM_FAMILY
from erasekit.bench.rows import bench_cells
from erasekit.store import Store

#: Evaluation metrics on the leaderboard (those a run lacks are left out), higher is better unless named.
METRICS = ("efficacy", "efficacy_known", "efficacy_known_disjoint", "efficacy_unseen", "efficacy_heldout_pairs",
           "ira", "cra", "fd_base", "oracle_fd_target")
LOWER_IS_BETTER = frozenset({"fd_base", "oracle_fd_target"})
#: The language-model leaderboard's metrics (TOFU's forget accuracy and quality, utility, privacy).
LM_METRICS = ("forget_acc", "surrogate_acc", "unseen_acc", "two_hop_acc", "forget_quality", "model_utility",
              "privleak", "first_token_kl")
LM_LOWER_IS_BETTER = frozenset({"forget_acc", "surrogate_acc", "unseen_acc", "two_hop_acc", "first_token_kl"})


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score 95% interval of ``k`` successes in ``n`` trials."""
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    low, high = max(0.0, centre - half), min(1.0, centre + half)
    return (0.0 if k == 0 else low, 1.0 if k == n else high)  # exact at the ends (no 0.9999999)


def over_seeds(values: list[float], own_ci: list[float] | None) -> dict[str, Any]:
    """Mean over seeds with a 95% t interval (one seed: the run's own interval)."""
    from scipy import stats

    v = np.asarray(values, dtype=np.float64)
    if v.size == 1:
        return {"value": float(v[0]), "ci95": own_ci, "n_seeds": 1}
    half = float(stats.t.ppf(0.975, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size))
    return {"value": float(v.mean()), "ci95": [float(v.mean()) - half, float(v.mean()) + half], "n_seeds": int(v.size)}


def _attack_rows(store: Store, attack_ids: list[str]) -> list[dict[str, Any]]:
    out = []
    for aid in attack_ids:
        row = store.attack_run(aid)
        if row is not None:
            out.append({**row, "samples": store.attack_samples(aid)})
    return out


def leaderboard(store: Store, bench: str) -> dict[str, Any]:
    """``{"bench", "concepts": {concept: [row per method label, the baseline first]},
    "tasks": {task: [row per language-model method label, the baseline first]}}``."""
    groups: dict[tuple[bool, str, str], list[dict[str, Any]]] = defaultdict(list)
    for cell in bench_cells(store, bench):
        lm = json.loads(cell["config"]).get("family") == LM_FAMILY
        groups[(lm, cell["concept"], cell["label"])].append(cell)
    concepts: dict[str, list[dict[str, Any]]] = defaultdict(list)
    tasks: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for (lm, concept, label), cells in sorted(groups.items(),
                                              key=lambda kv: (kv[0][1], kv[0][2] != "baseline", kv[0][2])):
        if lm:
            tasks[concept].append(_lm_row(store, label, cells))
        else:
            concepts[concept].append(_row(store, label, cells))
    for rows in concepts.values():
        _mark_overlaps(rows)
    for rows in tasks.values():
        # privleak is best near 0 (the oracle's own leak), not at an end: no best to overlap
        _mark_overlaps(rows, tuple(k for k in LM_METRICS if k != "privleak"), LM_LOWER_IS_BETTER, "recovered")
    return {"bench": bench, "concepts": dict(concepts), "tasks": dict(tasks)}


def _row(store: Store, label: str, cells: list[dict[str, Any]]) -> dict[str, Any]:
    metrics = _seed_metrics(store, cells, METRICS, LOWER_IS_BETTER)
    attacks: dict[str, dict[str, Any]] = {}
    for c in cells:
        for a in _attack_rows(store, c["attack_ids"]):
            slot = attacks.setdefault(a["attack"], {"attack": a["attack"], "budget": a["budget"],
                                                    "budget_unit": a["budget_unit"], "k": 0, "pre_k": 0, "n": 0,
                                                    "wall_seconds": 0.0})
            slot["k"] += sum(s["success"] for s in a["samples"])
            slot["pre_k"] += sum(s["pre_success"] for s in a["samples"])
            slot["n"] += len(a["samples"])
            slot["wall_seconds"] += a["wall_seconds"]
    for slot in attacks.values():
        n = slot["n"]
        slot.update(asr=slot["k"] / n if n else None, pre_asr=slot["pre_k"] / n if n else None,
                    ci95=list(wilson(slot["k"], n)))
    scored = [a for a in attacks.values() if a["asr"] is not None and _threat(a["attack"])]
    worst = max(scored, key=lambda a: (a["asr"], -a["budget"])) if scored else None
    cost = _cost(cells)
    return {"label": label, "method": cells[0]["method"], "seeds": sorted(c["seed"] for c in cells),
            "metrics": metrics, "attacks": attacks, "worst_attack": worst, "cost": cost,
            "config": json.loads(cells[0]["config"]).get("config", {})}


def _threat(name: str) -> bool:
    """Whether a diffusion attack counts in the worst case (an analysis does not; an attack whose
    plugin is gone counts, as it did when stored)."""
    from erasekit.attacks.base import ATTACKS

    return name not in ATTACKS or ATTACKS.get(name).worst_case


def _lm_row(store: Store, label: str, cells: list[dict[str, Any]]) -> dict[str, Any]:
    """A language-model method's row: its metrics over seeds, each attack's recovered forget
    accuracy over seeds, and the attack that recovered the most (the worst case, over the attacks
    that count toward it)."""
    from erasekit.lm.attacks.base import get_lm_attack

    metrics = _seed_metrics(store, cells, LM_METRICS, LM_LOWER_IS_BETTER)
    found: dict[str, list[float]] = defaultdict(list)
    info: dict[str, dict[str, Any]] = {}
    for c in cells:
        for aid in c["attack_ids"]:
            a = store.attack_run(aid)
            if a is None:
                continue
            key = get_lm_attack(a["attack"]).recovered_key(a["budget"])
            values = store.attack_values(aid)
            if key in values:
                found[a["attack"]].append(values[key]["value"])
                slot = info.setdefault(a["attack"], {"attack": a["attack"], "budget": a["budget"],
                                                     "budget_unit": a["budget_unit"], "key": key, "wall_seconds": 0.0})
                slot["wall_seconds"] += a["wall_seconds"]
    attacks = {name: {**info[name], **over_seeds(v, None)} for name, v in found.items()}
    for a in attacks.values():
        a["recovered"] = a["value"]
    threats = [a for name, a in attacks.items() if get_lm_attack(name).worst_case]
    worst = max(threats, key=lambda a: (a["recovered"], -a["budget"])) if threats else None
    cost = _cost(cells)
    return {"label": label, "method": cells[0]["method"], "seeds": sorted(c["seed"] for c in cells),
            "metrics": metrics, "attacks": attacks, "worst_attack": worst, "cost": cost,
            "config": json.loads(cells[0]["config"]).get("config", {})}


def _seed_metrics(store: Store, cells: list[dict[str, Any]], keys: tuple[str, ...],
                  lower: frozenset[str]) -> dict[str, dict[str, Any]]:
    """Each of ``keys`` that every seed's run has: its mean over seeds with the interval."""
    per_seed = [store.metrics(c["run_id"]) for c in cells]
    metrics = {}
    for key in keys:
        have = [m[key] for m in per_seed if key in m]
        if have and len(have) == len(per_seed):
            metrics[key] = {**over_seeds([h["value"] for h in have], have[0]["ci95"]),
                            "higher_is_better": key not in lower}
    return metrics


def _cost(cells: list[dict[str, Any]]) -> dict[str, float | None]:
    return {key: _mean([c[key] for c in cells]) for key in ("fit_seconds", "peak_memory_mb", "artifact_bytes")}


def _mean(values: list[Any]) -> float | None:
    have = [v for v in values if v is not None]
    return float(np.mean(have)) if have else None


def _mark_overlaps(rows: list[dict[str, Any]], metrics: tuple[str, ...] = METRICS,
                   lower: frozenset[str] = LOWER_IS_BETTER, worst_key: str = "asr") -> None:
    """Set ``overlaps_best`` on every metric and on the worst case of the method rows."""
    methods = [r for r in rows if r["method"] is not None]
    for key in metrics:
        have = [r["metrics"][key] for r in methods if key in r["metrics"]]
        if not have:
            continue
        best = (min if key in lower else max)(have, key=lambda m: m["value"])
        for m in have:
            m["overlaps_best"] = _overlap(m, best)
    worst = [r["worst_attack"] for r in methods if r["worst_attack"] is not None]
    if worst:
        best = min(worst, key=lambda a: a[worst_key])  # the most robust method: lowest worst case
        for a in worst:
            a["overlaps_best"] = _overlap(a, best)


def _overlap(a: dict[str, Any], b: dict[str, Any]) -> bool:
    if a is b:
        return True
    if not a.get("ci95") or not b.get("ci95"):
        return False
    return a["ci95"][0] <= b["ci95"][1] and b["ci95"][0] <= a["ci95"][1]
