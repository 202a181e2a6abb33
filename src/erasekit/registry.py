"""A typed name -> class registry with a decorator and "did you mean" errors.

A registry fills itself the first time it is asked for a name: it imports every module of its
package (so adding a component is adding one file; package ``__init__`` files import none), then the modules that installed
distributions declare under its entry-point group, then the modules named in
``$ERASEKIT_PLUGINS`` (comma-separated), so a component can live outside erasekit altogether.
"""

from __future__ import annotations

import difflib
import importlib
import os
import pkgutil
from importlib import metadata
from typing import Callable, Generic, Iterable, Iterator, TypeVar

from erasekit.errors import UserError

T = TypeVar("T")

PLUGINS_ENV = "ERASEKIT_PLUGINS"


def did_you_mean(word: str, options: Iterable[str]) -> str:
    """``" (did you mean 'skull'?)"`` for the closest option, or ``""``."""
    close = difflib.get_close_matches(word, list(options), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def import_submodules(package: str, path: Iterable[str]) -> None:
    """Import every module of a package (modules whose name starts with ``_`` are skipped)."""
    for info in pkgutil.iter_modules(list(path)):
        if not info.name.startswith("_"):
            importlib.import_module(f"{package}.{info.name}")


def import_plugins() -> None:
    """Import the modules named in ``$ERASEKIT_PLUGINS`` (each registers what it defines)."""
    for name in filter(None, (m.strip() for m in os.environ.get(PLUGINS_ENV, "").split(","))):
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise UserError(f"${PLUGINS_ENV} names module {name!r}, which cannot be imported ({exc}); "
                             "fix the name or put the module on the Python path") from None


class Registered:
    """Base of registered classes (methods, metrics, attacks): their listing line is the first
    line of the class docstring."""

    name: str

    @classmethod
    def summary(cls) -> str:
        return (cls.__doc__ or "").strip().splitlines()[0]


class Registry(Generic[T]):
    """Maps short lowercase names (``"uce"``) to classes registered where they are defined.

    ``package`` names the package whose import registers every built-in entry
    (``"erasekit.methods"``); ``group`` an entry-point group whose modules register more.
    """

    def __init__(self, kind: str, base: type | None = None, package: str | None = None,
                 group: str | None = None) -> None:
        self.kind = kind
        self.base = base
        self.package = package
        self.group = group
        self._items: dict[str, type[T]] = {}
        self._loaded = False

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True  # before importing: modules may look names up while they register
        try:
            if self.package is not None:
                package = importlib.import_module(self.package)
                import_submodules(self.package, getattr(package, "__path__", []))
            if self.group is not None:
                for ep in metadata.entry_points(group=self.group):
                    ep.load()
            import_plugins()
        except BaseException:
            self._loaded = False
            raise

    def register(self, name: str) -> Callable[[type[T]], type[T]]:
        def deco(cls: type[T]) -> type[T]:
            if name in self._items:
                raise UserError(f"{self.kind} {name!r} is registered twice ({self._items[name]} and {cls})")
            if self.base is not None and not issubclass(cls, self.base):
                raise TypeError(f"{cls} must subclass {self.base.__name__} to be a {self.kind}")
            cls.name = name  # type: ignore[attr-defined]
            self._items[name] = cls
            return cls

        return deco

    def unregister(self, name: str) -> None:
        """Forget ``name`` (for components registered from a temporary module)."""
        self._items.pop(name, None)

    def get(self, name: str) -> type[T]:
        self._load()
        if name not in self._items:
            raise UserError(f"unknown {self.kind} {name!r}{did_you_mean(name, self._items)}; "
                             f"choose from {', '.join(sorted(self._items))}")
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
