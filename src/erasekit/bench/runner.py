"""Run a benchmark spec on Ray: cells fan out to workers, results come back to this process,
the only writer of the results database.

``workers`` starts a local Ray instance with that many CPU slots (each worker's torch thread
count set so that together they use the machine's cores, one OpenMP pool each, spin-waiting off);
``address`` joins an existing cluster instead. Cells ask for a GPU when CUDA is there. Done cells
(in the ``bench_cells`` table) are skipped; a worker that dies is retried by Ray and its cell,
written by the driver in one transaction keyed by the cell's content, lands exactly once.
"""

from __future__ import annotations

import fnmatch
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from tqdm.auto import tqdm

from erasekit.bench.cells import Cell, cell_folder, plan, run_cell
from erasekit.bench.lm_cells import LMCell, plan_lm, run_lm_cell
from erasekit.bench.rows import add_members, bench_cells, insert, sessions, start_session, update_session
from erasekit.bench.spec import BenchSpec
from erasekit.errors import UserError
from erasekit.store import Store

#: Ray retries a cell whose worker died this many times.
MAX_RETRIES = 3


@dataclass(frozen=True)
class BenchPlan:
    """What a run of the spec will do: the cells to compute and those already stored."""

    todo: list[Cell | LMCell]
    done: list[Cell | LMCell]

    @property
    def total(self) -> int:
        return len(self.todo) + len(self.done)


def select(baselines: list, methods: list, only: tuple[str, ...]) -> tuple[list, list]:
    """The cells whose names (``label/concept/sSEED``) match one of the ``only`` patterns (shell
    wildcards), with the baselines they need (same concept and seed); every pattern must match."""
    if not only:
        return baselines, methods
    for pattern in only:
        if not any(fnmatch.fnmatchcase(c.name, pattern) for c in baselines + methods):
            examples = ", ".join(c.name for c in (methods or baselines)[:2])
            raise UserError(f"--only {pattern} matches no cell of this spec; cells are named label/concept/sSEED "
                            f"(e.g. {examples}), wildcards allowed")
    chosen = [c for c in methods if any(fnmatch.fnmatchcase(c.name, p) for p in only)]
    needed = {(c.concept, c.seed) for c in chosen}
    tasks = {c.concept for c in chosen if isinstance(c, LMCell)}  # an LM task has one baseline, whatever the seed
    base = [c for c in baselines if (c.concept, c.seed) in needed or (isinstance(c, LMCell) and c.concept in tasks)
            or any(fnmatch.fnmatchcase(c.name, p) for p in only)]
    return base, chosen


def spec_cells(spec: BenchSpec, only: tuple[str, ...] = ()) -> tuple[list, list]:
    """The baseline and method cells (diffusion, then LM) of ``spec``, or those ``only`` selects."""
    (base, meth), (lm_base, lm_meth) = plan(spec), plan_lm(spec)
    return select(base + lm_base, meth + lm_meth, only)


def pending(spec: BenchSpec, store: Store, only: tuple[str, ...] = ()) -> tuple[BenchPlan, BenchPlan]:
    """The baseline and method cells of ``spec`` (those ``only`` selects), split into to-do and
    already stored."""
    stored = {c["cell_id"] for c in bench_cells(store)}
    out = []
    for cells in spec_cells(spec, only):
        out.append(BenchPlan([c for c in cells if c.cell_id not in stored], [c for c in cells if c.cell_id in stored]))
    return out[0], out[1]


def threads_per_worker(workers: int, cells: int | None = None) -> int:
    """Torch threads per worker: the driver's thread budget (``erasekit --threads N``, else
    ``$ERASEKIT_THREADS``, else all cores: what the CLI gave torch) shared among the workers that will
    be busy (``cells`` at a time, at most ``workers``), at least one."""
    import torch

    busy = workers if cells is None else max(1, min(workers, cells))
    return max(1, torch.get_num_threads() // busy)


def _start_ray(workers: int, address: str | None) -> Any:
    try:
        import ray
    except ImportError:
        raise UserError("erasekit bench needs Ray: pip install 'ray==2.60.0' (or make install)") from None
    env = {"OMP_WAIT_POLICY": "PASSIVE", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1"}
    if address is not None:
        ray.init(address=address, runtime_env={"env_vars": env}, log_to_driver=False)
    else:
        threads = threads_per_worker(workers)
        env["OMP_NUM_THREADS"] = str(threads)
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": env},
                 configure_logging=False)
    return ray


def run_bench(spec: BenchSpec, db: str | Path, workers: int = 1, address: str | None = None,
              progress: bool = True, log: Callable[[str], None] = print, only: tuple[str, ...] = ()) -> dict[str, Any]:
    """Compute every cell of ``spec`` (or those ``only`` selects) not yet in ``db``; return counts
    and wall time. A partial run's time counts toward the spec's total like any other sitting."""
    if workers < 1:
        raise UserError(f"workers must be >= 1, got {workers}")
    db = Path(db).resolve()
    store = Store(db)
    baselines, methods = pending(spec, store, only)
    add_members(store, spec.name, baselines.todo + baselines.done + methods.todo + methods.done)
    summary = {"cells": baselines.total + methods.total, "computed": 0, "stored_before": len(baselines.done) + len(methods.done)}
    picked = f" selected by --only {','.join(only)}" if only else ""
    log(f"{spec.name}: {summary['cells']} cells{picked} ({baselines.total} baselines, {methods.total} method cells), "
        f"{summary['stored_before']} stored, {len(baselines.todo) + len(methods.todo)} to compute")
    t0 = time.perf_counter()
    if not baselines.todo and not methods.todo:
        summary["wall_seconds"] = 0.0
        summary.update(_totals(store, spec.name))
        store.close()
        return summary
    sid = start_session(store, spec.name, None if address else workers, address)
    ray = _start_ray(workers, address)
    try:
        import torch

        gpu = 1 if torch.cuda.is_available() else 0
        cluster_threads = max(1, int(os.environ.get("ERASEKIT_THREADS", "0")) or 1)
        options = {"num_cpus": 1, "num_gpus": gpu, "max_retries": MAX_RETRIES, "retry_exceptions": False}
        tasks = {Cell: ray.remote(**options)(run_cell), LMCell: ray.remote(**options)(run_lm_cell)}
        bar = tqdm(total=summary["cells"], initial=summary["stored_before"], unit="cell", desc=spec.name,
                   disable=not progress)
        with bar:
            for phase in (baselines, methods):
                shared = _shared_runs(store)
                # a phase with fewer cells than workers (the baselines of a small spec) uses every core
                threads = threads_per_worker(workers, len(phase.todo)) if address is None else cluster_threads
                refs = {tasks[type(c)].remote(c, str(db), threads, shared.get(c.concept, [])): c for c in phase.todo}
                while refs:
                    ready, _ = ray.wait(list(refs), num_returns=1)
                    cell = refs.pop(ready[0])
                    try:
                        result = ray.get(ready[0])
                    except Exception as exc:  # the cell failed (not a dead worker: Ray retried those)
                        log_path = cell_folder(store.image_root, cell.cell_id) / "cell.log"
                        raise UserError(f"cell {cell.name} failed: {_first_line(exc)} (log: {log_path})") from None
                    insert(store, result["rows"], result["cell"])
                    summary["computed"] += 1
                    update_session(store, sid, time.perf_counter() - t0, summary["computed"])
                    bar.set_postfix_str(cell.name)
                    bar.update(1)
        update_session(store, sid, time.perf_counter() - t0, summary["computed"], finished=True)
        summary["wall_seconds"] = round(time.perf_counter() - t0, 1)
        summary.update(_totals(store, spec.name))
    finally:
        ray.shutdown()
        store.close()
    return summary


def _totals(store: Store, bench: str) -> dict[str, Any]:
    """Over every invocation of ``bench`` in this database (a run resumed across sessions): the
    summed wall time (a killed invocation counts up to its last landed cell) and the sessions."""
    rows = sessions(store, bench)
    return {"sessions": len(rows), "total_wall_seconds": round(sum(r["wall_seconds"] for r in rows), 1),
            "workers_used": sorted({r["workers"] for r in rows if r["workers"] is not None})}


def _shared_runs(store: Store) -> dict[str, list[str]]:
    """Per concept: the stored evaluations that are not erasures (the unedited model, the oracle and
    its noise floor, as baseline cells left them), which method cells copy instead of recomputing."""
    out: dict[str, list[str]] = {}
    for r in store.runs(state="complete"):
        if r["kind"] != "erasure" and not r["kind"].startswith("lm-"):
            out.setdefault(r["concept"], []).append(r["run_id"])
    return out


def _first_line(exc: BaseException) -> str:
    cause = getattr(exc, "cause", None) or exc
    text = str(cause).strip().splitlines()
    return text[-1] if text else type(cause).__name__
