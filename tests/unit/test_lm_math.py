"""Exact checks of the language-model math: GU projection, abliteration, RTN quantisation, LEACE, TOFU metrics,
KIF, and PGA's probe and alignment."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from erasekit.linalg import orthogonal_to_span, project_out_rows, quantize_rtn
from erasekit.lm import data
from erasekit.lm.metrics.base import auc, truth_ratio


def test_gu_projection_is_orthogonal_to_the_retain_span() -> None:
    g = torch.Generator().manual_seed(0)
    basis = [torch.randn(50, generator=g, dtype=torch.float64) for _ in range(4)]
    basis.append(basis[0] + 2 * basis[1])  # dependent: must not break the projection
    v = torch.randn(50, generator=g, dtype=torch.float64)
    p = orthogonal_to_span(v, basis)
    for b in basis:
        assert abs(float(p @ b)) < 1e-10
    # the part removed lies in the span: projecting twice changes nothing, and a vector in the span vanishes
    assert torch.allclose(orthogonal_to_span(p, basis), p, atol=1e-12)
    assert orthogonal_to_span(3 * basis[2] - basis[3], basis).abs().max() < 1e-10
    assert torch.equal(orthogonal_to_span(v, []), v)


def test_directional_ablation_removes_the_direction() -> None:
    g = torch.Generator().manual_seed(1)
    w = torch.randn(16, 24, generator=g)
    r = torch.randn(16, generator=g)
    w2 = project_out_rows(w, r)
    assert (r / r.norm() @ w2).abs().max() < 1e-5
    # nothing orthogonal to r changes
    q = torch.linalg.qr(torch.cat([r[:, None], torch.randn(16, 15, generator=g)], 1)).Q[:, 1:]
    assert torch.allclose(q.T @ w2, q.T @ w, atol=1e-5)


def test_quantization_returns_the_original_for_small_perturbations() -> None:
    g = torch.Generator().manual_seed(2)
    w = quantize_rtn(torch.randn(8, 32, generator=g), 4)  # a weight already on the int4 grid
    scale = w.abs().amax(1, keepdim=True) / 7
    d = (torch.rand(w.shape, generator=g) - 0.5) * 0.98 * scale  # |d| < scale / 2
    d[w.abs() == w.abs().amax(1, keepdim=True)] = 0  # keep each row's maximum (the scale) fixed
    assert torch.equal(quantize_rtn(w + d, 4), w)
    big = w + 0.6 * scale  # more than half a step moves every entry off its grid point
    assert not torch.equal(quantize_rtn(big, 4), w)
    with pytest.raises(ValueError, match="bits"):
        quantize_rtn(w, 1)


def test_leace_leaves_no_linear_probe_above_chance() -> None:
    from sklearn.linear_model import LogisticRegression

    from erasekit.lm.methods.leace import fit_eraser

    rng = np.random.default_rng(0)
    n, d, k = 1200, 12, 4
    labels = rng.integers(0, k, n)
    means = rng.normal(0, 3, (k, d))
    x = torch.tensor(means[labels] + rng.normal(0, 1, (n, d)), dtype=torch.float64)
    names = [f"c{i}" for i in labels]
    before = LogisticRegression(max_iter=2000).fit(x[:800].numpy(), labels[:800]).score(x[800:].numpy(), labels[800:])
    erased = fit_eraser(x, names)(x).numpy()
    after = LogisticRegression(max_iter=2000).fit(erased[:800], labels[:800]).score(erased[800:], labels[800:])
    chance = np.bincount(labels[800:]).max() / 400
    assert before > 0.95
    assert after <= chance + 0.05, (after, chance)


def test_truth_ratio_and_auc_by_hand() -> None:
    prob = np.array([0.5, 0.1])
    pert = np.array([[0.25, 0.25, 0.25], [0.1, 0.2, 0.3]])
    assert np.allclose(truth_ratio(prob, pert), [0.5, 2.0])
    assert auc(np.array([3.0, 4.0]), np.array([1.0, 2.0])) == 1.0
    assert auc(np.array([1.0, 2.0]), np.array([1.0, 2.0])) == 0.5
    assert auc(np.array([0.0]), np.array([1.0])) == 0.0


def test_tinytofu_is_deterministic_and_split() -> None:
    a, b = data.generate(3), data.generate(3)
    assert a == b
    assert data.generate(4) != a
    names = {s: {e.name for e in a.entities_in(s)} for s in data.SPLITS}
    assert len(names["forget"]) == 12 and len(names["holdout"]) == 12 and len(names["retain"]) == 96
    trained = {q.entity for q in a.training_set()}
    assert names["holdout"].isdisjoint(trained)
    assert names["forget"].isdisjoint({q.entity for q in a.training_set(oracle=True)})
    assert not any(q.phrasing == "t2" for q in a.training_set())
    assert a.neighbour() and all(q.split == "retain" for q in a.neighbour())
    tok = data.build_tokenizer(a)
    assert tok.unk_token_id not in tok(" ".join(a.texts()[:50]))["input_ids"]


def test_kif_capsule_removes_the_signature_mean_shift() -> None:
    """KIF's capsule ``a <- a + s (u.a) u`` along the raw mean difference: at s = -1 the leak and
    control means coincide on the signature (Cohen's d ~ 0); at s = -2 the shift is reversed."""
    from erasekit.lm.methods.kif import Signature, cohens_d

    g = torch.Generator().manual_seed(3)
    control = torch.randn(200, 32, generator=g) * torch.linspace(0.5, 2, 32)
    leak = torch.randn(8, 32, generator=g) + 3 * torch.randn(32, generator=g)
    sig = Signature.fit(leak, control)
    before = sig.effect(leak, control)
    assert before > 3
    for s, want in ((-1.0, 0.0), (-2.0, -before)):
        cap = torch.eye(32) + s * torch.outer(sig.raw, sig.raw)
        after = sig.effect(leak @ cap.T, control @ cap.T)
        assert (abs(after) < 1e-4) if want == 0.0 else (after < -1), (s, after)
    x, y = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([3.0, 4.0, 5.0])
    assert abs(cohens_d(x, y) + 2.0) < 1e-6  # (2 - 4) / pooled sd 1


def test_unseen_questions_are_about_authors_nobody_trained() -> None:
    bench = data.generate(0)
    qs = data.unseen_questions(bench, 10)
    assert qs == data.unseen_questions(bench, 10) and len(qs) == 10
    assert {q.entity for q in qs}.isdisjoint({e.name for e in bench.entities})
    assert [q.attribute for q in qs[:4]] == list(data.ATTRIBUTES)  # author by author, as forget_train
    tok = data.build_tokenizer(bench)
    assert tok.unk_token_id not in tok(" ".join(data.format_qa(q.question, q.answer) for q in qs))["input_ids"]
    with pytest.raises(ValueError, match="unused author names"):
        data.unseen_questions(bench, 4 * 73)


def test_memorisation_probe_and_pga_alignment() -> None:
    """The leave-one-pair-out probe finds a shift along ``v`` and is at chance once it is gone;
    the probe's direction is ``v``; PGA's alignment term is the squared gap along it."""
    from erasekit.lm.metrics.memprobe import author_pairs, loo_accuracy, probe_direction
    from erasekit.lm.methods.pga import alignment

    g = torch.Generator().manual_seed(0)
    members = [data.QA("q", "a", (), f"m{i // 4}", "city", "t0", "forget") for i in range(32)]
    clean = [data.QA("q", "a", (), f"c{i // 4}", "city", "t0", "holdout") for i in range(32)]
    idx, y, pair = author_pairs(members, clean)
    assert len(idx) == 64 and pair.max() == 7 and y.sum() == 32
    assert author_pairs(members, clean, 3)[2].max() == 2
    v = torch.zeros(16)
    v[3] = 1.0
    x = torch.randn(64, 16, generator=g)
    shifted = x + 4.0 * torch.from_numpy(y)[:, None].float() * v
    assert loo_accuracy([shifted], y, pair)[0] >= 0.85  # Bayes: Phi(2) = 0.98
    w = probe_direction(shifted, y)
    assert abs(float(w.norm()) - 1) < 1e-6 and int(w.abs().argmax()) == 3 and float(w @ v) > 0.6
    gone = x - torch.outer(x @ v, v)
    assert 0.3 <= loo_accuracy([gone], y, pair)[0] <= 0.7
    c = torch.randn(5, 16, generator=g)
    assert abs(float(alignment([c + 2.0 * v], [c], [v])) - 4.0) < 1e-5
    u = torch.zeros(16)
    u[5] = 1.0
    assert float(alignment([c + 3.0 * u], [c], [v])) == 0.0  # a gap off the probe's direction costs nothing


def test_pga_config_names_the_bad_field() -> None:
    from erasekit.lm.methods.base import make_lm_config

    assert make_lm_config("pga", {"params": "down_proj"}).params == "down_proj"
    for bad in ({"params": "attn"}, {"forget": "ascent"}, {"rank": 0}, {"refit_every": 0}, {"lr": 0.0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            make_lm_config("pga", bad)


def test_scores_hold_answer_states_only_when_a_requested_metric_reads_them() -> None:
    """The memorisation probe's hidden states cost a forward pass per item: computed for
    ``mem_probe`` (and for every metric, the default), not for a list without it."""
    from erasekit.lm import data, model as M
    from erasekit.lm.metrics.base import compute_scores
    from erasekit.lm.tasks import Forget, get_task

    task = get_task(Forget("tinytofu", 0))
    lm = M.build_tiny(data.build_tokenizer(data.generate(0)))
    assert compute_scores(lm, task, ("forget",)).answer_states == {}
    states = compute_scores(lm, task).answer_states
    assert set(states) == {"forget", "holdout"}
    assert len(states["forget"]) == M.TINY["num_hidden_layers"] + 1 and states["forget"][0].shape[0] == len(task.eval["forget"])
