"""The diffusion erasure contract: a :class:`Method` fits on a pipeline and a concept, an
:class:`Erasure` artifact applies to and removes from any compatible diffusers pipeline.

The artifact format and its apply / remove / save / load live in :mod:`erasekit.artifact`, shared
with the language-model side.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any, ClassVar

from diffusers import DiffusionPipeline

from erasekit.artifact import CONFIG_FILE, WEIGHTS_FILE, Artifact, Fitter, ModelFamily, fit_recorded
from erasekit.concepts import Concept
from erasekit.config import Config as MethodConfig
from erasekit.config import check
from erasekit.errors import UserError
from erasekit.pipelines import fingerprint, get_parameter
from erasekit.registry import Registry

__all__ = ["CONFIG_FILE", "METHODS", "WEIGHTS_FILE", "Erasure", "Method", "MethodConfig", "check", "fit_recorded",
           "get_method", "make_config", "method_names"]


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
