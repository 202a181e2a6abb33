"""A typed name -> class registry with a decorator and "did you mean" errors."""

from __future__ import annotations

import difflib
import importlib
from typing import Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


class Registered:
    """Base of registered classes (methods, metrics, attacks): their listing line is the first
    line of the class docstring."""

    @classmethod
    def summary(cls) -> str:
        return (cls.__doc__ or "").strip().splitlines()[0]


class Registry(Generic[T]):
    """Maps short lowercase names (``"uce"``) to classes registered where they are defined.

    ``package`` names the package whose import registers every entry (``"erasekit.methods"``); it
    is imported on first lookup, so the registry can live in a base module those entries import.
    """

    def __init__(self, kind: str, base: type | None = None, package: str | None = None) -> None:
        self.kind = kind
        self.base = base
        self.package = package
        self._items: dict[str, type[T]] = {}

    def _load(self) -> None:
        if self.package is not None:
            importlib.import_module(self.package)

    def register(self, name: str) -> Callable[[type[T]], type[T]]:
        def deco(cls: type[T]) -> type[T]:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice ({self._items[name]} and {cls})")
            if self.base is not None and not issubclass(cls, self.base):
                raise TypeError(f"{cls} must subclass {self.base.__name__} to be a {self.kind}")
            cls.name = name  # type: ignore[attr-defined]
            self._items[name] = cls
            return cls

        return deco

    def get(self, name: str) -> type[T]:
        self._load()
        if name not in self._items:
            close = difflib.get_close_matches(name, list(self._items), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"unknown {self.kind} {name!r}{hint}; choose from {', '.join(sorted(self._items))}")
        return self._items[name]

    def create(self, name: str) -> T:
        """An instance of the class registered as ``name`` ("did you mean" error if unknown)."""
        return self.get(name)()

    def names(self) -> list[str]:
        self._load()
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
