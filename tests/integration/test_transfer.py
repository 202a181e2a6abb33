"""``erasekit transfer``: inputs found against UCE- and RECE-erased heart (the attacks' tuning
concept) replayed on each other; a replay on the model an input was found on gives the attack's own
image back, cells are stored once, the report's matrix read back from headless Chromium, and the
CLI's errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from erasekit.attacks import AttackContext, get_attack
from erasekit.cli import main
from erasekit.concepts import get_concept
from erasekit.erasure import Erasure, get_method, make_config
from erasekit.errors import UserError
from erasekit.redteam import attack
from erasekit.store import Store
from erasekit.transfer import found_inputs, models, transfer

# the module's tests share one store and build on each other's cells: one xdist worker, in file order
pytestmark = pytest.mark.xdist_group("transfer")

ATTACKS = {"embedding": 10, "latent": 1}


@pytest.fixture(scope="module")
def attacked(shipped_testbed, shipped_judge, tmp_path_factory):
    """Two erasures of heart, each attacked by ``embedding`` and ``latent`` (2 targets)."""
    root = tmp_path_factory.mktemp("transfer")
    heart = get_concept("heart")
    store = Store(root / "erasekit.db")
    for method in ("uce", "rece"):
        folder = root / f"heart-{method}"
        get_method(method).fit(shipped_testbed, heart, make_config(method), progress=False).save(folder)
        for name, budget in ATTACKS.items():
            attack(store, shipped_testbed, shipped_judge, heart, name, budget, Erasure.load(folder), folder,
                   n_prompts=2, seeds=(0,), progress=False, every_target=True)
    return store, root


@pytest.fixture(scope="module")
def matrix(attacked, shipped_testbed, shipped_judge):
    store, _ = attacked
    return transfer(store, shipped_testbed, shipped_judge, get_concept("heart"), progress=False)


def test_replaying_an_input_on_its_own_model_gives_the_attacks_image_back(attacked, shipped_testbed, shipped_judge):
    store, _ = attacked
    heart = get_concept("heart")
    checked = 0
    for run in store.attack_runs():
        erasure = Erasure.load(run["artifact"])
        ctx = AttackContext(shipped_testbed, erasure, heart, shipped_judge)
        stored = {s["target_index"]: s for s in store.attack_samples(run["attack_id"])}
        erasure.apply(shipped_testbed)
        try:
            for index, found in found_inputs(store, run, heart):
                image = get_attack(run["attack"]).replay(ctx, found)
                saved = np.asarray(Image.open(store.path.parent / stored[index]["image_path"]).convert("RGB"))
                assert np.array_equal(image, saved), (run["run_name"], run["attack"], index)
                checked += 1
        finally:
            erasure.remove(shipped_testbed)
    assert checked >= 4  # white-box embeddings and latents break UCE and RECE on heart


def test_the_matrix_has_every_source_and_model_and_a_unit_diagonal(matrix, attacked):
    store, _ = attacked
    assert matrix["computed"] == 8 and store.count("transfer_cells") == 8  # 4 source runs x 2 models
    names = [m.name for m in models(store, "heart")]
    assert sorted(names) == ["rece/heart", "uce/heart"]
    assert sorted(m["attack"] for m in matrix["matrices"]) == sorted(ATTACKS)
    for m in matrix["matrices"]:
        assert sorted(m["columns"]) == sorted(names) and len(m["rows"]) == 2
        for row in m["rows"]:
            own = row["cells"][row["source"]]
            assert own is not None and own["rate"] == 1.0 and own["n"] == row["found"] >= 1
            for cell in row["cells"].values():
                assert 0 <= cell["successes"] <= cell["n"] and cell["ci95"][0] <= cell["rate"] <= cell["ci95"][1]


def test_a_repeated_transfer_computes_nothing_and_a_model_filter_limits_the_columns(matrix, attacked, shipped_testbed,
                                                                                   shipped_judge):
    store, _ = attacked
    again = transfer(store, shipped_testbed, shipped_judge, get_concept("heart"), progress=False)
    assert again["computed"] == 0 and again["matrices"] == matrix["matrices"]
    forced = transfer(store, shipped_testbed, shipped_judge, get_concept("heart"), attacks=["latent"],
                      names=["uce/heart"], force=True, progress=False)
    assert forced["computed"] == 2 and store.count("transfer_cells") == 8
    with pytest.raises(UserError, match="finds no input to replay"):
        transfer(store, shipped_testbed, shipped_judge, get_concept("heart"), attacks=["finetune"], progress=False)
    with pytest.raises(UserError, match="choose from"):
        transfer(store, shipped_testbed, shipped_judge, get_concept("heart"), names=["esd/heart"], progress=False)


def test_transfer_cli_prints_the_matrices_and_the_report_shows_them(matrix, attacked, tmp_path, capsys):
    from browser import load_page

    store, root = attacked
    db = str(store.path)
    assert main(["transfer", "--concept", "heart", "--db", db]) == 0
    out = capsys.readouterr().out
    assert "0 cells computed" in out and out.count("found against") == 2
    assert main(["transfer", "--concept", "heart", "--db", db, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["matrices"] == matrix["matrices"]
    report = tmp_path / "r.html"
    assert main(["report", "--db", db, "-o", str(report)]) == 0
    page = load_page(report.as_uri(), tmp_path / "shot.png", script="""
        return Array.from(document.querySelectorAll('table.transfer')).map(
            t => Array.from(t.rows).map(r => Array.from(r.cells).map(c => c.innerText)));""")
    tables = page["script"]
    assert len(tables) == 2 and all(len(t) == 3 for t in tables)
    assert all(sorted(t[0][2:]) == ["rece/heart", "uce/heart"] for t in tables)
    assert [e for e in page["logs"] if e["level"] == "SEVERE"] == []


def test_transfer_cli_errors(attacked, tmp_path, capsys):
    store, _ = attacked
    for argv, needle in ((["--attacks", "finetune"], "finds no input"), (["--models", "x/heart"], "choose from"),
                         (["--concept", "nosuch"], "unknown concept")):
        assert main(["transfer", "--concept", "heart", "--db", str(store.path), *argv]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and needle in err, err
    assert main(["transfer", "--concept", "heart", "--db", str(tmp_path / "none.db")]) == 2
    assert "does not exist" in capsys.readouterr().err and not (tmp_path / "none.db").exists()
