"""A benchmark spec (YAML): methods x concepts x attacks x seeds, with the evaluation settings.

One ``cell`` per (method, concept, seed): fit, evaluate, then every attack. Every name is checked
against its registry when the spec is read (unknown names fail with "did you mean"), every config
override against the method's config class, so a typo fails in the first second, not after an
hour of fitting::

    name: smoke
    seeds: [0]
    methods:
      - uce                                   # a registered method with its defaults
      - {label: esd-x, method: esd, set: {train_method: esd-x, iterations: 10}}
      - {method: irece, stack_on: [uce]}      # a stack: UCE applied first, IRECE on top (label uce+irece)
    concepts: [skull]
    attacks:
      - paraphrase                            # its default budget
      - {attack: embedding, budget: 10}
    eval: {n_prompts: 4, seeds: [0, 1]}       # EvalConfig fields
    attack_targets: {n_prompts: 4, seeds: [0]}
    lm:                                       # language models: methods x tasks x attacks, same seeds
      model: tiny                             # the tiny TinyTOFU model (trained once per task seed), a folder, or smollm2
      oracle: tiny                            # the model never trained on the forget set (or a folder; null: none)
      methods: [npo, {label: npo+gu, method: npo, set: {gu: true}}]
      tasks: [tinytofu]                       # or {task: tinytofu, seed: 1}
      attacks: [paraphrase, {attack: relearn, budget: 10}]

A spec may hold only the diffusion part, only the ``lm`` part, or both.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from erasekit.config import Config, check
from erasekit.errors import UserError
from erasekit.evaluation import EvalConfig

LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$")


@dataclass(frozen=True)
class MethodSpec(Config):
    """One row of the leaderboard: a registered method with config overrides, under a label."""

    method: str
    label: str = ""
    set: dict = field(default_factory=dict)
    #: methods applied first, this one on top (``[uce]`` or ``[{method: uce, set: {...}}]``): a stack
    stack_on: tuple = ()

    @staticmethod
    def make_config(method: str, overrides: dict) -> Config:
        from erasekit.erasure import make_config

        return make_config(method, overrides)

    def __post_init__(self) -> None:
        if not isinstance(self.stack_on, (list, tuple)):
            raise UserError(f"stack_on: must be a list of methods to apply first, got {self.stack_on!r}")
        object.__setattr__(self, "stack_on", tuple(m if isinstance(m, MethodSpec) else
                                                   _entry(type(self), "method", m, "stack_on") for m in self.stack_on))
        self.check_types()
        self.make_config(self.method, self.set)  # unknown method ("did you mean") or bad override: fail now
        check(all(not m.stack_on for m in self.stack_on), "stack_on",
              "a method under a stack cannot have its own 'stack_on'; list them all in order")
        object.__setattr__(self, "label", self.label or "+".join([*(m.method for m in self.stack_on), self.method]))
        check(bool(LABEL.match(self.label)), "label", f"must be letters, digits and _.+- (at most 64), got {self.label!r}")

    def config(self) -> dict[str, Any]:
        """The method's full resolved config (defaults with the overrides)."""
        return self.make_config(self.method, self.set).to_dict()

    def under(self) -> tuple[tuple[str, dict[str, Any]], ...]:
        """The stack's lower methods with their resolved configs, in the order they apply."""
        return tuple((m.method, m.config()) for m in self.stack_on)


@dataclass(frozen=True)
class AttackSpec(Config):
    """An attack with its budget (``None``: the attack's default)."""

    attack: str
    budget: int | None = None

    def __post_init__(self) -> None:
        from erasekit.attacks import get_attack

        self.check_types()
        atk = get_attack(self.attack)  # unknown name: "did you mean"
        check(self.budget is None or self.budget >= 1, "budget", f"must be >= 1 {atk.budget_unit}, got {self.budget}")
        if self.budget is None:
            object.__setattr__(self, "budget", atk.default_budget)


@dataclass(frozen=True)
class LMMethodSpec(MethodSpec):
    """A registered language-model unlearning method with config overrides, under a label."""

    @staticmethod
    def make_config(method: str, overrides: dict) -> Config:
        from erasekit.lm.methods.base import make_lm_config

        return make_lm_config(method, overrides)

    def __post_init__(self) -> None:
        check(not self.stack_on, "stack_on", "language-model methods do not stack; drop 'stack_on'")
        super().__post_init__()

    def config(self, seed: int = 0) -> dict[str, Any]:  # type: ignore[override]
        """The resolved config; a method with a ``seed`` setting gets the replicate's seed unless set."""
        resolved = super().config()
        if "seed" in resolved and "seed" not in self.set:
            resolved["seed"] = seed
        return resolved


@dataclass(frozen=True)
class LMAttackSpec(Config):
    """A language-model attack with its budget (``None``: the attack's default)."""

    attack: str
    budget: int | None = None

    def __post_init__(self) -> None:
        from erasekit.lm.attacks.base import get_lm_attack

        self.check_types()
        atk = get_lm_attack(self.attack)  # unknown name: "did you mean"
        if self.budget is None:
            object.__setattr__(self, "budget", atk.default_budget)
        atk.check_budget(self.budget)


#: ``model``/``oracle`` value meaning the tiny TinyTOFU models, trained on first use.
TINY = "tiny"


@dataclass(frozen=True)
class LMSection(Config):
    """The language-model part of a spec: methods x tasks x attacks (the spec's seeds)."""

    methods: tuple = ()
    tasks: tuple = ()
    attacks: tuple = ()
    model: str = TINY
    oracle: str | None = TINY

    def __post_init__(self) -> None:
        for name in ("methods", "tasks", "attacks"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        self.check_types()
        check(len(self.methods) >= 1, "lm.methods", "must list at least one method")
        check(len(self.tasks) >= 1, "lm.tasks", "must list at least one task (tinytofu)")
        labels = [m.label for m in self.methods]
        dup = sorted({x for x in labels if labels.count(x) > 1})
        check(not dup, "lm.methods", f"labels must be unique, {', '.join(dup)} repeats; give each a 'label'")
        atks = [a.attack for a in self.attacks]
        dup = sorted({x for x in atks if atks.count(x) > 1})
        check(not dup, "lm.attacks", f"each attack once, {', '.join(dup)} repeats")
        for name in ("model", "oracle"):
            value = getattr(self, name)
            if value == TINY:
                bad = sorted({t.task for t in self.tasks if t.task != "tinytofu"})
                check(not bad, f"lm.{name}", f"'tiny' is the TinyTOFU model; {', '.join(bad)} needs a model folder "
                      "or smollm2")

    @classmethod
    def from_mapping(cls, raw: Any) -> "LMSection":
        from erasekit.lm.tasks import Forget

        raw = dict(_mapping(raw, "lm"))
        raw["methods"] = tuple(_entry(LMMethodSpec, "method", m, "lm.methods") for m in _items(raw, "methods", "lm."))
        raw["attacks"] = tuple(_entry(LMAttackSpec, "attack", a, "lm.attacks") for a in _items(raw, "attacks", "lm."))
        raw["tasks"] = tuple(_entry(Forget, "task", t, "lm.tasks") for t in _items(raw, "tasks", "lm."))
        try:
            return cls.from_dict(raw)  # type: ignore[return-value]
        except UserError as exc:
            msg = str(exc)
            raise UserError(msg if msg.startswith("lm") else f"lm: {msg}") from None


@dataclass(frozen=True)
class TargetSpec(Config):
    """The attacks' targets: ``n_prompts`` given-phrasing prompts x ``seeds`` per cell."""

    n_prompts: int = 4
    seeds: tuple = (0,)

    def __post_init__(self) -> None:
        object.__setattr__(self, "seeds", tuple(self.seeds))
        self.check_types()
        check(self.n_prompts >= 1, "n_prompts", f"must be >= 1, got {self.n_prompts}")
        check(len(self.seeds) >= 1 and all(isinstance(s, int) and s >= 0 for s in self.seeds), "seeds",
              f"must be a non-empty list of integers >= 0, got {list(self.seeds)}")


@dataclass(frozen=True)
class BenchSpec(Config):
    """A whole benchmark: see the module docstring."""

    name: str
    methods: tuple = ()
    concepts: tuple = ()
    attacks: tuple = ()
    seeds: tuple = (0,)
    eval: EvalConfig = EvalConfig()
    attack_targets: TargetSpec = TargetSpec()
    weights: str | None = None
    lm: LMSection | None = None

    def __post_init__(self) -> None:
        for name in ("methods", "concepts", "attacks", "seeds"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        self.check_types()
        check(bool(LABEL.match(self.name)), "name", f"must be letters, digits and _.+- (at most 64), got {self.name!r}")
        if self.methods or self.concepts or self.lm is None:
            check(len(self.methods) >= 1, "methods", "must list at least one method")
            check(len(self.concepts) >= 1, "concepts", "must list at least one concept")
        check(len(self.seeds) >= 1 and all(isinstance(s, int) and 0 <= s < 1000 for s in self.seeds), "seeds",
              f"must be a non-empty list of integers in [0, 1000), got {list(self.seeds)}")
        check(len(set(self.seeds)) == len(self.seeds), "seeds", f"must not repeat, got {list(self.seeds)}")
        labels = [m.label for m in self.methods]
        dup = sorted({x for x in labels if labels.count(x) > 1})
        check(not dup, "methods", f"labels must be unique, {', '.join(dup)} repeats; give each a 'label'")
        atks = [a.attack for a in self.attacks]
        dup = sorted({x for x in atks if atks.count(x) > 1})
        check(not dup, "attacks", f"each attack once, {', '.join(dup)} repeats")

    @classmethod
    def from_mapping(cls, raw: Any) -> "BenchSpec":
        """A spec from parsed YAML (names, overrides and settings checked)."""
        if not isinstance(raw, dict):
            raise UserError(f"a benchmark spec is a mapping with name, methods, concepts, ...; got {type(raw).__name__}")
        raw = dict(raw)
        raw["methods"] = tuple(_entry(MethodSpec, "method", m, "methods") for m in _items(raw, "methods"))
        raw["attacks"] = tuple(_entry(AttackSpec, "attack", a, "attacks") for a in _items(raw, "attacks"))
        raw["concepts"] = tuple(_concept_name(c) for c in _items(raw, "concepts"))
        raw["seeds"] = tuple(_items(raw, "seeds")) if "seeds" in raw else (0,)
        if "eval" in raw:
            raw["eval"] = EvalConfig.from_dict(_mapping(raw["eval"], "eval"))
        if "attack_targets" in raw:
            raw["attack_targets"] = TargetSpec.from_dict(_mapping(raw["attack_targets"], "attack_targets"))
        if raw.get("lm") is not None:
            raw["lm"] = LMSection.from_mapping(raw["lm"])
        return cls.from_dict(raw)  # type: ignore[return-value]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_spec(path: str | Path) -> BenchSpec:
    """Read and check a YAML spec; every problem is one :class:`UserError` line naming the file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"spec {path} does not exist; pass a YAML file such as benchmarks/specs/smoke.yaml")
    try:
        raw = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"spec {path} is not valid YAML ({first})") from None
    try:
        return BenchSpec.from_mapping(raw)
    except UserError as exc:
        raise UserError(f"spec {path}: {exc}") from None


def _items(raw: dict, key: str, prefix: str = "") -> list:
    value = raw.get(key, [])
    if not isinstance(value, list):
        raise UserError(f"{prefix}{key}: must be a list, got {value!r}")
    return value


def _mapping(value: Any, key: str) -> dict:
    if not isinstance(value, dict):
        raise UserError(f"{key}: must be a mapping, got {value!r}")
    return value


def _entry(cls: type[Config], name_key: str, item: Any, where: str) -> Any:
    """``"uce"`` or ``{method: uce, ...}`` -> the spec dataclass."""
    if isinstance(item, str):
        item = {name_key: item}
    if isinstance(item, dict) and True in item:  # YAML 1.1 reads a bare `on:` (also yes/y) as true
        raise UserError(f"{where}: a key reads as true in {item!r}; YAML turns `on`/`yes` into true: "
                        "to stack methods write stack_on: [...]")
    try:
        return cls.from_dict(_mapping(item, where))
    except TypeError as exc:  # a required key missing
        raise UserError(f"{where}: {item!r} lacks {name_key!r} ({exc})") from None
    except UserError as exc:
        raise UserError(f"{where}: {exc}") from None


def _concept_name(item: Any) -> str:
    from erasekit.concepts import get_concept

    if not isinstance(item, str):
        raise UserError(f"concepts: each is a built-in name or a concept file, got {item!r}")
    get_concept(item)  # unknown -> "did you mean"
    return item
