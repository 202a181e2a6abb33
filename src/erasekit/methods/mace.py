"""MACE: Mass Concept Erasure (Lu et al., CVPR 2024; github.com/Shilin-LU/MACE).

Three stages on the UNet's cross-attention ``to_k`` / ``to_v``, for one concept or many at once
(``--concept skull,logo,...``: each part is one concept):

1. **Closed-form refinement** (CFR): UCE's normal equation (:func:`erasekit.linalg.uce_right_factor`)
   mapping the *context* tokens of each erase prompt (the words around the concept and the
   padding, which carry it after the text encoder; the concept's own tokens are left to stage 2)
   onto the guide prompt's, with a prior of preserved prompts' tokens held in place.
2. **Per-concept rank-1 LoRA** on every ``to_k`` / ``to_v`` (on top of the CFR weights), trained to
   drive the attention of the concept's tokens out of the region where the concept is drawn:
   ``sum_layers sum_{p in M} A[p, concept tokens]``, at timesteps drawn with MACE's importance
   weight ``sigma(0.05 (t - 200)) - sigma(0.05 (t - 400))``.
3. **Closed-form fusion** (:func:`erasekit.linalg.fuse_closed_form`) of the per-concept LoRAs into
   one weight per layer: each concept's edited weight reproduced on that concept's own tokens
   (the keys its LoRA was trained on), the CFR weight elsewhere, the original outputs on the prior.

Reconstructed where the testbed differs from the paper's setting: MACE trains its LoRAs on 8
generated images per concept with Grounded-SAM masks; erasekit uses ``images`` DDIM trajectories
of the model itself (the frozen CFR model with CFG, as ESD samples ``x_t``) and takes the mask
``M`` from the frozen model's own cross-attention of the concept tokens at that ``x_t`` (the pixels
above the ``mask_quantile`` of the attention map), which needs no segmenter and works on any
pipeline. MACE's preservation prior is a cache of MS-COCO caption tokens (plus a domain cache);
here it is the concept's preserve prompts and the empty prompt. MACE's configs set ``lamb = 0``;
a small ``lamb`` keeps the solve well posed on a small vocabulary.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import ClassVar

import torch
from diffusers import DDIMScheduler, DiffusionPipeline
from tqdm.auto import tqdm

from erasekit.attention import recorded_cross_attention, token_mass
from erasekit.concepts import Concept
from erasekit.erasure import METHODS, Erasure, Method, MethodConfig, check
from erasekit.linalg import edit_weight, fuse_closed_form, uce_right_factor
from erasekit.lora import LoRA
from erasekit.methods.esd import latent_shape, sample_xt
from erasekit.methods.uce import aligned_keys, alignment, all_keys
from erasekit.pipelines import Encoded, encode, fingerprint, frozen, kv_layers


@dataclass(frozen=True)
class MACEConfig(MethodConfig):
    """``lamb`` / ``preserve_scale``: CFR's ridge and prior weight; ``lora_steps``, ``lora_lr``,
    ``images`` (trajectories per concept), ``mask_quantile``: the LoRA stage (``lora_steps = 0``:
    CFR only); ``fuse_lamb`` / ``fuse_prior``: the fusion's pull toward the CFR weights and the
    original outputs on the prior. Tuned on the testbed by erasing square, triangle, cross and
    circle while keeping star (docs/results.md, MACE tuning)."""

    lamb: float = 0.1
    preserve_scale: float = 1.0
    lora_steps: int = 60
    lora_lr: float = 1e-2
    images: int = 8
    mask_quantile: float = 0.75
    ddim_steps: int = 25
    start_guidance: float = 3.0
    fuse_lamb: float = 0.1
    fuse_prior: float = 1.0
    seed: int = 0

    bounds: ClassVar[dict[str, tuple[str, float]]] = {
        "lora_steps": (">=", 0), "lora_lr": (">", 0), "images": (">=", 1), "ddim_steps": (">=", 2)
    }

    def __post_init__(self) -> None:
        self.check_types()
        for name in ("lamb", "fuse_lamb"):
            check(getattr(self, name) > 0, name, f"must be > 0, got {getattr(self, name)}")
        for name in ("preserve_scale", "fuse_prior", "start_guidance"):
            check(getattr(self, name) >= 0, name, f"must be >= 0, got {getattr(self, name)}")
        check(0 < self.mask_quantile < 1, "mask_quantile", f"must be in (0, 1), got {self.mask_quantile}")


def importance(t: torch.Tensor, train_steps: int = 1000) -> torch.Tensor:
    """MACE's timestep weight ``sigma(0.05 (t - 200)) - sigma(0.05 (t - 400))`` (SD's 1000-step
    scale; other schedules are mapped onto it)."""
    t = t.double() * 1000.0 / train_steps
    return torch.sigmoid(0.05 * (t - 200)) - torch.sigmoid(0.05 * (t - 400))


def concept_tokens(erase: Encoded, guide: Encoded) -> torch.Tensor:
    """A boolean ``(prompts, tokens)`` mask of each erase prompt's own concept tokens."""
    out = torch.zeros(erase.states.shape[:2], dtype=torch.bool)
    for k in range(erase.states.shape[0]):
        _, (start, end) = alignment(erase, guide, k)
        out[k, start:max(end, start + 1)] = True
    return out


def _set(layers: dict[str, torch.nn.Linear], weights: dict[str, torch.Tensor]) -> None:
    with torch.no_grad():
        for k, m in layers.items():
            m.weight.copy_(weights[k])


@METHODS.register("mace")
class MACE(Method):
    """MACE: closed-form refinement, per-concept attention LoRAs and their closed-form fusion (Lu et al. 2024)."""

    config_class = MACEConfig
    test_config = {"lora_steps": 2, "images": 1, "ddim_steps": 4}
    group = "xattn_kv"

    def fit(self, pipe: DiffusionPipeline, concept: Concept, config: MethodConfig, progress: bool = True) -> Erasure:
        assert isinstance(config, MACEConfig)
        base_fp = fingerprint(pipe)
        layers = kv_layers(pipe)
        w0 = {k: m.weight.detach().clone() for k, m in layers.items()}
        parts = concept.parts or (concept,)
        encoded = [(encode(pipe, p.erase_prompts()), encode(pipe, p.guide_prompts())) for p in parts]
        prior = all_keys(encode(pipe, [*concept.preserve, ""]))
        with tqdm(total=len(parts) * config.lora_steps + 2, desc="mace", disable=not progress) as bar:
            # 1. closed-form refinement of the context tokens, all concepts in one solve
            ctx = [aligned_keys(e, g, context_only=True) for e, g in encoded]
            factor = uce_right_factor(torch.cat([c for c, _ in ctx]), torch.cat([g for _, g in ctx]), prior,
                                      config.lamb, 1.0, config.preserve_scale)
            w_cfr = {k: edit_weight(w, factor) for k, w in w0.items()}
            bar.update(1)
            # 2. one rank-1 LoRA per concept, on top of the CFR weights
            edits = []
            try:
                _set(layers, w_cfr)
                for (erase, guide), part in zip(encoded, parts):
                    lora = self._lora(pipe, erase, guide, config, bar) if config.lora_steps else None
                    w_part = {k: w + (lora.delta(k) if lora else 0) for k, w in w_cfr.items()}
                    edits.append((w_part, erase.states[concept_tokens(erase, guide)]))
            finally:  # fitting leaves the pipeline as it found it; the artifact carries the change
                _set(layers, w0)
            # 3. closed-form fusion of the per-concept edits
            tensors = {f"{k}.weight": fuse_closed_form([(w[k], e) for w, e in edits], w_cfr[k], config.fuse_lamb,
                                                       prior, w0[k], config.fuse_prior) for k in layers}
            bar.update(1)
        return Erasure(self.name, config, concept, base_fp, tensors,
                       extra={"concepts": [p.name for p in parts], "context_keys": int(sum(len(c) for c, _ in ctx)),
                              "prior_keys": int(prior.shape[0])})

    def _lora(self, pipe: DiffusionPipeline, erase: Encoded, guide: Encoded, config: MACEConfig, bar) -> LoRA:
        """Train one concept's rank-1 LoRA on the attention of its tokens inside their own region."""
        gen = torch.Generator().manual_seed(config.seed)
        unet = pipe.unet
        reference = copy.deepcopy(unet).requires_grad_(False).eval()
        scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
        scheduler.set_timesteps(config.ddim_steps)
        uncond = encode(pipe, [""]).states
        tokens = concept_tokens(erase, guide)
        shape = latent_shape(pipe)
        weights = importance(scheduler.timesteps[:-1], scheduler.config.num_train_timesteps)
        weights = weights + 1e-3 * weights.max()  # every step stays possible on short schedules
        # the training set: x_t of the frozen model's own trajectories, with each layer's concept mask
        data = []
        for i in range(config.images):
            k = int(torch.randint(erase.states.shape[0], (1,), generator=gen))
            stop = int(torch.multinomial(weights, 1, generator=gen))
            x_t, t = sample_xt(reference, scheduler, erase.states[k:k + 1], uncond, stop, config.start_guidance, shape,
                               gen)
            with torch.no_grad(), recorded_cross_attention(reference) as maps:
                reference(x_t, t, encoder_hidden_states=erase.states[k:k + 1])
            masks = {}
            for name, (probs,) in maps.items():
                mass = token_mass(probs, tokens[k:k + 1])[0]
                masks[name] = mass >= torch.quantile(mass.float(), config.mask_quantile).to(mass.dtype)
            data.append((k, x_t, t, masks))
        del reference
        lora = LoRA(kv_layers(pipe), gen)
        opt = torch.optim.Adam(lora.parameters(), lr=config.lora_lr)
        with lora.installed(), frozen(unet):
            self._train(unet, lora, opt, data, tokens, erase, config, bar)
        return lora

    @staticmethod
    def _train(unet, lora: LoRA, opt, data: list, tokens: torch.Tensor, erase: Encoded, config: MACEConfig,
               bar) -> None:
        for step in range(config.lora_steps):
            k, x_t, t, masks = data[step % len(data)]
            with recorded_cross_attention(unet) as maps:
                unet(x_t, t, encoder_hidden_states=erase.states[k:k + 1])
            loss = sum(token_mass(probs, tokens[k:k + 1])[0][masks[name]].sum()
                       for name, (probs,) in maps.items())
            opt.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[union-attr]
            opt.step()
            bar.update(1)
