"""NPO: Negative Preference Optimization (Zhang et al., COLM 2024, arXiv 2404.05868).

The forget answers are DPO "losers" with no winner: ``-(2/beta) log sigmoid(-beta log(pi/pi_ref))``
on sequence-summed log-likelihoods, against the frozen model. Bounded, so it unlearns more slowly
and more stably than gradient ascent. open-unlearning's default beta = 0.1.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from erasekit.config import check
from erasekit.lm.model import LM, _token_logprobs
from erasekit.lm.tasks import Forget
from erasekit.lm.methods.base import LM_METHODS, LMErasure, LMMethod
from erasekit.lm.unlearning import GradientConfig, gradient_fit
from erasekit.losses import npo_loss


@dataclass(frozen=True)
class NPOConfig(GradientConfig):
    beta: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.beta > 0, "beta", f"must be > 0, got {self.beta}")


@LM_METHODS.register("npo")
class NPO(LMMethod):
    """NPO: negative preference optimisation against the frozen model (Zhang et al. 2024)."""

    config_class = NPOConfig
    test_config = {"steps": 8}

    def fit(self, lm: LM, forget: Forget, config: NPOConfig, progress: bool = True) -> LMErasure:
        def term(m: LM, batch: dict[str, torch.Tensor], ref: LM | None) -> torch.Tensor:
            nll = -_token_logprobs(m, batch)[0].sum(1)
            with torch.no_grad():
                ref_nll = -_token_logprobs(ref, batch)[0].sum(1)
            return npo_loss(nll, ref_nll, config.beta)

        return gradient_fit(self, lm, forget, config, term, needs_ref=True, progress=progress)
