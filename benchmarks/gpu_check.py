"""GPU check: erasekit's methods and the benchmark runner on CUDA, with times.

On a random-weight Stable Diffusion 1.x-sized pipeline (UNet from the SD-1.4 config, a 12-layer
768-wide CLIP text encoder, the SD VAE layout; no download) on ``--device`` (default cuda):

1. UCE on ``skull`` (closed form over the 32 cross-attention K/V matrices);
2. ESD-x, ``--esd-iterations`` iterations (50 DDIM steps, 64x64 latents);
3. generation: 4 images, 512x512, 25 DDIM steps, guidance 7.5, with the UCE erasure applied;
4. ``erasekit bench benchmarks/specs/smoke.yaml`` (cells ask Ray for the GPU).

Prints each step's wall time and peak GPU memory. ``--tiny --device cpu`` runs the same steps on
a toy pipeline (what the test suite checks). Usage: ``bash benchmarks/gpu_check.sh``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def sd_pipeline(device: str):
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from erasekit.encoders import load_text_encoder

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from closed_form import SD14_UNET

    torch.manual_seed(0)
    _, tokenizer = load_text_encoder()
    tokenizer.model_max_length = 77
    text = CLIPTextModel(CLIPTextConfig(vocab_size=tokenizer.vocab_size, hidden_size=768, intermediate_size=3072,
                                        num_hidden_layers=12, num_attention_heads=12, max_position_embeddings=77,
                                        bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id,
                                        pad_token_id=tokenizer.pad_token_id))
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(128, 256, 512, 512),
                        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                        layers_per_block=2, sample_size=512)
    scheduler = DDIMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085,
                              beta_end=0.012, clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tokenizer,
                                   unet=UNet2DConditionModel(**SD14_UNET), scheduler=scheduler, safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def timed(label: str, device: str, fn):
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    out = fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        mem = f", peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB"
    else:
        mem = ""
    print(f"{label:44s} {time.perf_counter() - t0:8.2f} s{mem}", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="a toy pipeline instead of SD-1.x size")
    parser.add_argument("--esd-iterations", type=int, default=20)
    parser.add_argument("--skip-bench", action="store_true", help="skip step 4 (the smoke spec on Ray)")
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("gpu_check: CUDA is not available here; run it on a GPU machine (or --tiny --device cpu)")
    from erasekit.concepts import get_concept
    from erasekit.erasure import get_method, make_config

    if args.tiny:
        from erasekit.tiny import tiny_sd_pipeline

        pipe, size, steps = tiny_sd_pipeline().to(args.device), 16, 4
    else:
        pipe, size, steps = timed("build SD-1.x-sized pipeline", args.device, lambda: sd_pipeline(args.device)), 512, 25
    print(f"device {args.device} ({torch.cuda.get_device_name() if args.device.startswith('cuda') else 'cpu'}), "
          f"torch {torch.__version__}")
    concept = get_concept("skull")
    uce = timed("UCE fit (closed form)", args.device,
                lambda: get_method("uce").fit(pipe, concept, make_config("uce"), progress=False))
    cfg = make_config("esd", {"train_method": "esd-x", "iterations": args.esd_iterations,
                              "ddim_steps": 4 if args.tiny else 50})
    timed(f"ESD-x fit ({args.esd_iterations} iterations)", args.device,
          lambda: get_method("esd").fit(pipe, concept, cfg, progress=False))
    gen = [torch.Generator().manual_seed(k) for k in range(4)]
    with uce.applied(pipe):
        images = timed(f"generate 4 x {size}px, {steps} steps, UCE applied", args.device,
                       lambda: pipe(["a photo of a skull"] * 4, height=size, width=size, num_inference_steps=steps,
                                    guidance_scale=7.5, generator=gen, output_type="np").images)
    assert images.shape == (4, size, size, 3) and torch.isfinite(torch.as_tensor(images)).all()
    if not args.skip_bench:
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, "-m", "erasekit.cli", "bench", str(ROOT / "benchmarks/specs/smoke.yaml"),
                   "--workers", "1", "--db", f"{tmp}/bench.db"]
            done = timed("erasekit bench smoke.yaml (1 worker)", args.device,
                         lambda: subprocess.run(cmd, capture_output=True, text=True))
            if done.returncode != 0:
                sys.exit(f"gpu_check: the smoke bench failed:\n{done.stderr[-2000:]}")
    print("gpu_check: every step ran")


if __name__ == "__main__":
    main()
