"""``erasekit bench SPEC``: run a benchmark spec (methods x concepts x attacks x seeds) on Ray."""

from __future__ import annotations

import argparse
import json

from erasekit.cli import args as A
from erasekit.cli import paths as P


def cmd_bench(args: argparse.Namespace) -> None:
    from erasekit.bench.leaderboard import leaderboard
    from erasekit.bench.runner import run_bench, spec_cells
    from erasekit.bench.spec import load_spec

    spec = load_spec(args.spec)  # every name and override checked before Ray starts
    spec_cells(spec, tuple(args.only))  # and every --only pattern, before the database is made
    store = P.open_store(args.db)
    store.close()
    quiet = args.json
    summary = run_bench(spec, args.db, workers=args.workers, address=args.address, progress=not quiet,
                        log=(lambda _: None) if quiet else print, only=tuple(args.only))
    store = P.open_store(args.db, readonly=True)
    board = leaderboard(store, spec.name)
    if args.json:
        print(json.dumps({"summary": summary, "leaderboard": board}, indent=2))
        return
    print(f"computed {summary['computed']} of {summary['cells']} cells in {summary['wall_seconds']:.1f} s; "
          f"results in {args.db} (erasekit report --db {args.db})")
    if summary.get("sessions", 0) > 1:
        print(f"over its {summary['sessions']} invocations in this database: {summary['total_wall_seconds']:.1f} s "
              f"(workers {', '.join(map(str, summary['workers_used'])) or 'on a cluster'})")
    for concept, rows in board["concepts"].items():
        print(f"\n{concept}: {'method':16s} {'efficacy':>9s} {'known':>7s} {'ira':>6s} {'cra':>6s} "
              f"{'worst ASR':>10s}  attack")
        for r in rows:
            def f(key: str) -> str:
                v = r["metrics"].get(key)
                return f"{v['value']:.3f}" if v else "-"

            worst = r["worst_attack"]
            tag = f"{worst['attack']} ({worst['budget']})" if worst else "-"
            asr = f"{worst['asr']:.3f}" if worst else "-"
            print(f"{'':{len(concept) + 1}s} {r['label']:16s} {f('efficacy'):>9s} {f('efficacy_known'):>7s} "
                  f"{f('ira'):>6s} {f('cra'):>6s} {asr:>10s}  {tag}")
    for task, rows in board["tasks"].items():
        print(f"\n{task}: {'method':16s} {'forget':>7s} {'surrogate':>9s} {'utility':>8s} {'FQ':>9s} "
              f"{'recovered':>10s}  worst attack")
        for r in rows:
            def g(key: str, fmt: str = ".3f") -> str:
                v = r["metrics"].get(key)
                return format(v["value"], fmt) if v else "-"

            worst = r["worst_attack"]
            tag = f"{worst['attack']} ({worst['budget']})" if worst else "-"
            rec = f"{worst['recovered']:.3f}" if worst else "-"
            print(f"{'':{len(task) + 1}s} {r['label']:16s} {g('forget_acc'):>7s} {g('surrogate_acc'):>9s} "
                  f"{g('model_utility'):>8s} {g('forget_quality', '.1e'):>9s} {rec:>10s}  {tag}")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    be = sub.add_parser("bench", help="run a benchmark spec (methods x concepts x attacks x seeds) on Ray")
    be.add_argument("spec", metavar="SPEC", help="YAML spec, e.g. benchmarks/specs/smoke.yaml")
    be.add_argument("--db", default="erasekit.db", help="results database (default erasekit.db)")
    be.add_argument("--workers", type=A.positive, default=1,
                    help="local Ray workers (default 1); each gets cores/workers torch threads")
    be.add_argument("--address", default=None, help="join this Ray cluster (e.g. ray://host:10001) instead")
    be.add_argument("--only", type=A.cell_patterns, default=[], metavar="CELLS",
                    help="compute only these cells: comma-separated label/concept/sSEED patterns with wildcards "
                         "(e.g. 'mace/*/s0,*/skull/s0'); their baselines come along")
    be.add_argument("--json", action="store_true", help="print the summary and leaderboard as JSON")
    be.set_defaults(func=cmd_bench)
