"""Continual unlearning on TinyTOFU: a method serving requests one after another, against the
same method unlearning all requests so far at once from the original model (FIT's reference).

    python benchmarks/lm_continual.py [--methods npo,graddiff] [--requests 10] [--models runs/lm/models] [--threads 1]
    python benchmarks/lm_continual.py --methods fit:alpha=1,fit:alpha=10 --no-scratch   # config overrides per row

Request ``i`` is the ``i``-th forget author of TinyTOFU seed 0. After each request: accuracy on
every author forgotten so far and on the earlier requests' authors (do they come back?), retain
and general accuracy (does utility erode?), for the sequence and for from-scratch
(docs/results.md, continual unlearning).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch

from erasekit.config import parse_overrides
from erasekit.lm import model as M
from erasekit.lm.continual import default_requests, from_scratch, run_sequence
from erasekit.lm.methods.base import get_lm_method, make_lm_config


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="runs/lm/models")
    ap.add_argument("--methods", default="npo")
    ap.add_argument("--requests", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-scratch", action="store_true", help="only the sequences (the scratch columns print -)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    full = M.ensure_tiny(Path(args.models) / "full", 0)
    requests = default_requests(0, args.requests)

    def f(x: float | None) -> str:
        return "-" if x is None else f"{x:.2f}"

    print("| method | request | forgotten so far: sequence / scratch | earlier requests: sequence / scratch | "
          "retain: sequence / scratch | general: sequence / scratch | fit s (sequence) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for entry in args.methods.split(","):
        name, *pairs = entry.split(":")
        method, cfg = get_lm_method(name), make_lm_config(name, parse_overrides(pairs))
        _, seq = run_sequence(method, full, 0, cfg, requests, progress=False)
        scratch = (from_scratch(method, full, 0, cfg, requests) if not args.no_scratch
                   else [{k: None for k in seq[0]} for _ in seq])
        for a, b in zip(seq, scratch):
            cols = [f"{f(a[k])} / {f(b[k])}" for k in ("forget_acc", "earlier_acc", "retain_acc", "general_acc")]
            print(f"| {entry} | {a['request']} | " + " | ".join(cols) + f" | {a['fit_seconds']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
