"""Cost of each erasure method's training step on the testbed, against a plain denoising-loss step
measured in the same run (figures in docs/results.md, "Method cost").

    python benchmarks/method_cost.py [--methods esd,ca,salun] [--k 10] [--threads 2] [--full] [--json]

Each method is fitted once, with its step count (``iterations``, or ``epochs`` for few-shot
erasing) cut to ``k`` unless ``--full``; a global optimiser hook marks each step's end, and the
median gap between consecutive steps of the method's busiest optimiser is one step's time, UNet
passes and text-encoder passes (per sample, counted by forward hooks). What happens before the
loop (drawing the method's images, encoding prompts, saliency masks) is not in it. The baseline
is one Adam step of the plain denoising loss on the whole UNet, at the method's batch size (1
where it has none), timed in the same process. Closed-form and
inference-time methods have no optimiser steps: their whole default fit is timed; a step without a
UNet pass (a text-encoder, classifier or autoencoder step) gets no ratio. ``--full`` fits
every method with its defaults (the issue's 10-minute bar for a fit).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import fields
from statistics import median

import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

from erasekit.attacks.base import Counter
from erasekit.concepts import get_concept
from erasekit.erasure import METHODS, get_method, make_config
from erasekit.losses import denoising_loss
from erasekit.methods.esd import latent_shape
from erasekit.pipelines import encode, group_parameters, training
from erasekit.testbed.pipeline import load_testbed

STEP_FIELDS = ("iterations", "epochs")


def baseline_step(pipe, batch: int, repeats: int = 5) -> float:
    """Seconds of one plain denoising-loss step (forward, backward, Adam) on the whole UNet."""
    params = list(group_parameters(pipe, "unet").values())
    saved = [p.detach().clone() for p in params]
    states = encode(pipe, ["a red heart on a plain background"] * batch).states
    x0 = torch.randn((batch, *latent_shape(pipe)[1:]), generator=torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(params, lr=1e-5)
    times = []
    with training(pipe.unet, params):
        for i in range(repeats + 1):
            t = time.perf_counter()
            opt.zero_grad()
            denoising_loss(pipe.unet, pipe.scheduler, x0, states, gen).backward()
            opt.step()
            if i:  # the first step warms up
                times.append(time.perf_counter() - t)
    with torch.no_grad():
        for p, s in zip(params, saved):
            p.copy_(s)
    return min(times)


def timed_fit(pipe, name: str, concept, overrides: dict) -> dict:
    """One fit: its seconds, and the median seconds, UNet passes and text-encoder passes (per
    sample) between consecutive steps of one optimiser (step boundaries come from a global
    optimiser hook, so image drawing, prompt encoding and masks before the loop are not counted).
    With several optimisers, the one whose steps take the most UNet passes (then the busiest): a
    generator's step, which includes its discriminator's, rather than the discriminator's."""
    unet, te = Counter("unet"), Counter("text_encoder")
    marks: dict[int, list[tuple[float, int, int]]] = {}

    def mark(opt, args, kwargs) -> None:
        marks.setdefault(id(opt), []).append((time.perf_counter(), unet.evals, te.evals))

    handle = register_optimizer_step_post_hook(mark)
    torch.manual_seed(0)
    t = time.perf_counter()
    try:
        with unet.on(pipe), te.on(pipe):
            get_method(name).fit(pipe, concept, make_config(name, overrides), progress=False)
    finally:
        handle.remove()
    out = {"fit_seconds": time.perf_counter() - t, "fit_unet_passes": unet.evals, "fit_te_passes": te.evals}
    best = None
    for steps in marks.values():
        if len(steps) >= 2:
            gaps = [[b[i] - a[i] for i in range(3)] for a, b in zip(steps, steps[1:])]
            cand = {"optimizer_steps": len(steps), "step_seconds": median(g[0] for g in gaps),
                    "unet_passes": median(g[1] for g in gaps), "te_passes": median(g[2] for g in gaps)}
            rank = (cand["unet_passes"], cand["optimizer_steps"])
            if best is None or rank > (best["unet_passes"], best["optimizer_steps"]):
                best = cand
    out.update(best or {})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default="", help="comma-separated (default: every registered method)")
    ap.add_argument("--concept", default="heart")
    ap.add_argument("--k", type=int, default=10, help="steps of each fit (unless --full)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--full", action="store_true", help="fit with the defaults (whole step count)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    torch.set_num_threads(args.threads)
    names = args.methods.split(",") if args.methods else METHODS.names()
    for name in names:
        get_method(name)  # unknown names fail here, with "did you mean"
    pipe, concept = load_testbed(), get_concept(args.concept)
    baselines: dict[int, float] = {}
    rows = []
    for name in names:
        cfg = make_config(name)
        step_field = next((f.name for f in fields(cfg) if f.name in STEP_FIELDS), None)
        short = {} if args.full or step_field is None else {step_field: args.k}
        row = {"method": name, "steps": getattr(cfg, step_field) if step_field else None, "step": step_field,
               "full": not short, **timed_fit(pipe, name, concept, short)}
        if row.get("unet_passes"):  # a step with no UNet pass (text-encoder training) has no UNet baseline
            batch = int(getattr(cfg, "batch", 1))
            if batch not in baselines:
                baselines[batch] = baseline_step(pipe, batch)
            row.update(batch=batch, baseline_seconds=baselines[batch], ratio=row["step_seconds"] / baselines[batch])
        rows.append(row)
        if not args.json:
            print(_line(row), flush=True)
    if args.json:
        print(json.dumps({"threads": args.threads, "k": args.k, "concept": args.concept, "rows": rows}, indent=2))


def _line(r: dict) -> str:
    fit = (f"fit {r['fit_seconds']:6.1f} s ({'defaults' if r['full'] else 'short'}: {r['fit_unet_passes']} UNet, "
           f"{r['fit_te_passes']} text-encoder passes)")
    if "step_seconds" not in r:
        return f"{r['method']:16s} no optimiser steps; {fit}"
    if "ratio" not in r:
        return (f"{r['method']:16s} {r['step'] or 'steps'}: {r['step_seconds'] * 1000:6.0f} ms/step, no UNet pass (no "
                f"ratio); per step {r['te_passes']:g} text-encoder passes; {fit}")
    steps = f"{r['step']} {r['steps']}" if r["step"] else "steps"
    return (f"{r['method']:16s} {steps:15s} batch {r['batch']}: {r['step_seconds'] * 1000:6.0f} ms/step = "
            f"{r['ratio']:5.1f}x the plain step ({r['baseline_seconds'] * 1000:.0f} ms); per step "
            f"{r['unet_passes']:g} UNet + {r['te_passes']:g} text-encoder passes; {fit}")


if __name__ == "__main__":
    main()
