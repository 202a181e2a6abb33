"""Effect of each erasure method on the shipped testbed (figures in docs/results.md).

For each method: fit on the built-in concept (default ``skull``), apply, and measure with the
judge how often target prompts still show the target (given words, 4 seeds) and how
accurate the other shapes stay on their own prompts; also the fit time. The unedited model is
measured in the same run. Usage: ``python benchmarks/erasure_effect.py [--concept skull]
[--methods uce,rece,esd,sld,negative_prompt]``; a method may carry config overrides,
``negative_prompt:mode=negate`` or ``sld:preset=max:warmup_steps=0``.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from erasekit.concepts import get_concept
from erasekit.config import parse_overrides
from erasekit.erasure import get_method, make_config
from erasekit.testbed.fidelity import shape_effect
from erasekit.testbed.judge import load_judge
from erasekit.testbed.pipeline import load_testbed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--concept", default="skull")
    parser.add_argument("--methods", default="uce,rece,esd,sld,negative_prompt")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--n-target", type=int, default=16, help="target-shape prompts (x 4 seeds)")
    parser.add_argument("--n-other", type=int, default=4, help="prompts per other shape (x 4 seeds)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pipe, judge = load_testbed(), load_judge()
    concept = get_concept(args.concept)
    rows = {"unedited": {**shape_effect(pipe, judge, args.concept, args.n_target, args.n_other), "fit_seconds": 0.0}}
    for label in args.methods.split(","):
        name, *pairs = label.split(":")
        overrides = parse_overrides(pairs)
        t0 = time.perf_counter()
        torch.manual_seed(0)
        erasure = get_method(name).fit(pipe, concept, make_config(name, overrides), progress=False)
        fit = time.perf_counter() - t0
        with erasure.applied(pipe):
            rows[label] = {**shape_effect(pipe, judge, args.concept, args.n_target, args.n_other), "fit_seconds": round(fit, 2)}
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"concept {args.concept!r}; {rows['unedited']['images']} images per row (4 seeds)")
    print(f"{'method':40s} {'target rate':>12s} {'other shapes acc':>17s} {'fit s':>8s}")
    for name, r in rows.items():
        print(f"{name:40s} {r['target_rate']:12.3f} {r['other_shapes_accuracy']:17.3f} {r['fit_seconds']:8.2f}")


if __name__ == "__main__":
    main()
