"""Concept specifications (what to erase, what it should become, what must not change) and the
prompts that evaluate them.

A :class:`Concept` is generic: user concepts load from YAML/JSON. Built-in concepts come from a
:class:`~erasekit.domain.Domain` plugin (the testbed's shapes, colours and styles); such a
concept names the domain's attribute ``family`` it belongs to.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from erasekit.errors import MissingPath, UserError
from erasekit.registry import did_you_mean

#: Prompt splits of an evaluation prompt set. The concept named by the words the eraser was
#: given (``given``), by words the model knows but the eraser was not given (``known``), by words
#: neither ever saw (``unseen``), and by its given words in held-out combinations
#: (``heldout_pairs``); then the prompts of what must be kept (``other``) and prompts that reuse
#: the concept's words in another meaning (``decoy``).
TARGET_SPLITS = ("given", "known", "unseen", "heldout_pairs")
OTHER = "other"
DECOY = "decoy"
SPLITS = (*TARGET_SPLITS, OTHER, DECOY)
#: Split names of erasekit <= 0.2 (testbed v1) and what they are now.
LEGACY_SPLITS = {"target": "given", "target_heldout_phrasings": "unseen", "target_heldout_pairs": "heldout_pairs"}
#: Words that carry no concept (left out when asking whether two phrasings share a word).
STOP_WORDS = frozenset("a an the in on of as by with and at to for from like its his her".split())


@dataclass(frozen=True)
class Concept:
    """A concept to erase.

    ``target`` holds the words or phrases that name it; each is put into every ``templates`` entry
    (``"{}"`` marks the slot) to make the erase prompts. ``guide`` is what the target should turn
    into, put into the same templates (default ``""``: the concept's slot left empty). ``preserve``
    are whole prompts whose outputs must stay as they are. ``family`` names the domain's attribute
    family for built-in concepts (``None`` for user concepts).
    """

    name: str
    target: tuple[str, ...]
    templates: tuple[str, ...] = ("{}",)
    guide: str = ""
    preserve: tuple[str, ...] = ()
    family: str | None = None
    parts: tuple["Concept", ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "parts", tuple(Concept.from_dict(p) if isinstance(p, dict) else p
                                                for p in self.parts))
        if not isinstance(self.name, str):
            raise UserError(f"concept name must be text, got {self.name!r}")
        for key in ("target", "templates", "preserve"):
            value = getattr(self, key)
            if isinstance(value, str) or not isinstance(value, (list, tuple)) or \
                    not all(isinstance(v, str) for v in value):
                raise UserError(f"concept {self.name!r}: {key} must be a list of texts, got {value!r}")
            object.__setattr__(self, key, tuple(value))
        if not isinstance(self.guide, str):
            raise UserError(f"concept {self.name!r}: guide must be text, got {self.guide!r}")
        if self.family is not None and not isinstance(self.family, str):
            raise UserError(f"concept {self.name!r}: family must be text or absent, got {self.family!r}")
        if not self.name or not self.name.strip():
            raise UserError("concept name must not be empty")
        if not self.target or any(not str(t).strip() for t in self.target):
            raise UserError(f"concept {self.name!r}: target must list at least one non-empty word or phrase")
        if not self.templates:
            raise UserError(f"concept {self.name!r}: templates must not be empty")
        for t in self.templates:
            if t.count("{}") != 1:
                raise UserError(f"concept {self.name!r}: template {t!r} must contain exactly one '{{}}'")

    def erase_prompts(self) -> list[str]:
        """Every template filled with every target phrase (a combined concept: its parts' prompts)."""
        if self.parts:
            return [p for part in self.parts for p in part.erase_prompts()]
        return [fill(t, w) for w in self.target for t in self.templates]

    def guide_prompts(self) -> list[str]:
        """The guide prompt aligned with each erase prompt (same template, guide in the slot)."""
        if self.parts:
            return [p for part in self.parts for p in part.guide_prompts()]
        return [fill(t, self.guide) for _ in self.target for t in self.templates]

    def part(self, name: str) -> "Concept":
        """The part named ``name`` (a single concept is its own only part)."""
        for p in self.parts or (self,):
            if p.name == name:
                return p
        names = [p.name for p in self.parts or (self,)]
        raise UserError(f"concept {name!r} is not part of {self.name!r}{did_you_mean(name, names)}; "
                        f"choose from {', '.join(names)}")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        if not self.parts:  # single concepts keep the format (and the content ids) they always had
            d.pop("parts")
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Concept":
        if not isinstance(d, dict):
            raise UserError(f"a concept must be a mapping of keys to values, got {type(d).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise UserError(f"unknown concept key(s): {', '.join(unknown)}; allowed: {', '.join(sorted(known))}")
        missing = [k for k in ("name", "target") if k not in d]
        if missing:
            raise UserError(f"concept is missing required key(s): {', '.join(missing)}")
        target = d["target"]
        return cls(**{**d, "target": (target,) if isinstance(target, str) else target})

    @classmethod
    def from_file(cls, path: str | Path) -> "Concept":
        """Load a concept from a ``.json`` or ``.yaml`` file."""
        import yaml

        path = Path(path)
        try:
            text = path.read_text()
            raw = yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)
        except FileNotFoundError:
            raise MissingPath(f"concept file {path} does not exist") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"cannot read concept file {path} ({type(exc).__name__}: "
                            f"{getattr(exc, 'strerror', None) or exc}); give a readable .yaml or .json file") from None
        except (yaml.YAMLError, json.JSONDecodeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(f"{path} is not valid {'YAML' if path.suffix != '.json' else 'JSON'} ({first}); "
                            "see docs/guide.md for the concept format") from None
        if not isinstance(raw, dict):
            raise UserError(f"{path}: a concept file must hold a mapping, got {type(raw).__name__}")
        try:
            return cls.from_dict(raw)
        except UserError as exc:
            raise UserError(f"{path}: {exc}") from None


def combine(concepts: Sequence[Concept]) -> Concept:
    """One concept that stands for several (mass erasure, MACE): their erase and guide prompts,
    the prompts all of them preserve except those naming any of them, their common family."""
    if len(concepts) == 1:
        return concepts[0]
    names = [c.name for c in concepts]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise UserError(f"concept {dup[0]!r} is listed twice; list each concept once")
    if any(c.parts for c in concepts):
        raise UserError("a combined concept cannot be combined again; list the single concepts")
    targets = [t for c in concepts for t in c.target]
    preserve = [p for p in dict.fromkeys(p for c in concepts for p in c.preserve)
                if not any(phrase_mentioned(t, p) for t in targets)]
    families = {c.family for c in concepts}
    return Concept(name="+".join(names), target=tuple(targets), templates=concepts[0].templates, guide="",
                   preserve=tuple(preserve), family=families.pop() if len(families) == 1 else None,
                   parts=tuple(concepts))


def phrase_mentioned(phrase: str, text: str) -> bool:
    """``phrase`` occurs in ``text`` as whole words (case-insensitive)."""
    return re.search(rf"(?<![\w'-]){re.escape(phrase.lower())}(?![\w'-])", text.lower()) is not None


def fill(template: str, word: str) -> str:
    """``template`` with ``word`` in its ``{}`` slot, whitespace collapsed."""
    return " ".join(template.replace("{}", word).split())


def article(word: str) -> str:
    """The indefinite article for ``word`` ("a" or "an")."""
    return "an" if word[:1].lower() in "aeiou" else "a"


@dataclass(frozen=True)
class EvalPrompt:
    """One prompt of an evaluation set: its text, split, and the attributes it names (domain concepts)."""

    text: str
    split: str
    attributes: dict[str, str] | None = None
    phrase: str | None = None  # the words that name the concept in ``text`` (domain concepts)


def content_words(text: str) -> frozenset[str]:
    """Lower-case words of ``text`` without :data:`STOP_WORDS` (``"death's head"`` -> death's, head)."""
    return frozenset(w for w in re.findall(r"[\w'-]+", text.lower()) if w not in STOP_WORDS)


def shares_no_word(phrase: str, given: Sequence[str]) -> bool:
    """True when ``phrase`` shares no content word with any of the ``given`` phrases: a
    ``known-disjoint`` phrasing, where erasing by name is really tested."""
    words = set().union(*(content_words(g) for g in given)) if given else set()
    return not (content_words(phrase) & words)


def cycle(pool: Sequence[Any], n: int, rng: np.random.Generator) -> list[Any]:
    """``n`` items of ``pool`` in shuffled rounds (each round a fresh permutation)."""
    out: list[Any] = []
    while len(pool) and len(out) < n:
        out.extend(pool[i] for i in rng.permutation(len(pool)))
    return out[:n]


def get_concept(name_or_path: str) -> Concept:
    """A built-in concept by name (``skull``, ``red``, ``neon``: the installed domains'), a
    YAML/JSON concept file, several of those separated by commas (``skull,logo``), or a ``.txt``
    file listing one per line (``#`` starts a comment): several make one combined concept."""
    from erasekit.domain import builtin_concepts

    if name_or_path.endswith(".txt"):
        return combine([get_concept(n) for n in _listed(Path(name_or_path))])
    if "," in name_or_path:
        items = [n.strip() for n in name_or_path.split(",")]
        if not all(items):
            raise UserError(f"concept list {name_or_path!r} has an empty entry; separate names with single commas")
        return combine([get_concept(n) for n in items])
    path = Path(name_or_path)
    if path.suffix in (".json", ".yaml", ".yml"):
        return Concept.from_file(path)
    builtin = builtin_concepts()
    if name_or_path in builtin:
        return builtin[name_or_path].concept(name_or_path)
    raise UserError(
        f"unknown concept {name_or_path!r}{did_you_mean(name_or_path, builtin)}; use a built-in "
        f"({', '.join(sorted(builtin))}), a .yaml/.json concept file, or a .txt file listing several"
    )


def _listed(path: Path) -> list[str]:
    """The concept names or files a ``.txt`` list holds (relative files resolve against its folder)."""
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        raise MissingPath(f"concept list {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read concept list {path} ({type(exc).__name__}); give a readable text file") from None
    items = [line.split("#", 1)[0].strip() for line in lines]
    items = [i for i in items if i]
    if not items:
        raise UserError(f"concept list {path} names no concept; put one name or file per line")
    return [str(path.parent / i) if Path(i).suffix in (".json", ".yaml", ".yml") and not Path(i).is_absolute()
            else i for i in items]
