"""What the commands share: one-line usage errors, argument types, path checks, and loading the
pipeline, judge, store and artifacts that flags name."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

#: The domain whose pipeline and judge commands load when no run or concept names another.
DEFAULT_DOMAIN = "testbed"


class UsageError(Exception):
    """A user error: printed as one line, exit code 2."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse prints usage too)
        raise UsageError(message)


# -- argument types -------------------------------------------------------------------------------
def _parsed(value: str, kind: type, what: str) -> float:
    try:
        return kind(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {what}, got {value!r}") from None


def positive(value: str) -> int:
    n = int(_parsed(value, int, "a positive integer"))
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {n}")
    return n


def seed(value: str, what: str = "an integer") -> int:
    from erasekit.config import MAX_INT

    n = int(_parsed(value, int, what))
    if not 0 <= n <= MAX_INT:
        raise argparse.ArgumentTypeError(f"must be an integer from 0 to {MAX_INT}, got {n}")
    return n


def seeds(value: str) -> list[int]:
    out = [seed(v, "comma-separated integers such as 0,1,2,3") for v in value.split(",") if v.strip()]
    if not out:
        raise argparse.ArgumentTypeError("needs at least one seed, such as 0,1,2,3")
    return out


def guidance(value: str) -> float:
    g = _parsed(value, float, "a number")
    if g < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {g}")
    if not g <= 1e3:  # also refuses nan and inf
        raise argparse.ArgumentTypeError(f"must be a finite number from 0 to 1000, got {value!r}")
    return g


def cell_patterns(value: str) -> list[str]:
    """Comma-separated cell-name patterns (``label/concept/sSEED``, shell wildcards)."""
    names = [v.strip() for v in value.split(",") if v.strip()]
    if not names:
        raise argparse.ArgumentTypeError("is empty; give cell names such as uce/skull/s0 or */skull/s0")
    return names


def metric_list(value: str) -> tuple[str, ...]:
    from erasekit.metrics import get_metric

    names = tuple(v.strip() for v in value.split(",") if v.strip())
    if not names:
        raise argparse.ArgumentTypeError("is empty; give names such as efficacy,ira (see `erasekit metrics`)")
    for n in names:
        try:
            get_metric(n)
        except ValueError as exc:  # keep the "did you mean" message
            raise argparse.ArgumentTypeError(str(exc)) from None
    return names


def sets(items: list[str]) -> dict[str, Any]:
    """``--set`` items parsed by :func:`erasekit.config.parse_overrides` (errors name ``--set``)."""
    from erasekit.config import parse_overrides

    try:
        return parse_overrides(items)
    except ValueError as exc:
        raise UsageError(f"--set {exc}") from None


# -- shared argument groups -------------------------------------------------------------------------
def model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", default=None, help="testbed weights folder or a local diffusers pipeline folder "
                                                   "(default: the shipped testbed)")
    p.add_argument("--judge", default=None, help="judge folder (default: the shipped judge)")


def sampling_args(p: argparse.ArgumentParser) -> None:
    from erasekit.sampling import DEFAULT_GUIDANCE, DEFAULT_STEPS

    p.add_argument("--steps", type=positive, default=DEFAULT_STEPS, help=f"DDIM steps (default {DEFAULT_STEPS})")
    p.add_argument("--guidance", type=guidance, default=DEFAULT_GUIDANCE, help=f"CFG scale (default {DEFAULT_GUIDANCE})")
    model_args(p)


def fit_args(p: argparse.ArgumentParser, listing: str) -> None:
    """What a fit takes: the method, its config overrides, the artifact folder."""
    p.add_argument("--method", required=True, help=f"method name (see `{listing}`)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    p.add_argument("--out", required=True, help="new folder for the artifact")


def run_args(p: argparse.ArgumentParser, verb: str) -> None:
    """What to work on: ``RUN`` (an artifact folder), or ``--baseline`` (with ``--concept``)."""
    p.add_argument("run", nargs="?", default=None, help="artifact folder written by `erasekit erase`")
    p.add_argument("--baseline", action="store_true", help=f"{verb} the unedited model (on the run's concept)")
    p.add_argument("--concept", default=None,
                   help="concept for --baseline without a run folder, or which concept of a mass erasure")
    p.add_argument("--on", action="append", default=[], metavar="FOLDER",
                   help="apply this artifact first, RUN on top of it (stacking, e.g. IRECE on UCE; repeatable)")


def stored_args(p: argparse.ArgumentParser, force_help: str) -> None:
    """The results database, re-running, JSON output and the sampling settings."""
    p.add_argument("--db", default="erasekit.db", help="results database (default erasekit.db)")
    p.add_argument("--force", action="store_true", help=force_help)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    sampling_args(p)


# -- loading what flags name ----------------------------------------------------------------------
def check_model_args(args: argparse.Namespace) -> None:
    if getattr(args, "weights", None) is not None and not Path(args.weights).is_dir():
        raise UsageError(f"weights folder {args.weights} does not exist; pass a folder written by "
                         "`erasekit testbed train` or a diffusers pipeline folder")
    if getattr(args, "judge", None) is not None and not Path(args.judge).is_dir():
        raise UsageError(f"judge folder {args.judge} does not exist; pass a folder written by "
                         "`erasekit testbed train-judge`")


def load_pipeline(weights: str | None, domain: Any = None) -> Any:
    """A local diffusers pipeline folder, or the domain's pipeline (its shipped weights by default)."""
    from erasekit.domain import get_domain
    from erasekit.pipelines import load_for

    return load_for(weights, domain or get_domain(DEFAULT_DOMAIN))


def load_models(args: argparse.Namespace, domain: Any = None) -> tuple[Any, Any]:
    """The pipeline and judge named by ``--weights`` / ``--judge`` (paths checked first)."""
    from erasekit.domain import get_domain

    check_model_args(args)
    domain = domain or get_domain(DEFAULT_DOMAIN)
    return load_pipeline(args.weights, domain), domain.load_judge(args.judge)


def list_methods(registry: Any, hook: str, widths: tuple[int, int]) -> None:
    """One line per registered method: name, parameter group (or ``hook``), summary."""
    for name in registry.names():
        m = registry.create(name)
        print(f"{name:{widths[0]}s} {m.group or hook:{widths[1]}s} {m.summary()}")


def load_erasure(folders: str | list[str] | None, flag: str = "--erasure") -> Any:
    """The artifact in a folder, or the :class:`~erasekit.erasure.Stack` of several (in order)."""
    folders = [folders] if isinstance(folders, str) else list(folders or [])
    if not folders:
        return None
    from erasekit.erasure import Stack

    for folder in folders:
        if not Path(folder).is_dir():
            raise UsageError(f"{flag} {folder} does not exist; pass a folder written by `erasekit erase`")
    return Stack.load(folders)


def run_folder(args: argparse.Namespace, erasure: Any) -> str | None:
    """What a stored run records as its artifact: RUN, or the stack's folders (``--on``)."""
    return None if erasure is None else getattr(erasure, "folder", None) or args.run


#: Library argument names -> the flags that set them (library errors start with ``name:``).
FLAGS = {"metrics": "--metrics", "budget": "--budget", "n_prompts": "--prompts", "seeds": "--seeds",
         "steps": "--steps", "guidance": "--guidance", "batch": "--batch", "n_dirs": "--dirs", "k": "--k",
         "layer": "--layer"}


def flag_message(message: str, args: argparse.Namespace | None) -> str:
    """A library error in the CLI's words: ``budget: ...`` -> ``--budget: ...`` where the command has
    that flag; ``force=True`` -> ``--force`` where ``--force`` means "apply anyway" (``generate``)."""
    name, sep, rest = message.partition(":")
    flag = FLAGS.get(name)
    if sep and flag and args is not None and hasattr(args, flag.lstrip("-")):
        message = f"{flag}:{rest}"
    if args is not None and getattr(args, "command", None) == "generate":  # its --force applies anyway
        return message.replace("force=True", "--force")
    return message.replace(" or pass force=True", "")  # elsewhere --force means "recompute"
