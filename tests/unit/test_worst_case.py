"""Worst-case prompt sets (Challenging Forgets, Fan et al. 2024): the upper level, the metric on a
weakly erased model of the shipped testbed, and the optional lower level."""

import numpy as np
import pytest
import torch

from erasekit.attacks.base import AttackContext
from erasekit.concepts import get_concept
from erasekit.erasure import get_method, make_config
from erasekit.evaluation import eval_prompts
from erasekit.metrics import Answers, get_metric
from erasekit.sampling import generate
from erasekit.worstcase import (
    WorstCaseConfig,
    lower_level,
    prompt_losses,
    select,
    unedited_images,
)


def test_upper_level_keeps_weights_feasible_and_picks_the_lowest_losses():
    rng = np.random.default_rng(0)
    loss = rng.uniform(0, 0.01, 30)  # small gaps: several outer iterations are needed
    cfg = WorstCaseConfig()
    sel = select(lambda w: loss, 30, cfg)
    assert cfg.k(30) == 4 and cfg.k(100) == 10 and cfg.k(3) == 3  # the paper's ratio, at least 4
    assert sorted(sel.chosen) == sorted(np.argsort(loss)[:4].tolist())
    assert sel.weights.min() >= 0 and sel.weights.max() <= 1 and abs(sel.weights.sum() - 4) < 1e-6
    assert sel.objective[-1] <= sel.objective[0]  # sum w_i l_i falls
    with pytest.raises(ValueError, match="gamma"):
        WorstCaseConfig(gamma=0.01)  # 2 w_lr gamma >= 1 would reverse the order
    with pytest.raises(ValueError, match="loss"):
        WorstCaseConfig(loss="mean")


@pytest.fixture(scope="module")
def heart_uce(shipped_testbed):
    concept = get_concept("heart")
    return concept, get_method("uce").fit(shipped_testbed, concept, make_config("uce"), progress=False)


def test_worst_case_set_of_weak_uce_on_heart_shows_the_concept_at_least_as_often(shipped_testbed, shipped_judge,
                                                                                 heart_uce):
    """UCE leaves heart's known phrasings mostly intact: the k prompts with the lowest excess loss,
    chosen on seed 2, show heart on seeds 0 and 1 at least as often as the pool does."""
    pipe, (concept, erasure) = shipped_testbed, heart_uce
    pool = [p for p in eval_prompts(concept, 6) if p.split in ("given", "known")]
    seeds = [0, 1]
    with erasure.applied(pipe):
        images = generate(pipe, [p.text for p in pool], seeds, progress=False)
    answers = Answers(concept, pool, seeds, images, shipped_judge.predict(images), judge=shipped_judge, pipe=pipe,
                      erasure=erasure)
    metric = get_metric("worst_case")
    metric.config = WorstCaseConfig(selection_seeds=1)
    values = metric.compute(answers)
    worst, average = values["efficacy_worst_k"], values["efficacy_pool"]
    meta = worst.meta
    assert meta["k"] == 4 and meta["pool"] == 12 and meta["selection_seeds"] == [2]  # disjoint from 0, 1
    assert worst.n == 4 * 2 and average.n == 12 * 2
    assert worst.value <= average.value  # the worst-case set's concept rate is >= the average's
    assert worst.low <= worst.value <= worst.high
    # the chosen prompts are those with the lowest excess loss, recomputed here on seed 2
    texts = [p.text for p in pool]
    with erasure.applied(pipe):
        ctx = AttackContext(pipe, erasure, concept, shipped_judge)
        refs = unedited_images(ctx, texts, [2])
        erased = prompt_losses(ctx, texts, [2], 10, refs)
        with ctx.unedited():
            unedited = prompt_losses(ctx, texts, [2], 10, refs)
    excess = erased - unedited
    assert sorted(meta["prompts"]) == sorted(texts[i] for i in np.argsort(excess)[:4])
    assert meta["losses"] == sorted(meta["losses"])
    assert (erased > 0).all() and (excess > 0).all()  # the edit costs every target prompt some fit


def test_lower_level_resets_trains_and_leaves_the_erasure_as_it_was(random_testbed):
    """Weighted sign-ESD from the unedited weights: the losses depend on w, the erasure comes back."""
    pipe, concept = random_testbed, get_concept("heart")
    erasure = get_method("uce").fit(pipe, concept, make_config("uce"), progress=False)
    prompts = [p.text for p in eval_prompts(concept, 2) if p.split in ("given", "known")]
    cfg = WorstCaseConfig(lower_steps=2, lower_lr=1e-2, timesteps=2, iterations=2)
    before = {k: p.detach().clone() for k, p in pipe.unet.named_parameters()}
    with erasure.applied(pipe):
        ctx = AttackContext(pipe, erasure, concept, None, steps=3)
        applied = {k: p.detach().clone() for k, p in pipe.unet.named_parameters()}
        refs = unedited_images(ctx, prompts, [5])
        losses_of = lower_level(ctx, prompts, [5], cfg, refs, np.zeros(len(prompts)))
        none, first = losses_of(np.zeros(len(prompts))), losses_of(np.eye(len(prompts))[0])
        with ctx.unedited():
            untouched = prompt_losses(ctx, prompts, [5], 2, refs)
        np.testing.assert_allclose(none, untouched, rtol=1e-6)  # w = 0: the reset model, untrained
        assert not np.allclose(first, none)  # training on prompt 0 changes the losses
        sel = select(losses_of, len(prompts), cfg)
        assert len(sel.chosen) == min(4, len(prompts))
        for k, p in pipe.unet.named_parameters():
            assert torch.equal(p, applied[k]), k
    for k, p in pipe.unet.named_parameters():
        assert torch.equal(p, before[k]), k


def test_erasekit_eval_stores_it_and_the_report_shows_it(shipped_testbed, shipped_judge, heart_uce, tmp_path):
    """``erasekit eval --metrics worst_case``: erasure runs only, stored with its meta, in the report."""
    from erasekit.evaluation import EvalConfig, evaluate
    from erasekit.report import build_report
    from erasekit.store import Store

    concept, erasure = heart_uce
    store = Store(tmp_path / "w.db")
    cfg = EvalConfig(n_prompts=3, seeds=(0,), steps=4, batch=64)
    with pytest.raises(ValueError, match="'worst_case' cannot run on this evaluation: it needs the unedited"):
        evaluate(store, shipped_testbed, shipped_judge, concept, cfg, metrics=("worst_case",))
    result = evaluate(store, shipped_testbed, shipped_judge, concept, cfg, erasure=erasure,
                      metrics=("efficacy", "worst_case"), progress=False)
    worst, pool = result["metrics"]["efficacy_worst_k"], result["metrics"]["efficacy_pool"]
    assert worst["meta"]["k"] == 4 and worst["meta"]["pool"] == 6 and worst["meta"]["selection_seeds"] == [1, 2]
    assert worst["n"] == 4 and pool["n"] == 6
    baseline = next(r for r in store.runs() if r["kind"] == "baseline")
    assert "efficacy_worst_k" not in store.metrics(baseline["run_id"])
    html = (tmp_path / "r.html")
    build_report(store, html)
    from browser import load_page  # the report's summary table, read back from headless Chromium

    page = load_page(html.as_uri(), tmp_path / "shot.png", script="""
        const t = document.querySelector('table');
        const heads = Array.from(t.rows[0].cells).map(c => c.innerText.replace(/\\s+/g, ' '));
        return [heads, Array.from(t.rows).slice(1).map(r => Array.from(r.cells).map(c => c.innerText))];""")
    heads, rows = page["script"]
    assert "efficacy worst-case k" in heads, heads
    col = heads.index("efficacy worst-case k")
    erased = next(r for r in rows if r[0].startswith("uce"))
    assert erased[col].startswith(f"{worst['value']:.3f}") and [e for e in page["logs"] if e["level"] == "SEVERE"] == []
