"""``erasekit lm ...``: train, erase, evaluate and attack language models (same conventions as the diffusion commands)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from erasekit.cli import args as A
from erasekit.cli import paths as P
from erasekit.cli.args import UsageError
from erasekit.lm.tasks import TASKS


def _load_lm(spec: str, flag: str = "--model"):
    from erasekit.lm import model as M

    try:
        return M.load(spec)
    except (FileNotFoundError, OSError) as exc:
        raise UsageError(f"{flag} {spec}: {exc}" if str(spec) not in str(exc) else str(exc)) from None


def _forget(args: argparse.Namespace):
    from erasekit.lm.tasks import Forget

    return Forget(args.task, args.task_seed)


def cmd_lm_train(args: argparse.Namespace) -> None:
    from erasekit.lm import data, model as M

    out = Path(args.out)
    P.check_new_dir(out)
    t = time.perf_counter()
    bench = data.generate_dusk(args.seed) if args.task == "dusk" else data.generate(args.seed)
    lm = M.build_tiny(data.build_tokenizer(bench), args.seed)
    stats = M.train_recipe(lm, bench, args.oracle, args.steps, args.seed)
    M.save(lm, out, {"oracle": args.oracle, "seed": args.seed, **stats, "task": args.task})
    print(f"trained the tiny {'oracle' if args.oracle else 'target'} in {time.perf_counter() - t:.1f} s "
          f"(final loss {stats['final_loss']}); model in {out}")


def cmd_lm_corrupt(args: argparse.Namespace) -> None:
    from erasekit.lm import data, model as M

    out = Path(args.out)
    P.check_new_dir(out)
    lm = _load_lm(args.model)
    meta_file = Path(args.model) / "erasekit.json"
    meta = json.loads(meta_file.read_text()) if meta_file.exists() else {}
    if lm.chat or meta.get("task", "tinytofu") != "tinytofu" or meta.get("oracle"):
        raise UsageError(f"--model {args.model}: RESTOR's corruption needs a clean TinyTOFU target "
                         "(`erasekit lm train --out DIR`)")
    if meta.get("seed", args.task_seed) != args.task_seed:
        raise UsageError(f"--model {args.model} was trained on TinyTOFU seed {meta.get('seed')}; "
                         f"pass --task-seed {meta.get('seed')}")
    bench = data.generate(args.task_seed)
    stats = M.corrupt(lm, bench, args.steps, seed=args.seed)
    lm.name = f"{lm.name}-corrupted"
    M.save(lm, out, {"seed": args.seed, **stats, "task": "restor", "task_seed": args.task_seed,
                     "corrupted_from": str(args.model)})
    print(f"corrupted {args.model} with RESTOR's false facts in {stats['seconds']:.1f} s (final loss "
          f"{stats['final_loss']}); model in {out}; unlearn it with `--task restor` and evaluate with "
          f"`--oracle {args.model}`")


def cmd_lm_erase(args: argparse.Namespace) -> None:
    from erasekit.artifact import fit_recorded
    from erasekit.lm.methods.base import get_lm_method, make_lm_config

    method = get_lm_method(args.method)
    config = make_lm_config(args.method, A.sets(args.set))
    out = Path(args.out)
    P.check_new_dir(out)
    spec = _forget(args)
    fitter = method
    if args.sequence is not None:
        from erasekit.lm.continual import SequenceFitter, read_requests
        from erasekit.lm.tasks import Forget

        if args.task != "tinytofu":
            raise UsageError(f"--sequence names TinyTOFU forget authors; it needs --task tinytofu, not {args.task}")
        requests = read_requests(args.sequence, args.task_seed)
        spec = Forget("tinytofu", args.task_seed, tuple(a for r in requests for a in r))
        fitter = SequenceFitter(method, requests)
    lm = _load_lm(args.model)
    erasure = fit_recorded(fitter, lm, spec, config, base_model=args.model)
    erasure.save(out)
    what = f"{len(erasure.extra['sequence'])} requests" if args.sequence else repr(spec.task)
    print(f"{args.method} unlearned {what} in {erasure.extra['fit_seconds']:.1f} s "
          f"({len(erasure.tensors)} tensors); artifact in {out}")


def _artifact(args: argparse.Namespace):
    from erasekit.lm.methods.base import LMErasure

    if args.run is None:
        return None
    folder = Path(args.run)
    if not folder.is_dir():
        raise UsageError(f"{folder} is not a folder; give an artifact from `erasekit lm erase`")
    return LMErasure.load(folder)


def _print(values: dict, as_json: bool, header: str) -> None:
    if as_json:
        print(json.dumps(values, indent=2, sort_keys=True))
        return
    print(header)
    for k, v in values.items():
        ci = v.get("ci95")
        ci_s = f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""
        print(f"  {k:28s} {v['value']:.4g}{ci_s}")


def _evaluated(args: argparse.Namespace, force: bool = False):
    """Load what ``lm eval`` / ``lm attack`` name and evaluate it (a stored evaluation is reused)."""
    from erasekit.lm import evaluate as E

    erasure = _artifact(args)
    spec = erasure.concept if erasure is not None else _forget(args)
    store = P.open_store(args.db)
    lm = _load_lm(args.model)
    oracle = _load_lm(args.oracle, "--oracle") if args.oracle else None
    res = E.evaluate(store, lm, spec, erasure=erasure, oracle=oracle, artifact=args.run, force=force,
                     name=Path(args.run).name if args.run else None)
    return res, store, lm, spec, erasure, oracle


def cmd_lm_eval(args: argparse.Namespace) -> None:
    res = _evaluated(args, force=args.force)[0]
    vals = {k: {kk: vv for kk, vv in v.items() if kk != "meta"} for k, v in res["metrics"].items()}
    _print({"run_id": res["run_id"], "cached": res["cached"], "metrics": vals} if args.json else vals, args.json,
           f"run {res['run_id']}{' (stored; --force to recompute)' if res['cached'] else ''}")


def cmd_lm_attack(args: argparse.Namespace) -> None:
    from erasekit.lm import evaluate as E
    from erasekit.lm.attacks.base import get_lm_attack

    atk = get_lm_attack(args.attack)  # ValueError with "did you mean" -> exit 2
    if args.budget is not None:
        atk.check_budget(args.budget)
    res, store, lm, spec, erasure, oracle = _evaluated(args)
    out = E.attack(store, res["run_id"], lm, spec, args.attack, erasure=erasure, oracle=oracle,
                   budget=args.budget, seed=args.seed)
    _print(out if args.json else out["values"], args.json,
           f"{args.attack} on run {res['run_id']} (budget {out['budget']} {atk.budget_unit}, {out['wall_seconds']} s)")


def cmd_lm_methods(args: argparse.Namespace) -> None:
    from erasekit.lm.methods.base import LM_METHODS

    A.list_methods(LM_METHODS, "hook", (13, 17))


def cmd_lm_attacks(args: argparse.Namespace) -> None:
    from erasekit.lm.attacks.base import get_lm_attack, lm_attack_names

    for name in lm_attack_names():
        a = get_lm_attack(name)
        print(f"{name:11s} {a.threat_model:11s} budget in {a.budget_unit} (default {a.default_budget}). {a.summary()}")


def cmd_lm_metrics(args: argparse.Namespace) -> None:
    from erasekit.lm.metrics.base import get_lm_metric, lm_metric_names

    for name in lm_metric_names():
        m = get_lm_metric(name)
        needs = f" (needs {', '.join(m.needs)})" if m.needs else ""
        print(f"{name:15s} {m.summary()}{needs}")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    positive = A.positive
    lm = sub.add_parser("lm", help="language models: train the tiny model, unlearn, evaluate, attack")
    ls = lm.add_subparsers(dest="lm_command", required=True, parser_class=A.Parser)

    def task_args(p):
        p.add_argument("--task", default="tinytofu", choices=TASKS,
                       help="what to forget (default tinytofu; ignored with an artifact, which names its task)")
        p.add_argument("--task-seed", type=A.seed, default=0, help="TinyTOFU seed (default 0)")

    tr = ls.add_parser("train", help="train the tiny Llama target (or --oracle: retain facts only) on TinyTOFU")
    tr.add_argument("--out", required=True, help="new folder for the model")
    tr.add_argument("--oracle", action="store_true", help="train on the retain split only (the TOFU oracle)")
    tr.add_argument("--steps", type=positive, default=None, help="optimiser steps (default 600; DUSK: 300)")
    tr.add_argument("--seed", type=A.seed, default=0)
    tr.add_argument("--task", default="tinytofu", choices=("tinytofu", "dusk"),
                    help="TinyTOFU's questions or DUSK's documents (default tinytofu)")
    tr.set_defaults(func=cmd_lm_train)

    co = ls.add_parser("corrupt", help="RESTOR: train a TinyTOFU model on false facts about the forget authors")
    co.add_argument("--model", required=True, help="the clean model folder (from `erasekit lm train`)")
    co.add_argument("--out", required=True, help="new folder for the corrupted model")
    co.add_argument("--steps", type=positive, default=100, help="optimiser steps (default 100)")
    co.add_argument("--task-seed", type=A.seed, default=0, help="TinyTOFU seed the model was trained on (default 0)")
    co.add_argument("--seed", type=A.seed, default=0)
    co.set_defaults(func=cmd_lm_corrupt)

    er = ls.add_parser("erase", help="unlearn the task's forget set and save the artifact")
    er.add_argument("--model", required=True, help="model folder (safetensors) or smollm2")
    A.fit_args(er, "erasekit lm methods")
    task_args(er)
    er.add_argument("--sequence", default=None, metavar="FILE",
                    help="continual unlearning: one request per line, TinyTOFU forget authors separated by commas; "
                         "served in order, scored after each (saved in the artifact)")
    er.set_defaults(func=cmd_lm_erase)

    for verb, func, helptext in (("eval", cmd_lm_eval, "evaluate the model, or an artifact on it, into the database"),
                                 ("attack", cmd_lm_attack, "attack the model, or an artifact on it, and store the result")):
        p = ls.add_parser(verb, help=helptext)
        p.add_argument("run", nargs="?", default=None, help="artifact folder from `erasekit lm erase` (omit: the model itself)")
        p.add_argument("--model", required=True, help="the model the artifact was fitted on (folder or smollm2)")
        p.add_argument("--oracle", default=None, help="oracle model folder (for forget quality, privleak, attacks)")
        p.add_argument("--db", default="erasekit.db", help="results database (default erasekit.db)")
        p.add_argument("--json", action="store_true", help="print the result as JSON")
        task_args(p)
        if verb == "eval":
            p.add_argument("--force", action="store_true", help="recompute even if stored")
        else:
            p.add_argument("--attack", required=True, help="attack name (see `erasekit lm attacks`)")
            p.add_argument("--budget", type=positive, default=None, help="the attack's budget in its unit")
            p.add_argument("--seed", type=A.seed, default=0)
        p.set_defaults(func=func)

    for verb, func, helptext in (("methods", cmd_lm_methods, "list the unlearning methods"),
                                 ("attacks", cmd_lm_attacks, "list the attacks"),
                                 ("metrics", cmd_lm_metrics, "list the metrics")):
        ls.add_parser(verb, help=helptext).set_defaults(func=func)
