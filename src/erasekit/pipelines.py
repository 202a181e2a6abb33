"""What erasekit needs from a diffusers pipeline, for the testbed and for Stable Diffusion alike:
prompt encoding with token lengths, named parameter groups, and a fingerprint of the base weights.
"""

from __future__ import annotations

import hashlib
import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import torch
from diffusers import DiffusionPipeline

from erasekit.errors import UserError, unreadable_as_user_error

#: Named parameter groups. Keys in artifacts are ``"<component>.<parameter name>"``.
GROUPS: dict[str, str] = {
    "xattn_kv": "UNet cross-attention key/value projections (attn2.to_k, attn2.to_v): UCE, RECE, ESD-x-strict",
    "xattn": "every UNet cross-attention parameter (attn2.*): ESD-x",
    "unet_non_xattn": "UNet parameters outside cross-attention and the time embedding: ESD-u",
    "attn": "every UNet attention parameter (attn1.*, attn2.*): TRCE (K/V in closed form, then attn1 and attn2.to_q)",
    "unet": "every UNet parameter: SalUn and ANT (which then update only the salient entries)",
    "text_encoder": "every text-encoder parameter: AdvUnlearn-style methods",
}


def _in_group(group: str, component: str, name: str) -> bool:
    if group == "text_encoder":
        return component == "text_encoder"
    if component != "unet":
        return False
    if group == "unet":
        return True
    if group == "xattn_kv":
        return "attn2" in name and (".to_k." in name or ".to_v." in name)
    if group == "xattn":
        return "attn2" in name
    if group == "attn":
        return "attn1" in name or "attn2" in name
    if group == "unet_non_xattn":
        return "attn2" not in name and not name.startswith("time_embedding")
    raise UserError(f"unknown parameter group {group!r}; choose from {', '.join(GROUPS)}")


def group_parameters(pipe: DiffusionPipeline, group: str) -> dict[str, torch.nn.Parameter]:
    """The parameters of ``group`` as ``{"unet.down_blocks...to_k.weight": param}``."""
    if group not in GROUPS:
        raise UserError(f"unknown parameter group {group!r}; choose from {', '.join(GROUPS)}")
    out: dict[str, torch.nn.Parameter] = {}
    for component in ("unet", "text_encoder"):
        module = getattr(pipe, component, None)
        if module is None:
            continue
        for name, p in module.named_parameters():
            if _in_group(group, component, name):
                out[f"{component}.{name}"] = p
    if not out:
        raise UserError(f"parameter group {group!r} selects nothing in {type(pipe).__name__}")
    return out


_ENCODER_LAYER = re.compile(r"(?:^|\.)layers?\.(\d+)\.")


def encoder_layer_parameters(pipe: DiffusionPipeline) -> dict[str, tuple[int, str]]:
    """Each text-encoder parameter inside a transformer layer, as ``key -> (layer index, name within
    the layer)``: ``"text_encoder...encoder.layers.0.mlp.fc1.weight" -> (0, "mlp.fc1.weight")``
    (CLIP), ``"text_encoder.encoder.layer.0.intermediate.dense.weight" -> (0, "intermediate.dense.weight")``
    (BERT). For the text-encoder methods that train chosen layers (AdvUnlearn, few-shot erasing)."""
    out = {}
    for key in group_parameters(pipe, "text_encoder"):
        m = _ENCODER_LAYER.search(key)
        if m is not None:
            out[key] = (int(m.group(1)), key[m.end():])
    if not out:
        raise UserError(f"found no transformer layers in the text encoder of {type(pipe).__name__}")
    return out


def get_parameter(pipe: DiffusionPipeline, key: str) -> torch.nn.Parameter:
    component, name = key.split(".", 1)
    return getattr(pipe, component).get_parameter(name)


def kv_layers(pipe: DiffusionPipeline) -> dict[str, torch.nn.Linear]:
    """Every cross-attention ``to_k`` / ``to_v`` Linear of the UNet, by module name."""
    return {
        f"unet.{n}": m
        for n, m in pipe.unet.named_modules()
        if "attn2" in n and n.endswith(("to_k", "to_v")) and isinstance(m, torch.nn.Linear)
    }


@contextmanager
def frozen(*modules: torch.nn.Module) -> Iterator[None]:
    """The modules' weights frozen (no gradients) and in eval mode; restored afterwards."""
    saved = [([p.requires_grad for p in m.parameters()], m.training) for m in modules]
    for m in modules:
        m.requires_grad_(False).eval()
    try:
        yield
    finally:
        for m, (req, was) in zip(modules, saved):
            for p, r in zip(m.parameters(), req):
                p.requires_grad_(r)
            m.train(was)


@contextmanager
def training(module: torch.nn.Module, params: Iterable[torch.nn.Parameter]) -> Iterator[None]:
    """Only ``params`` of ``module`` take gradients, in train mode; everything restored afterwards."""
    with frozen(module):
        for p in params:
            p.requires_grad_(True)
        module.train()
        yield


def summed_gradients(module: torch.nn.Module, params: dict[str, torch.nn.Parameter],
                     loss: Callable[[], torch.Tensor], n: int) -> dict[str, torch.Tensor]:
    """The gradient of ``loss()`` (each call drawing its own batch) with respect to ``params``, summed
    over ``n`` calls, with only ``params`` training: the saliency gradients of SalUn and ANT."""
    grads = {k: torch.zeros_like(p) for k, p in params.items()}
    with training(module, params.values()):
        for _ in range(n):
            module.zero_grad(set_to_none=True)
            loss().backward()
            for k, p in params.items():
                if p.grad is not None:
                    grads[k] += p.grad
        module.zero_grad(set_to_none=True)
    return grads


@dataclass(frozen=True)
class Encoded:
    """Token states ``(N, L, D)`` and the number of real (non-padding) tokens of each prompt."""

    states: torch.Tensor
    lengths: torch.Tensor
    input_ids: torch.Tensor


def max_length(pipe: DiffusionPipeline) -> int:
    cfg_len = getattr(getattr(pipe, "config", None), "max_length", None)
    return int(cfg_len) if cfg_len else int(pipe.tokenizer.model_max_length)


@torch.no_grad()
def encode(pipe: DiffusionPipeline, prompts: list[str], batch: int = 256) -> Encoded:
    """Encode prompts exactly as the pipeline conditions its UNet (padded, as in SD's encode_prompt)."""
    states, ids_all, lengths = [], [], []
    for i in range(0, len(prompts), batch):
        chunk = prompts[i : i + batch]
        tok = pipe.tokenizer(chunk, padding="max_length", max_length=max_length(pipe), truncation=True,
                             return_tensors="pt")
        if hasattr(pipe, "encode_text"):  # the testbed (BERT: attention mask)
            out = pipe.encode_text(chunk)
        else:  # StableDiffusionPipeline and friends
            out = pipe.encode_prompt(chunk, pipe.text_encoder.device, 1, False)[0]
        # solves run in float32 at least (float64 stays float64)
        states.append(out if out.dtype == torch.float64 else out.float())
        ids_all.append(tok.input_ids)
        lengths.append(tok.attention_mask.sum(1))
    return Encoded(torch.cat(states), torch.cat(lengths), torch.cat(ids_all))


def fingerprint(pipe: DiffusionPipeline) -> str:
    """SHA-256 over the UNet's cross-attention K/V weights and the text encoder's token embeddings.

    Cheap (a few MB even for SD) and changes whenever the base model differs.
    """
    h = hashlib.sha256()
    tensors: list[tuple[str, torch.Tensor]] = [(k, m.weight) for k, m in sorted(kv_layers(pipe).items())]
    emb = pipe.text_encoder.get_input_embeddings().weight
    tensors.append(("text_encoder.embeddings", emb))
    for name, t in tensors:
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def unet_call_hook(pipe: DiffusionPipeline, hook: Callable, with_pre: bool = False) -> Callable[[], None]:
    """Install a forward (or forward-pre) hook with kwargs on the UNet; returns its remover."""
    if with_pre:
        handle = pipe.unet.register_forward_pre_hook(hook, with_kwargs=True)
    else:
        handle = pipe.unet.register_forward_hook(hook, with_kwargs=True)
    return handle.remove


def call_states(args: tuple, kwargs: dict) -> torch.Tensor | None:
    """The ``encoder_hidden_states`` of a UNet call as a hook sees it (keyword or third positional argument)."""
    return kwargs.get("encoder_hidden_states", args[2] if len(args) > 2 else None)


def with_call_states(args: tuple, kwargs: dict, states: torch.Tensor) -> tuple[tuple, dict]:
    """A UNet call's ``(args, kwargs)`` with ``encoder_hidden_states`` replaced: a forward-pre hook's return value."""
    if "encoder_hidden_states" in kwargs:
        return args, {**kwargs, "encoder_hidden_states": states}
    return (*args[:2], states, *args[3:]), kwargs


def is_pipeline_folder(path: str | Path) -> bool:
    """Whether ``path`` holds a saved diffusers pipeline (``model_index.json``)."""
    return (Path(path) / "model_index.json").exists()


def load_pipeline_folder(path: str | Path) -> DiffusionPipeline:
    """A local diffusers pipeline folder (Stable Diffusion, an exported erasure), safetensors only, offline."""
    with unreadable_as_user_error(path, "diffusers pipeline"):
        pipe = DiffusionPipeline.from_pretrained(path, local_files_only=True, use_safetensors=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def load_for(weights: str | None, domain: Any) -> Any:
    """``weights`` as a local diffusers pipeline folder, else the domain's pipeline from ``weights``
    (its shipped weights for ``None``): how the CLI and benchmark cells load a model."""
    if weights is not None and is_pipeline_folder(weights):
        return load_pipeline_folder(weights)
    return domain.load_pipeline(weights)
