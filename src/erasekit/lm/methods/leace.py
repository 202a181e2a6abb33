"""LEACE linear concept erasure (Belrose et al., NeurIPS 2023, arXiv 2306.03819), with EleutherAI's ``concept-erasure``.

Fits ``LeaceEraser`` on the residual stream after layer ``layer`` at the last prompt token of
every question about ``attribute`` (labels: the answer value), then applies it to that layer's
output at every position through a forward hook. Guarantee (the package's): no linear classifier
on the erased states beats the constant predictor. It removes a *property* (e.g. every entity's
genre), not an entity's facts; tasks without attribute labels cannot use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

from erasekit.artifact import ADAPTER_PREFIX
from erasekit.config import Config, check
from erasekit.errors import UserError
from erasekit.lm import data
from erasekit.lm.methods.base import LM_METHODS, LMErasure, LMMethod, as_module
from erasekit.lm.model import LM, decoder_layers, fingerprint, last_token_states
from erasekit.lm.tasks import Forget, get_task


@dataclass(frozen=True)
class LeaceConfig(Config):
    attribute: str = "genre"
    layer: int = 1

    def __post_init__(self) -> None:
        self.check_types()
        check(self.attribute in data.ATTRIBUTES, "attribute",
              f"must be one of {', '.join(data.ATTRIBUTES)}, got {self.attribute!r}")
        check(self.layer >= 0, "layer", f"must be >= 0, got {self.layer}")


def fit_eraser(x: torch.Tensor, labels: list[str]):
    from concept_erasure import LeaceEraser

    classes = sorted(set(labels))
    z = torch.nn.functional.one_hot(torch.tensor([classes.index(v) for v in labels]), len(classes)).float()
    return LeaceEraser.fit(x.double(), z.double())


@LM_METHODS.register("leace")
class Leace(LMMethod):
    """LEACE: erase an attribute's linear information from one layer's residual stream (Belrose et al. 2023)."""

    config_class = LeaceConfig
    group = None

    def fit(self, lm: LM, forget: Forget, config: LeaceConfig, progress: bool = True) -> LMErasure:
        task = get_task(forget)
        if config.attribute not in task.probe:
            raise UserError(f"leace needs attribute labels; task {forget.task!r} has none (use tinytofu)")
        n_layers = len(decoder_layers(lm.model))
        if config.layer >= n_layers:
            raise UserError(f"layer: {config.layer} is out of range; the model has {n_layers} layers")
        rows = task.probe[config.attribute]
        x = last_token_states(lm, [q for q, _, _ in rows])[config.layer + 1]
        eraser = fit_eraser(x, [v for _, v, _ in rows])
        tensors = {"proj_left": eraser.proj_left.float(), "proj_right": eraser.proj_right.float()}
        if eraser.bias is not None:
            tensors["bias"] = eraser.bias.float()
        tensors = {f"{ADAPTER_PREFIX}leace.{k}": v for k, v in tensors.items()}  # the hook's, not the model's
        return LMErasure(self.name, config, forget, fingerprint(lm.model), tensors, {"n_fit": len(rows)})

    def install(self, target: Any, erasure: LMErasure) -> Callable[[], None]:
        from concept_erasure import LeaceEraser

        t = erasure.adapter("leace.")
        eraser = LeaceEraser(t["proj_left"], t["proj_right"], t.get("bias"))

        def hook(_m, _i, out):
            if isinstance(out, tuple):
                return (eraser(out[0]),) + tuple(out[1:])
            return eraser(out)

        handle = decoder_layers(as_module(target))[erasure.config.layer].register_forward_hook(hook)
        return handle.remove
