"""UCE at Stable-Diffusion-1.4 scale: erasekit's shared solver vs a straightforward per-layer one.

Builds a ``UNet2DConditionModel`` from the SD-1.4 config (random weights, no download: 16
cross-attention layers, 32 K/V matrices, 768-wide text), draws 1 erase + 1,000 preserve prompts x
77 token keys, and times:

* erasekit: ``uce_right_factor`` (one 768x768 Cholesky solve, sums accumulated once) then
  ``W @ M`` for all 32 matrices;
* baseline: for each matrix, recompute ``sum c c^T`` and the right-hand side, then multiply by an
  explicit inverse.

Prints both times, the ratio (acceptance: <= 0.2), the largest relative difference between the
two results (acceptance: <= 1e-4) and peak memory. Usage: ``python benchmarks/closed_form.py``.
"""

from __future__ import annotations

import argparse
import resource
import time
from types import SimpleNamespace

import torch
from diffusers import UNet2DConditionModel

from erasekit.linalg import uce_right_factor
from erasekit.methods.uce import edited_kv

SD14_UNET = dict(
    sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
    block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=768, attention_head_dim=8,
)


def per_layer_baseline(unet, erase, guide, preserve, lamb):
    out = {}
    for name, m in unet.named_modules():
        if "attn2" in name and name.endswith(("to_k", "to_v")):
            w0 = m.weight.detach().double()
            c, g, p = erase.double(), guide.double(), preserve.double()
            d = c.shape[1]
            mat2 = lamb * torch.eye(d, dtype=torch.float64) + c.T @ c + p.T @ p
            mat1 = lamb * w0 + (w0 @ g.T) @ c + (w0 @ p.T) @ p
            out[f"unet.{name}.weight"] = (mat1 @ torch.linalg.inv(mat2)).float()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--preserve", type=int, default=1000)
    parser.add_argument("--tokens", type=int, default=77)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    unet = UNet2DConditionModel(**SD14_UNET).eval()
    n_kv = sum(1 for n, _ in unet.named_modules() if "attn2" in n and n.endswith(("to_k", "to_v")))
    print(f"SD-1.4 UNet built in {time.perf_counter() - t0:.1f} s: "
          f"{sum(p.numel() for p in unet.parameters()) / 1e6:.1f}M parameters, {n_kv} K/V matrices")
    g = torch.Generator().manual_seed(1)
    erase = torch.randn(args.tokens, 768, generator=g)
    guide = torch.randn(args.tokens, 768, generator=g)
    preserve = torch.randn(args.preserve * args.tokens, 768, generator=g)
    lamb = 0.5

    t0 = time.perf_counter()
    ours = edited_kv(SimpleNamespace(unet=unet), uce_right_factor(erase, guide, preserve, lamb))
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    base = per_layer_baseline(unet, erase, guide, preserve, lamb)
    t_base = time.perf_counter() - t0

    worst = max(((ours[k].double() - base[k].double()).norm() / base[k].double().norm()).item() for k in base)
    layers = dict(unet.named_modules())
    edit = max(((ours[k].double() - layers[k[5:-7]].weight.double()).norm()
                / layers[k[5:-7]].weight.double().norm()).item() for k in ours)
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print(f"keys: {erase.shape[0]} erase + {preserve.shape[0]} preserve vectors of width 768, threads {args.threads}")
    print(f"per-layer baseline (covariance per layer, explicit inverse): {t_base:8.2f} s")
    print(f"erasekit shared solver (one Cholesky solve, W @ M):          {t_ours:8.2f} s")
    print(f"ratio erasekit / baseline: {t_ours / t_base:.3f}  (required <= 0.2)")
    print(f"max relative difference over {len(base)} matrices: {worst:.2e}  (required <= 1e-4)")
    print(f"largest relative size of the edit itself, |W* - W0| / |W0|: {edit:.2e}")
    print(f"peak memory (max RSS): {peak_gb:.2f} GB")


if __name__ == "__main__":
    main()
