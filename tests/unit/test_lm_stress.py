"""PSG's surrogate candidates and the worst-case selection's config (no model needed)."""

from __future__ import annotations

import pytest

from erasekit.errors import UserError
from erasekit.lm import data
from erasekit.lm.attacks import psg
from erasekit.lm.worstcase import LMWorstCaseConfig, random_authors


def test_psg_candidates_are_new_questions_in_the_benchmark_vocabulary() -> None:
    bench = data.generate(0)
    forget = bench.questions("forget", ("t0",))
    cands = psg.candidates(bench, forget)
    assert len(cands) == len(psg.KINDS) * len(forget)
    assert not {q.question for q in cands} & {q.question for q in forget}
    assert [(q.entity, q.attribute, q.answer) for q in cands[: len(forget)]] == \
        [(q.entity, q.attribute, q.answer) for q in forget]  # same facts, other questions
    vocab = data.build_tokenizer(bench).get_vocab()
    assert all(w in vocab for q in cands for w in q.question.split())  # the word-level model reads them
    assert len(psg.candidates(bench, forget, 2)) == 2 * len(forget)


def test_worst_case_config_and_random_sets() -> None:
    with pytest.raises(UserError, match="method"):
        LMWorstCaseConfig(method="rmu")
    with pytest.raises(UserError, match="gamma"):
        LMWorstCaseConfig(w_lr=1.0, gamma=0.5)
    with pytest.raises(UserError, match="size"):
        LMWorstCaseConfig(size=13).k(12)
    a, b = random_authors(0, 4, 0), random_authors(0, 4, 0)
    assert a == b and len(set(a)) == 4 and a != random_authors(0, 4, 1)
    assert set(a) <= {e.name for e in data.generate(0).entities_in("forget")}
