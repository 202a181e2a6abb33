"""Shape accuracy at high guidance for several ways of guiding the testbed's DDIM sampler.

Usage: ``python benchmarks/sampler_variants.py [--guidance 3,5,7.5] [--variants ...]``. The 16
``seen_given`` prompts of ``erasekit testbed evaluate --prompts 16`` x seeds 0 and 1 on the shipped
weights, judged by the shipped judge; every variant in one run:

* ``rescale0.7``: CFG rescale 0.7 (Lin et al. 2024; the default before the fix), raw-noise DDIM step;
* ``rescale1``: CFG rescale 1.0, raw-noise step;
* ``interval``: guidance only below t = 800 (Kynkäänniemi et al. 2024), rescale 0.7, raw-noise step;
* ``apg``: adaptive projected guidance on x0 (Sadat et al. 2024; eta 0, momentum -0.5, r 15);
* ``clipped``: plain CFG, stepping with the clipped x0's noise (``erasekit.sampling.guided_step``);
* ``clipped+rescale0.7``: the same with CFG rescale 0.7.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from diffusers.utils.torch_utils import randn_tensor

from erasekit.sampling import noise_generator, rescale_guidance, to_uint8
from erasekit.testbed.fidelity import prompt_sets
from erasekit.testbed.judge import load_judge
from erasekit.testbed.pipeline import load_testbed

VARIANTS = ("rescale0.7", "rescale1", "interval", "apg", "clipped", "clipped+rescale0.7")


@torch.no_grad()
def sample(pipe, texts: list[str], seeds: list[int], g: float, variant: str, steps: int = 25) -> np.ndarray:
    sched = pipe.scheduler
    ac = sched.alphas_cumprod
    cond, uncond = pipe.encode_prompt(texts, 1, True, None, None, None)
    ctx = torch.cat([uncond, cond])
    size = pipe.unet.config.sample_size
    gens = [noise_generator(s, i % (len(texts) // len(set(seeds)))) for i, s in enumerate(seeds)]
    x = randn_tensor((len(texts), 3, size, size), generator=gens)
    sched.set_timesteps(steps)
    momentum = torch.zeros_like(x)
    for t in sched.timesteps:
        vu, vc = pipe.unet(torch.cat([x, x]), t, encoder_hidden_states=ctx).sample.chunk(2)
        a, s = ac[t].sqrt(), (1 - ac[t]).sqrt()
        clipped = variant.startswith("clipped")
        if variant == "apg":
            x0u, x0c = a * x - s * vu, a * x - s * vc
            d = (x0c - x0u) - 0.5 * momentum
            momentum = d
            d = d * torch.clamp(15.0 / d.flatten(1).norm(dim=1).view(-1, 1, 1, 1), max=1.0)
            unit = x0c.flatten(1) / x0c.flatten(1).norm(dim=1, keepdim=True).clamp_min(1e-8)
            orth = d.flatten(1) - (d.flatten(1) * unit).sum(1, keepdim=True) * unit
            v = (a * x - (x0c + (g - 1) * orth.view_as(d))) / s
        else:
            gg = 1.0 if variant == "interval" and t.item() > 800 else g
            phi = {"rescale1": 1.0, "clipped": 0.0}.get(variant, 0.7)
            v = rescale_guidance(vu + gg * (vc - vu), vc, phi)
        x = sched.step(v, t, x, use_clipped_model_output=clipped).prev_sample
    return to_uint8((x / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).numpy())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--guidance", default="3,5,7.5")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pipe, judge = load_testbed(), load_judge()
    prompts = prompt_sets(16, 0)["seen_given"]
    texts = [p.text for p in prompts] * 2
    seeds = [0] * len(prompts) + [1] * len(prompts)
    guidances = [float(g) for g in args.guidance.split(",")]
    print(f"shape accuracy on {len(texts)} images (seen pairs, given words) at guidance {guidances}")
    for variant in args.variants.split(","):
        accs = []
        for g in guidances:
            verdicts = judge.predict(sample(pipe, texts, seeds, g, variant))
            accs.append(np.mean([v["shape"] == p.attributes.shape for p, v in zip(prompts * 2, verdicts)]))
        print(f"{variant:20s} " + "  ".join(f"{a:.2f}" for a in accs), flush=True)


if __name__ == "__main__":
    main()
