"""The judge: a small CNN that says which shape, colour and background an image shows.

One head per attribute family of ShapeCanvas; the shape head has a ninth value, ``none`` (no
recognisable shape: blobs, fragments of shapes, noise, blank canvases), so that an erasure which
destroys the image cannot pass as a "correct" other shape. Trained (``erasekit testbed
train-judge``) on procedural images of every combination, held-out pairs included, with noise,
blur, contrast and saturation augmentation (down to 30%), so that the artefacts of generated
samples (grain, soft edges) are not read as texture and a faint residue of a shape still counts as
that shape. It is the measuring instrument of every testbed metric, so it is held to >= 0.99
accuracy per head on fresh procedural images, >= 0.95 on skulls and logos at 40% contrast, and
<= 1% skull or logo verdicts on noise, blank and blob images (``judge.json``).
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
        self.families = dict(families or data.JUDGE_FAMILIES)
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

    def concept_scores(self, images: ImageInput, family: str, value: str) -> torch.Tensor:
        """The judge's probability that each image shows ``value`` of ``family``, ``(B,)``."""
        return self.probabilities(images)[family][:, self.families[family].index(value)]

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


#: Label of a family a ``none`` image does not show (an empty canvas has no colour; noise has
#: neither colour nor background): left out of that head's loss.
IGNORE = -100


def labels_of(attrs: Sequence[data.Attributes], kinds: Sequence[str | None] | None = None) -> dict[str, torch.Tensor]:
    """Class indices per family; ``kinds`` (the ``none`` kind of each image) blanks what it lacks."""
    kinds = kinds or [None] * len(attrs)
    out: dict[str, list[int]] = {f: [] for f in data.JUDGE_FAMILIES}
    for a, kind in zip(attrs, kinds):
        for f, values in data.JUDGE_FAMILIES.items():
            lacks = (kind == "noise" and f != "shape") or (kind == "empty" and f == "colour")
            out[f].append(IGNORE if lacks else values.index(getattr(a, f)))
    return {f: torch.tensor(v) for f, v in out.items()}


def procedural_set(
    n: int, seed: int, progress: bool = True, none_share: float = 0.2
) -> tuple[torch.Tensor, list[data.Attributes], list[str | None]]:
    """``n`` fresh procedural images of every combination (held-out pairs included), ``none_share``
    of them ``none`` images of each kind (blob, empty, partial, noise)."""
    rng = np.random.default_rng([seed, 0x1D6E])
    imgs, attrs, kinds = [], [], []
    for _ in tqdm(range(n), desc="drawing", disable=not progress):
        a = data.sample_attributes(rng, heldout_pairs=None, none_share=none_share)
        kind = str(rng.choice(data.NONE_KINDS)) if a.shape == data.NONE else None
        imgs.append(data.render(a, int(rng.integers(2**31)), none_kind=kind))
        attrs.append(a)
        kinds.append(kind)
    return to_tensor(np.stack(imgs)), attrs, kinds


def fade(x: torch.Tensor, contrast: torch.Tensor | float = 1.0, saturation: torch.Tensor | float = 1.0) -> torch.Tensor:
    """Images pulled towards their mean grey (``contrast`` < 1) and towards grey scale
    (``saturation`` < 1); factors are scalars or ``(B, 1, 1, 1)``."""
    grey = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]).expand_as(x)
    x = grey + (x - grey) * saturation
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (mean + (x - mean) * contrast).clamp(0, 1)


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Contrast and saturation down to 30% (p=0.5 each), Gaussian noise (sigma <= 20/255, p=0.7)
    and a 3x3 box blur (p=0.3)."""
    b = x.shape[0]

    def factor(p: float) -> torch.Tensor:
        low = 0.3 + 0.7 * torch.rand(b, 1, 1, 1, generator=gen)
        return torch.where(torch.rand(b, 1, 1, 1, generator=gen) < p, low, torch.ones_like(low))

    x = fade(x, factor(0.5), factor(0.5))
    sigma = torch.rand(b, 1, 1, 1, generator=gen) * (20 / 255)
    noisy = (torch.rand(b, 1, 1, 1, generator=gen) < 0.7).float()
    x = x + noisy * sigma * torch.randn(x.shape, generator=gen)
    blur = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    use_blur = (torch.rand(b, 1, 1, 1, generator=gen) < 0.3).float()
    return (use_blur * blur + (1 - use_blur) * x).clamp(0, 1)


def accuracy(
    judge: Judge, x: torch.Tensor, attrs: Sequence[data.Attributes], kinds: Sequence[str | None] | None = None
) -> dict[str, float]:
    """Per-family accuracy of ``judge`` on images ``x`` with ground truth ``attrs`` (labels a
    ``none`` image lacks are not scored)."""
    probs = judge.probabilities(x)
    truth = labels_of(attrs, kinds)
    out = {}
    for f in judge.families:
        keep = truth[f] != IGNORE
        out[f] = float((probs[f].argmax(-1)[keep] == truth[f][keep]).float().mean())
    return out


def audit(judge: Judge, n: int, seed: int, progress: bool = True) -> dict:
    """The judge's bars beyond plain accuracy, on fresh images drawn from ``seed``.

    ``none``: accuracy of the ``none`` verdict on ``n`` images of each ``none`` kind;
    ``faded``: skull / logo accuracy at 50%, 40% and 30% contrast (``n`` images each);
    ``false_positives``: skull / logo verdicts on ``n`` noise, blank and blob images each."""
    rng = np.random.default_rng([seed, 0xA0D1])
    out: dict = {"none": {}, "faded": {}, "false_positives": {}}
    shape_values = judge.families["shape"]
    for kind in data.NONE_KINDS:
        imgs = []
        for _ in range(n):
            a = data.Attributes(data.NONE, data.COLOURS[rng.integers(8)], data.BACKGROUNDS[rng.integers(6)])
            imgs.append(data.render(a, int(rng.integers(2**31)), none_kind=kind))
        verdict = [shape_values[i] for i in judge.probabilities(np.stack(imgs))["shape"].argmax(-1).tolist()]
        out["none"][kind] = round(float(np.mean([v == data.NONE for v in verdict])), 4)
        if kind in ("noise", "empty", "blob"):
            for concept in ("skull", "logo"):
                out["false_positives"].setdefault(concept, {})[kind] = round(
                    float(np.mean([v == concept for v in verdict])), 4)
    for concept in ("skull", "logo"):
        imgs = [data.render(data.Attributes(concept, data.COLOURS[rng.integers(8)], data.BACKGROUNDS[rng.integers(6)]),
                            int(rng.integers(2**31))) for _ in range(n)]
        x = to_tensor(np.stack(imgs))
        for c in (0.5, 0.4, 0.3):
            verdict = judge.probabilities(fade(x, contrast=c))["shape"].argmax(-1)
            out["faded"].setdefault(concept, {})[str(c)] = round(
                float((verdict == shape_values.index(concept)).float().mean()), 4)
    return out


def train_judge(
    out: Path,
    n_images: int = 50000,
    epochs: int = 5,
    seed: int = 0,
    eval_images: int = 3000,
    progress: bool = True,
) -> dict:
    """Train the judge into ``out``; measure it on ``eval_images`` fresh images and :func:`audit` it."""
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    x, attrs, kinds = procedural_set(n_images, seed, progress)
    y = labels_of(attrs, kinds)
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
            loss = sum(F.cross_entropy(logits[f], y[f][idx], ignore_index=IGNORE) for f in judge.families)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.4f}")
    bar.close()
    judge.eval()
    x_eval, attrs_eval, kinds_eval = procedural_set(eval_images, seed + 1_000_003, progress)
    acc = accuracy(judge, x_eval, attrs_eval, kinds_eval)
    meta = {
        "seed": seed,
        "train_images": n_images,
        "epochs": epochs,
        "eval_images": eval_images,
        "eval_seed": seed + 1_000_003,
        "accuracy": acc,
        "audit": audit(judge, max(1, eval_images // 3), seed + 2_000_003, progress),
        "wall_time_s": round(time.perf_counter() - t0, 1),
        "commit": git_commit(),
        "versions": package_versions(),
    }
    judge.save(Path(out), meta)
    return meta
