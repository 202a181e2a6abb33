"""PSG, Proximal Surrogate Generation (Jia et al., "The Erasure Illusion: Stress-Testing the
Generalization of LLM Forgetting Evaluation", arXiv 2512.19025), on TinyTOFU and on the Harry
Potter task.

The paper re-scores every forgetting metric on a surrogate forget set D~_u "semantically derived
from D_u yet sufficiently distinct in embedding space" and reports how much the metrics
overestimate forgetting. Its code is not public, so this is a reconstruction; what was inferred:

- **Candidates.** Per forget fact (author, attribute, value), the questions TinyTOFU's generator can
  ask about it besides the unlearned one: the other two phrasings (``t1`` trained, ``t2`` never
  trained) and the three phrasings asked through the author's book ("... the author of <book> ...",
  entailed questions; the city one is the trained two-hop question), in this order (the budget is
  how many of these five kinds are generated). Only words of the benchmark's vocabulary, so the
  tiny word-level model reads them.
- **Band.** A candidate is embedded as "question answer" with the testbed's frozen MiniLM
  (:func:`erasekit.lm.methods.fit.embed`, as FIT does) and kept when its *highest* cosine to the
  D_u items lies in ``[0.5, 0.8]``: at most 0.8 to every D_u item (distinct in embedding space, no
  near-duplicate of anything unlearned) and at least 0.5 to some item (semantically derived).
  The band is C8's suggestion, fixed before any figure was measured and not tuned.
- **Metrics.** On D_u (the unlearned phrasing) and on D~_u: accuracy, length-normalised answer
  probability, the truth ratio ``mean(min(TR, 1/TR))`` and, with an oracle, the forget quality (KS
  p-value against the oracle's truth ratios), with the gap ``D~_u - D_u``. A positive accuracy or
  probability gap is the illusion: D_u says forgotten, D~_u recovers the facts. With an oracle,
  its accuracies on both sets and ``psg_acc_excess_gap`` (the gap less the oracle's gap) too: the
  surrogate questions can be easier to guess than the forget ones, and only the excess is knowledge.

On a keyword task (the Harry Potter task, :func:`keyword_psg_values`) the candidates are the task's
own surrogate phrasings and its hand-written Sleek families, in that order (the budget is how many
of these four kinds), banded the same way; only accuracy is reported (a keyword in the greedy answer:
no answer probabilities or perturbed answers), with the gap ``D~_u - D_u``.

PSG is an attack/protocol, not an :class:`~erasekit.lm.metrics.base.LMMetric`: metrics read scores
computed once on the task's fixed eval sets, while PSG builds its own set (MiniLM) and scores the
unlearned model and the oracle on it.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from erasekit.errors import UserError
from erasekit.lm import data
from erasekit.lm import model as M
from erasekit.lm.attacks.base import LM_ATTACKS, LMAttack
from erasekit.lm.metrics.base import accuracy, mean_of, point, truth_ratio
from erasekit.lm.model import LM
from erasekit.lm.tasks import Task
from erasekit.metrics.base import Value

#: Candidate kinds, in the order the budget takes them: (phrasing index, asked through the book).
KINDS = (("t1", False), ("t2", False), ("t0", True), ("t1", True), ("t2", True))
#: C8's cosine band for the highest MiniLM cosine of a candidate to the D_u items.
BAND = (0.5, 0.8)


def candidates(bench: data.TinyTOFU, forget: list[data.QA], kinds: int = len(KINDS)) -> list[data.QA]:
    """Every candidate surrogate question of the forget facts ``forget`` (their ``t0`` questions)."""
    people = {e.name: e for e in bench.entities}
    out = []
    for kind, through_book in KINDS[:kinds]:
        for q in forget:
            e = people[q.entity]
            subject = f"the author of {e.book}" if through_book else e.name
            text = data.TEMPLATES[q.attribute][data.PHRASINGS.index(kind)].format(name=subject)
            out.append(dataclasses.replace(q, question=text, phrasing=kind + ("-book" if through_book else "")))
    return out


def _texts(items: list[data.QA]) -> list[str]:
    return [f"{q.question} {q.answer}" for q in items]


def surrogate_set(bench: data.TinyTOFU, forget: list[data.QA], kinds: int = len(KINDS),
                  band: tuple[float, float] = BAND) -> tuple[list[data.QA], np.ndarray]:
    """D~_u: the candidates whose highest MiniLM cosine to the D_u items lies in ``band``, and that cosine."""
    return banded(candidates(bench, forget, kinds), forget, band)


def banded(cands: list[data.QA], forget: list[data.QA], band: tuple[float, float] = BAND
           ) -> tuple[list[data.QA], np.ndarray]:
    """The candidates whose highest MiniLM cosine to the ``forget`` items lies in ``band``, and that cosine."""
    from erasekit.lm.methods.fit import embed

    cos = (embed(_texts(cands)) @ embed(_texts(forget)).T).max(1).values.numpy()
    keep = (cos >= band[0]) & (cos <= band[1])
    return [q for q, k in zip(cands, keep) if k], cos[keep]


@torch.no_grad()
def _stats(lm: LM, items: list[data.QA]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per item: exact match, normalised answer probability, ``min(TR, 1/TR)``."""
    s = M.score_qa(lm, items)
    k = len(items[0].perturbed)
    pert = M.score(lm, [(q.question, p) for q in items for p in q.perturbed]).norm_prob.numpy().reshape(len(items), k)
    prob = s.norm_prob.numpy()
    tr = truth_ratio(prob, pert)
    return s.correct.float().numpy(), prob, np.minimum(tr, 1.0 / np.maximum(tr, 1e-30))


@LM_ATTACKS.register("psg")
class PSG(LMAttack):
    """PSG: every forget metric on a MiniLM-banded surrogate forget set and on the forget set, with the gap (Erasure Illusion)."""

    threat_model = "black-box"
    budget_unit = "candidate kinds"
    default_budget = len(KINDS)
    recovered = "psg_acc"

    def run(self, lm: LM, task: Task, oracle: LM | None, budget: int, seed: int = 0,
            base: LM | None = None) -> dict[str, Value]:
        self.check_budget(budget)
        if task.spec.task == "tinytofu":
            return psg_values(lm, task, oracle, min(budget, len(KINDS)))
        if task.keyword and "surrogate" in task.eval:
            return keyword_psg_values(lm, task, oracle, budget)
        raise UserError(f"the psg attack builds its surrogates from TinyTOFU's generator or a keyword task's "
                        f"surrogate questions; task {task.spec.task!r} has neither (use tinytofu or harry-potter)")


def _meta(sur: list[data.QA], cos: np.ndarray, band: tuple[float, float]) -> dict:
    return {"band": list(band), "n_surrogate": len(sur), "mean_cosine": round(float(cos.mean()), 4),
            "kinds": {k: sum(q.phrasing == k for q in sur) for k in sorted({q.phrasing for q in sur})}}


def keyword_psg_values(lm: LM, task: Task, oracle: LM | None, kinds: int = 4,
                       band: tuple[float, float] = BAND) -> dict[str, Value]:
    """PSG on a keyword task: candidates are its surrogate questions and Sleek families, accuracy only."""
    forget = task.eval["forget"]
    pools = [[dataclasses.replace(q, phrasing="surrogate") for q in task.eval["surrogate"]]]
    pools += list(task.families.get("forget", {}).values())
    sur, cos = banded([q for pool in pools[:kinds] for q in pool], forget, band)
    if not sur:
        raise UserError(f"psg: no candidate lies in the cosine band {band}")
    meta = _meta(sur, cos, band)
    mine, du = accuracy(lm, task, sur), accuracy(lm, task, forget)
    out = {"psg_acc": mean_of(mine, False, meta), "psg_acc_du": mean_of(du, False),
           "psg_acc_gap": point(float(mine.mean() - du.mean()), False, len(sur))}
    if oracle is not None:
        o_sur, o_du = accuracy(oracle, task, sur).mean(), accuracy(oracle, task, forget).mean()
        out["psg_acc_oracle"] = point(float(o_sur), False, len(sur))
        out["psg_acc_du_oracle"] = point(float(o_du), False, len(forget))
        out["psg_acc_excess_gap"] = point(out["psg_acc_gap"].value - float(o_sur - o_du), False, len(sur))
    return out


def psg_values(lm: LM, task: Task, oracle: LM | None, kinds: int = len(KINDS),
               band: tuple[float, float] = BAND) -> dict[str, Value]:
    """The attack's values with ``kinds`` candidate kinds and a cosine ``band`` (the attack: C8's)."""
    forget = task.eval["forget"]
    sur, cos = surrogate_set(data.generate(task.spec.seed), forget, kinds, band)
    if not sur:
        raise UserError(f"psg: no candidate lies in the cosine band {band}")
    meta = _meta(sur, cos, band)
    mine = {"du": _stats(lm, forget), "": _stats(lm, sur)}
    out: dict[str, Value] = {}
    for i, name in enumerate(("acc", "prob", "truth_ratio")):
        hib = name == "truth_ratio"  # higher truth ratio = the truth is no longer preferred
        out[f"psg_{name}"] = mean_of(mine[""][i], hib, meta)
        out[f"psg_{name}_du"] = mean_of(mine["du"][i], hib)
        gap = float(mine[""][i].mean() - mine["du"][i].mean())
        out[f"psg_{name}_gap"] = point(gap, hib, len(sur))
    if oracle is not None:
        from scipy.stats import ks_2samp

        theirs = {"du": _stats(oracle, forget), "": _stats(oracle, sur)}
        fq = {k: float(ks_2samp(mine[k][2], theirs[k][2]).pvalue) for k in mine}
        out["psg_quality"] = point(fq[""], True, len(sur), {"oracle_acc": round(float(theirs[""][0].mean()), 4)})
        out["psg_quality_du"] = point(fq["du"], True, len(forget))
        out["psg_quality_gap"] = point(fq[""] - fq["du"], True, len(sur))
        for key, k, n in (("psg_acc_oracle", "", len(sur)), ("psg_acc_du_oracle", "du", len(forget))):
            out[key] = point(float(theirs[k][0].mean()), False, n)
        # the gap beyond the oracle's (what a never-trained model answers on each set by chance)
        out["psg_acc_excess_gap"] = point(out["psg_acc_gap"].value - (out["psg_acc_oracle"].value
                                                                      - out["psg_acc_du_oracle"].value), False, len(sur))
    return out
