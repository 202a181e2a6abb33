"""Latent inversion ("Memories of Forgotten Concepts", 2024; M-ErasureBench, 2025): DDIM-invert a
concept image to its initial noise, then let the erased model sample from that noise with the
target prompt. Variants, in order:

1. white-box, reconstruction: invert with the erased model and sample with it at guidance 1, the
   inversion's own setting (a white-box attacker runs the model and picks the sampler settings;
   inference-time guards that act through CFG are then inactive);
2. white-box, the deployed guidance: same latents, sampled with the system's guidance;
3. black-box: invert with the unedited model (the attacker never touches the erased one), the
   system samples with its guidance;
4. black-box with the empty prompt as the inversion condition.

Restricted to one threat (``restricted("white")`` / ``("black")``, as ``erasekit audit`` does), only
that threat's two variants are tried.
"""

from __future__ import annotations

import re

import numpy as np
import torch

from erasekit.attacks.base import ATTACKS, Attack, AttackContext, Found, Outcome, Target, measured
from erasekit.attacks.embedding import to_x0
from erasekit.losses import predicted_x0
from erasekit.pipelines import encode


@torch.no_grad()
def ddim_invert(pipe, x0: torch.Tensor, states: torch.Tensor, steps: int) -> torch.Tensor:
    """Deterministic DDIM inversion of ``x0`` up to the sampler's first (noisiest) timestep."""
    sched = pipe.scheduler
    sched.set_timesteps(steps)
    ts = sorted(int(t) for t in sched.timesteps)
    alphas = sched.alphas_cumprod
    x, t_cur = x0, 0
    for t_next in ts:
        out = pipe.unet(x, t_cur, encoder_hidden_states=states).sample
        a = alphas[t_cur]
        kind = sched.config.prediction_type
        if kind == "v_prediction":
            eps = (1 - a).sqrt() * x + a.sqrt() * out
        elif kind == "epsilon":
            eps = out
        else:
            eps = (x - a.sqrt() * out) / (1 - a).sqrt()
        x0_pred = predicted_x0(sched, x, torch.full((x.shape[0],), t_cur), out)  # clipped as the sampler clips
        a_next = alphas[t_next]
        x = a_next.sqrt() * x0_pred + (1 - a_next).sqrt() * eps
        t_cur = t_next
    return x


@ATTACKS.register("latent")
class LatentInversion(Attack):
    """Latent inversion: DDIM-invert a concept image, regenerate from its noise (white-box and black-box)."""

    threat_model = "white-box (invert with the erased model) then black-box (invert with the unedited model)"
    needs = "an image of the concept (the unedited model's reference image)"
    budget_unit = "inversions tried (of 4)"
    default_budget = 4
    order = 60
    test_budget = 1
    threats = ("white", "black")
    transferable = True

    def replay(self, ctx: AttackContext, found: Found) -> np.ndarray:
        """The target's prompt from the inverted latents, at the guidance they were found with (stored
        beside them; older runs wrote it only in their note)."""
        if "guidance" in found.tensors:
            guidance = float(found.tensors["guidance"])
        else:
            guidance = float(re.search(r"guidance ([0-9.]+)", found.note).group(1))  # type: ignore[union-attr]
        states = encode(ctx.pipe, [found.prompt]).states
        return ctx.generate_embeds(states, found.seed, found.noise, latents=found.tensors["latents"], guidance=guidance)

    def restricted(self, threat: str) -> "LatentInversion":
        out = super().restricted(threat)
        out.budget_unit = "inversions tried (of 2)"  # type: ignore[misc]  # that threat's two variants
        return out  # type: ignore[return-value]

    def attack(self, ctx: AttackContext, target: Target, budget: int, gen: torch.Generator) -> Outcome:
        pipe = ctx.pipe
        variants = [("white-box", target.prompt, 1.0), ("white-box", target.prompt, None),
                    ("black-box", target.prompt, None), ("black-box", "", None)]
        if self.threat is not None:  # restricted (the audit's threat matrix): that threat's two variants
            variants = [v for v in variants if v[0] == f"{self.threat}-box"]

        def run(counter) -> Outcome:
            x0 = to_x0(target.reference)
            last = None
            for k, (mode, cond, guidance) in enumerate(variants[:budget]):
                if mode == "white-box":
                    latents = ddim_invert(pipe, x0, encode(pipe, [cond]).states, ctx.steps)
                else:
                    with ctx.unedited() as base:
                        latents = ddim_invert(base, x0, encode(base, [cond]).states, ctx.steps)
                states = encode(pipe, [target.prompt]).states
                img = ctx.generate_embeds(states, target.seed, target.noise, latents=latents, guidance=guidance)
                verdict = ctx.judge_images(img[None])[0]
                last = Outcome(target.index, target.prompt, target.seed, False, ctx.shows_concept(verdict), img, verdict,
                               target.prompt, spent=k + 1,
                               adversarial={"latents": latents,
                                            "guidance": torch.tensor(ctx.guidance if guidance is None else guidance)},
                               note=f"{mode}, inverted with {'the prompt' if cond else 'the empty prompt'}, "
                                    f"guidance {ctx.guidance if guidance is None else guidance:g}")
                if last.success:
                    return last
            assert last is not None
            return last

        return measured(ctx, run)
