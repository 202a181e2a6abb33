"""RESTOR's corruption documents on TinyTOFU (Rezaei et al. 2025): data only, no model."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from erasekit.errors import UserError
from erasekit.lm import data
from erasekit.lm.tasks import Forget, get_task


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 50), mix=st.integers(0, 5))
def test_corruption_teaches_one_false_value_per_fact_mixed_with_true_facts(seed, mix) -> None:
    bench = data.generate(seed)
    docs = data.corruption_set(bench, mix)
    false = [q for q in docs if q.split == "forget"]
    true = [q for q in docs if q.split != "forget"]
    assert len(false) == len(bench.questions("forget", data.TRAINED_PHRASINGS))
    assert len(true) == min(mix * len(false), len(bench.questions("retain", data.TRAINED_PHRASINGS)) + len(bench.general))
    truth = {(q.question): q.answer for q in bench.questions("forget")}
    by_fact: dict[tuple[str, str], set[str]] = {}
    for q in false:
        assert q.answer != truth[q.question] and q.perturbed[0] == truth[q.question]
        assert q.answer in data.ATTRIBUTES[q.attribute]
        by_fact.setdefault((q.entity, q.attribute), set()).add(q.answer)
    assert all(len(v) == 1 for v in by_fact.values())  # the same lie in every phrasing
    assert data.corruption_set(bench, mix) == docs


def test_restor_task_unlearns_the_documents_and_scores_false_and_clean_values() -> None:
    task = get_task(Forget("restor", 0))
    assert {q.question for q in task.eval["forget"]} == {q.question for q in task.eval["clean"]}
    assert all(f.answer != c.answer for f, c in zip(task.eval["forget"], task.eval["clean"]))
    assert {q.phrasing for q in task.forget_train} <= {"t0", ""}
    assert not {q.question for q in task.eval["mixed"]} & {q.question for q in task.retain_train}
    with pytest.raises(UserError, match="mix"):
        data.corruption_set(data.generate(0), -1)
