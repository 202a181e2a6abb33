"""ItD: Interpret then Deactivate (Tian, Nan, Xu, Zhai, Qu, Liu, Ren, Jia, Zhang, "Sparse Autoencoder
as a Zero-Shot Classifier for Concept Erasing in Text-to-Image Diffusion Models", arXiv 2503.09446,
2025; github.com/NANSirun/Interpret-then-deactivate).

A TopK sparse autoencoder (:mod:`erasekit.sae`) on the token states of one text-encoder layer
interprets the concept as a set of features ``F``; at inference a hook on that layer encodes each
prompt's states, sets ``z_F <- -scale z_F``, decodes, and substitutes the decoded states only for
prompts whose states this changes by at least the gate threshold (the SAE as a zero-shot classifier
of the concept). Prompts that do not carry the concept's features pass through untouched.

- *Layer*: Stable Diffusion's CLIP layer 8 of 12 in the paper; by default the layer at 2/3 of
  the encoder's depth (8 of 12; MiniLM's 4 of 6 on the testbed; the output of that layer, 0-based).
- *SAE*: the paper's has 524,288 latents with k=64 on CLIP's 768 dimensions, trained on
  celebrity, style and COCO prompts. Here ``sae`` names one trained by ``erasekit sae train`` on a
  prompt corpus; without it the fit trains a small one (``n_dirs`` 2048, ``k`` 16) on the concept's
  erase and preserve prompts (every token position, padding included, since the hook sees them all).
- *Features*: the ``n_features`` features with the largest activation on the erase prompts minus
  the ``n_features`` largest on the retain prompts (the concept's ``preserve`` prompts, else its
  guide prompts); a feature's activation on a prompt set is its peak over each prompt's tokens,
  averaged over the prompts (inferred: the paper ranks by activation without saying how it pools
  over tokens, and a mean over tokens would rank the features of padding first).
- *Gate*: a prompt's change is the largest, over its tokens, mean squared difference between the
  deactivated reconstruction and the original states; the threshold is ``gate`` (0.99) times the
  smallest change over the erase prompts, as in the paper's released scripts.

Prompt embeddings passed straight to the pipeline (``prompt_embeds``) never reach the text encoder,
so ItD, like every text-encoder method, does not act on them.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import ClassVar, Any, Callable, Iterator

import torch
from diffusers import DiffusionPipeline

from erasekit.concepts import Concept
from erasekit.erasure import METHODS, Erasure, Method, MethodConfig, check
from erasekit.errors import UserError
from erasekit.pipelines import encode, fingerprint
from erasekit.sae import SAE, SAEConfig, load_sae, normalised_mse, train_sae


def encoder_layers(text_encoder: torch.nn.Module) -> torch.nn.ModuleList:
    """The transformer layers of a text encoder (BERT's ``encoder.layer``, CLIP's ``encoder.layers``)."""
    for name, module in text_encoder.named_modules():
        if isinstance(module, torch.nn.ModuleList) and name.endswith(("encoder.layer", "encoder.layers")):
            return module
    raise UserError(f"found no transformer layers in {type(text_encoder).__name__} (encoder.layer / encoder.layers)")


def resolve_layer(pipe: DiffusionPipeline, layer: int | None) -> int:
    """``layer``, checked, or the layer at 2/3 of the encoder's depth (CLIP's 8 of 12)."""
    n = len(encoder_layers(pipe.text_encoder))
    if layer is None:
        return min(round(2 * n / 3), n - 1)
    if not 0 <= layer < n:
        raise UserError(f"layer: the text encoder has layers 0 to {n - 1}, got {layer}")
    return layer


@contextmanager
def layer_hook(pipe: DiffusionPipeline, layer: int,
               fn: Callable[[torch.Tensor], torch.Tensor | None]) -> Iterator[None]:
    """While inside, ``fn(states)`` sees the token states ``(B, L, d)`` that text-encoder layer
    ``layer`` outputs and may return replacements (``None``: keep them)."""
    remove = install_layer_hook(pipe, layer, fn)
    try:
        yield
    finally:
        remove()


def install_layer_hook(pipe: DiffusionPipeline, layer: int,
                       fn: Callable[[torch.Tensor], torch.Tensor | None]) -> Callable[[], None]:
    def hook(module: torch.nn.Module, args: tuple, output: Any) -> Any:
        states = output[0] if isinstance(output, tuple) else output
        new = fn(states)
        if new is None:
            return None
        return (new, *output[1:]) if isinstance(output, tuple) else new

    return encoder_layers(pipe.text_encoder)[layer].register_forward_hook(hook).remove


def layer_states(pipe: DiffusionPipeline, prompts: list[str], layer: int) -> torch.Tensor:
    """The token states ``(N, L, d)`` text-encoder layer ``layer`` outputs for ``prompts``,
    encoded as the pipeline conditions its UNet (padded)."""
    seen: list[torch.Tensor] = []
    with layer_hook(pipe, layer, lambda s: seen.append(s.detach().float().cpu())):
        encode(pipe, prompts)
    return torch.cat(seen)


def train_text_sae(pipe: DiffusionPipeline, prompts: list[str], layer: int | None, config: SAEConfig,
                   progress: bool = True) -> tuple[SAE, dict[str, Any]]:
    """An SAE trained on every token state layer ``layer`` outputs for ``prompts``, and what
    :func:`~erasekit.sae.save_sae` records with it (layer, width, counts, normalised MSE)."""
    layer = resolve_layer(pipe, layer)
    if not prompts:
        raise UserError("no prompts to train the sparse autoencoder on")
    x = layer_states(pipe, prompts, layer).flatten(0, 1)
    sae = train_sae(x, config, progress)
    return sae, {"layer": layer, "d": x.shape[1], "n_dirs": config.n_dirs, "prompts": len(prompts),
                 "tokens": x.shape[0], "text_encoder": type(pipe.text_encoder).__name__,
                 "normalised_mse": round(normalised_mse(sae, x), 5)}


def peak_activation(sae: SAE, states: torch.Tensor) -> torch.Tensor:
    """Each feature's activation on a prompt set ``(N, L, d)``: its peak over each prompt's tokens,
    averaged over the prompts, ``(n_dirs,)``."""
    with torch.no_grad():
        return sae.encode(states).amax(1).mean(0)


def select_features(sae: SAE, erase: torch.Tensor, retain: torch.Tensor, n: int) -> list[int]:
    """The ``n`` most active features on ``erase`` minus the ``n`` most active on ``retain``."""
    top_erase = peak_activation(sae, erase).topk(n).indices.tolist()
    top_retain = set(peak_activation(sae, retain).topk(n).indices.tolist())
    return sorted(f for f in top_erase if f not in top_retain)


def deactivated(sae: SAE, states: torch.Tensor, features: torch.Tensor, scale: float) -> torch.Tensor:
    """``dec(z)`` with ``z = enc(states)`` and ``z_F <- -scale z_F``."""
    z = sae.encode(states.float())
    z[..., features] *= -scale
    return sae.decode(z)


def change(states: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
    """Per prompt, the largest per-token mean squared difference ``(B,)``."""
    return ((new - states.float()) ** 2).mean(-1).amax(-1)


@dataclass(frozen=True)
class ItDConfig(MethodConfig):
    """``sae``: a file from ``erasekit sae train`` (empty: train one here with ``layer``, ``n_dirs``,
    ``k``, ``sae_steps``); ``n_features`` per side of the contrast; ``scale`` of the deactivation;
    ``gate`` times the smallest erase-prompt change is the threshold. See the module docstring."""

    sae: str = ""
    layer: int | None = None
    n_dirs: int = 2048
    k: int = 16
    sae_steps: int = 1000
    n_features: int = 32
    scale: float = 8.0
    gate: float = 0.99

    bounds: ClassVar[dict[str, tuple[str, float]]] = {
        "sae_steps": (">=", 1), "n_features": (">=", 1), "scale": (">=", 0)
    }

    def __post_init__(self) -> None:
        self.check_types()
        check(self.layer is None or self.layer >= 0, "layer", f"must be >= 0, got {self.layer}")
        self.sae_config()  # n_dirs and k: the autoencoder's own checks
        check(0 < self.gate <= 1, "gate", f"must be in (0, 1], got {self.gate}")

    def sae_config(self) -> SAEConfig:
        return SAEConfig(n_dirs=self.n_dirs, k=self.k, steps=self.sae_steps)


@METHODS.register("itd")
class ItD(Method):
    """ItD: deactivate the concept's sparse-autoencoder features in the text encoder, gated per prompt (Tian et al. 2025)."""

    config_class = ItDConfig
    group = None
    test_config = {"n_dirs": 64, "k": 4, "sae_steps": 50, "n_features": 8}

    def fit(self, pipe: DiffusionPipeline, concept: Concept, config: MethodConfig, progress: bool = True) -> Erasure:
        assert isinstance(config, ItDConfig)
        erase_prompts = concept.erase_prompts()
        retain_prompts = list(concept.preserve) or concept.guide_prompts()
        if config.sae:
            sae, meta = load_sae(config.sae)
            layer = int(meta.get("layer", -1))
            if config.layer is not None and config.layer != layer:
                raise UserError(f"layer: {config.sae} was trained on text-encoder layer {layer}, not {config.layer}")
            resolve_layer(pipe, layer)
        else:
            sae, meta = train_text_sae(pipe, erase_prompts + retain_prompts, config.layer, config.sae_config(),
                                       progress)
            layer = meta["layer"]
        erase, retain = layer_states(pipe, erase_prompts, layer), layer_states(pipe, retain_prompts, layer)
        if erase.shape[-1] != sae.W_dec.shape[0]:
            raise UserError(f"the sparse autoencoder takes {sae.W_dec.shape[0]}-dimensional states; text-encoder "
                            f"layer {layer} outputs {erase.shape[-1]}")
        features = select_features(sae, erase, retain, config.n_features)
        if not features:
            raise UserError(f"no feature is among the {config.n_features} most active on {concept.name!r}'s prompts "
                            "and not on the retain prompts; raise n_features or train a larger SAE")
        index = torch.tensor(features)
        with torch.no_grad():
            erase_change = change(erase, deactivated(sae, erase, index, config.scale))
            retain_change = change(retain, deactivated(sae, retain, index, config.scale))
        threshold = config.gate * float(erase_change.min())
        tensors = {f"adapter.sae.{k}": v for k, v in sae.tensors().items()}
        tensors["adapter.features"] = index
        return Erasure(self.name, config, concept, fingerprint(pipe), tensors, extra={
            "layer": layer, "k": sae.k, "threshold": threshold, "features": len(features),
            "retain_gated": round(float((retain_change >= threshold).float().mean()), 4),
            "sae_normalised_mse": round(normalised_mse(sae, erase.flatten(0, 1)), 5)})

    def install(self, pipe: DiffusionPipeline, erasure: Erasure) -> Callable[[], None]:
        assert isinstance(erasure.config, ItDConfig)
        sae = SAE.from_tensors(erasure.adapter("sae."), int(erasure.extra["k"]))
        features = erasure.tensors["adapter.features"]
        scale, threshold = erasure.config.scale, float(erasure.extra["threshold"])
        sae.to(pipe.text_encoder.device)

        def substitute(states: torch.Tensor) -> torch.Tensor | None:
            new = deactivated(sae, states, features, scale)
            gated = change(states, new) >= threshold
            if not bool(gated.any()):
                return None
            return torch.where(gated[:, None, None], new.to(states.dtype), states)

        return install_layer_hook(pipe, resolve_layer(pipe, int(erasure.extra["layer"])), substitute)
