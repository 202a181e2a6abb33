"""TRCE: two-stage concept erasure (github.com/ddgoodgood/TRCE, 2025; "TRCE: Towards Reliable
Malicious Concept Erasure in Text-to-Image Diffusion Models").

1. **Closed-form edit of the trigger embeddings**: the MACE-style normal equation on every
   cross-attention ``to_k`` / ``to_v`` (:func:`erasekit.linalg.uce_right_factor`), mapping chosen
   token states of each erase prompt onto the aligned guide prompt's, with the preserve prompts'
   tokens as the prior. Which tokens: ``[SoT]``, the first ``[EoT]``, the last position and the
   concept's own tokens, weighted by ``token_weights`` (TRCE's default ``[0, 1, 0, 0]``: only the
   first ``[EoT]``, which carries the prompt's meaning after the text encoder).
2. **Contrastive fine-tuning of the early denoising steps**: ``attn1.*`` and ``attn2.to_q`` (the
   K/V edit stays fixed) on ``x_t`` of the erase prompts' own trajectories over the first
   ``early`` fraction of the steps, with the hinge loss
   ``max(0, beta (|e - e+|^2 - |e - e-|^2 + margin))`` for the model's conditional and
   unconditional predictions ``e``, where ``e+/- = e0(safe | concept) + g (e0(safe | concept) - e0(empty))``
   from the stage-1 model (``g`` = ``guidance``, 15 in TRCE), plus ``preserve_weight`` x the MSE to
   the stage-1 model on the preserve prompts' trajectories.

Reconstructed where the testbed differs: TRCE maps 20 unsafe phrasings to "a person wearing
clothes" with 15 augmentations each and a COCO caption cache as prior; here the concept's erase
prompts map to its guide prompts (the empty slot by default) with its preserve prompts as prior.
Its trajectories are pre-sampled over the first 26 of 50 DDIM steps with lr 1e-6 for 3 epochs;
here ``x_t`` is sampled per iteration (as ESD does) and the learning rate is scaled to the
2M-parameter testbed. The unsafe/safe pairing per step (the same ``x_t`` for ``e+`` and ``e-``)
is our reading of the loss.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DiffusionPipeline
from tqdm.auto import tqdm

from erasekit.artifact import restored
from erasekit.concepts import Concept
from erasekit.erasure import METHODS, Erasure, Method, MethodConfig, check
from erasekit.linalg import edit_weight, uce_right_factor
from erasekit.methods.esd import latent_shape, sample_xt
from erasekit.methods.uce import alignment, all_keys
from erasekit.pipelines import Encoded, encode, fingerprint, get_parameter, group_parameters, kv_layers, training

#: Stage 2 trains these parameters (attn1.*, attn2.to_q).
STAGE2 = ("attn1", "attn2.to_q")


@dataclass(frozen=True)
class TRCEConfig(MethodConfig):
    """Stage 1: ``lamb``, ``preserve_scale``, ``token_weights`` ([SoT], first [EoT], last position,
    concept tokens). Stage 2: ``iterations`` (0: stage 1 only), ``lr``, ``margin``, ``beta``,
    ``guidance`` (of ``e+/-``), ``preserve_weight``, ``early`` (fraction of the steps trained)."""

    lamb: float = 0.1
    preserve_scale: float = 1.0
    token_weights: tuple = (0.0, 1.0, 0.0, 0.0)
    iterations: int = 60
    lr: float = 1e-3
    margin: float = 0.01
    beta: float = 1.0
    guidance: float = 15.0
    preserve_weight: float = 100.0
    early: float = 0.52
    ddim_steps: int = 25
    start_guidance: float = 3.0
    seed: int = 0

    bounds: ClassVar[dict[str, tuple[str, float]]] = {
        "lamb": (">", 0), "preserve_scale": (">=", 0), "iterations": (">=", 0), "lr": (">", 0),
        "preserve_weight": (">=", 0), "ddim_steps": (">=", 2)
    }

    def __post_init__(self) -> None:
        object.__setattr__(self, "token_weights", tuple(self.token_weights))
        self.check_types()
        check(len(self.token_weights) == 4 and all(isinstance(w, (int, float)) and w >= 0 for w in self.token_weights)
              and sum(self.token_weights) > 0, "token_weights",
              f"must be 4 weights >= 0 ([SoT], first [EoT], last, concept) with a positive sum, got "
              f"{list(self.token_weights)}")
        check(self.margin >= 0 and self.beta > 0, "margin", f"margin must be >= 0 and beta > 0, got {self.margin}, "
              f"{self.beta}")
        check(0 < self.early <= 1, "early", f"must be in (0, 1], got {self.early}")


def trigger_keys(erase: Encoded, guide: Encoded, weights: tuple) -> tuple[torch.Tensor, torch.Tensor]:
    """Stage 1's keys and their guide targets: per erase prompt, its [SoT], first [EoT], last
    position and concept tokens, each pair scaled by the square root of its weight (so the normal
    equation counts it ``weight`` times)."""
    cs, gs = [], []
    last = erase.states.shape[1] - 1
    for k in range(erase.states.shape[0]):
        idx, (start, end) = alignment(erase, guide, k)
        groups = ([0], [int(erase.lengths[k]) - 1], [last], list(range(start, max(end, start + 1))))
        for w, positions in zip(weights, groups):
            if w > 0:
                scale = float(w) ** 0.5
                cs.append(scale * erase.states[k, positions])
                gs.append(scale * guide.states[k, [idx[i] for i in positions]])
    return torch.cat(cs), torch.cat(gs)


def hinge(pred: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, beta: float, margin: float) -> torch.Tensor:
    """TRCE's contrastive hinge: ``max(0, beta (|e - e+|^2 - |e - e-|^2 + margin))`` (element means)."""
    return F.relu(beta * (F.mse_loss(pred, positive) - F.mse_loss(pred, negative) + margin))


@METHODS.register("trce")
class TRCE(Method):
    """TRCE: closed-form edit of the trigger tokens, then contrastive tuning of the early steps (2025)."""

    config_class = TRCEConfig
    test_config = {"iterations": 2, "ddim_steps": 4}
    group = "attn"

    def fit(self, pipe: DiffusionPipeline, concept: Concept, config: MethodConfig, progress: bool = True) -> Erasure:
        assert isinstance(config, TRCEConfig)
        base_fp = fingerprint(pipe)
        erase, guide = encode(pipe, concept.erase_prompts()), encode(pipe, concept.guide_prompts())
        preserve = encode(pipe, [*concept.preserve, ""])
        layers = kv_layers(pipe)
        c, g = trigger_keys(erase, guide, config.token_weights)
        factor = uce_right_factor(c, g, all_keys(preserve), config.lamb, 1.0, config.preserve_scale)
        stage1 = {f"{k}.weight": edit_weight(m.weight, factor) for k, m in layers.items()}
        tensors = dict(stage1)
        if config.iterations:
            tensors.update(self._stage2(pipe, erase, guide, preserve, stage1, config, progress))
        return Erasure(self.name, config, concept, base_fp, tensors, extra={"trigger_keys": int(c.shape[0])})

    def _stage2(self, pipe: DiffusionPipeline, erase: Encoded, guide: Encoded, preserve: Encoded,
                stage1: dict[str, torch.Tensor], config: TRCEConfig, progress: bool) -> dict[str, torch.Tensor]:
        unet = pipe.unet
        params = {k: p for k, p in group_parameters(pipe, "attn").items() if any(s in k for s in STAGE2)}
        touched = {**{k: get_parameter(pipe, k) for k in stage1}, **params}
        gen = torch.Generator().manual_seed(config.seed)
        scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
        scheduler.set_timesteps(config.ddim_steps)
        early = max(1, int(config.early * config.ddim_steps))
        uncond = encode(pipe, [""]).states
        shape = latent_shape(pipe)
        with restored(touched):  # the pipeline comes back as it was; the artifact carries the change
            with torch.no_grad():
                for k, w in stage1.items():
                    get_parameter(pipe, k).copy_(w)
            frozen = copy.deepcopy(unet).requires_grad_(False).eval()  # the stage-1 model
            opt = torch.optim.Adam(list(params.values()), lr=config.lr)
            with training(unet, params.values()):
                self._loop(unet, frozen, opt, scheduler, erase, guide, preserve, uncond, early, shape, gen, config,
                           progress)
            return {k: p.detach().clone() for k, p in params.items()}

    @staticmethod
    def _loop(unet, frozen, opt, scheduler, erase: Encoded, guide: Encoded, preserve: Encoded, uncond: torch.Tensor,
              early: int, shape: tuple, gen: torch.Generator, config: TRCEConfig, progress: bool) -> None:
        for _ in tqdm(range(config.iterations), desc="trce", disable=not progress):
            k = int(torch.randint(erase.states.shape[0], (1,), generator=gen))
            j = int(torch.randint(preserve.states.shape[0], (1,), generator=gen))
            stop = int(torch.randint(early, (1,), generator=gen))
            neg, safe, kept = erase.states[k:k + 1], guide.states[k:k + 1], preserve.states[j:j + 1]
            x_t, t = sample_xt(frozen, scheduler, neg, uncond, stop, config.start_guidance, shape, gen)
            x_p, t_p = sample_xt(frozen, scheduler, kept, uncond, stop, config.start_guidance, shape, gen)
            with torch.no_grad():
                e_s, e_n, e_0 = frozen(torch.cat([x_t] * 3), t, encoder_hidden_states=torch.cat([safe, neg, uncond])
                                       ).sample.chunk(3)
                positive = e_s + config.guidance * (e_s - e_0)
                negative = e_n + config.guidance * (e_n - e_0)
                keep = frozen(x_p, t_p, encoder_hidden_states=kept).sample
            pred = unet(torch.cat([x_t, x_t]), t, encoder_hidden_states=torch.cat([neg, uncond])).sample
            loss = sum(hinge(p, positive, negative, config.beta, config.margin) for p in pred.chunk(2))
            loss = loss + config.preserve_weight * F.mse_loss(unet(x_p, t_p, encoder_hidden_states=kept).sample,
                                                              keep)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
