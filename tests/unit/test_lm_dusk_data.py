"""DUSK's documents on TinyTOFU (Jeung et al. 2025, arXiv 2505.15209): data and scoring helpers, no model."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from erasekit.errors import UserError
from erasekit.lm import data, model as M
from erasekit.lm.metrics.base import rouge_l_recall
from erasekit.lm.tasks import Forget, get_task


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 1000), style=st.sampled_from(tuple(data.DUSK_STYLES)))
def test_documents_share_some_facts_and_keep_one_each(seed, style) -> None:
    bench = data.generate_dusk(seed, forget_style=style)
    assert bench == data.generate_dusk(seed, forget_style=style)  # seeded
    assert bench.authors != data.generate_dusk(seed + 1, forget_style=style).authors
    for a in bench.authors:
        docs = {s: set(bench.document(a, s, "").answer.split()) for s in data.DUSK_STYLES}
        for s, (attr, pool) in data.DUSK_UNIQUE.items():
            assert a.facts[attr] in pool and a.facts[attr] in docs[s]
            assert all(a.facts[attr] not in words for t, words in docs.items() if t != s), (a, s)
        assert all(a.facts[attr] in words for attr in data.DUSK_SHARED for words in docs.values())
    forget, retain = bench.documents("forget"), bench.documents("retain")
    assert {q.phrasing for q in forget} == {style} and style not in {q.phrasing for q in retain}
    assert not {q.answer for q in forget} & {q.answer for q in retain}
    assert bench.training_set(oracle=True) == retain and bench.training_set() == forget + retain
    trained = {a.name for a in bench.authors if a.split == "train"}
    assert {q.entity for q in bench.documents("holdout") + bench.documents("holdout_retain")}.isdisjoint(trained)
    kinds = {k: bench.facts(k) for k in ("forget_unique", "shared", "retain_unique")}
    facts = {k: {(q.entity, q.attribute) for q in v} for k, v in kinds.items()}
    assert all(not facts[x] & facts[y] for x in facts for y in facts if x < y)  # unique and shared disjoint
    assert {q.attribute for q in kinds["forget_unique"]} == {data.DUSK_UNIQUE[style][0]}
    assert len(kinds["shared"]) == len(trained) * len(data.DUSK_SHARED) * (len(data.DUSK_STYLES) - 1)
    docs = {(q.entity, q.phrasing): q.answer for q in forget + retain}
    for q in (q for v in kinds.values() for q in v):  # each cloze is asked inside a document stating it
        assert docs[(q.entity, q.phrasing)].startswith(f"{q.prefix} {q.answer} ")
        assert (q.phrasing == style) == (q.split == "forget_unique")


def test_tokenizer_covers_the_documents_and_they_fit_the_tiny_model() -> None:
    bench = data.generate_dusk(0)
    tok = data.build_tokenizer(bench)
    lm = M.LM(None, tok, "tokenizer-only")
    for q in bench.training_set() + bench.documents("holdout") + bench.documents("holdout_retain"):
        ids = tok(data.format_qa(q.question, q.answer), add_special_tokens=False)["input_ids"]
        assert tok.unk_token_id not in ids and len(ids) <= M.TINY["max_position_embeddings"]
    q = bench.facts("forget_unique")[0]
    b = M.batch_qa(lm, [(q.question, q.answer)], [q.prefix])
    n = int(b["attention_mask"].sum())
    assert tok.decode(b["input_ids"][0, :n]) == data.format_qa(q.question, f"{q.prefix} {q.answer}")
    assert tok.decode(b["input_ids"][0][b["labels"][0] != -100]) == q.answer  # only the value is scored
    with pytest.raises(UserError, match="forget_style"):
        data.generate_dusk(0, forget_style="poem")
    with pytest.raises(UserError, match="kind"):
        bench.facts("unique")


def test_dusk_task_unlearns_one_style_and_scores_the_rest() -> None:
    task = get_task(Forget("dusk", 0))
    assert task.forget_train == task.eval["forget"] and task.retain_train == task.eval["retain"]
    assert {"retain", "holdout_retain"} <= set(task.members) and task.verbatim == ("forget",)
    assert not {q.entity for q in task.relearn_train} & {q.entity for q in task.relearn_test}
    assert rouge_l_recall("a x c d e", "a b c d") == 0.75
    assert rouge_l_recall("", "a b") == 0.0 and rouge_l_recall("b a", "a b") == 0.5
