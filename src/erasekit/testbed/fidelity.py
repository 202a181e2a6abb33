"""Generation fidelity of the testbed (``erasekit testbed evaluate``).

Four prompt sets, all drawn deterministically from a seed:

* ``seen``: seen shape+colour pairs, training phrasings;
* ``heldout_pairs``: the held-out shape+colour pairs (never trained on), training phrasings;
* ``heldout_phrasings``: seen pairs; in each prompt one family (shape, colour or background, in
  turn) is named by a held-out synonym or implicit phrase that the model never saw in training,
  and that family is scored on it;
* ``heldout_sentences``: the hardest case, reported without a bar: every word and the template
  come from the held-out phrasings at once;
* ``targets``: ``skull`` and ``logo`` prompts (the stand-ins that erasure targets first).

Every prompt is sampled with each seed; the judge scores each generated image per family.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np

from erasekit.concepts import cycle as cycle_pool
from erasekit.config import Config
from erasekit.errors import UserError
from erasekit.sampling import DEFAULT_GUIDANCE, DEFAULT_STEPS, generate
from erasekit.testbed import data
from erasekit.testbed.judge import Judge
from erasekit.testbed.pipeline import TestbedPipeline

SPLITS = ("seen", "heldout_pairs", "heldout_phrasings", "heldout_sentences", "targets")


@dataclass(frozen=True)
class Prompt:
    text: str
    attributes: data.Attributes
    split: str
    heldout_family: str | None = None  # the family named by a held-out phrase (heldout_phrasings)


def prompt_sets(n_prompts: int = 64, seed: int = 0) -> dict[str, list[Prompt]]:
    """``n_prompts`` prompts per split (``targets``: half skull, half logo)."""
    if n_prompts < 1:
        raise UserError(f"n_prompts must be >= 1, got {n_prompts}")
    rng = np.random.default_rng([seed, 0xE7A1])
    out: dict[str, list[Prompt]] = {}

    def cycle(pool: list[data.Attributes], n: int) -> list[data.Attributes]:
        return cycle_pool(pool, n, rng)

    seen = data.all_combinations(heldout_pairs=False)
    out["seen"] = [Prompt(data.caption(a, rng, "train"), a, "seen") for a in cycle(seen, n_prompts)]
    held = data.all_combinations(heldout_pairs=True)
    out["heldout_pairs"] = [Prompt(data.caption(a, rng, "train"), a, "heldout_pairs") for a in cycle(held, n_prompts)]
    families = list(data.FAMILIES)
    out["heldout_phrasings"] = [
        Prompt(data.caption(a, rng, "heldout", only=families[k % 3]), a, "heldout_phrasings", families[k % 3])
        for k, a in enumerate(cycle(seen, n_prompts))
    ]
    out["heldout_sentences"] = [
        Prompt(data.caption(a, rng, "heldout"), a, "heldout_sentences") for a in cycle(seen, n_prompts)
    ]
    targets = [a for a in seen if a.shape == "skull"], [a for a in seen if a.shape == "logo"]
    half = max(1, n_prompts // 2)
    out["targets"] = [
        Prompt(data.caption(a, rng, "train"), a, "targets")
        for a in cycle(targets[0], half) + cycle(targets[1], n_prompts - half if n_prompts > 1 else 1)
    ]
    return out


@dataclass(frozen=True)
class FidelityConfig(Config):
    n_prompts: int = 64
    seeds: tuple = (0, 1, 2, 3)
    steps: int = DEFAULT_STEPS
    guidance: float = DEFAULT_GUIDANCE
    prompt_seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "seeds", tuple(self.seeds))
        self.check_types()
        if self.n_prompts < 1:
            raise UserError(f"n_prompts must be >= 1, got {self.n_prompts}")
        if not self.seeds:
            raise UserError("seeds must not be empty")
        if self.steps < 1:
            raise UserError(f"steps must be >= 1, got {self.steps}")
        if self.guidance < 0:
            raise UserError(f"guidance must be >= 0, got {self.guidance}")


def evaluate_fidelity(
    pipe: TestbedPipeline, judge: Judge, cfg: FidelityConfig = FidelityConfig(), progress: bool = True
) -> dict:
    """Judge accuracy per split and family, plus the skull / logo rates on their prompts."""
    t0 = time.perf_counter()
    sets = prompt_sets(cfg.n_prompts, cfg.prompt_seed)
    result: dict = {"config": asdict(cfg), "splits": {}}
    for split in SPLITS:
        prompts = sets[split]
        imgs = generate(pipe, [p.text for p in prompts], list(cfg.seeds), cfg.steps, cfg.guidance, progress=progress)
        verdicts = judge.predict(imgs)
        truth = [p.attributes for _ in cfg.seeds for p in prompts]
        scored = [p.heldout_family for _ in cfg.seeds for p in prompts]
        row: dict = {"images": len(verdicts)}
        for family in data.FAMILIES:
            hits = [v[family] == getattr(t, family) for v, t, f in zip(verdicts, truth, scored) if f in (None, family)]
            row[family] = round(float(np.mean(hits)), 4)
        row["all"] = round(
            float(np.mean([all(v[f] == getattr(t, f) for f in data.FAMILIES) for v, t in zip(verdicts, truth)])), 4
        )
        if split == "targets":
            for shape in ("skull", "logo"):
                hits = [v["shape"] == shape for v, t in zip(verdicts, truth) if t.shape == shape]
                result[f"{shape}_rate"] = round(float(np.mean(hits)), 4)
        result["splits"][split] = row
    result["requirements"] = REQUIREMENTS
    result["meets_requirements"] = meets_requirements(result)
    result["wall_time_s"] = round(time.perf_counter() - t0, 1)
    return result


#: The fidelity the shipped testbed is held to (judge accuracy per family, and target rates).
REQUIREMENTS = {
    "seen": 0.90,
    "heldout_pairs": 0.90,
    "heldout_phrasings": 0.80,
    "skull_rate": 0.90,
    "logo_rate": 0.90,
}


def meets_requirements(result: dict) -> dict[str, bool]:
    out = {}
    for split in ("seen", "heldout_pairs", "heldout_phrasings"):
        row = result["splits"][split]
        out[split] = all(row[f] >= REQUIREMENTS[split] for f in data.FAMILIES)
    for key in ("skull_rate", "logo_rate"):
        out[key] = result[key] >= REQUIREMENTS[key]
    return out


def shape_effect(
    pipe: TestbedPipeline,
    judge: Judge,
    target: str,
    n_target: int = 16,
    n_other: int = 4,
    seeds: tuple[int, ...] = (0, 1, 2, 3),
    prompt_seed: int = 0,
    progress: bool = False,
) -> dict:
    """How often the judge sees ``target`` on its own prompts, and other shapes' accuracy on theirs.

    Prompts use training phrasings of seen combinations: ``n_target`` for the target shape and
    ``n_other`` for each other shape, each sampled with every seed.
    """
    data.check_value("shape", target)
    rng = np.random.default_rng([prompt_seed, 0x5EFF])
    seen = data.all_combinations(heldout_pairs=False)

    def prompts_for(shape: str, n: int) -> list[Prompt]:
        pool = [a for a in seen if a.shape == shape]
        picks = [pool[i] for i in rng.choice(len(pool), size=n, replace=n > len(pool))]
        return [Prompt(data.caption(a, rng, "train"), a, shape) for a in picks]

    target_prompts = prompts_for(target, n_target)
    other_prompts = [p for s in data.SHAPES if s != target for p in prompts_for(s, n_other)]
    prompts = target_prompts + other_prompts
    imgs = generate(pipe, [p.text for p in prompts], list(seeds), progress=progress)
    verdicts = judge.predict(imgs)
    rows = [(p, verdicts[k * len(prompts) + i]) for k in range(len(seeds)) for i, p in enumerate(prompts)]
    target_rate = float(np.mean([v["shape"] == target for p, v in rows if p.attributes.shape == target]))
    others = [v["shape"] == p.attributes.shape for p, v in rows if p.attributes.shape != target]
    per_shape = {
        s: round(float(np.mean([v["shape"] == s for p, v in rows if p.attributes.shape == s])), 4)
        for s in data.SHAPES if s != target
    }
    return {
        "target": target,
        "target_rate": round(target_rate, 4),
        "other_shapes_accuracy": round(float(np.mean(others)), 4),
        "per_shape": per_shape,
        "images": len(rows),
    }
