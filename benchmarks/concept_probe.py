"""Suppressed or deleted? Concept probes and the restoration attack on the shipped testbed
(figures in docs/results.md; Jang et al., WWW 2026, for text-to-image: :mod:`erasekit.probe`,
:mod:`erasekit.attacks.restore`).

Fits the probes on the unedited model once, then scores them on the unedited model (held-out
prompts: the probe's own check), on the oracle (when the concept has one) and on each method's
erased model, with the verdict per site against the oracle; then runs the ``restore`` attack on
each erased model in each ``--modes`` (``family``: the attack, the family's probe subspace;
``probe``: the binary concept probe's one direction; ``full``: every mid-block channel; ``random``:
as many random directions as ``family``, the control). Usage: ``python benchmarks/concept_probe.py
[--concept skull] [--methods uce,rece,esd:train_method=esd-x] [--modes family,full,random]``.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from erasekit.attacks import AttackContext, get_attack, run_attack
from erasekit.attacks.base import asr_curve
from erasekit.concepts import get_concept
from erasekit.config import parse_overrides
from erasekit.domain import get_domain
from erasekit.erasure import get_method, make_config
from erasekit.probe import SITES, ProbeConfig, ProbeSet, verdict
from erasekit.testbed.judge import load_judge
from erasekit.testbed.pipeline import load_testbed


def _site(r) -> dict:
    return {"acc": round(r.accuracy, 3), "acc_ci": [round(x, 3) for x in r.accuracy_ci], "auc": round(r.auc, 3),
            "auc_ci": [round(x, 3) for x in r.auc_ci]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--concept", default="skull")
    parser.add_argument("--methods", default="uce,rece,esd:train_method=esd-x")
    parser.add_argument("--modes", default="family,probe,full,random")
    parser.add_argument("--n-prompts", type=int, default=8, help="restore targets: given prompts (seed 0)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pipe, judge = load_testbed(), load_judge()
    concept = get_concept(args.concept)
    cfg = ProbeConfig()
    probes = ProbeSet.fit(pipe, concept, cfg)
    rows: dict[str, dict] = {"unedited": {"probe": {s: _site(r) for s, r in probes.score(pipe).items()}}}
    domain = get_domain("testbed")
    oracle_pipe = domain.load_oracle() if args.concept in domain.oracle_excludes else None
    oracle = probes.score(oracle_pipe) if oracle_pipe is not None else None
    if oracle is not None:
        rows["oracle"] = {"probe": {s: _site(r) for s, r in oracle.items()}}
    for label, row in rows.items():
        print(label, json.dumps(row), flush=True)
    for label in args.methods.split(","):
        name, *pairs = label.split(":")
        t0 = time.perf_counter()
        torch.manual_seed(0)
        erasure = get_method(name).fit(pipe, concept, make_config(name, parse_overrides(pairs)), progress=False)
        row: dict = {"fit_seconds": round(time.perf_counter() - t0, 1)}
        with erasure.applied(pipe):
            scored = probes.score(pipe)
            row["probe"] = {s: {**_site(r), **({"verdict": verdict(r, oracle[s])} if oracle else {})}
                            for s, r in scored.items()}
            ctx = AttackContext(pipe, erasure, concept, judge)
            for mode in args.modes.split(","):
                attack = get_attack("restore")
                attack.mode = mode
                t0 = time.perf_counter()
                res = run_attack(attack, ctx, attack.default_budget, n_prompts=args.n_prompts, seeds=(0,),
                                 progress=False)
                row[f"restore_{mode}"] = {"n": len(res.outcomes), "pre_asr": round(res.pre_asr, 3),
                                          "asr": round(res.asr, 3), "spent": [o.spent for o in res.outcomes],
                                          "asr_by_strengths": [[b, round(a, 3)] for b, a in asr_curve(
                                              [(o.success, o.spent) for o in res.outcomes], attack.default_budget)],
                                          "seconds": round(time.perf_counter() - t0, 1)}
        rows[label] = row
        print(label, json.dumps(row), flush=True)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"concept {args.concept!r}; probes fitted on the unedited model ({len(probes.test_prompts)} held-out prompts, "
          f"timesteps {cfg.timesteps}); restore: {args.n_prompts} given prompts x seed 0, budget 4 strengths")
    modes = args.modes.split(",")
    head = " | ".join(f"{s} acc (AUC)" for s in SITES) + " | verdict (mid) | " + " | ".join(
        f"restore {m}: pre -> ASR" for m in modes)
    print(f"| model | {head} |")
    for label, r in rows.items():
        cells = [f"{r['probe'][s]['acc']:.3f} ({r['probe'][s]['auc']:.3f})" for s in SITES]
        cells.append(r["probe"]["mid"].get("verdict", ""))
        cells += [f"{r[f'restore_{m}']['pre_asr']:.2f} -> {r[f'restore_{m}']['asr']:.2f} (n={r[f'restore_{m}']['n']})"
                  if f"restore_{m}" in r else "" for m in modes]
        print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
