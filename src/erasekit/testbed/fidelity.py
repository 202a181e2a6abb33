"""Generation fidelity of the testbed (``erasekit testbed evaluate``).

Prompt sets, all drawn deterministically from a seed, every prompt sampled with each seed and
every image scored by the judge per family:

* ``seen_given`` / ``seen_known``: seen shape+colour pairs, every family named by its ``given``
  words / by ``known`` words (trained, never given to an eraser);
* ``heldout_pairs_given`` / ``heldout_pairs_known``: the held-out shape+colour pairs (never
  trained on), given / known words;
* ``unseen``: seen pairs, one family per prompt (in turn) named by an ``unseen`` phrase, and that
  family scored (reported beside the encoder ceiling of ``benchmarks/phrasing_probe.py``);
* ``unseen_sentences``: every word and the template unseen at once (reported).

For the protected concepts (skull, logo, neon): the concept rate on their ``given`` prompts, on
their ``known`` prompts, and on each ``known`` phrasing on its own (``known-disjoint`` ones, which
share no word with the given name, marked), on ``decoy`` prompts that reuse their words in another
meaning, and on off-topic prompts (``seen_given`` images of other values).

A model trained with ``--exclude`` (the oracle) is measured with the same ``exclude``: the six
splits score only prompts without an excluded value, and an excluded concept's bar is a rate of at
most :data:`REQUIREMENTS` ``["oracle_rate"]`` on its given and known prompts.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass

import numpy as np
import torch

from erasekit.concepts import cycle as cycle_pool
from erasekit.concepts import shares_no_word
from erasekit.config import Config
from erasekit.errors import UserError
from erasekit.sampling import DEFAULT_GUIDANCE, DEFAULT_STEPS, generate
from erasekit.testbed import data
from erasekit.testbed.judge import Judge
from erasekit.testbed.pipeline import TestbedPipeline

SPLITS = ("seen_given", "seen_known", "heldout_pairs_given", "heldout_pairs_known", "unseen", "unseen_sentences")
PRECISIONS = ("fp32", "bf16")


@dataclass(frozen=True)
class Prompt:
    text: str
    attributes: data.Attributes
    split: str
    scored_family: str | None = None  # the one family scored (``unseen``), else all
    concept: str | None = None  # protected-concept prompts: which concept
    phrase: str | None = None  # ... and the phrase that names it


def prompt_sets(n_prompts: int = 64, seed: int = 0) -> dict[str, list[Prompt]]:
    """``n_prompts`` prompts per split of :data:`SPLITS`; ``protected``: for each protected concept,
    ``max(2, n_prompts // 8)`` prompts per given and known phrasing; ``decoy``: ``max(12, n_prompts // 2)``
    decoy prompts per protected concept."""
    if n_prompts < 1:
        raise UserError(f"n_prompts must be >= 1, got {n_prompts}")
    rng = np.random.default_rng([seed, 0xE7A1])
    out: dict[str, list[Prompt]] = {}

    def cycle(pool: list, n: int) -> list:
        return cycle_pool(pool, n, rng)

    seen = data.all_combinations(heldout_pairs=False)
    held = data.all_combinations(heldout_pairs=True)
    for name, pool in (("seen", seen), ("heldout_pairs", held)):
        for tier in ("given", "known"):
            out[f"{name}_{tier}"] = [Prompt(data.caption(a, rng, tier), a, f"{name}_{tier}") for a in cycle(pool, n_prompts)]
    families = list(data.FAMILIES)
    out["unseen"] = [
        Prompt(data.caption(a, rng, "unseen", only=families[k % 3]), a, "unseen", families[k % 3])
        for k, a in enumerate(cycle(seen, n_prompts))
    ]
    out["unseen_sentences"] = [Prompt(data.caption(a, rng, "unseen"), a, "unseen_sentences") for a in cycle(seen, n_prompts)]
    per_phrase = max(2, n_prompts // 8)
    out["protected"] = []
    out["decoy"] = []
    for value in data.PROTECTED:
        family = data.family_of(value)
        table = data.PHRASES[family][value]
        mine = [a for a in seen if getattr(a, family) == value]
        for phrase in (*table["given"], *table["known"]):
            out["protected"] += [Prompt(data.phrase_caption(a, rng, {family: phrase}), a, "protected", family, value, phrase)
                                 for a in cycle(mine, per_phrase)]
        out["decoy"] += [Prompt(text, a, "decoy", family, value) for a, text in data.decoys(value, rng, max(12, n_prompts // 2))]
    return out


@dataclass(frozen=True)
class FidelityConfig(Config):
    n_prompts: int = 64
    seeds: tuple = (0, 1, 2, 3)
    steps: int = DEFAULT_STEPS
    guidance: float = DEFAULT_GUIDANCE
    prompt_seed: int = 0
    precision: str = "fp32"
    exclude: tuple = ()  # values the model was trained without (the oracle: skull, logo, neon)

    def __post_init__(self) -> None:
        object.__setattr__(self, "seeds", tuple(self.seeds))
        object.__setattr__(self, "exclude", data.parse_exclude(self.exclude))
        self.check_types()
        if self.n_prompts < 1:
            raise UserError(f"n_prompts must be >= 1, got {self.n_prompts}")
        if not self.seeds:
            raise UserError("seeds must not be empty")
        if self.steps < 1:
            raise UserError(f"steps must be >= 1, got {self.steps}")
        if self.guidance < 0:
            raise UserError(f"guidance must be >= 0, got {self.guidance}")
        if self.precision not in PRECISIONS:
            raise UserError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")


def precision_context(precision: str):
    """bf16 autocast on the CPU for ``"bf16"``, nothing for ``"fp32"``."""
    return torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else nullcontext()


def _rate(hits: list[bool]) -> float | None:
    """Share of hits; ``None`` when nothing was scored (too few prompts for that split)."""
    return round(float(np.mean(hits)), 4) if hits else None


def _at_least(value: float | None, bar: float) -> bool:
    return value is not None and value >= bar


def evaluate_fidelity(
    pipe: TestbedPipeline, judge: Judge, cfg: FidelityConfig = FidelityConfig(), progress: bool = True
) -> dict:
    """Judge accuracy per split and family; for skull, logo and neon, the concept rate per phrasing
    tier and phrasing, on decoys and off-topic prompts."""
    t0 = time.perf_counter()
    sets = prompt_sets(cfg.n_prompts, cfg.prompt_seed)
    excluded = set(cfg.exclude)
    for split in SPLITS:
        sets[split] = [p for p in sets[split] if not excluded & {p.attributes.shape, p.attributes.colour, p.attributes.background}]
    result: dict = {"config": asdict(cfg), "splits": {}}
    judged: dict[str, list[tuple[Prompt, dict[str, str]]]] = {}
    with precision_context(cfg.precision):
        for split, prompts in sets.items():
            if not prompts:  # every prompt held an excluded value
                judged[split] = []
                continue
            imgs = generate(pipe, [p.text for p in prompts], list(cfg.seeds), cfg.steps, cfg.guidance, progress=progress)
            verdicts = judge.predict(imgs)
            judged[split] = [(p, verdicts[k * len(prompts) + i]) for k in range(len(cfg.seeds)) for i, p in enumerate(prompts)]
    for split in SPLITS:
        rows = judged[split]
        row: dict = {"images": len(rows)}
        for family in data.FAMILIES:
            row[family] = _rate([v[family] == getattr(p.attributes, family) for p, v in rows
                                 if p.scored_family in (None, family)])
        row["all"] = _rate([all(v[f] == getattr(p.attributes, f) for f in data.FAMILIES) for p, v in rows])
        result["splits"][split] = row
    result["protected"] = {}
    for value in data.PROTECTED:
        family = data.family_of(value)
        given = data.PHRASES[family][value]["given"]
        mine = [(p, v) for p, v in judged["protected"] if p.concept == value]
        phrasings = {}
        for phrase in dict.fromkeys(p.phrase for p, _ in mine):
            phrasings[phrase] = {"rate": _rate([v[family] == value for p, v in mine if p.phrase == phrase]),
                                 "disjoint": phrase not in given and shares_no_word(str(phrase), given),
                                 "tier": "given" if phrase in given else "known"}
        known = [v[family] == value for p, v in mine if p.phrase not in given]
        disjoint = [v[family] == value for p, v in mine if phrasings[p.phrase]["disjoint"]]
        result["protected"][value] = {
            "excluded": value in excluded,
            "given": _rate([v[family] == value for p, v in mine if p.phrase in given]),
            "known": _rate(known),
            "known_disjoint": _rate(disjoint),
            "phrasings": phrasings,
            "decoy": _rate([v[family] == value for p, v in judged["decoy"] if p.concept == value]),
            "offtopic": _rate([v[family] == value for p, v in judged["seen_given"]
                               if getattr(p.attributes, family) != value]),
        }
    result["requirements"] = REQUIREMENTS
    result["meets_requirements"] = meets_requirements(result)
    result["wall_time_s"] = round(time.perf_counter() - t0, 1)
    return result


#: The fidelity the shipped testbed is held to.
REQUIREMENTS = {
    "accuracy": 0.95,  # per family, on seen and held-out pairs with given and known words
    "known_rate": 0.95,  # concept rate on each protected concept's known prompts
    "phrasing_rate": 0.85,  # ... and on each known phrasing on its own
    "decoy_rate": 0.10,  # at most, on decoy prompts
    "oracle_rate": 0.05,  # at most, on given and known prompts of a value the model was trained without
}


def meets_requirements(result: dict) -> dict[str, bool]:
    out = {}
    for split in ("seen_given", "seen_known", "heldout_pairs_given", "heldout_pairs_known"):
        row = result["splits"][split]
        out[split] = all(_at_least(row[f], REQUIREMENTS["accuracy"]) for f in data.FAMILIES)
    for value, row in result["protected"].items():
        if row["excluded"]:
            out[f"{value}_absent"] = all(r is not None and r <= REQUIREMENTS["oracle_rate"]
                                         for r in (row["given"], row["known"]))
            continue
        out[f"{value}_known"] = _at_least(row["known"], REQUIREMENTS["known_rate"])
        out[f"{value}_each_phrasing"] = all(_at_least(ph["rate"], REQUIREMENTS["phrasing_rate"])
                                            for ph in row["phrasings"].values())
        out[f"{value}_decoy"] = row["decoy"] is not None and row["decoy"] <= REQUIREMENTS["decoy_rate"]
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

    Prompts use given words on seen combinations: ``n_target`` for the target shape and
    ``n_other`` for each other shape, each sampled with every seed.
    """
    data.check_value("shape", target)
    rng = np.random.default_rng([prompt_seed, 0x5EFF])
    seen = data.all_combinations(heldout_pairs=False)

    def prompts_for(shape: str, n: int) -> list[Prompt]:
        pool = [a for a in seen if a.shape == shape]
        picks = [pool[i] for i in rng.choice(len(pool), size=n, replace=n > len(pool))]
        return [Prompt(data.caption(a, rng, "given"), a, shape) for a in picks]

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
