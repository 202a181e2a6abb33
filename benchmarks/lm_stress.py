"""Two stress tests of LM forgetting evaluation on TinyTOFU: PSG surrogates and worst-case forget sets.

    python benchmarks/lm_stress.py psg [--models DIR] [--methods graddiff,npo,...] [--band 0.5,0.8] [--threads 1]
    python benchmarks/lm_stress.py worstcase [--models DIR] [--methods graddiff,npo] [--steps 10] [--random-sets 10] [--every-set]

``psg``: for the full model, the oracle and each method (fitted with its defaults), every forget
metric on the forget set D_u and on PSG's surrogate set D~_u with the gap (the ``psg`` attack,
:mod:`erasekit.lm.attacks.psg`, "The Erasure Illusion", arXiv 2512.19025); ``--band 0,1`` keeps
every candidate (a reference: the attack's band is fixed).

``worstcase``: per method, the worst-case set of ``--size`` forget authors (:mod:`erasekit.lm.worstcase`,
Challenging Forgets, ECCV 2024) and ``--random-sets`` random sets of the same size, each unlearned
from the full model by the method with ``--steps`` steps (empty: its default), and the forget metrics.

The models are trained into ``--models`` if missing (as ``benchmarks/lm_unlearning.py`` does).
Figures: docs/results.md.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

from erasekit.lm import model as M
from erasekit.lm.methods.base import get_lm_method, make_lm_config
from erasekit.lm.tasks import Forget, get_task


def psg(full: M.LM, oracle: M.LM, seed: int, methods: list[str], band: tuple[float, float]) -> None:
    from erasekit.lm.attacks.psg import psg_values

    spec = Forget("tinytofu", seed)
    task = get_task(spec)
    print("| model | n D~_u | acc D_u | acc D~_u | acc gap | prob D_u | prob D~_u | prob gap | "
          "truth ratio D_u | truth ratio D~_u | forget quality D_u | forget quality D~_u | oracle acc D_u / D~_u | "
          "acc gap less the oracle's |")
    print("|" + " --- |" * 14)

    def show(label: str, v: dict) -> None:
        f = {k: x.value for k, x in v.items()}
        print(f"| {label} | {v['psg_acc'].meta['n_surrogate']} | {f['psg_acc_du']:.2f} | {f['psg_acc']:.2f} | "
              f"{f['psg_acc_gap']:+.2f} | {f['psg_prob_du']:.2f} | {f['psg_prob']:.2f} | {f['psg_prob_gap']:+.2f} | "
              f"{f['psg_truth_ratio_du']:.2f} | {f['psg_truth_ratio']:.2f} | {f['psg_quality_du']:.1e} | "
              f"{f['psg_quality']:.1e} | {f['psg_acc_du_oracle']:.2f} / {f['psg_acc_oracle']:.2f} | "
              f"{f['psg_acc_excess_gap']:+.2f} |", flush=True)

    v = psg_values(full, task, oracle, band=band)
    show("full", v)
    show("oracle", psg_values(oracle, task, oracle, band=band))
    for name in methods:
        art = get_lm_method(name).fit(full, spec, make_lm_config(name), progress=False)
        with art.applied(full):
            show(name, psg_values(full, task, oracle, band=band))
    kinds = ", ".join(f"{k} {n}" for k, n in v["psg_acc"].meta["kinds"].items())
    print(f"\nD~_u by candidate kind (-book: asked through the author's book): {kinds}")


def worstcase(full: M.LM, seed: int, methods: list[str], size: int, steps: int | None, random_sets: int,
              every: bool) -> None:
    from erasekit.lm import worstcase as W

    print("| method | set | authors | forget acc | forget prob | surrogate acc | forget truth ratio |")
    print("|" + " --- |" * 7)
    for name in methods:
        t = time.perf_counter()
        r = W.compare(full, seed, W.LMWorstCaseConfig(size=size, method=name), random_sets,
                      {"steps": steps} if steps else None)
        rand = [m for label, (_, m) in r["rows"].items() if label != "worst-case"]
        for label, (names, m) in r["rows"].items():
            if label == "worst-case" or every:
                print(f"| {name} | {label} | {', '.join(names)} | "
                      + " | ".join(f"{m[k]:.2f}" for k in W.FORGET_KEYS) + " |", flush=True)
        m = r["random_mean"]
        print(f"| {name} | random mean ({len(rand)} sets) | | " + " | ".join(f"{m[k]:.2f}" for k in W.FORGET_KEYS) + " |")
        print(f"| {name} | random min-max | | " + " | ".join(
            f"{min(x[k] for x in rand):.2f}-{max(x[k] for x in rand):.2f}" for k in W.FORGET_KEYS) + " |")
        print(f"<!-- {name}: {time.perf_counter() - t:.0f} s -->", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("protocol", choices=("psg", "worstcase"))
    ap.add_argument("--models", default="runs/lm/models")
    ap.add_argument("--methods", default="graddiff,npo")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--size", type=int, default=4, help="worstcase: authors per set")
    ap.add_argument("--steps", type=int, default=10, help="worstcase: the method's steps (0: its default)")
    ap.add_argument("--random-sets", type=int, default=10)
    ap.add_argument("--every-set", action="store_true", help="worstcase: a row per random set")
    ap.add_argument("--band", default="0.5,0.8", help="psg: the MiniLM cosine band (the attack's: 0.5,0.8)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    folder = Path(args.models)
    full, oracle = M.ensure_tiny(folder / "full", args.seed), M.ensure_tiny(folder / "oracle", args.seed, oracle=True)
    methods = [m for m in args.methods.split(",") if m]
    if args.protocol == "psg":
        psg(full, oracle, args.seed, methods, tuple(float(x) for x in args.band.split(",")))
    else:
        worstcase(full, args.seed, methods, args.size, args.steps or None, args.random_sets, args.every_set)


if __name__ == "__main__":
    main()
