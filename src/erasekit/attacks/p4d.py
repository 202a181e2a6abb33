"""P4D, Prompting4Debugging (Chin et al., ICML 2024): a discrete prompt optimised so that the
*erased* model's noise prediction on it matches the *unedited* model's on the target prompt.

The P4D-K variant: one learnable token is inserted after every ``every`` (3) tokens of the target
prompt. The tokens are optimised PEZ-style (Wen et al. 2023): continuous embeddings, projected
each step onto their nearest vocabulary token (cosine); the loss is taken with the projected
embeddings and its gradient applied to the continuous ones (AdamW, lr 0.1, weight decay 0.1, as
in the paper's configs). The loss is ``MSE(e_erased(x_t, t, c_adv), e_unedited(x_t, t, c_target))``
with ``x_t`` the unedited model's image of the target noised at a random timestep. Against an
inference-time guard both sides are guided predictions at the deployed guidance, where the guard
acts (the paper's SLD and negative-prompt variants put the guard into the erased side).

Every ``check_every`` steps the projected prompt is drawn by the erased model and judged as
plain text; the attack stops on success (the paper instead keeps the prompt whose images are
closest to the target images in CLIP space, every 50 of 3,000 iterations).

Reconstructed from the paper's code (read, not copied); what differs: the vocabulary is restricted
to whole-word tokens (so that the decoded prompt tokenizes back to the optimised ids), budgets
are tens of steps instead of 3,000, and the unedited model's predictions are computed in blocks
of ``check_every`` steps (the erasure is removed once per block, not per step).
"""

from __future__ import annotations

import torch

from erasekit.attacks.base import ATTACKS, Attack, AttackContext, Outcome, Target, measured
from erasekit.attacks.discrete import whole_words
from erasekit.attacks.embedding import to_x0
from erasekit.losses import model_prediction
from erasekit.pipelines import encode, frozen, max_length


def interleaved(pipe, prompt: str, every: int) -> tuple[list[int | None], int]:
    """``[CLS] p1 .. p_every _ p_every+1 .. [SEP]``: the prompt's ids with a slot (``None``) after
    every ``every`` tokens (moved to the end of the word it falls in), cut to fit the encoder; and
    the number of slots."""
    tok = pipe.tokenizer
    enc = tok(prompt, add_special_tokens=False)
    ids, words = enc.input_ids, enc.word_ids()
    seq: list[int | None] = []
    due = False
    for k, i in enumerate(ids):
        seq.append(i)
        due = due or (k + 1) % every == 0
        if due and (k + 1 == len(ids) or words[k + 1] != words[k]):
            seq.append(None)
            due = False
    if not seq or seq[-1] is not None:
        seq.append(None)
    seq = seq[: max_length(pipe) - 2]
    if None not in seq:
        seq[-1] = None
    bos, eos = tok("").input_ids[:1], tok("").input_ids[-1:]
    return [*bos, *seq, *eos], seq.count(None)


def encode_slots(pipe, seq: list[int | None], slots: torch.Tensor) -> torch.Tensor:
    """Encoder states ``(1, L, D)`` of ``seq`` with its slots filled by input embeddings ``slots``."""
    words = pipe.text_encoder.get_input_embeddings()
    n = max_length(pipe)
    ids = torch.tensor([pipe.tokenizer.pad_token_id if i is None else i for i in seq]
                       + [pipe.tokenizer.pad_token_id] * (n - len(seq)))
    emb = words(ids)
    where = torch.tensor([i is None for i in seq] + [False] * (n - len(seq)))
    emb = emb.masked_scatter(where[:, None], slots.to(emb.dtype))
    mask = torch.tensor([1] * len(seq) + [0] * (n - len(seq)))[None]
    return pipe.text_encoder(inputs_embeds=emb[None], attention_mask=mask).last_hidden_state


@ATTACKS.register("p4d")
class P4D(Attack):
    """P4D: prompt tokens (PEZ projection) matching the erased model's noise prediction to the unedited model's."""

    threat_model = "white-box: gradients of the erased model, plus the unedited model's predictions"
    needs = "the unedited model and its image of each target (reference images)"
    budget_unit = "gradient steps"
    default_budget = 60
    order = 45
    transferable = True
    test_budget = 10
    every = 3
    lr = 0.1
    weight_decay = 0.1
    check_every = 10

    def attack(self, ctx: AttackContext, target: Target, budget: int, gen: torch.Generator) -> Outcome:
        pipe, tok = ctx.pipe, ctx.pipe.tokenizer
        vocab = whole_words(tok)
        table = pipe.text_encoder.get_input_embeddings().weight.detach()[vocab]
        unit = torch.nn.functional.normalize(table, dim=-1)
        guided = ctx.guard and ctx.guided_loss
        sched = pipe.scheduler

        def run(counter) -> Outcome:
            seq, n_slots = interleaved(pipe, target.prompt, self.every)
            x0 = to_x0(target.reference)
            uncond = encode(pipe, [""]).states  # the erased pipeline's (a text-encoder hook acts on it)
            with ctx.unedited():
                goal_states, base_uncond = encode(pipe, [target.prompt, ""]).states.split(1)
            g = ctx.guidance if guided else None
            start = vocab[torch.randint(len(vocab), (n_slots,), generator=gen)]
            param = pipe.text_encoder.get_input_embeddings().weight.detach()[start].clone().requires_grad_(True)
            opt = torch.optim.AdamW([param], lr=self.lr, weight_decay=self.weight_decay)
            step, last = 0, None
            while step < budget:
                block = min(self.check_every, budget - step)
                noise = torch.randn((block, *x0.shape[1:]), generator=gen)
                ts = torch.randint(0, sched.config.num_train_timesteps, (block,), generator=gen)
                x_t = sched.add_noise(x0.expand(block, -1, -1, -1), noise, ts)
                with ctx.unedited() as base, torch.no_grad():  # the unedited model's predictions
                    goals = model_prediction(base.unet, x_t, ts, goal_states.expand(block, -1, -1), g, base_uncond)
                with frozen(pipe.unet, pipe.text_encoder):
                    for k in range(block):
                        with torch.no_grad():
                            nearest = (torch.nn.functional.normalize(param, dim=-1) @ unit.T).argmax(-1)
                        projected = table[nearest].clone().requires_grad_(True)
                        states = encode_slots(pipe, seq, projected)
                        pred = model_prediction(pipe.unet, x_t[k : k + 1], ts[k : k + 1], states, g, uncond)
                        loss = torch.nn.functional.mse_loss(pred.float(), goals[k : k + 1].float())
                        (param.grad,) = torch.autograd.grad(loss, [projected])
                        opt.step()
                        opt.zero_grad(set_to_none=True)
                step += block
                with torch.no_grad():
                    nearest = (torch.nn.functional.normalize(param, dim=-1) @ unit.T).argmax(-1)
                filled = iter(vocab[nearest].tolist())
                ids = [next(filled) if i is None else i for i in seq]
                text = tok.decode(ids[1:-1])
                img = ctx.generate(text, target.seed, target.noise)
                verdict = ctx.judge_images(img[None])[0]
                last = Outcome(target.index, target.prompt, target.seed, False, ctx.shows_concept(verdict), img,
                               verdict, text, grad_steps=step, note=f"step {step}, loss {loss.item():.4f}")
                if last.success:
                    break
            assert last is not None
            return last

        return measured(ctx, run)
