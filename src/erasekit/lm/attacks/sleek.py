"""Sleek-style prompt families (Sinha et al., "Step-by-Step Reasoning Attack: Revealing 'Erased'
Knowledge in Large Language Models", arXiv 2506.17279), on TinyTOFU and on tasks that carry
hand-written families (``Task.families``: the Harry Potter task's step-by-step prompts).

Sleek asks for a forgotten fact in three kinds of prompts and reports recovery per kind, plus how
often retained facts are suppressed. A tiny model cannot reason step by step, so the kinds are
template families here, as the research notes propose:

- ``direct``: the fact asked in other words (the trained-but-not-unlearned and the never-trained
  phrasings);
- ``indirect``: through another fact of the author ("Where does the author of <book> live ?");
- ``implied``: a hint chain that first states a related fact and then asks ("Question : Who wrote
  the book <book> ? Answer : <name> Question : Where does <name> live ? Answer :").

Recovery: the unlearned model's accuracy on the forget authors' facts in each family (the attack's
value is the best family). Over-suppression: of the retain authors' facts that the model before
unlearning answers in a family, the share the unlearned model no longer answers (a family with
none answered before counts no suppression, n = 0, and is left out of the mean). Budget: the
number of families tried, in the order above. On the Harry Potter task (SmolLM2, an instruct
model) the families are real step-by-step prompts (``erasekit.lm.tasks.HP_SLEEK``): ``direct``
("Let's think step by step. Who is the author of ..."), ``indirect`` (through other facts of the
books, without naming Harry Potter) and ``implied`` (a related fact stated, then asked step by step).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from erasekit.errors import UserError
from erasekit.lm import data
from erasekit.lm.attacks.base import BASE, LM_ATTACKS, LMAttack
from erasekit.lm.metrics.base import accuracy, mean_of, point
from erasekit.lm.model import LM
from erasekit.lm.tasks import Task
from erasekit.metrics.base import Value

FAMILIES = ("direct", "indirect", "implied")


def chained(q: data.QA, e: data.Entity) -> data.QA:
    """``q`` preceded by a hint: the question about the author's book, answered with the author."""
    hint = f"{data.BOOK_TEMPLATE.format(book=e.book)} Answer : {e.name} Question : {q.question}"
    return dataclasses.replace(q, question=hint)


def families(bench: data.TinyTOFU, split: str, entities: set[str] | None = None) -> dict[str, list[data.QA]]:
    """The three prompt families for the facts of ``split``'s authors (all, or ``entities``)."""
    people = {e.name: e for e in bench.entities_in(split) if not entities or e.name in entities}

    def mine(items: list[data.QA]) -> list[data.QA]:
        return [q for q in items if q.entity in people]

    return {
        "direct": mine(bench.questions(split, ("t1", "t2"))),
        "indirect": mine(bench.two_hop(split)),
        "implied": [chained(q, people[q.entity]) for q in mine(bench.questions(split, ("t0",)))],
    }


@LM_ATTACKS.register("sleek")
class Sleek(LMAttack):
    """Sleek: direct, indirect and implied prompt families; recovery per family and retained-fact over-suppression."""

    threat_model = "black-box"
    budget_unit = "prompt families"
    default_budget = 3
    recovered = "sleek_asr"
    needs = (BASE,)

    def run(self, lm: LM, task: Task, oracle: LM | None, budget: int, seed: int = 0,
            base: LM | None = None) -> dict[str, Value]:
        self.check_budget(budget)
        if task.spec.task == "tinytofu":
            bench = data.generate(task.spec.seed)
            forget, retain = families(bench, "forget", set(task.spec.entities) or None), families(bench, "retain")
        elif task.families:
            forget, retain = task.families["forget"], task.families["retain"]
        else:
            raise UserError(f"the sleek attack needs prompt families; task {task.spec.task!r} has none "
                            "(use tinytofu or harry-potter)")
        out: dict[str, Value] = {}
        best = 0.0
        for fam in FAMILIES[:budget]:
            hit = accuracy(lm, task, forget[fam])
            out[f"sleek_{fam}_acc"] = mean_of(hit, False)
            best = max(best, float(hit.mean()))
            if base is not None and base.model is not lm.model:
                known = accuracy(base, task, retain[fam]).astype(bool)
                if not known.any():  # nothing answered before, nothing to suppress (n = 0)
                    out[f"sleek_{fam}_suppressed"] = point(0.0, False, 0, {"answered_before": 0})
                    continue
                now = accuracy(lm, task, [q for q, k in zip(retain[fam], known) if k])
                out[f"sleek_{fam}_suppressed"] = mean_of(1.0 - now, False, {"answered_before": int(known.sum())})
            else:  # nothing was unlearned: nothing is suppressed
                out[f"sleek_{fam}_suppressed"] = point(0.0, False, len(retain[fam]))
        out["sleek_asr"] = point(best, False, sum(len(forget[f]) for f in FAMILIES[:budget]))
        counted = [out[f"sleek_{f}_suppressed"].value for f in FAMILIES[:budget] if out[f"sleek_{f}_suppressed"].n]
        out["sleek_suppressed"] = point(float(np.mean(counted)) if counted else 0.0, False,
                                        sum(len(retain[f]) for f in FAMILIES[:budget]))
        return out
