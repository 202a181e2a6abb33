"""Discrete prompt attack (UnlearnDiffAtk / P4D style; Zhang et al. 2024, Chin et al. 2024):
``k`` tokens prepended to the prompt, optimised through a relaxed one-hot over the text encoder's
vocabulary (straight-through: the forward pass uses the argmax tokens) to minimise the erased
model's denoising loss on reference images. The result is a plain text prompt, judged as text.
"""

from __future__ import annotations

from functools import cache

import torch

from erasekit.attacks.base import ATTACKS, Attack, AttackContext, Outcome, Target, measured
from erasekit.attacks.embedding import frozen, to_x0
from erasekit.pipelines import max_length

FIRST_WORD_ID = 999  # MiniLM/BERT: ids below are [PAD], [unusedN], [CLS], [SEP], [MASK]


@cache
def whole_words(tokenizer) -> torch.Tensor:
    """Ids of the vocabulary's whole-word tokens: those whose text tokenizes back to the token
    alone (no word pieces, no special tokens), so that an optimised id sequence, decoded, is
    what the pipeline encodes again."""
    texts = [tokenizer.decode([i]) for i in range(len(tokenizer))]
    ids = tokenizer(texts, add_special_tokens=False).input_ids
    special = set(tokenizer.all_special_ids)
    return torch.tensor([i for i, x in enumerate(ids) if x == [i] and i not in special])


def mask_kwargs(pipe, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """The attention mask as the text encoder takes it where the pipeline conditions with one (the
    testbed's BERT; CLIP with ``use_attention_mask``), else nothing."""
    encoder = pipe.text_encoder
    uses_mask = hasattr(pipe, "encode_text") or getattr(encoder.config, "use_attention_mask", False)
    return {"attention_mask": mask.to(encoder.device)} if uses_mask else {}


def embed_with_prefix(pipe, prefix: torch.Tensor, prompt: str | list[str]) -> torch.Tensor:
    """Encoder states for ``[CLS] prefix prompt [SEP]`` where ``prefix`` are input embeddings ``(k, D)``,
    with gradients; one row per prompt. The prompt is tokenized as the pipeline conditions its UNet
    (:func:`erasekit.pipelines.encode`: padded, with the attention mask where the pipeline uses one),
    so an empty prefix gives the pipeline's own states. The prefix goes in through a hook on the
    token-embedding layer, which works for BERT (the testbed) and CLIP (Stable Diffusion) alike."""
    prompts = [prompt] if isinstance(prompt, str) else list(prompt)
    n, k = len(prompts), prefix.shape[0]
    tok = pipe.tokenizer(prompts, padding="max_length", max_length=max_length(pipe) - k, truncation=True,
                         return_tensors="pt")
    ids, mask = tok.input_ids, tok.attention_mask
    ids = torch.cat([ids[:, :1], torch.zeros(n, k, dtype=ids.dtype), ids[:, 1:]], 1)  # placeholders, replaced below
    mask = torch.cat([mask[:, :1], torch.ones(n, k, dtype=mask.dtype), mask[:, 1:]], 1)
    encoder = pipe.text_encoder
    kwargs = mask_kwargs(pipe, mask)

    def insert(module: torch.nn.Module, args: tuple, out: torch.Tensor) -> torch.Tensor:
        return torch.cat([out[:, :1], prefix.to(out).expand(n, -1, -1), out[:, 1 + k :]], 1)

    with encoder.get_input_embeddings().register_forward_hook(insert):
        return encoder(input_ids=ids.to(encoder.device), **kwargs)[0]


@ATTACKS.register("discrete")
class DiscreteAttack(Attack):
    """Discrete prompt attack: k vocabulary tokens prepended, optimised against the erased model (UnlearnDiffAtk)."""

    threat_model = "white-box: gradients of the erased model and its text encoder"
    needs = "reference images of the concept (drawn by the unedited model)"
    budget_unit = "gradient steps"
    default_budget = 60
    order = 40
    transferable = True
    test_budget = 20
    tokens = 3
    lr = 0.5
    check_every = 10

    def attack(self, ctx: AttackContext, target: Target, budget: int, gen: torch.Generator) -> Outcome:
        pipe = ctx.pipe
        words = pipe.text_encoder.get_input_embeddings().weight.detach()
        vocab = words.shape[0]
        ban = torch.zeros(vocab, dtype=torch.bool)
        ban[:FIRST_WORD_ID] = True

        def run(counter) -> Outcome:
            x0 = to_x0(target.reference)
            logits = (0.01 * torch.randn(self.tokens, vocab, generator=gen)).requires_grad_(True)
            opt = torch.optim.Adam([logits], lr=self.lr)
            last, checked = None, None
            with frozen(pipe.unet, pipe.text_encoder):
                for step in range(budget):
                    masked = logits.masked_fill(ban, -1e9)
                    soft = masked.softmax(-1)
                    hard = torch.nn.functional.one_hot(soft.argmax(-1), vocab).float()
                    prefix = (hard + soft - soft.detach()) @ words
                    loss = ctx.loss(pipe.unet, x0, embed_with_prefix(pipe, prefix, target.prompt), gen)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    if (step + 1) % self.check_every == 0 or step + 1 == budget:
                        ids = logits.detach().masked_fill(ban, -1e9).argmax(-1).tolist()
                        if ids == checked and step + 1 < budget:
                            continue
                        checked = ids
                        text = f"{pipe.tokenizer.decode(ids)} {target.prompt}"
                        img = ctx.generate(text, target.seed, target.noise)
                        verdict = ctx.judge_images(img[None])[0]
                        last = Outcome(target.index, target.prompt, target.seed, False, ctx.shows_concept(verdict),
                                       img, verdict, text, grad_steps=step + 1, note=f"step {step + 1}")
                        if last.success:
                            return last
            assert last is not None
            return last

        return measured(ctx, run)
