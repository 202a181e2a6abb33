"""The language-model unlearning contract: an :class:`LMMethod` fits on an
:class:`~erasekit.lm.model.LM` and a :class:`~erasekit.lm.tasks.Forget` spec and returns an
:class:`LMErasure`, the same ``config.json`` + ``weights.safetensors`` artifact as a diffusion
erasure (:mod:`erasekit.artifact`: only the touched tensors), applied to and removed from a
``transformers`` model.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

import torch

from erasekit.artifact import Artifact, Fitter, ModelFamily
from erasekit.config import Config
from erasekit.errors import UserError
from erasekit.lm.model import LM, fingerprint
from erasekit.lm.tasks import Forget
from erasekit.registry import Registry

#: Named parameter groups of a Llama-style causal LM: name -> (pattern over parameter names, what it selects).
LM_GROUPS: dict[str, tuple[str, str]] = {
    "layers": (r"(^|\.)layers\.\d+\.", "every parameter of the decoder layers (attention, MLP, norms)"),
    "mlp": (r"(^|\.)layers\.\d+\.mlp\.", "the MLP projections of every decoder layer"),
    "residual_writers": (r"(^|\.)layers\.\d+\.(self_attn\.o_proj|mlp\.down_proj)\.weight$",
                         "attention o_proj and MLP down_proj of every layer (directional ablation)"),
    "down_proj": (r"(^|\.)layers\.\d+\.mlp\.down_proj\.weight$",
                  "MLP down_proj of every layer (small artifacts on real models)"),
}


def group_parameters(model: torch.nn.Module, group: str, upto: int | None = None) -> dict[str, torch.nn.Parameter]:
    """The parameters of a named group; ``"rmu"`` with ``upto=l`` is the MLPs of layers ``l-2 .. l``."""
    if group == "rmu":
        assert upto is not None
        layers = "|".join(str(i) for i in range(max(0, upto - 2), upto + 1))
        pattern = r"(^|\.)layers\.(" + layers + r")\.mlp\."
    elif group in LM_GROUPS:
        pattern = LM_GROUPS[group][0]
    else:
        raise UserError(f"unknown parameter group {group!r}; choose from {', '.join(LM_GROUPS)}, rmu")
    out = {n: p for n, p in model.named_parameters() if re.search(pattern, n)}
    if not out:
        raise UserError(f"parameter group {group!r} selects nothing in {type(model).__name__}")
    return out


class LMMethod(Fitter):
    """A language-model unlearning method: ``fit(lm, forget, config) -> LMErasure``. Subclasses set
    ``config_class``, ``group`` (an :data:`LM_GROUPS` name) and a one-line docstring."""

    group: ClassVar[str | None] = "layers"

    def fit(self, lm: LM, forget: Forget, config: Config, progress: bool = True) -> "LMErasure":
        raise NotImplementedError


LM_METHODS: Registry[LMMethod] = Registry("language-model method", LMMethod, package="erasekit.lm.methods",
                                          group="erasekit.lm_methods")
get_lm_method = LM_METHODS.create
lm_method_names = LM_METHODS.names


def make_lm_config(method: str, overrides: dict[str, Any] | None = None) -> Config:
    """The method's default config with ``overrides`` applied (validated)."""
    return get_lm_method(method).config_class.with_overrides(overrides)


def as_module(target: Any) -> torch.nn.Module:
    """The ``torch`` module of an :class:`LM` (or the module itself)."""
    return target.model if isinstance(target, LM) else target


class LMErasure(Artifact):
    """An unlearning artifact for a ``transformers`` causal LM (or an :class:`LM`)."""

    family = ModelFamily("language model", LM_METHODS, Forget, lambda t: fingerprint(as_module(t)),
                         lambda t, key: as_module(t).get_parameter(key))
