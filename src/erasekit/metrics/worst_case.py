"""Worst-case efficacy (Fan et al., "Challenging Forgets", ECCV 2024): efficacy on the ``k`` target
prompts the erased model still renders best, beside the average over the pool they are chosen from.

The pool is the evaluation's ``given`` and ``known`` target prompts (the concept's phrasings of both
tiers across templates and other attributes). The set is selected by :mod:`erasekit.worstcase`
(lowest denoising loss of the erased model on the unedited model's images) with seeds disjoint
from the evaluation's (:func:`erasekit.evaluation.floor_seeds`), then measured on the evaluation's
own images: select with seeds A, measure with seeds B, so the set's rate carries no selection bias
from the noise it was picked on. ``k`` is the paper's ratio 0.1 of the pool, at least 4."""

from __future__ import annotations

from erasekit.evaluation import floor_seeds
from erasekit.metrics.base import METRICS, Answers, Metric, Value, mean_value
from erasekit.worstcase import WorstCaseConfig, worst_case_set

#: the phrasing tiers the pool is drawn from
POOL_SPLITS = ("given", "known")


@METRICS.register("worst_case")
class WorstCase(Metric):
    """Worst-case efficacy: on the k target prompts the erased model still renders best, beside the pool's average.

    Challenging Forgets (Fan et al. 2024): lowest excess denoising loss, selected on other seeds."""

    higher_is_better = True
    needs = ("judge", "attributes", "base_images", "model")  # an erasure run: its excess loss
    default = False  # it draws and scores the pool again on its own seeds
    order = 12
    report = {"efficacy_worst_k": "efficacy<br>worst-case k", "efficacy_pool": "efficacy<br>worst-case pool"}
    config = WorstCaseConfig()

    def compute(self, answers: Answers) -> dict[str, Value]:
        concept, verdicts = answers.concept, answers.verdicts
        assert verdicts is not None and concept.family is not None and answers.pipe is not None
        pool = [i for i, p in enumerate(answers.prompts) if p.split in POOL_SPLITS]
        if not pool:
            return {}
        seeds = floor_seeds(tuple(answers.seeds), self.config.selection_seeds)
        sel = worst_case_set(answers.pipe, answers.erasure, concept, answers.judge,
                             [answers.prompts[i].text for i in pool], seeds, self.config,
                             answers.steps, answers.guidance)
        chosen = {id(answers.prompts[pool[j]]) for j in sel.chosen}
        in_pool = {id(answers.prompts[i]) for i in pool}

        def erased(p, j) -> bool:
            return verdicts[j][concept.family] != concept.name

        worst = mean_value(answers, lambda p: id(p) in chosen, erased)
        average = mean_value(answers, lambda p: id(p) in in_pool, erased)
        assert worst is not None and average is not None
        meta = {"k": len(sel.chosen), "pool": len(pool), "selection_seeds": list(seeds),
                "lower_steps": self.config.lower_steps,
                "prompts": [answers.prompts[pool[j]].text for j in sel.chosen],
                "losses": [round(float(sel.losses[j]), 6) for j in sel.chosen],
                "pool_losses": [round(float(x), 6) for x in sel.losses]}  # in pool order
        return {"efficacy_worst_k": Value(worst.value, worst.low, worst.high, True, worst.n, worst.samples, meta),
                "efficacy_pool": Value(average.value, average.low, average.high, True, average.n, average.samples,
                                       {"pool": len(pool), "splits": list(POOL_SPLITS)})}
