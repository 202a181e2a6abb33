"""Diffusion commands: erase, generate, eval, report, attack, and the methods / attacks / metrics listings."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from erasekit.cli import args as A
from erasekit.cli import paths as P
from erasekit.cli.args import UsageError


def cmd_erase(args: argparse.Namespace) -> None:
    from erasekit.artifact import fit_recorded
    from erasekit.concepts import get_concept
    from erasekit.domain import domain_of
    from erasekit.erasure import get_method, make_config

    method = get_method(args.method)  # ValueError -> exit 2, with "did you mean"
    config = make_config(args.method, A.sets(args.set))
    concept = get_concept(args.concept)
    out = Path(args.out)
    P.check_new_dir(out)
    A.check_model_args(args)
    pipe = A.load_pipeline(args.weights, domain_of(concept))
    erasure = fit_recorded(method, pipe, concept, config, base_model=args.weights or "testbed (shipped)")
    erasure.save(out)
    print(f"{args.method} erased {concept.name!r} in {erasure.extra['fit_seconds']:.1f} s; artifact in {out}")


def cmd_methods(args: argparse.Namespace) -> None:
    from erasekit.erasure import METHODS

    A.list_methods(METHODS, "inference-time hook", (16, 20))


def cmd_generate(args: argparse.Namespace) -> None:
    from erasekit.domain import get_domain
    from erasekit.grid import labelled_grid, save_png
    from erasekit.sampling import generate

    out = Path(args.output)
    P.check_output_file(out)
    if not args.prompt.strip():
        raise UsageError("PROMPT is empty; give a text prompt such as 'a red skull on a striped background'")
    erasure = A.load_erasure(args.erasure)
    pipe, judge = A.load_models(args)
    if erasure is not None:
        erasure.apply(pipe, force=args.force)
    imgs = generate(pipe, [args.prompt], [args.seed + k for k in range(args.n)], args.steps, args.guidance,
                    negative_prompt=args.negative_prompt, progress=False)
    labels = [get_domain(A.DEFAULT_DOMAIN).label(v) for v in judge.predict(imgs)]
    save_png(labelled_grid(imgs, labels, title=args.prompt), out)
    for k, label in enumerate(labels):
        print(f"seed {args.seed + k}: judge says {label}")
    print(f"wrote {out}")


def run_and_concept(args: argparse.Namespace):
    """The erasure named by ``RUN`` (or ``None``) and the concept to work on (``--concept`` or the run's)."""
    from erasekit.concepts import get_concept

    if args.run is None and not args.baseline:
        raise UsageError("give a run folder written by `erasekit erase`, or --baseline --concept NAME")
    if args.on and args.run is None:
        raise UsageError("--on stacks RUN on other artifacts; give the run folder too (e.g. runs/irece --on runs/uce)")
    erasure = A.load_erasure(None if args.run is None else [*args.on, args.run], flag="run folder")
    if args.concept is not None:
        if erasure is not None and erasure.concept.parts:  # one part of a mass erasure
            return erasure, erasure.concept.part(args.concept)
        concept = get_concept(args.concept)
        if erasure is not None and concept.name != erasure.concept.name:
            raise UsageError(f"--concept {args.concept} differs from the run's concept {erasure.concept.name!r}; "
                             "drop --concept")
        return erasure, concept
    if erasure is None:
        raise UsageError("--baseline without a run folder needs --concept NAME (e.g. --concept skull)")
    if erasure.concept.parts:
        names = ", ".join(p.name for p in erasure.concept.parts)
        raise UsageError(f"the run erased {len(erasure.concept.parts)} concepts ({names}); evaluate one at a time "
                         f"with --concept NAME")
    return erasure, erasure.concept


def prepare_run(args: argparse.Namespace, erasure, concept):
    """For the run's erasure and concept (from :func:`run_and_concept`): the erasure to use
    (``None`` with ``--baseline``), the store, pipeline, judge and run name."""
    from erasekit.domain import domain_of

    store = P.open_store(args.db)
    pipe, judge = A.load_models(args, domain_of(concept))
    name = None if erasure is None or args.baseline else "+".join(Path(f).name for f in [*args.on, args.run])
    return (None if args.baseline else erasure), store, pipe, judge, name


def cmd_eval(args: argparse.Namespace) -> None:
    from erasekit.domain import domain_of
    from erasekit.evaluation import EvalConfig, available, evaluate, resolve_metrics

    cfg = EvalConfig(n_prompts=args.prompts, seeds=tuple(args.seeds), steps=args.steps, guidance=args.guidance,
                     batch=args.batch)
    erasure, concept = run_and_concept(args)  # check the metrics before a database or model is opened
    resolve_metrics(args.metrics, available(True, domain_of(concept), None if args.baseline else erasure))
    erasure, store, pipe, judge, name = prepare_run(args, erasure, concept)
    result = evaluate(store, pipe, judge, concept, cfg, erasure, A.run_folder(args, erasure),
                      metrics=args.metrics, force=args.force, progress=not args.json, name=name)
    if args.json:
        run = {k: result[k] for k in ("run_id", "name", "kind", "method", "concept", "artifact", "git_hash",
                                      "created_at", "completed_at", "wall_seconds")}
        run["seeds"] = json.loads(result["seeds"])
        metrics = {k: {f: m[f] for f in ("value", "ci95", "higher_is_better", "n")} for k, m in result["metrics"].items()}
        print(json.dumps({"run": run, "metrics": metrics}, indent=2))
        return
    print(f"{result['name']}  (run {result['run_id']}, concept {result['concept']})")
    print(f"  {'metric':28s} {'value':>9s}  {'95% interval':>19s}  better")
    for key, m in result["metrics"].items():
        ci = f"[{m['ci95'][0]:.3f}, {m['ci95'][1]:.3f}]" if m["ci95"] else "-"
        print(f"  {key:28s} {m['value']:9.3f}  {ci:>19s}  {'higher' if m['higher_is_better'] else 'lower'}")
    print(f"stored in {store.path}")


def cmd_report(args: argparse.Namespace) -> None:
    import sys

    from erasekit.report import build_report

    if not Path(args.db).is_file():
        raise UsageError(f"database {args.db} does not exist; run `erasekit eval` first or pass --db")
    out = Path(args.output)
    P.check_output_file(out)
    counts = build_report(P.open_store(args.db, readonly=True), out)
    print(f"wrote {out}: {counts['runs']} runs, {counts['images']} images")
    if counts["missing_images"]:
        print(f"warning: {counts['missing_images']} image files were missing beside the database", file=sys.stderr)
    if counts["refused_images"]:
        print(f"warning: {counts['refused_images']} image paths pointed outside the database's image folder or "
              "at non-PNG files and were not read", file=sys.stderr)


def cmd_attack(args: argparse.Namespace) -> None:
    from erasekit.attacks import get_attack
    from erasekit.redteam import attack

    atk = get_attack(args.attack)  # unknown -> ValueError with "did you mean"
    erasure, concept = run_and_concept(args)
    if concept.family is None:
        raise UsageError(f"attack {args.attack} needs reference images of the concept and a domain's judge, which "
                         f"the run's concept {concept.name!r} (a user concept) lacks; attack a built-in concept")
    erasure, store, pipe, judge, name = prepare_run(args, erasure, concept)
    result = attack(store, pipe, judge, concept, args.attack, args.budget, erasure,
                    A.run_folder(args, erasure), args.prompts, tuple(args.seeds), args.seed, args.steps,
                    args.guidance, args.force, progress=not args.json, name=name)
    s = {k: result[k] for k in ("attack_id", "run_name", "attack", "threat_model", "budget", "budget_unit", "n",
                                "pre_asr", "asr", "unet_evals", "grad_steps", "wall_seconds", "cached")}
    s["targets_dropped"] = json.loads(result["config"]).get("targets_dropped", 0)
    if args.json:
        s["targets"] = [{k: r[k] for k in ("prompt", "seed", "pre_success", "success", "adversarial_text",
                                           "unet_evals", "grad_steps", "wall_seconds", "note")}
                        for r in result["samples"]]
        print(json.dumps(s, indent=2))
        return
    print(f"{atk.name} against {s['run_name']} ({s['threat_model']})")
    dropped = s["targets_dropped"]
    print(f"  budget {s['budget']} {s['budget_unit']}; {s['n']} targets"
          + (f" ({dropped} dropped: the unedited model did not show the concept there)" if dropped else ""))
    print(f"  pre-attack ASR {s['pre_asr']:.3f}   ASR {s['asr']:.3f}")
    print(f"  spent: {s['unet_evals']} UNet evaluations, {s['grad_steps']} gradient steps, "
          f"{s['wall_seconds']:.1f} s{' (stored earlier)' if s['cached'] else ''}")
    print(f"stored in {store.path}")


def cmd_attacks(args: argparse.Namespace) -> None:
    from erasekit.attacks import get_attack, ladder

    for name in ladder():
        a = get_attack(name)
        print(f"{name:11s} {a.summary()}")
        print(f"{'':11s}   threat model: {a.threat_model}")
        print(f"{'':11s}   needs: {a.needs}; budget in {a.budget_unit} (default {a.default_budget})")


def cmd_metrics(args: argparse.Namespace) -> None:
    from erasekit.metrics.base import ranked

    for m in ranked():
        default = "" if m.default else " (not computed by default)"
        print(f"{m.name:12s} {'higher' if m.higher_is_better else 'lower':6s} {m.summary()}{default}")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    ge = sub.add_parser("generate", help="generate images for a prompt into a labelled grid")
    ge.add_argument("prompt", metavar="PROMPT")
    ge.add_argument("-n", type=A.positive, default=8, help="images (one per seed, default 8)")
    ge.add_argument("--seed", type=A.seed, default=0, help="first seed (default 0)")
    ge.add_argument("--negative-prompt", default=None)
    ge.add_argument("-o", "--output", default="grid.png", help="PNG to write (default grid.png)")
    A.sampling_args(ge)
    ge.add_argument("--erasure", action="append", default=None, metavar="FOLDER",
                    help="apply this erasure artifact (a folder from `erasekit erase`; repeat to stack, in order)")
    ge.add_argument("--force", action="store_true", help="apply even if the artifact was fitted on other weights")
    ge.set_defaults(func=cmd_generate)

    er = sub.add_parser("erase", help="fit an erasure method for a concept and save the artifact")
    er.add_argument("--concept", required=True,
                    help="built-in concept (skull, logo, red, neon, ...), a .yaml/.json file, or several: a comma "
                         "list (skull,logo) or a .txt file with one per line, erased together")
    A.fit_args(er, "erasekit methods")
    er.add_argument("--weights", default=None, help="testbed weights or a local diffusers pipeline folder")
    er.set_defaults(func=cmd_erase)

    ev = sub.add_parser("eval", help="evaluate an erasure run (or the unedited model) and store the results")
    A.run_args(ev, "evaluate")
    ev.add_argument("--seeds", type=A.seeds, default=[0, 1, 2, 3], help="comma-separated seeds (default 0,1,2,3)")
    ev.add_argument("--prompts", type=A.positive, default=16, help="prompts per target split (default 16)")
    ev.add_argument("--metrics", type=A.metric_list, default=None,
                    help="comma-separated metrics (default: every default metric that applies; `erasekit metrics`)")
    ev.add_argument("--batch", type=A.positive, default=32,
                    help="images generated (and committed) per chunk (default 32; part of the run's identity)")
    A.stored_args(ev, "recompute even if this evaluation is stored")
    ev.set_defaults(func=cmd_eval)

    rp = sub.add_parser("report", help="build the HTML report from the results database")
    rp.add_argument("--db", default="erasekit.db", help="results database (default erasekit.db)")
    rp.add_argument("-o", "--output", default="report.html", help="HTML file to write (default report.html)")
    rp.set_defaults(func=cmd_report)

    at = sub.add_parser("attack", help="attack an erasure run and store the attack success rate")
    A.run_args(at, "attack")
    at.add_argument("--attack", required=True, help="attack name (see `erasekit attacks`)")
    at.add_argument("--budget", type=A.positive, default=None, help="the attack's budget in its unit (default: its own)")
    at.add_argument("--prompts", type=A.positive, default=4, help="target prompts (default 4)")
    at.add_argument("--seeds", type=A.seeds, default=[0], help="noise seeds per prompt (default 0)")
    at.add_argument("--seed", type=A.seed, default=0, help="the attack's own random seed (default 0)")
    A.stored_args(at, "run again even if this attack is stored")
    at.set_defaults(func=cmd_attack)

    for verb, func, text in (("attacks", cmd_attacks, "list the attacks with their threat models"),
                             ("metrics", cmd_metrics, "list the evaluation metrics"),
                             ("methods", cmd_methods, "list the erasure methods")):
        sub.add_parser(verb, help=text).set_defaults(func=func)
