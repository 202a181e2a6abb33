"""Concept specifications: what to erase, what it should become, and what must not change."""

from __future__ import annotations

import dataclasses
import difflib
import json
from dataclasses import dataclass
from pathlib import Path

from erasekit.testbed import data


@dataclass(frozen=True)
class Concept:
    """A concept to erase.

    ``target`` holds the words or phrases that name it; each is put into every ``templates`` entry
    (``"{}"`` marks the slot) to make the erase prompts. ``guide`` is what the target should turn
    into, put into the same templates (default ``""``: the concept's slot left empty). ``preserve``
    are whole prompts whose outputs must stay as they are. ``family`` names the testbed attribute
    family for built-in concepts (``None`` for user concepts).
    """

    name: str
    target: tuple[str, ...]
    templates: tuple[str, ...] = ("{}",)
    guide: str = ""
    preserve: tuple[str, ...] = ()
    family: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "target", tuple(self.target))
        object.__setattr__(self, "templates", tuple(self.templates))
        object.__setattr__(self, "preserve", tuple(self.preserve))
        if not self.name or not self.name.strip():
            raise ValueError("concept name must not be empty")
        if not self.target or any(not str(t).strip() for t in self.target):
            raise ValueError(f"concept {self.name!r}: target must list at least one non-empty word or phrase")
        if not self.templates:
            raise ValueError(f"concept {self.name!r}: templates must not be empty")
        for t in self.templates:
            if t.count("{}") != 1:
                raise ValueError(f"concept {self.name!r}: template {t!r} must contain exactly one '{{}}'")
        if self.family is not None and self.family not in data.FAMILIES:
            raise ValueError(f"concept {self.name!r}: unknown family {self.family!r}")

    def erase_prompts(self) -> list[str]:
        """Every template filled with every target phrase."""
        return [_fill(t, w) for w in self.target for t in self.templates]

    def guide_prompts(self) -> list[str]:
        """The guide prompt aligned with each erase prompt (same template, guide in the slot)."""
        return [_fill(t, self.guide) for _ in self.target for t in self.templates]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Concept":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown concept key(s): {', '.join(unknown)}; allowed: {', '.join(sorted(known))}")
        missing = [k for k in ("name", "target") if k not in d]
        if missing:
            raise ValueError(f"concept is missing required key(s): {', '.join(missing)}")
        target = d["target"]
        if isinstance(target, str):
            target = (target,)
        return cls(**{**d, "target": tuple(target)})

    @classmethod
    def from_file(cls, path: str | Path) -> "Concept":
        """Load a concept from a ``.json`` or ``.yaml`` file."""
        path = Path(path)
        text = path.read_text()
        if path.suffix in (".yaml", ".yml"):
            import yaml

            raw = yaml.safe_load(text)
        else:
            raw = json.loads(text)
        if not isinstance(raw, dict):
            raise ValueError(f"{path}: a concept file must hold a mapping, got {type(raw).__name__}")
        return cls.from_dict(raw)


def _fill(template: str, word: str) -> str:
    return " ".join(template.replace("{}", word).split())


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def _builtin(family: str, value: str) -> Concept:
    """A testbed concept: training phrasings in caption-like templates; other values preserved."""
    colours = [data.COLOUR_PHRASES[c]["train"][0] for c in data.COLOURS]
    shapes = [data.SHAPE_PHRASES[s]["train"][0] for s in data.SHAPES]
    bgs = [data.BACKGROUND_PHRASES[b]["train"][0] for b in data.BACKGROUNDS]
    if family == "shape":
        target = data.SHAPE_PHRASES[value]["train"]
        templates = [f"{_article(c)} {c} {{}} {b}" for c in colours for b in bgs]
        others = [s for s in data.SHAPES if s != value]
        preserve = [f"{_article(c)} {c} {data.SHAPE_PHRASES[s]['train'][0]} {b}" for s in others for c in colours
                    for b in bgs[::2]]
    elif family == "colour":
        target = data.COLOUR_PHRASES[value]["train"]
        templates = [f"a {{}} {s} {b}" for s in shapes for b in bgs]
        others = [c for c in data.COLOURS if c != value]
        preserve = [f"{_article(c)} {data.COLOUR_PHRASES[c]['train'][0]} {s} {b}" for c in others for s in shapes
                    for b in bgs[::2]]
    else:
        target = data.BACKGROUND_PHRASES[value]["train"]
        templates = [f"{_article(c)} {c} {s} {{}}" for c in colours for s in shapes]
        others = [b for b in data.BACKGROUNDS if b != value]
        preserve = [f"{_article(c)} {c} {s} {data.BACKGROUND_PHRASES[b]['train'][0]}" for b in others
                    for c in colours[::2] for s in shapes]
    return Concept(name=value, target=tuple(target), templates=tuple(templates), preserve=tuple(preserve),
                   family=family)


BUILTIN: dict[str, tuple[str, str]] = {v: (f, v) for f, values in data.FAMILIES.items() for v in values}


def builtin_names() -> list[str]:
    return sorted(BUILTIN)


def get_concept(name_or_path: str) -> Concept:
    """A built-in testbed concept by name (``skull``, ``red``, ``neon``, ...) or a YAML/JSON file."""
    if name_or_path in BUILTIN:
        return _builtin(*BUILTIN[name_or_path])
    path = Path(name_or_path)
    if path.suffix in (".json", ".yaml", ".yml"):
        if not path.exists():
            raise ValueError(f"concept file {path} does not exist")
        return Concept.from_file(path)
    close = difflib.get_close_matches(name_or_path, list(BUILTIN), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ValueError(
        f"unknown concept {name_or_path!r}{hint}; use a built-in ({', '.join(builtin_names())}) "
        "or a .yaml/.json concept file"
    )
