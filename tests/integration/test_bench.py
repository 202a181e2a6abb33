"""``erasekit bench`` on Ray: the smoke spec end to end, with a worker killed mid-cell."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from erasekit.bench.cells import plan
from erasekit.bench.lm_cells import plan_lm
from erasekit.bench.spec import load_spec

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "benchmarks" / "specs" / "smoke.yaml"
TABLES = ("bench_cells", "runs", "samples", "metric_values", "sample_values", "attack_runs", "attack_samples")


def _counts(db: Path) -> dict[str, int]:
    with sqlite3.connect(db) as c:
        return {t: c.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in TABLES}


def test_smoke_bench_survives_a_killed_worker_and_a_rerun_computes_nothing(tmp_path, tiny_lms):
    db = tmp_path / "bench.db"
    # the LM section's "tiny" models: the session's (the same recipe), where the runner caches them
    cache = tmp_path / "bench-images" / "lm-models" / "tinytofu-s0"
    cache.mkdir(parents=True)
    shutil.copytree(tiny_lms[2] / "full", cache / "full")
    shutil.copytree(tiny_lms[2] / "oracle", cache / "oracle")
    cmd = [sys.executable, "-m", "erasekit.cli", "bench", str(SMOKE), "--workers", "2", "--db", str(db)]
    env = {**os.environ, "ERASEKIT_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    cells = tmp_path / "bench-images" / "cells"
    killed = None
    deadline = time.time() + 600
    while killed is None and proc.poll() is None and time.time() < deadline:
        for pid_file in cells.glob("*/worker.pid"):
            os.kill(int(pid_file.read_text()), signal.SIGKILL)  # the worker, in the middle of its cell
            killed = pid_file.parent
            break
        time.sleep(0.1)
    out, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err[-2000:]
    assert killed is not None, "no cell started"
    starts = [line for line in (killed / "cell.log").read_text().splitlines() if " start " in line]
    assert len(starts) == 2 and starts[0].split("[pid")[1] != starts[1].split("[pid")[1]  # retried elsewhere

    spec = load_spec(SMOKE)
    expected = {c.cell_id for cells in (*plan(spec), *plan_lm(spec)) for c in cells}
    assert len(expected) == 6  # 3 diffusion cells (baseline, uce, esd-x), 3 language-model cells
    with sqlite3.connect(db) as c:
        stored = [r[0] for r in c.execute("SELECT cell_id FROM bench_cells")]
        names = [r[0] for r in c.execute("SELECT name FROM runs")]
        attack_ids = [r[0] for r in c.execute("SELECT attack_ids FROM bench_cells")]
        attacks = [r[0] for r in c.execute("SELECT attack_id FROM attack_runs")]
        states = {r[0] for r in c.execute("SELECT state FROM runs")}
    assert sorted(stored) == sorted(expected)  # every cell exactly once
    assert len(names) == len(set(names))
    assert {"baseline/skull/s0", "uce/skull/s0", "esd-x/skull/s0", "baseline/tinytofu/s0", "npo/tinytofu/s0",
            "leace/tinytofu/s0"} <= set(names)
    assert states == {"complete"}
    listed = [a for ids in attack_ids for a in __import__("json").loads(ids)]
    assert sorted(listed) == sorted(attacks) and len(attacks) == 2 * 2 + 2 * 2  # (2 methods x 2 attacks) x 2
    assert "uce" in out and "worst ASR" in out and "tinytofu:" in out and "recovered" in out
    with sqlite3.connect(db) as c:
        sessions = c.execute("SELECT computed, finished FROM bench_sessions").fetchall()
    assert sessions == [(6, 1)]

    before = _counts(db)
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "0 to compute" in again.stdout and "computed 0 of 6 cells" in again.stdout
    assert _counts(db) == before

    # another spec with the same UCE cell under another label reuses it: nothing computed, and its
    # leaderboard shows the cell under its own label
    import yaml

    raw = yaml.safe_load(SMOKE.read_text())
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump({**raw, "name": "other", "methods": [{"label": "uce-again", "method": "uce"}]}))
    third = subprocess.run([*cmd[:4], str(other), *cmd[5:], "--json"], env=env, capture_output=True, text=True,
                           timeout=300)
    assert third.returncode == 0, third.stderr[-2000:]
    result = __import__("json").loads(third.stdout)
    assert result["summary"]["computed"] == 0 and result["summary"]["cells"] == 5
    assert [r["label"] for r in result["leaderboard"]["concepts"]["skull"]] == ["baseline", "uce-again"]
    tiny = result["leaderboard"]["tasks"]["tinytofu"]
    assert [r["label"] for r in tiny] == ["baseline", "leace", "npo"]
    for r in tiny[1:]:  # each attack's recovered forget accuracy, and the worst of them
        assert set(r["attacks"]) == {"paraphrase", "relearn"} and 0 <= r["worst_attack"]["recovered"] <= 1
        assert r["worst_attack"]["recovered"] == max(a["recovered"] for a in r["attacks"].values())
        assert r["metrics"]["forget_acc"]["value"] <= tiny[0]["metrics"]["forget_acc"]["value"]
    assert _counts(db)["bench_cells"] == before["bench_cells"]

    # the validity study reads the same leaderboard: UnlearnCanvas's and I2P's ESD/UCE orderings against the testbed's
    study = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "validity.py"), "--db", str(db), "--bench",
                            "smoke", "--json"], env=env, capture_output=True, text=True, timeout=300)
    assert study.returncode == 0, study.stderr[-2000:]
    compared = __import__("json").loads(study.stdout)
    assert {r["what"] for r in compared} == {"UA", "IRA", "CRA", "exposed parts (total)"} and all(r["methods"] == ["ESD", "UCE"] for r in compared)

    # the leaderboard in the report, in headless Chromium: every method, the Pareto plot, sorting
    from browser import load_page

    report = tmp_path / "report.html"
    assert subprocess.run([sys.executable, "-m", "erasekit.cli", "report", "--db", str(db), "-o", str(report)],
                          env=env, capture_output=True, timeout=300).returncode == 0
    page = load_page(report.as_uri(), tmp_path / "shot.png", script=SORT_SCRIPT)
    assert [e for e in page["logs"] if e["level"] in ("SEVERE", "WARNING")] == []
    got = page["script"]
    assert got["before"][0] == "baseline" and set(got["before"]) == {"baseline", "uce", "esd-x"}
    assert got["asc"][0] == got["desc"][0] == "baseline" and got["asc"][1:] == got["desc"][1:][::-1]
    assert got["svg"] == 1 and got["points"] >= 2 and got["benches"] == 2  # smoke and other
    assert "worst-case ASR" in got["heads"] and "paraphrase ASR" in got["heads"]
    assert got["lm"] == ["baseline", "leace", "npo"]


SORT_SCRIPT = """
var section = document.querySelector('section.bench[data-bench="smoke"]');
var t = section.querySelector("table.sortable");
var names = function () { return Array.from(t.tBodies[0].rows).map(function (r) { return r.cells[0].textContent; }); };
var before = names();
var head = t.querySelectorAll("th")[0];
head.click(); var desc = names();
head.click(); var asc = names();
return {before: before, desc: desc, asc: asc, svg: section.querySelectorAll(".pareto svg").length,
        benches: document.querySelectorAll("section.bench").length,
        points: section.querySelectorAll(".pareto svg path, .pareto svg use").length,
        heads: Array.from(t.querySelectorAll("th")).map(function (h) { return h.textContent; }),
        lm: Array.from(section.querySelector('table[data-task="tinytofu"]').tBodies[0].rows).map(
            function (r) { return r.cells[0].textContent; })};
"""


def test_gpu_check_runs_its_steps_on_a_toy_pipeline():
    """benchmarks/gpu_check.py is meant for a GPU machine; its --tiny CPU path keeps it runnable."""
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--tiny", "--device", "cpu",
                           "--skip-bench", "--esd-iterations", "2"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "UCE fit" in done.stdout and "ESD-x fit" in done.stdout and "every step ran" in done.stdout
