"""The judge: a small CNN that says which shape, colour and background an image shows.

One head per attribute family of ShapeCanvas. Trained (``erasekit testbed train-judge``) on
procedural images of every combination, held-out pairs included, with noise and blur
augmentation so that the artefacts of generated samples (grain, soft edges) are not read as
texture. It is the measuring instrument of every testbed metric, so it is held to >= 0.99
accuracy per head on fresh procedural images.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image
from tqdm.auto import tqdm

from erasekit.errors import MissingPath, unreadable_as_user_error
from erasekit.files import atomic_write_json, load_tensors, save_tensors
from erasekit.provenance import git_commit, package_versions
from erasekit.testbed import data

ImageInput = torch.Tensor | np.ndarray | Sequence[Image.Image]


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class Judge(nn.Module):
    """CNN (32-64-128 channels, global pooling) with one linear head per attribute family."""

    def __init__(self, families: dict[str, tuple[str, ...]] | None = None) -> None:
        super().__init__()
        self.families = dict(families or data.FAMILIES)
        self.features = nn.Sequential(
            _block(3, 32), nn.MaxPool2d(2), _block(32, 64), nn.MaxPool2d(2), _block(64, 128),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.heads = nn.ModuleDict({f: nn.Linear(128, len(v)) for f, v in self.families.items()})

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """128-d features of images ``(B, 3, 32, 32)`` in [0, 1] (used for Frechet distances)."""
        return self.features(x * 2 - 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.embed(x)
        return {f: head(h) for f, head in self.heads.items()}

    @torch.no_grad()
    def probabilities(self, images: ImageInput, batch: int = 512) -> dict[str, torch.Tensor]:
        """Per family, ``(B, n_values)`` softmax probabilities."""
        x = to_tensor(images)
        was = self.training
        self.eval()
        outs: dict[str, list[torch.Tensor]] = {f: [] for f in self.families}
        for i in range(0, x.shape[0], batch):
            for f, logits in self(x[i : i + batch]).items():
                outs[f].append(logits.float().softmax(-1))
        self.train(was)
        return {f: torch.cat(v) for f, v in outs.items()}

    @torch.no_grad()
    def image_features(self, images: ImageInput, batch: int = 512) -> torch.Tensor:
        """Penultimate 128-d features ``(B, 128)`` in float64 (the space of Frechet distances)."""
        x = to_tensor(images)
        was = self.training
        self.eval()
        feats = torch.cat([self.embed(x[i : i + batch]) for i in range(0, x.shape[0], batch)])
        self.train(was)
        return feats.double()

    def predict(self, images: ImageInput) -> list[dict[str, str]]:
        """The judged attributes of each image, e.g. ``{"shape": "skull", "colour": "red", ...}``."""
        probs = self.probabilities(images)
        idx = {f: p.argmax(-1).tolist() for f, p in probs.items()}
        n = len(next(iter(idx.values())))
        return [{f: self.families[f][idx[f][i]] for f in self.families} for i in range(n)]

    def save(self, folder: Path, meta: dict | None = None) -> None:
        folder = Path(folder)
        save_tensors(folder / "judge.safetensors", self.state_dict())
        atomic_write_json(folder / "config.json", {"families": {k: list(v) for k, v in self.families.items()}})
        if meta is not None:
            atomic_write_json(folder / "judge.json", meta)

    @classmethod
    def load(cls, folder: Path) -> "Judge":
        folder = Path(folder)
        if not (folder / "judge.safetensors").exists():
            raise MissingPath(
                f"no judge weights in {folder} (expected judge.safetensors); "
                "train one with `erasekit testbed train-judge --out DIR`"
            )
        with unreadable_as_user_error(folder, "judge"):
            cfg = json.loads((folder / "config.json").read_text())
            judge = cls({k: tuple(v) for k, v in cfg["families"].items()})
            judge.load_state_dict(load_tensors(folder / "judge.safetensors"))
        return judge.eval()


def load_judge(folder: str | Path | None = None) -> Judge:
    """The judge from ``folder``, by default the one shipped inside the package."""
    from erasekit.testbed.pipeline import shipped_weights

    return Judge.load(Path(folder) if folder is not None else shipped_weights() / "judge")


def to_tensor(images: ImageInput) -> torch.Tensor:
    """Images as float ``(B, 3, H, W)`` in [0, 1]: from NCHW floats, NHWC uint8/float arrays, or PIL."""
    if isinstance(images, torch.Tensor):
        x = images.float()
        if x.dim() == 4 and x.shape[1] != 3 and x.shape[-1] == 3:
            x = x.permute(0, 3, 1, 2)
        return x / 255.0 if images.dtype == torch.uint8 else x
    if isinstance(images, np.ndarray):
        arr = images.astype(np.float32) / 255.0 if images.dtype == np.uint8 else images.astype(np.float32)
        if arr.ndim == 3:
            arr = arr[None]
        return torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2)
    arrs = [np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0 for im in images]
    return torch.from_numpy(np.stack(arrs)).permute(0, 3, 1, 2)


def labels_of(attrs: Sequence[data.Attributes]) -> dict[str, torch.Tensor]:
    return {f: torch.tensor([values.index(getattr(a, f)) for a in attrs]) for f, values in data.FAMILIES.items()}


def procedural_set(n: int, seed: int, progress: bool = True) -> tuple[torch.Tensor, list[data.Attributes]]:
    """``n`` fresh procedural images of every combination (held-out pairs included)."""
    imgs, attrs = [], []
    for s in tqdm(data.iter_samples(n, seed, heldout_pairs=None), total=n, desc="drawing", disable=not progress):
        imgs.append(s.image)
        attrs.append(s.attributes)
    return to_tensor(np.stack(imgs)), attrs


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Gaussian noise (sigma <= 20/255, p=0.7) and a 3x3 box blur (p=0.3)."""
    b = x.shape[0]
    sigma = torch.rand(b, 1, 1, 1, generator=gen) * (20 / 255)
    noisy = (torch.rand(b, 1, 1, 1, generator=gen) < 0.7).float()
    x = x + noisy * sigma * torch.randn(x.shape, generator=gen)
    blur = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    use_blur = (torch.rand(b, 1, 1, 1, generator=gen) < 0.3).float()
    return (use_blur * blur + (1 - use_blur) * x).clamp(0, 1)


def accuracy(judge: Judge, x: torch.Tensor, attrs: Sequence[data.Attributes]) -> dict[str, float]:
    """Per-family accuracy of ``judge`` on images ``x`` with ground truth ``attrs``."""
    probs = judge.probabilities(x)
    truth = labels_of(attrs)
    return {f: float((probs[f].argmax(-1) == truth[f]).float().mean()) for f in judge.families}


def train_judge(
    out: Path,
    n_images: int = 30000,
    epochs: int = 4,
    seed: int = 0,
    eval_images: int = 3000,
    progress: bool = True,
) -> dict:
    """Train the judge into ``out`` and measure it on ``eval_images`` fresh images."""
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    x, attrs = procedural_set(n_images, seed, progress)
    y = labels_of(attrs)
    judge = Judge()
    batch = 128
    steps = epochs * (n_images // batch)
    opt = torch.optim.AdamW(judge.parameters(), lr=2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps)
    gen = torch.Generator().manual_seed(seed)
    bar = tqdm(total=steps, desc="training judge", disable=not progress)
    judge.train()
    for _ in range(epochs):
        perm = torch.randperm(n_images, generator=gen)
        for i in range(0, n_images - batch + 1, batch):
            idx = perm[i : i + batch]
            logits = judge(_augment(x[idx], gen))
            loss = sum(F.cross_entropy(logits[f], y[f][idx]) for f in judge.families)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.4f}")
    bar.close()
    judge.eval()
    x_eval, attrs_eval = procedural_set(eval_images, seed + 1_000_003, progress)
    acc = accuracy(judge, x_eval, attrs_eval)
    meta = {
        "seed": seed,
        "train_images": n_images,
        "epochs": epochs,
        "eval_images": eval_images,
        "eval_seed": seed + 1_000_003,
        "accuracy": acc,
        "wall_time_s": round(time.perf_counter() - t0, 1),
        "commit": git_commit(),
        "versions": package_versions(),
    }
    judge.save(Path(out), meta)
    return meta
