"""Image quality: Frechet distance and KID in the judge's feature space.

FID (Heusel et al., 2017) and KID (Binkowski et al., 2018) need Inception-v3, which cannot be
downloaded here; torchmetrics' implementations take any feature extractor, so the testbed uses
the judge's features (:meth:`erasekit.domain.Judge.image_features`; the testbed judge's 128-d
penultimate layer: the in-domain FD suggested for synthetic testbeds). Two references: the
domain's real drawings of the same attributes (``fd_real``, ``kid_real``), and
the unedited model's images for the same prompts and seeds (``fd_base``, ``kid_base``).
Intervals: 95% bootstrap over images (paired resampling).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

from erasekit.metrics.base import METRICS, Answers, Metric, Value
from erasekit.stats import bootstrap_stat

N_BOOT = 100


class _Precomputed(torch.nn.Module):
    """Feature "extractor" for torchmetrics when features are computed once up front."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """FD between feature sets ``a`` and ``b`` ``(n, d)`` (torchmetrics' FID on given features)."""
    fid = FrechetInceptionDistance(feature=_Precomputed(a.shape[1]))
    fid.update(a.double(), real=True)
    fid.update(b.double(), real=False)
    return float(fid.compute())


def kernel_distance(a: torch.Tensor, b: torch.Tensor, subsets: int = 20, seed: int = 0) -> float:
    """KID (polynomial-kernel MMD^2, torchmetrics) between feature sets, subsets of <= 100."""
    size = min(100, a.shape[0], b.shape[0])
    with warnings.catch_warnings():  # "will save all extracted features": a few hundred 128-d rows here
        warnings.simplefilter("ignore")
        kid = KernelInceptionDistance(feature=_Precomputed(a.shape[1]), subsets=subsets, subset_size=size)
    kid.update(a.double(), real=True)
    kid.update(b.double(), real=False)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        mean, _ = kid.compute()
    return float(mean)


def real_images(answers: Answers) -> np.ndarray:
    """The domain's drawings of each image's prompt attributes (image order)."""
    out = np.empty_like(answers.images)
    for i, seed, p, j in answers.rows():
        out[j] = answers.domain.reference_image(p.attributes, seed, i)
    return out


def _distances(gen: torch.Tensor, ref: torch.Tensor, name: str) -> dict[str, Value]:
    n = gen.shape[0]
    if n < 3:
        return {}
    fd = frechet_distance(ref, gen)
    kid = kernel_distance(ref, gen)
    fd_ci = bootstrap_stat(n, lambda idx: frechet_distance(ref[idx], gen[idx]), n_boot=N_BOOT)
    kid_ci = bootstrap_stat(n, lambda idx: kernel_distance(ref[idx], gen[idx], subsets=5), n_boot=N_BOOT // 2)
    meta = {"features": f"judge penultimate ({gen.shape[1]}-d)", "n_boot": N_BOOT}
    return {
        f"fd_{name}": Value(fd, *fd_ci, higher_is_better=False, n=n, meta=meta),
        f"kid_{name}": Value(kid, *kid_ci, higher_is_better=False, n=n, meta=meta),
    }


@METRICS.register("quality")
class Quality(Metric):
    """Quality: FD and KID (judge features) against real drawings and the unedited model."""

    higher_is_better = False
    needs = ("judge",)
    order = 50
    report = {"fd_real": "FD<br>vs real", "fd_base": "FD<br>vs unedited"}

    def compute(self, answers: Answers) -> dict[str, Value]:
        features = answers.judge.image_features
        gen = features(answers.images)
        out: dict[str, Value] = {}
        if answers.domain is not None and all(p.attributes is not None for p in answers.prompts):
            out.update(_distances(gen, features(real_images(answers)), "real"))
        if answers.base_images is not None:
            out.update(_distances(gen, features(answers.base_images), "base"))
        return out
