"""The attack contract: a registered :class:`Attack` tries to bring an erased concept back.

:func:`run_attack` attacks every target (a training-phrasing prompt of the concept, sampled with
a seed). It first generates the unattacked prompt with the erased model: if the judge already
sees the concept, that target is a pre-attack success and is not attacked further. ASR follows
UnlearnDiffAtk (Zhang et al. 2024): ``ASR = (pre-attack successes + attack successes) / N``.
As in UnlearnDiffAtk and P4D, only targets whose unedited image shows the concept are attacked
(the others are counted as ``dropped``).
Every attack takes an explicit budget (in its own unit), stops early on success, and reports
what it spent: UNet evaluations (counted per sample), gradient steps and wall time.
"""

from __future__ import annotations

import copy
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar, Iterator

import numpy as np
import torch

from erasekit.concepts import Concept
from erasekit.domain import Domain, domain_of
from erasekit.erasure import Erasure
from erasekit.errors import UserError
from erasekit.evaluation import eval_prompts
from erasekit.losses import denoising_loss
from erasekit.pipelines import encode
from erasekit.registry import Registered, Registry
from erasekit.sampling import DEFAULT_GUIDANCE, DEFAULT_STEPS, generate_jobs, noise_generator, to_uint8


@dataclass(frozen=True)
class Target:
    """One attacked prompt: its text, attributes, noise seed and the unedited model's image of it."""

    index: int
    prompt: str
    attributes: dict[str, str]
    seed: int
    reference: np.ndarray  # uint8 (H, W, 3), drawn by the unedited model; shows the concept
    noise: int = 0  # noise index: image (seed, noise) of the evaluation convention


@dataclass(frozen=True)
class Found:
    """An input an attack stored for one target (:attr:`Outcome.adversarial_text` and the tensors of
    :attr:`Outcome.adversarial`), as the transfer matrix replays it on another model: the target's
    prompt, its noise (seed and index) and the run's note."""

    prompt: str
    seed: int
    noise: int
    text: str | None
    tensors: dict[str, torch.Tensor]
    note: str = ""


@dataclass
class Outcome:
    """What one target's attack produced."""

    index: int
    prompt: str
    seed: int
    pre_success: bool
    success: bool
    image: np.ndarray
    verdict: dict[str, str]
    adversarial_text: str | None = None
    adversarial: dict[str, torch.Tensor] = field(default_factory=dict)  # embeddings, latents (saved)
    unet_evals: int = 0
    grad_steps: int = 0
    wall_seconds: float = 0.0
    note: str = ""
    #: the budget this target used, in the attack's unit, up to its success (all of it on failure);
    #: ``None``: the attack's gradient steps (set so by :func:`run_attack`)
    spent: int | None = None


def asr_curve(outcomes: list[tuple[bool, int | None]], budget: int) -> list[tuple[int, float]]:
    """ASR had the budget been ``b``, for every ``b`` from 0 to ``budget`` where it changes: from
    each target's ``(success, spent)``, a target counts once its success came within ``b``
    (pre-attack successes spent 0). Attacks stop a target at its first success, so this is what
    the same run with budget ``b`` would have found. ``[(b, asr), ...]``, starting at 0 and ending
    at ``budget``; empty when a target's spending is unknown (rows stored before schema 5)."""
    if not outcomes or any(s is None for _, s in outcomes):
        return []
    n = len(outcomes)
    wins = sorted(min(int(s), budget) for ok, s in outcomes if ok)  # type: ignore[arg-type]
    points = [(b, sum(w <= b for w in wins) / n) for b in sorted({0, *wins})]
    if points[-1][0] != budget:
        points.append((budget, points[-1][1]))
    return points


@dataclass
class AttackResult:
    attack: str
    budget: int
    budget_unit: str
    seed: int
    outcomes: list[Outcome]  # targets whose unedited image shows the concept (the others are dropped)
    wall_seconds: float  # the whole run: reference images, pre-attack check and the attack
    unet_evals: int  # pre-attack check and attack (reference images excluded), per sample
    grad_steps: int
    dropped: int = 0  # target prompts whose unedited image did not show the concept

    @property
    def pre_asr(self) -> float:
        return float(np.mean([o.pre_success for o in self.outcomes]))

    @property
    def asr(self) -> float:
        return float(np.mean([o.success for o in self.outcomes]))

    def to_json(self) -> dict:
        return {"attack": self.attack, "budget": self.budget, "budget_unit": self.budget_unit, "seed": self.seed,
                "n": len(self.outcomes), "pre_asr": round(self.pre_asr, 4), "asr": round(self.asr, 4),
                "unet_evals": self.unet_evals, "grad_steps": self.grad_steps, "wall_seconds": self.wall_seconds,
                "dropped": self.dropped}


class Counter:
    """Counts evaluations (per sample) of a pipeline's ``component`` (the UNet; Ring-A-Bell also
    counts its text-encoder queries) while installed on the pipeline."""

    def __init__(self, component: str = "unet") -> None:
        self.component = component
        self.evals = 0

    @contextmanager
    def on(self, pipe: Any) -> Iterator["Counter"]:
        def hook(module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
            sample = args[0] if args else next(kwargs[k] for k in ("sample", "input_ids", "inputs_embeds") if k in kwargs)
            self.evals += int(sample.shape[0])

        with getattr(pipe, self.component).register_forward_pre_hook(hook, with_kwargs=True):
            yield self


@dataclass
class AttackContext:
    """What an attack works with: the pipeline (erasure applied), the erasure, the judge and the
    sampling settings. ``unedited()`` temporarily removes the erasure (black-box settings)."""

    pipe: Any
    erasure: Erasure | None
    concept: Concept
    judge: Any
    steps: int = DEFAULT_STEPS
    guidance: float = DEFAULT_GUIDANCE
    #: against a guard, take white-box losses on the guided prediction (False: the ablation)
    guided_loss: bool = True

    @contextmanager
    def unedited(self) -> Iterator[Any]:
        if self.erasure is None:
            yield self.pipe
            return
        self.erasure.remove(self.pipe)
        try:
            yield self.pipe
        finally:
            self.erasure.apply(self.pipe, force=True)

    @property
    def guard(self) -> bool:
        """Whether the erasure acts only while sampling (a hook on CFG batches; no weight changes)."""
        return self.erasure is not None and not self.erasure.edits_weights

    @cached_property
    def domain(self) -> Domain:
        """The concept's domain (attacks need its reference prompts and phrasings)."""
        domain = domain_of(self.concept)
        if domain is None:
            raise UserError(f"concept {self.concept.name!r} is a user concept; attacks need a built-in concept of a "
                             "domain (skull, logo, red, neon, ...) for reference images and the judge")
        return domain

    def rephrase(self, attributes: dict[str, str], phrase: str) -> str:
        """A prompt of ``attributes`` whose concept word is ``phrase`` (other words: the domain's plain ones)."""
        return self.domain.prompt(attributes, {self.concept.family: phrase})  # type: ignore[dict-item]

    def loss(self, unet: torch.nn.Module, x0: torch.Tensor, states: torch.Tensor, gen: torch.Generator,
             timesteps: torch.Tensor | None = None) -> torch.Tensor:
        """The erased model's denoising loss on ``x0`` (at ``timesteps``, else random ones); against an
        inference-time guard it is taken on the guided prediction at the deployed guidance, where the guard acts."""
        if not (self.guard and self.guided_loss):
            return denoising_loss(unet, self.pipe.scheduler, x0, states, gen, timesteps)
        return denoising_loss(unet, self.pipe.scheduler, x0, states, gen, timesteps, guidance=self.guidance,
                              uncond=self._uncond)

    @cached_property
    def _uncond(self) -> torch.Tensor:
        return encode(self.pipe, [""]).states

    def shows_concept(self, verdict: dict[str, str]) -> bool:
        return verdict[self.concept.family] == self.concept.name  # type: ignore[index]

    def judge_images(self, images: np.ndarray) -> list[dict[str, str]]:
        return self.judge.predict(images)

    def generate(self, prompt: str, seed: int, index: int) -> np.ndarray:
        """The erased pipeline's image for ``prompt`` (noise of evaluation image ``(seed, index)``)."""
        return generate_jobs(self.pipe, [(seed, index, prompt)], self.steps, self.guidance)[0]

    def generate_embeds(self, states: torch.Tensor, seed: int, index: int, latents: torch.Tensor | None = None,
                        guidance: float | None = None) -> np.ndarray:
        """Generate from prompt embeddings ``(1, L, D)`` (and optionally given initial latents)."""
        gen = noise_generator(seed, index)
        g = self.guidance if guidance is None else guidance
        with torch.no_grad():
            img = self.pipe(prompt_embeds=states.detach(), num_inference_steps=self.steps, guidance_scale=g,
                            generator=gen if latents is None else None, latents=latents, output_type="np").images
        return to_uint8(img)[0]


class Attack(Registered):
    """An attack. Subclasses set the class attributes and implement :meth:`attack`."""

    name: ClassVar[str]
    threat_model: ClassVar[str] = "white-box"
    needs: ClassVar[str] = ""
    budget_unit: ClassVar[str] = "tries"
    default_budget: ClassVar[int] = 8
    #: one thing is learned for all targets (its cost is shared, not per target)
    shared: ClassVar[bool] = False
    #: position on the attack ladder (cheapest, most valuable first): listings and tables use it
    order: ClassVar[int] = 100
    #: a small budget that still breaks the unedited model on two targets (the test suite's)
    test_budget: ClassVar[int] = 1
    #: the attack only sends the erased model prompts and looks at its images: no gradients, weights
    #: or sampler internals of it (``tests/integration/test_attacks.py`` enforces it by hooks)
    black_box: ClassVar[bool] = False
    #: counted in a method's worst case on the leaderboard (``False``: an analysis, such as a
    #: restoration from the unedited weights, whose holder has the concept already)
    worst_case: ClassVar[bool] = True
    #: M-ErasureBench's white-box / black-box split (Weng et al., WACV 2026): the threats the attack can be
    #: restricted to, ``white`` (it optimises or inverts on the erased model) or ``black`` (on the
    #: unedited model, the result replayed on the erased one); see :meth:`restricted`
    threats: ClassVar[tuple[str, ...]] = ()
    #: the restriction in force (``None``: every variant the attack has)
    threat: str | None = None
    #: what the attack finds is an input that can be replayed on another model (the transfer
    #: matrix, :mod:`erasekit.transfer`); prompt attacks replay their text (:meth:`replay`)
    transferable: ClassVar[bool] = False

    def restricted(self, threat: str) -> "Attack":
        """A copy of this attack that works only under ``threat`` (``white`` or ``black``)."""
        if threat not in self.threats:
            raise UserError(f"attack {self.name!r} cannot be restricted to threat {threat!r}; "
                            + (f"choose from {', '.join(self.threats)}" if self.threats else "it has no threat variants"))
        out = copy.copy(self)
        out.threat = threat
        return out

    def replay(self, ctx: AttackContext, found: Found) -> np.ndarray:
        """The image ``found`` (an input this attack found, on any model) gives on ``ctx``'s model,
        with the target's noise; prompt attacks send the found text. Attacks whose input is not a
        prompt override this."""
        if not self.transferable or found.text is None:
            raise UserError(f"attack {self.name!r} finds nothing that can be replayed on another model")
        return ctx.generate(found.text, found.seed, found.noise)

    def attack(self, ctx: AttackContext, target: Target, budget: int, gen: torch.Generator) -> Outcome:
        """Attack one target (its unattacked prompt did not show the concept)."""
        raise NotImplementedError

    def attack_all(self, ctx: AttackContext, targets: list[Target], budget: int, gen: torch.Generator,
                   progress: bool) -> dict[int, Outcome]:
        """Attack every target; attacks that learn one thing for all targets override this."""
        from tqdm.auto import tqdm

        return {t.index: self.attack(ctx, t, budget, gen) for t in tqdm(targets, desc=self.name, disable=not progress)}


ATTACKS: Registry[Attack] = Registry("attack", Attack, package="erasekit.attacks", group="erasekit.attacks")
get_attack = ATTACKS.create
attack_names = ATTACKS.names


def ladder() -> list[str]:
    """Every attack name in ladder order (``order``, then name)."""
    return sorted(ATTACKS.names(), key=lambda n: (ATTACKS.get(n).order, n))


def attack_targets(concept: Concept, n_prompts: int, seeds: list[int], prompt_seed: int = 0) -> list[tuple[int, str, dict, int]]:
    """``(index, prompt, attributes, seed)``: the concept's ``given``-phrasing prompts x seeds."""
    if concept.family is None:
        raise UserError(f"concept {concept.name!r} is a user concept: attacks need a domain's judge and reference "
                         "images of the concept; use a built-in concept (skull, logo, red, neon, ...)")
    prompts = [p for p in eval_prompts(concept, n_prompts, prompt_seed) if p.split == "given"]
    return [(k, p.text, p.attributes, s) for s in seeds for k, p in enumerate(prompts)]  # type: ignore[misc]


def run_attack(
    attack: Attack,
    ctx: AttackContext,
    budget: int,
    n_prompts: int = 4,
    seeds: tuple[int, ...] = (0,),
    seed: int = 0,
    progress: bool = True,
    attack_pre_successes: bool = False,
) -> AttackResult:
    """Attack the concept's target prompts x seeds with ``budget``; see the module docstring.

    ``attack_pre_successes`` attacks every target, also those whose unattacked prompt already
    shows the concept (the sanity check that the attack itself works on the unedited model)."""
    if budget < 1:
        raise UserError(f"budget must be >= 1 {attack.budget_unit}, got {budget}")
    t0 = time.perf_counter()
    raw = attack_targets(ctx.concept, n_prompts, list(seeds))
    jobs = [(s, k, p) for k, p, _, s in raw]
    with ctx.unedited() as base:
        refs = generate_jobs(base, jobs, ctx.steps, ctx.guidance)  # the concept as the unedited model draws it
    # as UnlearnDiffAtk and P4D do, attack only prompts whose unedited image shows the concept
    shown = [ctx.shows_concept(v) for v in ctx.judge_images(refs)]
    if not any(shown):
        raise UserError(f"the unedited model shows {ctx.concept.name!r} on none of the {len(raw)} target prompts at "
                         f"guidance {ctx.guidance:g}; there is nothing to attack (try more prompts or another guidance)")
    targets = [Target(j, p, a, s, refs[i], noise=k)
               for j, (i, (k, p, a, s)) in enumerate((i, r) for i, r in enumerate(raw) if shown[i])]
    counter = Counter()
    with counter.on(ctx.pipe):
        pre_images = generate_jobs(ctx.pipe, [(t.seed, t.noise, t.prompt) for t in targets], ctx.steps, ctx.guidance)
    pre_verdicts = ctx.judge_images(pre_images)
    outcomes: dict[int, Outcome] = {}
    todo = []
    for t, img, v in zip(targets, pre_images, pre_verdicts):
        if ctx.shows_concept(v) and not attack_pre_successes:
            outcomes[t.index] = Outcome(t.index, t.prompt, t.seed, True, True, img, v, adversarial_text=t.prompt,
                                        unet_evals=counter.evals // len(targets), note="pre-attack success",
                                        spent=0)
        else:
            todo.append(t)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    if todo:
        with counter.on(ctx.pipe):
            outcomes.update(attack.attack_all(ctx, todo, budget, gen, progress))
        pre = {t.index: ctx.shows_concept(v) for t, v in zip(targets, pre_verdicts)}
        for o in outcomes.values():  # (with attack_pre_successes, success stays the attack's own)
            o.pre_success = pre[o.index]
            if o.spent is None:
                o.spent = o.grad_steps
    ordered = [outcomes[t.index] for t in targets]
    steps = [o.grad_steps for o in ordered]
    return AttackResult(attack.name, budget, attack.budget_unit, seed, ordered, round(time.perf_counter() - t0, 2),
                        counter.evals, max(steps) if attack.shared else sum(steps), dropped=len(raw) - len(targets))


def measured(ctx: AttackContext, fn) -> Outcome:
    """Run ``fn(counter) -> Outcome`` with UNet evaluations counted and wall time measured."""
    counter = Counter()
    t0 = time.perf_counter()
    with counter.on(ctx.pipe):
        out = fn(counter)
    out.unet_evals += counter.evals
    out.wall_seconds = round(time.perf_counter() - t0, 3)
    return out


__all__ = ["ATTACKS", "Attack", "AttackContext", "AttackResult", "Found", "Outcome", "Target", "asr_curve", "attack_names",
           "get_attack",
           "ladder", "run_attack", "measured"]
