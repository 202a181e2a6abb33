"""Evaluation runs: generate a concept's prompt set, judge it, score it, store everything.

``evaluate`` is resumable: images are generated in fixed chunks and each chunk's rows are
committed in one transaction after its PNGs are on disk, so a run killed at any point is
completed by running it again, with no lost and no duplicated rows. The same artifact, seeds and
settings give the same run id, so a finished evaluation is skipped unless ``force``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from erasekit.concepts import OTHER, Concept, EvalPrompt, cycle
from erasekit.config import Config, check
from erasekit.domain import Domain, domain_of
from erasekit.erasure import CONFIG_FILE, WEIGHTS_FILE, Erasure, Stack
from erasekit.errors import UserError
from erasekit.grid import save_png
from erasekit.metrics.base import Answers, Metric, default_metrics, get_metric
from erasekit.pipelines import fingerprint
from erasekit.provenance import content_id, record, utc_now
from erasekit.sampling import DEFAULT_GUIDANCE, DEFAULT_STEPS, generate_jobs
from erasekit.store import Store


@dataclass(frozen=True)
class EvalConfig(Config):
    """What an evaluation generates: ``n_prompts`` per target split (and ``n_prompts // 4``, at
    least 1, per other value of the family), each with every seed."""

    n_prompts: int = 16
    seeds: tuple = (0, 1, 2, 3)
    steps: int = DEFAULT_STEPS
    guidance: float = DEFAULT_GUIDANCE
    prompt_seed: int = 0
    batch: int = 32

    def __post_init__(self) -> None:
        object.__setattr__(self, "seeds", tuple(self.seeds))
        self.check_types()
        check(self.n_prompts >= 1, "n_prompts", f"must be >= 1, got {self.n_prompts}")
        check(len(self.seeds) >= 1 and all(isinstance(s, int) and s >= 0 for s in self.seeds), "seeds",
              f"must be a non-empty list of integers >= 0, got {self.seeds!r}")
        check(len(set(self.seeds)) == len(self.seeds), "seeds", f"must not repeat, got {self.seeds!r}")
        check(self.steps >= 1, "steps", f"must be >= 1, got {self.steps}")
        check(self.guidance >= 0, "guidance", f"must be >= 0, got {self.guidance}")
        check(self.batch >= 1, "batch", f"must be >= 1, got {self.batch}")


def eval_prompts(concept: Concept, n_prompts: int = 16, seed: int = 0) -> list[EvalPrompt]:
    """The prompt set for ``concept``: its domain's (:meth:`erasekit.domain.Domain.eval_prompts`) for
    built-in concepts; for user concepts, their erase prompts as ``given`` and their preserve
    prompts as ``other``."""
    rng = np.random.default_rng([seed, 0xE7A2])
    domain = domain_of(concept)
    if domain is not None:
        return domain.eval_prompts(concept, n_prompts, rng)
    target = [EvalPrompt(t, "given") for t in cycle(concept.erase_prompts(), n_prompts, rng)]
    return target + [EvalPrompt(t, OTHER) for t in cycle(list(concept.preserve), n_prompts, rng)]


def artifact_info(folder: Path, erasure: Erasure | Stack) -> dict[str, Any]:
    """The artifact's JSON plus its digest, size on disk and number of changed parameters (a
    :class:`~erasekit.erasure.Stack`: over its parts' folders, whatever ``folder`` says)."""
    if isinstance(erasure, Stack):
        if erasure.folders is None:
            raise ValueError("a stack's record needs its parts' folders: Stack(parts, folders) or Stack.load(folders)")
        parts = [artifact_info(f, p) for f, p in zip(erasure.folders, erasure.parts)]
        return {**erasure.to_json(), "parts": parts, "digest": content_id({"stack": [p["digest"] for p in parts]}),
                "artifact_bytes": sum(p["artifact_bytes"] for p in parts),
                "params_changed": sum(p["params_changed"] for p in parts), "folder": erasure.folder}
    h = hashlib.sha256()
    size = 0
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        f = folder / name
        if f.exists():
            blob = f.read_bytes()
            h.update(name.encode() + b"\0" + blob)
            size += len(blob)
    return {**erasure.to_json(), "digest": h.hexdigest()[:16], "artifact_bytes": size,
            "params_changed": int(sum(t.numel() for t in erasure.weights.values())), "folder": str(folder)}


def floor_seeds(seeds: tuple[int, ...], n: int | None = None) -> tuple[int, ...]:
    """The seeds of the oracle's noise-floor images (and of the worst-case selection): ``n`` (default
    as many as ``seeds``), the smallest non-negative integers not among them (same prompts, other noise)."""
    out: list[int] = []
    k = 0
    while len(out) < (len(seeds) if n is None else n):
        if k not in seeds:
            out.append(k)
        k += 1
    return tuple(out)


def oracle_for(domain: Domain | None, concept: Concept, pipe: Any) -> Any:
    """The oracle pipeline trained without ``concept`` that belongs to ``pipe`` (``None`` if none)."""
    if domain is None or concept.name not in domain.oracle_excludes:
        return None
    return domain.oracle_for(pipe)


def available(judge: Any, domain: Domain | None, erasure: Erasure | None, oracle: bool = False) -> frozenset[str]:
    """What an evaluation's answer set will carry (see :attr:`erasekit.metrics.base.Metric.needs`)."""
    have = {"model"}  # evaluate() has the pipeline in hand
    if judge is not None:
        have.add("judge")
    if oracle:
        have.add("oracle")
    if domain is not None:
        have |= {"attributes", "domain"}
    if erasure is not None:
        have |= {"base_images", "artifact"}
    return frozenset(have)


def resolve_metrics(names: tuple[str, ...] | None, have: frozenset[str]) -> dict[str, Metric]:
    """The metrics to compute: ``names`` (each must be able to run, else a ``ValueError`` naming
    why), or by default every default metric that can run on what the evaluation has."""
    if names is None:
        objs = {m.name: m for m in default_metrics()}
        return {n: m for n, m in objs.items() if m.missing(have) is None}
    objs = {n: get_metric(n) for n in names}  # unknown names fail with "did you mean"
    for n, m in objs.items():
        reason = m.missing(have)
        if reason is not None:
            raise UserError(f"metrics: {n!r} cannot run on this evaluation: it {reason}")
    return objs


def evaluate(
    store: Store,
    pipe: Any,
    judge: Any,
    concept: Concept,
    cfg: EvalConfig = EvalConfig(),
    erasure: Erasure | None = None,
    artifact_dir: str | Path | None = None,
    metrics: tuple[str, ...] | None = None,
    force: bool = False,
    progress: bool = True,
    name: str | None = None,
    kind: str | None = None,
) -> dict[str, Any]:
    """Evaluate ``erasure`` (or the unedited model when ``None``) on ``concept``; return the run
    row with its metrics. Erasure runs first make sure the unedited baseline is evaluated too, and,
    when the concept's domain has an oracle trained without it, the oracle (``kind="oracle"``) and
    its noise floor (the oracle with other seeds, :func:`floor_seeds`, ``kind="oracle-floor"``).

    ``metrics``: names to compute (each must be able to run: a ``ValueError`` says why not, before
    any work); ``None``: every default metric that can run here."""
    domain = domain_of(concept)
    oracle_pipe = oracle_for(domain, concept, pipe) if kind is None else None
    oracle = oracle_pipe is not None
    metric_objs = resolve_metrics(metrics, available(judge, domain, erasure, oracle))
    if erasure is not None:
        erasure.check(pipe)  # base weights, parameter names and shapes: before any work
    base_fp = fingerprint(pipe)
    info = artifact_info(Path(artifact_dir), erasure) if erasure is not None and artifact_dir else None
    if erasure is not None and info is None:
        info = {**erasure.to_json(), "digest": None, "params_changed": int(sum(t.numel() for t in erasure.weights.values()))}
    key = {"base": base_fp, "concept": concept.to_dict(), "eval": cfg.to_dict(),
           "artifact": None if info is None else info.get("digest") or info["config"]}
    if kind is not None:  # an oracle run is its own run even on the same weights
        key["kind"] = kind
    run_id = content_id(key)
    image_dir = store.image_root / run_id
    base_run = None
    if erasure is not None:
        on_base = available(judge, domain, None, oracle)
        base_run = evaluate(store, pipe, judge, concept, cfg, None, None,
                            tuple(n for n, m in metric_objs.items() if m.missing(on_base) is None), False, progress)
    oracle_runs = None
    if oracle and "oracle" in {n for m in metric_objs.values() for n in m.needs}:
        on_oracle = tuple(n for n, m in metric_objs.items() if m.missing(available(judge, domain, None)) is None)
        floor_cfg = cfg.replace(seeds=floor_seeds(cfg.seeds))
        oracle_runs = (
            evaluate(store, oracle_pipe, judge, concept, cfg, None, None, on_oracle, False, progress,
                     f"oracle/{concept.name}", "oracle"),
            evaluate(store, oracle_pipe, judge, concept, floor_cfg, None, None, (), False, progress,
                     f"oracle-floor/{concept.name}", "oracle-floor"),
        )
    with store.lock(run_id):  # a second process on the same run waits here, then reuses the result
        if force:
            store.delete_run(run_id)
            shutil.rmtree(image_dir, ignore_errors=True)
        stored = store.run(run_id)
        try:
            return _fill_run(store, pipe, judge, concept, domain, cfg, erasure, artifact_dir, metric_objs, progress,
                             name, run_id, info, base_fp, base_run, kind, oracle_runs, oracle_pipe)
        except Exception:
            if stored is None or stored["state"] != "complete":  # a failed run leaves nothing behind
                store.delete_run(run_id)
                shutil.rmtree(image_dir, ignore_errors=True)
            raise


def _fill_run(store: Store, pipe: Any, judge: Any, concept: Concept, domain: Domain | None, cfg: EvalConfig,
              erasure: Erasure | None, artifact_dir: str | Path | None, metric_objs: dict[str, Metric], progress: bool,
              name: str | None, run_id: str, info: dict[str, Any] | None, base_fp: str,
              base_run: dict[str, Any] | None, kind: str | None = None,
              oracle_runs: tuple[dict[str, Any], dict[str, Any]] | None = None,
              oracle_pipe: Any = None) -> dict[str, Any]:
    """Add the run row, generate and judge what is missing (committed chunk by chunk), compute the
    metrics not stored yet, mark the run complete."""
    image_dir = store.image_root / run_id
    kind = kind or ("baseline" if erasure is None else "erasure")
    store.add_run({
        "run_id": run_id, "name": name or (f"baseline/{concept.name}" if erasure is None else f"{erasure.method}/{concept.name}"),
        "kind": kind, "method": None if erasure is None else erasure.method, "concept": concept.name,
        "artifact": None if artifact_dir is None else str(artifact_dir),
        "config": json.dumps({"eval": cfg.to_dict(), "concept": concept.to_dict(), "base_fingerprint": base_fp,
                              "artifact": info, "judge": _judge_name(judge, domain)}, default=str),
        "seeds": json.dumps(list(cfg.seeds)), **record(),
    })
    t0 = time.perf_counter()
    prompts = eval_prompts(concept, cfg.n_prompts, cfg.prompt_seed)
    jobs = [(s, i, p) for s in cfg.seeds for i, p in enumerate(prompts)]
    done = store.sample_keys(run_id)
    todo = [jobs[k : k + cfg.batch] for k in range(0, len(jobs), cfg.batch)]
    todo = [chunk for chunk in todo if any((i, s) not in done for s, i, _ in chunk)]
    if todo:
        image_dir.mkdir(parents=True, exist_ok=True)
        ctx = erasure.applied(pipe) if erasure is not None else nullcontext(pipe)
        with ctx, tqdm(total=len(jobs), initial=len(jobs) - sum(map(len, todo)), unit="img",
                       desc=f"eval {kind} {concept.name}", disable=not progress) as bar:
            for chunk in todo:
                imgs = generate_jobs(pipe, [(s, i, p.text) for s, i, p in chunk], cfg.steps, cfg.guidance)
                verdicts = judge.predict(imgs) if judge is not None else [None] * len(chunk)
                rows = []
                for (s, i, p), img, verdict in zip(chunk, imgs, verdicts):
                    rel = f"{store.image_root.name}/{run_id}/s{s}_p{i:04d}.png"
                    save_png(Image.fromarray(img), store.path.parent / rel)
                    rows.append({"prompt_index": i, "seed": s, "prompt": p.text, "split": p.split,
                                 "attributes": p.attributes, "image_path": rel, "verdict": verdict})
                store.add_samples(run_id, [r for r in rows if (r["prompt_index"], r["seed"]) not in done])
                bar.update(len(chunk))

    answers = load_answers(store, run_id, concept, prompts, list(cfg.seeds), judge)
    answers.artifact = info
    answers.pipe, answers.erasure, answers.oracle_pipe = pipe, erasure, oracle_pipe
    answers.steps, answers.guidance = cfg.steps, cfg.guidance
    if base_run is not None:
        answers.base_images = load_answers(store, base_run["run_id"], concept, prompts, list(cfg.seeds), None).images
    if oracle_runs is not None:
        answers.oracle_images, answers.oracle_floor_images = (
            load_answers(store, r["run_id"], concept, prompts, json.loads(r["seeds"]), None).images for r in oracle_runs)
    done_metrics = store.metric_names_done(run_id)
    for mname, metric in metric_objs.items():
        if mname not in done_metrics:
            store.add_metric(run_id, mname, metric.compute(answers))
    row = store.run(run_id)
    assert row is not None
    if row["state"] != "complete":
        store.complete_run(run_id, utc_now(), round(time.perf_counter() - t0, 2))
        row = store.run(run_id)
    return {**row, "metrics": store.metrics(run_id)}  # type: ignore[dict-item]


def load_answers(
    store: Store, run_id: str, concept: Concept, prompts: list[EvalPrompt], seeds: list[int], judge: Any
) -> Answers:
    """The stored answer set of a run, images read back from their PNGs (seed-major order)."""
    rows = {(r["seed"], r["prompt_index"]): r for r in store.samples(run_id)}
    missing = [(s, i) for s in seeds for i in range(len(prompts)) if (s, i) not in rows]
    if missing:
        raise RuntimeError(f"run {run_id} lacks {len(missing)} samples, e.g. seed {missing[0][0]} prompt {missing[0][1]}")
    images, verdicts = [], []
    for s in seeds:
        for i in range(len(prompts)):
            r = rows[(s, i)]
            images.append(np.asarray(Image.open(store.path.parent / r["image_path"]).convert("RGB")))
            verdicts.append(r["verdict"])
    return Answers(concept, prompts, seeds, np.stack(images),
                   verdicts if all(v is not None for v in verdicts) else None, judge=judge, domain=domain_of(concept))


def _judge_name(judge: Any, domain: Domain | None) -> str | None:
    if judge is None:
        return None
    return f"{domain.name} judge" if domain is not None else type(judge).__name__
