"""SPM: the concept Semi-Permeable Membrane, a one-dimensional adapter (Lyu et al., CVPR 2024, "One-dimensional
Adapter to Rule Them All: Concepts, Diffusion Models and Erasing Applications"; github.com/Con6924/SPM).

A rank-``rank`` (paper: 1) low-rank adapter ``scale * up @ down`` beside every Linear and 1x1
convolution inside the UNet's transformer blocks (``proj_in``, ``attn1``, ``attn2``, ``ff``,
``proj_out``), trained with

- ESD's erase objective (:func:`erasekit.losses.esd_target`, ``x_t`` sampled as :mod:`.esd` does),
  ``|e_{theta+Delta}(x_t, c) - [e_theta(x_t) - eta (e_theta(x_t, c) - e_theta(x_t))]|^2``;
- latent anchoring, ``la_strength * |e_{theta+Delta}(x_t, a) - e_theta(x_t, a)|^2`` (mean over
  ``anchors`` anchor embeddings ``a``): Gaussian embeddings of the concept's shape, each kept with
  probability ``1 - cos(a, c)`` and rescaled to ``U(0.8, 1.2) |c|``.

Facilitated transport at inference: the adapter's multiplier for a prompt is
``max(cos(prompt states, concept states), token overlap)`` over the concept's target phrases
(the states flattened over tokens, each phrase encoded alone; the overlap is the share of the
phrase's tokens found in the prompt), so prompts far from the concept see a weak adapter. A
multiplier below ``gate_threshold`` is exactly 0 (the adapter is skipped). The multiplier is
computed per sample from the UNet's ``encoder_hidden_states``; on a classifier-free-guidance batch
the conditional half's multiplier also scales the unconditional half, as the official pipeline's
single multiplier per prompt does. Token ids are known for states the pipeline's text encoder
produced while the adapter is installed (else the multiplier is the cosine alone). Several SPM
artifacts applied together add their gated adapters.

The adapter is a hook, not a weight edit (``group = None``): its factors are carried in the
artifact as ``adapter.<module>.down`` / ``.up`` (see :data:`erasekit.artifact.ADAPTER_PREFIX`).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import ClassVar, Any, Callable

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DiffusionPipeline
from diffusers.models.transformers.transformer_2d import Transformer2DModel
from tqdm.auto import tqdm

from erasekit.artifact import ADAPTER_PREFIX
from erasekit.concepts import Concept
from erasekit.erasure import METHODS, Erasure, Method, MethodConfig, check
from erasekit.errors import UserError
from erasekit.lora import uniform_down
from erasekit.losses import esd_target
from erasekit.methods.esd import latent_shape, sample_xt
from erasekit.methods.negative_prompt import cfg_halves
from erasekit.pipelines import call_states, encode, fingerprint, frozen, max_length, unet_call_hook

#: Token-id sets remembered per SPM hook (states the text encoder produced; oldest dropped first).
MEMORY = 4096


@dataclass(frozen=True)
class SPMConfig(MethodConfig):
    """Adapter size (``rank``, ``alpha``: scale ``alpha / rank``), training (``iterations``, ``lr``,
    ESD's ``eta``, ``start_guidance``, ``ddim_steps``), latent anchoring (``la_strength``,
    ``anchors``) and the gate (``transport``: facilitated transport on, else multiplier 1 for every
    prompt; ``gate_threshold``: a multiplier below it is 0).

    Paper (SD 1.4): rank 1, alpha 1, 3,000 iterations at lr 1e-4, la_strength 1000, 4 anchors. The
    defaults suit the 2M-parameter testbed (see docs/guide.md).
    """

    rank: int = 1
    alpha: float = 1.0
    iterations: int = 200
    lr: float = 2e-3
    eta: float = 1.0
    start_guidance: float = 3.0
    ddim_steps: int = 25
    la_strength: float = 100.0
    anchors: int = 4
    transport: bool = True
    gate_threshold: float = 0.0
    seed: int = 0

    bounds: ClassVar[dict[str, tuple[str, float]]] = {
        "alpha": (">", 0), "lr": (">", 0), "eta": (">=", 0), "start_guidance": (">=", 0)
    }

    def __post_init__(self) -> None:
        self.check_types()
        check(self.rank >= 1, "rank", f"must be an integer >= 1, got {self.rank}")
        check(self.iterations >= 1, "iterations", f"must be an integer >= 1, got {self.iterations}")
        check(self.ddim_steps >= 2, "ddim_steps", f"must be an integer >= 2, got {self.ddim_steps}")
        check(self.la_strength >= 0, "la_strength", f"must be >= 0 (0 turns latent anchoring off), "
              f"got {self.la_strength}")
        check(self.anchors >= 0, "anchors", f"must be an integer >= 0, got {self.anchors}")
        check(0 <= self.gate_threshold <= 1, "gate_threshold",
              f"must be in [0, 1] (multipliers lie in [0, 1]; 0 keeps every one), got {self.gate_threshold}")


# -- the adapter ------------------------------------------------------------------------------------
def adapted_modules(unet: torch.nn.Module) -> dict[str, torch.nn.Module]:
    """Every Linear and 1x1 convolution inside the UNet's transformer blocks, by module name."""
    out: dict[str, torch.nn.Module] = {}
    for name, block in unet.named_modules():
        if not isinstance(block, Transformer2DModel):
            continue
        for sub, m in block.named_modules():
            pointwise = isinstance(m, torch.nn.Conv2d) and m.kernel_size == (1, 1) and m.stride == (1, 1) \
                and m.padding == (0, 0) and m.groups == 1
            if isinstance(m, torch.nn.Linear) or pointwise:
                out[f"unet.{name}.{sub}"] = m
    return out


def _features(module: torch.nn.Module) -> tuple[int, int]:
    if isinstance(module, torch.nn.Linear):
        return module.in_features, module.out_features
    return module.in_channels, module.out_channels


def low_rank(module: torch.nn.Module, x: torch.Tensor, down: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """``up @ down`` applied to the module's input ``x`` (channels last for Linear, first for conv)."""
    down, up = down.to(x), up.to(x)
    if isinstance(module, torch.nn.Linear):
        return F.linear(F.linear(x, down), up)
    return F.conv2d(F.conv2d(x, down[:, :, None, None]), up[:, :, None, None])


class Gate:
    """The adapter's current multiplier: ``None`` (adapter skipped), a number, or one per sample."""

    value: float | torch.Tensor | None = None


def attach(modules: dict[str, torch.nn.Module], factors: dict[str, torch.Tensor], scale: float,
           gate: Gate) -> Callable[[], None]:
    """Forward hooks that add ``gate * scale * up @ down`` to each module's output; returns their remover."""
    handles = []
    for name, module in modules.items():
        down, up = factors[f"{name}.down"], factors[f"{name}.up"]

        def hook(m: torch.nn.Module, args: tuple, output: torch.Tensor, down=down, up=up) -> torch.Tensor | None:
            g = gate.value
            if g is None:
                return None
            if torch.is_tensor(g):
                if g.shape[0] != output.shape[0]:
                    raise RuntimeError(f"SPM gate has {g.shape[0]} multipliers for a batch of {output.shape[0]}")
                g = g.to(output).view(-1, *[1] * (output.dim() - 1))
            return output + (g * scale) * low_rank(m, args[0], down, up)

        handles.append(module.register_forward_hook(hook))
    return lambda: remove_all([h.remove for h in handles])


def remove_all(removers: list[Callable[[], None]]) -> None:
    """Call every remover (hooks installed together come off together)."""
    for remove in removers:
        remove()


def init_factors(modules: dict[str, torch.nn.Module], rank: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """LoRA's initialisation: ``down`` uniform in ``+-1/sqrt(fan_in)`` (nn.Linear's), ``up`` zero."""
    out = {}
    for name, m in modules.items():
        fan_in, fan_out = _features(m)
        out[f"{name}.down"] = uniform_down(rank, fan_in, gen)
        out[f"{name}.up"] = torch.zeros(fan_out, rank)
    return out


# -- latent anchoring -------------------------------------------------------------------------------
def acceptance(anchor: torch.Tensor, concept: torch.Tensor) -> float:
    """The probability of keeping a proposed anchor: ``1 - cos(a, c)``, clipped to [0, 1]."""
    cos = F.cosine_similarity(anchor.flatten().double(), concept.flatten().double(), dim=0)
    return float((1 - cos).clamp(0, 1))


def sample_anchors(concept: torch.Tensor, n: int, gen: torch.Generator) -> torch.Tensor:
    """``n`` anchor embeddings of ``concept``'s shape: Gaussian proposals kept with probability
    :func:`acceptance`, rescaled to ``U(0.8, 1.2) |c|``."""
    out = []
    norm = concept.float().norm()
    while len(out) < n:
        a = torch.randn(concept.shape, generator=gen)
        if float(torch.rand((), generator=gen)) < acceptance(a, concept):
            out.append(a / a.norm() * norm * (0.8 + 0.4 * float(torch.rand((), generator=gen))))
    return torch.stack(out).to(concept) if out else concept.new_zeros((0, *concept.shape))


# -- facilitated transport -----------------------------------------------------------------------
def _row_key(row: torch.Tensor) -> bytes:
    data = row.detach().to("cpu", torch.float32).contiguous().numpy().tobytes()
    return hashlib.blake2b(data, digest_size=16).digest()


def token_overlap(prompt_ids: frozenset[int], phrase_ids: frozenset[int]) -> float:
    """The share of the phrase's tokens that occur in the prompt (SPM's token-overlap score)."""
    return len(prompt_ids & phrase_ids) / len(phrase_ids) if phrase_ids else 0.0


class TokenMemory:
    """Which tokens made which text-encoder states: a forward hook on the text encoder remembers the
    token-id set of every output row, so the UNet hook can find a prompt's tokens from its states."""

    def __init__(self, special: set[int]) -> None:
        self.special = special
        self.rows: OrderedDict[bytes, frozenset[int]] = OrderedDict()

    def hook(self, module: torch.nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is None:
            return
        for row_ids, row in zip(ids, output[0]):
            self.rows[_row_key(row)] = frozenset(row_ids.tolist()) - self.special
            if len(self.rows) > MEMORY:
                self.rows.popitem(last=False)

    def tokens(self, row: torch.Tensor) -> frozenset[int] | None:
        return self.rows.get(_row_key(row))


def multipliers(states: torch.Tensor, phrases: torch.Tensor, phrase_ids: list[frozenset[int]],
                prompt_ids: list[frozenset[int] | None], threshold: float) -> torch.Tensor:
    """Facilitated transport's multiplier per prompt, ``(B,)``: the largest over phrases of
    ``max(cos(prompt, phrase), token overlap)`` (overlap 0 where the prompt's tokens are unknown),
    in [0, 1]; multipliers below ``threshold`` are 0."""
    flat = states.flatten(1).float()
    cos = F.cosine_similarity(flat[:, None], phrases.flatten(1).to(flat)[None], dim=-1)  # (B, phrases)
    overlap = torch.tensor([[0.0 if ids is None else token_overlap(ids, p) for p in phrase_ids] for ids in prompt_ids])
    gate = torch.maximum(cos, overlap.to(cos)).amax(1).clamp(0, 1)
    return torch.where(gate < threshold, torch.zeros_like(gate), gate)


@METHODS.register("spm")
class SPM(Method):
    """SPM: gated rank-1 adapters in the transformer blocks, ESD loss plus latent anchoring (Lyu et al. 2024)."""

    config_class = SPMConfig
    group = None
    test_config = {"iterations": 3, "ddim_steps": 4, "anchors": 2}

    def fit(self, pipe: DiffusionPipeline, concept: Concept, config: MethodConfig, progress: bool = True) -> Erasure:
        assert isinstance(config, SPMConfig)
        base_fp = fingerprint(pipe)
        prompts = concept.erase_prompts()
        conds = encode(pipe, prompts).states
        uncond = encode(pipe, [""]).states
        unet = pipe.unet
        modules = adapted_modules(unet)
        if not modules:
            raise UserError(f"{type(unet).__name__} has no transformer blocks to adapt; SPM needs a UNet with "
                            "cross-attention blocks")
        gen = torch.Generator().manual_seed(config.seed)
        factors = init_factors(modules, config.rank, gen)
        factors = {k: v.to(unet.device).requires_grad_(True) for k, v in factors.items()}
        scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
        scheduler.set_timesteps(config.ddim_steps)
        opt = torch.optim.Adam(list(factors.values()), lr=config.lr)
        shape, gate = latent_shape(pipe), Gate()
        detach = attach(modules, factors, config.alpha / config.rank, gate)
        try:
            with frozen(unet):
                for _ in tqdm(range(config.iterations), desc="spm", disable=not progress):
                    k = int(torch.randint(len(prompts), (1,), generator=gen))
                    cond = conds[k : k + 1]
                    stop = int(torch.randint(config.ddim_steps - 1, (1,), generator=gen))
                    gate.value = None  # the frozen model: sample x_t, the ESD target and the anchors' predictions
                    x_t, t = sample_xt(unet, scheduler, cond, uncond, stop, config.start_guidance, shape, gen)
                    anchors = sample_anchors(cond[0], config.anchors if config.la_strength > 0 else 0, gen)
                    context = torch.cat([uncond, cond, anchors])
                    with torch.no_grad():
                        e_u, e_c, *e_a = unet(x_t.expand(len(context), -1, -1, -1), t,
                                              encoder_hidden_states=context).sample.split(1)
                    gate.value = 1.0
                    pred = unet(x_t.expand(1 + len(anchors), -1, -1, -1), t,
                                encoder_hidden_states=torch.cat([cond, anchors])).sample
                    loss = F.mse_loss(pred[:1], esd_target(e_c, e_u, config.eta))
                    if e_a:
                        loss = loss + config.la_strength * F.mse_loss(pred[1:], torch.cat(e_a))
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
        finally:  # fitting leaves the pipeline as it found it; the artifact carries the adapter
            detach()
        tensors = {ADAPTER_PREFIX + k: v.detach().clone() for k, v in factors.items()}
        return Erasure(self.name, config, concept, base_fp, tensors)

    def install(self, pipe: DiffusionPipeline, erasure: Erasure) -> Callable[[], None]:
        config = erasure.config
        assert isinstance(config, SPMConfig)
        modules = adapted_modules(pipe.unet)
        factors = {k: v.to(pipe.unet.device) for k, v in erasure.adapter().items()}
        missing = sorted({k.rsplit(".", 1)[0] for k in factors} ^ set(modules))
        if missing:
            raise UserError(f"SPM adapter and UNet disagree on {missing[0]} (and {len(missing) - 1} more modules); "
                             "the artifact was fitted on another architecture")
        tokenizer = pipe.tokenizer
        phrases = list(erasure.concept.target)
        phrase_states = encode(pipe, phrases).states
        special = set(tokenizer.all_special_ids)
        phrase_ids = [frozenset(ids) - special for ids in
                      tokenizer(phrases, max_length=max_length(pipe), truncation=True).input_ids]
        memory, gate = TokenMemory(special), Gate()

        def pre_hook(module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
            states = call_states(args, kwargs)
            if states is None:
                gate.value = None
                return
            cfg = cfg_halves(kwargs, args) is not None
            rows = states[states.shape[0] // 2:] if cfg else states
            if config.transport:
                values = multipliers(rows, phrase_states, phrase_ids, [memory.tokens(r) for r in rows],
                                     config.gate_threshold)
            else:
                values = torch.ones(rows.shape[0])
            values = torch.cat([values, values]) if cfg else values
            gate.value = values if bool((values > 0).any()) else None

        removers = [
            attach(modules, factors, config.alpha / config.rank, gate),
            pipe.text_encoder.register_forward_hook(memory.hook, with_kwargs=True).remove,
            unet_call_hook(pipe, pre_hook, with_pre=True),
        ]
        return lambda: remove_all(removers)
