"""Restoration along the concept probe (Jang, Lee, Kim, Jo, Woo, "Suppression or Deletion: A
Restoration-Based Representation-Level Analysis of Machine Unlearning", WWW 2026): if an erasure
only suppressed the concept downstream of a representation that still holds it, moving that
representation back toward the unedited model's should bring the concept back.

While the erased model samples the target prompt, a hook on its UNet also runs an unedited copy
of the UNet on the same input (with the unedited text encoder's states of the same prompts) and
moves the erased mid block's output ``h`` toward the unedited one's ``h_orig`` within the concept
family's probe subspace ``Q``: ``h <- h + alpha * Q Q^T (h_orig - h)`` at every spatial position,
on both halves of the guidance batch. ``Q`` is the orthonormalised span of a multinomial linear
probe's class directions for the family's values (:func:`erasekit.probe.family_directions`, fitted
on the unedited model's mid-block features of 8 prompts per target split, seed 0: a shared cost of
a few seconds): 8 of the testbed's 64 mid-block channels' directions for shapes. The paper's
injection ``f <- f + alpha (f_orig - f)`` moves a sparse autoencoder's expert features; the
probe's directions play their part here (the language models' SAE version is
:mod:`erasekit.lm.attacks.sae_restore`). Budget: the strengths tried, in order ``alpha = 1, 2, 4,
8`` (1 puts back the unedited model's component in ``Q``; larger ones overshoot along it, as the
paper's alpha 5 and 10 do), stopping at the first image the judge sees the concept in.

Tuned on ``heart`` and ``star`` only (UCE, 8 targets each; docs/results.md): the family subspace
broke 7 of 8 and 3 of 8 targets where the binary concept probe's single direction
(``mode = "probe"``, the :mod:`erasekit.probe` metric's ``mid`` probe) broke 4 and 0.

C5's caveat (the paper also interpolates the CLS token, which may carry the effect) asks for the
ablation: ``mode = "full"`` moves every channel of the mid block (the ceiling of a restoration at
this site), ``mode = "random"`` as many random orthonormal directions as ``Q`` has (the control:
are the probe's directions special?). ``benchmarks/concept_probe.py`` runs them side by side.

Like the SAE restoration it is an analysis, not a threat: whoever holds the unedited weights has
the concept already, so a benchmark leaderboard shows it without counting it in a method's worst
case (``worst_case = False``). Reconstructed for a diffusion UNet: the site (the mid block), probe
directions in place of SAE features and the strength ladder are our choices. The unedited UNet is
copied once per run (for Stable Diffusion that is a second UNet in memory).
"""

from __future__ import annotations

import copy
from contextlib import contextmanager
from typing import Any, Iterator

import torch

from erasekit.attacks.base import ATTACKS, Attack, AttackContext, Outcome, Target, measured
from erasekit.pipelines import call_states, encode
from erasekit.probe import ProbeConfig, ProbeSet, family_directions, mid_block_output

MODES = ("probe", "family", "full", "random")


@contextmanager
def restoring(pipe: Any, base_unet: torch.nn.Module, basis: torch.Tensor | None, alpha: float,
              base_states: torch.Tensor | None = None) -> Iterator[dict[str, int]]:
    """Sample ``pipe`` with its mid-block output moved toward ``base_unet``'s on the same call:
    within the span of ``basis``'s orthonormal columns ``(C, k)`` (``None``: every channel).
    ``base_states`` replaces the call's text states for the unedited UNet when the batch sizes
    match (the unedited encoder's). An inference-time guard's extra UNet pass inside the call
    (``negative_prompt`` negate, SLD: a half batch) is left unrestored. Yields a counter of the
    unedited UNet's evaluations (per sample); both hooks go on exit."""
    box: dict[str, Any] = {"evals": 0}

    def pre(_m, args, kwargs):
        sample = args[0] if args else kwargs["sample"]
        t = args[1] if len(args) > 1 else kwargs["timestep"]
        states = call_states(args, kwargs)
        if base_states is not None and base_states.shape[0] == states.shape[0]:
            states = base_states.to(states.device, states.dtype)
        with torch.no_grad(), mid_block_output(base_unet) as mids:
            base_unet(sample, t, encoder_hidden_states=states)
        box["orig"], box["evals"] = mids[0], box["evals"] + int(sample.shape[0])

    def post(_m, _i, h):
        if box["orig"].shape[0] != h.shape[0]:  # a guard's own UNet pass inside the call (negate, SLD): as it is
            return None
        gap = box["orig"].to(h.dtype) - h
        if basis is not None:
            q = basis.to(h.device, h.dtype)
            gap = torch.einsum("bkhw,ck->bchw", torch.einsum("bchw,ck->bkhw", gap, q), q)
        return h + alpha * gap

    with pipe.unet.register_forward_pre_hook(pre, with_kwargs=True), pipe.unet.mid_block.register_forward_hook(post):
        yield box


@ATTACKS.register("restore")
class Restore(Attack):
    """Restoration: the erased mid-block features moved toward the unedited model's along the concept probes (C5)."""

    threat_model = "white-box: the erased weights and the unedited model's (an analysis: suppressed or deleted?)"
    needs = "the unedited model (the probe is fitted on it; its UNet runs beside the erased one)"
    budget_unit = "restoration strengths tried (alpha 1, 2, 4, 8)"
    default_budget = 4
    order = 95
    test_budget = 1
    worst_case = False  # an analysis: whoever holds the unedited weights has the concept already
    shared = True  # the probe and the unedited copy serve every target
    strengths = (1.0, 2.0, 4.0, 8.0)
    #: ``family`` (the attack: the family's probe subspace), ``probe`` (the binary concept probe's one
    #: direction), ``full`` (every channel: the ablation's ceiling), ``random`` (random directions, as many)
    mode = "family"
    probe_config = ProbeConfig(n_prompts=8, seeds=(0,))

    def attack_all(self, ctx: AttackContext, targets: list[Target], budget: int, gen: torch.Generator,
                   progress: bool) -> dict[int, Outcome]:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        with ctx.unedited() as base:
            self._base_unet = copy.deepcopy(base.unet).eval()
            self._basis = None
            if self.mode == "probe":
                self._basis = ProbeSet.fit(base, ctx.concept, self.probe_config).probes["mid"].direction()[:, None]
            elif self.mode in ("family", "random"):
                self._basis = family_directions(base, ctx.concept, self.probe_config)
                if self.mode == "random":  # as many random orthonormal directions
                    self._basis = torch.linalg.qr(torch.randn(self._basis.shape, generator=gen)).Q
        try:
            return super().attack_all(ctx, targets, budget, gen, progress)
        finally:
            del self._base_unet

    def attack(self, ctx: AttackContext, target: Target, budget: int, gen: torch.Generator) -> Outcome:
        pipe = ctx.pipe
        with ctx.unedited() as base:  # the unedited encoder's states, in the guidance batch's order
            base_states = encode(base, ["", target.prompt]).states

        def run(counter) -> Outcome:
            last, extra = None, 0
            for k, alpha in enumerate(self.strengths[:budget]):
                with restoring(pipe, self._base_unet, self._basis, alpha, base_states) as box:
                    img = ctx.generate(target.prompt, target.seed, target.noise)
                extra += box["evals"]
                verdict = ctx.judge_images(img[None])[0]
                last = Outcome(target.index, target.prompt, target.seed, False, ctx.shows_concept(verdict), img,
                               verdict, target.prompt, spent=k + 1,
                               note=f"{self.mode} restoration at the mid block, alpha {alpha:g}; "
                                    f"{extra} unedited-UNet evaluations")
                if self._basis is not None:
                    last.adversarial = {"directions": self._basis.clone()}
                if last.success:
                    break
            assert last is not None
            last.unet_evals += extra
            return last

        return measured(ctx, run)
