"""Seconds per training step of the testbed for several settings, measured in one run.

Usage: ``python benchmarks/train_step.py [--steps 3] [--threads 2]``. Prints s/step, images/s
and the ratio against the fp32 small baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from diffusers import UNet2DConditionModel

from erasekit.testbed.pipeline import MAX_LENGTH
from erasekit.testbed.train import diffusion_loss, train_scheduler, unet_config

SETTINGS = [
    ("small, batch 64, fp32", "small", 64, False, False),
    ("small, batch 64, bf16", "small", 64, True, False),
    ("small, bf16, channels-last", "small", 64, True, True),
    ("small, bf16, batch 32", "small", 32, True, False),
    ("small, bf16, batch 128", "small", 128, True, False),
    ("medium, bf16, batch 64", "medium", 64, True, False),
]


def time_setting(width: str, batch: int, bf16: bool, channels_last: bool, steps: int) -> float:
    torch.manual_seed(0)
    unet = UNet2DConditionModel(**unet_config(width))
    if channels_last:
        unet = unet.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(unet.parameters(), lr=1e-4)
    sched = train_scheduler()
    x0 = torch.rand(batch, 3, 32, 32) * 2 - 1
    if channels_last:
        x0 = x0.to(memory_format=torch.channels_last)
    cond = torch.randn(batch, MAX_LENGTH, 384)
    times = []
    for i in range(steps + 2):
        t0 = time.perf_counter()
        loss = diffusion_loss(unet, sched, x0, cond, torch.Generator().manual_seed(i), 5.0, bf16)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i >= 2:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    base = None
    print(f"{'setting':32s} {'s/step':>8s} {'img/s':>8s} {'img/s vs fp32':>14s}")
    for name, width, batch, bf16, cl in SETTINGS:
        s = time_setting(width, batch, bf16, cl, args.steps)
        ips = batch / s
        base = base or ips
        print(f"{name:32s} {s:8.2f} {ips:8.1f} {ips / base:13.2f}x", flush=True)


if __name__ == "__main__":
    main()
