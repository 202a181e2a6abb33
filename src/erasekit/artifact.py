"""The artifact every erasure method returns, for any model family: ``config.json`` (method,
config, concept or forget spec, erasekit version, fingerprint of the base weights) plus
``weights.safetensors`` holding only the touched tensors (empty for inference-time methods,
whose ``apply`` installs a hook instead, unless their hook carries tensors of its own: those are
named under :data:`ADAPTER_PREFIX`, saved and loaded with the rest, and never written into the model).

Model families (diffusion pipelines in :mod:`erasekit.erasure`, language models in
:mod:`erasekit.lm.methods.base`) each declare a :class:`ModelFamily`: where their methods are
registered, what spec they erase, how the base weights are fingerprinted and parameters found.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator

import torch
from safetensors import SafetensorError

import erasekit
from erasekit.config import Config
from erasekit.errors import InvalidResult, MissingPath, PathExists, UserError
from erasekit.files import atomic_write_json, load_tensors, save_tensors
from erasekit.provenance import git_commit, package_versions
from erasekit.registry import Registered, Registry

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.safetensors"
#: Artifact tensors under this name prefix belong to the method's inference-time hook (SPM's
#: low-rank factors, CGCE's classifier): saved and loaded like the others, never copied into the model.
ADAPTER_PREFIX = "adapter."


class Fitter(Registered):
    """What every method declares, whatever it erases from: its config class, the parameter group
    it edits (``None`` for inference-time methods) and, for those, the hook it installs. Each
    family's contract adds its own ``fit``."""

    config_class: ClassVar[type[Config]]
    group: ClassVar[str | None] = None
    #: config overrides that make a fit take seconds (the method contract tests use them)
    test_config: ClassVar[dict[str, Any]] = {}
    #: ``True`` for an inference-time method whose hook reads only the live model (nothing fitted
    #: on the base weights): its artifact skips the base-weights check, so it applies on top of
    #: another erasure's weight edit (IRECE on UCE)
    stacks: ClassVar[bool] = False

    def declared_group(self, config: Config) -> str | None:
        """The parameter group this config may change (``None``: no weights change)."""
        return self.group

    def install(self, target: Any, erasure: "Artifact") -> Callable[[], None]:
        """Attach an inference-time erasure; return the function that detaches it."""
        raise NotImplementedError(f"{self.name} has no inference-time hook")


@dataclass(frozen=True)
class ModelFamily:
    """How one model family's artifacts find their method, spec class, base fingerprint and parameters."""

    name: str
    methods: Registry
    spec_class: type
    fingerprint: Callable[[Any], str]
    parameter: Callable[[Any, str], torch.nn.Parameter]


@contextmanager
def restored(params: dict[str, torch.nn.Parameter]) -> Iterator[None]:
    """Run a fit that edits ``params`` in place, then put their original values back (a fit leaves
    the model as it found it; the artifact carries the change)."""
    saved = {k: p.detach().clone() for k, p in params.items()}
    try:
        yield
    finally:
        with torch.no_grad():
            for k, p in params.items():
                p.copy_(saved[k])


class Applicable:
    """What applies to a model and comes off exactly: an :class:`Artifact`, a stack of them."""

    def apply(self, target: Any, force: bool = False) -> Any:
        raise NotImplementedError

    def remove(self, target: Any) -> Any:
        raise NotImplementedError

    @contextmanager
    def applied(self, target: Any, force: bool = False) -> Iterator[Any]:
        """``with erasure.applied(pipe): ...`` applies, then removes even on error."""
        self.apply(target, force=force)
        try:
            yield target
        finally:
            self.remove(target)


class Artifact(Applicable):
    """An erasure artifact: apply to / remove from a model, save / load. Subclasses set ``family``."""

    family: ClassVar[ModelFamily]

    def __init__(
        self,
        method: str,
        config: Config,
        concept: Any,
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

    @property
    def fitter(self) -> Fitter:
        return self.family.methods.create(self.method)

    @property
    def edits_weights(self) -> bool:
        """Whether applying copies tensors in (``False``: an inference-time hook)."""
        return self.fitter.declared_group(self.config) is not None

    @property
    def weights(self) -> dict[str, torch.Tensor]:
        """The tensors :meth:`apply` copies into the model (every tensor outside :data:`ADAPTER_PREFIX`)."""
        return {k: v for k, v in self.tensors.items() if not k.startswith(ADAPTER_PREFIX)}

    def adapter(self, name: str = "") -> dict[str, torch.Tensor]:
        """The hook's own tensors under ``adapter.<name>``, keyed by the rest of their names."""
        prefix = ADAPTER_PREFIX + name
        return {k[len(prefix):]: v for k, v in self.tensors.items() if k.startswith(prefix)}

    # -- apply / remove ------------------------------------------------------------------------
    def check(self, target: Any, force: bool = False) -> None:
        """Raise a :class:`~erasekit.errors.UserError` unless this artifact fits ``target``: the same
        base weights (unless ``force``, or the method :attr:`~Fitter.stacks`), every tensor of a weight
        edit a parameter of the model with the same shape, every value finite. Cheap; callers run it
        before any work."""
        if not (force or self.fitter.stacks):
            fp = self.family.fingerprint(target)
            if fp != self.base_fingerprint:
                raise UserError(
                    f"this {self.method} artifact was fitted on base weights {self.base_fingerprint}, but the "
                    f"model's are {fp}; load the same base model or pass force=True"
                )
        if self.weights and not self.edits_weights:
            raise UserError(f"this {self.method} artifact holds weight tensors (e.g. {next(iter(self.weights))}) but "
                            f"{self.method} is an inference-time method; a hook's tensors are named "
                            f"{ADAPTER_PREFIX}*: re-run `erasekit erase`")
        for key, value in self.weights.items():
            param = self.parameter(target, key)
            if param.shape != value.shape:
                raise UserError(f"{key}: artifact shape {tuple(value.shape)} != model {tuple(param.shape)}; "
                                "the artifact was fitted on another architecture")
        check_finite(self.tensors, f"this {self.method} artifact")

    def parameter(self, target: Any, key: str) -> torch.nn.Parameter:
        """The model parameter an artifact key names (a ``UserError`` if the model has none)."""
        try:
            return self.family.parameter(target, key)
        except (AttributeError, KeyError, ValueError) as exc:
            raise UserError(f"the artifact's tensor {key!r} names no parameter of this {self.family.name} "
                            f"({type(exc).__name__}); it was fitted on another model") from None

    def apply(self, target: Any, force: bool = False) -> Any:
        """Apply to ``target`` in place (weights copied in, or a hook installed); returns ``target``."""
        if id(target) in self._applied:
            raise RuntimeError("this erasure is already applied to that model; remove() it first")
        self.check(target, force)
        if self.edits_weights:
            originals: dict[str, torch.Tensor] = {}
            with torch.no_grad():
                for key, value in self.weights.items():
                    param = self.parameter(target, key)
                    originals[key] = param.detach().clone()
                    param.copy_(value.to(param.device, param.dtype))

            def restore() -> None:
                with torch.no_grad():
                    for key, value in originals.items():
                        self.family.parameter(target, key).copy_(value)

            self._applied[id(target)] = restore
        else:
            self._applied[id(target)] = self.fitter.install(target, self)
        return target

    def remove(self, target: Any) -> Any:
        """Undo :meth:`apply` exactly (original tensors restored, hooks removed)."""
        undo = self._applied.pop(id(target), None)
        if undo is None:
            raise RuntimeError("this erasure is not applied to that model")
        undo()
        return target

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
            raise PathExists(f"{folder} exists and is not empty; choose a new folder")
        check_finite(self.tensors, f"this {self.method} artifact")
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
    def load(cls, folder: str | Path) -> "Artifact":
        folder = Path(folder)
        cfg_path = folder / CONFIG_FILE
        if not cfg_path.exists():
            raise MissingPath(f"{folder} is not an erasure artifact (no {CONFIG_FILE}); run `erasekit erase` first")
        try:
            raw = json.loads(cfg_path.read_text())
            method = cls.family.methods.create(raw["method"])
            config = method.config_class.from_dict(raw["config"])
            concept = cls.family.spec_class.from_dict(raw["concept"])
            extra = raw.get("extra") or {}
            if not isinstance(extra, dict):
                raise TypeError(f"extra must be a mapping, got {extra!r}")
            base, listed = str(raw["base_fingerprint"]), list(raw.get("tensors", []))
            if not all(isinstance(k, str) for k in listed):
                raise TypeError(f"tensors must list names, got {listed!r}")
            tensors = load_tensors(folder / WEIGHTS_FILE) if (folder / WEIGHTS_FILE).exists() else {}
        except PermissionError as exc:
            raise UserError(f"{folder}: cannot read {Path(exc.filename or folder).name} (permission denied)") from None
        except (KeyError, TypeError, AttributeError, json.JSONDecodeError, UnicodeDecodeError, OSError,
                SafetensorError, UserError) as exc:
            what = f"missing key {exc}" if isinstance(exc, KeyError) else str(exc).splitlines()[0] if str(exc) else \
                type(exc).__name__
            raise UserError(f"{folder}: corrupt erasure artifact ({what}); re-run `erasekit erase`") from None
        if sorted(tensors) != sorted(listed):
            raise UserError(f"{folder}: weights.safetensors does not match config.json; re-run `erasekit erase`")
        check_finite(tensors, str(folder))
        return cls(raw["method"], config, concept, base, tensors, extra)


def check_finite(tensors: dict[str, torch.Tensor], what: str) -> None:
    """Raise :class:`~erasekit.errors.InvalidResult` if any tensor holds NaN or infinity."""
    bad = [k for k, t in tensors.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        raise InvalidResult(f"{what} holds non-finite values in {len(bad)} tensor(s), e.g. {bad[0]}; the fit "
                            "diverged: lower the learning rate or scales, nothing was saved")


# -- fitting with its cost recorded ------------------------------------------------------------
def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):  # not Linux: fall back to the lifetime peak
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@contextmanager
def track() -> Iterator[dict[str, Any]]:
    """``with track() as cost: fit(...)``; afterwards ``cost`` holds ``fit_seconds``,
    ``peak_memory_mb`` (above the level at entry) and ``memory_kind``. Peak resident memory is
    sampled from ``/proc/self/statm`` every 20 ms; on CUDA it is ``max_memory_allocated``."""
    cost: dict[str, Any] = {}
    start_rss = _rss_bytes()
    peak = [start_rss]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            peak[0] = max(peak[0], _rss_bytes())

    thread = threading.Thread(target=sample, daemon=True)
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    thread.start()
    t0 = time.perf_counter()
    try:
        yield cost
    finally:
        cost["fit_seconds"] = round(time.perf_counter() - t0, 3)
        done.set()
        thread.join()
        peak[0] = max(peak[0], _rss_bytes())
        if cuda:
            cost["peak_memory_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
            cost["memory_kind"] = "cuda max_memory_allocated"
        else:
            cost["peak_memory_mb"] = round((peak[0] - start_rss) / 2**20, 1)
            cost["memory_kind"] = "CPU resident memory above the level before the fit"


def fit_recorded(method: Any, target: Any, spec: Any, config: Config, base_model: str,
                 progress: bool = True, seed: int = 0) -> Artifact:
    """Fit with torch seed ``seed``, recording cost (time, peak memory), commit, versions, threads and
    the seed in the artifact."""
    torch.manual_seed(seed)
    try:
        with track() as cost:
            erasure = method.fit(target, spec, config, progress=progress)
    except torch.linalg.LinAlgError as exc:
        raise InvalidResult(f"{method.name} could not solve its system with this config "
                            f"({str(exc).splitlines()[0]}); use smaller scales or a larger regulariser") from None
    check_finite(erasure.tensors, f"the {method.name} fit")
    erasure.extra.update(cost, base_model=base_model, commit=git_commit(), versions=package_versions(),
                         torch_threads=torch.get_num_threads(), **({"fit_seed": seed} if seed else {}))
    return erasure


def fit_or_load(folder: str | Path, artifact_class: type[Artifact], method: str, target: Any, spec: Any,
                overrides: dict[str, Any] | None, base_model: str, progress: bool = True,
                seed: int = 0) -> tuple[Artifact, bool]:
    """The artifact in ``folder`` if one is there (``reused=True``), else a fresh recorded fit (torch
    seed ``seed``) saved there; returns ``(artifact, reused)``. If another process saves the same
    fit there first, its artifact is returned."""
    folder = Path(folder)
    if (folder / CONFIG_FILE).exists():
        return artifact_class.load(folder), True
    fitter = artifact_class.family.methods.create(method)
    config = fitter.config_class.with_overrides(overrides)
    erasure = fit_recorded(fitter, target, spec, config, base_model, progress, seed)
    try:
        erasure.save(folder)
    except (PathExists, OSError):
        if not (folder / CONFIG_FILE).exists():
            raise
        return artifact_class.load(folder), True
    return erasure, False
