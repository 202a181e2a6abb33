"""Linear concept probes on a text-to-image model's representations: is an erased concept still
decodable inside the model (suppressed), or gone as from a model that never learned it (deleted)?
The text-to-image counterpart of the language models' probing attack (:mod:`erasekit.lm.attacks.probe`)
and the representation side of "Suppression or Deletion" (Jang et al., WWW 2026).

**Protocol** (ours; the paper probes an image classifier, not a diffusion model):

- **Prompts.** Positives name the concept by the words the model learned for it (the domain's
  ``given`` and ``known`` prompts); negatives are the domain's prompts of the family's other values
  (``other``); the two classes are cut to the same size, so chance is 0.5. The probe is fitted on
  one prompt draw (``prompt_seed``) and tested on another (``test_prompt_seed``) with other noise.
- **Sites.** ``text``: the text encoder's output states the UNet receives, mean over the prompt's
  real tokens. ``mid``: the UNet mid-block's output, mean over spatial positions, for the prompt's
  conditional pass on a *blank canvas* (the zero sample) noised to fixed timesteps (fractions of the
  training schedule) with the seed's noise: the input is the same for every prompt, so all that
  separates the classes comes through the prompt (an image of the concept would hand the probe the
  answer through the pixels). Each (prompt, seed, timestep) is one sample, so the probe's
  direction lives in the mid block's channel space, where :mod:`erasekit.attacks.restore` moves it.
- **Fit.** Standardised logistic regression (sklearn), fitted on the *unedited* model's features,
  scored on the tested model's features for the held-out prompts: an erasure that removed the
  concept from a site brings the unedited probe's accuracy there toward chance.

The oracle (a model retrained without the concept) is scored by the same unedited probe. It shares
the frozen text encoder, so on the testbed the ``text`` site cannot tell deleted from suppressed for
methods that leave the encoder alone; the verdict is read at ``mid``. The oracle's UNet was
trained from the same initialisation seed but is another network: its features are in the unedited
probe's basis only as far as training kept them aligned, which is what the comparison tests.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np
import torch

from erasekit.concepts import OTHER, Concept
from erasekit.config import Config, check
from erasekit.evaluation import eval_prompts
from erasekit.pipelines import encode
from erasekit.sampling import noise_generator
from erasekit.stats import bootstrap_mean, bootstrap_stat

SITES = ("text", "mid")
POSITIVE = ("given", "known")


@dataclass(frozen=True)
class ProbeConfig(Config):
    """The probe's data: ``n_prompts`` per target split of the domain's prompt set (positives: given
    and known), ``seeds`` and ``timesteps`` (fractions of the training schedule) for the mid block."""

    n_prompts: int = 16
    seeds: tuple = (0, 1)
    test_seeds: tuple = (2,)
    timesteps: tuple = (0.9, 0.7, 0.5)
    prompt_seed: int = 0
    test_prompt_seed: int = 1
    max_iter: int = 2000
    batch: int = 64

    def __post_init__(self) -> None:
        for name in ("seeds", "test_seeds", "timesteps"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        self.check_types()
        check(self.n_prompts >= 4, "n_prompts", f"must be >= 4 (one negative per other value), got {self.n_prompts}")
        check(len(self.seeds) >= 1 and len(self.test_seeds) >= 1, "seeds", "seeds and test_seeds must not be empty")
        check(not set(self.seeds) & set(self.test_seeds), "test_seeds", "must differ from seeds (held-out noise)")
        check(all(0 < t <= 1 for t in self.timesteps) and self.timesteps, "timesteps",
              f"must be fractions in (0, 1], got {self.timesteps!r}")
        check(self.prompt_seed != self.test_prompt_seed, "test_prompt_seed", "must differ from prompt_seed")
        check(self.max_iter >= 1 and self.batch >= 1, "max_iter", "max_iter and batch must be >= 1")


@contextmanager
def mid_block_output(unet: torch.nn.Module) -> Iterator[list[torch.Tensor]]:
    """Record the UNet mid block's output ``(B, C, H, W)`` of every call while the block runs; the
    hook is removed on exit, also on error."""
    store: list[torch.Tensor] = []
    with unet.mid_block.register_forward_hook(lambda _m, _i, out: store.append(out.detach())):
        yield store


def probe_prompts(concept: Concept, n_prompts: int, prompt_seed: int) -> tuple[list[str], np.ndarray]:
    """Balanced probe prompts of a domain concept: ``(texts, labels)``, 1 = names the concept."""
    prompts = eval_prompts(concept, n_prompts, prompt_seed)
    pos = [p.text for p in prompts if p.split in POSITIVE]
    neg = [p.text for p in prompts if p.split == OTHER]
    k = min(len(pos), len(neg))
    return pos[:k] + neg[:k], np.array([1] * k + [0] * k)


def text_features(pipe: Any, prompts: list[str]) -> np.ndarray:
    """``text`` site: the encoder states the UNet receives, mean over real tokens ``(N, D)``."""
    enc = encode(pipe, prompts)
    mask = (torch.arange(enc.states.shape[1])[None] < enc.lengths[:, None]).to(enc.states.dtype)
    return ((enc.states * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)).numpy()


@torch.no_grad()
def mid_features(pipe: Any, prompts: list[str], seeds: tuple, timesteps: tuple, batch: int = 64) -> np.ndarray:
    """``mid`` site: the mid block's spatial-mean output on the noised blank canvas, ``(N, S, T, C)``
    for prompt ``i``, seed ``s`` (the noise of evaluation image ``(s, i)``) and timestep fraction ``t``."""
    unet, sched = pipe.unet, pipe.scheduler
    states = encode(pipe, prompts).states.to(unet.device, unet.dtype)
    size, chans = unet.config.sample_size, unet.config.in_channels
    ts = [min(int(f * sched.config.num_train_timesteps), sched.config.num_train_timesteps - 1) for f in timesteps]
    jobs = [(i, s, t) for i in range(len(prompts)) for s in seeds for t in ts]
    out = []
    for k in range(0, len(jobs), batch):
        chunk = jobs[k : k + batch]
        noise = torch.cat([torch.randn((1, chans, size, size), generator=noise_generator(s, i)) for i, s, _ in chunk])
        t = torch.tensor([t for _, _, t in chunk])
        x = sched.add_noise(torch.zeros_like(noise), noise, t).to(unet.device, unet.dtype)
        with mid_block_output(unet) as mids:
            unet(x, t.to(unet.device), encoder_hidden_states=states[[i for i, _, _ in chunk]])
        out.append(mids[0].float().mean((2, 3)).cpu())
    return torch.cat(out).reshape(len(prompts), len(seeds), len(ts), -1).numpy()


def features(pipe: Any, prompts: list[str], seeds: tuple,
             cfg: ProbeConfig) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per site, ``(x, prompt_index, seed)``: one row per sample, its prompt and its noise seed
    (the text states have no noise: the first seed)."""
    text = text_features(pipe, prompts)
    mid = mid_features(pipe, prompts, seeds, cfg.timesteps, cfg.batch)
    n, s, t, c = mid.shape
    seed_of = np.tile(np.repeat(np.asarray(seeds), t), n)
    return {"text": (text, np.arange(n), np.full(n, seeds[0])),
            "mid": (mid.reshape(n * s * t, c), np.repeat(np.arange(n), s * t), seed_of)}


def family_directions(base: Any, concept: Concept, cfg: ProbeConfig) -> torch.Tensor:
    """An orthonormal basis ``(C, k)`` of the mid-block directions that tell the values of the
    concept's family apart: a multinomial logistic regression (classes balanced) on the unedited
    model's ``mid`` features of the concept's given and known prompts and the other values'
    prompts, its class weights taken to the raw feature space and orthonormalised."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    prompts = [p for p in eval_prompts(concept, cfg.n_prompts, cfg.prompt_seed) if p.split in (*POSITIVE, OTHER)]
    labels = np.array([(p.attributes or {})[concept.family] for p in prompts])
    mid = mid_features(base, [p.text for p in prompts], cfg.seeds, cfg.timesteps, cfg.batch)
    n, s, t, c = mid.shape
    x, y = mid.reshape(n * s * t, c), np.repeat(labels, s * t)
    scaler = StandardScaler().fit(x)
    clf = LogisticRegression(max_iter=cfg.max_iter, class_weight="balanced").fit(scaler.transform(x), y)
    w = torch.as_tensor(clf.coef_ / scaler.scale_, dtype=torch.float32)  # (values, C)
    return torch.linalg.qr(w.T).Q


@dataclass
class LinearProbe:
    """A fitted logistic-regression probe: ``score(x) = (x - mean) / scale . coef + intercept``."""

    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float

    @classmethod
    def fit(cls, x: np.ndarray, y: np.ndarray, max_iter: int = 2000, seed: int = 0) -> "LinearProbe":
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import StandardScaler

        scaler = StandardScaler().fit(x)
        clf = LogisticRegression(max_iter=max_iter, random_state=seed).fit(scaler.transform(x), y)
        return cls(scaler.mean_, scaler.scale_, clf.coef_[0], float(clf.intercept_[0]))

    def score(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.mean) / self.scale) @ self.coef + self.intercept

    def direction(self) -> torch.Tensor:
        """The unit normal of the decision boundary in the raw feature space."""
        w = torch.as_tensor(self.coef / self.scale, dtype=torch.float32)
        return w / w.norm()


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for ``labels`` (1 = concept): the chance that a concept
    sample outscores a non-concept one (ties count half); threshold-free, 0.5 is chance."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    if not len(pos) or not len(neg):
        return 0.5
    return float(((pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()) / (len(pos) * len(neg)))


@dataclass
class SiteResult:
    """A probe on one model at one site: its accuracy (the unedited model's threshold) and its
    separation, the AUC of its score for concept vs the rest (threshold-free: an erasure that only
    shifts every score past the threshold keeps it), each with a 95% interval (prompts resampled)."""

    accuracy: float
    accuracy_ci: tuple[float, float]
    auc: float
    auc_ci: tuple[float, float]
    n: int
    samples: tuple = field(default=())  # (prompt_index, seed, accuracy over its timesteps)


@dataclass
class ProbeSet:
    """The unedited model's probes, fitted once, and the held-out prompts to score models on."""

    cfg: ProbeConfig
    probes: dict[str, LinearProbe]
    test_prompts: list[str]
    test_labels: np.ndarray

    @classmethod
    def fit(cls, base: Any, concept: Concept, cfg: ProbeConfig = ProbeConfig()) -> "ProbeSet":
        """Fit a probe per site on ``base`` (the unedited model, as it is when called)."""
        prompts, labels = probe_prompts(concept, cfg.n_prompts, cfg.prompt_seed)
        probes = {site: LinearProbe.fit(x, labels[owner], cfg.max_iter)
                  for site, (x, owner, _) in features(base, prompts, cfg.seeds, cfg).items()}
        return cls(cfg, probes, *probe_prompts(concept, cfg.n_prompts, cfg.test_prompt_seed))

    def score(self, pipe: Any) -> dict[str, SiteResult]:
        """The unedited probes on ``pipe``'s features (as it is: erasure applied or not) for the
        held-out prompts and seeds."""
        out = {}
        for site, (x, owner, seed) in features(pipe, self.test_prompts, self.cfg.test_seeds, self.cfg).items():
            s, y = self.probes[site].score(x), self.test_labels[owner]
            correct = ((s > 0) == (y == 1)).astype(float)
            mean, low, high = bootstrap_mean(correct, groups=owner)
            rows = [np.flatnonzero(owner == i) for i in range(len(self.test_prompts))]

            def resampled_auc(picks: np.ndarray, rows=rows, s=s, y=y) -> float:
                idx = np.concatenate([rows[i] for i in picks])
                return auc(s[idx], y[idx])

            cells = sorted({(int(i), int(z)) for i, z in zip(owner, seed)})  # per prompt and seed: mean over timesteps
            samples = tuple((i, z, float(correct[(owner == i) & (seed == z)].mean())) for i, z in cells)
            out[site] = SiteResult(mean, (low, high), auc(s, y), bootstrap_stat(len(rows), resampled_auc), len(correct),
                                   samples)
        return out


def verdict(model: SiteResult, oracle: SiteResult) -> str:
    """``deleted`` when the model's probe accuracy and AUC are each within the oracle's 95% interval
    or below it (the concept is no more decodable than in a model that never learned it), else
    ``suppressed``; ``uninformative`` when the oracle itself decodes it (AUC >= 0.95: the site
    carries the prompt's words, not what the model learned, as a frozen shared encoder does)."""
    if oracle.auc >= 0.95:
        return "uninformative"
    deleted = model.accuracy <= oracle.accuracy_ci[1] and model.auc <= oracle.auc_ci[1]
    return "deleted" if deleted else "suppressed"
