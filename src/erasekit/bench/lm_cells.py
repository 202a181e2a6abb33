"""Language-model benchmark cells: (method, task, seed) -> fit, evaluate, every attack.

The counterpart of :mod:`erasekit.bench.cells` for a spec's ``lm`` section, run by the same
runner: a worker computes into its own cell database and returns the rows; the driver stores
them. One baseline cell per task evaluates the model without unlearning (and, with ``tiny``,
trains the TinyTOFU target and oracle once, into ``<db>-images/lm-models``, before any method
cell needs them).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from erasekit.bench.cells import BASELINE, cell_row, open_cell
from erasekit.bench.rows import cell_rows
from erasekit.bench.spec import TINY, BenchSpec, LMAttackSpec
from erasekit.provenance import content_id

#: Marks a cell's inputs (and its stored config) as a language-model cell.
FAMILY = "lm"


@dataclass(frozen=True)
class LMCell:
    """One language-model unit of work; ``method`` is ``None`` for a baseline cell."""

    bench: str
    label: str
    method: str | None
    config: dict
    task: dict
    seed: int
    attacks: tuple[LMAttackSpec, ...]
    model: str
    oracle: str | None

    @property
    def concept(self) -> str:
        return self.task["task"]

    @property
    def key(self) -> dict[str, Any]:
        return {"family": FAMILY, "method": self.method, "config": self.config, "task": self.task, "seed": self.seed,
                "attacks": [(a.attack, a.budget) for a in self.attacks], "model": self.model, "oracle": self.oracle}

    @property
    def cell_id(self) -> str:
        return content_id(self.key)

    @property
    def fit_id(self) -> str:
        return content_id({"family": FAMILY, "method": self.method, "config": self.config, "task": self.task,
                           "seed": self.seed, "model": self.model})

    @property
    def name(self) -> str:
        return f"{self.label}/{self.concept}/s{self.seed}"


def plan_lm(spec: BenchSpec) -> tuple[list[LMCell], list[LMCell]]:
    """The ``lm`` section's baseline cells (one per task) and method cells (method x task x seed)."""
    lm = spec.lm
    if lm is None:
        return [], []
    baselines = [LMCell(spec.name, BASELINE, None, {}, t.to_dict(), 0, (), lm.model, lm.oracle) for t in lm.tasks]
    methods = [LMCell(spec.name, m.label, m.method, m.config(seed), t.to_dict(), seed, tuple(lm.attacks), lm.model,
                      lm.oracle)
               for m in lm.methods for t in lm.tasks for seed in spec.seeds]
    return baselines, methods


def load_model(which: str, task: dict, root: Path, oracle: bool = False):
    """``tiny`` (the TinyTOFU model of the task's seed, trained into ``root/lm-models`` on first use),
    ``smollm2`` or a model folder."""
    from erasekit.lm import model as M

    if which == TINY:
        folder = root / "lm-models" / f"tinytofu-s{task['seed']}" / ("oracle" if oracle else "full")
        return M.ensure_tiny(folder, task["seed"], oracle=oracle, progress=False)
    return M.load(which)


def run_lm_cell(cell: LMCell, db_path: str, threads: int, shared_runs: list[str]) -> dict[str, Any]:
    """Compute ``cell`` in a worker; returns ``{"cell": row, "rows": {table: rows}}`` like
    :func:`erasekit.bench.cells.run_cell` (``shared_runs`` is unused: an LM evaluation scores the
    model without unlearning itself)."""
    import torch

    from erasekit.artifact import fit_or_load
    from erasekit.evaluation import artifact_info
    from erasekit.lm import evaluate as E
    from erasekit.lm.methods.base import LMErasure
    from erasekit.lm.model import fingerprint
    from erasekit.lm.tasks import Forget
    from erasekit.store import Store

    torch.set_num_threads(threads)
    main = Store(db_path, readonly=True)
    root = main.image_root
    main.close()
    folder, say = open_cell(root, cell)
    t0 = time.perf_counter()
    local = Store(folder / "cell.db")
    spec = Forget.from_dict(cell.task)
    lm = load_model(cell.model, cell.task, root)
    oracle = load_model(cell.oracle, cell.task, root, oracle=True) if cell.oracle is not None else None
    erasure, artifact_dir, info = None, None, None
    if cell.method is not None:
        artifact_dir = root / "artifacts" / cell.fit_id
        erasure, reused = fit_or_load(artifact_dir, LMErasure, cell.method, lm, spec, cell.config, lm.name,
                                      progress=False, seed=cell.seed)
        say(f"reusing the artifact {artifact_dir.name}" if reused else f"fitted in {erasure.extra['fit_seconds']:.1f} s")
        info = artifact_info(artifact_dir, erasure)
    run = E.evaluate(local, lm, spec, erasure=erasure, oracle=oracle, name=cell.name,
                     artifact=None if artifact_dir is None else str(artifact_dir))
    say(f"evaluated: run {run['run_id']}")
    attack_ids = []
    for a in cell.attacks:
        out = E.attack(local, run["run_id"], lm, spec, a.attack, erasure=erasure, oracle=oracle, budget=a.budget,
                       seed=cell.seed)
        attack_ids.append(out["attack_id"])
        say(f"{a.attack}: {out['wall_seconds']} s{' (stored)' if out['cached'] else ''}")
    rows = cell_rows(local, Path(db_path).parent)
    local.close()
    return {"cell": cell_row(cell, run["run_id"], attack_ids, fingerprint(lm.model), erasure, info, t0, say),
            "rows": rows}


__all__ = ["FAMILY", "LMCell", "load_model", "plan_lm", "run_lm_cell"]
