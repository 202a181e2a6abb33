"""Negative prompt: the zero-cost baseline, in two forms.

- ``mode="replace"`` (default; diffusers' ``negative_prompt``): the concept's words replace the
  unconditional branch of classifier-free guidance, ``e = e(x, c_neg) + g (e(x, c) - e(x, c_neg))``.
- ``mode="negate"``: Composable Diffusion's NOT (Liu et al., ECCV 2022), a third UNet pass on the
  concept with its own strength, ``e = e_0 + g ((e_c - e_0) - scale (e_neg - e_0))``. ``replace`` is
  the special case ``g scale = g - 1`` with ``e_0`` dropped; ``negate`` keeps the unconditional
  branch and pushes away from the concept as hard as ``scale`` says, without raising the guidance.

Both are UNet hooks that act only on classifier-free-guidance batches (``[uncond; cond]`` with the
same latents in both halves), so they work with any pipeline that batches CFG that way (the testbed,
``StableDiffusionPipeline``) and leave training-style calls alone. ``replace`` overrides a negative
prompt the caller passes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Callable

import torch
from diffusers import DiffusionPipeline

from erasekit.concepts import Concept
from erasekit.erasure import METHODS, Erasure, Method, MethodConfig, check
from erasekit.pipelines import call_states, encode, fingerprint, unet_call_hook, with_call_states

MODES = ("replace", "negate")


@dataclass(frozen=True)
class NegativePromptConfig(MethodConfig):
    """``prompt``: the negative prompt (empty: the concept's target words joined by commas);
    ``mode``: replace / negate; ``scale``: negate's strength relative to the guidance scale."""

    prompt: str = ""
    mode: str = "replace"
    scale: float = 1.0

    bounds: ClassVar[dict[str, tuple[str, float]]] = {"scale": (">", 0)}

    def __post_init__(self) -> None:
        self.check_types()
        check(isinstance(self.prompt, str), "prompt", f"must be a string, got {self.prompt!r}")
        check(self.mode in MODES, "mode", f"must be one of {', '.join(MODES)}, got {self.mode!r}")


def concept_text(concept: Concept, override: str = "") -> str:
    return override.strip() or ", ".join(concept.target)


def cfg_halves(kwargs: dict, args: tuple) -> torch.Tensor | None:
    """The ``encoder_hidden_states`` of a UNet call if it is a CFG batch, else ``None``.

    A CFG batch has an even size and the same latents in both halves (pipelines call
    ``unet(torch.cat([latents] * 2), ...)``); a batch of different samples, as attacks and
    fine-tuning pass, is not one."""
    states = call_states(args, kwargs)
    sample = kwargs.get("sample", args[0] if args else None)
    if states is None or sample is None or states.shape[0] % 2 or sample.shape[0] != states.shape[0]:
        return None
    half = sample.shape[0] // 2
    return states if torch.equal(sample[:half], sample[half:]) else None


def guard_hook(
    concept_states: torch.Tensor,
    cond_update: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, float], torch.Tensor],
) -> Callable:
    """A UNet forward hook for inference-time guards (negate, SLD).

    On a CFG batch it runs one more UNet pass with ``concept_states`` on the conditional half's
    latents and replaces the conditional prediction by ``cond_update(e_0, e_p, e_s, t)`` (``t`` the
    step's timestep, for guards with state across steps); the pipeline's own CFG line then applies
    the guard."""

    def hook(module: torch.nn.Module, args: tuple, kwargs: dict, output):
        states = cfg_halves(kwargs, args)
        if states is None:
            return None
        sample = kwargs.get("sample", args[0] if args else None)
        t = kwargs.get("timestep", args[1] if len(args) > 1 else None)
        out = output[0] if isinstance(output, tuple) else output.sample
        half = out.shape[0] // 2
        extra = {k: v for k, v in kwargs.items() if k not in ("sample", "timestep", "encoder_hidden_states",
                                                              "return_dict")}
        t_half = t[half:] if torch.is_tensor(t) and t.dim() and t.shape[0] == 2 * half else t
        e_s = module.forward(sample[half:], t_half, encoder_hidden_states=concept_states.to(states).expand(half, -1, -1),
                             return_dict=False, **extra)[0]
        t_val = float(t.flatten()[0]) if torch.is_tensor(t) else float(t)
        new = torch.cat([out[:half], cond_update(out[:half], out[half:], e_s, t_val)])
        if isinstance(output, tuple):
            return (new, *output[1:])
        output.sample = new
        return output

    return hook


@METHODS.register("negative_prompt")
class NegativePrompt(Method):
    """Negative prompt: the concept replaces the unconditional CFG branch, or is negated (baseline)."""

    config_class = NegativePromptConfig
    group = None

    def fit(self, pipe: DiffusionPipeline, concept: Concept, config: MethodConfig, progress: bool = True) -> Erasure:
        assert isinstance(config, NegativePromptConfig)
        return Erasure(self.name, config, concept, fingerprint(pipe),
                       extra={"negative_prompt": concept_text(concept, config.prompt), "mode": config.mode,
                              "scale": config.scale})

    def install(self, pipe: DiffusionPipeline, erasure: Erasure) -> Callable[[], None]:
        negative = encode(pipe, [erasure.extra["negative_prompt"]]).states
        if erasure.extra.get("mode", "replace") == "negate":
            scale = float(erasure.extra["scale"])
            return unet_call_hook(pipe, guard_hook(negative, lambda e_0, e_p, e_s, t: e_p - scale * (e_s - e_0)))

        def pre_hook(module: torch.nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
            states = cfg_halves(kwargs, args)
            if states is None:
                return None
            half = states.shape[0] // 2
            neg = negative.to(states.device, states.dtype).expand(half, -1, -1)
            return with_call_states(args, kwargs, torch.cat([neg, states[half:]]))

        return unet_call_hook(pipe, pre_hook, with_pre=True)
