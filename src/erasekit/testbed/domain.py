"""The testbed as a domain plugin: ShapeCanvas's shapes, colours and styles as built-in concepts,
their evaluation prompts, reference drawings, the testbed pipeline and its judge.

Registered under the ``erasekit.domains`` entry point; the core finds it through that entry point
and never imports this package.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from erasekit.concepts import OTHER, Concept, EvalPrompt, article, cycle
from erasekit.domain import DOMAINS, Domain
from erasekit.errors import UserError
from erasekit.sampling import noise_seed
from erasekit.testbed import data

#: Drawing-seed offset of the reference ShapeCanvas images (FD/KID against real drawings).
REAL_SEED = 7_000_003


@DOMAINS.register("testbed")
class TestbedDomain(Domain):
    """The built-in testbed: 8 shapes (skull, logo as harmful and copyrighted stand-ins), 8 colours, 6 styles."""

    __test__ = False  # not a pytest class
    families = data.FAMILIES

    def concept(self, value: str) -> Concept:
        """Training phrasings of ``value`` in caption-like templates; the family's other values preserved."""
        family = next((f for f, values in data.FAMILIES.items() if value in values), None)
        if family is None:
            raise UserError(f"{value!r} is no testbed value")
        first = {f: [table[v]["train"][0] for v in data.FAMILIES[f]] for f, table in data.PHRASES.items()}
        colours, shapes, bgs = first["colour"], first["shape"], first["background"]
        target = data.PHRASES[family][value]["train"]
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
        """``target`` (seen combinations, training phrasings), ``target_heldout_phrasings`` (the
        concept named by a held-out synonym or implicit phrase), ``target_heldout_pairs`` (held-out
        shape+colour pairs containing it, if any) and ``other`` (the family's other values)."""
        family, value = concept.family, concept.name
        assert family is not None
        seen = data.all_combinations(heldout_pairs=False)
        mine = [a for a in seen if getattr(a, family) == value]
        held = [a for a in data.all_combinations(heldout_pairs=True) if getattr(a, family) == value]
        out = [EvalPrompt(data.caption(a, rng, "train"), "target", a.as_dict()) for a in cycle(mine, n_prompts, rng)]
        out += [EvalPrompt(data.caption(a, rng, "heldout", only=family), "target_heldout_phrasings", a.as_dict())
                for a in cycle(mine, n_prompts, rng)]
        out += [EvalPrompt(data.caption(a, rng, "train"), "target_heldout_pairs", a.as_dict())
                for a in cycle(held, n_prompts, rng)]
        per_other = max(1, n_prompts // 4)
        for other in data.FAMILIES[family]:
            if other != value:
                pool = [a for a in seen if getattr(a, family) == other]
                out += [EvalPrompt(data.caption(a, rng, "train"), OTHER, a.as_dict())
                        for a in cycle(pool, per_other, rng)]
        return out

    def phrases(self, family: str, value: str) -> Mapping[str, Sequence[str]]:
        return data.PHRASES[family][self.value_of(family, value)]

    def prompt(self, attributes: Mapping[str, str], words: Mapping[str, str] | None = None) -> str:
        return data.canonical_caption(data.Attributes(**attributes), dict(words or {}))

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
