"""TopK sparse autoencoder (Gao et al. 2024, "Scaling and evaluating sparse autoencoders"), the
kind ItD trains on text-encoder token states: ``z = TopK(relu(W_enc (x - b_pre) + b_enc))``,
``x_hat = W_dec z + b_pre``, decoder columns kept at unit norm, trained on the normalised MSE
``|x_hat - x|^2 / |x - mean(x)|^2`` with Adam. The auxiliary loss on dead latents (AuxK) is left out.

Saved as one safetensors file (``W_enc``, ``b_enc``, ``W_dec``, ``b_pre``; ``k`` and the caller's
facts, such as the text-encoder layer, in its metadata).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from tqdm.auto import tqdm

from erasekit.config import Config, check
from erasekit.errors import MissingPath, UserError
from erasekit.files import save_tensors

TENSORS = ("W_enc", "b_enc", "W_dec", "b_pre")


@dataclass(frozen=True)
class SAEConfig(Config):
    """``n_dirs`` latents, ``k`` active per input; ``steps`` Adam steps of ``batch`` inputs at ``lr``."""

    n_dirs: int = 2048
    k: int = 16
    steps: int = 1000
    batch: int = 256
    lr: float = 1e-3
    seed: int = 0

    def __post_init__(self) -> None:
        self.check_types()
        check(self.n_dirs >= 1, "n_dirs", f"must be >= 1, got {self.n_dirs}")
        check(1 <= self.k <= self.n_dirs, "k", f"must be in [1, n_dirs={self.n_dirs}], got {self.k}")
        check(self.steps >= 1, "steps", f"must be >= 1, got {self.steps}")
        check(self.batch >= 1, "batch", f"must be >= 1, got {self.batch}")
        check(self.lr > 0, "lr", f"must be > 0, got {self.lr}")
        check(self.seed >= 0, "seed", f"must be >= 0, got {self.seed}")


class SAE(torch.nn.Module):
    """A TopK sparse autoencoder on ``d``-dimensional inputs with ``n_dirs`` latents, ``k`` active."""

    def __init__(self, d: int, n_dirs: int, k: int) -> None:
        super().__init__()
        self.k = k
        self.W_enc = torch.nn.Parameter(torch.zeros(n_dirs, d))
        self.b_enc = torch.nn.Parameter(torch.zeros(n_dirs))
        self.W_dec = torch.nn.Parameter(torch.zeros(d, n_dirs))
        self.b_pre = torch.nn.Parameter(torch.zeros(d))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Sparse codes ``(..., n_dirs)``: the ``k`` largest pre-activations, ReLU'd, the rest 0."""
        pre = (x - self.b_pre) @ self.W_enc.T + self.b_enc
        top = pre.topk(self.k, dim=-1)
        return torch.zeros_like(pre).scatter(-1, top.indices, top.values.relu())

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return z @ self.W_dec.T + self.b_pre

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def tensors(self) -> dict[str, torch.Tensor]:
        return {name: getattr(self, name).detach().clone() for name in TENSORS}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], k: int) -> "SAE":
        missing = [n for n in TENSORS if n not in tensors]
        if missing:
            raise UserError(f"not a sparse autoencoder: tensors {', '.join(missing)} are missing")
        d, n_dirs = tensors["W_dec"].shape
        sae = cls(d, n_dirs, k)
        with torch.no_grad():
            for name in TENSORS:
                getattr(sae, name).copy_(tensors[name])
        return sae.requires_grad_(False)


def normalised_mse(sae: SAE, x: torch.Tensor) -> float:
    """``|x_hat - x|^2 / |x - mean(x)|^2`` over ``x`` ``(N, d)`` (1.0: no better than the mean)."""
    with torch.no_grad():
        return float(((sae(x) - x) ** 2).sum() / ((x - x.mean(0)) ** 2).sum().clamp_min(1e-12))


def train_sae(x: torch.Tensor, config: SAEConfig, progress: bool = True) -> SAE:
    """Train on inputs ``x`` ``(N, d)`` (float32): decoder initialised with random unit columns,
    encoder with its transpose, ``b_pre`` with the inputs' mean; decoder columns renormalised
    after every step. Deterministic in ``config.seed``."""
    x = x.detach().float()
    gen = torch.Generator().manual_seed(config.seed)
    sae = SAE(x.shape[1], config.n_dirs, config.k)
    with torch.no_grad():
        W = torch.randn(x.shape[1], config.n_dirs, generator=gen)
        sae.W_dec.copy_(W / W.norm(dim=0, keepdim=True))
        sae.W_enc.copy_(sae.W_dec.T)
        sae.b_pre.copy_(x.mean(0))
    variance = ((x - x.mean(0)) ** 2).sum(1).mean().clamp_min(1e-12)
    opt = torch.optim.Adam(sae.parameters(), lr=config.lr)
    for _ in tqdm(range(config.steps), desc="sae", disable=not progress):
        batch = x[torch.randint(0, x.shape[0], (min(config.batch, x.shape[0]),), generator=gen)]
        loss = ((sae(batch) - batch) ** 2).sum(1).mean() / variance
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            sae.W_dec.div_(sae.W_dec.norm(dim=0, keepdim=True).clamp_min(1e-12))
    return sae.requires_grad_(False)


def save_sae(sae: SAE, path: str | Path, meta: dict[str, str | int | float]) -> Path:
    """Write ``sae`` to a safetensors file (atomically), with ``k`` and ``meta`` as its metadata."""
    path = Path(path)
    save_tensors(path, sae.tensors(), meta={"k": str(sae.k), **{key: str(v) for key, v in meta.items()}})
    return path


def load_sae(path: str | Path) -> tuple[SAE, dict[str, str]]:
    """An SAE written by :func:`save_sae` and its metadata."""
    path = Path(path)
    if not path.is_file():
        raise MissingPath(f"no sparse autoencoder at {path}; train one with `erasekit sae train`")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
            tensors = {name: f.get_tensor(name) for name in f.keys()}
        k = int(meta["k"])
    except (SafetensorError, OSError, KeyError, ValueError) as exc:
        raise UserError(f"{path}: not a sparse autoencoder written by `erasekit sae train` "
                        f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    return SAE.from_tensors(tensors, k), meta
