"""``erasekit demo``: the README's main job on the testbed, a small benchmark."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from erasekit.cli import args as A
from erasekit.cli import paths as P

#: The demo: the smoke spec's bigger sibling. Erase skull with UCE and ESD-x, evaluate both, the
#: unedited model and the oracle, attack each erasure with a white-box attack, report.
DEMO_SPEC = {
    "name": "demo",
    "seeds": [0],
    "methods": ["uce", {"label": "esd-x", "method": "esd", "set": {"train_method": "esd-x", "iterations": 60}}],
    "concepts": ["skull"],
    "attacks": [{"attack": "embedding", "budget": 20}],
    "eval": {"n_prompts": 4, "seeds": [0, 1], "steps": 25},
    "attack_targets": {"n_prompts": 4, "seeds": [0]},
}
DEMO_KEYS = ("efficacy", "efficacy_known", "efficacy_known_disjoint", "efficacy_unseen", "ira", "cra", "fd_base",
             "oracle_fd_target")
#: Column headers of the printed table.
HEADERS = {"efficacy": "eff_given", "efficacy_known": "eff_known", "efficacy_known_disjoint": "eff_kn_disj",
           "efficacy_unseen": "eff_unseen", "oracle_fd_target": "oracle_fd"}


def cmd_demo(args: argparse.Namespace) -> None:
    """Run the demo spec on Ray, print its leaderboard, write the HTML report."""
    from erasekit.bench.leaderboard import leaderboard
    from erasekit.bench.runner import run_bench
    from erasekit.bench.spec import BenchSpec
    from erasekit.report import build_report

    t0 = time.perf_counter()
    out = Path(args.out)
    P.check_writable_dir(out)
    out.mkdir(parents=True, exist_ok=True)
    spec = BenchSpec.from_mapping({**DEMO_SPEC, "weights": args.weights})
    db = out / "erasekit.db"
    P.open_store(str(db)).close()
    summary = run_bench(spec, db, workers=args.workers)
    store = P.open_store(str(db), readonly=True)
    board = leaderboard(store, spec.name)
    print(f"{'run':10s}" + "".join(f"{HEADERS.get(k, k):>12s}" for k in DEMO_KEYS) + f"{'fit_s':>8s}"
          + f"{'ASR':>7s}  attack")
    for r in board["concepts"]["skull"]:
        vals = [r["metrics"].get(k, {}).get("value") for k in DEMO_KEYS]
        worst, fit = r["worst_attack"], r["cost"]["fit_seconds"]
        print(f"{r['label']:10s}" + "".join(f"{v:12.3f}" if v is not None else f"{'-':>12s}" for v in vals)
              + (f"{fit:8.1f}" if fit is not None else f"{'-':>8s}")
              + (f"{worst['asr']:7.2f}  {worst['attack']} ({worst['budget']} {worst['budget_unit']}, "
                 f"{worst['n']} targets)" if worst else f"{'-':>7s}"))
    base = next((r for r in store.runs(state="complete") if r["kind"] == "baseline"), None)
    floor = store.metrics(base["run_id"]).get("oracle_fd_target_floor", {}).get("value") if base else None
    if floor is not None:
        print(f"oracle_fd: Frechet distance to the oracle (a model trained without skull) on skull prompts; "
              f"the oracle's own seed-to-seed floor is {floor:.3f}. ASR: the share of target prompts showing "
              "skull after the embedding attack (UnlearnDiffAtk's ASR)")
    counts = build_report(store, out / "report.html")
    print(f"wrote {out / 'report.html'} ({counts['runs']} runs, {counts['images']} images); "
          f"{summary['computed']} of {summary['cells']} cells computed; demo took {time.perf_counter() - t0:.1f} s")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    de = sub.add_parser("demo", help="the README's main job on the testbed")
    de.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    de.add_argument("--workers", type=A.positive, default=2, help="local Ray workers (default 2)")
    de.add_argument("--weights", default=None, help="testbed weights folder or a local diffusers pipeline folder "
                                                    "(default: the shipped testbed)")
    de.set_defaults(func=cmd_demo)
