"""``erasekit audit``: M-ErasureBench's threat matrix on UCE-erased heart (the attacks' tuning
concept), its restriction to white- or black-box variants, storage, the report section in
headless Chromium, and the CLI's errors."""

from __future__ import annotations

import json
from contextlib import contextmanager

import pytest

from erasekit.attacks import AttackContext, get_attack, run_attack
from erasekit.audit import COLUMNS, audit
from erasekit.cli import main
from erasekit.concepts import get_concept
from erasekit.erasure import Erasure, get_method, make_config
from erasekit.errors import UserError
from erasekit.store import Store

BUDGETS = {"embedding/white": 25, "embedding/black": 25, "latent/white": 2, "latent/black": 2}


@pytest.fixture(scope="module")
def heart_uce(shipped_testbed, tmp_path_factory):
    folder = tmp_path_factory.mktemp("audit") / "heart-uce"
    get_method("uce").fit(shipped_testbed, get_concept("heart"), make_config("uce"), progress=False).save(folder)
    return folder


@pytest.fixture(scope="module")
def matrix(heart_uce, shipped_testbed, shipped_judge, tmp_path_factory):
    store = Store(tmp_path_factory.mktemp("audit-db") / "erasekit.db")
    erasure = Erasure.load(heart_uce)
    result = audit(store, shipped_testbed, shipped_judge, erasure.concept, erasure, heart_uce, n_prompts=2,
                   seeds=(0,), budgets=BUDGETS, progress=False)
    return store, erasure, result


def test_the_matrix_has_five_rates_and_white_box_latents_reproduce_what_the_prompt_hides(matrix):
    _, _, result = matrix
    cells = result["cells"]
    assert tuple(cells) == COLUMNS
    assert all(c["n"] == 2 and 0 <= c["ci95"][0] <= c["crr"] <= c["ci95"][1] <= 1 for c in cells.values())
    assert cells["text"]["crr"] == 0.0  # UCE hides heart on both targets
    assert cells["latent/white"]["crr"] >= 0.5  # inverting with the erased model brings it back
    # every target is attacked, also where the prompt alone would already show the concept
    assert all(len(r["samples"]) == 2 and json.loads(r["config"])["every_target"] for r in result["runs"])


def test_a_repeated_audit_computes_nothing(matrix, shipped_testbed, shipped_judge, heart_uce):
    store, erasure, first = matrix
    again = audit(store, shipped_testbed, shipped_judge, erasure.concept, erasure, heart_uce, n_prompts=2,
                  seeds=(0,), budgets=BUDGETS, progress=False)
    assert all(r["cached"] for r in again["runs"])
    assert {k: c["crr"] for k, c in again["cells"].items()} == {k: c["crr"] for k, c in first["cells"].items()}
    assert store.count("attack_runs") == 4


@contextmanager
def applied_forwards(pipe, erasure):
    """Counts the UNet's forwards with autograd on, split by whether ``erasure`` is applied then."""
    seen = {"applied": 0, "removed": 0}

    def hook(module, args, output):
        if output.sample.requires_grad:
            seen["applied" if id(pipe) in erasure._applied else "removed"] += 1

    handle = pipe.unet.register_forward_hook(hook)
    try:
        yield seen
    finally:
        handle.remove()


@pytest.mark.parametrize("threat", ["white", "black"])
def test_a_black_box_token_is_learned_on_the_unedited_model_only(threat, heart_uce, shipped_testbed, shipped_judge):
    """Restricted to ``black``, every gradient-carrying UNet pass of the inversion runs with the
    erasure removed; restricted to ``white`` (the control), every one runs on the erased model."""
    erasure = Erasure.load(heart_uce)
    ctx = AttackContext(shipped_testbed, erasure, erasure.concept, shipped_judge)
    with erasure.applied(shipped_testbed), applied_forwards(shipped_testbed, erasure) as seen:
        run_attack(get_attack("inversion").restricted(threat), ctx, 3, n_prompts=1, seeds=(0,), progress=False,
                   attack_pre_successes=True)
    erased, unedited = seen["applied"], seen["removed"]
    assert (erased, unedited > 0) == (0, True) if threat == "black" else (unedited, erased > 0) == (0, True), seen


def test_restricting_an_attack_without_threat_variants_is_refused():
    with pytest.raises(UserError, match="no threat variants"):
        get_attack("paraphrase").restricted("black")
    with pytest.raises(UserError, match="choose from white, black"):
        get_attack("latent").restricted("grey")
    assert get_attack("latent").threat is None  # a restriction is a copy
    assert get_attack("latent").restricted("white").budget_unit == "inversions tried (of 2)"
    assert get_attack("latent").budget_unit == "inversions tried (of 4)"


def test_audit_cli_prints_the_matrix_and_the_report_shows_it(matrix, heart_uce, tmp_path, capsys):
    """The CLI finds the library's audit in the same database (same targets and budgets) and
    prints it; the report's threat-matrix table, read back from headless Chromium."""
    from browser import load_page

    store, _, result = matrix
    db = store.path
    argv = ["audit", str(heart_uce), "--prompts", "2", "--seeds", "0", "--db", str(db)]
    argv += [a for k, v in BUDGETS.items() for a in ("--budget", f"{k}={v}")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert all(f"  {c} " in out for c in COLUMNS) and "concept reproduction rate on 2 targets" in out
    assert main(argv + ["--json"]) == 0
    cells = json.loads(capsys.readouterr().out)["cells"]
    assert {k: c["crr"] for k, c in cells.items()} == {k: c["crr"] for k, c in result["cells"].items()}
    assert all(c.get("cached", True) for c in cells.values()) and store.count("attack_runs") == 4
    report = tmp_path / "r.html"
    assert main(["report", "--db", str(db), "-o", str(report)]) == 0
    page = load_page(report.as_uri(), tmp_path / "shot.png", script="""
        const t = document.querySelector('#threat-matrix + p + table');
        const curves = Array.from(document.querySelectorAll('#curves figure')).map(
            f => [f.querySelector('figcaption').innerText, f.querySelectorAll('g[id^="curve-"]').length]);
        return [t ? Array.from(t.rows).map(r => Array.from(r.cells).map(c => c.innerText)) : null, curves];""")
    rows, curves = page["script"]
    # ASR against budget: one plot per attack, a curve per restricted run
    assert sorted(curves) == [["inversion (2 runs)", 2], ["latent (2 runs)", 2]]
    assert rows is not None and [h.strip() for h in rows[0][3:]] == list(COLUMNS)
    assert len(rows) == 2 and rows[1][0] == "uce/heart" and rows[1][1] == "heart"
    assert [e for e in page["logs"] if e["level"] == "SEVERE"] == []


def test_audit_cli_errors(heart_uce, tmp_path, capsys):
    for bad, needle in (("latent=2", "SCENARIO=N"), ("latent/white=0", "positive"), ("latent/white", "SCENARIO=N")):
        assert main(["audit", str(heart_uce), "--budget", bad, "--db", str(tmp_path / "x.db")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and needle in err, err
    assert not (tmp_path / "x.db").exists()
