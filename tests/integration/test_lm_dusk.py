"""DUSK on the tiny Llama (Jeung et al., "DUSK: Do Not Unlearn Shared Knowledge", arXiv 2505.15209)."""

from __future__ import annotations

from erasekit.lm import evaluate as E
from erasekit.lm.methods.base import get_lm_method, make_lm_config
from erasekit.lm.metrics.base import compute_scores
from erasekit.lm.tasks import Forget, get_task

SPEC = Forget("dusk", 0)
METRICS = ("dusk", "mia")


def values(task, scores, oracle, base=None) -> dict[str, float]:
    return {k: v.value for m in E.metric_values(task, scores, oracle, base, METRICS).values() for k, v in m.items()}


def test_unlearning_a_style_removes_its_text_and_unique_facts_and_the_metric_sees_shared_damage(dusk_lms) -> None:
    """The target knows every fact and recites the forget documents; the oracle (retain documents
    only) knows the shared and retain-unique facts but not the forget-unique ones. GradDiff and
    GradAscent both take the forget documents' text and unique facts away; GradDiff keeps the
    shared facts, GradAscent (no retain term) loses them too, and the retain deviation shows it."""
    full, oracle = dusk_lms
    task = get_task(SPEC)
    base, ref = compute_scores(full, task), compute_scores(oracle, task)
    b, o = values(task, base, ref), values(task, ref, ref)
    assert b["dusk_verbatim"] >= 0.95 and min(b[k] for k in ("dusk_forget_unique_acc", "dusk_shared_acc",
                                                              "dusk_retain_unique_acc")) >= 0.95
    assert b["privleak"] > 20  # the target separates its forget documents from never-seen ones
    assert o["dusk_forget_unique_acc"] <= 0.15 and min(o["dusk_shared_acc"], o["dusk_retain_unique_acc"]) >= 0.95
    assert o["privleak"] == 0.0 and o["dusk_verbatim"] <= 0.5  # what the templates alone give
    after = {}
    for name in ("graddiff", "gradascent"):
        art = get_lm_method(name).fit(full, SPEC, make_lm_config(name), progress=False)
        with art.applied(full):
            after[name] = values(task, compute_scores(full, task), ref, base)
    for v in after.values():
        assert v["dusk_forget_unique_acc"] <= 0.15 and v["dusk_verbatim"] <= b["dusk_verbatim"] - 0.5
    gd, ga = after["graddiff"], after["gradascent"]
    assert gd["dusk_shared_acc"] >= 0.9 and gd["dusk_retain_unique_acc"] >= 0.8
    assert ga["dusk_shared_acc"] <= 0.5 and ga["dusk_retain_unique_acc"] <= 0.5
    assert ga["dusk_retain_dev_base"] > gd["dusk_retain_dev_base"]


def test_cli_trains_on_dusk_documents_and_erases_the_dusk_task(dusk_lms, tmp_path) -> None:
    import json

    from erasekit.cli import main
    from erasekit.lm import data, model as M
    from erasekit.lm.methods.base import LMErasure

    out = tmp_path / "dusk-oracle"
    assert main(["lm", "train", "--task", "dusk", "--oracle", "--steps", "1", "--out", str(out)]) == 0
    meta = json.loads((out / "erasekit.json").read_text())
    assert meta["task"] == "dusk" and meta["oracle"] and meta["steps"] == 1
    assert len(M.load(out).tokenizer) == len(data.build_tokenizer(data.generate_dusk(0)))
    full, _ = dusk_lms
    art = tmp_path / "art"
    assert main(["lm", "erase", "--model", full.name, "--task", "dusk", "--method", "gradascent", "--set", "steps=2",
                 "--out", str(art)]) == 0
    assert LMErasure.load(art).concept == SPEC
