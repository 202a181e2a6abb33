"""Worst-case forget sets for language-model unlearning, data-wise (Fan et al., "Challenging
Forgets: Unveiling the Worst-Case Forget Sets in Machine Unlearning", ECCV 2024; code
OPTML-Group/Unlearn-WorstCase, ``data-wise/unlearn/impl.py:optimize_select``, ``FT.py:w_FT_iter``).

The pool is TinyTOFU's forget authors; the worst-case set is the ``k`` of them a method finds
hardest to forget. The bi-level selection is :func:`erasekit.worstcase.select` (shared with the
text-to-image prompt sets): weights ``w`` in ``[0, 1]^N`` with ``sum w = k``, upper level
``w <- Proj(w - w_lr (l(theta_u) + 2 gamma w))`` (:func:`erasekit.linalg.project_capped_simplex`),
top ``k`` of ``w`` at the end. Defaults: the paper's data-wise ``w_lr`` 0.01 and ``gamma`` 0.

Lower level, reconstructed for language models: from the original weights (reset every outer
iteration), ``lower_steps`` sign-SGD steps (the paper's ``sign_step``) of the method's own loss with
the forget term weighted per author, ``sum_i w_i term(author i's facts) / k``, plus its retain NLL
(``alpha`` 1, a random retain batch per step); ``graddiff`` and ``npo`` are supported. ``l_i`` is the
unlearned model's mean answer NLL on author ``i``'s unlearned (``t0``) facts: low loss, still
remembered. Inferred: the paper's data-wise FT weights the *retain* side with ``1 - w_i``
(it unlearns by fine-tuning on the rest); a gradient method has a forget term to weight instead.

:func:`compare` then runs the method at its full config (``Forget(entities=...)``) on the
worst-case set and on random sets of the same size, from the original model, and reports the
forget metrics of each (the paper's comparison: worst-case vs random forget sets).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from erasekit.artifact import restored
from erasekit.config import Config, check
from erasekit.errors import UserError
from erasekit.lm import data
from erasekit.lm import model as M
from erasekit.lm.methods.base import get_lm_method, group_parameters, make_lm_config
from erasekit.lm.methods.graddiff import ascent_term
from erasekit.lm.tasks import Forget, get_task
from erasekit.losses import npo_loss
from erasekit.worstcase import Selection, select

#: Methods with a per-author weighted lower level.
LOWER = ("graddiff", "npo")


@dataclass(frozen=True)
class LMWorstCaseConfig(Config):
    """Set size ``size`` (authors), the upper level (``iterations``, ``w_lr``, ``gamma``), the lower
    level (``method``, ``lower_steps`` sign-SGD steps of ``lower_lr``, retain ``batch``, ``beta`` for
    NPO) and the ``seed`` of the lower level's retain batches and of the random sets."""

    size: int = 4
    iterations: int = 10
    w_lr: float = 0.01
    gamma: float = 0.0
    method: str = "graddiff"
    lower_steps: int = 10
    lower_lr: float = 3e-4
    batch: int = 12
    beta: float = 0.1
    seed: int = 0

    bounds: ClassVar[dict[str, tuple[str, float]]] = {
        "size": (">=", 1), "iterations": (">=", 1), "w_lr": (">", 0), "gamma": (">=", 0), "lower_steps": (">=", 1),
        "lower_lr": (">", 0), "batch": (">=", 1), "beta": (">", 0)}

    def __post_init__(self) -> None:
        self.check_types()
        check(2 * self.w_lr * self.gamma < 1, "gamma", f"must be >= 0 with 2 w_lr gamma < 1, got {self.gamma}")
        check(self.method in LOWER, "method", f"must be one of {', '.join(LOWER)}, got {self.method!r}")

    def k(self, n: int) -> int:
        """The set size for a pool of ``n`` authors (what :func:`erasekit.worstcase.select` reads)."""
        if self.size > n:
            raise UserError(f"size: at most the {n} forget authors, got {self.size}")
        return self.size


def _term(cfg: LMWorstCaseConfig, lm: M.LM, ref: M.LM, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The method's forget term on one author's facts (GradDiff's ascent, or NPO's)."""
    if cfg.method == "graddiff":
        return ascent_term(lm, batch, ref)
    nll = -M._token_logprobs(lm, batch)[0].sum(1)
    with torch.no_grad():
        ref_nll = -M._token_logprobs(ref, batch)[0].sum(1)
    return npo_loss(nll, ref_nll, cfg.beta)


def author_losses(lm: M.LM, facts: list[list[data.QA]]) -> np.ndarray:
    """Per author, the mean answer NLL of its facts (``l_i``; low: still remembered)."""
    with torch.no_grad():
        return np.array([float(M.mean_token_nll(lm, M.batch_qa(lm, [(q.question, q.answer) for q in qs])).mean())
                         for qs in facts])


def lower_level(lm: M.LM, seed: int, cfg: LMWorstCaseConfig):
    """``losses_of(w)``: reset ``lm`` to its weights, take the weighted sign-SGD steps, score every
    author; ``lm`` is left as it was given."""
    task = get_task(Forget("tinytofu", seed))
    authors = [e.name for e in data.generate(seed).entities_in("forget")]
    facts = [[q for q in task.forget_train if q.entity == a] for a in authors]
    batches = [M.batch_qa(lm, [(q.question, q.answer) for q in qs]) for qs in facts]
    retain = task.retain_train
    params = group_parameters(lm.model, "layers")
    ref = M.clone(lm, lm.name + "-ref") if cfg.method == "npo" else lm
    k = cfg.k(len(authors))

    def losses_of(w: np.ndarray) -> np.ndarray:
        gen = torch.Generator().manual_seed(cfg.seed)
        with restored(params):  # theta_u starts from the original weights, which come back afterwards
            lm.model.train()
            for _ in range(cfg.lower_steps):
                r_items = [retain[i] for i in torch.randint(len(retain), (cfg.batch,), generator=gen).tolist()]
                loss = sum(float(wi) * _term(cfg, lm, ref, b) for wi, b in zip(w, batches) if wi > 0) / k
                loss = loss + M.mean_token_nll(lm, M.batch_qa(lm, [(q.question, q.answer) for q in r_items])).mean()
                lm.model.zero_grad(set_to_none=True)
                loss.backward()
                with torch.no_grad():
                    for p in params.values():
                        if p.grad is not None:
                            p.add_(p.grad.sign(), alpha=-cfg.lower_lr)
            lm.model.zero_grad(set_to_none=True)
            lm.model.eval()
            return author_losses(lm, facts)

    return authors, losses_of


@dataclass
class WorstCaseSet:
    """The selected authors (lowest final loss first), the pool, and the selection's record."""

    authors: list[str]
    pool: list[str]
    selection: Selection = field(repr=False)


def worst_case_authors(lm: M.LM, seed: int = 0, cfg: LMWorstCaseConfig = LMWorstCaseConfig()) -> WorstCaseSet:
    """The ``cfg.size`` forget authors of TinyTOFU ``seed`` that ``cfg.method`` finds hardest to forget."""
    torch.manual_seed(cfg.seed)
    pool, losses_of = lower_level(lm, seed, cfg)
    sel = select(losses_of, len(pool), cfg)
    return WorstCaseSet([pool[i] for i in sel.chosen], pool, sel)


def random_authors(seed: int, size: int, draw: int) -> list[str]:
    """A random set of ``size`` forget authors (draw ``draw`` of the seed's random sets)."""
    pool = [e.name for e in data.generate(seed).entities_in("forget")]
    return sorted(random.Random(f"worstcase-random|{seed}|{draw}").sample(pool, size))


FORGET_KEYS = ("forget_acc", "forget_prob", "surrogate_acc", "forget_truth_ratio")


def forget_metrics(lm: M.LM, spec: Forget, overrides: dict[str, Any] | None = None,
                   method: str = "graddiff") -> dict[str, float]:
    """Fit ``method`` (its config with ``overrides``) on ``spec`` from ``lm`` and return the forget
    metrics of the unlearned model on ``spec``'s authors (``lm`` is left unchanged)."""
    from erasekit.lm.metrics.base import Context, compute_scores, get_lm_metric

    art = get_lm_method(method).fit(lm, spec, make_lm_config(method, overrides or {}), progress=False)
    task = get_task(spec)
    with art.applied(lm):
        scores = compute_scores(lm, task, ("forget", "truth_ratio"))
    ctx = Context(task, scores)
    out = {**get_lm_metric("forget").compute(ctx), **get_lm_metric("truth_ratio").compute(ctx)}
    return {k: float(out[k].value) for k in FORGET_KEYS if k in out}


def compare(lm: M.LM, seed: int = 0, cfg: LMWorstCaseConfig = LMWorstCaseConfig(), random_sets: int = 3,
            overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The paper's comparison: ``cfg.method`` (its config with ``overrides``) unlearning the
    worst-case set and ``random_sets`` random sets of the same size, from ``lm``; forget metrics
    of each, and their mean over the random sets."""
    if random_sets < 1:
        raise UserError(f"random_sets: must be >= 1, got {random_sets}")
    wc = worst_case_authors(lm, seed, cfg)
    rows = {"worst-case": (wc.authors, forget_metrics(lm, Forget("tinytofu", seed, tuple(wc.authors)),
                                                       overrides, cfg.method))}
    for d in range(random_sets):
        names = random_authors(seed, cfg.size, d)
        rows[f"random {d}"] = (names, forget_metrics(lm, Forget("tinytofu", seed, tuple(names)), overrides, cfg.method))
    rand = [m for label, (_, m) in rows.items() if label != "worst-case"]
    mean = {k: float(np.mean([m[k] for m in rand])) for k in rand[0]}
    return {"worst_case": wc, "rows": rows, "random_mean": mean}
