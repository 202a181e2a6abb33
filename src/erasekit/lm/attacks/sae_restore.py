"""Restoration attack (Jang, Lee, Kim, Jo, Woo, "Suppression or Deletion: A Restoration-Based
Representation-Level Analysis of Machine Unlearning", WWW 2026; github.com/Yurim990507/suppression-or-deletion).

Is a forgotten fact deleted, or only suppressed downstream of a representation that still holds
it? A TopK sparse autoencoder (:mod:`erasekit.sae`) is trained on the residual stream after one
decoder layer of the model *before* unlearning (every token of the forget and retain questions
with their answers). Its "expert" features are those most active on the forget entities' tokens
and least on the retain entities'. The attack runs the unlearned model with a hook on that layer:
for each input it also runs the original model to the layer, moves the expert features toward the
original's, ``f_u <- f_u + alpha (f_orig - f_u)``, and adds the decoded change to the residual
stream (the SAE's reconstruction error is kept). The restored forget accuracy is the attack's
value. Budget: the number of expert features. It is an analysis, not a threat (whoever holds the
original weights has the facts already), so the benchmark leaderboard shows it without counting
it in a method's worst case.

Two controls are reported beside it: the same number of *random* features (is the effect specific
to the concept's features?) and the whole residual stream patched from the original model (the
ceiling: what any restoration at this layer could give back). The paper's images had a CLS token
injection too, which it says may carry part of the effect; a language model has no CLS token, so
the expert-feature figure here is the pure one. Reconstructed for a decoder language model: the
layer (the middle one), the SAE size (4x the hidden size, k = 16) and the expert selection by
mean activation difference are our choices.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch

from erasekit.errors import UserError
from erasekit.lm import model as M
from erasekit.lm.attacks.base import BASE, LM_ATTACKS, LMAttack
from erasekit.lm.metrics.base import mean_of
from erasekit.lm.model import LM
from erasekit.lm.tasks import Task
from erasekit.lm.unlearning import layer_output
from erasekit.metrics.base import Value
from erasekit.sae import SAE, SAEConfig, train_sae


@torch.no_grad()
def token_states(lm: LM, items: list, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Residual stream after decoder layer ``layer`` at every real token of each (question, answer):
    ``(tokens, d)`` and, per token, the index of its item."""
    states, owner = [], []
    for i in range(0, len(items), 64):
        chunk = items[i : i + 64]
        b = M.batch_qa(lm, [(q.question, q.answer) for q in chunk])
        with layer_output(lm.model, layer) as box:
            lm.model(input_ids=b["input_ids"], attention_mask=b["attention_mask"])
        mask = b["attention_mask"].bool()
        states.append(box[0][mask].float())
        owner.append((torch.arange(len(chunk)) + i)[:, None].expand_as(mask)[mask])
    return torch.cat(states), torch.cat(owner)


def expert_features(sae: SAE, forget: torch.Tensor, retain: torch.Tensor, n: int) -> torch.Tensor:
    """The ``n`` latents whose mean activation on forget-entity tokens most exceeds that on retain ones."""
    diff = sae.encode(forget).mean(0) - sae.encode(retain).mean(0)
    return diff.topk(min(n, diff.numel())).indices


@contextmanager
def restoring(lm: LM, base: LM, layer: int, sae: SAE | None, features: torch.Tensor | None,
              alpha: float = 5.0) -> Iterator[None]:
    """Run ``lm`` with layer ``layer``'s output moved toward ``base``'s on the same input: along the
    SAE ``features`` (or, with ``sae=None``, the whole residual stream replaced)."""
    box: dict[str, torch.Tensor] = {}

    def pre(_m, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        with layer_output(base.model, layer) as out:
            base.model(input_ids=ids, attention_mask=kwargs.get("attention_mask"))
        box["orig"] = out[0]

    def post(_m, _i, out):
        h = out[0] if isinstance(out, tuple) else out
        orig = box["orig"].to(h.dtype)
        if sae is None:
            new = orig
        else:
            f_u, f_o = sae.encode(h.float()), sae.encode(orig.float())
            moved = f_u.clone()
            moved[..., features] += alpha * (f_o - f_u)[..., features]
            new = h + (sae.decode(moved) - sae.decode(f_u)).to(h.dtype)
        return (new, *out[1:]) if isinstance(out, tuple) else new

    with lm.model.register_forward_pre_hook(pre, with_kwargs=True), \
            M.decoder_layers(lm.model)[layer].register_forward_hook(post):
        yield


@LM_ATTACKS.register("sae_restore")
class SAERestore(LMAttack):
    """Restoration: move an SAE's expert features of the forget entities toward the original model's (Suppression or Deletion)."""

    threat_model = "white-box: the unlearned weights and the original model's"
    budget_unit = "expert features"
    default_budget = 32
    recovered = "sae_restore_acc"
    needs = (BASE,)
    worst_case = False  # an analysis: whoever holds the original weights has the facts already
    alpha = 5.0  # the paper's middle setting of {1, 5, 10}; 1 restores little here (docs/results.md)
    sae_config = SAEConfig(n_dirs=512, k=16, steps=1500, batch=256, lr=1e-3, seed=0)

    def run(self, lm: LM, task: Task, oracle: LM | None, budget: int, seed: int = 0,
            base: LM | None = None) -> dict[str, Value]:
        self.check_budget(budget)
        if base is None:
            raise UserError("the sae_restore attack needs the model before unlearning (run it through "
                            "`erasekit lm attack`, which passes it)")
        if base.model is lm.model:  # nothing was unlearned: restore from an unhooked copy of the same model
            base = M.clone(base)
        forget, retain = task.eval["forget"], task.eval["retain"]
        if not forget or not forget[0].entity:
            raise UserError(f"the sae_restore attack needs entity facts; task {task.spec.task!r} has none "
                            "(use tinytofu)")
        layer = len(M.decoder_layers(base.model)) // 2
        x, _ = token_states(base, task.forget_train + task.retain_train, layer)
        sae = train_sae(x, SAEConfig(**{**self.sae_config.to_dict(), "seed": seed}), progress=False)
        f_states, _ = token_states(base, forget, layer)
        r_states, _ = token_states(base, retain, layer)
        experts = expert_features(sae, f_states, r_states, budget)
        gen = torch.Generator().manual_seed(seed)
        random = torch.randperm(sae.W_enc.shape[0], generator=gen)[: len(experts)]

        def acc(sae_: SAE | None = None, feats: torch.Tensor | None = None, patch: bool = False) -> torch.Tensor:
            if sae_ is None and not patch:
                return M.score_qa(lm, forget).correct.float()
            with restoring(lm, base, layer, sae_, feats, self.alpha):
                return M.score_qa(lm, forget).correct.float()

        meta = {"layer": layer, "features": len(experts), "alpha": self.alpha,
                "sae": self.sae_config.to_dict()}
        return {
            "sae_restore_acc": mean_of(acc(sae, experts).numpy(), False, meta),
            "sae_restore_random_acc": mean_of(acc(sae, random).numpy(), False, meta),
            "sae_restore_patch_acc": mean_of(acc(patch=True).numpy(), False, {"layer": layer}),
            "sae_restore_before_acc": mean_of(acc().numpy(), False),
        }
