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
