"""SalUn: saliency unlearning (Fan, Liu, Zhang, Wei, Wong, Liu, "SalUn: Empowering Machine
Unlearning via Gradient-based Weight Saliency in Both Image Classification and Generation",
ICLR 2024; github.com/OPTML-Group/Unlearn-Saliency, ``SD/``).

Two stages, both inside the fit:

1. *Weight saliency.* The gradient of the forget loss (the denoising loss of the concept's images
   under the concept's prompts) is accumulated over the forget set; the ``threshold`` fraction of
   UNet entries with the largest ``|grad|``, one global threshold over all tensors
   (:func:`erasekit.linalg.saliency_mask`), form the mask. The paper keeps the top 50%.
2. *Random-label (mis-prompt) fine-tuning of the salient entries only.* On noisy forget images,
   the concept prompt's prediction is pulled to the model's own prediction under a pseudo prompt,
   ``|e(x_t^f, c_f) - sg(e(x_t^f, c_pseudo))|^2``, plus ``alpha`` times the ordinary denoising loss
   on retain images with their prompts; gradients are multiplied by the mask before each step.

The forget images are the frozen model's own samples for the erase prompts; the retain images its
samples for the concept's ``preserve`` prompts (the guide prompts when it has none), both drawn
once before training. The pseudo prompt (``pseudo``) is the erase prompt's guide prompt (the
paper's NSFW setting: "a person wearing clothes" for "a nude person"; on the testbed the concept's
slot emptied) or a random preserve prompt (the paper's class-wise random label).

The artifact holds the UNet tensors with at least one salient entry; entries outside the mask keep
their values exactly (Adam's step is zero where the gradient was always zero). The paper trains the
full UNet at lr 1e-5, ``alpha`` 0.5, for 5 epochs over 800 images on Stable Diffusion; the
testbed's defaults (the paper's threshold and ``alpha``; 200 steps at lr 1e-4, batch 4, 16 forget and
16 retain images) are scaled to its 2M-parameter UNet and were chosen on ``heart``
(docs/results.md): a fit takes under 5 minutes at one thread.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DiffusionPipeline
from tqdm.auto import tqdm

from erasekit.artifact import restored
from erasekit.concepts import Concept
from erasekit.erasure import METHODS, Erasure, Method, MethodConfig, check
from erasekit.linalg import saliency_mask
from erasekit.losses import denoising_loss, noised_batch
from erasekit.methods.esd import latent_shape
from erasekit.pipelines import encode, fingerprint, group_parameters, summed_gradients, training
from erasekit.sampling import ddim_cfg

PSEUDO = ("guide", "preserve")


@dataclass(frozen=True)
class SalUnConfig(MethodConfig):
    """Saliency ``threshold`` (fraction kept), steps, learning rate, batch, forget / retain images,
    retain weight ``alpha``, the pseudo prompt (``guide`` or ``preserve``)."""

    threshold: float = 0.5
    iterations: int = 200
    lr: float = 1e-4
    batch: int = 4
    n_forget_images: int = 16
    n_retain_images: int = 16
    alpha: float = 0.5
    pseudo: str = "guide"
    mask_batches: int = 4
    guidance: float = 3.0
    ddim_steps: int = 25
    seed: int = 0

    bounds: ClassVar[dict[str, tuple[str, float]]] = {
        "iterations": (">=", 1), "lr": (">", 0), "batch": (">=", 1), "n_forget_images": (">=", 1),
        "n_retain_images": (">=", 1), "alpha": (">=", 0), "mask_batches": (">=", 1), "guidance": (">=", 0),
        "ddim_steps": (">=", 2)
    }

    def __post_init__(self) -> None:
        self.check_types()
        check(0 < self.threshold <= 1, "threshold", f"must be in (0, 1], got {self.threshold}")
        check(self.pseudo in PSEUDO, "pseudo", f"must be one of {', '.join(PSEUDO)}, got {self.pseudo!r}")


def forget_gradients(unet: torch.nn.Module, scheduler, params: dict[str, torch.nn.Parameter], x0: torch.Tensor,
                     states: torch.Tensor, batch: int, batches: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """The gradient of the denoising loss on ``x0`` under ``states``, summed over ``batches`` random batches."""
    def loss() -> torch.Tensor:
        idx = torch.randint(len(x0), (batch,), generator=gen).to(x0.device)
        return denoising_loss(unet, scheduler, x0[idx], states[idx], gen)

    return summed_gradients(unet, params, loss, batches)


def train_salient(unet: torch.nn.Module, params: dict[str, torch.nn.Parameter], mask: dict[str, torch.Tensor],
                  loss: Callable[[], torch.Tensor], iterations: int, lr: float, desc: str,
                  progress: bool = True) -> tuple[dict[str, torch.Tensor], int]:
    """Adam on ``loss()`` (each call drawing its own batch) for ``iterations`` steps, with gradients
    zeroed outside ``mask`` so only its entries move (Adam's step is zero where a gradient was always
    zero). Returns the trained values of the tensors with a masked entry, and the number of masked
    entries; ``params`` keep their values (the artifact carries the change). SalUn's and ANT's loop."""
    salient = {k: p for k, p in params.items() if bool(mask[k].any())}
    opt = torch.optim.Adam(list(salient.values()), lr=lr)
    with restored(salient):
        with training(unet, salient.values()):
            for _ in tqdm(range(iterations), desc=desc, disable=not progress):
                out = loss()
                opt.zero_grad(set_to_none=True)
                out.backward()
                for k, p in salient.items():
                    if p.grad is not None:
                        p.grad.mul_(mask[k])
                opt.step()
        tensors = {k: p.detach().clone() for k, p in salient.items()}
    return tensors, sum(int(m.sum()) for m in mask.values())


@METHODS.register("salun")
class SalUn(Method):
    """SalUn: a weight-saliency mask, then mis-prompt fine-tuning of the salient UNet entries (Fan et al. 2024)."""

    config_class = SalUnConfig
    test_config = {"iterations": 3, "n_forget_images": 2, "n_retain_images": 2, "batch": 2, "ddim_steps": 3,
                   "mask_batches": 1}
    group = "unet"

    def fit(self, pipe: DiffusionPipeline, concept: Concept, config: MethodConfig, progress: bool = True) -> Erasure:
        assert isinstance(config, SalUnConfig)
        base_fp = fingerprint(pipe)
        targets, guides = concept.erase_prompts(), concept.guide_prompts()
        retain = list(concept.preserve) or guides
        gen = torch.Generator().manual_seed(config.seed)
        pick = torch.randint(len(targets), (config.n_forget_images,), generator=gen).tolist()
        f_states = encode(pipe, [targets[i] for i in pick]).states
        if config.pseudo == "guide":
            p_prompts = [guides[i] for i in pick]
        else:
            p_prompts = [retain[i] for i in torch.randint(len(retain), (len(pick),), generator=gen).tolist()]
        p_states = encode(pipe, p_prompts).states
        r_pick = torch.randint(len(retain), (config.n_retain_images,), generator=gen).tolist()
        r_states = encode(pipe, [retain[i] for i in r_pick]).states
        uncond = encode(pipe, [""]).states
        unet = pipe.unet
        sampler = DDIMScheduler.from_config(pipe.scheduler.config)
        sampler.set_timesteps(config.ddim_steps)
        x_f = ddim_cfg(unet, sampler, f_states, uncond, config.guidance, latent_shape(pipe), gen)  # before any update
        x_r = ddim_cfg(unet, sampler, r_states, uncond, config.guidance, latent_shape(pipe), gen)
        params = group_parameters(pipe, self.group)
        grads = forget_gradients(unet, pipe.scheduler, params, x_f, f_states, config.batch, config.mask_batches, gen)
        mask = saliency_mask(grads, config.threshold)

        def loss() -> torch.Tensor:
            idx, x_t, t = noised_batch(pipe.scheduler, x_f, config.batch, gen)
            with torch.no_grad():  # the pseudo label: the model's own prediction, stop-gradient
                target = unet(x_t, t, encoder_hidden_states=p_states[idx]).sample
            out = F.mse_loss(unet(x_t, t, encoder_hidden_states=f_states[idx]).sample, target)
            if config.alpha > 0:
                r_idx = torch.randint(len(x_r), (config.batch,), generator=gen).to(x_r.device)
                out = out + config.alpha * denoising_loss(unet, pipe.scheduler, x_r[r_idx], r_states[r_idx], gen)
            return out

        tensors, n_salient = train_salient(unet, params, mask, loss, config.iterations, config.lr, self.name, progress)
        return Erasure(self.name, config, concept, base_fp, tensors, {"salient_entries": n_salient})
