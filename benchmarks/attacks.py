"""What each attack spends to reach its ASR on an erased testbed concept.

Usage::

    python benchmarks/attacks.py                       # UCE-erased skull, every attack
    python benchmarks/attacks.py --methods uce,rece,esd-x,sld,negative_prompt --markdown

Erases the concept with each method (artifacts kept in ``--out``, reused when present), runs every
attack with its default budget on ``--prompts`` target prompts x ``--seeds``, stores everything in
``--out/erasekit.db`` (``erasekit report --db ...`` shows it), and prints per attack: pre-attack
ASR, ASR, UNet evaluations (per sample) and wall time in all, and per broken target.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

METHODS = {  # name -> (method, overrides)
    "uce": ("uce", {}),
    "rece": ("rece", {}),
    "esd-x": ("esd", {"train_method": "esd-x"}),
    "sld": ("sld", {}),
    "negative_prompt": ("negative_prompt", {}),
    "negative_prompt-negate": ("negative_prompt", {"mode": "negate"}),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concept", default="skull")
    parser.add_argument("--methods", default="uce", help=f"comma-separated, from {', '.join(METHODS)}")
    parser.add_argument("--attacks", default=None, help="comma-separated (default: all, in the ladder's order)")
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--guidance", type=float, default=None, help="sampling guidance (default: the testbed's 2.0)")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--out", default="runs/attacks")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--markdown", action="store_true", help="also print the table in Markdown (docs/results.md)")
    parser.add_argument("--plain-loss", action="store_true",
                        help="ablation: white-box losses on the conditional prediction even against inference-time guards")
    args = parser.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    torch.set_num_threads(args.threads)

    from erasekit.artifact import fit_or_load
    from erasekit.attacks import ladder
    from erasekit.concepts import get_concept
    from erasekit.erasure import Erasure
    from erasekit.redteam import attack
    from erasekit.sampling import DEFAULT_GUIDANCE
    from erasekit.store import Store
    from erasekit.testbed.judge import load_judge
    from erasekit.testbed.pipeline import load_testbed

    pipe, judge = load_testbed(), load_judge()
    concept = get_concept(args.concept)
    out = Path(args.out)
    store = Store(out / "erasekit.db")
    attacks = args.attacks.split(",") if args.attacks else ladder()
    seeds = tuple(int(s) for s in args.seeds.split(","))
    rows = []
    for label in args.methods.split(","):
        method, overrides = METHODS[label]
        folder = out / f"{concept.name}-{label}"
        erasure, _ = fit_or_load(folder, Erasure, method, pipe, concept, overrides, "testbed (shipped)", progress=False)
        for name in attacks:
            t0 = time.perf_counter()
            r = attack(store, pipe, judge, concept, name, None, erasure, folder, args.prompts, seeds,
                       guidance=args.guidance or DEFAULT_GUIDANCE, progress=False,
                       name=folder.name + (f" (guidance {args.guidance:g})" if args.guidance else "")
                       + (" (plain loss)" if args.plain_loss else ""), guided_loss=not args.plain_loss)
            broke = [s for s in r["samples"] if s["success"] and not s["pre_success"]]
            per = (sum(s["unet_evals"] for s in broke) / len(broke), sum(s["wall_seconds"] for s in broke) / len(broke)) \
                if broke else (None, None)
            rows.append((label, name, r, per))
            print(f"{label:16s} {name:11s} budget {r['budget']:4d} {r['budget_unit']:42s} pre-ASR {r['pre_asr']:.2f} "
                  f"ASR {r['asr']:.2f}  UNet evals {r['unet_evals']:6d}  wall {r['wall_seconds']:6.1f} s  per broken "
                  f"target: {'-' if per[0] is None else f'{per[0]:.0f} evals, {per[1]:.1f} s'}"
                  f"{'  (stored)' if r['cached'] else ''}  [{time.perf_counter() - t0:.0f} s]", flush=True)
    if args.markdown:
        names = [a for a in attacks]
        print("\n| method | " + " | ".join(names) + " |")
        print("| --- | " + " | ".join("---" for _ in names) + " |")
        for label in args.methods.split(","):
            cells = []
            for name in names:
                r = next(x[2] for x in rows if x[0] == label and x[1] == name)
                cells.append(f"{r['pre_asr']:.2f} → **{r['asr']:.2f}** ({r['wall_seconds']:.0f} s)")
            print(f"| {label} | " + " | ".join(cells) + " |")
        print("\nbudgets: " + "; ".join(f"{x[1]} {x[2]['budget']} {x[2]['budget_unit']}" for x in rows[: len(names)]))


if __name__ == "__main__":
    main()
