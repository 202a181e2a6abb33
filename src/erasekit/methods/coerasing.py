"""Co-Erasing: text-image collaborative erasing (Li, Xu, Bao, Yang, Cao, Huang, "One Image is Worth a
Thousand Words: A Usability-Preservable Text-Image Collaborative Erasing Framework", ICML 2025;
github.com/Ferry-Li/Co-Erasing).

Two stages, both inside the fit, on one parameter group (``train_method``, ESD's groups):

1. *Text stage*: ESD on the concept's erase prompts (:class:`erasekit.methods.esd.ESD`, run as is).
2. *Image stage*: ESD's negative-guidance loss again, now with the condition text + image tokens of
   the model's own concept images,
   ``|e(x_t, [c; I]) - [e1(x_t, 0) - image_eta (e1(x_t, [c; I]) - e1(x_t, 0))]|^2``
   (:func:`erasekit.losses.esd_target`), whose teacher ``e1`` is the *text-erased* UNet of stage 1,
   not the original; the student starts from stage 1 too. The unconditional branch is text-only
   (the paper's ``--text_uncond``). Each step takes one image at random, samples ``x_t`` as ESD
   does (DDIM with CFG on the concept's text, here with the stage-1 teacher) and Gaussian-blurs it
   (kernel ``blur``). *Text-guided refinement*: the image tokens are re-expressed over the concept
   prompt's token states, ``I <- softmax(I c^T / sqrt(d)) c`` (:func:`refine`), as the official
   code does before injecting them.

The artifact holds only the group's UNet tensors; at inference the model takes text alone.

Reconstructed for pipelines without an image encoder (the paper injects CLIP image embeddings
through IP-Adapter, ``ip-adapter_sd15.bin``). Inferred here:

- *Image tokens*: ``n_images`` images are drawn once by the unedited model for random erase prompts
  (the paper's ``generate_data.py`` also draws them with the original model). Each is inverted into
  the text-embedding space: one token embedding per image, learned by textual inversion through
  the unedited model (the concept-inversion attack's ``states_with_token`` and the denoising loss)
  on the image's prompt with the concept's words replaced by the placeholder. The image tokens are
  the encoder states of that caption's real tokens. Like a CLIP image embedding, they describe the
  image independently of the erasure.
- *Injection*: IP-Adapter's decoupled cross-attention, ``Attn(q, K c, V c) + scale Attn(q, K I, V I)``,
  with the image branch's ``to_k_ip`` / ``to_v_ip`` set to the layer's own ``to_k`` / ``to_v`` (the
  official code's initialisation; no trained adapter exists for these models).
- *Scale*: the paper trains SD-1.4 for 1,000-1,500 steps at lr 1e-5 on 100-200 images, ``noxattn``
  or ``full``; on the 2M-parameter testbed the stages use ESD's testbed defaults (``esd-x``, lr
  5e-4, 200 text steps) and ``image_iterations`` steps on ``n_images`` images, chosen on ``heart``
  (docs/results.md). A fit with the defaults took 453 s on ``heart`` at one thread, niced, on a
  shared two-core machine (about half of it the ESD stage), under the 10-minute budget.
"""

from __future__ import annotations

import copy
import math
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import ClassVar, Any

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DiffusionPipeline
from tqdm.auto import tqdm

from erasekit.artifact import restored
from erasekit.attacks.inversion import PLACEHOLDER, states_with_token
from erasekit.attention import attention_output, cross_attention_processors
from erasekit.concepts import Concept, fill
from erasekit.erasure import METHODS, Erasure, Method, MethodConfig, check, get_method
from erasekit.losses import denoising_loss, esd_target
from erasekit.methods.esd import PARAMETER_GROUPS, ESDConfig, latent_shape, sample_xt
from erasekit.pipelines import encode, fingerprint, frozen, group_parameters, max_length, training
from erasekit.sampling import ddim_cfg


@dataclass(frozen=True)
class CoErasingConfig(MethodConfig):
    """Parameter group (``train_method``), the text stage's and image stage's steps (``image_iterations=0``
    is ESD alone), learning rate, each stage's negative guidance (``eta``, ``image_eta``; the paper
    runs the stages as two jobs, each with its own), the images and their inversion, the image
    branch's ``image_scale``, the blur kernel on ``x_t`` (0: none), text-guided ``refinement``."""

    train_method: str = "esd-x"
    text_iterations: int = 200
    image_iterations: int = 100
    lr: float = 5e-4
    eta: float = 1.0
    image_eta: float = 1.0
    start_guidance: float = 3.0
    ddim_steps: int = 25
    n_images: int = 8
    invert_steps: int = 100
    invert_lr: float = 0.02
    image_scale: float = 1.0
    blur: int = 3
    refinement: bool = True
    seed: int = 0

    bounds: ClassVar[dict[str, tuple[str, float]]] = {
        "text_iterations": (">=", 1), "image_iterations": (">=", 0), "lr": (">", 0), "eta": (">=", 0),
        "image_eta": (">=", 0), "start_guidance": (">=", 0), "ddim_steps": (">=", 2), "n_images": (">=", 1),
        "invert_steps": (">=", 1), "invert_lr": (">", 0), "image_scale": (">", 0)
    }

    def __post_init__(self) -> None:
        self.check_types()
        check(self.train_method in PARAMETER_GROUPS, "train_method",
              f"must be one of {', '.join(PARAMETER_GROUPS)}, got {self.train_method!r}")
        check(self.blur == 0 or (self.blur >= 3 and self.blur % 2 == 1), "blur",
              f"must be 0 (off) or an odd kernel size >= 3, got {self.blur}")

    def text_stage(self) -> ESDConfig:
        """Stage 1: ESD with the same group, learning rate, guidance and seed."""
        return ESDConfig(train_method=self.train_method, iterations=self.text_iterations, lr=self.lr, eta=self.eta,
                         start_guidance=self.start_guidance, ddim_steps=self.ddim_steps, seed=self.seed)


def refine(image_tokens: torch.Tensor, text_states: torch.Tensor) -> torch.Tensor:
    """Text-guided refinement: image tokens ``(..., n, d)`` re-expressed over the concept's text
    token states ``(..., L, d)`` as ``softmax(I c^T / sqrt(d)) c`` (keys and values both ``c``)."""
    scores = image_tokens @ text_states.transpose(-1, -2) / math.sqrt(text_states.shape[-1])
    return scores.softmax(-1) @ text_states


def gaussian_blur(x: torch.Tensor, kernel: int) -> torch.Tensor:
    """Per-channel Gaussian blur with reflect padding and torchvision's default sigma for ``kernel``."""
    sigma = 0.3 * ((kernel - 1) * 0.5 - 1) + 0.8
    r = torch.arange(kernel, dtype=x.dtype, device=x.device) - (kernel - 1) / 2
    g = torch.exp(-(r**2) / (2 * sigma**2))
    g = g / g.sum()
    weight = (g[:, None] * g[None, :]).expand(x.shape[1], 1, kernel, kernel)
    pad = kernel // 2
    return F.conv2d(F.pad(x, (pad, pad, pad, pad), mode="reflect"), weight, groups=x.shape[1])


class DecoupledProcessor:
    """IP-Adapter's decoupled cross-attention: the last ``n_image`` context tokens get their own
    softmax, added with weight ``scale``; the image branch reuses the layer's ``to_k`` / ``to_v``."""

    def __init__(self, n_image: int, scale: float) -> None:
        self.n_image, self.scale = n_image, scale

    def __call__(self, attn: Any, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, temb: torch.Tensor | None = None, **_: Any) -> torch.Tensor:
        residual, shape = hidden_states, hidden_states.shape
        if hidden_states.ndim == 4:  # (B, C, H, W) -> (B, HW, C)
            hidden_states = hidden_states.flatten(2).transpose(1, 2)
        context = encoder_hidden_states
        query = attn.head_to_batch_dim(attn.to_q(hidden_states))

        def branch(ctx: torch.Tensor) -> torch.Tensor:
            key, value = attn.head_to_batch_dim(attn.to_k(ctx)), attn.head_to_batch_dim(attn.to_v(ctx))
            return attn.batch_to_head_dim(torch.bmm(attn.get_attention_scores(query, key, None), value))

        out = branch(context[:, : -self.n_image]) + self.scale * branch(context[:, -self.n_image :])
        return attention_output(attn, out, residual, shape)


def image_prompted(unet: torch.nn.Module, n_image: int, scale: float) -> AbstractContextManager[None]:
    """Every cross-attention of ``unet`` decoupled for ``n_image`` trailing image tokens while the
    block runs; the UNet's own processors come back afterwards, also on error."""
    return cross_attention_processors(unet, lambda name: DecoupledProcessor(n_image, scale))


def prompt_captions(concept: Concept) -> list[tuple[str, str]]:
    """Each erase prompt with its caption for inversion: the concept's words replaced by the placeholder."""
    return [(fill(t, w), fill(t, PLACEHOLDER)) for part in (concept.parts or (concept,))
            for w in part.target for t in part.templates]


def invert(pipe: DiffusionPipeline, x0: torch.Tensor, captions: list[str], steps: int, lr: float,
           gen: torch.Generator) -> torch.Tensor:
    """One token embedding per image ``(n, 1, d)``, learned by textual inversion of ``x0`` under its
    caption through the pipeline as it is (the concept-inversion attack's objective)."""
    place = pipe.tokenizer.convert_tokens_to_ids(PLACEHOLDER)
    start = pipe.text_encoder.get_input_embeddings().weight[place].detach()
    tokens = start.expand(len(captions), 1, -1).clone().requires_grad_(True)
    opt = torch.optim.Adam([tokens], lr=lr)
    with frozen(pipe.unet, pipe.text_encoder):
        for _ in range(steps):
            loss = denoising_loss(pipe.unet, pipe.scheduler, x0, states_with_token(pipe, captions, tokens), gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return tokens.detach()


@torch.no_grad()
def image_tokens(pipe: DiffusionPipeline, captions: list[str], tokens: torch.Tensor) -> list[torch.Tensor]:
    """The encoder states of each caption's real tokens, its learned token in the placeholder's slot."""
    lengths = pipe.tokenizer(captions, padding="max_length", max_length=max_length(pipe), truncation=True,
                             return_tensors="pt").attention_mask.sum(1)
    states = states_with_token(pipe, captions, tokens).float()
    return [s[: int(n)] for s, n in zip(states, lengths)]


@METHODS.register("co_erasing")
class CoErasing(Method):
    """Co-Erasing: ESD on text, then ESD on text + the model's own concept images, taught by the text-erased UNet (Li et al. 2025)."""

    config_class = CoErasingConfig
    test_config = {"text_iterations": 2, "image_iterations": 2, "ddim_steps": 3, "n_images": 2, "invert_steps": 2}
    group = "xattn"  # the default train_method; see PARAMETER_GROUPS

    def declared_group(self, config: MethodConfig) -> str | None:
        assert isinstance(config, CoErasingConfig)
        return PARAMETER_GROUPS[config.train_method]

    def fit(self, pipe: DiffusionPipeline, concept: Concept, config: MethodConfig, progress: bool = True) -> Erasure:
        assert isinstance(config, CoErasingConfig)
        base_fp = fingerprint(pipe)
        text = get_method("esd").fit(pipe, concept, config.text_stage(), progress=progress)  # stage 1
        params = group_parameters(pipe, PARAMETER_GROUPS[config.train_method])
        if config.image_iterations == 0:
            return Erasure(self.name, config, concept, base_fp, dict(text.tensors))
        gen = torch.Generator().manual_seed(config.seed + 1)
        pairs = prompt_captions(concept)
        pick = torch.randint(len(pairs), (config.n_images,), generator=gen).tolist()
        conds = encode(pipe, [pairs[i][0] for i in pick]).states
        uncond = encode(pipe, [""]).states
        unet = pipe.unet
        scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
        scheduler.set_timesteps(config.ddim_steps)
        shape = latent_shape(pipe)
        x0 = ddim_cfg(unet, scheduler, conds, uncond, config.start_guidance, shape, gen)  # the unedited model's images
        captions = [pairs[i][1] for i in pick]
        images = image_tokens(pipe, captions, invert(pipe, x0, captions, config.invert_steps, config.invert_lr, gen))
        if config.refinement:
            images = [refine(img, c) for img, c in zip(images, conds)]
        opt = torch.optim.Adam(list(params.values()), lr=config.lr)
        losses = []
        with restored(params):  # the pipeline comes back as it was; the artifact carries the change
            with torch.no_grad():
                for k, p in params.items():
                    p.copy_(text.tensors[k])
            teacher = copy.deepcopy(unet).requires_grad_(False).eval()  # the text-erased UNet
            with training(unet, params.values()):
                for _ in tqdm(range(config.image_iterations), desc="co_erasing", disable=not progress):
                    k = int(torch.randint(config.n_images, (1,), generator=gen))
                    cond, both = conds[k : k + 1], torch.cat([conds[k], images[k]])[None]
                    stop = int(torch.randint(config.ddim_steps - 1, (1,), generator=gen))
                    x_t, t = sample_xt(teacher, scheduler, cond, uncond, stop, config.start_guidance, shape, gen)
                    if config.blur:
                        x_t = gaussian_blur(x_t, config.blur)
                    with torch.no_grad():
                        e_u = teacher(x_t, t, encoder_hidden_states=uncond).sample
                        with image_prompted(teacher, len(images[k]), config.image_scale):
                            e_c = teacher(x_t, t, encoder_hidden_states=both).sample
                    with image_prompted(unet, len(images[k]), config.image_scale):
                        pred = unet(x_t, t, encoder_hidden_states=both).sample
                    loss = F.mse_loss(pred, esd_target(e_c, e_u, config.image_eta))
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    losses.append(float(loss.detach()))
            tensors = {k: p.detach().clone() for k, p in params.items()}
        n = max(1, len(losses) // 10)
        extra = {"image_loss_first": sum(losses[:n]) / n, "image_loss_last": sum(losses[-n:]) / n}  # means of a tenth
        return Erasure(self.name, config, concept, base_fp, tensors, extra)
