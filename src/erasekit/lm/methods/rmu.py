"""RMU: Representation Misdirection for Unlearning (Li et al., WMDP, ICML 2024, arXiv 2403.03218).

Steers layer ``l``'s residual stream on forget text towards ``c * u`` (``u`` a fixed random unit
vector) while keeping it equal to the frozen model's on retain text, updating only the MLPs of
layers ``l-2 .. l``. ``coefficient`` is relative to the layer's mean activation norm on retain
text, so one default fits models of any width; ``scan=true`` tries every layer x coefficient in
``scan_coefficients`` and keeps the one with the lowest forget accuracy whose retain accuracy stays
within 10% of the model's (RMU needs per-model tuning, as open-unlearning's configs warn).
``skip_template=true`` leaves out of the forget term the leading tokens every prompt shares (a chat
model's system prompt and turn header): their states are the same on forget and retain text, so the
two terms would pull them in opposite directions (on SmolLM2's Harry Potter task the recipe forgets
the surrogate phrasings too with it, and a quarter of them without: docs/results.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from erasekit.config import check
from erasekit.errors import UserError
from erasekit.lm.methods.base import LM_METHODS, LMErasure, LMMethod, group_parameters
from erasekit.lm.model import LM, batch_qa, decoder_layers, score_qa
from erasekit.lm.tasks import Forget, get_task
from erasekit.lm.unlearning import GradientConfig, gradient_fit


@dataclass(frozen=True)
class RMUConfig(GradientConfig):
    layer: int = 1
    coefficient: float = 2.0
    scan: bool = False
    scan_coefficients: tuple = (1.0, 2.0, 4.0)
    skip_template: bool = False
    retain: str = "none"  # RMU's retain term is the activation-matching one below

    def __post_init__(self) -> None:
        if isinstance(self.scan_coefficients, list):
            object.__setattr__(self, "scan_coefficients", tuple(self.scan_coefficients))
        super().__post_init__()
        check(self.layer >= 0, "layer", f"must be >= 0, got {self.layer}")
        check(self.coefficient > 0, "coefficient", f"must be > 0, got {self.coefficient}")
        check(all(isinstance(c, (int, float)) and c > 0 for c in self.scan_coefficients), "scan_coefficients",
              "must be positive numbers")


class _Reached(Exception):
    """Carries layer ``l``'s output out of the forward pass, so the layers above it never run."""


def _states(lm: LM, batch: dict[str, torch.Tensor], layer: int) -> torch.Tensor:
    """The residual stream after decoder layer ``layer`` (the forward pass stops there)."""
    def stop(_m, _i, out):
        raise _Reached(out[0] if isinstance(out, tuple) else out)

    try:
        with decoder_layers(lm.model)[layer].register_forward_hook(stop):
            lm.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    except _Reached as reached:
        return reached.args[0]
    raise AssertionError(f"decoder layer {layer} never ran")


def _template_length(lm: LM) -> int:
    """How many leading tokens every prompt shares (two prompts' common prefix)."""
    a, b = (lm.tokenizer(lm.prompt(q), add_special_tokens=False)["input_ids"] for q in ("Who?", "What?"))
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


@LM_METHODS.register("rmu")
class RMU(LMMethod):
    """RMU: misdirect one layer's activations on forget text, keep them on retain text (Li et al. 2024)."""

    config_class = RMUConfig
    test_config = {"steps": 8}
    group = "rmu"

    def _fit_one(self, lm: LM, forget: Forget, cfg: RMUConfig, progress: bool) -> LMErasure:
        n_layers = len(decoder_layers(lm.model))
        if cfg.layer >= n_layers:
            raise UserError(f"layer: {cfg.layer} is out of range; the model has {n_layers} layers (0-{n_layers - 1})")
        task = get_task(forget)
        gen = torch.Generator().manual_seed(cfg.seed)
        with torch.no_grad():
            rb = batch_qa(lm, [(q.question, q.answer) for q in task.retain_train[:64]])
            h = _states(lm, rb, cfg.layer)
            norm = h[rb["attention_mask"].bool()].norm(dim=-1).mean()
        u = torch.rand(h.shape[-1], generator=gen)
        target = cfg.coefficient * norm * u / u.norm()
        mse = torch.nn.functional.mse_loss
        shared = _template_length(lm) if cfg.skip_template else 0

        def forget_term(m: LM, batch: dict[str, torch.Tensor], ref: LM | None) -> torch.Tensor:
            mask = batch["attention_mask"].bool().clone()
            mask[:, :shared] = False
            hs = _states(m, batch, cfg.layer)[mask]
            return mse(hs, target.expand_as(hs)) / norm**2

        def retain_term(m: LM, batch: dict[str, torch.Tensor], ref: LM | None) -> torch.Tensor:
            mask = batch["attention_mask"].bool()
            with torch.no_grad():
                want = _states(ref, batch, cfg.layer)[mask]
            return mse(_states(m, batch, cfg.layer)[mask], want) / norm**2

        params = group_parameters(lm.model, "rmu", upto=cfg.layer)
        return gradient_fit(self, lm, forget, cfg, forget_term, needs_ref=True, progress=progress,
                             params=params, retain_term=retain_term, extra={"activation_norm": float(norm)})

    def fit(self, lm: LM, forget: Forget, config: RMUConfig, progress: bool = True) -> LMErasure:
        if not config.scan:
            return self._fit_one(lm, forget, config, progress)
        task = get_task(forget)
        base_retain = score_qa(lm, task.eval["retain"]).correct.float().mean().item()
        rows, best, best_key = [], None, None
        for layer in range(len(decoder_layers(lm.model))):
            for c in config.scan_coefficients:
                cand = self._fit_one(lm, forget, config.replace(layer=layer, coefficient=float(c), scan=False), False)
                with cand.applied(lm):
                    f = score_qa(lm, task.eval["forget"]).correct.float().mean().item()
                    r = score_qa(lm, task.eval["retain"]).correct.float().mean().item()
                rows.append({"layer": layer, "coefficient": float(c), "forget_acc": round(f, 4), "retain_acc": round(r, 4)})
                key = (r < 0.9 * base_retain, f, -r)
                if best_key is None or key < best_key:
                    best, best_key = cand, key
        assert best is not None
        chosen = best.config
        best.config = config.replace(layer=chosen.layer, coefficient=chosen.coefficient)
        best.extra["scan"] = rows
        return best
