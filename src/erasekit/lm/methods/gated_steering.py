"""Gated, reversible activation steering: MLLMEraser, text only (Ding et al. 2025, arXiv 2510.04217).

Training-free test-time unlearning. At decoder layer ``layer`` (residual stream after it):

1. *Erasure direction* ``d``. ``refusal`` (the paper's): the mean last-token state of each forget
   question followed by a refusal (``"I don't know"``) minus the same followed by its true answer
   (the paper's knowledge-erasure minus knowledge-recall completions); ``retain``: the mean state
   of retain questions minus that of forget questions (no completions).
2. *Input-aware map* ``W = D H_f^T P^T (P H_f H_f^T P^T + gamma P P^T)^+``
   (:func:`erasekit.linalg.null_space_steering_map`): ``H_f`` the forget questions' last-token
   states, ``D`` the direction repeated per question, ``P`` the projector onto the null space of
   the retain questions' states (the directions holding ``1 - energy`` of their energy), so
   ``W h_retain ~ 0``: the steering is gated by the input and retain questions pass unchanged.
3. *Injection* ``h <- h + lam W h`` through a forward hook on that layer, only on calls that feed
   more than one token (the prefill; decoding steps read it through the KV cache).

Reconstructed from the paper and a third-party port's account of its ``null_space_util.py`` (the
official code is not public). What differs: text only (no PGD-perturbed images in the recall
pairs); ``W`` is applied to each position's own state rather than the last prompt token's
``f(h_last)`` broadcast over positions, because inside a hook under teacher-forced scoring the
prompt's end is unknown and broadcasting the sequence's last state would leak the answer into
earlier positions; the null space is the low-energy eigenspace (the paper: eigenvalues under a
threshold). The artifact is ``W`` (an adapter tensor) and the settings; nothing in the model changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar

import torch

from erasekit.artifact import ADAPTER_PREFIX
from erasekit.config import Config, check
from erasekit.errors import UserError
from erasekit.linalg import null_space_steering_map
from erasekit.lm.methods.base import LM_METHODS, LMErasure, LMMethod, as_module
from erasekit.lm.model import LM, decoder_layers, fingerprint, last_token_states, text_states
from erasekit.lm.tasks import Forget, get_task

REFUSAL = "I don't know"


@dataclass(frozen=True)
class GatedSteeringConfig(Config):
    """Defaults chosen on TinyTOFU seed 0 (docs/results.md, "KIF and gated steering": at layer 1
    forget accuracy stays at 0.27)."""

    layer: int = 0
    direction: str = "refusal"
    lam: float = 16.0
    gamma: float = 1.0
    energy: float = 0.99
    n_retain: int = 1024

    bounds: ClassVar[dict[str, tuple[str, float]]] = {
        "layer": (">=", 0), "lam": (">", 0), "gamma": (">", 0), "energy": ("<=", 1), "n_retain": (">=", 1)}

    def __post_init__(self) -> None:
        self.check_types()
        check(self.direction in ("refusal", "retain"), "direction", f"must be refusal or retain, got {self.direction!r}")
        check(self.energy > 0, "energy", f"must be in (0, 1], got {self.energy}")


def erasure_direction(lm: LM, forget: list, retain_q: list[str], layer: int, kind: str) -> torch.Tensor:
    """``d``: refusal minus answer completions of the forget questions, or retain minus forget questions."""
    if kind == "retain":
        hf = last_token_states(lm, [q.question for q in forget])[layer + 1]
        hr = last_token_states(lm, retain_q)[layer + 1]
        return hr.mean(0) - hf.mean(0)
    refuse = text_states(lm, [lm.qa_text(q.question, REFUSAL) for q in forget])[layer + 1]
    recall = text_states(lm, [lm.qa_text(q.question, q.answer) for q in forget])[layer + 1]
    return (refuse - recall).mean(0)


@LM_METHODS.register("gated_steering")
class GatedSteering(LMMethod):
    """Gated steering: a closed-form, retain-null-space map adds an erasure direction at prefill (MLLMEraser, text only)."""

    config_class = GatedSteeringConfig
    group = None

    def fit(self, lm: LM, forget: Forget, config: GatedSteeringConfig, progress: bool = True) -> LMErasure:
        n_layers = len(decoder_layers(lm.model))
        if config.layer >= n_layers:
            raise UserError(f"layer: {config.layer} is out of range; the model has {n_layers} layers (0-{n_layers - 1})")
        task = get_task(forget)
        retain_q = [q.question for q in task.retain_train[: config.n_retain]]
        d = erasure_direction(lm, task.forget_train, retain_q, config.layer, config.direction)
        hf = last_token_states(lm, [q.question for q in task.forget_train])[config.layer + 1]
        hr = last_token_states(lm, retain_q)[config.layer + 1]
        w = null_space_steering_map(hf, d.expand_as(hf), hr, config.gamma, config.energy).float()
        gate = {k: round(float((h @ w.T).norm(dim=1).mean() / d.norm()), 4) for k, h in (("forget", hf), ("retain", hr))}
        return LMErasure(self.name, config, forget, fingerprint(lm.model), {f"{ADAPTER_PREFIX}steer.w": w},
                         {"direction_norm": round(float(d.norm()), 4), "gate": gate})

    def install(self, target: Any, erasure: LMErasure) -> Callable[[], None]:
        w = erasure.adapter("steer.")["w"]
        lam = erasure.config.lam

        def hook(_m, _i, out):
            h = out[0] if isinstance(out, tuple) else out
            if h.shape[1] < 2:  # a decoding step: the prefill's steering is in the KV cache
                return out
            h = h + lam * (h @ w.to(h.dtype).T)
            return (h,) + tuple(out[1:]) if isinstance(out, tuple) else h

        handle = decoder_layers(as_module(target))[erasure.config.layer].register_forward_hook(hook)
        return handle.remove
