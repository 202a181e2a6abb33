"""IRECE: Inference-time Robustness Enhancement for Concept Erasure (Weng, Liao, Chou, Chen,
"M-ErasureBench", WACV 2026, arXiv 2512.22877; no code released).

A plug-in for sampling that sits on top of any erasure: it localises the concept through the
cross-attention maps of the concept's tokens and re-noises the latents there during the first,
noisiest denoising steps, so that what an inverted latent or a learned embedding carried in that
region is replaced by fresh noise and the (erased) model redraws it from its own conditioning.

What the paper states is that recipe in one sentence ("localizes target concepts via
cross-attention and perturbs the associated latents during denoising"). Everything below is
inferred and can be changed in the config:

- *Where the map comes from*: a second UNet pass on the current latents conditioned on the
  concept prompt ``c*`` (``concept_prompt``; default the concept's target words joined by
  commas), because under attack the prompt may not name the concept at all (a learned
  embedding, an inverted latent with another prompt). The pass runs at every perturbed step, on
  the model as it is (with the erasure underneath applied).
- *The map*: each cross-attention layer's softmax probabilities on ``c*``'s word tokens (start,
  end, padding and commas left out), summed over those tokens, averaged over heads, upsampled
  bilinearly to the latent size and averaged over every cross-attention layer; then normalised to
  [0, 1] per image (min-max) and thresholded: ``M = 1[A_hat > threshold]``. A flat map gives an
  empty mask, and an empty mask leaves sampling bit-exactly as it was.
- *The perturbation*: after the scheduler's step to ``x_prev`` (noise level ``a = alphas_cumprod``
  of the next timestep), the part of ``x_prev`` that is noise, ``eps = (x_prev - sqrt(a) x0_hat) /
  sqrt(1 - a)``, is partly replaced by fresh noise ``xi`` inside the mask,
  ``eps' = sqrt(1 - strength^2) eps + strength xi``, so the latents keep the noise level the
  scheduler expects (the notes' additive ``x + M s xi`` with ``s = sigma_t`` would raise it).
- *When*: the first ``ceil(stop * steps)`` steps (never the last).
- *The noise* ``xi`` is drawn from ``seed`` and the step index, one pattern per step for every image,
  so images stay reproducible and independent of batching (erasekit's noise rule).
- *Defaults*: ``threshold`` 0.3 and ``stop`` 0.4 were chosen on the testbed's ``heart`` under UCE
  against the latent-inversion attack (the notes' range is 0.3-0.5 of the map's maximum and
  30-50% of the steps; docs/results.md has the sweep).

Installed by wrapping ``pipe.scheduler.step`` (its signature kept): it works for any pipeline that
steps its scheduler (the testbed, ``StableDiffusionPipeline``) and any scheduler that has
``alphas_cumprod`` and returns ``pred_original_sample`` (DDIM, DDPM). Its artifact reads nothing
fitted on the base weights, so it :attr:`~erasekit.artifact.Fitter.stacks`: apply UCE, then IRECE.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import ClassVar, Any, Callable

import torch
import torch.nn.functional as F
from diffusers import DiffusionPipeline

from erasekit.attention import recorded_cross_attention
from erasekit.concepts import Concept
from erasekit.erasure import METHODS, Erasure, Method, MethodConfig, check
from erasekit.errors import UserError
from erasekit.methods.negative_prompt import concept_text
from erasekit.pipelines import encode, fingerprint
from erasekit.sampling import noise_generator


@dataclass(frozen=True)
class IRECEConfig(MethodConfig):
    """``concept_prompt``: ``c*`` (empty: the target words joined by commas); ``threshold``: of the
    min-max normalised map (1: the mask is always empty, IRECE does nothing); ``stop``: share of the steps perturbed; ``strength``: share of the
    masked noise replaced; ``seed``: of the fresh noise. See the module docstring."""

    concept_prompt: str = ""
    threshold: float = 0.3
    stop: float = 0.4
    strength: float = 1.0
    seed: int = 0

    bounds: ClassVar[dict[str, tuple[str, float]]] = {"seed": (">=", 0)}

    def __post_init__(self) -> None:
        self.check_types()
        check(0 <= self.threshold <= 1, "threshold", f"must be in [0, 1], got {self.threshold}")
        check(0 < self.stop < 1, "stop", f"must be in (0, 1), got {self.stop}")
        check(0 < self.strength <= 1, "strength", f"must be in (0, 1], got {self.strength}")


def concept_map(maps: dict[str, list[torch.Tensor]], tokens: list[int], size: tuple[int, int]) -> torch.Tensor:
    """From one UNet call's cross-attention probabilities (:func:`erasekit.attention.recorded_cross_attention`):
    the attention on ``tokens`` summed, averaged over heads, upsampled to ``size`` and averaged
    over layers: ``(B, H, W)``."""
    H, W = size
    out = []
    for calls in maps.values():
        probs = calls[-1]  # (B, heads, N, L)
        B, _, N, _ = probs.shape
        amap = probs[..., tokens].sum(-1).mean(1)  # (B, N)
        factor = math.sqrt(H * W / N)
        h, w = round(H / factor), round(W / factor)
        out.append(F.interpolate(amap.view(B, 1, h, w).float(), size=size, mode="bilinear", align_corners=False))
    return torch.cat(out, 1).mean(1)


def concept_mask(amap: torch.Tensor, threshold: float) -> torch.Tensor:
    """``(B, H, W)`` map -> ``(B, 1, H, W)`` bool mask: min-max normalised per image, above
    ``threshold``; empty where the map is flat."""
    flat = amap.flatten(1)
    lo, hi = flat.min(1).values, flat.max(1).values
    span = (hi - lo)[:, None, None]
    normed = (amap - lo[:, None, None]) / span.clamp_min(1e-12)
    return ((normed > threshold) & (span > 1e-8))[:, None]


def concept_tokens(pipe: DiffusionPipeline, prompt: str) -> tuple[torch.Tensor, list[int]]:
    """``c*``'s token states ``(1, L, D)`` and its word-token positions (no start, end, padding, commas)."""
    enc = encode(pipe, [prompt])
    skip = set(pipe.tokenizer(",", add_special_tokens=False).input_ids)
    ids = enc.input_ids[0].tolist()
    tokens = [i for i in range(1, int(enc.lengths[0]) - 1) if ids[i] not in skip]
    if not tokens:
        raise UserError(f"concept prompt {prompt!r} has no word tokens to localise the concept by")
    return enc.states, tokens


def renoised(prev: torch.Tensor, x0: torch.Tensor, alpha: torch.Tensor, mask: torch.Tensor, xi: torch.Tensor,
             strength: float) -> torch.Tensor:
    """``prev`` with the noise part ``eps`` of its masked entries partly replaced by ``xi``:
    ``eps' = sqrt(1 - strength^2) eps + strength xi`` at the same noise level ``alpha``."""
    eps = (prev - alpha.sqrt() * x0) / (1 - alpha).sqrt()
    new = math.sqrt(1 - strength**2) * eps + strength * xi
    return torch.where(mask, prev + (1 - alpha).sqrt() * (new - eps), prev)


@METHODS.register("irece")
class IRECE(Method):
    """IRECE: re-noise the latents where the concept's tokens attend, in the first steps; stacks on any erasure (Weng et al. 2026)."""

    config_class = IRECEConfig
    group = None
    stacks = True

    def fit(self, pipe: DiffusionPipeline, concept: Concept, config: MethodConfig, progress: bool = True) -> Erasure:
        assert isinstance(config, IRECEConfig)
        prompt = concept_text(concept, config.concept_prompt)
        concept_tokens(pipe, prompt)  # a prompt with no word tokens is an error now, not at sampling
        return Erasure(self.name, config, concept, fingerprint(pipe), extra={"concept_prompt": prompt})

    def install(self, pipe: DiffusionPipeline, erasure: Erasure) -> Callable[[], None]:
        config = erasure.config
        assert isinstance(config, IRECEConfig)
        scheduler = pipe.scheduler
        if getattr(scheduler, "alphas_cumprod", None) is None:
            raise UserError(f"irece re-noises at the scheduler's noise levels; {type(scheduler).__name__} has no "
                            "alphas_cumprod (use DDIM or DDPM)")
        states, tokens = concept_tokens(pipe, erasure.extra["concept_prompt"])
        original = scheduler.step
        before = scheduler.__dict__.get("step")

        def mask_for(sample: torch.Tensor, t: Any) -> torch.Tensor:
            with torch.no_grad(), recorded_cross_attention(pipe.unet) as maps:
                pipe.unet(scheduler.scale_model_input(sample, t), t,
                          encoder_hidden_states=states.to(sample).expand(sample.shape[0], -1, -1), return_dict=False)
            return concept_mask(concept_map(maps, tokens, tuple(sample.shape[-2:])), config.threshold)

        @functools.wraps(original)
        def step(model_output: torch.Tensor, timestep: Any, sample: torch.Tensor, *args: Any,
                 return_dict: bool = True, **kwargs: Any) -> Any:
            out = original(model_output, timestep, sample, *args, return_dict=True, **kwargs)
            timesteps = [int(t) for t in scheduler.timesteps]
            k = timesteps.index(int(timestep)) if int(timestep) in timesteps else len(timesteps)
            if k < min(math.ceil(config.stop * len(timesteps)), len(timesteps) - 1):
                mask = mask_for(sample, timestep)
                if bool(mask.any()):
                    x0 = getattr(out, "pred_original_sample", None)
                    if x0 is None:
                        raise UserError(f"irece needs a scheduler whose step returns pred_original_sample; "
                                        f"{type(scheduler).__name__} does not: set pipe.scheduler = "
                                        "DDIMScheduler.from_config(pipe.scheduler.config)")
                    prev = out.prev_sample
                    alpha = scheduler.alphas_cumprod[timesteps[k + 1]].to(prev)
                    xi = torch.randn(prev.shape[1:], generator=noise_generator(config.seed, k)).to(prev)
                    out.prev_sample = renoised(prev, x0, alpha, mask, xi, config.strength)
            return out if return_dict else out.to_tuple()

        scheduler.step = step

        def remove() -> None:
            if scheduler.__dict__.get("step") is not step:
                raise RuntimeError("another hook wrapped pipe.scheduler.step after this irece; remove that one first")
            if before is None:
                del scheduler.step
            else:
                scheduler.step = before

        return remove
