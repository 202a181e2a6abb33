"""Images/second of the testbed pipeline's batched CFG against a one-prompt-at-a-time loop.

Usage: ``python benchmarks/generation.py [--prompts 32] [--steps 25] [--threads 2] [--precision fp32|bf16|both]``.
Both ways are measured in the same run on the shipped testbed, at the same precision; the script
prints both rates and the ratio (the acceptance bar is >= 4x). ``bf16`` runs both ways under
``torch.autocast("cpu", dtype=torch.bfloat16)``, which any caller can wrap around the pipeline;
``both`` measures fp32, then bf16. Each precision also prints the UNet alone (ms per sample at the
loop's batch of 2 and the batched call's 2 x prompts, median of 5 calls) and the operators that
take most of the batched UNet's time.
"""

from __future__ import annotations

import argparse
import contextlib
import time

import torch

from erasekit.testbed.fidelity import prompt_sets
from erasekit.testbed.pipeline import MAX_LENGTH, load_testbed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precision", choices=("fp32", "bf16", "both"), default="fp32")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pipe = load_testbed()
    prompts = [p.text for p in prompt_sets(args.prompts)["seen_given"]]
    for precision in ("fp32", "bf16") if args.precision == "both" else (args.precision,):
        context = (torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext())
        with context:
            rate_b, rate_s = _measure(pipe, prompts, args.steps)
        print(f"prompts: {len(prompts)}, DDIM steps: {args.steps}, threads: {args.threads}, precision: {precision}")
        print(f"one prompt at a time : {rate_s:7.2f} images/s")
        print(f"batched CFG          : {rate_b:7.2f} images/s")
        print(f"speed-up             : {rate_b / rate_s:7.2f}x", flush=True)
        with context:
            _unet_alone(pipe, 2 * len(prompts))


def _unet_alone(pipe, batch: int) -> None:
    """UNet ms per sample at batch 2 and ``batch``, and the top operators at ``batch``."""
    from torch.profiler import profile

    def call(n: int) -> None:
        x = torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(0))
        states = torch.randn(n, MAX_LENGTH, pipe.unet.config.cross_attention_dim, generator=torch.Generator().manual_seed(1))
        pipe.unet(x, torch.full((n,), 500), encoder_hidden_states=states)

    with torch.inference_mode():
        for n in (2, batch):
            call(n)
            times = []
            for _ in range(5):
                t0 = time.perf_counter()
                call(n)
                times.append(time.perf_counter() - t0)
            print(f"UNet alone, batch {n:4d}: {1000 * sorted(times)[2] / n:6.2f} ms per sample")
        with profile() as prof:
            call(batch)
    ops = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in ops)
    print(f"batch {batch} time by operator: " + ", ".join(f"{e.key} {100 * e.self_cpu_time_total / total:.0f}%"
                                                          for e in ops[:4]), flush=True)


def _measure(pipe, prompts: list[str], steps: int) -> tuple[float, float]:
    pipe("warm-up", num_inference_steps=2)
    pipe(prompts[:2], num_inference_steps=2)
    t0 = time.perf_counter()
    batched = pipe(prompts, num_inference_steps=steps, generator=torch.Generator().manual_seed(0)).images
    t_batched = time.perf_counter() - t0

    t0 = time.perf_counter()
    single = [pipe(p, num_inference_steps=steps, generator=torch.Generator().manual_seed(0)).images[0]
              for p in prompts]
    t_single = time.perf_counter() - t0

    assert len(batched) == len(single) == len(prompts)
    return len(prompts) / t_batched, len(prompts) / t_single


if __name__ == "__main__":
    main()
