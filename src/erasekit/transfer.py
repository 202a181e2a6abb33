"""Transfer matrix: the adversarial inputs that broke one erased model, replayed on every other.

An attack run stores, per target, the input it found: a prompt (``discrete``, ``p4d``,
``ringabell``), a prompt embedding (``embedding``), a learned token (``inversion``) or inverted
latents (``latent``). Replaying the inputs that broke model A on model B, with the same target
prompt and noise, gives the share that break B too: row A, column B of that attack's matrix (the
transfer study of UnlearnDiffAtk, Zhang et al. ECCV 2024, and of Ring-A-Bell, whose prompts are
found once and sent to every erased model). Rows are the database's attack runs of a replayable
attack (:attr:`~erasekit.attacks.base.Attack.transferable`), the unedited model's included (a
black-box source); columns are the erased models the database's attack runs were made on.

The diagonal replays each input on the model it was found on, so it is 1: a check that replay
reproduces the attack's own image. Attacks whose result is not an input (a fine-tuned adapter, a
sampler composition, a paraphrase list tried in a fixed order) have no rows. Each cell is stored in
``transfer_cells`` keyed by the source run, the target artifact's digest and the base model, so a
repeated call computes only new cells.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from erasekit.attacks.base import ATTACKS, AttackContext, Found, attack_targets
from erasekit.concepts import Concept
from erasekit.erasure import Stack
from erasekit.errors import UserError
from erasekit.files import load_tensors
from erasekit.pipelines import fingerprint
from erasekit.provenance import content_id, record
from erasekit.stats import bootstrap_mean
from erasekit.store import Store


@dataclass(frozen=True)
class Model:
    """A column: an erased model some attack run of the database was made on."""

    name: str  # the attack runs' run name
    digest: str  # the artifact's digest (a stack's: over its parts)
    artifact: str  # its folder(s) as stored (``a + b`` for a stack)


def transferable(attack: str) -> bool:
    return attack in ATTACKS.names() and ATTACKS.get(attack).transferable


def _cfg(run: dict[str, Any]) -> dict[str, Any]:
    return json.loads(run["config"])


def sources(store: Store, concept: str, attacks: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """The rows: stored diffusion attack runs on ``concept`` of a replayable attack (``attacks``:
    only those), in storage order."""
    return [r for r in store.attack_runs() if r["asr"] is not None and r["concept"] == concept
            and transferable(r["attack"]) and (attacks is None or r["attack"] in attacks)]


def models(store: Store, concept: str) -> list[Model]:
    """The columns: every erased model an attack run on ``concept`` was made on (one per artifact)."""
    out: dict[str, Model] = {}
    for r in store.attack_runs():
        info = _cfg(r).get("artifact") if r["kind"] == "erasure" and r["concept"] == concept else None
        if info and r["artifact"] and info["digest"] not in out:
            out[info["digest"]] = Model(r["run_name"], info["digest"], r["artifact"])
    return list(out.values())


def _folders(model: Model, db: Path) -> list[Path]:
    """The artifact folders as stored: as given (relative to here), else beside the database."""
    found = []
    for f in model.artifact.split(" + "):
        here, beside = Path(f), db.parent / f
        if not here.is_dir() and not beside.is_dir():
            raise UserError(f"artifact folder {f} of {model.name} (recorded in {db}) is neither here nor beside the "
                            "database; run from the folder the attacks were run in")
        found.append(here if here.is_dir() else beside)
    return found


def found_inputs(store: Store, run: dict[str, Any], concept: Concept) -> list[tuple[int, Found]]:
    """``(target_index, input)`` for every target whose attack broke the source model (pre-attack
    successes of a run that did not attack them found nothing and are left out)."""
    cfg = _cfg(run)
    noise = {(p, s): k for k, p, _, s in attack_targets(concept, cfg["n_prompts"], cfg["seeds"])}
    out = []
    for s in store.attack_samples(run["attack_id"]):
        if not s["success"] or (s["pre_success"] and not cfg.get("every_target")):
            continue
        tensors = load_tensors(store.path.parent / s["adversarial_path"]) if s["adversarial_path"] else {}
        out.append((s["target_index"], Found(s["prompt"], s["seed"], noise[(s["prompt"], s["seed"])],
                                             s["adversarial_text"], tensors, s["note"])))
    return out


def cell_id(run: dict[str, Any], model: Model, base: str) -> str:
    return content_id({"source": run["attack_id"], "target": model.digest, "base": base})


def transfer(
    store: Store,
    pipe: Any,
    judge: Any,
    concept: Concept,
    attacks: Sequence[str] | None = None,
    names: Sequence[str] | None = None,
    force: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Replay every source run's found inputs on every model (``names``: only these columns) and
    store the cells; returns ``{"computed": n, "matrices": matrices(store, concept)}``."""
    from tqdm.auto import tqdm

    for a in attacks or ():
        if not transferable(a):
            ok = ", ".join(n for n in ATTACKS.names() if transferable(n))
            raise UserError(f"attack {a!r} finds no input to replay on another model; choose from {ok}")
    base = fingerprint(pipe)
    rows = [r for r in sources(store, concept.name, attacks) if _cfg(r).get("base_fingerprint") == base]
    cols = models(store, concept.name)
    if names is not None:
        unknown = sorted(set(names) - {m.name for m in cols})
        if unknown:
            raise UserError(f"no attack run in {store.path} was made on {unknown[0]!r}; choose from "
                            f"{', '.join(m.name for m in cols) or '(none)'}")
        cols = [m for m in cols if m.name in names]
    if not rows or not cols:
        raise UserError(f"{store.path} has no {'source attack runs' if not rows else 'erased models'} on "
                        f"{concept.name!r} to build a transfer matrix from: run `erasekit attack` with one of "
                        f"{', '.join(n for n in ATTACKS.names() if transferable(n))} on two or more erasures first")
    todo = [(m, r) for m in cols for r in rows if force or store.transfer_cell(cell_id(r, m, base)) is None]
    inputs: dict[str, list[tuple[int, Found]]] = {}
    bar = tqdm(total=len(todo), desc="transfer", unit="cell", disable=not progress)
    for model in dict.fromkeys(m for m, _ in todo):
        erasure = Stack.load(_folders(model, store.path))
        erasure.check(pipe)
        erasure.apply(pipe)
        try:
            for m, run in todo:
                if m != model:
                    continue
                t0 = time.perf_counter()
                cfg = _cfg(run)
                atk = ATTACKS.create(run["attack"])
                ctx = AttackContext(pipe, erasure, concept, judge, cfg["steps"], cfg["guidance"],
                                    cfg.get("guided_loss", True))
                if run["attack_id"] not in inputs:
                    inputs[run["attack_id"]] = found_inputs(store, run, concept)
                found = inputs[run["attack_id"]]
                images = [atk.replay(ctx, f) for _, f in found]
                wins = [ctx.shows_concept(v) for v in ctx.judge_images(np.stack(images))] if images else []
                store.add_transfer({
                    "cell_id": cell_id(run, model, base), "attack_id": run["attack_id"], "target": model.name,
                    "target_digest": model.digest, "target_artifact": model.artifact, "n": len(found),
                    "successes": int(sum(wins)), "outcomes": json.dumps([[i, int(w)] for (i, _), w in zip(found, wins)]),
                    "wall_seconds": round(time.perf_counter() - t0, 2), **record()})
                bar.update()
        finally:
            erasure.remove(pipe)
    bar.close()
    return {"computed": len(todo), "matrices": matrices(store, concept.name)}


def matrices(store: Store, concept: str | None = None, attacks: list[dict[str, Any]] | None = None,
             samples: Callable[[str], list[dict[str, Any]]] | None = None) -> list[dict[str, Any]]:
    """The stored transfer cells, one matrix per concept and attack: ``{"concept", "attack",
    "columns": [model names], "rows": [{"source", "threat", "budget", "found", "cells": {column:
    {"rate", "ci95", "successes", "n"} or None}}]}``; intervals are cluster-bootstrap over prompts.
    ``attacks`` and ``samples``: the attack runs and a sample reader the caller has already."""
    runs = {r["attack_id"]: r for r in (store.attack_runs() if attacks is None else attacks)}
    samples = samples or store.attack_samples
    prompts_of: dict[str, dict[int, str]] = {}  # a source's target prompts, read once for all its columns
    by: dict[tuple[str, str], dict[str, Any]] = {}
    for c in store.transfer_cells():
        src = runs.get(c["attack_id"])
        if src is None or (concept is not None and src["concept"] != concept):
            continue
        m = by.setdefault((src["concept"], src["attack"]), {"concept": src["concept"], "attack": src["attack"],
                                                            "columns": [], "rows": {}})
        if c["target"] not in m["columns"]:
            m["columns"].append(c["target"])
        row = m["rows"].setdefault(c["attack_id"], {
            "source": src["run_name"], "threat": _cfg(src).get("threat"), "budget": src["budget"],
            "budget_unit": src["budget_unit"], "cells": {}})
        row["found"] = c["n"]
        pairs = json.loads(c["outcomes"])
        if pairs:
            if c["attack_id"] not in prompts_of:
                prompts_of[c["attack_id"]] = {s["target_index"]: s["prompt"] for s in samples(c["attack_id"])}
            prompts = prompts_of[c["attack_id"]]
            groups = {p: k for k, p in enumerate(dict.fromkeys(prompts[i] for i, _ in pairs))}
            rate, low, high = bootstrap_mean([w for _, w in pairs], [groups[prompts[i]] for i, _ in pairs])
            row["cells"][c["target"]] = {"rate": rate, "ci95": [low, high], "successes": c["successes"], "n": c["n"]}
        else:
            row["cells"][c["target"]] = None  # the source broke nothing: nothing to replay
    first = {}  # rows and columns in the order their attack runs were stored
    for k, r in enumerate(runs.values()):
        first.setdefault(r["run_name"], k)
    rank = {a: k for k, a in enumerate(runs)}
    for m in by.values():
        m["columns"].sort(key=lambda c: first.get(c, len(first)))
        m["rows"] = [row for _, row in sorted(m["rows"].items(), key=lambda kv: rank[kv[0]])]
    return list(by.values())
