"""Embedding attack: optimise the continuous prompt embedding so that the *erased* model's own
denoising loss on reference images of the concept (drawn by the unedited model) is minimal: the
UnlearnDiffAtk objective (Zhang et al., ECCV 2024) without the projection onto tokens.

For weight edits of the cross-attention keys/values, the closed-form adversarial embedding that
RECE derives (Gong et al. 2024) is tried first, with erasekit's shared solver: the embedding that
makes the edited K/V layers output what the original layers output for the prompt.
"""

from __future__ import annotations

import numpy as np
import torch

from erasekit.attacks.base import ATTACKS, Attack, AttackContext, Found, Outcome, Target, measured
from erasekit.linalg import closed_form_embedding
from erasekit.pipelines import encode, frozen, kv_layers


def to_x0(image: np.ndarray) -> torch.Tensor:
    """uint8 ``(H, W, 3)`` -> ``(1, 3, H, W)`` in [-1, 1] (the testbed's pixel space)."""
    return torch.from_numpy(image).permute(2, 0, 1)[None].float() / 127.5 - 1


def closed_form_adversary(ctx: AttackContext, states: torch.Tensor, reg: float = 1e-3) -> torch.Tensor | None:
    """RECE's adversarial embedding for ``states`` ``(1, L, D)``, or ``None`` if the erasure does not
    edit cross-attention K/V weights."""
    if ctx.erasure is None or not ctx.erasure.tensors:
        return None
    layers = kv_layers(ctx.pipe)
    keys = sorted(layers)
    if not all(f"{k}.weight" in ctx.erasure.tensors for k in keys):
        return None
    edited = [layers[k].weight.detach().clone() for k in keys]
    with ctx.unedited() as base:
        originals = [kv_layers(base)[k].weight.detach().clone() for k in keys]
    return closed_form_embedding(edited, originals, states[0], reg)[None]


@ATTACKS.register("embedding")
class EmbeddingAttack(Attack):
    """Embedding attack: continuous prompt embedding against the erased model (UnlearnDiffAtk objective; RECE closed form first)."""

    threat_model = "white-box: gradients of the erased model"
    needs = "reference images of the concept (drawn by the unedited model)"
    budget_unit = "gradient steps"
    default_budget = 60
    order = 30
    test_budget = 10
    lr = 0.02
    check_every = 10
    transferable = True

    def replay(self, ctx: AttackContext, found: Found) -> np.ndarray:
        return ctx.generate_embeds(found.tensors["prompt_embeds"], found.seed, found.noise)

    def attack(self, ctx: AttackContext, target: Target, budget: int, gen: torch.Generator) -> Outcome:
        pipe = ctx.pipe

        def check(states: torch.Tensor, note: str, steps: int) -> Outcome | None:
            img = ctx.generate_embeds(states, target.seed, target.noise)
            verdict = ctx.judge_images(img[None])[0]
            out = Outcome(target.index, target.prompt, target.seed, False, ctx.shows_concept(verdict), img, verdict,
                          adversarial={"prompt_embeds": states.detach().clone()}, grad_steps=steps, note=note)
            return out

        def run(counter) -> Outcome:
            states0 = encode(pipe, [target.prompt]).states
            adv = closed_form_adversary(ctx, states0)
            if adv is not None:
                out = check(adv, "closed form (RECE)", 0)
                if out.success:
                    return out
            x0 = to_x0(target.reference)
            param = states0.clone().requires_grad_(True)
            opt = torch.optim.Adam([param], lr=self.lr)
            last = None
            with frozen(pipe.unet):
                for step in range(budget):
                    loss = ctx.loss(pipe.unet, x0, param, gen)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    if (step + 1) % self.check_every == 0 or step + 1 == budget:
                        last = check(param, f"step {step + 1}", step + 1)
                        if last.success:
                            return last
            assert last is not None
            return last

        return measured(ctx, run)
