"""CA: Concept Ablation, model-based variant (Kumari, Zhang, Wang, Shechtman, Zhang, Zhu, "Ablating
Concepts in Text-to-Image Diffusion Models", ICCV 2023; github.com/nupurkmr9/concept-ablation).

Fine-tune a parameter group so that, on noisy versions of the *anchor* concept's images, the
model's prediction for the target prompt matches the frozen model's prediction for the anchor
prompt: ``|e(x_t, c*, t) - sg(e0(x_t, c_anchor, t))|^2`` with ``x_t = add_noise(x0_anchor, t)``.
The anchor images are the frozen model's own samples for the anchor prompts, drawn once before
training. The paper's regulariser, the ordinary denoising loss on the anchor images with their
own prompts, is added with weight ``reg``: off by default, since on ``heart`` and ``star`` it
only cost time (docs/results.md).

- *Anchor*: each erase prompt's guide prompt (the same template with the concept's ``guide`` in
  the slot; for the built-in concepts the slot is left empty, "a red on a plain background").
  The paper anchors a cat to "cat" and an artist to "painting"; an empty slot is the nearest
  concept-free prompt on the testbed.
- *Parameters*: cross-attention K/V (the paper's ``crossattn_kv``, its choice for instances and
  styles). The paper trains 100-200 steps at lr 2e-6 x batch 8 on Stable Diffusion; the testbed's
  defaults (200 steps at lr 1e-3, batch 4, 16 anchor images) are scaled to the 2M-parameter UNet
  and were checked on ``heart`` and ``star`` (docs/results.md).
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
from erasekit.erasure import METHODS, Erasure, Method, MethodConfig
from erasekit.losses import denoising_loss, noised_batch
from erasekit.methods.esd import latent_shape
from erasekit.pipelines import encode, fingerprint, group_parameters, training
from erasekit.sampling import ddim_cfg


@dataclass(frozen=True)
class CAConfig(MethodConfig):
    """Steps, learning rate, batch, anchor images per anchor prompt, regulariser weight ``reg``."""

    iterations: int = 200
    lr: float = 1e-3
    batch: int = 4
    n_anchor_images: int = 16
    reg: float = 0.0
    guidance: float = 3.0
    ddim_steps: int = 25
    seed: int = 0

    bounds: ClassVar[dict[str, tuple[str, float]]] = {
        "iterations": (">=", 1), "lr": (">", 0), "batch": (">=", 1), "n_anchor_images": (">=", 1), "reg": (">=", 0),
        "guidance": (">=", 0), "ddim_steps": (">=", 2)
    }


def anchor_images(pipe: DiffusionPipeline, concept: Concept, n: int, guidance: float, ddim_steps: int,
                  gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.nn.Module, torch.Tensor]:
    """``n`` random erase prompts' states, their guide (anchor) prompts' states, a frozen copy of the
    UNet, and the frozen model's images of the anchor prompts (DDIM with CFG): CA's and DoCo's data."""
    targets, anchors = concept.erase_prompts(), concept.guide_prompts()
    pick = torch.randint(len(anchors), (n,), generator=gen).tolist()
    t_states, a_states = encode(pipe, [targets[i] for i in pick]).states, encode(pipe, [anchors[i] for i in pick]).states
    uncond = encode(pipe, [""]).states
    frozen = copy.deepcopy(pipe.unet).requires_grad_(False).eval()
    scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    scheduler.set_timesteps(ddim_steps)
    return t_states, a_states, frozen, ddim_cfg(frozen, scheduler, a_states, uncond, guidance, latent_shape(pipe), gen)


@METHODS.register("ca")
class ConceptAblation(Method):
    """CA: match the concept's prediction to the anchor's on anchor images (Kumari et al. 2023)."""

    config_class = CAConfig
    test_config = {"iterations": 3, "n_anchor_images": 2, "batch": 2, "ddim_steps": 3, "reg": 1.0}
    group = "xattn_kv"

    def fit(self, pipe: DiffusionPipeline, concept: Concept, config: MethodConfig, progress: bool = True) -> Erasure:
        assert isinstance(config, CAConfig)
        base_fp = fingerprint(pipe)
        gen = torch.Generator().manual_seed(config.seed)
        t_states, a_states, frozen, x0 = anchor_images(pipe, concept, config.n_anchor_images, config.guidance,
                                                       config.ddim_steps, gen)
        unet = pipe.unet
        params = group_parameters(pipe, self.group)
        opt = torch.optim.Adam(list(params.values()), lr=config.lr)
        with restored(params):  # the pipeline comes back as it was; the artifact carries the change
            with training(unet, params.values()):
                for _ in tqdm(range(config.iterations), desc="ca", disable=not progress):
                    idx, x_t, t = noised_batch(pipe.scheduler, x0, config.batch, gen)
                    with torch.no_grad():
                        target = frozen(x_t, t, encoder_hidden_states=a_states[idx]).sample
                    loss = F.mse_loss(unet(x_t, t, encoder_hidden_states=t_states[idx]).sample, target)
                    if config.reg > 0:  # the anchor keeps denoising its own images
                        loss = loss + config.reg * denoising_loss(unet, pipe.scheduler, x0[idx], a_states[idx], gen)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
            tensors = {k: p.detach().clone() for k, p in params.items()}
        return Erasure(self.name, config, concept, base_fp, tensors, {"n_anchor_images": config.n_anchor_images})
