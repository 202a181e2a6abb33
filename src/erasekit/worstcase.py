"""Worst-case prompt sets: the ``k`` target prompts an erased model still renders best (Fan et al.,
"Challenging Forgets: Unveiling the Worst-Case Forget Sets in Machine Unlearning", ECCV 2024;
code OPTML-Group/Unlearn-WorstCase, ``prompt-wise/.../selection.py``).

The paper's bi-level selection keeps weights ``w`` in ``[0, 1]^N`` with ``sum w = K`` over a pool of
``N`` prompts. Upper level: ``w <- Proj(w - lr_w (l(theta_u) + 2 gamma w))`` with
:func:`erasekit.linalg.project_capped_simplex`, where ``l_i`` is the unlearned model's loss on prompt
``i``; minimising ``sum w_i l_i`` picks the prompts whose forgetting is hardest. Lower level: from a
reset (unedited) model, ``theta_u`` is unlearned on the ``w``-weighted prompts. The top ``K`` of
``w`` after the outer iterations is the worst-case set. Defaults are the paper's prompt-wise ones
(``w_lr`` 100, ``gamma`` 1e-4, ratio 0.1, 10 outer iterations).

What erasekit does, and what was reconstructed:

* ``l_i`` is the erased model's denoising loss (:meth:`erasekit.attacks.base.AttackContext.loss`:
  on the guided prediction against an inference-time guard) on the unedited model's image of
  prompt ``i``, at the paper's 10 evenly spaced training timesteps (``0, T/10, ...``), with noise
  drawn from the selection seed alone, so every prompt sees the same noise (the paper's code
  scores real training images; the testbed's equivalent is the unedited model's drawing). Low
  loss: the erased model still renders the prompt. The selection uses its own seeds, disjoint from
  the evaluation's, so the set is measured on noise it was not chosen on.
* By default the loss is the *excess* loss, the erased model's less the unedited model's on the
  same image and noise (``loss="raw"``: the paper's). A deviation: on the testbed the raw loss is
  dominated by how hard an image is to denoise (plain backgrounds score low for any model): on
  ``heart`` erased by UCE, the per-prompt concept rate correlated -0.05 with the raw loss and -0.6
  with the excess loss (docs/results.md, "Worst-case prompt sets").
* By default (``lower_steps=0``) ``theta_u`` is the given erased model and ``l`` does not depend on
  ``w``: the bi-level problem reduces to ranking by loss. The upper-level iteration is still run
  (it preserves the order of ``l`` as long as ``2 lr_w gamma < 1``), so the set is the ``K``
  lowest-loss prompts: a worst-case set *for this erasure*, not for its method.
* With ``lower_steps > 0`` (weight-editing erasures only) each outer iteration resets the edited
  parameters to the unedited weights and takes ``lower_steps`` sign-SGD ESD steps on
  ``sum_i w_i ESD_i`` (the prompt-wise code weights the ESD loss of prompt ``i`` by ``w_i`` and
  cycles through the prompts; the data-wise FT variant trains the retain side with ``1 - w_i``),
  on the parameters the erasure edits: the worst-case set for ESD-style unlearning of those
  parameters. ``lower_lr`` is a testbed setting, not the paper's SD one (1e-5).
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import numpy as np
import torch
from diffusers import DDIMScheduler

from erasekit.artifact import restored
from erasekit.attacks.base import AttackContext
from erasekit.attacks.embedding import to_x0
from erasekit.config import Config, check
from erasekit.errors import UserError
from erasekit.linalg import project_capped_simplex
from erasekit.losses import esd_target
from erasekit.pipelines import encode, frozen, get_parameter, training
from erasekit.sampling import generate_jobs, noise_seed

#: ``raw``: the paper's loss of the unlearned model; ``excess``: less the unedited model's loss on
#: the same image and noise (the default; see the module docstring)
LOSSES = ("excess", "raw")


@dataclass(frozen=True)
class WorstCaseConfig(Config):
    """Set size (``ratio`` of the pool, at least ``min_k``), the upper level (``iterations``,
    ``w_lr``, ``gamma``), the loss (``raw`` or ``excess`` over the unedited model's,
    ``selection_seeds`` reference images per prompt, ``timesteps`` evenly spaced) and the optional
    lower level (``lower_steps`` sign-ESD steps of ``lower_lr``, negative guidance ``lower_eta``,
    ``x_t`` sampled at ``lower_guidance``)."""

    ratio: float = 0.1
    min_k: int = 4
    iterations: int = 10
    w_lr: float = 100.0
    gamma: float = 1e-4
    selection_seeds: int = 2
    timesteps: int = 10
    loss: str = "excess"
    lower_steps: int = 0
    lower_lr: float = 1e-3
    lower_eta: float = 1.0
    lower_guidance: float = 3.0

    bounds: ClassVar[dict[str, tuple[str, float]]] = {
        "ratio": ("<=", 1), "min_k": (">=", 1), "iterations": (">=", 1), "w_lr": (">", 0), "gamma": (">=", 0),
        "selection_seeds": (">=", 1), "timesteps": (">=", 1), "lower_steps": (">=", 0), "lower_lr": (">", 0),
        "lower_eta": (">=", 0), "lower_guidance": (">=", 0)}

    def __post_init__(self) -> None:
        self.check_types()
        check(self.ratio > 0, "ratio", f"must be in (0, 1], got {self.ratio}")
        check(2 * self.w_lr * self.gamma < 1, "gamma",
              f"must be >= 0 with 2 w_lr gamma < 1 (else the step reverses the order of w), got {self.gamma}")
        check(self.loss in LOSSES, "loss", f"must be one of {', '.join(LOSSES)}, got {self.loss!r}")

    def k(self, n: int) -> int:
        """The set size for a pool of ``n``: ``ratio * n`` rounded down (the paper's ``int``), at
        least ``min_k``, at most ``n``."""
        return min(n, max(self.min_k, int(n * self.ratio)))


@dataclass
class Selection:
    """A worst-case set: the pool indices chosen (lowest final loss first), the final weights, the
    per-prompt losses of the last outer iteration and the upper-level objective per iteration."""

    chosen: list[int]
    weights: np.ndarray
    losses: np.ndarray
    objective: list[float]


def select(losses_of: Any, n: int, cfg: WorstCaseConfig) -> Selection:
    """Run the upper level: ``losses_of(w) -> (n,)`` losses of the model unlearned with weights ``w``
    (the lower level; a constant for the given erased model). Starts from ``w = K/N``."""
    k = cfg.k(n)
    w = torch.full((n,), k / n, dtype=torch.float64)
    objective: list[float] = []
    loss = torch.zeros(n, dtype=torch.float64)
    for _ in range(cfg.iterations):
        loss = torch.as_tensor(np.asarray(losses_of(w.numpy().copy()), dtype=np.float64))
        w = project_capped_simplex(w - cfg.w_lr * (loss + 2 * cfg.gamma * w), k)
        objective.append(float(w @ loss))
    # top K of w; ties (saturated weights) broken by the lower loss
    order = sorted(range(n), key=lambda i: (-float(w[i]), float(loss[i]), i))
    chosen = sorted(order[:k], key=lambda i: (float(loss[i]), i))
    return Selection(chosen, w.numpy(), loss.numpy(), objective)


def prompt_losses(ctx: AttackContext, prompts: Sequence[str], seeds: Sequence[int], timesteps: int,
                  references: np.ndarray | None = None) -> np.ndarray:
    """Per prompt, the erased model's (``ctx.pipe`` as it is) mean denoising loss on the unedited
    model's images of it (``references``: seed-major, one per seed and prompt; drawn here when
    ``None``, with noise ``(seed, index)``), at ``timesteps`` evenly spaced training timesteps with
    noise drawn from the seed alone (the same for every prompt)."""
    pipe = ctx.pipe
    if references is None:
        references = unedited_images(ctx, prompts, seeds)
    total = pipe.scheduler.config.num_train_timesteps
    ts = torch.arange(timesteps) * (total // timesteps)
    states = encode(pipe, list(prompts)).states
    out = np.zeros(len(prompts))
    with frozen(pipe.unet), torch.no_grad():
        for a, seed in enumerate(seeds):
            for i in range(len(prompts)):
                x0 = to_x0(references[a * len(prompts) + i]).expand(timesteps, -1, -1, -1).to(states.device)
                gen = torch.Generator().manual_seed(noise_seed(seed, 0))
                cond = states[i : i + 1].expand(timesteps, -1, -1)
                out[i] += float(ctx.loss(pipe.unet, x0, cond, gen, timesteps=ts)) / len(seeds)
    return out


def unedited_images(ctx: AttackContext, prompts: Sequence[str], seeds: Sequence[int], batch: int = 32) -> np.ndarray:
    """The unedited model's images of ``prompts`` x ``seeds`` (seed-major; noise ``(seed, index)``)."""
    jobs = [(s, i, p) for s in seeds for i, p in enumerate(prompts)]
    with ctx.unedited() as base:
        return np.concatenate([generate_jobs(base, jobs[j : j + batch], ctx.steps, ctx.guidance)
                               for j in range(0, len(jobs), batch)])


def lower_level(ctx: AttackContext, prompts: Sequence[str], seeds: Sequence[int], cfg: WorstCaseConfig,
                refs: np.ndarray, offset: np.ndarray):
    """The lower level as a ``losses_of(w)`` for :func:`select`: reset the erasure's edited
    parameters to the unedited weights, take ``cfg.lower_steps`` sign-SGD steps on the ``w``-weighted
    ESD loss (prompts cycled in order, as the paper's code does; ESD's sampled ``x_t``), then score
    every prompt with :func:`prompt_losses` (reference images ``refs`` and noise of ``seeds``; the
    ESD steps draw from ``seeds[0]``) less ``offset``. ``ctx.erasure`` must edit weights and be
    applied to ``ctx.pipe``; the pipeline is left as it was given."""
    from erasekit.methods.esd import latent_shape, sample_xt  # ESD's own x_t sampling

    erasure = ctx.erasure
    if erasure is None or not erasure.edits_weights or not erasure.weights:
        raise UserError("the worst-case lower level trains the parameters an erasure edits; it needs a "
                        "weight-editing erasure (use lower_steps=0 for guards and the unedited model)")
    pipe = ctx.pipe
    params = {k: get_parameter(pipe, k) for k in erasure.weights}
    with ctx.unedited():
        unedited = {k: p.detach().clone() for k, p in params.items()}
        conds = encode(pipe, list(prompts)).states
        uncond = encode(pipe, [""]).states
    scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    scheduler.set_timesteps(ctx.steps)
    shape = latent_shape(pipe)

    def losses_of(w: np.ndarray) -> np.ndarray:
        gen = torch.Generator().manual_seed(seeds[0])
        with restored(params):  # the erasure's weights come back afterwards
            _load(params, unedited)  # reset: theta_u starts from the unedited weights
            with training(pipe.unet, params.values()):
                for step in range(cfg.lower_steps):
                    i = step % len(prompts)
                    cond = conds[i : i + 1]
                    stop = int(torch.randint(ctx.steps - 1, (1,), generator=gen))
                    with restored(params):  # the frozen teacher: the unedited model
                        _load(params, unedited)
                        x_t, t = sample_xt(pipe.unet, scheduler, cond, uncond, stop, cfg.lower_guidance, shape, gen)
                        with torch.no_grad():
                            e_u, e_c = pipe.unet(torch.cat([x_t, x_t]), t,
                                                 encoder_hidden_states=torch.cat([uncond, cond])).sample.chunk(2)
                    pred = pipe.unet(x_t, t, encoder_hidden_states=cond).sample
                    loss = float(w[i]) * torch.nn.functional.mse_loss(pred, esd_target(e_c, e_u, cfg.lower_eta))
                    pipe.unet.zero_grad(set_to_none=True)
                    loss.backward()
                    with torch.no_grad():
                        for p in params.values():
                            if p.grad is not None:
                                p.add_(p.grad.sign(), alpha=-cfg.lower_lr)
                pipe.unet.zero_grad(set_to_none=True)
            return prompt_losses(ctx, prompts, seeds, cfg.timesteps, refs) - offset

    return losses_of


@torch.no_grad()
def _load(params: dict[str, torch.nn.Parameter], values: dict[str, torch.Tensor]) -> None:
    for k, p in params.items():
        p.copy_(values[k])


def worst_case_set(pipe: Any, erasure: Any, concept: Any, judge: Any, prompts: Sequence[str], seeds: Sequence[int],
                   cfg: WorstCaseConfig = WorstCaseConfig(), steps: int | None = None,
                   guidance: float | None = None) -> Selection:
    """The worst-case set of ``prompts`` for ``erasure`` on the unedited ``pipe`` (``None``: the
    unedited model itself), selected with reference images and noise of ``seeds``."""
    kw = {k: v for k, v in (("steps", steps), ("guidance", guidance)) if v is not None}
    with (erasure.applied(pipe) if erasure is not None else nullcontext(pipe)):
        ctx = AttackContext(pipe, erasure, concept, judge, **kw)
        refs = unedited_images(ctx, prompts, seeds)
        offset = np.zeros(len(prompts))
        if cfg.loss == "excess":  # the unedited model's loss on the same images and noise
            with ctx.unedited():
                offset = prompt_losses(ctx, prompts, seeds, cfg.timesteps, refs)
        if cfg.lower_steps:
            return select(lower_level(ctx, prompts, seeds, cfg, refs, offset), len(prompts), cfg)
        losses = prompt_losses(ctx, prompts, seeds, cfg.timesteps, refs) - offset
        return select(lambda w: losses, len(prompts), cfg)
