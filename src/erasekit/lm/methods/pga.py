"""PGA: Probe-Geometry Alignment (Rupa & Andy, "Probe-Geometry Alignment: Erasing the Cross-Sequence
Memorization Signature Below Chance", arXiv 2605.01699).

A linear probe per layer separates memorised texts from clean ones (the cross-sequence signature,
:mod:`erasekit.lm.metrics.memprobe`); PGA trains a LoRA (rank 16, alpha 32 in the paper) on every
linear layer of the decoder so the memorised texts' states match their clean partners' along the
probe directions, and refits the probes as it goes:

``L = align * mean_{i,d} ((h_mem,i,d - h_clean,i,d) . w_d)^2 + ce * CE(retain) + gamma * forget``

with ``h`` the state at the answer's last token after decoder layer ``d`` (every layer; the paper
aligns all six of Pythia-70M's), ``w_d`` the unit direction of a logistic-regression probe (C = 1,
standardised states; ``w = (coef / scale) / |.|``) fitted on all pairs, refitted every
``refit_every`` steps (the paper: every 25 of 200 full-batch epochs), Adam on the LoRA factors
only; the LoRA is merged into the artifact's weights.

On TinyTOFU: the memorised texts are the forget questions with their answers; their clean partners
are the same questions about authors no model was trained on
(:func:`erasekit.lm.data.unseen_questions`, so the holdout authors that the ``mem_probe`` metric
compares with stay unseen). What differs from the paper: its CE term is on the clean texts, here on
retain items (training on the never-seen partners would make them members); and ``forget="npo"``
(the default) adds NPO's forget term. On TinyTOFU the fully trained model shows no signature
(the probe is at chance) and gradient unlearning creates one (0.64-0.74 after GradDiff, NPO and
RMU; docs/results.md), so PGA there is unlearning that leaves none; ``forget="none"`` is the
paper's signature-only alignment. Left out: adversarial PGA's orthogonal subspace against refitted
probes and MD-PGA's several directions per layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from tqdm.auto import tqdm

from erasekit.config import Config, check
from erasekit.errors import UserError
from erasekit.lm import data
from erasekit.lm.methods.base import LM_GROUPS, LM_METHODS, LMErasure, LMMethod, group_parameters
from erasekit.lm.metrics.memprobe import probe_direction
from erasekit.lm.model import LM, _token_logprobs, batch_qa, fingerprint, mean_token_nll
from erasekit.lm.tasks import Forget, get_task
from erasekit.lm.unlearning import only_trainable
from erasekit.lora import LoRA
from erasekit.losses import npo_loss


@dataclass(frozen=True)
class PGAConfig(Config):
    """``rank``/``lora_alpha``: the LoRA (paper: 16, 32); ``align``, ``ce``, ``gamma``: the weights
    of the alignment, retain CE and forget terms (paper: 1, 1, no forget term); ``forget``: ``npo``
    or ``none``; ``refit_every``: steps between probe refits; ``batch``: retain items per step (the
    forget and partner texts go in whole, full batch as in the paper); ``params``: the
    :data:`~erasekit.lm.methods.base.LM_GROUPS` group whose linear layers get a LoRA (``layers``:
    every one, the paper's; ``down_proj`` keeps a real model's artifact small)."""

    steps: int = 120
    lr: float = 1e-3
    rank: int = 16
    lora_alpha: float = 32.0
    align: float = 1.0
    ce: float = 1.0
    forget: str = "npo"
    gamma: float = 1.0
    beta: float = 0.1
    refit_every: int = 10
    batch: int = 12
    params: str = "layers"
    seed: int = 0

    bounds: ClassVar[dict[str, tuple[str, float]]] = {
        "steps": (">=", 1), "lr": (">", 0), "rank": (">=", 1), "lora_alpha": (">", 0), "align": (">=", 0),
        "ce": (">=", 0), "gamma": (">=", 0), "beta": (">", 0), "refit_every": (">=", 1), "batch": (">=", 1)}

    def __post_init__(self) -> None:
        self.check_types()
        check(self.forget in ("npo", "none"), "forget", f"must be npo or none, got {self.forget!r}")
        check(self.params in LM_GROUPS, "params", f"must be one of {', '.join(LM_GROUPS)}, got {self.params!r}")


def group_linears(model: torch.nn.Module, group: str) -> dict[str, torch.nn.Linear]:
    """The linear layers whose weight is in the parameter group, keyed by the weight's name."""
    names = set(group_parameters(model, group))
    return {f"{n}.weight": m for n, m in model.named_modules()
            if isinstance(m, torch.nn.Linear) and f"{n}.weight" in names}


def answer_states(lm: LM, batch: dict[str, torch.Tensor]) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Per decoder layer output, the ``(n, d)`` states at each item's last token, and the logits
    (differentiable)."""
    out = lm.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_hidden_states=True)
    last = batch["attention_mask"].sum(1) - 1
    rows = torch.arange(len(last))
    return [h[rows, last].float() for h in out.hidden_states[1:]], out.logits


def alignment(mem: list[torch.Tensor], clean: list[torch.Tensor], directions: list[torch.Tensor]) -> torch.Tensor:
    """``mean_{i,d} ((h_mem,i,d - h_clean,i,d) . w_d)^2``: the pairs' gap along each layer's probe."""
    return torch.stack([((m - c) @ w).pow(2).mean() for m, c, w in zip(mem, clean, directions)]).mean()


@torch.no_grad()
def refit(lm: LM, batch: dict[str, torch.Tensor], y: np.ndarray, seed: int) -> list[torch.Tensor]:
    """Each layer's probe direction, fitted on the current states of the memorised and clean texts."""
    return [probe_direction(h, y, seed) for h in answer_states(lm, batch)[0]]


@LM_METHODS.register("pga")
class PGA(LMMethod):
    """PGA: a LoRA aligns forget texts with never-seen partners along refitted per-layer probes (arXiv 2605.01699)."""

    config_class = PGAConfig
    test_config = {"steps": 8}

    def declared_group(self, config: PGAConfig) -> str | None:
        return config.params

    def fit(self, lm: LM, forget: Forget, config: PGAConfig, progress: bool = True) -> LMErasure:
        task = get_task(forget)
        members = task.forget_train
        if len(members) < 2:
            raise UserError("pga needs at least two forget items (one memorised-clean pair per item)")
        clean = data.unseen_questions(data.generate(forget.seed), len(members))
        n = len(members)
        both = batch_qa(lm, [(q.question, q.answer) for q in members + clean])  # one forward for the pairs
        mb = {k: v[:n] for k, v in both.items()}
        y = np.array([1] * n + [0] * n)
        with torch.no_grad():
            ref_nll = -_token_logprobs(lm, mb)[0].sum(1)  # NPO's reference: the model before unlearning
        gen = torch.Generator().manual_seed(config.seed)
        torch.manual_seed(config.seed)
        lora = LoRA(group_linears(lm.model, config.params), gen, config.rank, config.lora_alpha / config.rank, init="uniform")
        opt = torch.optim.Adam(lora.parameters(), lr=config.lr)
        log: dict[str, list[float]] = {"align": [], "retain": [], "forget": []}
        directions: list[torch.Tensor] = []
        with only_trainable(lm.model, set()), lora.installed():
            lm.model.train()
            try:
                for step in tqdm(range(config.steps), desc=self.name, disable=not progress):
                    if step % config.refit_every == 0:
                        directions = refit(lm, both, y, config.seed)
                    opt.zero_grad(set_to_none=True)
                    states, logits = answer_states(lm, both)
                    la = alignment([h[:n] for h in states], [h[n:] for h in states], directions)
                    idx = torch.randint(len(task.retain_train), (config.batch,), generator=gen).tolist()
                    rb = batch_qa(lm, [(task.retain_train[i].question, task.retain_train[i].answer) for i in idx])
                    lr_ = mean_token_nll(lm, rb).mean()
                    lf = torch.zeros(())
                    if config.forget == "npo":
                        lf = npo_loss(-_token_logprobs(lm, mb, logits[:n])[0].sum(1), ref_nll, config.beta)
                    (config.align * la + config.ce * lr_ + config.gamma * lf).backward()
                    opt.step()
                    for key, v in (("align", la), ("retain", lr_), ("forget", lf)):
                        log[key].append(round(float(v.detach()), 4))
            finally:
                lm.model.eval()
        return LMErasure(self.name, config, forget, fingerprint(lm.model), lora.merged(),
                         {"log": log, "pairs": len(members)})
