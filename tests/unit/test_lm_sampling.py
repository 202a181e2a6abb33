"""MELU's forget/retain pairings (erasekit.lm.sampling) on TinyTOFU: each scheme draws what it says."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from erasekit.errors import UserError
from erasekit.lm.sampling import SAMPLING, PairSampler
from erasekit.lm.tasks import Forget, get_task
from erasekit.lm.unlearning import GradientConfig

TASK = get_task(Forget("tinytofu", 0))


def sampler(scheme: str, batch: int = 12, seed: int = 0) -> PairSampler:
    return PairSampler(TASK.forget_train, TASK.retain_train, scheme, batch, torch.Generator().manual_seed(seed))


def test_random_is_the_loops_old_draw():
    """The default draws exactly what the loop drew before the option existed (same generator use)."""
    gen = torch.Generator().manual_seed(3)
    old = []
    for _ in range(3):
        for items in (TASK.forget_train, TASK.retain_train):
            old.append([items[i] for i in torch.randint(len(items), (12,), generator=gen).tolist()])
    s = sampler("random", seed=3)
    new = [b for _ in range(3) for b in s()]
    assert new == old


def test_cyclic_walks_every_item_once_per_pass():
    s = sampler("cyclic", batch=8)
    seen = [q for _ in range(len(TASK.forget_train) // 8) for q in s()[0]]
    assert sorted(map(id, seen)) == sorted(map(id, TASK.forget_train))


def test_neighbours_share_the_answer_with_another_entity():
    s = sampler("neighbours")
    shared = 0
    for _ in range(10):
        f, r = s()
        assert len(f) == len(r) == 12
        for q, n in zip(f, r):
            if (n.attribute, n.answer) == (q.attribute, q.answer):
                shared += 1
                assert n.entity != q.entity and n.split == "retain"
    assert shared >= 100  # TinyTOFU's small value pools: almost every forget fact has a retain neighbour


def test_modular_takes_one_entity_and_its_module_per_step():
    s = sampler("modular")
    entities = sorted({q.entity for q in TASK.forget_train})
    for k in range(len(entities) + 1):
        f, r = s()
        assert {q.entity for q in f} == {entities[k % len(entities)]}
        values = {(q.attribute, q.answer) for q in TASK.forget_train if q.entity == f[0].entity}
        assert all((q.attribute, q.answer) in values and q.entity != f[0].entity for q in r)


def test_bad_scheme_and_a_task_without_entities_fail_clearly():
    with pytest.raises(UserError, match="sampling must be one of"):
        sampler("stratified")
    with pytest.raises(UserError, match="sampling"):
        GradientConfig(sampling="stratified")
    hp = get_task(Forget("harry-potter"))
    with pytest.raises(UserError, match="name none"):
        PairSampler(hp.forget_train, hp.retain_train, "modular", 4, torch.Generator())
    PairSampler(hp.forget_train, hp.retain_train, "cyclic", 4, torch.Generator())()  # needs no entities


@settings(max_examples=30, deadline=None)
@given(scheme=st.sampled_from(SAMPLING), batch=st.integers(1, 64), seed=st.integers(0, 2**16), steps=st.integers(1, 5))
def test_every_scheme_gives_non_empty_batches_from_the_right_sets(scheme, batch, seed, steps):
    s = sampler(scheme, batch, seed)
    forget, retain = set(map(id, TASK.forget_train)), set(map(id, TASK.retain_train))
    for _ in range(steps):
        f, r = s()
        assert 1 <= len(f) <= batch and 1 <= len(r) <= batch
        assert all(id(q) in forget for q in f) and all(id(q) in retain for q in r)
