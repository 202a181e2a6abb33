"""RealEra: semantic-level concept erasure through neighbour-concept mining (Liu et al., arXiv
2410.09140; no public code: reconstructed from the paper's abstract and project page).

1. **Neighbour-concept mining**: each erase prompt's concept-token states ``e`` are perturbed,
   ``e + eta``, keeping ``|eta| <= radius |e|`` and ``cos(e, e + eta)`` in ``[cos_low, cos_high]``
   (rejection sampling), ``neighbours`` per prompt: embeddings near the concept that a paraphrase
   or an associated word would produce.
2. **Closed-form K/V solve**: UCE's normal equation (:func:`erasekit.linalg.uce_right_factor`) with
   the concept's tokens *and* their mined neighbours as erase keys, all mapped onto the aligned
   guide tokens, the preserve prompts' tokens held in place.
3. **LoRA for prediction-noise alignment** (rank 1 on every ``to_k`` / ``to_v``, on top of the
   solve): the noise predicted for a prompt carrying a neighbour embedding follows the frozen
   model's prediction for the guide prompt; **beyond-concept regularisation** keeps the
   prediction for embeddings perturbed *past* the neighbourhood (``cos < cos_low``) equal to the
   frozen model's, so the erasure stops at the neighbourhood's edge. The LoRA is merged into the
   K/V weights of the artifact.

Inferred (the paper gives no code or hyper-parameters we could read): the radius and cosine band,
that only the concept's own tokens are perturbed, the rejection sampler, the beyond-concept
samples (the same sampler with a cosine below the band) and the loss weights.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DiffusionPipeline
from tqdm.auto import tqdm

from erasekit.concepts import Concept
from erasekit.erasure import METHODS, Erasure, Method, MethodConfig, check
from erasekit.linalg import edit_weight, uce_right_factor
from erasekit.methods.esd import latent_shape, sample_xt
from erasekit.lora import LoRA
from erasekit.methods.mace import concept_tokens
from erasekit.methods.uce import aligned_keys, alignment, all_keys
from erasekit.pipelines import Encoded, encode, fingerprint, frozen, kv_layers


@dataclass(frozen=True)
class RealEraConfig(MethodConfig):
    """Mining: ``neighbours`` per prompt within ``radius`` (relative norm) and the cosine band
    ``[cos_low, cos_high]``. Solve: ``lamb``, ``preserve_scale``. LoRA: ``lora_steps`` (0: the
    solve only), ``lora_lr``, ``beyond_weight`` (the beyond-concept term)."""

    neighbours: int = 4
    radius: float = 0.5
    cos_low: float = 0.85
    cos_high: float = 0.98
    lamb: float = 0.1
    preserve_scale: float = 1.0
    lora_steps: int = 60
    lora_lr: float = 1e-2
    beyond_weight: float = 1.0
    ddim_steps: int = 25
    start_guidance: float = 3.0
    seed: int = 0

    bounds: ClassVar[dict[str, tuple[str, float]]] = {
        "neighbours": (">=", 0), "radius": (">", 0), "lamb": (">", 0), "preserve_scale": (">=", 0),
        "lora_steps": (">=", 0), "lora_lr": (">", 0), "beyond_weight": (">=", 0), "ddim_steps": (">=", 2)
    }

    def __post_init__(self) -> None:
        self.check_types()
        check(-1 <= self.cos_low < self.cos_high <= 1, "cos_low",
              f"the band needs -1 <= cos_low < cos_high <= 1, got [{self.cos_low}, {self.cos_high}]")
        check((1 - self.cos_high ** 2) ** 0.5 <= self.radius, "radius",
              f"{self.radius} cannot reach cosines up to {self.cos_high} (needs >= {(1 - self.cos_high ** 2) ** 0.5:.3f})")


def perturbed(e: torch.Tensor, radius: float, low: float, high: float, gen: torch.Generator) -> torch.Tensor:
    """``e + eta`` for a vector ``e`` with ``|eta| <= radius |e|`` and ``cos(e, e + eta)`` in
    ``[low, high]``: a cosine drawn in the reachable part of the band, a random direction
    orthogonal to ``e``, and a length along that ray drawn inside the radius."""
    floor = max(low, (max(0.0, 1 - radius ** 2)) ** 0.5)  # cosines below this are out of reach
    cos = floor + (max(high, floor) - floor) * float(torch.rand((), generator=gen))
    u = torch.randn(e.shape, generator=gen, dtype=e.dtype)
    unit = e / e.norm()
    u = u - (u @ unit) * unit
    u = u / u.norm()
    direction = cos * unit + (1 - cos ** 2) ** 0.5 * u  # unit vector at angle acos(cos) from e
    # |s d - e|^2 = |e|^2 (s'^2 - 2 s' cos + 1) with s = s' |e|: inside the radius for s' in cos +- w
    w = max(0.0, radius ** 2 - (1 - cos ** 2)) ** 0.5
    scale = cos - w + 2 * w * float(torch.rand((), generator=gen))
    return e.norm() * max(scale, 1e-6) * direction


def mined(states: torch.Tensor, tokens: torch.Tensor, n: int, radius: float, low: float, high: float,
          gen: torch.Generator) -> torch.Tensor:
    """``n`` copies of every prompt's states ``(P, L, d)`` with each concept token (``tokens``,
    ``(P, L)`` bool) moved to a neighbour: ``(P * n, L, d)``."""
    out = []
    for k in range(states.shape[0]):
        for _ in range(n):
            s = states[k].clone()
            for i in torch.nonzero(tokens[k]).flatten().tolist():
                s[i] = perturbed(states[k, i], radius, low, high, gen)
            out.append(s)
    return torch.stack(out) if out else states[:0]


@METHODS.register("realera")
class RealEra(Method):
    """RealEra: neighbour-concept mining, a closed-form K/V solve and a beyond-concept-regularised LoRA (Liu et al. 2024)."""

    config_class = RealEraConfig
    test_config = {"neighbours": 1, "lora_steps": 2, "ddim_steps": 4}
    group = "xattn_kv"

    def fit(self, pipe: DiffusionPipeline, concept: Concept, config: MethodConfig, progress: bool = True) -> Erasure:
        assert isinstance(config, RealEraConfig)
        base_fp = fingerprint(pipe)
        gen = torch.Generator().manual_seed(config.seed)
        erase, guide = encode(pipe, concept.erase_prompts()), encode(pipe, concept.guide_prompts())
        tokens = concept_tokens(erase, guide)
        near = mined(erase.states, tokens, config.neighbours, config.radius, config.cos_low, config.cos_high, gen)
        c, g = aligned_keys(erase, guide)
        # the neighbours' concept tokens map where the concept's own do
        rows = tokens.repeat_interleave(config.neighbours, 0)
        c_near, g_near = _neighbour_pairs(near, rows, erase, guide, config.neighbours)
        if c_near.numel():
            c, g = torch.cat([c, c_near]), torch.cat([g, g_near])
        preserve = all_keys(encode(pipe, [*concept.preserve, ""]))
        factor = uce_right_factor(c, g, preserve, config.lamb, 1.0, config.preserve_scale)
        layers = kv_layers(pipe)
        solved = {k: edit_weight(m.weight, factor) for k, m in layers.items()}
        if config.lora_steps:
            solved = self._lora(pipe, solved, erase, guide, near, tokens, config, gen, progress)
        return Erasure(self.name, config, concept, base_fp, {f"{k}.weight": w for k, w in solved.items()},
                       extra={"erase_keys": int(c.shape[0]), "neighbours": int(near.shape[0])})

    def _lora(self, pipe: DiffusionPipeline, solved: dict[str, torch.Tensor], erase: Encoded, guide: Encoded,
              near: torch.Tensor, tokens: torch.Tensor, config: RealEraConfig, gen: torch.Generator,
              progress: bool) -> dict[str, torch.Tensor]:
        """The LoRA on top of the solve: neighbours follow the guide, beyond-concept samples stay put."""
        layers = kv_layers(pipe)
        original = {k: m.weight.detach().clone() for k, m in layers.items()}
        unet = pipe.unet
        reference = copy.deepcopy(unet).requires_grad_(False).eval()  # the unedited model: the targets
        scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
        scheduler.set_timesteps(config.ddim_steps)
        uncond = encode(pipe, [""]).states
        shape = latent_shape(pipe)
        lora = LoRA(layers, gen)
        opt = torch.optim.Adam(lora.parameters(), lr=config.lora_lr)
        pool = torch.cat([erase.states, near]) if near.numel() else erase.states
        owner = list(range(erase.states.shape[0])) + [i // max(config.neighbours, 1) for i in range(near.shape[0])]
        try:
            with torch.no_grad():
                for k, m in layers.items():
                    m.weight.copy_(solved[k])
            with lora.installed(), frozen(unet):
                for _ in tqdm(range(config.lora_steps), desc="realera", disable=not progress):
                    i = int(torch.randint(pool.shape[0], (1,), generator=gen))
                    k = owner[i]
                    stop = int(torch.randint(config.ddim_steps - 1, (1,), generator=gen))
                    x_t, t = sample_xt(reference, scheduler, erase.states[k:k + 1], uncond, stop,
                                       config.start_guidance, shape, gen)
                    beyond = mined(erase.states[k:k + 1], tokens[k:k + 1], 1, 2 * config.radius, -1.0,
                                   config.cos_low, gen)
                    with torch.no_grad():
                        target, keep = reference(torch.cat([x_t, x_t]), t, encoder_hidden_states=torch.cat(
                            [guide.states[k:k + 1], beyond])).sample.chunk(2)
                    pred, pred_beyond = unet(torch.cat([x_t, x_t]), t, encoder_hidden_states=torch.cat(
                        [pool[i:i + 1], beyond])).sample.chunk(2)
                    loss = F.mse_loss(pred, target) + config.beyond_weight * F.mse_loss(pred_beyond, keep)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
            return {k: (solved[k] + lora.delta(k)).to(solved[k].dtype) for k in layers}
        finally:  # fitting leaves the pipeline as it found it; the artifact carries the change
            with torch.no_grad():
                for k, m in layers.items():
                    m.weight.copy_(original[k])


def _neighbour_pairs(near: torch.Tensor, rows: torch.Tensor, erase, guide, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The mined neighbours' concept-token rows and the guide rows their prompt's tokens align with."""
    cs, gs = [], []
    for j in range(near.shape[0]):
        k = j // n
        idx, _ = alignment(erase, guide, k)
        positions = torch.nonzero(rows[j]).flatten().tolist()
        cs.append(near[j, positions])
        gs.append(guide.states[k, [idx[i] for i in positions]])
    d = erase.states.shape[-1]
    return (torch.cat(cs), torch.cat(gs)) if cs else (torch.zeros(0, d), torch.zeros(0, d))
