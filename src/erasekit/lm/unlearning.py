"""What language-model unlearning methods share: the gradient loop :func:`unlearn_loop` (forget
term from the method, retain term NLL or KL, optional GU projection), parameter restoring and
layer hooks. The contract itself (:class:`~erasekit.lm.methods.base.LMMethod`,
:class:`~erasekit.lm.methods.base.LMErasure`) is in :mod:`erasekit.lm.methods.base`.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch
from tqdm.auto import tqdm

from erasekit.artifact import restored
from erasekit.config import Config, check
from erasekit.linalg import orthogonal_to_span
from erasekit.lm.methods.base import (LM_GROUPS, LM_METHODS, LMErasure, LMMethod, get_lm_method, group_parameters,
                                      lm_method_names, make_lm_config)
from erasekit.lm.model import LM, batch_qa, clone, decoder_layers, fingerprint, mean_token_nll
from erasekit.lm.sampling import SAMPLING, PairSampler
from erasekit.lm.tasks import Forget, Task, get_task
from erasekit.losses import next_token_kl

__all__ = ["LM_GROUPS", "LM_METHODS", "GradientConfig", "LMErasure", "LMMethod", "get_lm_method", "gradient_fit",
           "group_parameters", "lm_method_names", "make_lm_config", "unlearn_loop"]

def touched(params: dict[str, torch.nn.Parameter]) -> dict[str, torch.Tensor]:
    """Detached copies of ``params`` (an artifact's tensors, or values to restore)."""
    return {k: p.detach().clone() for k, p in params.items()}


@contextmanager
def only_trainable(model: torch.nn.Module, names: set[str]) -> Iterator[None]:
    """Only the parameters named in ``names`` require gradients inside; every flag is put back on exit."""
    req = {n: p.requires_grad for n, p in model.named_parameters()}
    for n, p in model.named_parameters():
        p.requires_grad_(n in names)
    try:
        yield
    finally:
        for n, p in model.named_parameters():
            p.requires_grad_(req[n])


@contextmanager
def layer_output(model: torch.nn.Module, layer: int) -> Iterator[list[torch.Tensor]]:
    """Capture the residual stream after decoder layer ``layer`` (a forward hook, removed on exit)."""
    box: list[torch.Tensor] = []

    def hook(_m, _i, out):
        box.append(out[0] if isinstance(out, tuple) else out)

    with decoder_layers(model)[layer].register_forward_hook(hook):  # a torch hook handle removes itself on exit
        yield box


# -- the shared gradient loop -------------------------------------------------------------------
@dataclass(frozen=True)
class GradientConfig(Config):
    """Settings every gradient method shares. ``retain``: ``nll``, ``kl`` or ``none``; ``alpha``
    weighs it, ``gamma`` the forget term. ``gu``: project the forget gradient off the span of the
    last ``gu_window`` retain gradients (GU, arXiv 2511.17100). ``sampling``: how forget and retain
    items are paired per step (:mod:`erasekit.lm.sampling`, MELU)."""

    steps: int = 60
    lr: float = 3e-4
    batch: int = 12
    alpha: float = 1.0
    gamma: float = 1.0
    retain: str = "nll"
    params: str = "layers"
    gu: bool = False
    gu_window: int = 4
    optimizer: str = "adamw"
    seed: int = 0
    sampling: str = "random"

    def __post_init__(self) -> None:
        self.check_types()
        check(self.steps >= 1, "steps", f"must be >= 1, got {self.steps}")
        check(self.lr > 0, "lr", f"must be > 0, got {self.lr}")
        check(self.batch >= 1, "batch", f"must be >= 1, got {self.batch}")
        check(self.alpha >= 0 and self.gamma >= 0, "alpha", "alpha and gamma must be >= 0")
        check(self.retain in ("nll", "kl", "none"), "retain", f"must be nll, kl or none, got {self.retain!r}")
        check(self.params in LM_GROUPS, "params", f"must be one of {', '.join(LM_GROUPS)}, got {self.params!r}")
        check(self.gu_window >= 1, "gu_window", f"must be >= 1, got {self.gu_window}")
        check(self.optimizer in ("adamw", "sgd"), "optimizer", f"must be adamw or sgd, got {self.optimizer!r}")
        check(self.sampling in SAMPLING, "sampling", f"must be one of {', '.join(SAMPLING)}, got {self.sampling!r}")


ForgetTerm = Callable[[LM, dict[str, torch.Tensor], "LM | None"], torch.Tensor]


def _flat_grad(params: list[torch.nn.Parameter]) -> torch.Tensor:
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])


def _set_grad(params: list[torch.nn.Parameter], flat: torch.Tensor) -> None:
    i = 0
    for p in params:
        n = p.numel()
        p.grad = flat[i : i + n].view_as(p).clone()
        i += n


def retain_loss(lm: LM, ref: LM | None, batch: dict[str, torch.Tensor], kind: str) -> torch.Tensor:
    if kind == "nll":
        return mean_token_nll(lm, batch).mean()
    assert ref is not None
    logits = lm.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    with torch.no_grad():
        ref_logits = ref.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    return next_token_kl(logits, ref_logits, batch["attention_mask"].bool())


def frozen_copy(lm: LM) -> LM:
    ref = clone(lm, lm.name + "-ref")
    ref.model.eval()
    for p in ref.model.parameters():
        p.requires_grad_(False)
    return ref


def unlearn_loop(lm: LM, task: Task, cfg: GradientConfig, forget_term: ForgetTerm, *, needs_ref: bool = False,
                 params: dict[str, torch.nn.Parameter] | None = None, progress: bool = True,
                 desc: str = "unlearn", retain_term: ForgetTerm | None = None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Minimise ``gamma * forget_term + alpha * retain`` over ``params``; returns the new tensors (the
    model is restored) and a log. With ``cfg.gu`` the forget gradient is projected off the span of
    the recent retain gradients before it is combined, so with SGD the step leaves the retain loss
    unchanged to first order. ``retain_term`` replaces the NLL/KL retain loss (RMU's activation term)
    and always runs, whatever ``cfg.retain`` says."""

    def retain_fn(batch: dict[str, torch.Tensor], kind: str) -> torch.Tensor:
        return retain_term(lm, batch, ref) if retain_term is not None else retain_loss(lm, ref, batch, kind)

    params = params if params is not None else group_parameters(lm.model, cfg.params)
    plist = list(params.values())
    names = set(params)
    ref = frozen_copy(lm) if (needs_ref or cfg.retain == "kl") else None
    gen = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    opt = (torch.optim.AdamW(plist, lr=cfg.lr, weight_decay=0.0) if cfg.optimizer == "adamw"
           else torch.optim.SGD(plist, lr=cfg.lr))
    use_retain = (retain_term is not None or cfg.retain != "none") and cfg.alpha > 0
    pairs = PairSampler(task.forget_train, task.retain_train, cfg.sampling, cfg.batch, gen)
    window: list[torch.Tensor] = []
    log: dict[str, Any] = {"forget_loss": [], "retain_loss": []}
    start = time.perf_counter()
    with only_trainable(lm.model, names):
        with restored(params):
            lm.model.train()
            bar = tqdm(range(cfg.steps), desc=desc, disable=not progress)
            for _ in bar:
                f_items, r_items = pairs()
                fb = batch_qa(lm, [(q.question, q.answer) for q in f_items])
                rb = batch_qa(lm, [(q.question, q.answer) for q in r_items])
                opt.zero_grad(set_to_none=True)
                lf = cfg.gamma * forget_term(lm, fb, ref)
                if cfg.gu:
                    lf.backward()
                    g_f = _flat_grad(plist)
                    opt.zero_grad(set_to_none=True)
                    lr_ = retain_fn(rb, cfg.retain if cfg.retain != "none" else "nll")
                    lr_.backward()
                    g_r = _flat_grad(plist)
                    window = (window + [g_r])[-cfg.gu_window:]
                    g = orthogonal_to_span(g_f, window) + (cfg.alpha * g_r if use_retain else 0.0)
                    _set_grad(plist, g)
                else:
                    lr_ = cfg.alpha * retain_fn(rb, cfg.retain) if use_retain else torch.zeros(())
                    (lf + lr_).backward()
                opt.step()
                log["forget_loss"].append(round(float(lf.detach()), 4))
                log["retain_loss"].append(round(float(lr_.detach()), 4))
                bar.set_postfix(forget=f"{float(lf.detach()):.3f}", retain=f"{float(lr_.detach()):.3f}")
            lm.model.eval()
            new = touched(params)
    log["seconds"] = round(time.perf_counter() - start, 2)
    return new, log


def gradient_fit(method: LMMethod, lm: LM, forget: Forget, config: GradientConfig, forget_term: ForgetTerm,
                 needs_ref: bool = False, progress: bool = True,
                 params: dict[str, torch.nn.Parameter] | None = None, extra: dict | None = None,
                 retain_term: ForgetTerm | None = None) -> LMErasure:
    task = get_task(forget)
    base = fingerprint(lm.model)
    tensors, log = unlearn_loop(lm, task, config, forget_term, needs_ref=needs_ref, params=params,
                                progress=progress, desc=method.name, retain_term=retain_term)
    return LMErasure(method.name, config, forget, base, tensors, {"log": log, **(extra or {})})
