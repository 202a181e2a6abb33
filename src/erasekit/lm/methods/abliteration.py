"""Directional ablation ("abliteration"; Arditi et al., NeurIPS 2024, arXiv 2406.11717), aimed at a forget set.

The direction is the difference of means of the residual stream after layer ``layer`` at the last
prompt token, forget questions minus retain questions. It is baked into the weights that write the
residual stream: ``W <- W - scale * r r^T W`` for every attention ``o_proj`` and MLP ``down_proj``
(and, with ``embeddings=true``, the token embeddings), so no layer can write along ``r``.
Training-free and deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from erasekit.config import Config, check
from erasekit.errors import UserError
from erasekit.linalg import project_out_cols, project_out_rows
from erasekit.lm.methods.base import LM_METHODS, LMErasure, LMMethod, group_parameters
from erasekit.lm.model import LM, decoder_layers, fingerprint, last_token_states
from erasekit.lm.tasks import Forget, get_task


@dataclass(frozen=True)
class AbliterationConfig(Config):
    layer: int = -1  # -1: the middle layer
    scale: float = 1.0
    embeddings: bool = False
    n_retain: int = 256

    def __post_init__(self) -> None:
        self.check_types()
        check(self.layer >= -1, "layer", f"must be >= 0 (or -1 for the middle layer), got {self.layer}")
        check(0 < self.scale <= 2, "scale", f"must be in (0, 2], got {self.scale}")
        check(self.n_retain >= 1, "n_retain", f"must be >= 1, got {self.n_retain}")


def difference_of_means(lm: LM, forget_q: list[str], retain_q: list[str], layer: int) -> torch.Tensor:
    """Unit ``mean(h | forget) - mean(h | retain)`` of the residual stream after ``layer``."""
    hf = last_token_states(lm, forget_q)[layer + 1]
    hr = last_token_states(lm, retain_q)[layer + 1]
    r = hf.mean(0) - hr.mean(0)
    return r / r.norm()


@LM_METHODS.register("abliteration")
class Abliteration(LMMethod):
    """Abliteration: project a forget-vs-retain difference-of-means direction out of the residual writers."""

    config_class = AbliterationConfig
    group = "residual_writers"

    def fit(self, lm: LM, forget: Forget, config: AbliterationConfig, progress: bool = True) -> LMErasure:
        n_layers = len(decoder_layers(lm.model))
        layer = n_layers // 2 if config.layer == -1 else config.layer
        if layer >= n_layers:
            raise UserError(f"layer: {layer} is out of range; the model has {n_layers} layers (0-{n_layers - 1})")
        task = get_task(forget)
        r = difference_of_means(lm, [q.question for q in task.forget_train],
                                [q.question for q in task.retain_train[: config.n_retain]], layer)
        tensors = {k: project_out_rows(p.detach(), r, config.scale)
                   for k, p in group_parameters(lm.model, "residual_writers").items()}
        if config.embeddings:
            emb = lm.model.get_input_embeddings()
            key = next(n for n, p in lm.model.named_parameters() if p is emb.weight)
            tensors[key] = project_out_cols(emb.weight.detach(), r, config.scale)
        return LMErasure(self.name, config, forget, fingerprint(lm.model), tensors,
                         {"layer": layer, "direction": r.tolist()})
