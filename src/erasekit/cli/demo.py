"""``erasekit demo``: the README's main job on the testbed."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from erasekit.cli import args as A
from erasekit.cli import paths as P

#: The demo: erase ``skull`` with UCE and ESD-x, evaluate both and the unedited baseline, report.
DEMO_RUNS = (("skull-uce", "uce", {}), ("skull-esd-x", "esd", {"train_method": "esd-x", "iterations": 60}))
DEMO_EVAL = {"n_prompts": 4, "seeds": (0, 1), "steps": 25}
DEMO_KEYS = ("efficacy", "efficacy_known", "efficacy_known_disjoint", "efficacy_unseen", "ira", "cra", "fd_base",
             "oracle_fd_target", "fit_seconds")
#: Column headers of the printed table.
HEADERS = {"efficacy": "eff_given", "efficacy_known": "eff_known", "efficacy_known_disjoint": "eff_kn_disj",
           "efficacy_unseen": "eff_unseen", "oracle_fd_target": "oracle_fd", "fit_seconds": "fit_s"}


def cmd_demo(args: argparse.Namespace) -> None:
    """Erase skull with UCE and ESD-x, evaluate both and the baseline, and write the HTML report."""
    from erasekit.artifact import fit_or_load
    from erasekit.concepts import get_concept
    from erasekit.erasure import Erasure
    from erasekit.evaluation import EvalConfig, evaluate
    from erasekit.report import build_report

    t0 = time.perf_counter()
    out = Path(args.out)
    P.check_writable_dir(out)
    out.mkdir(parents=True, exist_ok=True)
    pipe, judge = A.load_models(args)
    concept = get_concept("skull")
    store = P.open_store(str(out / "erasekit.db"))
    cfg = EvalConfig(**DEMO_EVAL)
    results = []
    for name, method, overrides in DEMO_RUNS:
        folder = out / name
        erasure, reused = fit_or_load(folder, Erasure, method, pipe, concept, overrides, "testbed (shipped)")
        print(f"[{time.perf_counter() - t0:5.1f} s] " + (f"reusing {folder}" if reused else
              f"{name}: fitted in {erasure.extra['fit_seconds']:.1f} s -> {folder}"))
        results.append(evaluate(store, pipe, judge, concept, cfg, erasure, folder, name=name))
        print(f"[{time.perf_counter() - t0:5.1f} s] {name}: evaluated")
    baseline = next(r for r in store.runs() if r["kind"] == "baseline" and r["concept"] == "skull")
    results.insert(0, {**baseline, "metrics": store.metrics(baseline["run_id"])})
    oracle = next((r for r in store.runs() if r["kind"] == "oracle" and r["concept"] == "skull"), None)
    if oracle is not None:
        results.insert(1, {**oracle, "metrics": store.metrics(oracle["run_id"])})
    print(f"{'run':18s}" + "".join(f"{HEADERS.get(k, k):>12s}" for k in DEMO_KEYS))
    for r in results:
        vals = [r["metrics"].get(k, {}).get("value") for k in DEMO_KEYS]
        print(f"{r['name']:18s}" + "".join(f"{v:12.3f}" if v is not None else f"{'-':>12s}" for v in vals))
    floor = results[0]["metrics"].get("oracle_fd_target_floor", {}).get("value")
    if floor is not None:
        print(f"oracle_fd: Frechet distance to the oracle (a model trained without skull) on skull prompts; "
              f"the oracle's own seed-to-seed floor is {floor:.3f}")
    counts = build_report(store, out / "report.html")
    print(f"wrote {out / 'report.html'} ({counts['runs']} runs, {counts['images']} images); "
          f"demo took {time.perf_counter() - t0:.1f} s")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    de = sub.add_parser("demo", help="the README's main job on the testbed")
    de.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    A.model_args(de)
    de.set_defaults(func=cmd_demo)
