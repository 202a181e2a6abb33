"""The ``erasekit`` command line: a thin layer over the library.

Every user error (bad value, missing folder, unknown name) prints one line ``erasekit: error: ...``
and exits with code 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Callable, Sequence

EXIT_USAGE = 2


class UsageError(Exception):
    """A user error: printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse prints usage too)
        raise UsageError(message)


def _threads(value: str) -> int:
    n = int(value)
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {n}")
    return n


def _positive(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {n}")
    return n


def _setup_threads(n: int | None) -> None:
    """Pick CPU threads on purpose: ``--threads``, else ``$ERASEKIT_THREADS``, else all cores.

    ``OMP_WAIT_POLICY=PASSIVE`` (set unless the user set it) keeps two busy processes on a small
    machine from slowing each other 8-14x through OpenMP spin-waiting.
    """
    import torch

    if n is None:
        n = int(os.environ.get("ERASEKIT_THREADS", "0")) or (os.cpu_count() or 1)
    torch.set_num_threads(n)


# -- commands -------------------------------------------------------------------------------------


def cmd_testbed_train(args: argparse.Namespace) -> None:
    from erasekit.testbed.train import TrainConfig, has_checkpoint, train

    out = Path(args.out)
    _check_writable_dir(out)
    cfg = TrainConfig(steps=args.steps, batch_size=args.batch_size, seed=args.seed, width=args.width)
    if args.resume and not has_checkpoint(out):
        raise UsageError(f"--resume given but {out} holds no checkpoint; drop --resume to start fresh")
    if not args.resume and has_checkpoint(out):
        raise UsageError(f"{out} already holds a training checkpoint; pass --resume to continue it or pick a new --out")
    meta = train(out, cfg, resume=args.resume)
    print(f"trained {meta['steps']} steps in {meta['wall_time_s'] / 60:.1f} min; weights in {out}")


def _check_writable_dir(path: Path) -> None:
    probe = path
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK):
        raise UsageError(f"cannot write to {path}: {probe} is not a writable folder; choose another --out")


# -- parser ---------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="erasekit", description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=_threads, default=None, help="CPU threads (default: all cores)")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    testbed = sub.add_parser("testbed", help="the built-in testbed: train, train the judge, evaluate")
    tsub = testbed.add_subparsers(dest="testbed_command", required=True, parser_class=_Parser)

    tr = tsub.add_parser("train", help="train the testbed text-to-image UNet from scratch")
    tr.add_argument("--out", required=True, help="output folder (weights, checkpoints, training.json)")
    tr.add_argument("--steps", type=_positive, default=3000, help="optimiser steps (default 3000)")
    tr.add_argument("--batch-size", type=_positive, default=64)
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--width", choices=("small", "medium"), default="small")
    tr.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    tr.set_defaults(func=cmd_testbed_train)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        _setup_threads(args.threads)
        func: Callable[[argparse.Namespace], None] = args.func
        func(args)
    except UsageError as exc:
        print(f"erasekit: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (ValueError, FileNotFoundError) as exc:
        print(f"erasekit: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("erasekit: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
