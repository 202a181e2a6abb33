"""One static HTML page from the results database: per run, before/after image grids, a metric
table with 95% intervals, an efficacy-vs-retention scatter over all runs, and a cost table.

The page is rendered from the Jinja2 template ``templates/report.html.j2`` (autoescaped: every text
from the database is HTML-escaped) with plots drawn by matplotlib (:mod:`erasekit.plots`). It is
self-contained (images inlined as PNG data URIs, plots as inline SVG; the only script is the
leaderboard's inline column sort), so it can be mailed or archived as one file. A database with benchmark cells (``erasekit bench``) opens with
each bench's leaderboard (:mod:`erasekit.bench.page`); audits and transfer cells add the threat
matrix and the transfer matrices (:mod:`erasekit.audit`, :mod:`erasekit.transfer`).
"""

from __future__ import annotations

import base64
import functools
import json
from pathlib import Path
from typing import Any, Callable

from erasekit.attacks.base import asr_curve
from erasekit.audit import COLUMNS, stored_matrices
from erasekit.bench.page import leaderboard_html
from erasekit.bench.rows import benches
from erasekit.concepts import SPLITS
from erasekit.files import atomic_write_bytes
from erasekit.metrics.base import report_columns
from erasekit.plots import curves_svg, scatter_svg
from erasekit.provenance import utc_now
from erasekit.store import Store
from erasekit.transfer import matrices as transfer_matrices


def _columns(runs: list[dict[str, Any]], table: str) -> dict[str, str]:
    """The registered metrics' report columns of ``table`` that at least one run has a value for."""
    return {k: h for k, h in report_columns(table).items() if any(k in r["metrics"] for r in runs)}


def _fmt(x: float | None, key: str = "") -> str:
    if x is None:
        return "–"
    if key in ("artifact_bytes", "params_changed"):
        return f"{int(x):,}"
    if 0 < abs(x) < 1e-3:
        return f"{x:.1e}"
    return f"{x:.3f}" if abs(x) < 100 else f"{x:.1f}"


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _img(store: Store, rel: str, alt: str) -> dict[str, str]:
    """An image row's PNG for the template (inlined as a data URI); only files inside the
    database's image folder are read. ``kind``: ``img``, ``missing`` or ``refused``."""
    root = store.image_root.resolve()
    path = (store.path.parent / rel).resolve()
    if root not in path.parents:
        return {"kind": "refused", "text": f"refused image path {rel} (outside {store.image_root.name})"}
    if not path.is_file():
        return {"kind": "missing", "text": f"missing image {path.name}"}
    blob = path.read_bytes()
    if not blob.startswith(PNG_SIGNATURE):
        return {"kind": "refused", "text": f"refused {path.name}: not a PNG"}
    return {"kind": "img", "src": "data:image/png;base64," + base64.b64encode(blob).decode(), "alt": alt}


def _scatter(runs: list[dict[str, Any]], xkey: str, ykey: str, xlabel: str, ylabel: str, gid: str) -> str:
    """Matplotlib scatter (inline SVG) of ``ykey`` against ``xkey``, one labelled point per run."""
    points = [(r["name"], r["metrics"][xkey], r["metrics"][ykey]) for r in runs
              if xkey in r["metrics"] and ykey in r["metrics"]]
    return scatter_svg(points, xlabel, ylabel, gid)


def _became(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per concept: what its target images were judged as, per run (the ``became`` metric)."""
    out = []
    for concept in dict.fromkeys(r["concept"] for r in runs):
        mine = [r for r in runs if r["concept"] == concept and any(k.startswith("became_") for k in r["metrics"])]
        if mine:
            keys = list(dict.fromkeys(k for r in mine for k in r["metrics"] if k.startswith("became_")))
            out.append({"concept": concept, "keys": keys, "runs": mine})
    return out


def _baseline_for(run: dict[str, Any], runs: list[dict[str, Any]]) -> dict[str, Any] | None:
    cfg = json.loads(run["config"])
    for r in runs:
        if r["kind"] == "baseline" and r["concept"] == run["concept"]:
            rc = json.loads(r["config"])
            if rc["eval"] == cfg["eval"] and rc["base_fingerprint"] == cfg["base_fingerprint"]:
                return r
    return None


def _grid(store: Store, run: dict[str, Any], base: dict[str, Any] | None, per_split: int = 4) -> dict[str, Any]:
    """Rows: a few prompts of each split; columns: before | after per seed (or one image per seed)."""
    samples = store.samples(run["run_id"])
    seeds = json.loads(run["seeds"])[:2]
    by_key = {(s["prompt_index"], s["seed"]): s for s in samples}
    base_by_key = {(s["prompt_index"], s["seed"]): s for s in store.samples(base["run_id"])} if base else {}
    prompts: dict[int, dict[str, Any]] = {}
    for s in samples:
        prompts.setdefault(s["prompt_index"], s)
    chosen: list[dict[str, Any]] = []
    for split in SPLITS:
        rows = [p for i, p in sorted(prompts.items()) if p["split"] == split]
        step = max(1, len(rows) // per_split)
        chosen += rows[::step][:per_split]
    before_after = base is not None and run["kind"] != "baseline"
    heads = [h for s in seeds for h in ((f"before, seed {s}", f"after, seed {s}") if before_after else (f"seed {s}",))]
    rows_out = []
    for p in chosen:
        i, images = p["prompt_index"], []
        for s in seeds:
            if before_after:
                b = base_by_key.get((i, s))
                images.append(_img(store, b["image_path"], f"before: {p['prompt']}") if b else None)
            a = by_key.get((i, s))
            label = ", ".join(f"{v}" for v in (a.get("verdict") or {}).values()) if a else ""
            images.append(_img(store, a["image_path"], f"{p['prompt']} (judge: {label})") if a else None)
        rows_out.append({"prompt": p["prompt"], "split": p["split"], "images": images})
    return {"heads": heads, "rows": rows_out}


def _attacks(store: Store, attacks: list[dict[str, Any]], read: Callable[[str], list[dict[str, Any]]],
             shown: int = 8) -> list[dict[str, Any]]:
    """Diffusion attack runs, each with up to ``shown`` images that broke through and its ASR
    against budget (:func:`erasekit.attacks.base.asr_curve`)."""
    out = []
    for a in attacks:
        samples = read(a["attack_id"])
        broke = [s for s in samples if s["success"] and not s["pre_success"]][:shown]
        out.append({**a, "broke": [{"image": _img(store, s["image_path"], s["adversarial_text"] or s["prompt"]),
                                    "note": s["note"]} for s in broke],
                    "curve": asr_curve([(bool(s["success"]), s["spent"]) for s in samples], a["budget"])})
    return out


def _curves(attacks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One ASR-against-budget plot per attack (and budget unit), a curve per run."""
    by_attack: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for a in attacks:
        if a["curve"]:
            by_attack.setdefault((a["attack"], a["budget_unit"]), []).append(a)
    out = []
    for k, ((name, unit), runs) in enumerate(sorted(by_attack.items())):
        label = {a["attack_id"]: a["run_name"] + (f" ({a['threat_model']})" if "restricted" in a["threat_model"] else "")
                 for a in runs}
        svg = curves_svg([(label[a["attack_id"]], a["curve"]) for a in runs], f"budget ({unit})", "ASR",
                         f"curve-{k}")
        out.append({"attack": name, "unit": unit, "svg": svg, "runs": len(runs)})
    return out


LM_KEYS = ("forget_acc", "surrogate_acc", "two_hop_acc", "retain_acc", "model_utility", "forget_quality",
           "privleak", "first_token_kl")
LM_HEADERS = {"forget_acc": "forget acc", "surrogate_acc": "surrogate acc", "two_hop_acc": "two-hop acc",
              "retain_acc": "retain acc", "model_utility": "model utility", "forget_quality": "forget quality",
              "privleak": "privleak", "first_token_kl": "first-token KL"}


def _lm(store: Store, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Language models: the metric table's runs, two scatters and every attack value."""
    attack_rows = [{"run": r["name"], "attack": a, "key": key, "value": m}
                   for r in runs for a in store.attacks_on(r["run_id"]) for key, m in a["values"].items()]
    return {"runs": runs, "heads": LM_HEADERS, "attack_rows": attack_rows,
            "scatters": [_scatter(runs, "model_utility", "forget_acc", "model utility", "forget accuracy", "lm-fu"),
                         _scatter(runs, "retain_acc", "surrogate_acc", "retain accuracy",
                                  "surrogate-phrasing accuracy", "lm-rs")]}


def build_report(store: Store, out: str | Path, title: str = "erasekit report") -> dict[str, int]:
    """Write the report for every run in ``store`` to ``out`` (atomically); return counts."""
    every = store.runs(state="complete")  # a killed run still running is not reported
    for r in every:
        r["metrics"] = store.metrics(r["run_id"])
    runs = [r for r in every if not r["kind"].startswith("lm-") and r["kind"] != "oracle-floor"]
    lm_runs = [r for r in every if r["kind"].startswith("lm-")]
    for r in runs:
        r["cfg"] = json.loads(r["config"])
        r["grid"] = _grid(store, r, _baseline_for(r, runs))
    attacks = store.attack_runs()
    read = functools.cache(store.attack_samples)  # the attack tables, the threat and transfer matrices share reads
    diffusion_attacks = _attacks(store, [a for a in attacks if a["asr"] is not None], read)
    context = {
        "title": title, "n_runs": len(every), "db": str(store.path), "built": utc_now(),
        "leaderboards": [leaderboard_html(store, bench) for bench in benches(store)],
        "runs": runs, "summary": _columns(runs, "summary"), "cost": _columns(runs, "cost"),
        "became": _became(runs),
        "scatters": [_scatter(runs, "ira", "efficacy", "in-domain retention (IRA)", "efficacy (UA)", "ira"),
                     _scatter(runs, "cra", "efficacy", "cross-domain retention (CRA)", "efficacy (UA)", "cra")]
        if runs else [],
        "attacks": diffusion_attacks,
        "curves": _curves(diffusion_attacks),
        "matrices": stored_matrices(store, attacks, read), "matrix_columns": COLUMNS,
        "transfers": transfer_matrices(store, attacks=attacks, samples=read),
        "lm": _lm(store, lm_runs) if lm_runs else None,
    }
    text = _environment().get_template("report.html.j2").render(**context)
    atomic_write_bytes(Path(out), text.encode())
    return {"runs": len(every), "attacks": len(attacks), "images": text.count("<img "),
            "missing_images": text.count('class="missing"'), "refused_images": text.count('class="refused"')}


def _header(text: str) -> Any:
    """A metric's column header (``Metric.report``): its parts escaped, its ``<br>`` kept as a line break."""
    from markupsafe import Markup, escape

    return Markup("<br>").join(escape(part) for part in text.split("<br>"))


def _environment() -> Any:
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    env = Environment(loader=PackageLoader("erasekit", "templates"), autoescape=select_autoescape(["j2", "html"]),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["fmt"] = _fmt
    env.filters["header"] = _header
    env.filters["json_pretty"] = lambda v: json.dumps(v, indent=2)
    return env
