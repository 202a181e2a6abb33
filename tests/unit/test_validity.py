"""benchmarks/validity.py: rank correlation and the pairs that disagree, on a hand-made leaderboard."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "validity.py"
spec = importlib.util.spec_from_file_location("validity", PATH)
validity = importlib.util.module_from_spec(spec)
spec.loader.exec_module(validity)  # type: ignore[union-attr]


def _row(label: str, asr: float, pre: float, efficacy: float) -> dict:
    return {"label": label, "method": label, "metrics": {"efficacy": {"value": efficacy}},
            "attacks": {"discrete": {"asr": asr, "pre_asr": pre}}}


def test_spearman_and_ties():
    assert validity.spearman([1, 2, 3], [10, 20, 30]) == pytest.approx(1.0)
    assert validity.spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert validity.spearman([1, 2, 3], [5, 5, 5]) is None  # a constant side has no ranking
    assert validity.spearman([1], [1]) is None


def test_disagreements_name_the_pairs():
    out = validity.disagreements(["A", "B", "C"], [1.0, 2.0, 3.0], [0.1, 0.3, 0.3])
    assert [d["pair"] for d in out] == [["B", "C"]] and out[0]["testbed_tie"]
    assert validity.disagreements(["A", "B"], [1.0, 2.0], [2.0, 1.0])[0]["testbed_tie"] is False


def test_study_per_concept_and_mean():
    board = {"concepts": {
        "skull": [_row("baseline", 1, 1, 0), _row("esd-x", 0.75, 0.2, 0.9), _row("uce", 0.8, 0.25, 0.95),
                  _row("rece", 0.7, 0.1, 0.9), _row("sld", 0.9, 0.4, 0.5)],
        "logo": [_row("esd-x", 0.5, 0.1, 0.9), _row("uce", 0.4, 0.3, 0.95), _row("rece", 0.6, 0.2, 0.9)]}}
    results = validity.study(board)
    nudity_post = {r["testbed_concept"]: r for r in results
                   if r["concept"] == "nudity" and r["what"] == "ASR after the attack"}
    assert set(nudity_post) == {"skull", "logo", "mean"}
    skull = nudity_post["skull"]
    assert skull["methods"] == ["ESD", "UCE", "RECE", "SLD"] and skull["rho"] == pytest.approx(1.0)
    assert skull["disagree"] == []
    assert nudity_post["logo"]["methods"] == ["ESD", "UCE", "RECE"]  # SLD not run on logo
    assert nudity_post["mean"]["methods"] == ["ESD", "UCE", "RECE"]  # the mean needs every concept
    assert nudity_post["mean"]["testbed_values"] == [62.5, 60.0, 65.0]
    assert "| UnlearnDiffAtk nudity: ASR after the attack | skull |" in validity.markdown(results)
