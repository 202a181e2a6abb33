"""Shared training targets."""

from __future__ import annotations

import torch


def esd_target(
    pred_concept: torch.Tensor,
    pred_uncond: torch.Tensor,
    eta: float,
    pred_anchor: torch.Tensor | None = None,
) -> torch.Tensor:
    """ESD's negative-guidance target (Gandikota et al. 2023): ``e0(anchor) - eta (e0(c) - e0(0))``.

    ``anchor`` defaults to the unconditional prediction (plain ESD); with ``--erase_from``-style
    anchors it is the frozen model's prediction for the anchor prompt. The coefficients sum to 1, so
    the target is valid for epsilon-, v- and x0-prediction models alike.
    """
    anchor = pred_uncond if pred_anchor is None else pred_anchor
    return (anchor - eta * (pred_concept - pred_uncond)).detach()


def guided_regime_loss(
    pred_concept: torch.Tensor,
    pred_uncond: torch.Tensor,
    frozen_concept: torch.Tensor,
    frozen_uncond: torch.Tensor,
    eta: float,
    uncond_weight: float,
) -> torch.Tensor:
    """``|e(x_t, c) - esd_target|^2 + w |e(x_t) - e0(x_t)|^2``: the concept prediction pulled to
    ESD's guided target, the unconditional prediction held to the frozen model's (its ``L_0``).

    One regime of ANT's trajectory-aware loss (Li, Lu, Ren, Kong, ACM MM 2025): ``eta > 0`` is the
    reversed guidance of the erased steps (``L^-``), ``eta < 0`` the kept score field
    ``e0(0) + |eta| (e0(c) - e0(0))`` of the kept ones (``L^+``; ``e0(c)`` itself at ``|eta| = 1``).
    """
    loss = torch.nn.functional.mse_loss(pred_concept, esd_target(frozen_concept, frozen_uncond, eta))
    if uncond_weight:
        loss = loss + uncond_weight * torch.nn.functional.mse_loss(pred_uncond, frozen_uncond.detach())
    return loss


def model_prediction(
    unet: torch.nn.Module,
    x_t: torch.Tensor,
    timesteps: torch.Tensor,
    states: torch.Tensor,
    guidance: float | None = None,
    uncond: torch.Tensor | None = None,
) -> torch.Tensor:
    """The UNet's prediction on ``x_t`` under ``states``; with ``guidance`` (and the unconditional
    ``uncond`` states) the guided one a sampler uses, ``e_0 + g (e_c - e_0)``, from one CFG batch,
    so inference-time guards hooked on CFG batches (SLD, negative prompt) act on it."""
    if guidance is None:
        return unet(x_t, timesteps, encoder_hidden_states=states).sample
    if uncond is None:
        raise ValueError("guidance needs the unconditional states (uncond)")
    n = x_t.shape[0]
    both = torch.cat([uncond.expand(n, -1, -1).to(states), states.expand(n, -1, -1)])
    e_0, e_c = unet(torch.cat([x_t, x_t]), torch.cat([timesteps, timesteps]), encoder_hidden_states=both).sample.chunk(2)
    return e_0 + guidance * (e_c - e_0)


def noised_batch(scheduler, x0: torch.Tensor, batch: int,
                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A random batch of ``x0`` rows noised to uniform training timesteps: ``(idx, x_t, t)``, drawn
    from ``generator`` in that order (rows, timesteps, noise) on the CPU, so the same on any device.
    The training batch of CA, SalUn and FMN."""
    idx = torch.randint(len(x0), (batch,), generator=generator).to(x0.device)
    t = torch.randint(scheduler.config.num_train_timesteps, (batch,), generator=generator).to(x0.device)
    noise = torch.randn(x0[idx].shape, generator=generator).to(x0.device, x0.dtype)
    return idx, scheduler.add_noise(x0[idx], noise, t), t


def predicted_x0(scheduler, x_t: torch.Tensor, timesteps: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
    """The clean sample a prediction implies at per-sample ``timesteps``: the ``pred_original_sample``
    of a DDPM/DDIM step, for the scheduler's ``prediction_type`` and with its ``clip_sample``, batched.
    DoCo's discriminator reads it (Wu et al. 2025)."""
    shape = (-1,) + (1,) * (x_t.ndim - 1)
    a = scheduler.alphas_cumprod.to(x_t.device, x_t.dtype)[timesteps.to(x_t.device)].reshape(shape)
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        x0 = (x_t - (1 - a).sqrt() * pred) / a.sqrt()
    elif kind == "v_prediction":
        x0 = a.sqrt() * x_t - (1 - a).sqrt() * pred
    elif kind == "sample":
        x0 = pred
    else:
        raise ValueError(f"unsupported prediction_type {kind!r}")
    if scheduler.config.get("clip_sample", False):
        limit = scheduler.config.get("clip_sample_range", 1.0)
        x0 = x0.clamp(-limit, limit)
    return x0


def denoising_loss(
    unet: torch.nn.Module,
    scheduler,
    x0: torch.Tensor,
    states: torch.Tensor,
    generator: torch.Generator,
    timesteps: torch.Tensor | None = None,
    guidance: float | None = None,
    uncond: torch.Tensor | None = None,
) -> torch.Tensor:
    """The model's own training loss on clean samples ``x0`` under conditioning ``states``.

    Noise and timesteps are drawn from ``generator``; the target follows the scheduler's
    ``prediction_type`` (epsilon, v_prediction or sample). This is UnlearnDiffAtk's "diffusion
    classifier" objective (Zhang et al. 2024), textual inversion's loss (Gal et al. 2023) and the
    fine-tuning loss of recovery attacks.

    With ``guidance`` (and the unconditional ``uncond`` states), the prediction is the guided one a
    sampler uses, ``e_0 + g (e_c - e_0)``, from one CFG batch, so inference-time guards hooked on
    CFG batches (SLD, negative prompt) act on it: P4D's objective for SLD (Chin et al., ICML 2024).
    """
    noise = torch.randn(x0.shape, generator=generator).to(x0.device, x0.dtype)
    if timesteps is None:
        timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (x0.shape[0],), generator=generator)
    timesteps = timesteps.to(x0.device)
    x_t = scheduler.add_noise(x0, noise, timesteps)
    pred = model_prediction(unet, x_t, timesteps, states, guidance, uncond)
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        target = noise
    elif kind == "v_prediction":
        target = scheduler.get_velocity(x0, noise, timesteps)
    elif kind == "sample":
        target = x0
    else:
        raise ValueError(f"unsupported prediction_type {kind!r}")
    return torch.nn.functional.mse_loss(pred.float(), target.float())


# -- language-model unlearning (forget terms take per-sequence summed NLLs) ----------------------
def npo_loss(nll: torch.Tensor, ref_nll: torch.Tensor, beta: float) -> torch.Tensor:
    """NPO (Zhang et al. 2024): ``-(2/beta) log sigmoid(-beta (log pi - log pi_ref))``, with ``log pi = -nll``."""
    return -(2.0 / beta) * torch.nn.functional.logsigmoid(beta * (nll - ref_nll)).mean()


def simnpo_loss(nll: torch.Tensor, lengths: torch.Tensor, beta: float, delta: float) -> torch.Tensor:
    """SimNPO (Fan et al. 2024), reference-free: ``-(2/beta) log sigmoid(beta * nll / |y| - delta)``."""
    return -(2.0 / beta) * torch.nn.functional.logsigmoid(beta * nll / lengths - delta).mean()


def next_token_kl(logits: torch.Tensor, ref_logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean ``KL(ref || current)`` of next-token distributions over the masked positions."""
    logp = torch.log_softmax(logits.float(), -1)
    ref = torch.log_softmax(ref_logits.float(), -1)
    kl = (ref.exp() * (ref - logp)).sum(-1)
    return (kl * mask).sum() / mask.sum().clamp(min=1)
