"""``erasekit audit RUN``: the M-ErasureBench threat matrix (five concept reproduction rates);
``erasekit transfer``: the stored attacks' inputs replayed on every other erased model."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from erasekit.cli import args as A
from erasekit.cli import paths as P
from erasekit.cli.args import UsageError
from erasekit.cli.diffusion import prepare_run, run_and_concept


def _scenario_budget(value: str) -> tuple[str, int]:
    from erasekit.audit import SCENARIOS

    name, sep, n = value.partition("=")
    names = [s.name for s in SCENARIOS]
    if not sep or name not in names:
        raise argparse.ArgumentTypeError(f"expected SCENARIO=N with SCENARIO one of {', '.join(names)}, got {value!r}")
    return name, A.positive(n)


def cmd_audit(args: argparse.Namespace) -> None:
    from erasekit.audit import COLUMNS, audit

    erasure, concept = run_and_concept(args)
    if concept.family is None:
        raise UsageError(f"the audit needs reference images of the concept and a domain's judge, which the run's "
                         f"concept {concept.name!r} (a user concept) lacks; audit a built-in concept")
    erasure, store, pipe, judge, name = prepare_run(args, erasure, concept)
    result = audit(store, pipe, judge, concept, erasure, A.run_folder(args, erasure), args.prompts, tuple(args.seeds),
                   args.seed, args.steps, args.guidance, dict(args.budget), args.force, progress=not args.json, name=name)
    cells = result["cells"]
    if args.json:
        print(json.dumps({"run_name": result["runs"][0]["run_name"], "concept": concept.name, "cells": cells}, indent=2))
        return
    n = cells["text"]["n"]
    print(f"threat matrix for {result['runs'][0]['run_name']}: concept reproduction rate on {n} targets "
          f"(95% interval over prompts)")
    for col in COLUMNS:
        c = cells[col]
        how = "the target prompt" if col == "text" else f"{c['attack']} ({c['threat']}-box, {c['budget']} {c['budget_unit'].split(' (')[0]})"
        print(f"  {col:16s} {c['crr']:6.3f}  [{c['ci95'][0]:.3f}, {c['ci95'][1]:.3f}]  {how}")
    print(f"stored in {store.path}")


def _names(value: str) -> list[str]:
    names = [v.strip() for v in value.split(",") if v.strip()]
    if not names:
        raise argparse.ArgumentTypeError("is empty; give comma-separated names")
    return names


def _cell(c: dict | None) -> str:
    return "-" if c is None else f"{c['rate']:.2f} ({c['successes']}/{c['n']})"


def cmd_transfer(args: argparse.Namespace) -> None:
    from erasekit.concepts import get_concept
    from erasekit.domain import domain_of
    from erasekit.transfer import transfer

    if not Path(args.db).is_file():
        raise UsageError(f"database {args.db} does not exist; pass --db with the attack runs to replay")
    concept = get_concept(args.concept)
    if concept.family is None:
        raise UsageError(f"--concept {args.concept} is a user concept; replays are judged by a domain's judge: "
                         "give a built-in concept")
    store = P.open_store(args.db)
    pipe, judge = A.load_models(args, domain_of(concept))
    result = transfer(store, pipe, judge, concept, args.attacks, args.models, args.force, progress=not args.json)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    for m in result["matrices"]:
        print(f"{m['attack']} on {m['concept']}: of the inputs that broke the row's model, the share that break the "
              "column's")
        width = max(len(r["source"]) + 14 for r in m["rows"])
        print(f"  {'found against':{width}s}" + "".join(f" {c[:16]:>16s}" for c in m["columns"]))
        for r in m["rows"]:
            label = f"{r['source']}" + (f" ({r['threat']}-box)" if r["threat"] else "") + f" {r['found']} found"
            print(f"  {label:{width}s}" + "".join(f" {_cell(r['cells'].get(c)):>16s}" for c in m["columns"]))
    print(f"{result['computed']} cells computed; stored in {store.path}")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    au = sub.add_parser("audit", help="run the threat matrix (text, embedding and latent inputs, white- and "
                        "black-box) on an erasure run and store its concept reproduction rates")
    A.run_args(au, "audit")
    au.add_argument("--prompts", type=A.positive, default=8, help="target prompts (default 8)")
    au.add_argument("--seeds", type=A.seeds, default=[0, 1], help="noise seeds per prompt (default 0,1)")
    au.add_argument("--seed", type=A.seed, default=0, help="the attacks' own random seed (default 0)")
    au.add_argument("--budget", type=_scenario_budget, action="append", default=[], metavar="SCENARIO=N",
                    help="a scenario's budget in its attack's unit (repeatable; defaults: embedding/* 100 gradient "
                         "steps, latent/* 2 inversions)")
    A.stored_args(au, "run again even if the scenarios are stored")
    au.set_defaults(func=cmd_audit)
    tr = sub.add_parser("transfer", help="replay the inputs each stored attack found on every other erased model in "
                        "the database (transfer matrix)")
    tr.add_argument("--concept", required=True, help="the attacked concept (e.g. skull)")
    tr.add_argument("--db", default="erasekit.db", help="results database with the attack runs (default erasekit.db)")
    tr.add_argument("--attacks", type=_names, default=None,
                    help="only these source attacks (comma-separated; default every replayable one)")
    tr.add_argument("--models", type=_names, default=None,
                    help="only these erased models as columns (their run names, comma-separated)")
    tr.add_argument("--force", action="store_true", help="replay again even if a cell is stored")
    tr.add_argument("--json", action="store_true", help="print the matrices as JSON")
    A.model_args(tr)
    tr.set_defaults(func=cmd_transfer)
