"""Gradient ascent and gradient difference (TOFU's baselines, Maini et al. 2024; open-unlearning's GradDiff).

GradAscent maximises the forget answers' NLL; GradDiff adds a retain term (NLL, or KL to the
frozen model). Both plug into the shared loop, so ``gu=true`` gives their GU-projected variants.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from erasekit.lm.model import LM, mean_token_nll
from erasekit.lm.tasks import Forget
from erasekit.lm.methods.base import LM_METHODS, LMErasure, LMMethod
from erasekit.lm.unlearning import GradientConfig, gradient_fit


def ascent_term(lm: LM, batch: dict[str, torch.Tensor], ref: LM | None) -> torch.Tensor:
    return -mean_token_nll(lm, batch).mean()


@dataclass(frozen=True)
class GradDiffConfig(GradientConfig):
    pass


@dataclass(frozen=True)
class GradAscentConfig(GradientConfig):
    alpha: float = 0.0
    retain: str = "none"
    steps: int = 30


@LM_METHODS.register("graddiff")
class GradDiff(LMMethod):
    """GradDiff: ascend the forget NLL, descend the retain NLL or KL (Liu et al. 2022; TOFU)."""

    config_class = GradDiffConfig
    test_config = {"steps": 8}

    def fit(self, lm: LM, forget: Forget, config: GradientConfig, progress: bool = True) -> LMErasure:
        return gradient_fit(self, lm, forget, config, ascent_term, progress=progress)


@LM_METHODS.register("gradascent")
class GradAscent(GradDiff):
    """GradAscent: ascend the forget NLL with no retain term (collapses utility; the floor every table needs)."""

    config_class = GradAscentConfig
    test_config = {"steps": 8}
