"""Sampling the way every erasekit measurement does it, on any diffusers text-to-image pipeline.

The noise rule: image ``(seed, i)`` (seed ``seed``, prompt ``i`` of a prompt set) starts from noise
drawn by :func:`noise_seed`, so it does not depend on batching, and an attack that regenerates a
target starts from the same noise as the evaluation image it attacks.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from erasekit.errors import InvalidResult

#: The evaluation protocol's sampler settings (DDIM steps and classifier-free guidance): the
#: built-in testbed's; pass ``guidance=7.5`` (and ``steps=50``) for Stable Diffusion.
DEFAULT_STEPS = 25
DEFAULT_GUIDANCE = 2.0

#: Keeps the noise of different prompt indices of one seed apart (more prompts than this never occur).
NOISE_STRIDE = 100003


def rescale_guidance(pred: torch.Tensor, pred_cond: torch.Tensor, phi: float) -> torch.Tensor:
    """CFG rescale (Lin et al. 2024, "Common Diffusion Noise Schedules and Sample Steps are Flawed",
    eq. 15-16): match the guided prediction's per-sample std to the conditional one's, mixed with
    weight ``phi`` (0: plain CFG)."""
    if phi <= 0:
        return pred
    dims = tuple(range(1, pred.ndim))
    ratio = pred_cond.std(dim=dims, keepdim=True) / pred.std(dim=dims, keepdim=True).clamp_min(1e-8)
    return phi * (pred * ratio) + (1 - phi) * pred


def guided_step(scheduler: Any, pred_uncond: torch.Tensor, pred_cond: torch.Tensor, guidance: float,
                t: torch.Tensor, sample: torch.Tensor, rescale: float = 0.0, **extra: Any) -> torch.Tensor:
    """One sampler step with classifier-free guidance ``e_u + g (e_c - e_u)``: the step of every
    erasekit sampling loop (the testbed pipeline, ESD's trajectories, concept arithmetic).

    A scheduler that clips its x0 estimate (the testbed's DDIM clips to the image range) steps with
    the noise of the *clipped* x0 (DDIM's ``use_clipped_model_output``). Stepping with the raw
    noise, as diffusers does by default, adds back what the clip removed, and at guidance 5 the
    testbed's shapes came apart into fragments (shape accuracy 0.38; 1.00 with the clipped noise:
    docs/results.md#guidance). Schedulers without clipping are unaffected.
    """
    pred = pred_uncond + guidance * (pred_cond - pred_uncond)
    pred = rescale_guidance(pred, pred_cond, rescale)
    if _clips(scheduler):
        extra = {"use_clipped_model_output": True, **extra}
    return scheduler.step(pred, t, sample, **extra).prev_sample


def _clips(scheduler: Any) -> bool:
    config = getattr(scheduler, "config", {})
    clipping = bool(config.get("clip_sample", False) or config.get("thresholding", False))
    return clipping and "use_clipped_model_output" in inspect.signature(scheduler.step).parameters


def noise_seed(seed: int, index: int) -> int:
    """The torch seed of image ``(seed, index)``."""
    return seed * NOISE_STRIDE + index


def noise_generator(seed: int, index: int) -> torch.Generator:
    """A CPU generator seeded for image ``(seed, index)``."""
    return torch.Generator().manual_seed(noise_seed(seed, index))


def to_uint8(images: np.ndarray | torch.Tensor) -> np.ndarray:
    """Floats in [0, 1] (NHWC numpy, as ``output_type="np"`` returns) to uint8."""
    arr = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else images
    return np.round(np.clip(arr, 0, 1) * 255).astype(np.uint8)


@torch.no_grad()
def ddim_cfg(unet: torch.nn.Module, scheduler: Any, cond: torch.Tensor, uncond: torch.Tensor, guidance: float,
             shape: tuple, gen: torch.Generator, steps: int | None = None) -> torch.Tensor:
    """DDIM with CFG from noise, one latent of ``shape[1:]`` per row of ``cond``, for the first
    ``steps`` of ``scheduler.timesteps`` (``None``: all). The noise is drawn on the CPU from
    ``gen``, so it is the same on any device."""
    x = torch.randn((len(cond), *shape[1:]), generator=gen).to(cond.device) * scheduler.init_noise_sigma
    context = torch.cat([uncond.expand(len(cond), -1, -1), cond])
    for t in scheduler.timesteps[:steps]:
        p_u, p_c = unet(torch.cat([x, x]), t, encoder_hidden_states=context).sample.chunk(2)
        x = guided_step(scheduler, p_u, p_c, guidance, t, x)
    return x


def generate_jobs(
    pipe: Any,
    jobs: list[tuple[int, int, str]],
    steps: int = DEFAULT_STEPS,
    guidance: float = DEFAULT_GUIDANCE,
    negative_prompt: str | None = None,
) -> np.ndarray:
    """One batch of ``(seed, prompt_index, prompt)`` jobs -> uint8 images ``(n, H, W, 3)``."""
    imgs = pipe(
        [p for _, _, p in jobs],
        num_inference_steps=steps,
        guidance_scale=guidance,
        generator=[noise_generator(s, i) for s, i, _ in jobs],
        negative_prompt=negative_prompt,
        output_type="np",
    ).images
    return checked_images(np.asarray(imgs), jobs)


def checked_images(images: np.ndarray, jobs: list[tuple[int, int, str]]) -> np.ndarray:
    """uint8 images, or :class:`~erasekit.errors.InvalidResult` if any is non-finite or one flat
    colour (what NaN weights or an infinite guidance produce): such images are never scored."""
    bad = [k for k, img in enumerate(images) if not np.isfinite(img).all()]
    out = to_uint8(np.nan_to_num(images))
    bad += [k for k, img in enumerate(out) if k not in bad and img.min() == img.max()]
    if bad:
        s, i, p = jobs[bad[0]]
        raise InvalidResult(f"generation is broken: {len(bad)} of {len(jobs)} images are non-finite or one flat "
                            f"colour, e.g. seed {s} prompt {i} ({p!r}); check the model, the erasure and the "
                            "guidance; nothing was stored")
    return out


def generate(
    pipe: Any,
    prompts: list[str],
    seeds: list[int],
    steps: int = DEFAULT_STEPS,
    guidance: float = DEFAULT_GUIDANCE,
    batch: int = 64,
    progress: bool = True,
    negative_prompt: str | None = None,
) -> np.ndarray:
    """Images ``(len(seeds) * len(prompts), H, W, 3)`` uint8, seed-major, in batches of ``batch``."""
    jobs = [(s, i, p) for s in seeds for i, p in enumerate(prompts)]
    out = []
    bar = tqdm(total=len(jobs), desc="generating", unit="img", disable=not progress)
    for k in range(0, len(jobs), batch):
        out.append(generate_jobs(pipe, jobs[k : k + batch], steps, guidance, negative_prompt))
        bar.update(len(out[-1]))
    bar.close()
    return np.concatenate(out)
