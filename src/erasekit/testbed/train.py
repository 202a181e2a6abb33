"""Training recipe of the built-in testbed (``erasekit testbed train``).

The model is a pixel-space ``UNet2DConditionModel`` (``DownBlock2D -> CrossAttnDownBlock2D x2``
and mirror, widths 32/64/64, one layer per block: 2.0M parameters, 7 cross-attention layers)
conditioned on frozen MiniLM token states, trained with v-prediction on a cosine schedule,
min-SNR-5 loss weighting, AdamW (lr 1e-3, 200 warm-up steps, cosine decay to 10%), grad-clip 1,
15% caption dropout for classifier-free guidance, and an EMA of the weights. Images are drawn on
the fly from ShapeCanvas: seen shape+colour pairs named by ``given`` and ``known`` words (never
``unseen`` ones), 15% of captions with a distractor clause, and 12% ``none`` images (blobs, empty
canvases) captioned with decoy nouns. 40 captions per combination are encoded once and cached in
the output folder. Sampling uses CFG rescale 0.7 (Lin et al. 2024), which v-prediction needs at
high guidance.

``exclude`` (``--exclude skull,logo,neon``) drops every image of those values and every caption
holding one of their given or known phrases: the "oracle", a model that never learned the
concepts, what a perfect erasure would look like (the counterpart of TOFU's retain model).

The small model in fp32, contiguous memory and batch 64 were chosen from the step timings of
``python benchmarks/train_step.py``; those figures and the cost of the shipped run are in
docs/results.md (Training cost).
"""

from __future__ import annotations

import json
import math
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DConditionModel
from tqdm.auto import tqdm

from erasekit.config import Config
from erasekit.encoders import load_text_encoder
from erasekit.errors import MissingPath, UserError
from erasekit.files import atomic_write_json, load_tensors, save_tensors
from erasekit.provenance import git_commit, package_versions
from erasekit.testbed import data
from erasekit.testbed.pipeline import MAX_LENGTH, TestbedPipeline

WIDTHS: dict[str, tuple[int, int, int]] = {"small": (32, 64, 64), "medium": (64, 128, 128)}
NUM_TRAIN_TIMESTEPS = 1000


def unet_config(width: str = "small") -> dict:
    """``UNet2DConditionModel`` config of the testbed (SD-1.x block layout, pixel space)."""
    if width not in WIDTHS:
        raise UserError(f"width must be one of {sorted(WIDTHS)}, got {width!r}")
    return dict(
        sample_size=data.IMAGE_SIZE,
        in_channels=3,
        out_channels=3,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        block_out_channels=WIDTHS[width],
        layers_per_block=1,
        attention_head_dim=4,
        norm_num_groups=8 if width == "small" else 16,
        cross_attention_dim=384,
    )


#: The noise schedule training and sampling share.
SCHEDULE = {"num_train_timesteps": NUM_TRAIN_TIMESTEPS, "beta_schedule": "squaredcos_cap_v2",
            "prediction_type": "v_prediction"}


def train_scheduler() -> DDPMScheduler:
    return DDPMScheduler(**SCHEDULE, clip_sample=False)


def sample_scheduler() -> DDIMScheduler:
    """DDIM with trailing spacing, so sampling starts from the last (pure-noise) timestep."""
    return DDIMScheduler(**SCHEDULE, clip_sample=True, set_alpha_to_one=True, timestep_spacing="trailing")


@dataclass(frozen=True)
class TrainConfig(Config):
    """Hyper-parameters of ``erasekit testbed train``."""

    steps: int = 2500
    batch_size: int = 64
    lr: float = 1e-3
    warmup: int = 200
    min_lr_ratio: float = 0.1
    ema_decay: float = 0.998
    snr_gamma: float = 5.0
    cfg_dropout: float = 0.15
    seed: int = 0
    checkpoint_every: int = 250
    width: str = "small"
    bf16: bool = False
    exclude: tuple = ()
    none_share: float = 0.12
    captions_per_combo: int = 40

    def __post_init__(self) -> None:
        object.__setattr__(self, "exclude", data.parse_exclude(self.exclude))
        self.check_types()
        if not 0.0 <= self.none_share < 1.0:
            raise UserError(f"none_share must be in [0, 1), got {self.none_share}")
        if self.captions_per_combo < 1:
            raise UserError(f"captions_per_combo must be >= 1, got {self.captions_per_combo}")
        if self.steps < 1:
            raise UserError(f"steps must be >= 1, got {self.steps}")
        if self.batch_size < 1:
            raise UserError(f"batch_size must be >= 1, got {self.batch_size}")
        if not self.lr > 0:
            raise UserError(f"lr must be > 0, got {self.lr}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise UserError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if not 0.0 <= self.cfg_dropout < 1.0:
            raise UserError(f"cfg_dropout must be in [0, 1), got {self.cfg_dropout}")
        if self.checkpoint_every < 1:
            raise UserError(f"checkpoint_every must be >= 1, got {self.checkpoint_every}")
        if self.width not in WIDTHS:
            raise UserError(f"width must be one of {sorted(WIDTHS)}, got {self.width!r}")


def lr_at(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


class CaptionBank:
    """Every training caption of the seen combinations, encoded once: ``(N+1, L, 384)`` fp16."""

    def __init__(self, captions: list[str], embeds: torch.Tensor, index: dict[data.Attributes, list[int]]):
        self.captions, self.embeds, self.index = captions, embeds, index

    @property
    def empty(self) -> int:
        return len(self.captions) - 1  # the last entry is ""

    @classmethod
    def build(cls, cache: Path | None, per_combo: int = 40, exclude: tuple[str, ...] = (),
              batch: int = 128) -> "CaptionBank":
        captions, index = caption_index(per_combo, exclude)
        if cache is not None and cache.exists():
            stored = load_tensors(cache)
            meta = json.loads((cache.with_suffix(".json")).read_text())
            if meta.get("captions") == captions and meta.get("max_length") == MAX_LENGTH:
                return cls(captions, stored["embeds"], index)
        encoder, tokenizer = load_text_encoder()
        pipe = TestbedPipeline(unet=None, text_encoder=encoder, tokenizer=tokenizer, scheduler=None)  # type: ignore[arg-type]
        chunks = []
        for i in tqdm(range(0, len(captions), batch), desc="encoding captions", unit="batch"):
            chunks.append(pipe.encode_text(captions[i : i + batch]).to(torch.float16))
        embeds = torch.cat(chunks)
        if cache is not None:
            save_tensors(cache, {"embeds": embeds})
            atomic_write_json(cache.with_suffix(".json"), {"captions": captions, "max_length": MAX_LENGTH})
        return cls(captions, embeds, index)


def caption_index(per_combo: int, exclude: tuple[str, ...] = ()) -> tuple[list[str], dict[data.Attributes, list[int]]]:
    """Every training caption (``per_combo`` per training combination, then ``""``) and, per
    combination, the indices of its captions."""
    index: dict[data.Attributes, list[int]] = {}
    captions: list[str] = []
    for attrs in data.training_combinations(exclude):
        caps = data.training_captions(attrs, per_combo, exclude=exclude)
        index[attrs] = list(range(len(captions), len(captions) + len(caps)))
        captions.extend(caps)
    captions.append("")
    return captions, index


def training_plan(
    step: int, cfg: TrainConfig, index: dict[data.Attributes, list[int]], empty: int
) -> tuple[list[data.Attributes], list[int], list[int]]:
    """What ``step`` trains on, deterministic in ``(seed, step)``: combinations, drawing seeds and
    caption indices (``empty`` with probability ``cfg_dropout``)."""
    rng = np.random.default_rng([cfg.seed, step, 0xDA7A])
    attrs = [data.sample_attributes(rng, False, cfg.exclude, cfg.none_share) for _ in range(cfg.batch_size)]
    seeds = [int(rng.integers(2**31)) for _ in attrs]
    ids = [empty if rng.random() < cfg.cfg_dropout else int(rng.choice(index[a])) for a in attrs]
    return attrs, seeds, ids


def training_batch(
    step: int, cfg: TrainConfig, bank: CaptionBank
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images in [-1, 1] ``(B, 3, 32, 32)`` and caption embeddings for ``step`` (deterministic)."""
    attrs, seeds, ids = training_plan(step, cfg, bank.index, bank.empty)
    imgs = np.stack([data.render(a, s) for a, s in zip(attrs, seeds)])
    x0 = torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    return x0, bank.embeds[torch.tensor(ids)].float()


def diffusion_loss(
    unet: UNet2DConditionModel,
    scheduler: DDPMScheduler,
    x0: torch.Tensor,
    cond: torch.Tensor,
    generator: torch.Generator,
    snr_gamma: float,
    bf16: bool,
) -> torch.Tensor:
    """v-prediction MSE with min-SNR-gamma weighting (Hang et al. 2023)."""
    noise = torch.randn(x0.shape, generator=generator)
    t = torch.randint(0, scheduler.config.num_train_timesteps, (x0.shape[0],), generator=generator)
    x_t = scheduler.add_noise(x0, noise, t)
    target = scheduler.get_velocity(x0, noise, t)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        pred = unet(x_t, t, encoder_hidden_states=cond).sample
    ac = scheduler.alphas_cumprod[t]
    snr = ac / (1 - ac)
    weight = torch.clamp(snr, max=snr_gamma) / (snr + 1)
    per = F.mse_loss(pred.float(), target, reduction="none").mean(dim=(1, 2, 3))
    return (weight * per).mean()


# -- checkpoints (safetensors + JSON only) --------------------------------------------------------


def _save_checkpoint(out: Path, step: int, unet, ema, opt, cfg: TrainConfig, elapsed: float, losses: list) -> None:
    tmp, final, old = out / "checkpoint.tmp", out / "checkpoint", out / "checkpoint.old"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_tensors(tmp / "unet_raw.safetensors", unet.state_dict())
    save_tensors(tmp / "unet_ema.safetensors", ema.state_dict())
    state = opt.state_dict()
    flat = {f"{i}.{k}": v for i, s in state["state"].items() for k, v in s.items()}
    save_tensors(tmp / "optimizer.safetensors", flat)
    (tmp / "state.json").write_text(
        json.dumps(
            {"step": step, "elapsed_s": elapsed, "config": asdict(cfg), "param_groups": state["param_groups"],
             "losses": losses},
            indent=1,
        )
    )
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def _checkpoint_dir(out: Path) -> Path:
    """The latest complete checkpoint folder (``checkpoint``, else ``checkpoint.old`` mid-swap)."""
    ck = out / "checkpoint"
    return ck if ck.exists() or not (out / "checkpoint.old").exists() else out / "checkpoint.old"


def _load_checkpoint(ck: Path, state: dict, unet, ema, opt) -> tuple[int, float, list]:
    unet.load_state_dict(load_tensors(ck / "unet_raw.safetensors"))
    ema.load_state_dict(load_tensors(ck / "unet_ema.safetensors"))
    flat = load_tensors(ck / "optimizer.safetensors")
    opt_state: dict = {}
    for key, value in flat.items():
        idx, name = key.split(".", 1)
        opt_state.setdefault(int(idx), {})[name] = value
    opt.load_state_dict({"state": opt_state, "param_groups": state["param_groups"]})
    return int(state["step"]), float(state["elapsed_s"]), list(state.get("losses", []))


def has_checkpoint(out: Path) -> bool:
    return (_checkpoint_dir(out) / "state.json").exists()


def train(
    out: Path, cfg: TrainConfig, resume: bool = False, progress: bool = True, stop_after: int | None = None
) -> dict | None:
    """Train the testbed UNet into ``out`` (diffusers layout: ``unet/``, ``scheduler/``).

    Writes a checkpoint every ``cfg.checkpoint_every`` steps; ``resume=True`` continues from it
    with the optimiser state, and the data of each step depends only on ``(seed, step)``, so a
    resumed run sees the same batches as an uninterrupted one. ``stop_after=k`` checkpoints and
    returns ``None`` after step ``k`` (an interruption, for tests). Returns the run metadata.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    commit = git_commit()  # the code that runs, recorded before any edit during a long run
    torch.manual_seed(cfg.seed)
    unet = UNet2DConditionModel(**unet_config(cfg.width))
    ema = UNet2DConditionModel(**unet_config(cfg.width))
    ema.load_state_dict(unet.state_dict())
    ema.requires_grad_(False)
    opt = torch.optim.AdamW(unet.parameters(), lr=cfg.lr, weight_decay=0.0)
    start, elapsed, losses = 0, 0.0, []
    if resume:
        if not has_checkpoint(out):
            raise MissingPath(f"--resume given but {out} holds no checkpoint; drop --resume to start fresh")
        ck = _checkpoint_dir(out)
        state = json.loads((ck / "state.json").read_text())
        if TrainConfig.from_dict(state["config"]) != cfg:
            raise UserError(
                f"--resume with a different config than the checkpoint's ({state['config']}); use the same options"
            )
        start, elapsed, losses = _load_checkpoint(ck, state, unet, ema, opt)
    bank = CaptionBank.build(out / "captions.safetensors", cfg.captions_per_combo, cfg.exclude)
    scheduler = train_scheduler()
    unet.train()
    t0 = time.perf_counter() - elapsed
    bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, desc="training", disable=not progress)
    running = losses[-1][1] if losses else None
    # Draw the next batch in a worker thread while this step runs (the torch ops release the GIL):
    # a batch depends only on (seed, step), so prefetching changes no result.
    pool = ThreadPoolExecutor(max_workers=1)
    pending = pool.submit(training_batch, start, cfg, bank) if start < cfg.steps else None
    for step in bar:
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        x0, cond = pending.result()
        if step + 1 < cfg.steps:
            pending = pool.submit(training_batch, step + 1, cfg, bank)
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
        loss = diffusion_loss(unet, scheduler, x0, cond, gen, cfg.snr_gamma, cfg.bf16)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        decay = min(cfg.ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, p in zip(ema.parameters(), unet.parameters()):
                pe.lerp_(p.detach(), 1 - decay)
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        bar.set_postfix(loss=f"{running:.4f}", lr=f"{lr_at(step, cfg):.2e}")
        done = step + 1
        if done % 50 == 0:
            losses.append([done, round(running, 5)])
        if done % cfg.checkpoint_every == 0 or done == cfg.steps or done == stop_after:
            _save_checkpoint(out, done, unet, ema, opt, cfg, time.perf_counter() - t0, losses)
        if done == stop_after:
            bar.close()
            pool.shutdown(cancel_futures=True)
            return None
    pool.shutdown()
    wall = time.perf_counter() - t0
    return export(out, unet, ema, cfg, wall, losses, commit)


def export(out: Path, unet, ema, cfg: TrainConfig, wall: float, losses: list, commit: str) -> dict:
    """Write the final EMA weights (``unet/``), raw weights (``unet_raw/``) and metadata."""
    ema.save_pretrained(out / "unet", safe_serialization=True)
    unet.save_pretrained(out / "unet_raw", safe_serialization=True)
    sample_scheduler().save_pretrained(out / "scheduler")
    meta = {
        "config": asdict(cfg),
        "seed": cfg.seed,
        "steps": cfg.steps,
        "wall_time_s": round(wall, 1),
        "commit": commit,
        "versions": package_versions(),
        "torch_threads": torch.get_num_threads(),
        "loss_curve": losses,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    atomic_write_json(out / "training.json", meta)
    return meta
