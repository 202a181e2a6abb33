"""Mass erasure on the shipped testbed: erase 1, 4 and 7 of the 8 shapes in one artifact, keep one.

    python benchmarks/mass_erasure.py [--method mace] [--keep circle] [--counts 1,4,7] [--prompts 8]

For each count: fit the method once on the combined concept (the first N shapes of a fixed
order, never the kept one), then draw ``--prompts`` given-word prompts x 4 seeds for every shape
and report, with the judge, how often each erased shape is still drawn (bar: <= 0.2 each) and how
often the kept shape is drawn as itself (bar: >= 0.9), with the fit time. Figures in
docs/results.md (mass erasure).
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from erasekit.concepts import get_concept
from erasekit.config import parse_overrides
from erasekit.erasure import get_method, make_config
from erasekit.testbed.data import SHAPES
from erasekit.testbed.fidelity import shape_effect
from erasekit.testbed.judge import load_judge
from erasekit.testbed.pipeline import load_testbed

#: The order in which shapes are erased (the reported concepts first).
ORDER = ("skull", "logo", "star", "heart", "square", "triangle", "cross", "circle")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="mace", help="method[:key=value...] (default mace)")
    parser.add_argument("--keep", default="circle", choices=SHAPES)
    parser.add_argument("--counts", default="1,4,7")
    parser.add_argument("--erase", default=None, help="erase exactly these shapes (comma list) instead of --counts; "
                                                       "for tuning away from the reported concepts")
    parser.add_argument("--prompts", type=int, default=8, help="given-word prompts per shape (x 4 seeds)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    name, _, rest = args.method.partition(":")
    overrides = parse_overrides(rest.split(":")) if rest else {}
    pipe, judge = load_testbed(), load_judge()
    order = [s for s in ORDER if s != args.keep]
    rows = []
    sets = [args.erase.split(",")] if args.erase else [order[:int(c)] for c in args.counts.split(",")]
    for erased in sets:
        n = len(erased)
        concept = get_concept(",".join(erased))
        t0 = time.perf_counter()
        erasure = get_method(name).fit(pipe, concept, make_config(name, overrides), progress=False)
        fit = time.perf_counter() - t0
        with erasure.applied(pipe):
            effect = shape_effect(pipe, judge, args.keep, args.prompts, args.prompts)
        rates = {s: effect["per_shape"][s] for s in erased}
        rows.append({"n": n, "erased": erased, "rates": rates, "max_erased_rate": max(rates.values()),
                     "kept": args.keep, "kept_accuracy": effect["target_rate"],
                     "untouched": {s: r for s, r in effect["per_shape"].items() if s not in erased},
                     "fit_seconds": round(fit, 1)})
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{args.method}; {args.prompts} prompts x 4 seeds per shape; kept shape: {args.keep}")
    print(f"{'n':>2s}  {'max erased rate':>15s}  {'kept acc':>8s}  {'fit s':>6s}  erased shapes (rate each)")
    for r in rows:
        each = ", ".join(f"{s} {v:.2f}" for s, v in r["rates"].items())
        print(f"{r['n']:2d}  {r['max_erased_rate']:15.3f}  {r['kept_accuracy']:8.3f}  {r['fit_seconds']:6.1f}  {each}")


if __name__ == "__main__":
    main()
