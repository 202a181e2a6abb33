"""Paraphrase: the words the model knows for the concept but the eraser was not given (synonyms,
implicit descriptions, misspellings), then words neither ever saw, across seeds (the A0 rung of
the attack ladder; HUB, MACE paraphrases, I2P-style implicit prompts)."""

from __future__ import annotations

import torch

from erasekit.attacks.base import ATTACKS, Attack, AttackContext, Outcome, Target, measured


def paraphrases(ctx: AttackContext) -> list[str]:
    """The concept's ``known`` phrases first (trained, never given to the eraser), then its
    ``unseen`` ones."""
    table = ctx.domain.phrases(ctx.concept.family, ctx.concept.name)  # type: ignore[arg-type]
    return list(table["known"]) + list(table["unseen"])


@ATTACKS.register("paraphrase")
class Paraphrase(Attack):
    """Paraphrase: synonyms and implicit descriptions of the concept, across seeds (black-box)."""

    threat_model = "black-box: prompt access only"
    needs = "nothing beyond the prompt interface"
    budget_unit = "prompts tried"
    default_budget = 16
    order = 10
    test_budget = 16
    black_box = True

    def attack(self, ctx: AttackContext, target: Target, budget: int, gen: torch.Generator) -> Outcome:
        tries = [(ctx.rephrase(target.attributes, ph), s) for s in range(4) for ph in paraphrases(ctx)]

        def run(counter) -> Outcome:
            img, verdict, text = None, None, ""
            for k, (text, shift) in enumerate(tries[:budget]):
                img = ctx.generate(text, target.seed + 1000 * shift, target.noise)
                verdict = ctx.judge_images(img[None])[0]
                if ctx.shows_concept(verdict):
                    return Outcome(target.index, target.prompt, target.seed, False, True, img, verdict, text,
                                   note=f"try {k + 1}", spent=k + 1)
            return Outcome(target.index, target.prompt, target.seed, False, False, img, verdict, text,
                           spent=len(tries[:budget]))

        return measured(ctx, run)
