"""The ``erasekit`` command line: a thin layer over the library.

Every user error (bad value, missing folder, unknown name) prints one line ``erasekit: error: ...``
and exits with code 2.
"""

from __future__ import annotations

import argparse
import json
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
    # the CLI prints its own progress; keep the libraries' loading bars and notices off stderr
    import diffusers
    import transformers

    for lib in (transformers, diffusers):
        lib.utils.logging.disable_progress_bar()
        lib.utils.logging.set_verbosity_error()


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


def cmd_testbed_train_judge(args: argparse.Namespace) -> None:
    from erasekit.testbed.judge import train_judge

    out = Path(args.out)
    _check_writable_dir(out)
    meta = train_judge(out, n_images=args.images, epochs=args.epochs, seed=args.seed, eval_images=args.eval_images)
    accs = ", ".join(f"{k} {v:.4f}" for k, v in meta["accuracy"].items())
    print(f"judge trained in {meta['wall_time_s'] / 60:.1f} min; accuracy on {args.eval_images} fresh images: {accs}")
    print(f"weights in {out}")


def _check_model_args(args: argparse.Namespace) -> None:
    if args.weights is not None and not Path(args.weights).is_dir():
        raise UsageError(
            f"weights folder {args.weights} does not exist; pass a folder written by `erasekit testbed train` "
            "or a diffusers pipeline folder"
        )
    if getattr(args, "judge", None) is not None and not Path(args.judge).is_dir():
        raise UsageError(
            f"judge folder {args.judge} does not exist; pass a folder written by `erasekit testbed train-judge`"
        )


def _load_pipeline(weights: str | None):
    """The testbed (shipped, or a ``testbed train`` folder) or any local diffusers pipeline folder."""
    from erasekit.testbed.pipeline import load_testbed

    if weights is not None and (Path(weights) / "model_index.json").exists():
        from diffusers import DiffusionPipeline

        pipe = DiffusionPipeline.from_pretrained(weights, local_files_only=True, use_safetensors=True)
        pipe.set_progress_bar_config(disable=True)
        return pipe
    return load_testbed(weights)


def _load_models(args: argparse.Namespace):
    """The pipeline and judge named by ``--weights`` / ``--judge`` (paths checked first)."""
    from erasekit.testbed.judge import load_judge

    _check_model_args(args)
    return _load_pipeline(args.weights), load_judge(args.judge)


def parse_sets(items: list[str]) -> dict:
    """``["lamb=0.5", "mode=negate"]`` -> ``{"lamb": 0.5, "mode": "negate"}`` (JSON values, else strings)."""
    import json

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--set {item!r} is not key=value; write e.g. --set lamb=0.5")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def _check_new_dir(path: Path, flag: str = "--out") -> None:
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise UsageError(f"{flag} {path} already exists and is not empty; choose a new folder")
    _check_writable_dir(path)


def cmd_erase(args: argparse.Namespace) -> None:
    from erasekit.concepts import get_concept
    from erasekit.erasure import get_method, make_config

    method = get_method(args.method)  # ValueError -> exit 2, with "did you mean"
    config = make_config(args.method, parse_sets(args.set))
    concept = get_concept(args.concept)
    out = Path(args.out)
    _check_new_dir(out)
    _check_model_args(args)
    pipe = _load_pipeline(args.weights)
    erasure = fit_recorded(method, pipe, concept, config, base_model=args.weights or "testbed (shipped)")
    erasure.save(out)
    print(f"{args.method} erased {concept.name!r} in {erasure.extra['fit_seconds']:.1f} s; artifact in {out}")


def fit_recorded(method, pipe, concept, config, base_model: str, progress: bool = True):
    """Fit with seed 0, recording cost (time, peak memory), commit, versions and threads in the artifact."""
    import torch

    from erasekit.metrics.cost import track
    from erasekit.testbed.weights_io import git_commit, package_versions

    torch.manual_seed(0)
    with track() as cost:
        erasure = method.fit(pipe, concept, config, progress=progress)
    erasure.extra.update(cost, base_model=base_model, commit=git_commit(), versions=package_versions(),
                         torch_threads=torch.get_num_threads())
    return erasure


def cmd_methods(args: argparse.Namespace) -> None:
    from erasekit.erasure import get_method, method_names

    for name in method_names():
        m = get_method(name)
        group = m.group or "inference-time hook"
        print(f"{name:16s} {group:20s} {m.summary()}")


def _check_output_file(path: Path) -> None:
    if path.exists() and path.is_dir():
        raise UsageError(f"-o {path} is a folder; give a file name such as grid.png")
    _check_writable_dir(path.parent if str(path.parent) else Path("."))


def cmd_generate(args: argparse.Namespace) -> None:
    from erasekit.grid import labelled_grid, save_png
    from erasekit.testbed.fidelity import generate

    out = Path(args.output)
    _check_output_file(out)
    if not args.prompt.strip():
        raise UsageError("PROMPT is empty; give a text prompt such as 'a red skull on a striped background'")
    erasure = _load_erasure(args.erasure)
    pipe, judge = _load_models(args)
    if erasure is not None:
        erasure.apply(pipe, force=args.force)
    imgs = generate(
        pipe, [args.prompt], [args.seed + k for k in range(args.n)], args.steps, args.guidance,
        negative_prompt=args.negative_prompt, progress=False,
    )
    verdicts = judge.predict(imgs)
    labels = [f"{v['colour']} {v['shape']}, {v['background']}" for v in verdicts]
    save_png(labelled_grid(imgs, labels, title=args.prompt), out)
    for k, label in enumerate(labels):
        print(f"seed {args.seed + k}: judge says {label}")
    print(f"wrote {out}")


def _load_erasure(folder: str | None):
    if folder is None:
        return None
    from erasekit.erasure import Erasure

    if not Path(folder).is_dir():
        raise UsageError(f"--erasure {folder} does not exist; pass a folder written by `erasekit erase`")
    return Erasure.load(folder)


def cmd_testbed_sample(args: argparse.Namespace) -> None:
    import numpy as np

    from erasekit.grid import labelled_grid, save_png
    from erasekit.testbed import data

    out = Path(args.output)
    _check_output_file(out)
    rng = np.random.default_rng(args.seed)
    chosen = {"shape": args.shape, "colour": args.colour, "background": args.background}
    for family, value in chosen.items():
        if value is not None:
            data.check_value(family, value)  # ValueError -> exit 2 with a suggestion
    imgs, labels = [], []
    for k in range(args.n):
        a = data.sample_attributes(rng, heldout_pairs=None)
        a = data.Attributes(**{f: chosen[f] or getattr(a, f) for f in chosen})
        imgs.append(data.render(a, args.seed * 1000 + k))
        labels.append(data.caption(a, rng, args.phrasing))
    save_png(labelled_grid(np.stack(imgs), labels), out)
    print(f"wrote {out}")


def cmd_testbed_evaluate(args: argparse.Namespace) -> None:
    import json

    from erasekit.testbed.fidelity import FidelityConfig, evaluate_fidelity

    cfg = FidelityConfig(n_prompts=args.prompts, seeds=tuple(args.seeds), steps=args.steps, guidance=args.guidance)
    pipe, judge = _load_models(args)
    result = evaluate_fidelity(pipe, judge, cfg, progress=not args.json)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{'split':20s} {'images':>6s} {'shape':>6s} {'colour':>6s} {'bg':>6s} {'all':>6s}")
    for split, row in result["splits"].items():
        print(f"{split:20s} {row['images']:6d} {row['shape']:6.3f} {row['colour']:6.3f} {row['background']:6.3f} {row['all']:6.3f}")
    print(f"skull prompts judged skull: {result['skull_rate']:.3f}; logo prompts judged logo: {result['logo_rate']:.3f}")


#: The demo: erase ``skull`` with UCE and ESD-x, evaluate both and the unedited baseline, report.
DEMO_RUNS = (("skull-uce", "uce", {}), ("skull-esd-x", "esd", {"train_method": "esd-x", "iterations": 60}))
DEMO_EVAL = {"n_prompts": 4, "seeds": (0, 1), "steps": 25}


def cmd_demo(args: argparse.Namespace) -> None:
    """Erase skull with UCE and ESD-x, evaluate both and the baseline, and write the HTML report."""
    import time

    from erasekit.concepts import get_concept
    from erasekit.erasure import Erasure, get_method, make_config
    from erasekit.evaluation import EvalConfig, evaluate
    from erasekit.report import build_report

    t0 = time.perf_counter()
    out = Path(args.out)
    _check_writable_dir(out)
    out.mkdir(parents=True, exist_ok=True)
    pipe, judge = _load_models(args)
    concept = get_concept("skull")
    store = _open_store(str(out / "erasekit.db"))
    cfg = EvalConfig(**DEMO_EVAL)
    results = []
    for name, method, overrides in DEMO_RUNS:
        folder = out / name
        if (folder / "config.json").exists():
            erasure = Erasure.load(folder)
            print(f"[{time.perf_counter() - t0:5.1f} s] reusing {folder}")
        else:
            erasure = fit_recorded(get_method(method), pipe, concept, make_config(method, overrides), "testbed (shipped)")
            erasure.save(folder)
            print(f"[{time.perf_counter() - t0:5.1f} s] {name}: fitted in {erasure.extra['fit_seconds']:.1f} s -> {folder}")
        results.append(evaluate(store, pipe, judge, concept, cfg, erasure, folder, name=name))
        print(f"[{time.perf_counter() - t0:5.1f} s] {name}: evaluated")
    baseline = next(r for r in store.runs() if r["kind"] == "baseline" and r["concept"] == "skull")
    results.insert(0, {**baseline, "metrics": store.metrics(baseline["run_id"])})
    keys = ("efficacy", "efficacy_heldout_phrasings", "ira", "cra", "fd_base", "fit_seconds")
    print(f"{'run':22s}" + "".join(f"{k.replace('efficacy_heldout_phrasings', 'eff_heldout'):>13s}" for k in keys))
    for r in results:
        vals = [r["metrics"].get(k, {}).get("value") for k in keys]
        print(f"{r['name']:22s}" + "".join(f"{v:13.3f}" if v is not None else f"{'-':>13s}" for v in vals))
    counts = build_report(store, out / "report.html")
    print(f"wrote {out / 'report.html'} ({counts['runs']} runs, {counts['images']} images); "
          f"demo took {time.perf_counter() - t0:.1f} s")


def _open_store(db: str):
    from erasekit.store import Store

    _check_writable_dir(Path(db).parent if str(Path(db).parent) else Path("."), flag="--db")
    return Store(db)  # StoreError (a ValueError) -> one line, exit 2


def _metric_list(value: str) -> tuple[str, ...]:
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


def _print_metrics(result: dict) -> None:
    print(f"{result['name']}  (run {result['run_id']}, concept {result['concept']})")
    print(f"  {'metric':28s} {'value':>9s}  {'95% interval':>19s}  better")
    for key, m in result["metrics"].items():
        ci = f"[{m['ci95'][0]:.3f}, {m['ci95'][1]:.3f}]" if m["ci95"] else "-"
        print(f"  {key:28s} {m['value']:9.3f}  {ci:>19s}  {'higher' if m['higher_is_better'] else 'lower'}")


def eval_json(result: dict) -> dict:
    run = {k: result[k] for k in ("run_id", "name", "kind", "method", "concept", "artifact", "git_hash", "created_at",
                                  "completed_at", "wall_seconds")}
    run["seeds"] = json.loads(result["seeds"])
    metrics = {k: {"value": m["value"], "ci95": m["ci95"], "higher_is_better": m["higher_is_better"], "n": m["n"]}
               for k, m in result["metrics"].items()}
    return {"run": run, "metrics": metrics}


def cmd_eval(args: argparse.Namespace) -> None:
    from erasekit.evaluation import DEFAULT_METRICS, EvalConfig, evaluate

    erasure, concept = _run_and_concept(args)
    metrics = args.metrics or DEFAULT_METRICS
    cfg = EvalConfig(n_prompts=args.prompts, seeds=tuple(args.seeds), steps=args.steps, guidance=args.guidance,
                     batch=args.batch)
    store = _open_store(args.db)
    pipe, judge = _load_models(args)
    if args.baseline:
        erasure = None
    result = evaluate(store, pipe, judge, concept, cfg, erasure, args.run if erasure is not None else None,
                      metrics=metrics, force=args.force, progress=not args.json,
                      name=None if erasure is None else Path(args.run).name)
    if args.json:
        print(json.dumps(eval_json(result), indent=2))
    else:
        _print_metrics(result)
        print(f"stored in {store.path}")


def _run_and_concept(args: argparse.Namespace):
    """The erasure named by ``RUN`` (or ``None``) and the concept to work on (``--concept`` or the run's)."""
    from erasekit.concepts import get_concept
    from erasekit.erasure import Erasure

    if args.run is None and not args.baseline:
        raise UsageError("give a run folder written by `erasekit erase`, or --baseline --concept NAME")
    erasure = None
    if args.run is not None:
        if not Path(args.run).is_dir():
            raise UsageError(f"run folder {args.run} does not exist; pass a folder written by `erasekit erase`")
        erasure = Erasure.load(args.run)
    if args.concept is not None:
        concept = get_concept(args.concept)
        if erasure is not None and concept.name != erasure.concept.name:
            raise UsageError(f"--concept {args.concept} differs from the run's concept {erasure.concept.name!r}; drop --concept")
        return erasure, concept
    if erasure is None:
        raise UsageError("--baseline without a run folder needs --concept NAME (e.g. --concept skull)")
    return erasure, erasure.concept


def cmd_report(args: argparse.Namespace) -> None:
    from erasekit.report import build_report

    if not Path(args.db).is_file():
        raise UsageError(f"database {args.db} does not exist; run `erasekit eval` first or pass --db")
    out = Path(args.output)
    _check_output_file(out)
    counts = build_report(_open_store(args.db), out)
    print(f"wrote {out}: {counts['runs']} runs, {counts['images']} images")
    if counts["missing_images"]:
        print(f"warning: {counts['missing_images']} image files were missing beside the database", file=sys.stderr)


def cmd_attack(args: argparse.Namespace) -> None:
    from erasekit.attacks import get_attack
    from erasekit.redteam import attack

    atk = get_attack(args.attack)  # unknown -> ValueError with "did you mean"
    erasure, concept = _run_and_concept(args)
    if concept.family is None:
        raise UsageError(f"attack {args.attack} needs reference images of the concept and the testbed judge, which "
                         f"the run's concept {concept.name!r} (a user concept) lacks; attack a built-in concept")
    store = _open_store(args.db)
    pipe, judge = _load_models(args)
    result = attack(store, pipe, judge, concept, args.attack, args.budget, None if args.baseline else erasure,
                    None if args.baseline else args.run, args.prompts, tuple(args.seeds), args.seed, args.steps,
                    args.guidance, args.force, progress=not args.json,
                    name=None if erasure is None or args.baseline else Path(args.run).name)
    summary = {k: result[k] for k in ("attack_id", "run_name", "attack", "threat_model", "budget", "budget_unit", "n",
                                      "pre_asr", "asr", "unet_evals", "grad_steps", "wall_seconds", "cached")}
    summary["targets_dropped"] = json.loads(result["config"]).get("targets_dropped", 0)
    if args.json:
        summary["targets"] = [{k: r[k] for k in ("prompt", "seed", "pre_success", "success", "adversarial_text",
                                                 "unet_evals", "grad_steps", "wall_seconds", "note")}
                              for r in result["samples"]]
        print(json.dumps(summary, indent=2))
        return
    print(f"{atk.name} against {summary['run_name']} ({summary['threat_model']})")
    dropped = summary["targets_dropped"]
    print(f"  budget {summary['budget']} {summary['budget_unit']}; {summary['n']} targets"
          + (f" ({dropped} dropped: the unedited model did not show the concept there)" if dropped else ""))
    print(f"  pre-attack ASR {summary['pre_asr']:.3f}   ASR {summary['asr']:.3f}")
    print(f"  spent: {summary['unet_evals']} UNet evaluations, {summary['grad_steps']} gradient steps, "
          f"{summary['wall_seconds']:.1f} s{' (stored earlier)' if summary['cached'] else ''}")
    print(f"stored in {store.path}")


def cmd_attacks(args: argparse.Namespace) -> None:
    from erasekit.attacks import ORDER, get_attack

    for name in ORDER:
        a = get_attack(name)
        print(f"{name:11s} {a.summary()}")
        print(f"{'':11s}   threat model: {a.threat_model}")
        print(f"{'':11s}   needs: {a.needs}; budget in {a.budget_unit} (default {a.default_budget})")


def cmd_metrics(args: argparse.Namespace) -> None:
    from erasekit.metrics import get_metric, metric_names

    for name in metric_names():
        m = get_metric(name)
        print(f"{name:12s} {'higher' if m.higher_is_better else 'lower':6s} {m.summary()}")


def _seeds(value: str) -> list[int]:
    try:
        seeds = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be comma-separated integers such as 0,1,2,3, got {value!r}") from None
    if not seeds:
        raise argparse.ArgumentTypeError("needs at least one seed, such as 0,1,2,3")
    return seeds


def _guidance(value: str) -> float:
    try:
        g = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {value!r}") from None
    if g < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {g}")
    return g


def _check_writable_dir(path: Path, flag: str = "--out") -> None:
    probe = path
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK):
        raise UsageError(f"cannot write to {path}: {probe} is not a writable folder; choose another {flag}")


# -- parser ---------------------------------------------------------------------------------------


def _sampling_args(p: argparse.ArgumentParser) -> None:
    from erasekit.testbed.pipeline import DEFAULT_GUIDANCE, DEFAULT_STEPS

    p.add_argument("--steps", type=_positive, default=DEFAULT_STEPS, help=f"DDIM steps (default {DEFAULT_STEPS})")
    p.add_argument("--guidance", type=_guidance, default=DEFAULT_GUIDANCE, help=f"CFG scale (default {DEFAULT_GUIDANCE})")
    p.add_argument("--weights", default=None, help="testbed weights folder (default: the shipped testbed)")
    p.add_argument("--judge", default=None, help="judge folder (default: the shipped judge)")


def _run_args(p: argparse.ArgumentParser, verb: str) -> None:
    """What to work on: ``RUN`` (an artifact folder), or ``--baseline`` (with ``--concept``)."""
    p.add_argument("run", nargs="?", default=None, help="artifact folder written by `erasekit erase`")
    p.add_argument("--baseline", action="store_true", help=f"{verb} the unedited model (on the run's concept)")
    p.add_argument("--concept", default=None, help="concept for --baseline without a run folder")


def _stored_args(p: argparse.ArgumentParser, force_help: str) -> None:
    """The results database, re-running, JSON output and the sampling settings."""
    p.add_argument("--db", default="erasekit.db", help="results database (default erasekit.db)")
    p.add_argument("--force", action="store_true", help=force_help)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    _sampling_args(p)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="erasekit", description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=_threads, default=None, help="CPU threads (default: all cores)")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    testbed = sub.add_parser("testbed", help="the built-in testbed: train, train the judge, evaluate")
    tsub = testbed.add_subparsers(dest="testbed_command", required=True, parser_class=_Parser)

    tr = tsub.add_parser("train", help="train the testbed text-to-image UNet from scratch")
    tr.add_argument("--out", required=True, help="output folder (weights, checkpoints, training.json)")
    tr.add_argument("--steps", type=_positive, default=2500, help="optimiser steps (default 2500)")
    tr.add_argument("--batch-size", type=_positive, default=64)
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--width", choices=("small", "medium"), default="small")
    tr.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    tr.set_defaults(func=cmd_testbed_train)

    tj = tsub.add_parser("train-judge", help="train the judge classifier on procedural images")
    tj.add_argument("--out", required=True, help="output folder (judge.safetensors, config.json, judge.json)")
    tj.add_argument("--images", type=_positive, default=30000, help="training images (default 30000)")
    tj.add_argument("--epochs", type=_positive, default=4)
    tj.add_argument("--eval-images", type=_positive, default=3000, help="fresh images to measure on")
    tj.add_argument("--seed", type=int, default=0)
    tj.set_defaults(func=cmd_testbed_train_judge)

    ev = tsub.add_parser("evaluate", help="generation fidelity: judge accuracy per split and family")
    ev.add_argument("--prompts", type=_positive, default=64, help="prompts per split (default 64)")
    ev.add_argument("--seeds", type=_seeds, default=[0, 1, 2, 3], help="comma-separated seeds (default 0,1,2,3)")
    _sampling_args(ev)
    ev.add_argument("--json", action="store_true", help="print the result as JSON")
    ev.set_defaults(func=cmd_testbed_evaluate)

    sa = tsub.add_parser("sample", help="draw procedural ShapeCanvas images (the training data) into a grid")
    sa.add_argument("--shape")
    sa.add_argument("--colour", "--color", dest="colour")
    sa.add_argument("--background")
    sa.add_argument("--phrasing", choices=("train", "heldout"), default="train")
    sa.add_argument("-n", type=_positive, default=16)
    sa.add_argument("--seed", type=int, default=0)
    sa.add_argument("-o", "--output", default="samples.png")
    sa.set_defaults(func=cmd_testbed_sample)

    ge = sub.add_parser("generate", help="generate images for a prompt into a labelled grid")
    ge.add_argument("prompt", metavar="PROMPT")
    ge.add_argument("-n", type=_positive, default=8, help="images (one per seed, default 8)")
    ge.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
    ge.add_argument("--negative-prompt", default=None)
    ge.add_argument("-o", "--output", default="grid.png", help="PNG to write (default grid.png)")
    _sampling_args(ge)
    ge.add_argument("--erasure", default=None, help="apply this erasure artifact (a folder from `erasekit erase`)")
    ge.add_argument("--force", action="store_true", help="apply even if the artifact was fitted on other weights")
    ge.set_defaults(func=cmd_generate)

    er = sub.add_parser("erase", help="fit an erasure method for a concept and save the artifact")
    er.add_argument("--concept", required=True, help="built-in concept (skull, logo, red, neon, ...) or a .yaml/.json file")
    er.add_argument("--method", required=True, help="method name (see `erasekit methods`)")
    er.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    er.add_argument("--out", required=True, help="new folder for the artifact")
    er.add_argument("--weights", default=None, help="testbed weights or a local diffusers pipeline folder")
    er.set_defaults(func=cmd_erase)

    ev2 = sub.add_parser("eval", help="evaluate an erasure run (or the unedited model) and store the results")
    _run_args(ev2, "evaluate")
    ev2.add_argument("--seeds", type=_seeds, default=[0, 1, 2, 3], help="comma-separated seeds (default 0,1,2,3)")
    ev2.add_argument("--prompts", type=_positive, default=16, help="prompts per target split (default 16)")
    ev2.add_argument("--metrics", type=_metric_list, default=None,
                     help="comma-separated metrics (default efficacy,ira,cra,alignment,quality,cost)")
    ev2.add_argument("--batch", type=_positive, default=32,
                     help="images generated (and committed) per chunk (default 32; part of the run's identity)")
    _stored_args(ev2, "recompute even if this evaluation is stored")
    ev2.set_defaults(func=cmd_eval)

    rp = sub.add_parser("report", help="build the HTML report from the results database")
    rp.add_argument("--db", default="erasekit.db", help="results database (default erasekit.db)")
    rp.add_argument("-o", "--output", default="report.html", help="HTML file to write (default report.html)")
    rp.set_defaults(func=cmd_report)

    at = sub.add_parser("attack", help="attack an erasure run and store the attack success rate")
    _run_args(at, "attack")
    at.add_argument("--attack", required=True, help="attack name (see `erasekit attacks`)")
    at.add_argument("--budget", type=_positive, default=None, help="the attack's budget in its unit (default: its own)")
    at.add_argument("--prompts", type=_positive, default=4, help="target prompts (default 4)")
    at.add_argument("--seeds", type=_seeds, default=[0], help="noise seeds per prompt (default 0)")
    at.add_argument("--seed", type=int, default=0, help="the attack's own random seed (default 0)")
    _stored_args(at, "run again even if this attack is stored")
    at.set_defaults(func=cmd_attack)

    al = sub.add_parser("attacks", help="list the attacks with their threat models")
    al.set_defaults(func=cmd_attacks)

    mt = sub.add_parser("metrics", help="list the evaluation metrics")
    mt.set_defaults(func=cmd_metrics)

    me = sub.add_parser("methods", help="list the erasure methods")
    me.set_defaults(func=cmd_methods)

    from erasekit.lm.cli import add_parser as add_lm_parser

    add_lm_parser(sub, _positive, _Parser)

    de = sub.add_parser("demo", help="the README's main job on the testbed")
    de.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    de.add_argument("--weights", default=None, help="testbed weights folder (default: the shipped testbed)")
    de.add_argument("--judge", default=None, help="judge folder (default: the shipped judge)")
    de.set_defaults(func=cmd_demo)
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
    except (ValueError, FileNotFoundError, FileExistsError) as exc:
        print(f"erasekit: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("erasekit: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
