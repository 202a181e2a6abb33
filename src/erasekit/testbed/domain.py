"""The testbed as a domain plugin: ShapeCanvas's shapes, colours and styles as built-in concepts,
their evaluation prompts, reference drawings, the testbed pipeline and its judge.

Registered under the ``erasekit.domains`` entry point; the core finds it through that entry point
and never imports this package.
"""

from __future__ import annotations

from functools import cache
from typing import Mapping, Sequence

import numpy as np

from erasekit.concepts import DECOY, OTHER, Concept, EvalPrompt, article, cycle
from erasekit.domain import DOMAINS, Domain
from erasekit.pipelines import fingerprint
from erasekit.sampling import noise_seed
from erasekit.testbed import data

#: Drawing-seed offset of the reference ShapeCanvas images (FD/KID against real drawings).
REAL_SEED = 7_000_003


@cache
def _shipped_oracle():
    from erasekit.testbed.pipeline import load_testbed, shipped_weights

    folder = shipped_weights() / "oracle"
    return load_testbed(folder) if (folder / "unet" / "config.json").exists() else None


@cache
def _shipped_fingerprint() -> str:
    from erasekit.testbed.pipeline import load_testbed

    return fingerprint(load_testbed())


@DOMAINS.register("testbed")
class TestbedDomain(Domain):
    """The built-in testbed: 8 shapes (skull, logo as harmful and copyrighted stand-ins), 8 colours, 6 styles."""

    #: the values the oracle model never saw
    oracle_excludes = data.PROTECTED

    __test__ = False  # not a pytest class
    families = data.FAMILIES

    def concept(self, value: str) -> Concept:
        """The ``given`` words of ``value`` in caption-like templates; the family's other values preserved.

        Only ``given`` words reach an eraser: the ``known`` and ``unseen`` tiers are what
        evaluation and attacks name the concept by."""
        family = data.family_of(value)
        first = {f: [table[v]["given"][0] for v in data.FAMILIES[f]] for f, table in data.PHRASES.items()}
        colours, shapes, bgs = first["colour"], first["shape"], first["background"]
        target = data.PHRASES[family][value]["given"]
        others = [first[family][k] for k, v in enumerate(data.FAMILIES[family]) if v != value]
        if family == "shape":
            templates = [f"{article(c)} {c} {{}} {b}" for c in colours for b in bgs]
            preserve = [f"{article(c)} {c} {s} {b}" for s in others for c in colours for b in bgs[::2]]
        elif family == "colour":
            templates = [f"a {{}} {s} {b}" for s in shapes for b in bgs]
            preserve = [f"{article(c)} {c} {s} {b}" for c in others for s in shapes for b in bgs[::2]]
        else:
            templates = [f"{article(c)} {c} {s} {{}}" for c in colours for s in shapes]
            preserve = [f"{article(c)} {c} {s} {b}" for b in others for c in colours[::2] for s in shapes]
        return Concept(name=value, target=tuple(target), templates=tuple(templates), preserve=tuple(preserve),
                       family=family)

    def eval_prompts(self, concept: Concept, n_prompts: int, rng: np.random.Generator) -> list[EvalPrompt]:
        """``n_prompts`` per split: the concept named by its ``given``, ``known`` and ``unseen``
        words on seen combinations, by its given words on held-out shape+colour pairs
        (``heldout_pairs``, if any), the family's other values (``other``, ``n_prompts // 4`` each)
        and, for skull, logo and neon, ``decoy`` prompts that reuse their words in another meaning."""
        family, value = concept.family, concept.name
        assert family is not None
        table = data.PHRASES[family][value]
        seen = data.all_combinations(heldout_pairs=False)
        mine = [a for a in seen if getattr(a, family) == value]
        held = [a for a in data.all_combinations(heldout_pairs=True) if getattr(a, family) == value]

        def named(split: str, pool: list[data.Attributes], phrases: tuple[str, ...]) -> list[EvalPrompt]:
            words = cycle(list(phrases), n_prompts, rng)
            return [EvalPrompt(data.phrase_caption(a, rng, {family: w}), split, a.as_dict(), w)
                    for a, w in zip(cycle(pool, n_prompts, rng), words)]

        out = named("given", mine, table["given"]) + named("known", mine, table["known"])
        out += named("unseen", mine, table["unseen"]) + named("heldout_pairs", held, table["given"])
        per_other = max(1, n_prompts // 4)
        for other in data.FAMILIES[family]:
            if other != value:
                pool = [a for a in seen if getattr(a, family) == other]
                out += [EvalPrompt(data.phrase_caption(a, rng), OTHER, a.as_dict()) for a in cycle(pool, per_other, rng)]
        out += [EvalPrompt(text, DECOY, a.as_dict()) for a, text in data.decoys(value, rng, n_prompts)]
        return out

    def phrases(self, family: str, value: str) -> Mapping[str, Sequence[str]]:
        return data.PHRASES[family][self.value_of(family, value)]

    def prompt(self, attributes: Mapping[str, str], words: Mapping[str, str] | None = None) -> str:
        return data.canonical_caption(data.Attributes(**attributes), dict(words or {}))

    def concept_scores(self, judge, images: np.ndarray, concept: Concept) -> np.ndarray:
        """The judge's probability of the concept in each image."""
        assert concept.family is not None
        return judge.concept_scores(images, concept.family, concept.name).numpy()

    def oracle_for(self, pipe):
        """The shipped oracle (the recipe retrained without skull, logo and neon) when ``pipe`` is
        the shipped testbed, else ``None``: another model's gap to it would mean nothing."""
        oracle = self.load_oracle()
        if oracle is None or fingerprint(pipe) != _shipped_fingerprint():
            return None
        return oracle

    def load_oracle(self):
        """The shipped oracle pipeline, loaded once (``None`` if the package has none)."""
        return _shipped_oracle()

    def label(self, verdict: Mapping[str, str]) -> str:
        return f"{verdict['colour']} {verdict['shape']}, {verdict['background']}"

    def reference_image(self, attributes: Mapping[str, str], seed: int, index: int) -> np.ndarray:
        return data.render(data.Attributes(**attributes), REAL_SEED + noise_seed(seed, index))

    def load_pipeline(self, weights: str | None = None):
        from erasekit.testbed.pipeline import load_testbed

        return load_testbed(weights)

    def load_judge(self, folder: str | None = None):
        from erasekit.testbed.judge import load_judge

        return load_judge(folder)
