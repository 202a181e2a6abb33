"""Benchmark cells: what one worker computes, keyed by the content of its inputs.

A cell is (method, concept, seed): fit (or reuse a cached artifact of the same fit), evaluate,
then run every attack. ``baseline`` cells evaluate the unedited model (and its oracle) for a
(concept, seed) once; method cells start from a copy of those rows instead of recomputing them.

A worker writes only to its own cell database (``<db>-images/cells/<cell_id>/cell.db``, resumable
like every evaluation and attack) and returns the cell's rows; the driver writes them into the
results database (:mod:`erasekit.bench.runner`). A worker that dies mid-cell is retried and picks
up its cell database where it stopped.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from erasekit.bench.rows import cell_rows, insert, rows_of
from erasekit.bench.spec import AttackSpec, BenchSpec, MethodSpec
from erasekit.evaluation import EvalConfig
from erasekit.provenance import content_id

BASELINE = "baseline"
#: The domain whose pipeline and judge a spec's ``weights`` and user concepts use (as the CLI's).
DEFAULT_DOMAIN = "testbed"
#: A cell's seed shifts its evaluation and attack noise seeds by this much (replicates never share noise).
SEED_STRIDE = 1000


@dataclass(frozen=True)
class Cell:
    """One unit of work; ``method`` is ``None`` for a baseline cell."""

    bench: str
    label: str
    method: str | None
    config: dict
    concept: str
    seed: int
    eval: EvalConfig
    attacks: tuple[AttackSpec, ...]
    target_prompts: int
    target_seeds: tuple[int, ...]
    weights: str | None
    #: a stack's lower methods ``(method, config)``, applied before ``method``
    under: tuple = ()

    @property
    def key(self) -> dict[str, Any]:
        """The cell's inputs; its id is their content hash (the label and bench name are not inputs)."""
        key = {"method": self.method, "config": self.config, "concept": self.concept, "seed": self.seed,
               "eval": self.eval.to_dict(), "attacks": [(a.attack, a.budget) for a in self.attacks],
               "targets": [self.target_prompts, list(self.target_seeds)], "weights": self.weights}
        if self.under:  # only stacks carry it, so a plain cell's id is what it always was
            key["under"] = [[m, c] for m, c in self.under]
        return key

    @property
    def cell_id(self) -> str:
        return content_id(self.key)

    @property
    def fit_id(self) -> str:
        """The artifact cache key: cells with the same fit share one artifact."""
        return self.fit_of(self.method, self.config)

    def fit_of(self, method: str | None, config: dict) -> str:
        """The cache key of one fit of this cell (its own, or a stack part's: shared with plain cells)."""
        return content_id({"method": method, "config": config, "concept": self.concept, "seed": self.seed,
                           "weights": self.weights})

    @property
    def name(self) -> str:
        return f"{self.label}/{self.concept}/s{self.seed}"


def eval_config(spec: BenchSpec, seed: int) -> EvalConfig:
    """Replicate ``seed``: its own prompt draw and noise seeds."""
    cfg = spec.eval
    return cfg.replace(prompt_seed=cfg.prompt_seed + seed, seeds=tuple(s + SEED_STRIDE * seed for s in cfg.seeds))


def plan(spec: BenchSpec) -> tuple[list[Cell], list[Cell]]:
    """The spec's baseline cells (one per concept and seed) and method cells."""

    def cell(m: MethodSpec | None, concept: str, seed: int) -> Cell:
        return Cell(spec.name, BASELINE if m is None else m.label, None if m is None else m.method,
                    {} if m is None else m.config(), concept, seed, eval_config(spec, seed),
                    () if m is None else tuple(spec.attacks), spec.attack_targets.n_prompts,
                    tuple(s + SEED_STRIDE * seed for s in spec.attack_targets.seeds), spec.weights,
                    () if m is None else m.under())

    # seed-major: a pass stopped half-way has whole replicates (every method on every concept)
    baselines = [cell(None, c, s) for s in spec.seeds for c in spec.concepts]
    methods = [cell(m, c, s) for s in spec.seeds for c in spec.concepts for m in spec.methods]
    return baselines, methods


def cell_folder(image_root: Path, cell_id: str) -> Path:
    return image_root / "cells" / cell_id


def run_cell(cell: Cell, db_path: str, threads: int, shared_runs: list[str]) -> dict[str, Any]:
    """Compute ``cell`` (in a worker): returns ``{"cell": row, "rows": {table: rows}}`` with image
    paths relative to the results database's folder. ``shared_runs``: run ids (the cell's baseline
    and oracle evaluations) copied from the results database into the cell database first."""
    import torch

    from erasekit.artifact import fit_or_load
    from erasekit.concepts import get_concept
    from erasekit.domain import domain_of, get_domain
    from erasekit.erasure import Erasure, Stack
    from erasekit.evaluation import artifact_info, evaluate
    from erasekit.pipelines import fingerprint, load_for
    from erasekit.redteam import attack
    from erasekit.store import Store

    torch.set_num_threads(threads)
    main = Store(db_path, readonly=True)
    folder, say = open_cell(main.image_root, cell)
    t0 = time.perf_counter()
    local = Store(folder / "cell.db")
    insert(local, rows_of(main, shared_runs, [], folder))
    main.close()
    concept = get_concept(cell.concept)
    domain = domain_of(concept) or get_domain(DEFAULT_DOMAIN)
    pipe = load_for(cell.weights, domain)
    if torch.cuda.is_available():  # the runner asked Ray for a GPU for this cell
        pipe.to("cuda")
    judge = domain.load_judge(None)
    erasure, artifact_dir, info = None, None, None
    if cell.method is not None:
        parts, folders = [], []
        for method, config in (*cell.under, (cell.method, cell.config)):  # a stack's parts fit on the base weights
            folder_k = main.image_root / "artifacts" / cell.fit_of(method, config)
            part, reused = fit_or_load(folder_k, Erasure, method, pipe, concept, config,
                                       cell.weights or "testbed (shipped)", progress=False, seed=cell.seed)
            say(f"{method}: reusing the artifact {folder_k.name}" if reused
                else f"{method}: fitted in {part.extra['fit_seconds']:.1f} s")
            parts.append(part)
            folders.append(folder_k)
        erasure = parts[0] if len(parts) == 1 else Stack(parts, folders)
        artifact_dir = folders[0] if len(parts) == 1 else erasure.folder
        info = artifact_info(Path(artifact_dir), erasure)
    run = evaluate(local, pipe, judge, concept, cell.eval, erasure, artifact_dir, progress=False, name=cell.name)
    say(f"evaluated: run {run['run_id']}")
    attack_ids = []
    for a in cell.attacks:
        out = attack(local, pipe, judge, concept, a.attack, a.budget, erasure, artifact_dir, cell.target_prompts,
                     cell.target_seeds, cell.seed, cell.eval.steps, cell.eval.guidance, progress=False, name=cell.name)
        attack_ids.append(out["attack_id"])
        say(f"{a.attack}: ASR {out['asr']:.3f} (pre-attack {out['pre_asr']:.3f})")
    rows = cell_rows(local, Path(db_path).parent)
    local.close()
    return {"cell": cell_row(cell, run["run_id"], attack_ids, fingerprint(pipe), erasure, info, t0, say),
            "rows": rows}


def open_cell(root: Path, cell: Any) -> tuple[Path, Callable[[str], None]]:
    """A worker's start on ``cell``: its folder (with ``worker.pid``) and a function that appends a
    timestamped line to its ``cell.log``."""
    folder = cell_folder(root, cell.cell_id)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "worker.pid").write_text(str(os.getpid()))
    log_path = folder / "cell.log"

    def say(text: str) -> None:
        with log_path.open("a") as log:
            log.write(f"{time.strftime('%H:%M:%S')} [pid {os.getpid()}] {text}\n")

    say(f"start {cell.name} ({cell.cell_id})")
    return folder, say


def cell_row(cell: Any, run_id: str, attack_ids: list[str], fingerprint: str, erasure: Any, info: dict | None,
             t0: float, say: Callable[[str], None]) -> dict[str, Any]:
    """The ``bench_cells`` row of a finished cell (inputs, evaluation and attack runs, cost)."""
    extra = {} if erasure is None else erasure.extra
    row = {
        "cell_id": cell.cell_id, "bench": cell.bench, "label": cell.label, "method": cell.method,
        "concept": cell.concept, "seed": cell.seed, "run_id": run_id, "attack_ids": json.dumps(attack_ids),
        "config": json.dumps({**cell.key, "fingerprint": fingerprint}, default=str),
        "fit_seconds": extra.get("fit_seconds"), "peak_memory_mb": extra.get("peak_memory_mb"),
        "artifact_bytes": None if info is None else info["artifact_bytes"],
        "wall_seconds": round(time.perf_counter() - t0, 2), "worker_pid": os.getpid(),
    }
    say(f"done in {row['wall_seconds']:.1f} s")
    return row
