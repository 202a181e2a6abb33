"""CGCE: Classifier-Guided Concept Erasure (Nguyen & Patel, arXiv 2511.05865, 2025).

Reconstructed from the paper's abstract and project page; no code is public. What they state: a
lightweight cross-attention classifier on text embeddings, trained on paired safe and unsafe
prompts (written by an LLM), flags a prompt; a flagged prompt's embedding is refined by gradient
steps on the classifier before it conditions the model; several concept classifiers combine by
aggregating their gradients; no model weight changes.

What is inferred here:

- **Classifier**: ``heads`` learned queries attend over the token states through key and value
  projections of width ``hidden``; a linear readout of the pooled values is the logit. It reads
  the padded token states exactly as the UNet receives them.
- **Training data**, built without an LLM from the concept and the installed domains' built-in
  concepts. Positives: the concept's erase prompts, each target phrase alone, and the target
  phrases put into the other concepts' templates. Negatives: the preserve and guide prompts, the
  empty prompt, the other concepts' erase prompts, and this concept's templates filled with their
  target phrases. A negative that shares a content word with a target phrase is dropped. At most
  ``max_prompts`` of each are kept (drawn with ``seed``); trained with class-weighted binary cross
  entropy and Adam on minibatches.
- **Refinement**: a flagged embedding (probability above ``threshold``) takes ``refine_steps``
  normalised gradient steps on ``sum_k softplus(logit_k)`` over the classifiers that flagged it,
  each step of length ``refine_lr`` times the embedding's norm. The attention weights are held
  fixed in that gradient, so each token moves against the readout direction in proportion to the
  attention it gets. With them free the concept stayed in the image, presumably because moving the
  classifier's attention lowers the score more cheaply (testbed ``heart``, 8 prompts x 2 seeds, 10
  steps of 0.1: 12 of 16 images still hearts; 15 of 16 with a LayerNorm and GELU in the
  classifier; 0 of 16 with the weights fixed). The gradients of several applied CGCE artifacts add
  up (one shared hook; the largest ``refine_steps`` and ``refine_lr`` of the applied ones are
  used). Toward a caller who differentiates through it, the refinement is the identity (its change
  is added as a constant).
- **Where it acts**: a forward-pre hook on the UNet's ``encoder_hidden_states``: the conditional
  half of a classifier-free-guidance batch, every row of any other batch. An embedding no
  classifier flags passes through untouched, bit for bit.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass, field
from typing import ClassVar, Callable

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DiffusionPipeline
from tqdm.auto import tqdm

from erasekit.artifact import ADAPTER_PREFIX
from erasekit.concepts import Concept, content_words, fill
from erasekit.erasure import METHODS, Erasure, Method, MethodConfig, check
from erasekit.errors import UserError
from erasekit.methods.negative_prompt import cfg_halves
from erasekit.pipelines import call_states, encode, fingerprint, unet_call_hook, with_call_states

#: The classifier's tensors in the artifact: ``adapter.classifier.<parameter>``.
CLASSIFIER = "classifier."


@dataclass(frozen=True)
class CGCEConfig(MethodConfig):
    """The classifier (``hidden`` width, ``heads`` queries), its training (``iterations`` Adam steps
    of ``batch`` prompts at ``lr``, at most ``max_prompts`` positives and negatives each) and the
    inference guard (flag above ``threshold``; ``refine_steps`` steps of ``refine_lr`` times the
    embedding's norm). The defaults suit the testbed (docs/guide.md); the paper gives none."""

    hidden: int = 64
    heads: int = 4
    iterations: int = 300
    batch: int = 64
    lr: float = 3e-3
    max_prompts: int = 1024
    threshold: float = 0.5
    refine_steps: int = 10
    refine_lr: float = 0.1
    seed: int = 0

    bounds: ClassVar[dict[str, tuple[str, float]]] = {"lr": (">", 0)}

    def __post_init__(self) -> None:
        self.check_types()
        check(self.heads >= 1, "heads", f"must be an integer >= 1, got {self.heads}")
        check(self.hidden >= 1 and self.hidden % self.heads == 0, "hidden",
              f"must be a positive multiple of heads ({self.heads}), got {self.hidden}")
        check(self.iterations >= 1, "iterations", f"must be an integer >= 1, got {self.iterations}")
        check(self.batch >= 1, "batch", f"must be an integer >= 1, got {self.batch}")
        check(self.max_prompts >= 1, "max_prompts", f"must be an integer >= 1, got {self.max_prompts}")
        check(0 < self.threshold < 1, "threshold", f"must be a probability in (0, 1), got {self.threshold}")
        check(self.refine_steps >= 1, "refine_steps", f"must be an integer >= 1, got {self.refine_steps}")
        check(self.refine_lr > 0, "refine_lr", f"must be > 0 (a step's length relative to the embedding's norm), "
              f"got {self.refine_lr}")


class ConceptClassifier(torch.nn.Module):
    """Token states ``(B, L, D)`` -> concept logits ``(B,)``: ``heads`` learned queries cross-attend
    over the tokens, a linear readout of the pooled values gives the logit."""

    def __init__(self, dim: int, hidden: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.key = torch.nn.Linear(dim, hidden)
        self.value = torch.nn.Linear(dim, hidden)
        self.query = torch.nn.Parameter(torch.randn(heads, hidden // heads) / math.sqrt(hidden // heads))
        self.out = torch.nn.Linear(hidden, 1)

    def forward(self, states: torch.Tensor, fixed_attention: bool = False) -> torch.Tensor:
        """The logits; with ``fixed_attention`` the attention weights are constants to autograd."""
        h = states.float()
        b, n, _ = h.shape
        keys = self.key(h).view(b, n, self.heads, -1)
        values = self.value(h).view(b, n, self.heads, -1)
        weights = torch.einsum("bnhd,hd->bhn", keys, self.query / math.sqrt(keys.shape[-1])).softmax(-1)
        if fixed_attention:
            weights = weights.detach()
        return self.out(torch.einsum("bhn,bnhd->bhd", weights, values).reshape(b, -1)).squeeze(-1)

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], heads: int) -> "ConceptClassifier":
        hidden, dim = tensors["key.weight"].shape
        clf = cls(dim, hidden, heads)
        clf.load_state_dict(tensors)
        return clf.requires_grad_(False).eval()


# -- training -----------------------------------------------------------------------------------------
def other_concepts(concept: Concept) -> list[Concept]:
    """The installed domains' built-in concepts other than ``concept``."""
    from erasekit.domain import builtin_concepts

    return [domain.concept(name) for name, domain in sorted(builtin_concepts().items()) if name != concept.name]


def training_prompts(concept: Concept, others: list[Concept]) -> tuple[list[str], list[str]]:
    """``(positives, negatives)`` for the concept's classifier (see the module docstring), deduplicated."""
    targets = concept.target
    words = set().union(*(content_words(t) for t in targets))
    positives = [*concept.erase_prompts(), *targets,
                 *(fill(t, w) for o in others for t in o.templates for w in targets)]
    negatives = [*concept.preserve, *concept.guide_prompts(), "",
                 *(p for o in others for p in o.erase_prompts()),
                 *(fill(t, w) for o in others for w in o.target for t in concept.templates)]
    negatives = [p for p in negatives if not content_words(p) & words]
    return list(dict.fromkeys(positives)), list(dict.fromkeys(negatives))


def train_classifier(states: torch.Tensor, labels: torch.Tensor, config: CGCEConfig,
                     progress: bool = False) -> tuple[ConceptClassifier, list[float]]:
    """Fit a classifier on token states ``(N, L, D)`` with 0/1 ``labels`` (initialisation and batches
    drawn from ``config.seed``); returns it and the loss of each step."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        clf = ConceptClassifier(states.shape[-1], config.hidden, config.heads)
    gen = torch.Generator().manual_seed(config.seed)
    opt = torch.optim.Adam(clf.parameters(), lr=config.lr)
    pos = float(labels.sum())
    pos_weight = torch.tensor((len(labels) - pos) / max(pos, 1.0))
    losses = []
    for _ in tqdm(range(config.iterations), desc="cgce", disable=not progress):
        idx = torch.randint(len(labels), (min(config.batch, len(labels)),), generator=gen)
        loss = F.binary_cross_entropy_with_logits(clf(states[idx]), labels[idx], pos_weight=pos_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return clf.requires_grad_(False).eval(), losses


# -- the guard ----------------------------------------------------------------------------------------
@dataclass(eq=False)
class Member:
    """One applied CGCE artifact: its classifier, threshold and refinement settings."""

    classifier: ConceptClassifier
    threshold: float
    steps: int
    lr: float


def refine(states: torch.Tensor, members: list[Member]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(refined states, flagged rows)``: each row some classifier flags takes normalised gradient
    steps lowering the summed ``softplus(logit)`` of the classifiers that flagged it, their attention
    weights held fixed in the gradient; other rows are returned untouched."""
    x0 = states.detach().float()
    with torch.no_grad():
        logits = torch.stack([m.classifier(x0) for m in members], 1)  # (B, classifiers)
    flags = torch.sigmoid(logits) > torch.tensor([m.threshold for m in members], device=logits.device)
    rows = flags.any(1)
    if not bool(rows.any()):
        return states, rows
    x, weight = x0[rows], flags[rows].float()
    with torch.enable_grad():
        length = max(m.lr for m in members) * x.flatten(1).norm(dim=1).view(-1, 1, 1)
        for _ in range(max(m.steps for m in members)):
            x = x.detach().requires_grad_(True)
            score = torch.stack([m.classifier(x, fixed_attention=True) for m in members], 1)
            (grad,) = torch.autograd.grad((F.softplus(score) * weight).sum(), x)
            norm = grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1)
            x = x - length * grad / norm
    out = states.clone()
    out[rows] = states[rows] + (x.detach() - x0[rows]).to(states)  # identity toward gradients from the UNet
    return out, rows


@dataclass(eq=False)
class Guard:
    """The one UNet hook of every CGCE artifact applied to a pipeline."""

    members: list[Member] = field(default_factory=list)
    remove: Callable[[], None] | None = None

    def pre_hook(self, module: torch.nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
        states = call_states(args, kwargs)
        if states is None or not self.members:
            return None
        half = states.shape[0] // 2 if cfg_halves(kwargs, args) is not None else 0
        refined, flagged = refine(states[half:], self.members)
        if not bool(flagged.any()):
            return None
        return with_call_states(args, kwargs, torch.cat([states[:half], refined]))


#: The guard of each UNet with CGCE artifacts applied.
GUARDS: "weakref.WeakKeyDictionary[torch.nn.Module, Guard]" = weakref.WeakKeyDictionary()


@METHODS.register("cgce")
class CGCE(Method):
    """CGCE: a classifier on text embeddings flags the concept; its gradient refines them (Nguyen & Patel 2025)."""

    config_class = CGCEConfig
    group = None
    test_config = {"iterations": 60, "max_prompts": 128, "batch": 32}

    def fit(self, pipe: DiffusionPipeline, concept: Concept, config: MethodConfig, progress: bool = True) -> Erasure:
        assert isinstance(config, CGCEConfig)
        base_fp = fingerprint(pipe)
        rng = np.random.default_rng(config.seed)
        positives, negatives = training_prompts(concept, other_concepts(concept))
        positives, negatives = ([p[i] for i in sorted(rng.permutation(len(p))[: config.max_prompts])]
                                for p in (positives, negatives))
        states = encode(pipe, positives + negatives).states
        labels = torch.cat([torch.ones(len(positives)), torch.zeros(len(negatives))])
        clf, losses = train_classifier(states, labels, config, progress)
        with torch.no_grad():
            accuracy = float(((clf(states) > 0).float() == labels).float().mean())
        tensors = {f"{ADAPTER_PREFIX}{CLASSIFIER}{k}": v.detach().clone() for k, v in clf.state_dict().items()}
        extra = {"positives": len(positives), "negatives": len(negatives), "train_accuracy": round(accuracy, 4),
                 "final_loss": round(float(np.mean(losses[-10:])), 4)}
        return Erasure(self.name, config, concept, base_fp, tensors, extra=extra)

    def install(self, pipe: DiffusionPipeline, erasure: Erasure) -> Callable[[], None]:
        config = erasure.config
        assert isinstance(config, CGCEConfig)
        clf = ConceptClassifier.from_tensors(erasure.adapter(CLASSIFIER), config.heads)
        dim = encode(pipe, [""]).states.shape[-1]
        if clf.key.in_features != dim:
            raise UserError(f"this CGCE classifier reads {clf.key.in_features}-dimensional token states but the "
                            f"pipeline's text encoder gives {dim}; fit it on this pipeline")
        member = Member(clf.to(pipe.unet.device), config.threshold, config.refine_steps, config.refine_lr)
        guard = GUARDS.get(pipe.unet)
        if guard is None:
            guard = GUARDS[pipe.unet] = Guard()
            guard.remove = unet_call_hook(pipe, guard.pre_hook, with_pre=True)
        guard.members.append(member)

        def detach() -> None:
            guard.members.remove(member)
            if not guard.members and guard.remove is not None:
                guard.remove()
                GUARDS.pop(pipe.unet, None)

        return detach
