"""SLD: Safe Latent Diffusion (Schramowski et al., CVPR 2023; diffusers ``StableDiffusionPipelineSafe``).

A third UNet pass on the safety concept ``c_S`` steers each step away from it:
``gamma = clamp(|e_p - e_S| s_S, max=1)`` (0 where ``e_p - e_S >= threshold``),
``g_S = gamma (e_S - e_0) + s_m nu`` with momentum ``nu``, and after ``warmup`` steps
``e = e_0 + s_g ((e_p - e_0) - g_S)``. Installed as a UNet forward hook that returns
``e_p - g_S`` for the conditional half, so the pipeline's own CFG line produces exactly SLD's
update; needs guidance_scale > 1 (a CFG batch).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from diffusers import DiffusionPipeline

from erasekit.concepts import Concept
from erasekit.erasure import METHODS, Erasure, Method, MethodConfig, check
from erasekit.methods.negative_prompt import concept_text, guard_hook
from erasekit.pipelines import encode, fingerprint, unet_call_hook

#: The four presets of the SLD paper / diffusers ``SafetyConfig``.
PRESETS: dict[str, dict[str, float]] = {
    "weak": {"sld_guidance_scale": 20, "warmup_steps": 15, "threshold": 0.0, "momentum": 0.0, "mom_beta": 0.0},
    "medium": {"sld_guidance_scale": 1000, "warmup_steps": 10, "threshold": 0.01, "momentum": 0.3, "mom_beta": 0.4},
    "strong": {"sld_guidance_scale": 2000, "warmup_steps": 7, "threshold": 0.025, "momentum": 0.5, "mom_beta": 0.7},
    "max": {"sld_guidance_scale": 5000, "warmup_steps": 0, "threshold": 1.0, "momentum": 0.5, "mom_beta": 0.7},
}


@dataclass(frozen=True)
class SLDConfig(MethodConfig):
    """``preset`` (weak / medium / strong / max); any other field set overrides the preset's value."""

    preset: str = "medium"
    safety_concept: str = ""
    sld_guidance_scale: float | None = None
    warmup_steps: int | None = None
    threshold: float | None = None
    momentum: float | None = None
    mom_beta: float | None = None

    def __post_init__(self) -> None:
        self.check_types()
        check(self.preset in PRESETS, "preset", f"must be one of {', '.join(PRESETS)}, got {self.preset!r}")
        check(self.sld_guidance_scale is None or self.sld_guidance_scale >= 0, "sld_guidance_scale",
              f"must be >= 0, got {self.sld_guidance_scale}")
        check(self.warmup_steps is None or self.warmup_steps >= 0, "warmup_steps",
              f"must be >= 0, got {self.warmup_steps}")
        check(self.mom_beta is None or 0 <= self.mom_beta <= 1, "mom_beta", f"must be in [0, 1], got {self.mom_beta}")

    def resolved(self) -> dict[str, float]:
        values = dict(PRESETS[self.preset])
        for key in values:
            if getattr(self, key) is not None:
                values[key] = getattr(self, key)
        return values


@METHODS.register("sld")
class SLD(Method):
    """SLD: safety guidance away from the concept at inference (Schramowski et al. 2023)."""

    config_class = SLDConfig
    test_config = {"warmup_steps": 0}
    group = None

    def fit(self, pipe: DiffusionPipeline, concept: Concept, config: MethodConfig, progress: bool = True) -> Erasure:
        assert isinstance(config, SLDConfig)
        return Erasure(self.name, config, concept, fingerprint(pipe),
                       extra={"safety_concept": concept_text(concept, config.safety_concept), **config.resolved()})

    def install(self, pipe: DiffusionPipeline, erasure: Erasure) -> Callable[[], None]:
        p = erasure.extra
        safety = encode(pipe, [p["safety_concept"]]).states
        state: dict = {"step": 0, "last_t": None, "momentum": None}

        def update(e_0: torch.Tensor, e_p: torch.Tensor, e_s: torch.Tensor, t: float) -> torch.Tensor:
            # a timestep that does not decrease starts a new sampling run
            if state["last_t"] is None or t >= state["last_t"] or state["momentum"] is None \
                    or state["momentum"].shape != e_p.shape:
                state.update(step=0, momentum=torch.zeros_like(e_p))
            state["last_t"] = t
            scale = torch.clamp((e_p - e_s).abs() * p["sld_guidance_scale"], max=1.0)
            scale = torch.where((e_p - e_s) >= p["threshold"], torch.zeros_like(scale), scale)
            g_s = (e_s - e_0) * scale + p["momentum"] * state["momentum"]
            state["momentum"] = p["mom_beta"] * state["momentum"] + (1 - p["mom_beta"]) * g_s
            if state["step"] >= p["warmup_steps"]:
                e_p = e_p - g_s
            state["step"] += 1
            return e_p

        return unet_call_hook(pipe, guard_hook(safety, update))
