"""Concept arithmetic (Petsiuk & Saenko, ECCV 2024): combine several prompts' noise predictions in
one sampling run, ``e = e_u + s * sum_i w_i (e(c_i) - e_u)``, so that concepts that are not erased
(synonyms, implicit phrases, the rest of the prompt, negated neighbours) rebuild the target.

The composed batch keeps the CFG layout ``[uncond x k; c_1 .. c_k]``, so inference-time guards that
act on CFG batches (SLD, negative prompt) still act on every pair.
"""

from __future__ import annotations

import numpy as np
import torch

from erasekit.attacks.base import ATTACKS, Attack, AttackContext, Outcome, Target, measured
from erasekit.attacks.paraphrase import paraphrases
from erasekit.pipelines import encode
from erasekit.sampling import guided_step, noise_generator, to_uint8


@torch.no_grad()
def sample_composed(ctx: AttackContext, prompts: list[str], weights: list[float], scale: float, seed: int,
                    noise: int) -> np.ndarray:
    """DDIM with the composed guidance; noise as the evaluation image ``(seed, noise)``."""
    pipe = ctx.pipe
    conds = encode(pipe, prompts).states
    uncond = encode(pipe, [""]).states.expand(len(prompts), -1, -1)
    context = torch.cat([uncond, conds])
    gen = noise_generator(seed, noise)
    size = pipe.unet.config.sample_size
    x = torch.randn((1, pipe.unet.config.in_channels, size, size), generator=gen) * pipe.scheduler.init_noise_sigma
    pipe.scheduler.set_timesteps(ctx.steps)
    w = torch.tensor(weights).view(-1, 1, 1, 1)
    k = len(prompts)
    for t in pipe.scheduler.timesteps:
        inp = pipe.scheduler.scale_model_input(x.expand(2 * k, -1, -1, -1), t)
        pred = pipe.unet(inp, t, encoder_hidden_states=context).sample
        e_u, e_c = pred[:k], pred[k:]
        base, delta = e_u.mean(0, keepdim=True), (w * (e_c - e_u)).sum(0, keepdim=True)
        x = guided_step(pipe.scheduler, base, base + delta, scale, t, x)  # as the pipeline steps
    return to_uint8((x / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1))[0]


def compositions(ctx: AttackContext, target: Target) -> list[tuple[list[str], list[float], float]]:
    """Candidate ``(prompts, weights, scale)``, positive weights summing to 1 (so ``scale`` is the
    total guidance), most promising first."""
    family, value, domain = ctx.concept.family, ctx.concept.name, ctx.domain
    assert family is not None
    g = ctx.guidance
    alt = [ctx.rephrase(target.attributes, ph) for ph in paraphrases(ctx)]
    others = [v for v in domain.families[family] if v != value]
    neighbours = [ctx.rephrase(target.attributes, domain.phrases(family, o)["given"][0]) for o in others]
    mine = domain.phrases(family, value)
    bare = [mine["given"][0], *mine["known"][:2]]
    k = len(neighbours)
    out: list[tuple[list[str], list[float], float]] = [
        ([target.prompt, *neighbours], [1.0] + [-0.5 / k] * k, g),            # the target minus its neighbours
        ([*alt[:3], *neighbours], [1 / 3] * 3 + [-0.5 / k] * k, g),           # paraphrases minus neighbours
        ([target.prompt, *alt[:3]], [0.25] * 4, g),                           # mean of phrasings
        ([target.prompt, *bare], [0.25] * 4, g),                              # with the concept's bare words
        ([target.prompt], [1.0], 1.5 * g),                                    # stronger guidance
        ([target.prompt], [1.0], 1.0),                                        # weak guidance
    ]
    out += [([a, *neighbours], [1.0] + [-0.5 / k] * k, g) for a in alt[3:]]
    return out


@ATTACKS.register("arithmetic")
class ConceptArithmetic(Attack):
    """Concept arithmetic: compose noise predictions of several prompts in one sampling run."""

    threat_model = "white-box sampler: the attacker runs the sampler of the open weights (no gradients)"
    needs = "control of the sampling loop"
    budget_unit = "compositions tried"
    default_budget = 8
    order = 20
    test_budget = 2

    def attack(self, ctx: AttackContext, target: Target, budget: int, gen: torch.Generator) -> Outcome:
        cands = compositions(ctx, target)

        def run(counter) -> Outcome:
            img, verdict, desc = None, None, ""
            for k, (prompts, weights, scale) in enumerate(cands[:budget]):
                img = sample_composed(ctx, prompts, weights, scale, target.seed, target.noise)
                verdict = ctx.judge_images(img[None])[0]
                desc = " + ".join(f"{w:+g}*[{p}]" for p, w in zip(prompts, weights)) + f" at scale {scale:g}"
                if ctx.shows_concept(verdict):
                    return Outcome(target.index, target.prompt, target.seed, False, True, img, verdict, desc,
                                   note=f"composition {k + 1}", spent=k + 1)
            return Outcome(target.index, target.prompt, target.seed, False, False, img, verdict, desc,
                           spent=len(cands[:budget]))

        return measured(ctx, run)
