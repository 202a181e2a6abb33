"""The Harry Potter task's Sleek families and its PSG surrogate set (no language model needed)."""

from __future__ import annotations

from erasekit.lm.attacks import psg
from erasekit.lm.attacks.sleek import FAMILIES
from erasekit.lm.tasks import Forget, get_task


def test_hp_sleek_families_ask_the_forget_facts_and_other_authors_in_new_prompts() -> None:
    task = get_task(Forget("harry-potter"))
    fam = task.families
    assert set(fam) == {"forget", "retain"} and all(tuple(fam[s]) == FAMILIES for s in fam)
    asked = {q.question for qs in task.eval.values() for q in qs} | {q.question for q in task.forget_train}
    keys = {s: {q.answer for q in task.eval[s]} for s in ("forget", "retain")}
    for split, families in fam.items():
        for name, qs in families.items():
            assert len(qs) >= 4 and all(q.split == split and q.phrasing == name for q in qs)
            assert {q.answer for q in qs} <= keys[split], (split, name)  # the same facts ...
            assert not {q.question for q in qs} & asked  # ... in prompts the task never asks
            steps = ["step by step" in q.question.lower() for q in qs]
            assert all(steps) if name != "indirect" else not any(steps)
    assert not any("Harry Potter" in q.question for q in fam["forget"]["indirect"])  # through other facts only
    assert not get_task(Forget("tinytofu")).families  # TinyTOFU's are built by the attack


def test_hp_psg_surrogates_lie_in_the_band_and_are_not_unlearned_questions() -> None:
    task = get_task(Forget("harry-potter"))
    forget = task.eval["forget"]
    pool = task.eval["surrogate"] + [q for qs in task.families["forget"].values() for q in qs]
    sur, cos = psg.banded(pool, forget)
    assert sur and len(sur) < len(pool)  # the band keeps some candidates and drops others
    assert ((cos >= psg.BAND[0]) & (cos <= psg.BAND[1])).all()
    assert not {q.question for q in sur} & {q.question for q in forget + task.forget_train}
