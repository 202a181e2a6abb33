"""SimNPO: reference-free NPO on length-normalised likelihood (Fan et al. 2024, arXiv 2410.07163).

``-(2/beta) log sigmoid(beta * NLL/|y| - delta)``: no frozen copy (half NPO's memory). Defaults
from open-unlearning: beta = 4.5, delta = 0; its forget weight gamma = 0.125 needs more steps here.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from erasekit.config import check
from erasekit.lm.model import LM, _token_logprobs
from erasekit.lm.tasks import Forget
from erasekit.lm.methods.base import LM_METHODS, LMErasure, LMMethod
from erasekit.lm.unlearning import GradientConfig, gradient_fit
from erasekit.losses import simnpo_loss


@dataclass(frozen=True)
class SimNPOConfig(GradientConfig):
    beta: float = 4.5
    delta: float = 0.0
    steps: int = 100

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.beta > 0, "beta", f"must be > 0, got {self.beta}")


@LM_METHODS.register("simnpo")
class SimNPO(LMMethod):
    """SimNPO: reference-free, length-normalised NPO (Fan et al. 2024)."""

    config_class = SimNPOConfig
    test_config = {"steps": 8}

    def fit(self, lm: LM, forget: Forget, config: SimNPOConfig, progress: bool = True) -> LMErasure:
        def term(m: LM, batch: dict[str, torch.Tensor], ref: LM | None) -> torch.Tensor:
            tok_lp, _, mask = _token_logprobs(m, batch)
            return simnpo_loss(-tok_lp.sum(1), mask.sum(1).float(), config.beta, config.delta)

        return gradient_fit(self, lm, forget, config, term, progress=progress)
