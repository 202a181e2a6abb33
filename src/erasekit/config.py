"""Frozen, validated config dataclasses: JSON round-trip, unknown keys and wrong types rejected,
and one rule for every number: finite and within :data:`MAX_MAGNITUDE` (integers: :data:`MAX_INT`)."""

from __future__ import annotations

import dataclasses
import json
import math
import operator
import typing
from typing import Any

from erasekit.errors import UserError

#: No float in a config is larger in magnitude (a learning rate of 1e308 is a typo, not a setting).
MAX_MAGNITUDE = 1e6
#: No integer in a config is larger in magnitude (steps, seeds, sizes).
MAX_INT = 2**31 - 1
#: the operators a :attr:`Config.bounds` entry may use
BOUND_OPS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt}


class Config:
    """Base of erasekit's frozen config dataclasses: JSON round-trip, unknown keys rejected.

    Subclasses are ``@dataclass(frozen=True)``; a field's simple range goes in :attr:`bounds`, and a
    subclass with further checks defines ``__post_init__`` calling :meth:`check_types` first.
    """

    #: simple ranges checked after the types: ``{field: (operator, bound)}``, e.g. ``{"lr": (">", 0)}``
    bounds: typing.ClassVar[dict[str, tuple[str, float]]] = {}

    def __post_init__(self) -> None:
        self.check_types()

    def check_types(self) -> None:
        """Raise ``ValueError`` naming the first field whose value does not match its annotation."""
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            allowed = typing.get_args(hints[f.name]) or (hints[f.name],)
            ok = False
            for tp in allowed:
                if tp is type(None):
                    ok = ok or value is None
                elif tp is bool:
                    ok = ok or isinstance(value, bool)
                elif tp is int:
                    ok = ok or (isinstance(value, int) and not isinstance(value, bool))
                elif tp is float:
                    ok = ok or (isinstance(value, (int, float)) and not isinstance(value, bool))
                else:
                    ok = ok or isinstance(value, tp)
            if not ok:
                names = " or ".join("None" if t is type(None) else t.__name__ for t in allowed)
                raise UserError(f"{f.name}: must be {names}, got {value!r}")
            check_number(f.name, value)
        for name, (op, bound) in self.bounds.items():
            value = getattr(self, name)
            check(BOUND_OPS[op](value, bound), name, f"must be {op} {bound:g}, got {value}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Config":
        known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(d) - known)
        if unknown:
            raise UserError(
                f"unknown {cls.__name__} key(s): {', '.join(unknown)}; allowed: {', '.join(sorted(known))}"
            )
        return cls(**d)

    @classmethod
    def with_overrides(cls, overrides: dict[str, Any] | None = None) -> "Config":
        """The default config with ``overrides`` applied (validated; unknown keys rejected)."""
        return cls.from_dict({**cls().to_dict(), **(overrides or {})})

    def replace(self, **changes: Any) -> "Config":
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]


def check_number(field: str, value: Any) -> None:
    """The shared rule for numbers (and numbers inside tuples): finite and within range."""
    if isinstance(value, (tuple, list)):
        for v in value:
            check_number(field, v)
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    elif isinstance(value, int):
        check(abs(value) <= MAX_INT, field, f"must be within +-{MAX_INT}, got {value}")
    else:
        check(math.isfinite(value), field, f"must be a finite number, got {value!r}")
        check(abs(value) <= MAX_MAGNITUDE, field, f"must be within +-{MAX_MAGNITUDE:g}, got {value!r}")


def check(cond: bool, field: str, message: str) -> None:
    """Raise ``ValueError`` naming ``field`` unless ``cond``."""
    if not cond:
        raise UserError(f"{field}: {message}")


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["lamb=0.5", "mode=negate"]`` -> ``{"lamb": 0.5, "mode": "negate"}`` (JSON values, else strings)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"{item!r} is not key=value; write e.g. lamb=0.5")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out
