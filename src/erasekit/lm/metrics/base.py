"""The language-model metric contract: a registered :class:`LMMetric` turns :class:`Scores` into Values.

:class:`Scores` are computed once per model (:func:`compute_scores`) and hold everything the
TOFU/MUSE-style metrics need; metrics that compare with the oracle or the base model read their
``Scores`` too. Values are the same :class:`~erasekit.metrics.base.Value` objects as the diffusion
metrics (95% bootstrap interval over questions), so they go into the same SQLite tables.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch

from erasekit.lm import model as M
from erasekit.lm.tasks import Task
from erasekit.metrics.base import Value
from erasekit.registry import Registered, Registry
from erasekit.stats import bootstrap_mean

MINK_FRACTION = 0.2  # Min-K% Prob (Shi et al. 2024) with k = 20%


@dataclass
class Scores:
    """One model's scores on a task: per eval set, teacher-forced results (or keyword hits), the
    length-normalised probabilities of the perturbed answers, per-item membership scores (loss and
    Min-K%), the next-token log-distribution at the end of each benign prompt, on the task's
    ``verbatim`` sets the ROUGE-L recall of each greedy answer, and per layer the hidden states at
    the answer's last token of the forget and holdout items (the memorisation probe)."""

    correct: dict[str, np.ndarray]
    prob: dict[str, np.ndarray] = field(default_factory=dict)
    perturbed: dict[str, np.ndarray] = field(default_factory=dict)  # (n, k)
    mia_loss: dict[str, np.ndarray] = field(default_factory=dict)
    mia_mink: dict[str, np.ndarray] = field(default_factory=dict)
    first_token: torch.Tensor | None = None
    verbatim: dict[str, np.ndarray] = field(default_factory=dict)  # ROUGE-L recall of the greedy answer
    answer_states: dict[str, list[torch.Tensor]] = field(default_factory=dict)


@dataclass
class Context:
    task: Task
    scores: Scores
    oracle: Scores | None = None
    base: Scores | None = None


class LMMetric(Registered):
    """Scores a model on a task. Subclasses set ``needs`` (``oracle``, ``base``), ``reads`` (the
    optional :class:`Scores` parts they use, computed only when a requested metric reads them:
    ``answer_states``) and a docstring."""

    name: ClassVar[str]
    needs: ClassVar[tuple[str, ...]] = ()
    reads: ClassVar[tuple[str, ...]] = ()

    def compute(self, ctx: Context) -> dict[str, Value]:
        raise NotImplementedError


LM_METRICS: Registry[LMMetric] = Registry("language-model metric", LMMetric, package="erasekit.lm.metrics",
                                          group="erasekit.lm_metrics")
get_lm_metric = LM_METRICS.create
lm_metric_names = LM_METRICS.names


def mean_of(values: np.ndarray, higher_is_better: bool, meta: dict | None = None) -> Value:
    """Mean with a bootstrap interval over items; per-item values kept as samples (index, seed 0)."""
    v = np.asarray(values, dtype=np.float64)
    m, lo, hi = bootstrap_mean(v)
    return Value(m, lo, hi, higher_is_better, int(v.size), tuple((i, 0, float(x)) for i, x in enumerate(v)),
                 meta or {})


def point(value: float, higher_is_better: bool, n: int, meta: dict | None = None) -> Value:
    return Value(float(value), None, None, higher_is_better, n, (), meta or {})


def truth_ratio(prob: np.ndarray, perturbed: np.ndarray) -> np.ndarray:
    """TOFU's truth ratio ``mean_k p(perturbed_k) / p(answer)`` on length-normalised probabilities."""
    return perturbed.mean(1) / np.maximum(prob, 1e-30)


def auc(members: np.ndarray, nonmembers: np.ndarray) -> float:
    """P(score(member) > score(non-member)) + 0.5 P(tie): the ROC AUC of the scores."""
    m, n = np.asarray(members)[:, None], np.asarray(nonmembers)[None, :]
    return float(((m > n).mean() + 0.5 * (m == n).mean()))


# -- computing scores ---------------------------------------------------------------------------
@torch.no_grad()
def _membership(lm: M.LM, questions: list, fraction: float = MINK_FRACTION) -> tuple[np.ndarray, np.ndarray]:
    """Per item: minus the mean token NLL of the whole question+answer text, and Min-K% Prob."""
    loss, mink = [], []
    for q in questions:
        b = M.batch_qa(lm, [(q.question, q.answer)])
        b["labels"] = torch.where(b["attention_mask"].bool(), b["input_ids"], torch.full_like(b["input_ids"], -100))
        tok_lp, _, mask = M._token_logprobs(lm, b)
        lp = tok_lp[mask]
        loss.append(float(lp.mean()))
        k = max(1, int(round(fraction * lp.numel())))
        mink.append(float(lp.sort().values[:k].mean()))
    return np.array(loss), np.array(mink)


@torch.no_grad()
def _first_token(lm: M.LM, questions: list[str]) -> torch.Tensor:
    outs = []
    for q in questions:
        ids = lm.tokenizer(lm.prompt(q), add_special_tokens=False, return_tensors="pt")["input_ids"]
        outs.append(torch.log_softmax(lm.model(input_ids=ids).logits[0, -1].float(), -1))
    return torch.stack(outs)


def rouge_l_recall(candidate: str, reference: str) -> float:
    """ROUGE-L recall on words: the longest common subsequence over the reference's length (Lin 2004)."""
    c, r = candidate.split(), reference.split()
    if not r:
        return 0.0
    row = [0] * (len(c) + 1)
    for w in r:
        prev = 0
        for j, x in enumerate(c, 1):
            prev, row[j] = row[j], prev + 1 if w == x else max(row[j], row[j - 1])
    return row[-1] / len(r)


def verbatim(lm: M.LM, questions: list) -> np.ndarray:
    """Per item, ROUGE-L recall of the greedy answer (as long as the answer in tokens) against it."""
    longest = max((len(lm.tokenizer(lm.answer_text(q.answer), add_special_tokens=False)["input_ids"])
                   for q in questions), default=1)
    answers = M.generate(lm, [q.question for q in questions], max_new_tokens=longest)
    return np.array([rouge_l_recall(a, q.answer) for q, a in zip(questions, answers)])


def accuracy(lm: M.LM, task: Task, questions: list) -> np.ndarray:
    """Per question, 1.0 if answered: teacher-forced exact match, or for keyword tasks (real chat
    models) the keyword in the greedy answer."""
    if task.keyword:
        answers = M.generate(lm, [q.question for q in questions])
        return np.array([q.answer.lower() in a.lower() for q, a in zip(questions, answers)], dtype=float)
    return M.score_qa(lm, questions).correct.float().numpy()


def benign_questions(task: Task) -> list[str]:
    """The prompts of the first-token KL: up to 64 retain questions and the general ones."""
    return [q.question for q in task.eval["retain"][:64] + task.eval.get("general", [])]


def compute_scores(lm: M.LM, task: Task, metrics: tuple[str, ...] | None = None) -> Scores:
    """Everything ``metrics`` (default: every registered metric) need from one model (a few
    forward passes per question)."""
    if task.keyword:
        correct = {name: accuracy(lm, task, qs) for name, qs in task.eval.items()}
        return Scores(correct, first_token=_first_token(lm, benign_questions(task)))
    sc = Scores(correct={})
    for name, qs in task.eval.items():
        s = M.score_qa(lm, qs)
        sc.correct[name] = s.correct.float().numpy()
        sc.prob[name] = s.norm_prob.numpy()
        if qs and qs[0].perturbed:
            k = len(qs[0].perturbed)
            pert = M.score(lm, [(q.question, p) for q in qs for p in q.perturbed])
            sc.perturbed[name] = pert.norm_prob.numpy().reshape(len(qs), k)
    for name in task.members:
        if name in task.eval:
            sc.mia_loss[name], sc.mia_mink[name] = _membership(lm, task.eval[name])
    for name in task.verbatim:
        sc.verbatim[name] = verbatim(lm, task.eval[name])
    sc.first_token = _first_token(lm, benign_questions(task))
    reads = {part for name in (metrics or tuple(lm_metric_names())) for part in get_lm_metric(name).reads}
    if "answer_states" in reads and "holdout" in task.eval:  # members and never-trained items
        for name in ("forget", "holdout"):
            sc.answer_states[name] = M.text_states(lm, [lm.qa_text(q.question, q.answer) for q in task.eval[name]])
    return sc
