"""``erasekit audit RUN``: the M-ErasureBench threat matrix (five concept reproduction rates)."""

from __future__ import annotations

import argparse
import json

from erasekit.cli import args as A
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
