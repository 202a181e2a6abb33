"""The diffusion erasure contract: a :class:`Method` fits on a pipeline and a concept, an
:class:`Erasure` artifact applies to and removes from any compatible diffusers pipeline.

The artifact format and its apply / remove / save / load live in :mod:`erasekit.artifact`, shared
with the language-model side.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any, ClassVar, Sequence

from diffusers import DiffusionPipeline

from erasekit.artifact import CONFIG_FILE, WEIGHTS_FILE, Applicable, Artifact, Fitter, ModelFamily, fit_recorded
from erasekit.concepts import Concept
from erasekit.config import Config as MethodConfig
from erasekit.config import check
from erasekit.errors import UserError
from erasekit.pipelines import fingerprint, get_parameter
from erasekit.registry import Registry

__all__ = ["CONFIG_FILE", "METHODS", "WEIGHTS_FILE", "Erasure", "Method", "MethodConfig", "Stack", "check",
           "fit_recorded", "get_method", "make_config", "method_names"]


class Method(Fitter):
    """A fitter. Subclasses set ``config_class``, ``group`` (``None`` for inference-time methods),
    a one-line docstring, and implement :meth:`fit`; inference-time ones also :meth:`install`."""

    config_class: ClassVar[type[MethodConfig]]

    def fit(self, pipe: DiffusionPipeline, concept: Concept, config: MethodConfig, progress: bool = True) -> "Erasure":
        raise NotImplementedError


METHODS: Registry[Method] = Registry("method", Method, package="erasekit.methods", group="erasekit.methods")
get_method = METHODS.create
method_names = METHODS.names


def make_config(method: str, overrides: dict[str, Any] | None = None) -> MethodConfig:
    """The method's default config with ``overrides`` applied (validated)."""
    return get_method(method).config_class.with_overrides(overrides)  # type: ignore[return-value]


class Erasure(Artifact):
    """A diffusion erasure artifact: apply to / remove from a pipeline, save / load, export."""

    family = ModelFamily("diffusion", METHODS, Concept, fingerprint, get_parameter)

    def export(self, pipe: DiffusionPipeline, folder: str | Path, force: bool = False) -> Path:
        """Write a full diffusers pipeline folder with this erasure baked in (weight methods only)."""
        if not self.edits_weights or len(self.weights) < len(self.tensors):
            raise UserError(f"{self.method} acts through an inference-time hook, which a pipeline folder cannot hold; "
                            "export needs a weight-editing method (apply the artifact to the pipeline instead)")
        folder = Path(folder)
        tmp = Path(tempfile.mkdtemp(dir=folder.parent if folder.parent.exists() else None))
        try:
            with self.applied(pipe, force=force):
                pipe.save_pretrained(tmp / "pipe")
            (tmp / "pipe").rename(folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return folder


class Stack(Applicable):
    """Erasures applied in order and removed in reverse, acting as one: IRECE on top of UCE (Weng et
    al. 2026 stack their sampling-time defence on any erasure), a guard on a weight edit. Evaluation,
    attacks and the benchmark take it wherever they take an :class:`Erasure`; each part keeps its
    own artifact folder (``folders``, for the run's record and digest)."""

    def __init__(self, parts: Sequence[Erasure], folders: Sequence[str | Path] | None = None) -> None:
        if len(parts) < 2:
            raise UserError(f"a stack needs at least two erasures, got {len(parts)}")
        if folders is not None and len(folders) != len(parts):
            raise ValueError(f"{len(folders)} folders for {len(parts)} erasures")
        seen: dict[str, str] = {}
        for p in parts:
            for key in p.weights:
                if key in seen:
                    raise UserError(f"{seen[key]} and {p.method} both edit {key}; the second would overwrite the first: "
                                    "stack erasures that edit different parameters (or hooks on a weight edit)")
                seen[key] = p.method
        self.parts = tuple(parts)
        self.folders = None if folders is None else tuple(Path(f) for f in folders)
        self.method = "+".join(p.method for p in parts)
        self.concept = parts[-1].concept
        self.tensors = {name: t for p in parts for name, t in p.tensors.items()}
        self.weights = {name: t for p in parts for name, t in p.weights.items()}
        self.edits_weights = any(p.edits_weights for p in parts)
        fits = [p.extra.get("fit_seconds") for p in parts]
        peaks = [p.extra.get("peak_memory_mb") for p in parts]
        self.extra = {"fit_seconds": None if None in fits else round(sum(fits), 2),
                      "peak_memory_mb": None if None in peaks else max(peaks)}

    @classmethod
    def load(cls, folders: Sequence[str | Path]) -> "Erasure | Stack":
        """The artifact in one folder, or the stack of several (applied in the order given)."""
        parts = [Erasure.load(f) for f in folders]
        return parts[0] if len(parts) == 1 else cls(parts, folders)

    @property
    def folder(self) -> str:
        """The parts' folders, for a run's record (``a + b``)."""
        return " + ".join(str(f) for f in self.folders or ())

    def check(self, target: Any, force: bool = False) -> None:
        """Every part must fit the unedited ``target`` (see :meth:`Erasure.check`)."""
        for p in self.parts:
            p.check(target, force)

    def apply(self, target: Any, force: bool = False) -> Any:
        self.check(target, force)
        done: list[Erasure] = []
        try:
            for p in self.parts:  # checked above on the unedited model; the later parts see the earlier edits
                p.apply(target, force=True)
                done.append(p)
        except BaseException:
            for p in reversed(done):
                p.remove(target)
            raise
        return target

    def remove(self, target: Any) -> Any:
        for p in reversed(self.parts):
            p.remove(target)
        return target

    def to_json(self) -> dict[str, Any]:
        parts = [p.to_json() for p in self.parts]
        return {"method": self.method, "config": {"stack": [{"method": p["method"], "config": p["config"]} for p in parts]},
                "concept": parts[-1]["concept"], "parts": parts, "extra": self.extra}
