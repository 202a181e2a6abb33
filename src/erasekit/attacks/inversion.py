"""Concept inversion (Pham et al., "Circumventing Concept Erasure", ICLR 2024): textual inversion
of one new token on images of the concept, through the erased model. The token's input embedding
replaces a placeholder word in captions of the targets' attributes; the erased weights stay frozen.

Restricted to the ``black`` threat (M-ErasureBench's black-box learned embedding, as ``erasekit
audit`` runs it), the token is learned on the unedited model and only replayed on the erased one.
"""

from __future__ import annotations

import time
from contextlib import nullcontext

import numpy as np
import torch

from erasekit.attacks.base import ATTACKS, Attack, AttackContext, Counter, Found, Outcome, Target
from erasekit.attacks.discrete import mask_kwargs
from erasekit.attacks.embedding import frozen, to_x0
from erasekit.pipelines import max_length

PLACEHOLDER = "object"  # the word whose embedding the learned token replaces (and starts from)
LEARNED = "<learned token>"  # how a stored adversarial prompt writes it


def states_with_token(pipe, prompts: list[str], token: torch.Tensor) -> torch.Tensor:
    """Encoder states of ``prompts`` with every PLACEHOLDER token's input embedding set to ``token``
    (``(d,)``, or one row per prompt, ``(n, 1, d)``), with gradients."""
    tok = pipe.tokenizer(prompts, padding="max_length", max_length=max_length(pipe), truncation=True,
                         return_tensors="pt")
    place = pipe.tokenizer.convert_tokens_to_ids(PLACEHOLDER)
    where = (tok.input_ids == place).unsqueeze(-1)
    encoder = pipe.text_encoder

    def swap(module: torch.nn.Module, args: tuple, out: torch.Tensor) -> torch.Tensor:
        return torch.where(where.to(out.device), token.to(out).expand_as(out), out)

    # through a hook on the token-embedding layer, which BERT (the testbed) and CLIP (Stable Diffusion) both have
    with encoder.get_input_embeddings().register_forward_hook(swap):
        return encoder(input_ids=tok.input_ids.to(encoder.device), **mask_kwargs(pipe, tok.attention_mask))[0]


@ATTACKS.register("inversion")
class ConceptInversion(Attack):
    """Concept inversion: textual inversion of a new token on concept images, through the erased model."""

    threat_model = "white-box: gradients of the erased model"
    needs = "images of the concept (the unedited model's reference images of every target)"
    budget_unit = "gradient steps (one token for all targets)"
    default_budget = 100
    order = 50
    test_budget = 25
    lr = 0.02
    check_every = 25
    shared = True
    threats = ("white", "black")
    transferable = True

    def replay(self, ctx: AttackContext, found: Found) -> np.ndarray:
        """The target's prompt with the learned token in the placeholder's place."""
        prompt = (found.text or "").replace(LEARNED, PLACEHOLDER)
        with torch.no_grad():
            return ctx.generate_embeds(states_with_token(ctx.pipe, [prompt], found.tensors["token_embedding"]),
                                       found.seed, found.noise)

    def attack_all(self, ctx: AttackContext, targets: list[Target], budget: int, gen: torch.Generator,
                   progress: bool) -> dict[int, Outcome]:
        from tqdm.auto import tqdm

        pipe = ctx.pipe
        prompts = [ctx.rephrase(t.attributes, PLACEHOLDER) for t in targets]
        x0 = torch.cat([to_x0(t.reference) for t in targets])
        place = pipe.tokenizer.convert_tokens_to_ids(PLACEHOLDER)
        token = pipe.text_encoder.get_input_embeddings().weight[place].detach().clone().requires_grad_(True)
        opt = torch.optim.Adam([token], lr=self.lr)
        counter = Counter()
        t0 = time.perf_counter()
        done: dict[int, Outcome] = {}
        last: dict[int, Outcome] = {}
        learning_model = ctx.unedited if self.threat == "black" else nullcontext  # black-box: learn on the unedited model
        with frozen(pipe.unet, pipe.text_encoder), counter.on(pipe):
            for step in tqdm(range(budget), desc=self.name, disable=not progress):
                with learning_model():
                    loss = ctx.loss(pipe.unet, x0, states_with_token(pipe, prompts, token), gen)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                if (step + 1) % self.check_every and step + 1 < budget:
                    continue
                with torch.no_grad():
                    for t, prompt in zip(targets, prompts):
                        if t.index in done:
                            continue
                        img = ctx.generate_embeds(states_with_token(pipe, [prompt], token), t.seed, t.noise)
                        verdict = ctx.judge_images(img[None])[0]
                        out = Outcome(t.index, t.prompt, t.seed, False, ctx.shows_concept(verdict), img, verdict,
                                      prompt.replace(PLACEHOLDER, LEARNED),
                                      adversarial={"token_embedding": token.detach().clone()},
                                      grad_steps=step + 1, note=f"step {step + 1}")
                        out.unet_evals = counter.evals
                        out.wall_seconds = round(time.perf_counter() - t0, 3)
                        (done if out.success else last)[t.index] = out
                if len(done) == len(targets):
                    break
        return {**last, **done}
