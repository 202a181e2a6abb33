"""AdvUnlearn: defensive unlearning with adversarial training (Zhang, Chen, Jia, Zhang, Liu, Liu,
"Defensive Unlearning with Adversarial Training for Robust Concept Erasure in Diffusion Models",
NeurIPS 2024; github.com/OPTML-Group/AdvUnlearn).

A bi-level fit of the *text encoder*; the UNet stays frozen. Each step:

- *Inner (attacker)*: a soft-token prefix ``d`` (``attack_tokens`` input embeddings put before the
  prompt, the paper's ``prefix_k`` word-embedding attack) is optimised for ``attack_steps`` Adam
  steps so that the current model, prompted with ``d + c``, predicts what the unedited model
  predicts for the concept: ``min_d |e(x_t, T_theta(d + c)) - e0(x_t, T0(c))|^2``. The prefix goes in
  through :func:`erasekit.attacks.discrete.embed_with_prefix`, the discrete attack's encoder path.
  As in the paper's code, attacks start after ``warmup`` steps and each one starts from the
  previous prefix (the first from a random vocabulary token's embedding).
- *Outer (defender)*: ESD's negative-guidance loss (:func:`erasekit.losses.esd_target`) on the
  adversarial prompt, plus ``retain_weight`` times the utility-retaining term on ``retain_batch``
  of the concept's ``preserve`` prompts (other concepts): ``|e(x_t, T_theta(c')) - e0(x_t, T0(c'))|^2``.

``x_t`` is DDIM-sampled with CFG (``start_guidance``) from noise to a random step of
``ddim_steps`` with the concept's prompt, as ESD does. *Inferred for the CPU budget*: the paper's
code samples a separate ``x_t'`` for the retain prompts; here they share the concept's ``x_t``,
which takes the retain term from 3 sampled trajectories per step to none.

*Layers*: the paper's code trains ``text_encoder_full`` (every transformer layer and the final
layer norm, not the token or position embeddings) by default and offers subsets from the first
layer up (``text_encoder_layer0``, ``..._layer01``, ...); ``layers="all"`` and ``layers="first"``
are the two ends. The default is ``first``: on ``heart`` it erased as fully as ``all`` and kept
every other shape (1.000 against 0.750 at the same rate), with a sixth of the tensors (7 MB
against 43 MB for MiniLM; docs/results.md). The token embeddings, part of the base fingerprint,
are never touched; the artifact holds only the trained tensors.

Scaled to the testbed: the paper trains 1,000 steps at lr 1e-5 with 30 attack steps at lr 1e-3 and
a warm-up of 200 on SD-1.4's CLIP encoder; the defaults here are 100 steps at lr 3e-4, 5 attack
steps at lr 1e-2 and a warm-up of 20, for the 6-layer MiniLM encoder and a fit of about 5 minutes
at one thread (docs/results.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DiffusionPipeline
from tqdm.auto import tqdm

from erasekit.artifact import restored
from erasekit.attacks.discrete import embed_with_prefix
from erasekit.concepts import Concept
from erasekit.erasure import METHODS, Erasure, Method, MethodConfig, check
from erasekit.losses import esd_target
from erasekit.methods.esd import latent_shape
from erasekit.pipelines import encode, encoder_layer_parameters, fingerprint, frozen, group_parameters, training
from erasekit.sampling import ddim_cfg

LAYER_CHOICES = ("all", "first")


def text_encoder_layers(pipe: DiffusionPipeline, layers: str) -> dict[str, torch.nn.Parameter]:
    """The text-encoder parameters AdvUnlearn trains: every transformer layer and a final layer
    norm (``"all"``, the paper's ``text_encoder_full``) or the first layer only (``"first"``)."""
    params = group_parameters(pipe, "text_encoder")
    chosen = [k for k, (layer, _) in encoder_layer_parameters(pipe).items() if layers == "all" or layer == 0]
    if layers == "all":
        chosen += [k for k in params if "final_layer_norm" in k]
    return {k: params[k] for k in chosen}


@dataclass(frozen=True)
class AdvUnlearnConfig(MethodConfig):
    """Outer steps and learning rate, which encoder ``layers``, ESD's ``eta``, the retain term
    (``retain_weight``, ``retain_batch``) and the inner attack (``attack_tokens``, ``attack_steps``,
    ``attack_lr``, ``warmup`` steps without attack)."""

    iterations: int = 100
    lr: float = 3e-4
    layers: str = "first"
    eta: float = 1.0
    retain_weight: float = 1.0
    retain_batch: int = 2
    attack_tokens: int = 1
    attack_steps: int = 5
    attack_lr: float = 1e-2
    warmup: int = 20
    start_guidance: float = 3.0
    ddim_steps: int = 25
    seed: int = 0

    bounds: ClassVar[dict[str, tuple[str, float]]] = {
        "iterations": (">=", 1), "lr": (">", 0), "eta": (">=", 0), "retain_weight": (">=", 0),
        "retain_batch": (">=", 1), "attack_tokens": (">=", 1), "attack_steps": (">=", 0), "attack_lr": (">", 0),
        "warmup": (">=", 0), "start_guidance": (">=", 0), "ddim_steps": (">=", 2)
    }

    def __post_init__(self) -> None:
        self.check_types()
        check(self.layers in LAYER_CHOICES, "layers", f"must be one of {', '.join(LAYER_CHOICES)}, got {self.layers!r}")


def adversarial_prefix(pipe: DiffusionPipeline, prompt: str, x_t: torch.Tensor, t: torch.Tensor,
                       target: torch.Tensor, init: torch.Tensor, steps: int, lr: float) -> torch.Tensor:
    """AdvUnlearn's attack step: the prefix embeddings, from ``init``, with which the current model's
    prediction for ``prompt`` at ``(x_t, t)`` comes closest to ``target`` (the unedited model's)."""
    prefix = init.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([prefix], lr=lr)
    for _ in range(steps):
        pred = pipe.unet(x_t, t, encoder_hidden_states=embed_with_prefix(pipe, prefix, prompt)).sample
        (grad,) = torch.autograd.grad(F.mse_loss(pred, target), [prefix])  # no weight gradients
        prefix.grad = grad
        opt.step()
    return prefix.detach()


@METHODS.register("advunlearn")
class AdvUnlearn(Method):
    """AdvUnlearn: adversarial training of the text encoder against soft-prompt attacks (Zhang et al. 2024)."""

    config_class = AdvUnlearnConfig
    test_config = {"iterations": 3, "warmup": 1, "attack_steps": 2, "ddim_steps": 3, "retain_batch": 1,
                   "lr": 1e-2}
    group = "text_encoder"

    def fit(self, pipe: DiffusionPipeline, concept: Concept, config: MethodConfig, progress: bool = True) -> Erasure:
        assert isinstance(config, AdvUnlearnConfig)
        base_fp = fingerprint(pipe)
        prompts = concept.erase_prompts()
        retain = [p for p in concept.preserve if p not in prompts]
        conds, uncond = encode(pipe, prompts).states, encode(pipe, [""]).states
        retain_states = encode(pipe, retain).states if retain else None
        gen = torch.Generator().manual_seed(config.seed)
        scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
        scheduler.set_timesteps(config.ddim_steps)
        shape = latent_shape(pipe)
        words = pipe.text_encoder.get_input_embeddings().weight.detach()
        start = torch.randint(len(words), (config.attack_tokens,), generator=gen)
        prefix = words[start.to(words.device)].clone()  # a random vocabulary token's embedding
        no_prefix = prefix[:0]
        params = text_encoder_layers(pipe, config.layers)
        opt = torch.optim.Adam(list(params.values()), lr=config.lr)
        unet, encoder = pipe.unet, pipe.text_encoder
        with restored(params), frozen(unet), training(encoder, params.values()):
            encoder.eval()  # trained without dropout: the references come from the encoder in eval mode
            for step in tqdm(range(config.iterations), desc="advunlearn", disable=not progress):
                k = int(torch.randint(len(prompts), (1,), generator=gen))
                stop = int(torch.randint(config.ddim_steps - 1, (1,), generator=gen))
                picked = torch.randint(len(retain), (config.retain_batch,), generator=gen).tolist() if retain else []
                cond = conds[k : k + 1]
                rows = torch.cat([cond, retain_states[picked]]) if picked else cond
                with torch.no_grad():
                    x = ddim_cfg(unet, scheduler, cond, uncond, config.start_guidance, shape, gen, stop)
                    t = scheduler.timesteps[stop]
                    pred = unet(x.expand(len(rows) + 1, -1, -1, -1), t, encoder_hidden_states=torch.cat([uncond, rows])).sample
                    e_u, e_c, e_r = pred[:1], pred[1:2], pred[2:]
                if step >= config.warmup and config.attack_steps > 0:
                    prefix = adversarial_prefix(pipe, prompts[k], x, t, e_c, prefix, config.attack_steps,
                                                config.attack_lr)
                    student = embed_with_prefix(pipe, prefix, prompts[k])
                else:
                    student = embed_with_prefix(pipe, no_prefix, prompts[k])
                loss = F.mse_loss(unet(x, t, encoder_hidden_states=student).sample, esd_target(e_c, e_u, config.eta))
                if picked and config.retain_weight > 0:
                    kept = embed_with_prefix(pipe, no_prefix, [retain[i] for i in picked])
                    loss = loss + config.retain_weight * F.mse_loss(unet(x.expand(len(picked), -1, -1, -1), t, encoder_hidden_states=kept).sample, e_r)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            tensors = {k: p.detach().clone() for k, p in params.items()}
        return Erasure(self.name, config, concept, base_fp, tensors)
