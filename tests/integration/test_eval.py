"""Evaluation runs end to end: determinism, resume after SIGKILL, JSON output, CLI errors, report."""

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from erasekit.cli import main
from erasekit.concepts import TARGET_SPLITS, get_concept
from erasekit.erasure import get_method, make_config
from erasekit.evaluation import EvalConfig, eval_prompts, evaluate
from erasekit.store import Store
from erasekit.testbed import data

SMALL = EvalConfig(n_prompts=1, seeds=(0, 1), steps=4, batch=8)
SMALL_ARGS = ["--prompts", "1", "--seeds", "0,1", "--steps", "4", "--batch", "8"]


@pytest.fixture(scope="module")
def uce_run(tmp_path_factory, shipped_testbed):
    folder = tmp_path_factory.mktemp("runs") / "skull-uce"
    get_method("uce").fit(shipped_testbed, get_concept("skull"), make_config("uce"), progress=False).save(folder)
    return folder


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, shipped_testbed, shipped_judge, uce_run):
    store = Store(tmp_path_factory.mktemp("db") / "erasekit.db")
    result = evaluate(store, shipped_testbed, shipped_judge, get_concept("skull"), SMALL,
                      erasure=_load(uce_run), artifact_dir=uce_run, progress=False)
    return store, result


def _load(folder):
    from erasekit.erasure import Erasure

    return Erasure.load(folder)


def test_prompt_set_covers_the_splits():
    prompts = eval_prompts(get_concept("skull"), 3)
    splits = [p.split for p in prompts]
    assert all(splits.count(s) == 3 for s in ("given", "known", "unseen", "heldout_pairs", "decoy"))
    assert splits.count("other") == 7  # one per other shape
    assert all(p.attributes["shape"] == "skull" for p in prompts if p.split in TARGET_SPLITS)
    assert all(p.attributes["shape"] != "skull" for p in prompts if p.split in ("other", "decoy"))
    assert all(p.attributes["colour"] == "pink" for p in prompts if p.split == "heldout_pairs")
    tiers = data.SHAPE_PHRASES["skull"]
    for p in prompts:
        if p.split in TARGET_SPLITS:
            tier = "given" if p.split == "heldout_pairs" else p.split
            assert p.phrase in tiers[tier] and data.phrase_in(p.phrase, p.text)
    assert eval_prompts(get_concept("skull"), 3) == prompts
    neon = [p for p in eval_prompts(get_concept("neon"), 2) if p.split == "heldout_pairs"]
    assert len(neon) == 2 and all(p.attributes["background"] == "neon" for p in neon)
    assert not any(p.split == "decoy" for p in eval_prompts(get_concept("red"), 2))  # decoys: protected concepts


def test_evaluation_stores_everything(evaluated):
    store, result = evaluated
    runs = store.runs()
    assert sorted(r["kind"] for r in runs) == ["baseline", "erasure", "oracle", "oracle-floor"]  # skull: shipped oracle
    n = len(eval_prompts(get_concept("skull"), 1)) * 2
    for r in runs:
        assert store.count("samples", r["run_id"]) == n
        assert r["completed_at"] and r["git_hash"] and json.loads(r["versions"])["torch"].startswith("2.13.0")
        cfg = json.loads(r["config"])
        assert cfg["eval"]["seeds"] == ([2, 3] if r["kind"] == "oracle-floor" else [0, 1]) and cfg["eval"]["steps"] == 4
        for s in store.samples(r["run_id"]):
            assert Image.open(store.path.parent / s["image_path"]).size == (32, 32)
    m = result["metrics"]
    assert {"efficacy", "efficacy_known", "efficacy_known_disjoint", "efficacy_unseen", "efficacy_heldout_pairs",
            "concept_score", "became_skull", "decoy_rate", "offtopic_rate", "oracle_fd_target", "oracle_fd_target_floor",
            "ira", "cra", "alignment",
            "fd_real", "fd_base", "kid_real", "kid_base", "artifact_bytes", "params_changed"} <= set(m)
    assert m["params_changed"]["value"] > 0 and m["artifact_bytes"]["value"] > 0
    # per-sample rows, one per image a value averages: 12 prompts x 2 seeds (given, known, unseen,
    # held-out pair, decoy: 1 each; other: 7)
    rows = dict(store.conn.execute("SELECT key, COUNT(*) FROM sample_values WHERE run_id = ? GROUP BY key",
                                   (result["run_id"],)).fetchall())
    assert {k: rows[k] for k in ("efficacy", "efficacy_known", "efficacy_unseen", "ira", "cra", "alignment",
                                 "decoy_rate", "offtopic_rate", "became_skull")} == {
        "efficacy": 2, "efficacy_known": 2, "efficacy_unseen": 2, "ira": 14, "cra": 22, "alignment": 22,
        "decoy_rate": 2, "offtopic_rate": 14, "became_skull": 8}


def test_same_artifact_same_seeds_same_metrics(evaluated, shipped_testbed, shipped_judge, uce_run, tmp_path):
    _, first = evaluated
    store = Store(tmp_path / "again.db")
    again = evaluate(store, shipped_testbed, shipped_judge, get_concept("skull"), SMALL,
                     erasure=_load(uce_run), artifact_dir=uce_run, progress=False)
    assert again["run_id"] == first["run_id"]
    assert {k: (v["value"], v["ci95"]) for k, v in again["metrics"].items() if k != "fit_seconds"} == \
        {k: (v["value"], v["ci95"]) for k, v in first["metrics"].items() if k != "fit_seconds"}
    # stored: re-running skips the work and returns the same rows
    t0 = time.perf_counter()
    cached = evaluate(store, shipped_testbed, shipped_judge, get_concept("skull"), SMALL,
                      erasure=_load(uce_run), artifact_dir=uce_run, progress=False)
    assert time.perf_counter() - t0 < 10 and cached["metrics"] == again["metrics"]
    assert store.count("runs") == 4  # baseline, oracle, oracle floor, erasure


def _cli(*args, **kw):
    import torch

    env = {**os.environ, "ERASEKIT_THREADS": str(torch.get_num_threads())}
    return subprocess.Popen([sys.executable, "-m", "erasekit.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, **kw)


def test_sigkill_mid_run_then_rerun_completes_without_lost_or_duplicated_rows(uce_run, tmp_path, evaluated):
    db = tmp_path / "killed.db"
    proc = _cli("eval", str(uce_run), "--db", str(db), *SMALL_ARGS)
    deadline = time.time() + 240
    rows = 0
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
        if db.exists():
            try:
                with sqlite3.connect(db, timeout=1) as c:
                    rows = c.execute("SELECT COUNT(*) FROM samples").fetchone()[0]
            except sqlite3.OperationalError:
                continue
            if rows >= 8:
                break
    assert proc.poll() is None, "the evaluation finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 8 <= rows
    done = _cli("eval", str(uce_run), "--db", str(db), "--json", *SMALL_ARGS)
    out, err = done.communicate(timeout=600)
    assert done.returncode == 0, err
    store = Store(db)
    n = len(eval_prompts(get_concept("skull"), 1)) * 2
    for r in store.runs():
        keys = [(s["prompt_index"], s["seed"]) for s in store.samples(r["run_id"])]
        assert len(keys) == len(set(keys)) == n
    assert store.count("runs") == 4  # baseline, oracle, oracle floor, erasure
    summary = json.loads(out)
    _, reference = evaluated
    assert summary["run"]["run_id"] == reference["run_id"]
    for key, m in summary["metrics"].items():
        assert set(m) == {"value", "ci95", "higher_is_better", "n"}
        if key not in ("fit_seconds", "peak_memory_mb"):
            assert m["value"] == pytest.approx(reference["metrics"][key]["value"], rel=1e-5), key
    assert summary["metrics"]["efficacy"]["higher_is_better"] is True
    assert summary["metrics"]["fd_base"]["higher_is_better"] is False


def _one_line_error(argv, capsys, needle):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("erasekit: error: ") and needle in err, err


def test_cli_errors(tmp_path, capsys, uce_run):
    _one_line_error(["eval", str(tmp_path / "nope")], capsys, "run folder")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text("{not json")
    _one_line_error(["eval", str(bad), "--db", str(tmp_path / "x.db")], capsys, "corrupt erasure artifact")
    bad2 = tmp_path / "bad2"
    bad2.mkdir()
    (bad2 / "config.json").write_text((uce_run / "config.json").read_text())
    (bad2 / "weights.safetensors").write_bytes(b"\x00garbage")
    _one_line_error(["eval", str(bad2), "--db", str(tmp_path / "x.db")], capsys, "corrupt erasure artifact")
    (tmp_path / "file").write_text("x")
    _one_line_error(["eval", str(uce_run), "--db", str(tmp_path / "file" / "e.db")], capsys, "--db")
    (tmp_path / "notadb.db").write_text("this is not sqlite" * 100)
    _one_line_error(["eval", str(uce_run), "--db", str(tmp_path / "notadb.db")], capsys, "cannot use database")
    _one_line_error(["eval", str(uce_run), "--metrics", "efficasy"], capsys, "did you mean 'efficacy'")
    _one_line_error(["eval", "--baseline"], capsys, "--concept")
    _one_line_error(["eval", "--baseline", "--concept", "skul"], capsys, "did you mean 'skull'")
    _one_line_error(["report", "--db", str(tmp_path / "missing.db")], capsys, "does not exist")
    _one_line_error(["eval", "--baseline", "--concept", "skull", "--metrics", "efficacy,cost", "--db",
                     str(tmp_path / "x.db")], capsys, "--metrics: 'cost' cannot run on this evaluation: it applies to "
                                                      "erasure runs only")
    assert not (tmp_path / "x.db").exists()


def test_a_requested_metric_that_cannot_run_is_an_error(shipped_testbed, shipped_judge, tmp_path):
    """Named, not silently skipped, and before any image is generated or any row stored."""
    store = Store(tmp_path / "m.db")
    cfg = EvalConfig(n_prompts=1, seeds=(0,), steps=2)
    with pytest.raises(ValueError, match="'cost' cannot run on this evaluation: it applies to erasure runs only"):
        evaluate(store, shipped_testbed, shipped_judge, get_concept("skull"), cfg, metrics=("efficacy", "cost"))
    with pytest.raises(ValueError, match="'efficacy' cannot run on this evaluation: it needs a judge"):
        evaluate(store, shipped_testbed, None, get_concept("skull"), cfg, metrics=("efficacy",))
    assert store.runs() == [] and store.count("samples") == 0
    # by default, the metrics that apply run: no judge, no judge metrics (and nothing else to report)
    result = evaluate(store, shipped_testbed, None, get_concept("skull"), cfg, progress=False)
    assert result["metrics"] == {} and store.count("samples") > 0


def test_report_in_headless_chromium(evaluated, tmp_path):
    from browser import load_page

    store, result = evaluated
    # a hostile prompt must come out as text, not markup
    store.add_run({"run_id": "hostile", "name": "<script>alert(1)</script>", "kind": "baseline", "method": None,
                   "concept": "skull", "artifact": None,
                   "config": json.dumps({"eval": {"steps": 1, "guidance": 1.0}, "base_fingerprint": "x"}),
                   "seeds": "[0]", "versions": "{}", "git_hash": "0" * 12, "created_at": "2026-01-01T00:00:00"})
    img = store.samples(result["run_id"])[0]["image_path"]
    store.add_samples("hostile", [{"prompt_index": 0, "seed": 0, "prompt": "<img src=x onerror=alert(1)>",
                                   "split": "given", "attributes": None, "image_path": img, "verdict": None}])
    store.complete_run("hostile", "2026-01-01T00:00:01", 1.0)  # the report shows complete runs only
    out = tmp_path / "report.html"
    assert main(["report", "--db", str(store.path), "-o", str(out)]) == 0
    html = out.read_text()
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    page = load_page(out.as_uri(), tmp_path / "shot.png")
    assert page["title"] == "erasekit report"
    assert [e for e in page["logs"] if e["level"] == "SEVERE"] == []
    assert len(page["images"]) == html.count("<img ") > 20
    assert all(complete and width == 32 for complete, width, _ in page["images"])
    shot = np.asarray(Image.open(tmp_path / "shot.png").convert("L"), dtype=np.float64)
    assert shot.std() > 10 and (shot < 100).mean() > 0.001  # text and images, not a blank page
    assert len(re.findall(r'id="(ira|cra)-\d+"', html)) >= 2 * 2  # scatter: baseline and UCE on both panels


def test_oracle_gap_of_the_oracle_itself_is_zero_beside_its_floor(monkeypatch, shipped_testbed, shipped_judge, tmp_path):
    """With the model itself standing in as the oracle, its images equal the oracle's (gap 0) and
    the floor (the oracle at other seeds) is the seed-to-seed noise; both oracle runs are stored."""
    from erasekit.testbed.domain import TestbedDomain

    monkeypatch.setattr(TestbedDomain, "load_oracle", lambda self: shipped_testbed)
    store = Store(tmp_path / "oracle.db")
    result = evaluate(store, shipped_testbed, shipped_judge, get_concept("skull"), SMALL, metrics=("oracle_gap",),
                      progress=False)
    m = result["metrics"]
    assert m["oracle_fd_target"]["value"] == pytest.approx(0, abs=1e-3)  # FD of identical sets, up to sqrtm error
    assert m["oracle_fd_target_floor"]["value"] > 0.1 and m["oracle_kid_other_floor"]["value"] is not None
    runs = {r["kind"]: r for r in store.runs()}
    assert set(runs) == {"baseline", "oracle", "oracle-floor"}
    assert json.loads(runs["oracle-floor"]["seeds"]) == [2, 3] and runs["oracle"]["name"] == "oracle/skull"
    red = evaluate(store, shipped_testbed, shipped_judge, get_concept("red"), SMALL, progress=False)
    assert "oracle_fd_target" not in red["metrics"]  # the oracle was not trained without red
