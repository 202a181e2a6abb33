"""Domains: worlds of built-in concepts with a judge, provided by plugins.

A :class:`Domain` knows its attribute families (``shape``: circle, ..., skull), builds each
value's :class:`~erasekit.concepts.Concept`, the prompt sets that evaluate and attack it, and
reference images, and loads the pipeline and judge it was made for. The core never imports a
domain: plugins register theirs under the ``erasekit.domains`` entry point (the built-in testbed
is ``erasekit.testbed.domain``), or through ``$ERASEKIT_PLUGINS``. Stable Diffusion needs no
domain: user concepts (YAML/JSON) and a local pipeline folder work without one.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any, ClassVar, Mapping, Protocol, Sequence

import numpy as np
import torch

from erasekit.errors import UserError
from erasekit.registry import Registered, Registry, did_you_mean

if TYPE_CHECKING:  # concepts.get_concept looks domains up: only annotations go this way
    from erasekit.concepts import Concept, EvalPrompt


class Judge(Protocol):
    """What erasekit needs from a judge: a verdict per image (family -> value) and features for
    distances between image sets."""

    def predict(self, images: np.ndarray) -> list[dict[str, str]]: ...

    def image_features(self, images: np.ndarray) -> torch.Tensor: ...


class Domain(Registered):
    """A world of concepts. Subclasses set ``families`` and implement the methods below."""

    #: attribute family -> its values (each value is a built-in concept)
    families: ClassVar[Mapping[str, Sequence[str]]] = {}

    def concept(self, value: str) -> Concept:
        """The built-in concept ``value`` (what an eraser is given, what it must preserve)."""
        raise NotImplementedError

    def eval_prompts(self, concept: Concept, n_prompts: int, rng: np.random.Generator) -> list[EvalPrompt]:
        """The evaluation prompt set of a built-in concept (splits in :data:`erasekit.concepts.SPLITS`)."""
        raise NotImplementedError

    def phrases(self, family: str, value: str) -> Mapping[str, Sequence[str]]:
        """The words that name ``value``, by tier (``"given"``: what an eraser is handed; ``"known"``:
        the model learned them, no eraser is given them; ``"unseen"``: neither ever saw them)."""
        raise NotImplementedError

    def prompt(self, attributes: Mapping[str, str], words: Mapping[str, str] | None = None) -> str:
        """A plain prompt for ``attributes``; ``words`` replaces a family's phrase."""
        raise NotImplementedError

    def reference_image(self, attributes: Mapping[str, str], seed: int, index: int) -> np.ndarray:
        """A real drawing of ``attributes`` for image ``(seed, index)`` (uint8 ``(H, W, 3)``)."""
        raise NotImplementedError

    def load_pipeline(self, weights: str | None = None) -> Any:
        """The domain's pipeline (its shipped weights by default)."""
        raise NotImplementedError

    def load_judge(self, folder: str | None = None) -> Judge:
        """The domain's judge (its shipped weights by default)."""
        raise NotImplementedError

    #: the built-in concepts its oracle (:meth:`load_oracle`) was trained without
    oracle_excludes: ClassVar[Sequence[str]] = ()

    def oracle_for(self, pipe: Any) -> Any:
        """The domain's oracle pipeline for ``pipe``: the same recipe as ``pipe`` trained without
        :attr:`oracle_excludes` (what a perfect erasure would look like), or ``None`` if there is
        none (also when ``pipe`` is not the model the oracle belongs to)."""
        return None

    def concept_scores(self, judge: Any, images: np.ndarray, concept: Concept) -> np.ndarray:
        """The judge's probability of ``concept`` in each image ``(B,)``."""
        raise NotImplementedError

    def label(self, verdict: Mapping[str, str]) -> str:
        """A judge verdict as a short caption (grids and listings)."""
        return ", ".join(verdict.values())

    def value_of(self, family: str, value: str) -> str:
        """``value`` if ``family`` has it, else a ``ValueError`` with a suggestion."""
        if family not in self.families:
            raise UserError(f"unknown attribute family {family!r}{did_you_mean(family, self.families)}")
        values = self.families[family]
        if value not in values:
            raise UserError(f"unknown {family} {value!r}{did_you_mean(value, values)}; choose from {', '.join(values)}")
        return value


DOMAINS: Registry[Domain] = Registry("domain", Domain, group="erasekit.domains")


@cache
def get_domain(name: str) -> Domain:
    """The installed domain ``name`` (one instance per process)."""
    return DOMAINS.create(name)


def builtin_concepts() -> dict[str, Domain]:
    """Every built-in concept name of the installed domains, with its domain."""
    out: dict[str, Domain] = {}
    for name in DOMAINS.names():
        d = get_domain(name)
        for values in d.families.values():
            out.update((v, d) for v in values)
    return out


def domain_of(concept: Concept) -> Domain | None:
    """The domain of a built-in concept (``None`` for user concepts; a combined concept: its parts')."""
    if concept.parts:
        domains = {id(d): d for d in (domain_of(p) for p in concept.parts)}
        if len(domains) > 1:
            raise UserError(f"the parts of {concept.name!r} come from different domains; combine concepts of one")
        return next(iter(domains.values()))
    if concept.family is None:
        return None
    for name in DOMAINS.names():
        d = get_domain(name)
        if concept.name in d.families.get(concept.family, ()):
            return d
    raise UserError(f"concept {concept.name!r} names family {concept.family!r}, which no installed domain "
                     f"provides (installed: {', '.join(DOMAINS.names()) or 'none'}); drop 'family' for a user concept")
