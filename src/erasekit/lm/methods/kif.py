"""KIF: knowledge-signature capsules (Mahmood et al., "Representation-Aware Unlearning via Activation
Signatures: From Suppression to Knowledge-Signature Erasure", arXiv 2601.10566).

Per forget subject (a TinyTOFU author), steps B-D of the paper and its Cohen's-d metric:

B. *Activations*: the MLP up-projection output (``mlp.up_proj``) of every decoder layer, averaged
   over the subject's name tokens in each prompt (the paper's subject-span mean; the whole prompt
   where the name is not found), on the subject's forget questions ("leak" prompts) and on
   ``n_control`` retain-author questions (control prompts).
C. *Signature*: standardised with the controls' mean and standard deviation; direction = mean
   leak minus mean control; the effect size is Cohen's d of the projections on it. The layer
   with the largest d is the subject's.
D. *Capsule*: an IA3-style scaling of that layer's up projection along the signature (the raw
   mean difference ``u``, unit): ``up(x) <- up(x) + scale (u . up(x)) u``, initial scale -1 as in
   the paper, which removes the subject's mean shift there (scale < -1 reverses it). Baked into
   ``up_proj.weight`` as ``(I + scale u u^T) W``; capsules of subjects on the same layer compose.

The artifact holds only the edited ``up_proj`` weights. ``extra["cohens_d"]`` reports, per
subject, d before and after on the fitted prompts and on held-out phrasings (``surrogate``).

Reconstructed from the paper and its code's structure. Left out: the learnt capsule strength
(kept at its initial value), the bootstrap CI and residual-PCA directions, the router and the
DPO/LoRA adapter stack over generations (step 7), which a tiny model cannot exercise.
"""

from __future__ import annotations

from collections import defaultdict
from contextlib import ExitStack
from dataclasses import dataclass

import torch

from erasekit.config import Config, check
from erasekit.errors import UserError
from erasekit.lm.methods.base import LM_METHODS, LMErasure, LMMethod
from erasekit.lm.model import LM, _pad, _pad_id, decoder_layers, fingerprint
from erasekit.lm.tasks import Forget, get_task


@dataclass(frozen=True)
class KIFConfig(Config):
    layers: tuple = ()  # candidate layers; empty: every layer
    scale: float = -1.0
    n_control: int = 256

    def __post_init__(self) -> None:
        if isinstance(self.layers, list):
            object.__setattr__(self, "layers", tuple(self.layers))
        self.check_types()
        check(all(isinstance(l, int) and l >= 0 for l in self.layers), "layers", "must be layer indices >= 0")
        check(-5.0 <= self.scale < 0, "scale", f"must be in [-5, 0) (the paper's capsule range), got {self.scale}")
        check(self.n_control >= 2, "n_control", f"must be >= 2, got {self.n_control}")


def _span(ids: list[int], name: list[int]) -> list[int]:
    """Positions of the subject's name tokens in ``ids`` (every position if it is not there)."""
    for i in range(len(ids) - len(name) + 1):
        if name and ids[i : i + len(name)] == name:
            return list(range(i, i + len(name)))
    return list(range(len(ids)))


@torch.no_grad()
def up_activations(lm: LM, items: list, layers: list[int]) -> dict[int, torch.Tensor]:
    """Per layer, ``(n, intermediate)`` up-projection outputs averaged over each item's subject span."""
    tok = lm.tokenizer
    rows = [tok(lm.prompt(q.question), add_special_tokens=False)["input_ids"] for q in items]
    spans = [_span(r, tok(" " + q.entity, add_special_tokens=False)["input_ids"] if q.entity else [])
             for r, q in zip(rows, items)]
    weight = torch.zeros(len(rows), max(len(r) for r in rows))
    for i, s in enumerate(spans):
        weight[i, s] = 1.0 / len(s)
    ids, mask = _pad(rows, _pad_id(lm))
    box: dict[int, torch.Tensor] = {}
    mlps = decoder_layers(lm.model)
    with ExitStack() as hooks:
        for l in layers:
            hooks.enter_context(mlps[l].mlp.up_proj.register_forward_hook(
                lambda _m, _i, out, l=l: box.__setitem__(l, out)))
        lm.model(input_ids=ids, attention_mask=mask)
    return {l: torch.einsum("nt,ntk->nk", weight, box[l].float()) for l in layers}


def cohens_d(x: torch.Tensor, y: torch.Tensor) -> float:
    """``(mean x - mean y) / pooled sd`` of two 1-d samples."""
    nx, ny = len(x), len(y)
    pooled = (((nx - 1) * x.var() + (ny - 1) * y.var()) / max(nx + ny - 2, 1)).sqrt()
    return float((x.mean() - y.mean()) / pooled.clamp(min=1e-12))


@dataclass
class Signature:
    """A subject's signature at one layer: the control statistics, the standardised direction and
    the raw mean difference (the capsule's direction)."""

    mean: torch.Tensor
    std: torch.Tensor
    direction: torch.Tensor
    raw: torch.Tensor

    @classmethod
    def fit(cls, leak: torch.Tensor, control: torch.Tensor) -> "Signature":
        mean, std = control.mean(0), control.std(0).clamp(min=1e-6)
        diff = leak.mean(0) - mean
        v = diff / std
        return cls(mean, std, v / v.norm(), diff / diff.norm())

    def project(self, acts: torch.Tensor) -> torch.Tensor:
        return ((acts - self.mean) / self.std) @ self.direction

    def effect(self, leak: torch.Tensor, control: torch.Tensor) -> float:
        return cohens_d(self.project(leak), self.project(control))


def signature_effects(lm: LM, subjects: dict[str, list], control: list, chosen: dict[str, tuple[int, Signature]],
                      held_out: dict[str, list]) -> dict[str, dict[str, float]]:
    """Cohen's d of each subject's chosen signature on ``lm`` (fitted prompts and held-out phrasings)."""
    layers = sorted({l for l, _ in chosen.values()})
    ctrl = up_activations(lm, control, layers)
    out = {}
    for name, (layer, sig) in chosen.items():
        d = {"fit": sig.effect(up_activations(lm, subjects[name], [layer])[layer], ctrl[layer])}
        if held_out.get(name):
            d["held_out"] = sig.effect(up_activations(lm, held_out[name], [layer])[layer], ctrl[layer])
        out[name] = d
    return out


@LM_METHODS.register("kif")
class KIF(LMMethod):
    """KIF: per-author MLP activation signatures, negatively scaled in the up projection (capsules; arXiv 2601.10566)."""

    config_class = KIFConfig
    group = "mlp"

    def fit(self, lm: LM, forget: Forget, config: KIFConfig, progress: bool = True) -> LMErasure:
        n_layers = len(decoder_layers(lm.model))
        layers = list(config.layers) or list(range(n_layers))
        if max(layers) >= n_layers:
            raise UserError(f"layers: {max(layers)} is out of range; the model has {n_layers} layers (0-{n_layers - 1})")
        task = get_task(forget)
        subjects: dict[str, list] = defaultdict(list)
        for q in task.forget_train:
            subjects[q.entity or "all"].append(q)
        if any(len(v) < 2 for v in subjects.values()):
            raise UserError("kif needs at least two forget questions per subject")
        control = [q for q in task.retain_train if q.entity][: config.n_control] or task.retain_train[: config.n_control]
        held_out: dict[str, list] = defaultdict(list)
        for q in task.eval.get("surrogate", []):
            held_out[q.entity or "all"].append(q)
        ctrl = up_activations(lm, control, layers)
        chosen: dict[str, tuple[int, Signature]] = {}
        for name, items in subjects.items():
            leak = up_activations(lm, items, layers)
            sigs = {l: Signature.fit(leak[l], ctrl[l]) for l in layers}
            best = max(layers, key=lambda l: sigs[l].effect(leak[l], ctrl[l]))
            chosen[name] = (best, sigs[best])
        before = signature_effects(lm, subjects, control, chosen, held_out)
        mlps = decoder_layers(lm.model)
        keys = {l: next(n for n, p in lm.model.named_parameters() if p is mlps[l].mlp.up_proj.weight)
                for l, _ in chosen.values()}
        tensors: dict[str, torch.Tensor] = {}
        for layer, sig in chosen.values():
            w = tensors.get(keys[layer], mlps[layer].mlp.up_proj.weight.detach().double())
            u = sig.raw.double()
            tensors[keys[layer]] = w + config.scale * torch.outer(u, u @ w)
        tensors = {k: v.float() for k, v in tensors.items()}
        art = LMErasure(self.name, config, forget, fingerprint(lm.model), tensors)
        with art.applied(lm):
            after = signature_effects(lm, subjects, control, chosen, held_out)
        art.extra = {"layers": {n: l for n, (l, _) in chosen.items()},
                     "cohens_d": {n: {f"{k}_{when}": round(v[k], 4) for when, v in (("before", before[n]), ("after", after[n]))
                                      for k in v} for n in chosen}}
        return art
