"""The erasure contract: a :class:`Method` fits, an :class:`Erasure` artifact applies and removes.

On disk an artifact is a folder with ``config.json`` (method, config, concept, erasekit version,
fingerprint of the base weights) and ``weights.safetensors`` holding only the touched tensors
(empty for inference-time methods, whose ``apply`` installs a hook instead).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator

import torch
from diffusers import DiffusionPipeline
from safetensors import SafetensorError

import erasekit
from erasekit.concepts import Concept
from erasekit.config import Config as MethodConfig
from erasekit.config import check
from erasekit.pipelines import fingerprint, get_parameter
from erasekit.registry import Registered, Registry
from erasekit.testbed.weights_io import atomic_write_json, load_tensors, save_tensors

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.safetensors"


class Method(Registered):
    """A fitter. Subclasses set ``config_class``, ``group`` (``None`` for inference-time methods),
    a one-line docstring, and implement :meth:`fit`; inference-time ones also :meth:`install`."""

    name: ClassVar[str]
    config_class: ClassVar[type[MethodConfig]]
    group: ClassVar[str | None] = None

    def fit(self, pipe: DiffusionPipeline, concept: Concept, config: MethodConfig, progress: bool = True) -> "Erasure":
        raise NotImplementedError

    def declared_group(self, config: MethodConfig) -> str | None:
        """The parameter group this config may change (``None``: no weights change)."""
        return self.group

    def install(self, pipe: DiffusionPipeline, erasure: "Erasure") -> Callable[[], None]:
        """Attach an inference-time erasure; return the function that detaches it."""
        raise NotImplementedError(f"{self.name} has no inference-time hook")


METHODS: Registry[Method] = Registry("method", Method, package="erasekit.methods")


def get_method(name: str) -> Method:
    return METHODS.create(name)


def method_names() -> list[str]:
    return METHODS.names()


def make_config(method: str, overrides: dict[str, Any] | None = None) -> MethodConfig:
    """The method's default config with ``overrides`` applied (validated)."""
    return get_method(method).config_class.with_overrides(overrides)  # type: ignore[return-value]


class Erasure:
    """An erasure artifact: apply to / remove from a pipeline, save / load, export."""

    def __init__(
        self,
        method: str,
        config: MethodConfig,
        concept: Concept,
        base_fingerprint: str,
        tensors: dict[str, torch.Tensor] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.method = method
        self.config = config
        self.concept = concept
        self.base_fingerprint = base_fingerprint
        self.tensors = {k: v.detach().cpu() for k, v in (tensors or {}).items()}
        self.extra = dict(extra or {})
        self._applied: dict[int, Callable[[], None]] = {}

    # -- what differs between model families (the language-model artifact overrides these) ------
    spec_class: ClassVar[type] = Concept

    @staticmethod
    def _get_method(name: str) -> Any:
        return get_method(name)

    @staticmethod
    def _fingerprint(target: Any) -> str:
        return fingerprint(target)

    @staticmethod
    def _parameter(target: Any, key: str) -> torch.nn.Parameter:
        return get_parameter(target, key)

    # -- apply / remove ------------------------------------------------------------------------
    def apply(self, pipe: DiffusionPipeline, force: bool = False) -> DiffusionPipeline:
        """Apply to ``pipe`` in place (weights copied in, or a hook installed); returns ``pipe``."""
        if id(pipe) in self._applied:
            raise RuntimeError("this erasure is already applied to that pipeline; remove() it first")
        if not force:
            fp = self._fingerprint(pipe)
            if fp != self.base_fingerprint:
                raise ValueError(
                    f"this {self.method} artifact was fitted on base weights {self.base_fingerprint}, but the "
                    f"pipeline's are {fp}; load the same base model or pass force=True (--force)"
                )
        method = self._get_method(self.method)
        if method.declared_group(self.config) is not None:
            originals: dict[str, torch.Tensor] = {}
            with torch.no_grad():
                for key, value in self.tensors.items():
                    param = self._parameter(pipe, key)
                    if param.shape != value.shape:
                        raise ValueError(f"{key}: artifact shape {tuple(value.shape)} != model {tuple(param.shape)}")
                    originals[key] = param.detach().clone()
                    param.copy_(value.to(param.device, param.dtype))

            def restore() -> None:
                with torch.no_grad():
                    for key, value in originals.items():
                        self._parameter(pipe, key).copy_(value)

            self._applied[id(pipe)] = restore
        else:
            self._applied[id(pipe)] = method.install(pipe, self)
        return pipe

    def remove(self, pipe: DiffusionPipeline) -> DiffusionPipeline:
        """Undo :meth:`apply` exactly (original tensors restored, hooks removed)."""
        undo = self._applied.pop(id(pipe), None)
        if undo is None:
            raise RuntimeError("this erasure is not applied to that pipeline")
        undo()
        return pipe

    @contextmanager
    def applied(self, pipe: DiffusionPipeline, force: bool = False) -> Iterator[DiffusionPipeline]:
        """``with erasure.applied(pipe): ...`` applies, then removes even on error."""
        self.apply(pipe, force=force)
        try:
            yield pipe
        finally:
            self.remove(pipe)

    # -- persistence -----------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "config": self.config.to_dict(),
            "concept": self.concept.to_dict(),
            "erasekit_version": erasekit.__version__,
            "base_fingerprint": self.base_fingerprint,
            "tensors": sorted(self.tensors),
            "extra": self.extra,
        }

    def save(self, folder: str | Path) -> Path:
        """Write ``config.json`` + ``weights.safetensors`` into ``folder`` (atomically, as a whole)."""
        folder = Path(folder)
        if folder.exists() and any(folder.iterdir()):
            raise FileExistsError(f"{folder} exists and is not empty; choose a new folder")
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
        try:
            save_tensors(tmp / WEIGHTS_FILE, self.tensors, meta={"method": self.method})
            atomic_write_json(tmp / CONFIG_FILE, self.to_json())
            if folder.exists():
                folder.rmdir()
            tmp.rename(folder)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> "Erasure":
        folder = Path(folder)
        cfg_path = folder / CONFIG_FILE
        if not cfg_path.exists():
            raise FileNotFoundError(f"{folder} is not an erasure artifact (no {CONFIG_FILE}); run `erasekit erase` first")
        try:
            raw = json.loads(cfg_path.read_text())
            method = cls._get_method(raw["method"])
            config = method.config_class.from_dict(raw["config"])
            concept = cls.spec_class.from_dict(raw["concept"])
            tensors = load_tensors(folder / WEIGHTS_FILE) if (folder / WEIGHTS_FILE).exists() else {}
        except (KeyError, TypeError, json.JSONDecodeError, OSError, SafetensorError) as exc:
            raise ValueError(f"{folder}: corrupt erasure artifact ({exc}); re-run `erasekit erase`") from None
        if sorted(tensors) != sorted(raw.get("tensors", [])):
            raise ValueError(f"{folder}: weights.safetensors does not match config.json; re-run `erasekit erase`")
        return cls(raw["method"], config, concept, raw["base_fingerprint"], tensors, raw.get("extra"))

    def export(self, pipe: DiffusionPipeline, folder: str | Path, force: bool = False) -> Path:
        """Write a full diffusers pipeline folder with this erasure baked in (weight methods only)."""
        if not self.tensors:
            raise ValueError(f"{self.method} is an inference-time method; export needs a weight-editing method")
        folder = Path(folder)
        tmp = Path(tempfile.mkdtemp(dir=folder.parent if folder.parent.exists() else None))
        try:
            with self.applied(pipe, force=force):
                pipe.save_pretrained(tmp / "pipe")
            (tmp / "pipe").rename(folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return folder
