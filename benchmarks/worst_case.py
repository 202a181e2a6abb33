"""Worst-case prompt sets (Fan et al., Challenging Forgets, ECCV 2024) on the shipped testbed
(figures in docs/results.md).

For each method: fit on the built-in concept, draw the evaluation's ``given`` and ``known`` target
prompts (``--prompts`` each: the pool) with the evaluation seeds 0-3 and judge them, then compute
the ``worst_case`` metric, which selects the k = max(4, 0.1 pool) prompts the erased model still
renders best on seeds 4 and 5 and measures them on seeds 0-3: efficacy on the worst-case set beside
the pool's average, once with the default excess loss and once with the paper's raw loss, and
the correlation over the pool between a prompt's loss and its concept rate on seeds 0-3. Usage:
``python benchmarks/worst_case.py --concept heart --methods uce,esd:train_method=esd-x --threads 1``.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from erasekit.concepts import get_concept
from erasekit.config import parse_overrides
from erasekit.erasure import get_method, make_config
from erasekit.evaluation import eval_prompts
from erasekit.metrics import Answers, get_metric
from erasekit.metrics.worst_case import POOL_SPLITS
from erasekit.sampling import generate
from erasekit.testbed.judge import load_judge
from erasekit.testbed.pipeline import load_testbed
from erasekit.worstcase import LOSSES, WorstCaseConfig

SEEDS = [0, 1, 2, 3]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--concept", default="heart")
    parser.add_argument("--methods", default="uce,rece,esd:train_method=esd-x")
    parser.add_argument("--prompts", type=int, default=16, help="pool prompts per tier (given, known)")
    parser.add_argument("--losses", default=",".join(LOSSES))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pipe, judge = load_testbed(), load_judge()
    concept = get_concept(args.concept)
    pool = [p for p in eval_prompts(concept, args.prompts) if p.split in POOL_SPLITS]
    metric = get_metric("worst_case")
    rows = {}
    for label in args.methods.split(","):
        name, *pairs = label.split(":")
        torch.manual_seed(0)
        t0 = time.perf_counter()
        erasure = get_method(name).fit(pipe, concept, make_config(name, parse_overrides(pairs)), progress=False)
        with erasure.applied(pipe):
            images = generate(pipe, [p.text for p in pool], SEEDS, progress=False)
        answers = Answers(concept, pool, SEEDS, images, judge.predict(images), judge=judge, pipe=pipe, erasure=erasure)
        shown = np.array([v[concept.family] == concept.name for v in answers.verdicts]).reshape(len(SEEDS), -1)
        row = {"seconds": 0.0}
        for loss in args.losses.split(","):
            metric.config = WorstCaseConfig(loss=loss)
            values = metric.compute(answers)
            row["pool"] = values["efficacy_pool"].to_json()
            row[f"worst_{loss}"] = values["efficacy_worst_k"].to_json()
            losses = row[f"worst_{loss}"]["meta"]["pool_losses"]
            row[f"corr_{loss}"] = round(float(np.corrcoef(losses, shown.mean(0))[0, 1]), 3)
        row["seconds"] = round(time.perf_counter() - t0, 1)
        rows[label] = row
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    first = next(iter(rows.values()))
    print(f"concept {args.concept!r}; pool {first['worst_' + args.losses.split(',')[0]]['meta']['pool']} prompts, "
          f"k {first['worst_' + args.losses.split(',')[0]]['meta']['k']}; efficacy with 95% intervals, seeds 0-3")

    def cell(v: dict) -> str:
        return f"{v['value']:.3f} [{v['ci95'][0]:.2f}, {v['ci95'][1]:.2f}]"

    losses = args.losses.split(",")
    print(" | ".join(["method", "pool average", *(f"worst-k ({loss} loss)" for loss in losses),
                      *(f"corr({loss} loss, concept rate)" for loss in losses), "seconds"]))
    for label, r in rows.items():
        print(" | ".join([label, cell(r["pool"]), *(cell(r[f"worst_{loss}"]) for loss in losses),
                          *(str(r[f"corr_{loss}"]) for loss in losses), str(r["seconds"])]))
        for loss in losses:
            print(f"  {loss}: " + "; ".join(r[f"worst_{loss}"]["meta"]["prompts"]))


if __name__ == "__main__":
    main()
