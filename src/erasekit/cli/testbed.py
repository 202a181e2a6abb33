"""``erasekit testbed ...``: train the testbed and its judge, measure its fidelity, draw its data."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from erasekit.cli import args as A
from erasekit.cli import paths as P
from erasekit.cli.args import UsageError


def _values(text: str) -> tuple[str, ...]:
    """``--exclude skull,logo,neon``: testbed values, checked."""
    from erasekit.errors import UserError
    from erasekit.testbed.data import parse_exclude

    try:
        return parse_exclude(text)
    except UserError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def cmd_train(args: argparse.Namespace) -> None:
    from erasekit.testbed.train import TrainConfig, has_checkpoint, train

    out = Path(args.out)
    P.check_writable_dir(out)
    cfg = TrainConfig(steps=args.steps, batch_size=args.batch_size, seed=args.seed, width=args.width,
                      exclude=tuple(args.exclude or ()), captions_per_combo=args.captions_per_combo)
    if args.resume and not has_checkpoint(out):
        raise UsageError(f"--resume given but {out} holds no checkpoint; drop --resume to start fresh")
    if not args.resume and has_checkpoint(out):
        raise UsageError(f"{out} already holds a training checkpoint; pass --resume to continue it or pick a new --out")
    meta = train(out, cfg, resume=args.resume)
    print(f"trained {meta['steps']} steps in {meta['wall_time_s'] / 60:.1f} min; weights in {out}")


def cmd_train_judge(args: argparse.Namespace) -> None:
    from erasekit.testbed.judge import train_judge

    out = Path(args.out)
    P.check_writable_dir(out)
    meta = train_judge(out, n_images=args.images, epochs=args.epochs, seed=args.seed, eval_images=args.eval_images)
    accs = ", ".join(f"{k} {v:.4f}" for k, v in meta["accuracy"].items())
    print(f"judge trained in {meta['wall_time_s'] / 60:.1f} min; accuracy on {args.eval_images} fresh images: {accs}")
    audit = meta["audit"]
    print("none verdict on " + ", ".join(f"{k} {v:.3f}" for k, v in audit["none"].items()))
    for concept in ("skull", "logo"):
        faded = ", ".join(f"{c} {v:.3f}" for c, v in audit["faded"][concept].items())
        fp = ", ".join(f"{k} {v:.3f}" for k, v in audit["false_positives"][concept].items())
        print(f"{concept}: accuracy at contrast {faded}; false positives on {fp}")
    print(f"weights in {out}")


def cmd_sample(args: argparse.Namespace) -> None:
    import numpy as np

    from erasekit.grid import labelled_grid, save_png
    from erasekit.testbed import data

    out = Path(args.output)
    P.check_output_file(out)
    rng = np.random.default_rng(args.seed)
    chosen = {"shape": args.shape, "colour": args.colour, "background": args.background}
    for family, value in chosen.items():
        if value is not None and not (family == "shape" and value == data.NONE):
            data.check_value(family, value)  # ValueError -> exit 2 with a suggestion
    imgs, labels = [], []
    for k in range(args.n):
        a = data.sample_attributes(rng, heldout_pairs=None)
        a = data.Attributes(**{f: chosen[f] or getattr(a, f) for f in chosen})
        imgs.append(data.render(a, args.seed * 1000 + k))
        labels.append(data.caption(a, rng, args.phrasing))
    save_png(labelled_grid(np.stack(imgs), labels), out)
    print(f"wrote {out}")


def trained_exclude(weights: str | None) -> tuple[str, ...]:
    """The values a testbed weights folder was trained without (``training.json``; the shipped oracle:
    skull, logo, neon); none for the shipped testbed or a folder without that record."""
    from erasekit.testbed.data import parse_exclude

    if weights is None:
        return ()
    record = Path(weights) / "training.json"
    try:
        return parse_exclude(json.loads(record.read_text()).get("config", {}).get("exclude", ()))
    except (OSError, ValueError, AttributeError):
        return ()


def cmd_evaluate(args: argparse.Namespace) -> None:
    from erasekit.testbed.fidelity import FidelityConfig, evaluate_fidelity

    pipe, judge = A.load_models(args)
    exclude = args.exclude if args.exclude is not None else trained_exclude(args.weights)
    cfg = FidelityConfig(n_prompts=args.prompts, seeds=tuple(args.seeds), steps=args.steps, guidance=args.guidance,
                         precision=args.precision, exclude=exclude)
    result = evaluate_fidelity(pipe, judge, cfg, progress=not args.json)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    def f(v: float | None) -> str:
        return f"{v:6.3f}" if v is not None else f"{'-':>6s}"

    print(f"{'split':20s} {'images':>6s} {'shape':>6s} {'colour':>6s} {'bg':>6s} {'all':>6s}")
    for split, row in result["splits"].items():
        print(f"{split:20s} {row['images']:6d} {f(row['shape'])} {f(row['colour'])} {f(row['background'])} {f(row['all'])}")
    for value, row in result["protected"].items():
        tag = " (trained without it)" if row["excluded"] else ""
        print(f"{value}{tag}: rate on given {f(row['given'])}, known {f(row['known'])} (no given word "
              f"{f(row['known_disjoint'])}), decoys {f(row['decoy'])}, off-topic {f(row['offtopic'])}")
        for phrase, ph in row["phrasings"].items():
            mark = " (known, no given word)" if ph["disjoint"] else f" ({ph['tier']})"
            print(f"    {f(ph['rate'])}  {phrase}{mark}")
    failed = [k for k, ok in result["meets_requirements"].items() if not ok]
    print("meets every requirement" if not failed else f"below the bar: {', '.join(failed)}")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    testbed = sub.add_parser("testbed", help="the built-in testbed: train, train the judge, evaluate")
    tsub = testbed.add_subparsers(dest="testbed_command", required=True, parser_class=A.Parser)

    tr = tsub.add_parser("train", help="train the testbed text-to-image UNet from scratch")
    tr.add_argument("--out", required=True, help="output folder (weights, checkpoints, training.json)")
    tr.add_argument("--steps", type=A.positive, default=2500, help="optimiser steps (default 2500)")
    tr.add_argument("--batch-size", type=A.positive, default=64)
    tr.add_argument("--seed", type=A.seed, default=0)
    tr.add_argument("--width", choices=("small", "medium"), default="small")
    tr.add_argument("--exclude", type=_values, default=(),
                    help="comma-separated values never shown (e.g. skull,logo,neon): trains the oracle")
    tr.add_argument("--captions-per-combo", type=A.positive, default=40,
                    help="captions encoded per combination (default 40)")
    tr.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    tr.set_defaults(func=cmd_train)

    tj = tsub.add_parser("train-judge", help="train the judge classifier on procedural images")
    tj.add_argument("--out", required=True, help="output folder (judge.safetensors, config.json, judge.json)")
    tj.add_argument("--images", type=A.positive, default=50000, help="training images (default 50000)")
    tj.add_argument("--epochs", type=A.positive, default=5)
    tj.add_argument("--eval-images", type=A.positive, default=3000, help="fresh images to measure on")
    tj.add_argument("--seed", type=A.seed, default=0)
    tj.set_defaults(func=cmd_train_judge)

    ev = tsub.add_parser("evaluate", help="generation fidelity: judge accuracy per split and family")
    ev.add_argument("--prompts", type=A.positive, default=64, help="prompts per split (default 64)")
    ev.add_argument("--seeds", type=A.seeds, default=[0, 1, 2, 3], help="comma-separated seeds (default 0,1,2,3)")
    A.sampling_args(ev)
    ev.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                    help="UNet arithmetic: fp32, or bf16 autocast (default fp32)")
    ev.add_argument("--exclude", type=_values, default=None,
                    help="values the model was trained without, scored as absent (default: from the "
                         "weights' training.json; the shipped oracle: skull,logo,neon)")
    ev.add_argument("--json", action="store_true", help="print the result as JSON")
    ev.set_defaults(func=cmd_evaluate)

    sa = tsub.add_parser("sample", help="draw procedural ShapeCanvas images (the training data) into a grid")
    sa.add_argument("--shape", help="a shape, or none (blobs and empty canvases named by decoy nouns)")
    sa.add_argument("--colour", "--color", dest="colour")
    sa.add_argument("--background")
    sa.add_argument("--phrasing", choices=("train", "given", "known", "unseen"), default="train",
                    help="which words name the values (train: given or known, as in training)")
    sa.add_argument("-n", type=A.positive, default=16)
    sa.add_argument("--seed", type=A.seed, default=0)
    sa.add_argument("-o", "--output", default="samples.png")
    sa.set_defaults(func=cmd_sample)
