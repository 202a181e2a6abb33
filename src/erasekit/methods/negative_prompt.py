"""Negative prompt: the zero-cost baseline. The concept's words replace the unconditional branch of
classifier-free guidance, ``e = e(x, c_neg) + s (e(x, c) - e(x, c_neg))``.

Installed as a UNet forward pre-hook that rewrites the unconditional half of the CFG batch, so it
works with any pipeline that batches ``[uncond; cond]`` (the testbed, ``StableDiffusionPipeline``).
It replaces a negative prompt the caller passes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from diffusers import DiffusionPipeline

from erasekit.concepts import Concept
from erasekit.erasure import METHODS, Erasure, Method, MethodConfig, check
from erasekit.pipelines import encode, fingerprint, unet_call_hook


@dataclass(frozen=True)
class NegativePromptConfig(MethodConfig):
    """``prompt``: the negative prompt; empty means the concept's target words joined by commas."""

    prompt: str = ""

    def __post_init__(self) -> None:
        self.check_types()
        check(isinstance(self.prompt, str), "prompt", f"must be a string, got {self.prompt!r}")


def concept_text(concept: Concept, override: str = "") -> str:
    return override.strip() or ", ".join(concept.target)


def cfg_halves(kwargs: dict, args: tuple) -> torch.Tensor | None:
    """The ``encoder_hidden_states`` of a UNet call if it looks like a CFG batch, else ``None``."""
    states = kwargs.get("encoder_hidden_states", args[2] if len(args) > 2 else None)
    if states is None or states.shape[0] % 2:
        return None
    return states


@METHODS.register("negative_prompt")
class NegativePrompt(Method):
    """Negative prompt: the concept replaces the unconditional CFG branch (baseline)."""

    config_class = NegativePromptConfig
    group = None

    def fit(self, pipe: DiffusionPipeline, concept: Concept, config: MethodConfig, progress: bool = True) -> Erasure:
        assert isinstance(config, NegativePromptConfig)
        return Erasure(self.name, config, concept, fingerprint(pipe),
                       extra={"negative_prompt": concept_text(concept, config.prompt)})

    def install(self, pipe: DiffusionPipeline, erasure: Erasure) -> Callable[[], None]:
        negative = encode(pipe, [erasure.extra["negative_prompt"]]).states

        def pre_hook(module: torch.nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
            states = cfg_halves(kwargs, args)
            if states is None:
                return None
            half = states.shape[0] // 2
            neg = negative.to(states.device, states.dtype).expand(half, -1, -1)
            new = torch.cat([neg, states[half:]])
            if "encoder_hidden_states" in kwargs:
                kwargs = {**kwargs, "encoder_hidden_states": new}
            else:
                args = (*args[:2], new, *args[3:])
            return args, kwargs

        return unet_call_hook(pipe, pre_hook, with_pre=True)
