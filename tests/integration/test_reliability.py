"""The error contract, class by class: bad input is one line and exit 2 with nothing written;
a broken run is never stored; concurrent evaluations share one database; the report reads only
its own images; a bug is one line and exit 1 (the traceback with --debug)."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from erasekit.cli import main
from erasekit.concepts import get_concept
from erasekit.erasure import get_method, make_config
from erasekit.errors import InvalidResult, UserError
from erasekit.evaluation import EvalConfig, evaluate
from erasekit.sampling import checked_images
from erasekit.store import Store

TINY = ["--prompts", "1", "--seeds", "0", "--steps", "2"]


def _one_line(argv, capsys, needle, code=2):
    """Exit ``code``; the error is one line, the last on stderr (after any progress bar)."""
    assert main(argv) == code
    lines = capsys.readouterr().err.strip("\n").splitlines()
    errors = [line for line in lines if line.startswith("erasekit:")]
    assert len(errors) == 1 and errors[0] == lines[-1] and needle in errors[0], lines
    return errors[0]


@pytest.fixture(scope="module")
def uce(tmp_path_factory, shipped_testbed):
    folder = tmp_path_factory.mktemp("rel") / "heart-uce"
    get_method("uce").fit(shipped_testbed, get_concept("heart"), make_config("uce"), progress=False).save(folder)
    return folder


# -- concept files -------------------------------------------------------------------------------
@pytest.mark.parametrize("text, needle", [
    ("name: [unclosed", "is not valid YAML"),
    ("!!python/object/apply:os.system ['echo hi']", "is not valid YAML"),
    ("name: cat\ntarget: 5\n", "target must be a list of texts, got 5"),
    ("name: 123\ntarget: [cat]\n", "concept name must be text, got 123"),
    ("name: cat\ntarget: [cat]\ntemplates: [null]\n", "templates must be a list of texts"),
    ("- just\n- a list\n", "must hold a mapping"),
])
def test_bad_concept_files(text, needle, tmp_path, capsys):
    (tmp_path / "c.yaml").write_text(text)
    out = tmp_path / "out"
    _one_line(["erase", "--concept", str(tmp_path / "c.yaml"), "--method", "uce", "--out", str(out)], capsys, needle)
    assert not out.exists()


def test_concept_path_that_is_a_folder_or_not_text(tmp_path, capsys):
    (tmp_path / "dir.yaml").mkdir()
    _one_line(["erase", "--concept", str(tmp_path / "dir.yaml"), "--method", "uce", "--out", str(tmp_path / "o")],
              capsys, "cannot read concept file")
    (tmp_path / "bin.json").write_bytes(b"\xff\xfe\x00garbage")
    _one_line(["erase", "--concept", str(tmp_path / "bin.json"), "--method", "uce", "--out", str(tmp_path / "o")],
              capsys, "bin.json")
    assert not (tmp_path / "o").exists()


# -- numbers ------------------------------------------------------------------------------------
@pytest.mark.parametrize("method, setting, needle", [
    ("uce", "lamb=Infinity", "lamb: must be a finite number"),
    ("uce", "erase_scale=1e308", "erase_scale: must be within"),
    ("esd", "lr=NaN", "lr: must be a finite number"),
    ("esd", "iterations=99999999999", "iterations: must be within"),
])
def test_non_finite_or_huge_config_values(method, setting, needle, tmp_path, capsys):
    _one_line(["erase", "--concept", "heart", "--method", method, "--set", setting, "--out", str(tmp_path / "o")],
              capsys, needle)
    assert not (tmp_path / "o").exists()


def test_a_diverging_fit_is_refused_and_nothing_is_written(tmp_path, capsys):
    """ESD with an absurd (finite) learning rate blows its weights up to NaN in three steps."""
    out = tmp_path / "o"
    _one_line(["erase", "--concept", "heart", "--method", "esd", "--set", "iterations=3", "--set", "lr=1000000",
               "--out", str(out)], capsys, "non-finite values")
    assert not out.exists() and not list(tmp_path.iterdir())


@pytest.mark.parametrize("argv, needle", [
    (["eval", "--baseline", "--concept", "heart", "--guidance", "inf"], "--guidance: must be a finite number"),
    (["generate", "a red heart", "--guidance", "nan"], "--guidance: must be a finite number"),
    (["eval", "--baseline", "--concept", "heart", "--seeds", str(2**70)], "--seeds: must be an integer from 0"),
    (["attack", "--baseline", "--concept", "heart", "--attack", "paraphrase", "--seed", "-1"], "--seed: must be"),
])
def test_bad_numbers_on_the_command_line(argv, needle, tmp_path, capsys):
    db = tmp_path / "e.db"
    _one_line([*argv, *(["--db", str(db)] if argv[0] != "generate" else ["-o", str(tmp_path / "g.png")])],
              capsys, needle)
    assert not list(tmp_path.iterdir())


def test_library_configs_refuse_infinities():
    for bad in ({"guidance": float("inf")}, {"steps": 2**40}, {"seeds": (0, -1)}):
        with pytest.raises(UserError):
            EvalConfig(**bad)


# -- artifacts ------------------------------------------------------------------------------------
def _copy_artifact(src: Path, dst: Path, edit) -> Path:
    dst.mkdir()
    raw = json.loads((src / "config.json").read_text())
    edit(raw)
    (dst / "config.json").write_text(json.dumps(raw))
    (dst / "weights.safetensors").write_bytes((src / "weights.safetensors").read_bytes())
    return dst


def test_artifact_without_fingerprint_is_corrupt(uce, tmp_path, capsys):
    bad = _copy_artifact(uce, tmp_path / "bad", lambda raw: raw.pop("base_fingerprint"))
    _one_line(["eval", str(bad), "--db", str(tmp_path / "e.db"), *TINY], capsys, "missing key 'base_fingerprint'")
    assert not (tmp_path / "e.db").exists()


def test_artifact_checked_against_the_pipeline_before_any_work(uce, tmp_path, capsys):
    """An unknown parameter or a shape that does not fit fails before the baseline is evaluated."""
    import safetensors.torch as st

    bad = tmp_path / "renamed"
    bad.mkdir()
    tensors = st.load_file(str(uce / "weights.safetensors"))
    renamed = {k.replace("unet.", "unet.no_such_block.", 1): v for k, v in tensors.items()}
    st.save_file(renamed, str(bad / "weights.safetensors"))
    raw = json.loads((uce / "config.json").read_text())
    raw["tensors"] = sorted(renamed)
    (bad / "config.json").write_text(json.dumps(raw))
    db = tmp_path / "e.db"
    _one_line(["eval", str(bad), "--db", str(db), *TINY], capsys, "names no parameter")
    assert not db.exists()  # no baseline run, no empty database
    reshaped = tmp_path / "reshaped"
    reshaped.mkdir()
    st.save_file({k: v[:, :-1].contiguous() for k, v in tensors.items()}, str(reshaped / "weights.safetensors"))
    (reshaped / "config.json").write_text((uce / "config.json").read_text())
    _one_line(["eval", str(reshaped), "--db", str(db), *TINY], capsys, "another architecture")
    assert not db.exists()


def test_fingerprint_mismatch_hint_names_the_right_flag(uce, tmp_path, capsys):
    other = _copy_artifact(uce, tmp_path / "other", lambda raw: raw.update(base_fingerprint="0" * 16))
    err = _one_line(["eval", str(other), "--db", str(tmp_path / "e.db"), *TINY], capsys, "fitted on base weights")
    assert "--force" not in err and "force=True" not in err  # eval's --force means "recompute"
    err = _one_line(["generate", "a red heart", "-n", "1", "--steps", "1", "--erasure", str(other), "-o",
                     str(tmp_path / "g.png")], capsys, "fitted on base weights")
    assert "--force" in err


# -- broken generations are never stored ---------------------------------------------------------
def test_non_finite_or_flat_images_are_refused():
    ok = np.random.default_rng(0).random((2, 8, 8, 3))
    assert checked_images(ok, [(0, 0, "a"), (0, 1, "b")]).dtype == np.uint8
    for bad in (np.full((8, 8, 3), np.nan), np.zeros((8, 8, 3))):
        with pytest.raises(InvalidResult, match="seed 0 prompt 1"):
            checked_images(np.stack([ok[0], bad]), [(0, 0, "a"), (0, 1, "b")])


def test_an_evaluation_of_a_broken_model_stores_nothing(random_testbed, tmp_path):
    """NaN weights (as a diverged fit would leave them) make NaN images: the run fails and leaves no row."""
    pipe = copy.deepcopy(random_testbed)
    with torch.no_grad():
        pipe.unet.conv_out.weight.fill_(float("nan"))
    store = Store(tmp_path / "e.db")
    with pytest.raises(InvalidResult, match="generation is broken"):
        evaluate(store, pipe, None, get_concept("heart"), EvalConfig(n_prompts=1, seeds=(0,), steps=2),
                 progress=False)
    assert store.runs() == [] and store.count("samples") == 0
    assert not list(store.image_root.glob("*/*.png"))


def test_a_failing_command_leaves_no_empty_database(tmp_path, capsys):
    db = tmp_path / "e.db"
    _one_line(["eval", "--baseline", "--concept", "heart", "--db", str(db), "--weights", str(tmp_path / "none")],
              capsys, "weights folder")
    assert not db.exists() and list(tmp_path.iterdir()) == []


# -- concurrency -----------------------------------------------------------------------------------
def test_two_concurrent_evaluations_share_one_database(uce, shipped_testbed, tmp_path):
    """Two processes evaluate two artifacts of one concept into one database at the same time: the
    shared baseline is computed once (the second waits on its lock and reuses it), both complete."""
    neg = tmp_path / "heart-neg"
    get_method("negative_prompt").fit(shipped_testbed, get_concept("heart"), make_config("negative_prompt"),
                                      progress=False).save(neg)
    db = tmp_path / "shared.db"
    env = {**os.environ, "ERASEKIT_THREADS": "1"}
    cmd = [sys.executable, "-m", "erasekit", "eval", "--db", str(db), "--prompts", "2", "--seeds", "0,1", "--steps",
           "4", "--metrics", "efficacy,ira"]
    procs = [subprocess.Popen([*cmd, str(run)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for run in (uce, neg)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    store = Store(db)
    runs = store.runs()
    assert sorted(r["kind"] for r in runs) == ["baseline", "erasure", "erasure"]
    assert all(r["state"] == "complete" for r in runs)
    per_run = {r["run_id"]: store.count("samples", r["run_id"]) for r in runs}
    assert len(set(per_run.values())) == 1 and next(iter(per_run.values())) > 0
    assert store.conn.execute("SELECT COUNT(*) FROM (SELECT run_id, prompt_index, seed FROM samples "
                              "GROUP BY 1, 2, 3 HAVING COUNT(*) > 1)").fetchone()[0] == 0
    assert store.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


# -- the report ----------------------------------------------------------------------------------
def test_report_reads_only_its_own_images(uce, shipped_testbed, tmp_path, capsys):
    db = tmp_path / "r.db"
    assert main(["eval", "--baseline", "--concept", "heart", "--db", str(db), *TINY, "--metrics", "efficacy"]) == 0
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"\x89PNG\r\n\x1a\nTOPSECRET")
    store = Store(db)
    (run,) = store.runs()
    store.conn.execute("UPDATE samples SET image_path = ? WHERE run_id = ? AND prompt_index = 0",
                       ("../secret.png", run["run_id"]))
    store.conn.execute("UPDATE samples SET image_path = ? WHERE run_id = ? AND prompt_index = 1",
                       ("/etc/passwd", run["run_id"]))
    capsys.readouterr()
    assert main(["report", "--db", str(db), "-o", str(tmp_path / "report.html")]) == 0
    html = (tmp_path / "report.html").read_text()
    import base64

    assert base64.b64encode(secret.read_bytes()).decode()[:16] not in html and "root:" not in html
    assert html.count('class="refused"') >= 1
    assert "outside the database's image folder" in capsys.readouterr().err


def test_report_leaves_running_runs_out(tmp_path):
    from erasekit.report import build_report

    store = Store(tmp_path / "r.db")
    store.add_run({"run_id": "half", "name": "half-done", "kind": "baseline", "method": None, "concept": "heart",
                   "artifact": None, "config": "{}", "seeds": "[0]", "versions": "{}", "git_hash": "x",
                   "created_at": "2026-01-01T00:00:00"})
    counts = build_report(store, tmp_path / "r.html")
    assert counts["runs"] == 0 and "half-done" not in (tmp_path / "r.html").read_text()


# -- bugs ------------------------------------------------------------------------------------------
def test_an_internal_error_is_one_line_exit_1_and_debug_shows_the_traceback(monkeypatch, capsys):
    import erasekit.cli.diffusion as D

    def broken(args):
        raise RuntimeError("something nobody expected\nsecond line")

    monkeypatch.setattr(D, "cmd_methods", broken)
    err = _one_line(["methods"], capsys, "internal error: RuntimeError: something nobody expected", code=1)
    assert "--debug" in err
    assert main(["--debug", "methods"]) == 1
    assert "Traceback" in capsys.readouterr().err


# -- paths -----------------------------------------------------------------------------------------
def test_unwritable_outputs_fail_before_any_work(tmp_path, capsys):
    """Permission bits do not stop root; the check creates a file for real (here in /proc)."""
    _one_line(["erase", "--concept", "heart", "--method", "uce", "--out", "/proc/erasekit-out"], capsys,
              "is not a writable folder")
    _one_line(["eval", "--baseline", "--concept", "heart", "--db", "/proc/erasekit.db", *TINY], capsys, "--db")


def test_lm_eval_with_a_bad_model_leaves_no_database(tmp_path, capsys):
    db = tmp_path / "lm.db"
    _one_line(["lm", "eval", "--model", str(tmp_path / "nope"), "--db", str(db)], capsys, "no language model here")
    _one_line(["lm", "erase", "--model", str(tmp_path / "nope"), "--method", "graddiff", "--set", "lr=Infinity",
               "--out", str(tmp_path / "o")], capsys, "lr: must be a finite number")
    assert list(tmp_path.iterdir()) == []
