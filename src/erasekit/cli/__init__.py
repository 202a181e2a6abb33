"""The ``erasekit`` command line: a thin layer over the library.

Every user error (bad value, missing folder, unknown name) prints one line ``erasekit: error: ...``
and exits with code 2. One module per command family registers its subcommands here.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from typing import Callable, Sequence

from erasekit.cli import audit, bench, demo, diffusion, lm, sae, testbed
from erasekit.cli.args import Parser, UsageError, flag_message, positive
from erasekit.cli.paths import CREATED, discard_empty_stores
from erasekit.errors import UserError

EXIT_USAGE = 2
EXIT_BUG = 1

__all__ = ["EXIT_USAGE", "UsageError", "build_parser", "main"]


def setup_threads(n: int | None) -> None:
    """Pick CPU threads on purpose: ``--threads``, else ``$ERASEKIT_THREADS``, else all cores.

    ``OMP_WAIT_POLICY=PASSIVE`` (set by :func:`main` unless the user set it) keeps two busy processes
    on a small machine from slowing each other 8-14x through OpenMP spin-waiting.
    """
    import torch

    if n is None:
        n = int(os.environ.get("ERASEKIT_THREADS", "0")) or (os.cpu_count() or 1)
    torch.set_num_threads(n)
    # the CLI prints its own progress; keep the libraries' loading bars and notices off stderr
    import diffusers
    import transformers

    for lib in (transformers, diffusers):
        lib.utils.logging.disable_progress_bar()
        lib.utils.logging.set_verbosity_error()


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="erasekit", description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=positive, default=None, help="CPU threads (default: all cores)")
    parser.add_argument("--debug", action="store_true", help="print the traceback of an internal error")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for family in (testbed, diffusion, audit, sae, lm, demo, bench):
        family.add_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. Exit codes: 0 done; 2 bad input (:class:`erasekit.errors.UserError` or a
    usage error: one line); 1 anything else, a bug (one line; ``--debug`` prints the traceback)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    parser = build_parser()
    args = None
    try:
        args = parser.parse_args(argv)
        setup_threads(args.threads)
        func: Callable[[argparse.Namespace], None] = args.func
        func(args)
        CREATED.clear()
    except UsageError as exc:
        return _fail(f"erasekit: error: {exc}", EXIT_USAGE, args)
    except UserError as exc:
        return _fail(f"erasekit: error: {flag_message(str(exc), args)}", EXIT_USAGE, args)
    except KeyboardInterrupt:
        return _fail("erasekit: interrupted", 130, args)
    except Exception as exc:  # a bug: say so in one line; the traceback with --debug
        first = (str(exc).strip().splitlines() or [""])[0]
        return _fail(f"erasekit: internal error: {type(exc).__name__}: {first} (rerun with --debug for the "
                     "traceback, and please report it)", EXIT_BUG, args)
    return 0


def _fail(line: str, code: int, args: argparse.Namespace | None) -> int:
    discard_empty_stores()
    sys.stderr.write("\n" if _bar_open() else "")  # start on a fresh line, not on top of a progress bar
    if args is not None and getattr(args, "debug", False):
        traceback.print_exc()
    print(line, file=sys.stderr)
    return code


def _bar_open() -> bool:
    from tqdm.auto import tqdm

    return any(not getattr(bar, "disable", True) for bar in list(getattr(tqdm, "_instances", ())))
