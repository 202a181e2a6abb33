"""The ``erasekit`` command line: a thin layer over the library.

Every user error (bad value, missing folder, unknown name) prints one line ``erasekit: error: ...``
and exits with code 2. One module per command family registers its subcommands here.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Callable, Sequence

from erasekit.cli import demo, diffusion, lm, testbed
from erasekit.cli.args import Parser, UsageError, flag_message, positive

EXIT_USAGE = 2

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
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for family in (testbed, diffusion, lm, demo):
        family.add_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    parser = build_parser()
    args = None
    try:
        args = parser.parse_args(argv)
        setup_threads(args.threads)
        func: Callable[[argparse.Namespace], None] = args.func
        func(args)
    except UsageError as exc:
        print(f"erasekit: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (ValueError, FileNotFoundError, FileExistsError) as exc:
        print(f"erasekit: error: {flag_message(str(exc), args)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("erasekit: interrupted", file=sys.stderr)
        return 130
    return 0
