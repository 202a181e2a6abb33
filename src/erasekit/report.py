"""One static HTML page from the results database: per run, before/after image grids, a metric
table with 95% intervals, an efficacy-vs-retention scatter over all runs, and a cost table.

The page is self-contained (images inlined as PNG data URIs, plots as inline SVG; the only script
is the leaderboard's inline column sort), so it can be mailed or archived as one file. Every text
from the database is HTML-escaped. A database with benchmark cells (``erasekit bench``) opens with
each bench's leaderboard (:mod:`erasekit.bench.page`).
"""

from __future__ import annotations

import base64
import json
from html import escape
from pathlib import Path
from typing import Any

from erasekit.bench.page import leaderboard_html
from erasekit.bench.rows import benches
from erasekit.concepts import SPLITS
from erasekit.files import atomic_write_bytes
from erasekit.metrics.base import report_columns
from erasekit.provenance import utc_now
from erasekit.store import Store

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2")

CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 24px auto; max-width: 1100px; color: #222; }
h1 { margin-bottom: 0; } .sub { color: #666; margin-top: 4px; }
table { border-collapse: collapse; margin: 8px 0 16px; }
th, td { border-bottom: 1px solid #ddd; padding: 4px 8px; text-align: right; white-space: nowrap; }
th { font-size: 12px; }
th:first-child, td:first-child { text-align: left; }
.ci { color: #777; font-size: 12px; } .good { color: #1a7f37; } .dir { color: #999; }
section.run { border-top: 2px solid #333; margin-top: 28px; padding-top: 8px; }
.grid { display: grid; gap: 6px 10px; align-items: center; }
.grid img { width: 64px; height: 64px; image-rendering: pixelated; border: 1px solid #ccc; }
.grid .p { font-size: 12px; max-width: 320px; text-align: left; }
.grid .h { font-size: 12px; color: #555; font-weight: 600; }
.lb { overflow-x: auto; } .lb td .ci { white-space: nowrap; }
details { margin: 6px 0; } pre { background: #f6f6f6; padding: 8px; overflow-x: auto; font-size: 12px; }
"""


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


def _cell(m: dict[str, Any] | None, key: str = "") -> str:
    if m is None:
        return "<td>–</td>"
    ci = f'<br><span class="ci">[{_fmt(m["ci95"][0], key)}, {_fmt(m["ci95"][1], key)}]</span>' if m.get("ci95") else ""
    return f"<td>{_fmt(m['value'], key)}{ci}</td>"


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _img(store: Store, rel: str, alt: str) -> str:
    """An image row's PNG, inlined; only files inside the database's image folder are read."""
    root = store.image_root.resolve()
    path = (store.path.parent / rel).resolve()
    if root not in path.parents:
        return f'<span class="refused">refused image path {escape(rel)} (outside {escape(store.image_root.name)})</span>'
    if not path.is_file():
        return f'<span class="missing">missing image {escape(str(path.name))}</span>'
    blob = path.read_bytes()
    if not blob.startswith(PNG_SIGNATURE):
        return f'<span class="refused">refused {escape(path.name)}: not a PNG</span>'
    data = base64.b64encode(blob).decode()
    return f'<img src="data:image/png;base64,{data}" alt="{escape(alt)}" title="{escape(alt)}">'


def _scatter(runs: list[dict[str, Any]], xkey: str, ykey: str, xlabel: str, ylabel: str) -> str:
    """Inline SVG scatter of ``ykey`` against ``xkey`` (both in [0, 1]) with one labelled point per run."""
    w, h, pad = 500, 340, 48
    pts = [(r, r["metrics"].get(xkey), r["metrics"].get(ykey)) for r in runs]
    pts = [(r, x, y) for r, x, y in pts if x is not None and y is not None]

    def sx(v: float) -> float:
        return pad + v * (w - 3 * pad)

    def sy(v: float) -> float:
        return h - pad - v * (h - 2 * pad)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" role="img" '
             f'aria-label="{escape(ylabel)} against {escape(xlabel)}">',
             f'<rect x="{pad}" y="{pad}" width="{w - 3 * pad}" height="{h - 2 * pad}" fill="#fafafa" stroke="#999"/>']
    for t in (0, 0.25, 0.5, 0.75, 1):
        parts.append(f'<text x="{sx(t):.1f}" y="{h - pad + 16}" font-size="11" text-anchor="middle">{t:g}</text>')
        parts.append(f'<text x="{pad - 6}" y="{sy(t) + 4:.1f}" font-size="11" text-anchor="end">{t:g}</text>')
    parts.append(f'<text x="{(w - pad) / 2}" y="{h - 8}" font-size="12" text-anchor="middle">{escape(xlabel)}</text>')
    parts.append(f'<text x="14" y="{h / 2}" font-size="12" text-anchor="middle" '
                 f'transform="rotate(-90 14 {h / 2})">{escape(ylabel)}</text>')
    for k, (r, x, y) in enumerate(pts):
        colour = PALETTE[k % len(PALETTE)]
        cx, cy = sx(min(max(x["value"], 0), 1)), sy(min(max(y["value"], 0), 1))
        if x.get("ci95"):
            parts.append(f'<line x1="{sx(x["ci95"][0]):.1f}" x2="{sx(x["ci95"][1]):.1f}" y1="{cy:.1f}" y2="{cy:.1f}" '
                         f'stroke="{colour}" stroke-opacity="0.5"/>')
        if y.get("ci95"):
            parts.append(f'<line x1="{cx:.1f}" x2="{cx:.1f}" y1="{sy(y["ci95"][0]):.1f}" y2="{sy(y["ci95"][1]):.1f}" '
                         f'stroke="{colour}" stroke-opacity="0.5"/>')
        parts.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="5" fill="{colour}"><title>{escape(r["name"])}</title></circle>')
        anchor, dx = ("end", -8) if x["value"] > 0.6 else ("start", 8)
        parts.append(f'<text x="{cx + dx:.1f}" y="{cy - 6 - 12 * (k % 3):.1f}" font-size="11" fill="{colour}" '
                     f'text-anchor="{anchor}">{escape(r["name"])}</text>')
    if not pts:
        parts.append(f'<text x="{w / 2}" y="{h / 2}" text-anchor="middle" fill="#999">no runs with both metrics</text>')
    parts.append("</svg>")
    return "".join(parts)


def _became(runs: list[dict[str, Any]]) -> str:
    """What each concept's target images were judged as, per run (the ``became`` metric), one
    table per concept."""
    html = []
    for concept in dict.fromkeys(r["concept"] for r in runs):
        mine = [r for r in runs if r["concept"] == concept and any(k.startswith("became_") for k in r["metrics"])]
        keys = list(dict.fromkeys(k for r in mine for k in r["metrics"] if k.startswith("became_")))
        if not mine:
            continue
        html.append(f"<h3>{escape(concept)}</h3><table><tr><th>run</th>"
                    + "".join(f"<th>{escape(k[len('became_'):])}</th>" for k in keys) + "</tr>"
                    + "".join(f"<tr><td>{escape(r['name'])}</td>" + "".join(_cell(r["metrics"].get(k), k) for k in keys)
                              + "</tr>" for r in mine) + "</table>")
    if not html:
        return ""
    return ("<h2>What the concept became</h2><p class=\"ci\">Share of target-prompt images (given, known, unseen "
            "phrasings, held-out pairs) judged as each value; <code>none</code>: no recognisable shape.</p>"
            + "".join(html))


def _baseline_for(run: dict[str, Any], runs: list[dict[str, Any]]) -> dict[str, Any] | None:
    cfg = json.loads(run["config"])
    for r in runs:
        if r["kind"] == "baseline" and r["concept"] == run["concept"]:
            rc = json.loads(r["config"])
            if rc["eval"] == cfg["eval"] and rc["base_fingerprint"] == cfg["base_fingerprint"]:
                return r
    return None


def _grid(store: Store, run: dict[str, Any], base: dict[str, Any] | None, per_split: int = 4) -> str:
    """Rows: a few target prompts, then neighbouring concepts; columns: before | after per seed."""
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
    cols = 1 + len(seeds) * (2 if before_after else 1)
    head = ['<div class="h">prompt (split)</div>']
    for s in seeds:
        head += ([f'<div class="h">before, seed {s}</div>', f'<div class="h">after, seed {s}</div>'] if before_after
                 else [f'<div class="h">seed {s}</div>'])
    cells = head
    for p in chosen:
        i = p["prompt_index"]
        cells.append(f'<div class="p">{escape(p["prompt"])} <span class="ci">({escape(p["split"])})</span></div>')
        for s in seeds:
            if before_after:
                b = base_by_key.get((i, s))
                cells.append(_img(store, b["image_path"], f"before: {p['prompt']}") if b else "<div>–</div>")
            a = by_key.get((i, s))
            label = ", ".join(f"{v}" for v in (a.get("verdict") or {}).values()) if a else ""
            cells.append(_img(store, a["image_path"], f"{p['prompt']} (judge: {label})") if a else "<div>–</div>")
    return (f'<div class="grid" style="grid-template-columns: minmax(220px, 380px){" 66px" * (cols - 1)}">'
            f'{"".join(cells)}</div>')


def build_report(store: Store, out: str | Path, title: str = "erasekit report") -> dict[str, int]:
    """Write the report for every run in ``store`` to ``out`` (atomically); return counts."""
    every = store.runs(state="complete")  # a killed run still running is not reported
    for r in every:
        r["metrics"] = store.metrics(r["run_id"])
    runs = [r for r in every if not r["kind"].startswith("lm-") and r["kind"] != "oracle-floor"]
    lm_runs = [r for r in every if r["kind"].startswith("lm-")]
    html = [f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{escape(title)}</title>",
            f"<style>{CSS}</style></head><body>", f"<h1>{escape(title)}</h1>",
            f'<p class="sub">{len(every)} runs from {escape(str(store.path))}; built '
            f"{utc_now()}</p>"]
    for bench in benches(store):
        html.append(leaderboard_html(store, bench))
    if not every:
        html.append("<p>The database holds no runs yet: run <code>erasekit eval</code> first.</p>")
    elif runs:
        summary, cost = _columns(runs, "summary"), _columns(runs, "cost")
        html.append("<h2>Summary</h2><table><tr><th>run</th>" + "".join(f"<th>{h}</th>" for h in summary.values()) + "</tr>")
        for r in runs:
            html.append(f"<tr><td><a href=\"#run-{escape(r['run_id'])}\">{escape(r['name'])}</a></td>"
                        + "".join(_cell(r["metrics"].get(k), k) for k in summary) + "</tr>")
        html.append("</table><p class=\"ci\">Intervals: 95% bootstrap (over prompts for rates, over images for "
                    "distances). Efficacy, IRA, CRA, alignment: higher is better; concept score, concept rates on decoys and "
                    "off-topic prompts, FD and the oracle gap: lower is better (a perfect erasure sits at the oracle's "
                    "floor).</p>")
        html.append(_became(runs))
        html.append("<h2>Efficacy against retention</h2><div>"
                    + _scatter(runs, "ira", "efficacy", "in-domain retention (IRA)", "efficacy (UA)")
                    + _scatter(runs, "cra", "efficacy", "cross-domain retention (CRA)", "efficacy (UA)") + "</div>")
        html.append("<h2>Cost</h2><table><tr><th>run</th>" + "".join(f"<th>{h}</th>" for h in cost.values())
                    + "<th>evaluation wall s</th></tr>")
        for r in runs:
            if r["kind"] == "erasure":
                html.append(f"<tr><td>{escape(r['name'])}</td>" + "".join(_cell(r["metrics"].get(k), k) for k in cost)
                            + f"<td>{_fmt(r['wall_seconds'])}</td></tr>")
        html.append("</table>")
    attacks = store.attack_runs()
    if any(a["asr"] is not None for a in attacks):
        html.append(_attack_section(store, [a for a in attacks if a["asr"] is not None]))
    if lm_runs:
        html.append(_lm_section(store, lm_runs))
    for r in runs:
        cfg = json.loads(r["config"])
        html.append(f'<section class="run" id="run-{escape(r["run_id"])}"><h2>{escape(r["name"])}</h2>')
        html.append(f'<p class="sub">{escape(r["kind"])} · concept <b>{escape(r["concept"])}</b> · seeds '
                    f'{escape(r["seeds"])} · {cfg["eval"]["steps"]} steps, guidance {cfg["eval"]["guidance"]} · '
                    f'commit {escape(r["git_hash"][:12])} · {escape(r["created_at"])}</p>')
        html.append("<table><tr><th>metric</th><th>value [95% CI]</th><th>better</th><th>n</th></tr>")
        for key, m in r["metrics"].items():
            html.append(f"<tr><td>{escape(key)}</td>{_cell(m, key)}<td class=\"dir\">"
                        f"{'higher' if m['higher_is_better'] else 'lower'}</td><td>{m['n']}</td></tr>")
        html.append("</table>")
        html.append(_grid(store, r, _baseline_for(r, runs)))
        html.append(f"<details><summary>resolved config</summary><pre>{escape(json.dumps(cfg, indent=2))}</pre></details>")
        html.append(f"<details><summary>package versions</summary><pre>{escape(r['versions'])}</pre></details>")
        html.append("</section>")
    html.append("</body></html>")
    text = "\n".join(html)
    atomic_write_bytes(Path(out), text.encode())
    return {"runs": len(every), "attacks": len(attacks), "images": text.count("<img "),
            "missing_images": text.count('class="missing"'), "refused_images": text.count('class="refused"')}


def _attack_section(store: Store, attacks: list[dict[str, Any]], shown: int = 8) -> str:
    """ASR per run and attack with its budget and cost, and the images that broke through."""
    out = ["<h2>Attacks</h2><p class=\"ci\">ASR follows UnlearnDiffAtk: (pre-attack successes + attack "
           "successes) / targets. UNet evaluations are counted per sample.</p>",
           "<table><tr><th>run</th><th>attack</th><th>threat model</th><th>budget</th><th>targets</th>"
           "<th>pre-ASR</th><th>ASR</th><th>UNet evals</th><th>grad steps</th><th>wall s</th></tr>"]
    for a in attacks:
        out.append(f"<tr><td>{escape(a['run_name'])}</td><td>{escape(a['attack'])}</td>"
                   f"<td class=\"ci\">{escape(a['threat_model'])}</td><td>{a['budget']} {escape(a['budget_unit'])}</td>"
                   f"<td>{a['n']}</td><td>{a['pre_asr']:.3f}</td><td><b>{a['asr']:.3f}</b></td><td>{a['unet_evals']:,}</td>"
                   f"<td>{a['grad_steps']:,}</td><td>{a['wall_seconds']:.1f}</td></tr>")
    out.append("</table>")
    for a in attacks:
        broke = [s for s in store.attack_samples(a["attack_id"]) if s["success"] and not s["pre_success"]][:shown]
        if not broke:
            continue
        cells = "".join(
            f'<div>{_img(store, s["image_path"], s["adversarial_text"] or s["prompt"])}'
            f'<div class="ci">{escape(s["note"])}</div></div>' for s in broke)
        out.append(f"<h3>{escape(a['run_name'])}: {escape(a['attack'])} broke through</h3>"
                   f'<div class="grid" style="grid-template-columns: repeat({len(broke)}, 90px)">{cells}</div>')
    return "\n".join(out)


LM_KEYS = ("forget_acc", "surrogate_acc", "two_hop_acc", "retain_acc", "model_utility", "forget_quality",
           "privleak", "first_token_kl")
LM_HEADERS = {"forget_acc": "forget acc", "surrogate_acc": "surrogate acc", "two_hop_acc": "two-hop acc",
              "retain_acc": "retain acc", "model_utility": "model utility", "forget_quality": "forget quality",
              "privleak": "privleak", "first_token_kl": "first-token KL"}


def _lm_section(store: Store, runs: list[dict[str, Any]]) -> str:
    """Language models: a metric table, forget accuracy against model utility, and the attack table."""
    out = ["<h2>Language models</h2><table><tr><th>run</th><th>kind</th><th>task</th>"
           + "".join(f"<th>{LM_HEADERS[k]}</th>" for k in LM_KEYS) + "</tr>"]
    for r in runs:
        out.append(f"<tr><td>{escape(r['name'])}</td><td class=\"ci\">{escape(r['kind'])}</td>"
                   f"<td>{escape(r['concept'])}</td>" + "".join(_cell(r["metrics"].get(k), k) for k in LM_KEYS) + "</tr>")
    out.append("</table><p class=\"ci\">Forget and surrogate accuracy: lower is better (the oracle row is the "
               "target). Forget quality: KS p-value against the oracle. privleak: Min-K% MIA AUC relative to the "
               "oracle's, in %.</p>")
    out.append("<h3>Forgetting against utility</h3><div>"
               + _scatter(runs, "model_utility", "forget_acc", "model utility", "forget accuracy")
               + _scatter(runs, "retain_acc", "surrogate_acc", "retain accuracy", "surrogate-phrasing accuracy")
               + "</div>")
    rows = []
    for r in runs:
        for a in store.attacks_on(r["run_id"]):
            for key, m in a["values"].items():
                rows.append(f"<tr><td>{escape(r['name'])}</td><td>{escape(a['attack'])}</td><td>{escape(key)}</td>"
                            f"<td><b>{_fmt(m['value'])}</b></td><td>{a['budget']} {escape(a['budget_unit'])}</td>"
                            f"<td>{_fmt(a['wall_seconds'])}</td></tr>")
    if rows:
        out.append("<h3>Attacks on language models</h3><table><tr><th>run</th><th>attack</th><th>quantity</th>"
                   "<th>value</th><th>budget</th><th>wall s</th></tr>" + "".join(rows) + "</table>")
    return "\n".join(out)
