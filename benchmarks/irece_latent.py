"""Does IRECE on top of UCE lower the latent-inversion attack's ASR? (figures in docs/results.md)

Usage::

    python benchmarks/irece_latent.py                          # skull, 4 target prompts x seed 0
    python benchmarks/irece_latent.py --concept heart --seeds 0,1 --set stop=0.6

Fits UCE (defaults) and IRECE (defaults, ``--set`` overrides) on the shipped testbed, then runs the
``latent`` attack (its default budget: white-box at guidance 1, white-box at the deployed
guidance, black-box, black-box from the empty prompt) against UCE alone and against UCE with
IRECE applied on top, on the same targets. Also measures, with the judge, the target rate on the
concept's own prompts and the other shapes' accuracy on theirs (``--n-other`` prompts per shape
x 4 seeds; 0 skips it) for both, so the defence's cost on unrelated prompts is visible.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

import torch


class Stack:
    """Erasures applied in order and removed in reverse: what an attack needs of one erasure, so
    that ``ctx.unedited()`` (the black-box variants, the reference images) removes both."""

    def __init__(self, *parts: Any) -> None:
        self.parts = parts
        self.method = "+".join(p.method for p in parts)
        self.concept = parts[0].concept
        self.tensors = {k: v for p in parts for k, v in p.weights.items()}
        self.edits_weights = any(p.edits_weights for p in parts)

    def apply(self, pipe: Any, force: bool = False) -> Any:
        for p in self.parts:
            p.apply(pipe, force=force)
        return pipe

    def remove(self, pipe: Any) -> Any:
        for p in reversed(self.parts):
            p.remove(pipe)
        return pipe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concept", default="skull")
    parser.add_argument("--prompts", type=int, default=4, help="target prompts (default 4)")
    parser.add_argument("--seeds", default="0", help="comma-separated noise seeds per prompt (default 0)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="IRECE config override")
    parser.add_argument("--n-other", type=int, default=2, help="prompts per other shape for the retention check")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    torch.set_num_threads(args.threads)

    from erasekit.attacks import AttackContext, get_attack, run_attack
    from erasekit.concepts import get_concept
    from erasekit.config import parse_overrides
    from erasekit.erasure import get_method, make_config
    from erasekit.testbed.fidelity import shape_effect
    from erasekit.testbed.judge import load_judge
    from erasekit.testbed.pipeline import load_testbed

    pipe, judge = load_testbed(), load_judge()
    concept = get_concept(args.concept)
    seeds = tuple(int(s) for s in args.seeds.split(","))
    t0 = time.perf_counter()
    uce = get_method("uce").fit(pipe, concept, make_config("uce"), progress=False)
    irece_config = make_config("irece", parse_overrides(args.set))
    irece = get_method("irece").fit(pipe, concept, irece_config, progress=False)
    print(f"concept {concept.name!r}; IRECE {irece_config.to_dict()}; fits {time.perf_counter() - t0:.1f} s", flush=True)
    attack = get_attack("latent")
    for label, erasure in (("uce", uce), ("uce+irece", Stack(uce, irece))):
        t0 = time.perf_counter()
        ctx = AttackContext(pipe, erasure, concept, judge)
        erasure.apply(pipe)
        try:
            result = run_attack(attack, ctx, attack.default_budget, args.prompts, seeds, progress=False)
            effect = shape_effect(pipe, judge, concept.name, 4, args.n_other) if args.n_other else None
        finally:
            erasure.remove(pipe)
        print(f"{label:10s} latent: {len(result.outcomes)} targets ({result.dropped} dropped), pre-ASR "
              f"{result.pre_asr:.2f}, ASR {result.asr:.2f}; {result.unet_evals} UNet evals, {result.wall_seconds:.0f} s")
        for o in result.outcomes:
            print(f"    {o.prompt!r} seed {o.seed}: {'shows it' if o.success else 'erased'} ({o.note}; judged {o.verdict['shape']})")
        if effect is not None:
            print(f"    target rate {effect['target_rate']:.3f} on {concept.name}'s own prompts; other shapes' accuracy "
                  f"{effect['other_shapes_accuracy']:.3f} {effect['per_shape']}")
        print(f"    [{time.perf_counter() - t0:.0f} s]", flush=True)


if __name__ == "__main__":
    main()
