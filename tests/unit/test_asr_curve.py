"""ASR against budget, from each target's success and the budget it spent."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from erasekit.attacks.base import asr_curve

OUTCOMES = st.integers(1, 60).flatmap(lambda budget: st.tuples(
    st.just(budget), st.lists(st.tuples(st.booleans(), st.integers(0, budget)), min_size=1, max_size=40)))


@settings(deadline=None, max_examples=200)
@given(OUTCOMES)
def test_the_curve_rises_from_the_free_successes_to_the_run_asr(case):
    budget, outcomes = case
    curve = asr_curve(outcomes, budget)
    xs, ys = zip(*curve)
    assert xs[0] == 0 and xs[-1] == budget and list(xs) == sorted(set(xs))
    assert all(a <= b for a, b in zip(ys, ys[1:]))
    assert ys[-1] == sum(ok for ok, _ in outcomes) / len(outcomes)
    assert ys[0] == sum(ok and s == 0 for ok, s in outcomes) / len(outcomes)
    for b in range(budget + 1):  # the step function at b: the targets that had succeeded by then
        at = max(y for x, y in curve if x <= b)
        assert at == sum(ok and s <= b for ok, s in outcomes) / len(outcomes)


def test_examples_and_unknown_spending():
    assert asr_curve([(True, 0), (True, 5), (False, 10), (True, 5)], 10) == [(0, 0.25), (5, 0.75), (10, 0.75)]
    assert asr_curve([(False, 3)], 3) == [(0, 0.0), (3, 0.0)]
    assert asr_curve([(True, 2), (False, None)], 4) == []  # rows stored before spending was recorded
