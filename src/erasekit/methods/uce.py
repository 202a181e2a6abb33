"""UCE: Unified Concept Editing (Gandikota et al., WACV 2024; github.com/rohitgandikota/unified-concept-editing).

Closed-form edit of every cross-attention ``to_k`` / ``to_v`` so that the keys of the erase
prompts produce what the aligned guide prompts produced, while preserved prompts keep their
outputs. Which token states are the keys (``tokens``):

- ``aligned`` (default): every token of each erase prompt, aligned with the guide prompt by shared
  prefix and suffix (the surrounding words and the padding, as MACE aligns contexts); the
  concept's own tokens map onto the guide's slot tokens (or its first following token when the
  guide is empty); every token of every preserved prompt.
- ``last``: the official script today (``trainscripts/uce_sd_erase.py``): one key per prompt, the
  last word token (index ``attention_mask.sum() - 2``), for erase, guide and preserved prompts alike.
- ``last_and_after``: the official 2023 script (``train-scripts/train_erase.py``): the last word
  token and every token after it (end-of-text and padding), erase and guide rows paired from
  their last word tokens and cut to the same count; every token of every preserved prompt.

On the testbed's templates ("a red skull on a striped background") the last word is the
background's, not the concept's, so ``last`` and ``last_and_after`` key the edit on context; the
measured effect of each choice is in docs/results.md (UCE token selection).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from diffusers import DiffusionPipeline
from tqdm.auto import tqdm

from erasekit.concepts import Concept
from erasekit.erasure import METHODS, Erasure, Method, MethodConfig, check
from erasekit.linalg import edit_weight, uce_right_factor
from erasekit.pipelines import Encoded, encode, fingerprint, kv_layers


def alignment(erase: Encoded, guide: Encoded, k: int) -> tuple[list[int], tuple[int, int]]:
    """For erase prompt ``k``: the guide token each of its tokens pairs with, and the span
    ``[start, end)`` of the concept's own tokens (what differs from the guide prompt: the words
    between the shared prefix and the shared suffix)."""
    total = erase.states.shape[1]
    ei, gi = erase.input_ids[k].tolist(), guide.input_ids[k].tolist()
    le, lg = int(erase.lengths[k]), int(guide.lengths[k])
    prefix = 0
    while prefix < min(le, lg) and ei[prefix] == gi[prefix]:
        prefix += 1
    suffix = 0
    while suffix < min(le, lg) - prefix and ei[le - 1 - suffix] == gi[lg - 1 - suffix]:
        suffix += 1
    idx = []
    for i in range(total):
        if i < prefix:
            j = i
        elif i >= le - suffix:  # suffix words and the padding shift with the length difference
            j = i - le + lg
        else:  # the concept's own tokens -> the guide's slot (or its first following token)
            slot = lg - suffix - prefix
            j = prefix + min(i - prefix, slot - 1) if slot > 0 else prefix
        idx.append(min(max(j, 0), total - 1))
    return idx, (prefix, le - suffix)


def aligned_keys(erase: Encoded, guide: Encoded, context_only: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Pair every erase-prompt token with a guide-prompt token: ``(C, G)``, each ``(n, d)``.
    ``context_only``: leave the concept's own tokens out (MACE's closed-form refinement edits the
    words around the concept and the padding, which carry it after the text encoder)."""
    cs, gs = [], []
    for k in range(erase.states.shape[0]):
        idx, (start, end) = alignment(erase, guide, k)
        keep = [i for i in range(len(idx)) if not (context_only and start <= i < end)]
        cs.append(erase.states[k][torch.tensor(keep)])
        gs.append(guide.states[k][torch.tensor([idx[i] for i in keep])])
    return torch.cat(cs), torch.cat(gs)


def last_index(enc: Encoded, k: int) -> int:
    """The last word token of prompt ``k`` (the official scripts' ``attention_mask.sum() - 2``;
    the start token for an empty prompt)."""
    return max(int(enc.lengths[k]) - 2, 0)


def last_keys(enc: Encoded) -> torch.Tensor:
    """One key per prompt: its last word token's state, ``(N, d)``."""
    return torch.stack([enc.states[k, last_index(enc, k)] for k in range(enc.states.shape[0])])


def last_and_after_keys(erase: Encoded, guide: Encoded) -> tuple[torch.Tensor, torch.Tensor]:
    """Each erase prompt's last word token and every token after it, paired with the guide
    prompt's from its own last word token, both cut to the same count: ``(C, G)``."""
    total = erase.states.shape[1]
    cs, gs = [], []
    for k in range(erase.states.shape[0]):
        fe, fg = last_index(erase, k), last_index(guide, k)
        far = max(fe, fg)
        cs.append(erase.states[k, fe:total - (far - fe)])
        gs.append(guide.states[k, fg:total - (far - fg)])
    return torch.cat(cs), torch.cat(gs)


#: UCEConfig.tokens values.
TOKEN_CHOICES = ("aligned", "last", "last_and_after")


def all_keys(enc: Encoded) -> torch.Tensor:
    """Every token state of every prompt, ``(N * L, d)``."""
    return enc.states.reshape(-1, enc.states.shape[-1])


@dataclass(frozen=True)
class UCEConfig(MethodConfig):
    """``lamb`` keeps W near W0; ``erase_scale`` / ``preserve_scale`` weight the two key sets;
    ``tokens`` picks the key rows (module docstring)."""

    lamb: float = 0.5
    erase_scale: float = 1.0
    preserve_scale: float = 1.0
    edit_keys: bool = True
    tokens: str = "aligned"

    bounds: ClassVar[dict[str, tuple[str, float]]] = {
        "lamb": (">", 0), "erase_scale": (">", 0), "preserve_scale": (">=", 0)
    }

    def __post_init__(self) -> None:
        self.check_types()
        check(self.tokens in TOKEN_CHOICES, "tokens", f"must be one of {', '.join(TOKEN_CHOICES)}, got {self.tokens!r}")


def select_keys(erase: Encoded, guide: Encoded, preserve: Encoded | None,
                tokens: str = "aligned") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Erase keys, their guide keys and the preserved keys, as ``tokens`` picks them."""
    if tokens == "last":
        return last_keys(erase), last_keys(guide), None if preserve is None else last_keys(preserve)
    c, g = last_and_after_keys(erase, guide) if tokens == "last_and_after" else aligned_keys(erase, guide)
    return c, g, None if preserve is None else all_keys(preserve)


def uce_keys(pipe: DiffusionPipeline, concept: Concept,
             tokens: str = "aligned") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Erase keys, their guide keys, and the preserved keys of ``concept``."""
    erase = encode(pipe, concept.erase_prompts())
    guide = encode(pipe, concept.guide_prompts())
    preserve = encode(pipe, list(concept.preserve)) if concept.preserve else None
    return select_keys(erase, guide, preserve, tokens)


def edited_kv(pipe: DiffusionPipeline, factor: torch.Tensor, edit_keys: bool = True) -> dict[str, torch.Tensor]:
    """``W @ factor`` for every cross-attention value (and key) projection."""
    out = {}
    for name, layer in kv_layers(pipe).items():
        if name.endswith("to_k") and not edit_keys:
            continue
        out[f"{name}.weight"] = edit_weight(layer.weight, factor)
    return out


@METHODS.register("uce")
class UCE(Method):
    """UCE: closed-form edit of cross-attention K/V (Gandikota et al. 2024)."""

    config_class = UCEConfig
    group = "xattn_kv"

    def fit(self, pipe: DiffusionPipeline, concept: Concept, config: MethodConfig, progress: bool = True) -> Erasure:
        assert isinstance(config, UCEConfig)
        with tqdm(total=2, desc="uce", disable=not progress) as bar:
            c, g, p = uce_keys(pipe, concept, config.tokens)
            bar.update(1)
            factor = uce_right_factor(c, g, p, config.lamb, config.erase_scale, config.preserve_scale)
            tensors = edited_kv(pipe, factor, config.edit_keys)
            bar.update(1)
        return Erasure(self.name, config, concept, fingerprint(pipe), tensors,
                       extra={"erase_keys": int(c.shape[0]), "preserve_keys": 0 if p is None else int(p.shape[0])})
