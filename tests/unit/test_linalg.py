import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from erasekit.errors import UserError
from erasekit.linalg import (closed_form_embedding, conflict_projection, edit_weight, null_space_projector,
                             null_space_steering_map, project_capped_simplex, saliency_mask, uce_right_factor)


def _data(seed=0, d=24, out=16):
    g = torch.Generator().manual_seed(seed)
    w0 = torch.randn(out, d, generator=g, dtype=torch.float64)
    c = torch.randn(30, d, generator=g, dtype=torch.float64)
    guide = torch.randn(30, d, generator=g, dtype=torch.float64)
    p = torch.randn(200, d, generator=g, dtype=torch.float64)
    return w0, c, guide, p


def test_uce_solution_satisfies_normal_equations():
    w0, c, g, p = _data()
    lamb, es, ps = 0.5, 1.3, 0.7
    w = w0 @ uce_right_factor(c, g, p, lamb, es, ps)
    eye = torch.eye(w0.shape[1], dtype=torch.float64)
    lhs = w @ (lamb * eye + es * c.T @ c + ps * p.T @ p)
    rhs = lamb * w0 + es * (w0 @ g.T) @ c + ps * (w0 @ p.T) @ p
    assert (lhs - rhs).norm() / rhs.norm() < 1e-5


def test_uce_without_erase_terms_returns_original_weights():
    w0, c, g, p = _data(1)
    factor = uce_right_factor(c[:0], g[:0], p, 0.5)
    torch.testing.assert_close(edit_weight(w0, factor), w0, rtol=1e-10, atol=1e-10)
    factor = uce_right_factor(c, c, p, 0.5)  # guide == erase: nothing to change
    torch.testing.assert_close(edit_weight(w0, factor), w0, rtol=1e-9, atol=1e-9)


def test_uce_maps_erase_keys_to_guide_outputs_when_lambda_is_small():
    w0, c, g, _ = _data(2, d=48)
    w = w0 @ uce_right_factor(c[:5], g[:5], None, 1e-8)
    torch.testing.assert_close(w @ c[:5].T, w0 @ g[:5].T, rtol=1e-5, atol=1e-5)


def test_closed_form_embedding_is_the_ridge_minimiser():
    w0, c, _, _ = _data(3, d=12, out=24)
    g = torch.Generator().manual_seed(9)
    ws = [w0 + 0.1 * torch.randn(w0.shape, generator=g, dtype=torch.float64) for _ in range(3)]
    w0s = [w0] * 3
    reg = 0.1
    x = closed_form_embedding(ws, w0s, c[:4], reg)
    # gradient of sum |W x - W0 t|^2 + reg |x|^2 vanishes
    grad = sum(w.T @ (w @ x.T - w0 @ c[:4].T) for w, w0 in zip(ws, w0s)) + reg * x.T
    assert grad.abs().max() < 1e-8
    # with the original weights and no regulariser, the concept's own keys come back
    x = closed_form_embedding(w0s, w0s, c[:4], 1e-9)
    torch.testing.assert_close(x, c[:4], rtol=1e-4, atol=1e-4)


def test_saliency_mask_keeps_the_largest_gradients_over_all_tensors():
    g = torch.Generator().manual_seed(0)
    grads = {"a": torch.randn(6, 5, generator=g), "b": -10 - torch.rand(7, generator=g), "c": 0.01 * torch.ones(3)}
    mask = saliency_mask(grads, 0.4)
    flat = torch.cat([v.abs().flatten() for v in grads.values()])
    kept = torch.cat([m.flatten() for m in mask.values()])
    assert int(kept.sum()) == round(0.4 * flat.numel())
    assert flat[kept].min() >= flat[~kept].max()  # one global threshold, not one per tensor
    assert bool(mask["b"].all()) and not bool(mask["c"].any())
    assert {k: m.shape for k, m in mask.items()} == {k: v.shape for k, v in grads.items()}
    assert not any(m.any() for m in saliency_mask(grads, 0.0).values())
    assert all(m.all() for m in saliency_mask(grads, 1.0).values())
    with pytest.raises(ValueError, match="fraction"):
        saliency_mask(grads, 1.5)


def _pair(seed: int, n: int, conflict: bool | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Two random float64 gradients of ``n`` entries; with ``conflict`` set, ``g_u``'s sign is chosen so
    that ``<g_u, g_r>`` is negative (True) or positive (False)."""
    gen = torch.Generator().manual_seed(seed)
    g_u, g_r = torch.randn(2, n, generator=gen, dtype=torch.float64)
    if conflict is not None and bool((g_u @ g_r < 0) != conflict):
        g_u = -g_u
    return g_u, g_r


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**16), st.integers(2, 40), st.floats(0, 3), st.floats(1e-3, 1.0))
def test_conflict_projection_only_ever_reduces_the_conflict(seed, n, lam, norm):
    g_u, g_r = _pair(seed, n, conflict=True)
    g_u = norm * g_u / g_u.norm()  # after clipping to norm 1, as DoCo does
    out = conflict_projection(g_u, g_r, lam)
    assert out @ g_r >= g_u @ g_r - 1e-12  # the conflict is never made worse
    r = g_r / g_r.norm()
    torch.testing.assert_close(out - (out @ r) * r, g_u - (g_u @ r) * r)  # the part orthogonal to g_r is kept
    # DoCo's rule: the correction is lam |cos| along g_r whatever |g_u| ...
    cos = (g_u / g_u.norm()) @ r
    torch.testing.assert_close(out, g_u - lam * cos * r)
    if lam == 1.0 or lam >= norm:  # ... so with |g_u| <= lam (lam 1 after clipping) no conflict is left
        assert out @ g_r >= -1e-10
    # scaled by |g_u|, lam 1 is PCGrad: exactly orthogonal to g_r
    pc = conflict_projection(g_u, g_r, 1.0, scale_by_norm=True)
    assert abs(float(pc @ r)) < 1e-10


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**16), st.integers(2, 40), st.floats(0, 3), st.booleans())
def test_conflict_projection_leaves_agreeing_gradients_unchanged(seed, n, lam, scale_by_norm):
    g_u, g_r = _pair(seed, n, conflict=False)
    assert torch.equal(conflict_projection(g_u, g_r, lam, scale_by_norm=scale_by_norm), g_u)
    zero = torch.zeros_like(g_r)  # no retention gradient: nothing to protect
    assert torch.equal(conflict_projection(g_u, zero, lam), g_u)


def test_conflict_projection_works_per_tensor_shape_and_dtype():
    g_u, g_r = _pair(3, 12, conflict=True)
    out = conflict_projection(g_u.reshape(3, 4).float(), g_r.reshape(3, 4).float(), 1.0)
    assert out.shape == (3, 4) and out.dtype == torch.float32
    torch.testing.assert_close(out.flatten().double(), conflict_projection(g_u, g_r, 1.0), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="lam"):
        conflict_projection(g_u, g_r, -1.0)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**16), st.integers(4, 24), st.integers(1, 20), st.floats(1e-3, 10.0))
def test_null_space_steering_map_leaves_retain_rows_at_zero(seed, d, rank, gamma) -> None:
    """MLLMEraser's closed form: W h_r = 0 for every retain row (and their span) when the retain rows
    do not span the space, while forget rows off that span are steered (W h_f != 0)."""
    rank = min(rank, d - 1)
    g = torch.Generator().manual_seed(seed)
    retain = torch.randn(3 * d, rank, generator=g, dtype=torch.float64) @ torch.randn(rank, d, generator=g,
                                                                                     dtype=torch.float64)
    forget = torch.randn(5, d, generator=g, dtype=torch.float64)
    targets = torch.randn(1, d, generator=g, dtype=torch.float64).expand(5, d)
    p = null_space_projector(retain)
    assert torch.allclose(p, p.T, atol=1e-10) and torch.allclose(p @ p, p, atol=1e-8)
    assert (retain @ p).abs().max() <= 1e-8 * retain.abs().max()
    w = null_space_steering_map(forget, targets, retain, gamma)
    scale = float(w.abs().max()) * float(retain.abs().max())
    assert w.shape == (d, d)
    assert (retain @ w.T).abs().max() <= 1e-7 * max(scale, 1e-12)
    mix = torch.randn(4, 3 * d, generator=g, dtype=torch.float64) @ retain  # anything in the retain span
    assert (mix @ w.T).abs().max() <= 1e-7 * max(scale, 1e-12) * 3 * d
    assert (forget @ w.T).norm() > 1e-6 * targets.norm()  # generic forget rows leave the span: steered


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**16), st.integers(4, 24), st.floats(0.5, 0.999))
def test_null_space_projector_keeps_at_most_the_unkept_energy(seed, d, energy) -> None:
    g = torch.Generator().manual_seed(seed)
    acts = torch.randn(2 * d, d, generator=g, dtype=torch.float64) * torch.linspace(0.1, 3, d, dtype=torch.float64)
    p = null_space_projector(acts, energy)
    assert float((acts @ p).pow(2).sum()) <= (1 - energy + 1e-9) * float(acts.pow(2).sum())
    assert torch.equal(null_space_projector(torch.zeros(3, d)), torch.eye(d, dtype=torch.float64))
    with pytest.raises(UserError):
        null_space_steering_map(acts, acts, acts, 0.0)
def _vector(seed: int, n: int, scale: float) -> torch.Tensor:
    return scale * torch.randn(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@settings(max_examples=80, deadline=None)
@given(st.integers(0, 2**16), st.integers(1, 40), st.floats(0, 1), st.floats(1e-3, 1e3))
def test_capped_simplex_projection_is_feasible_idempotent_and_the_nearest_point(seed, n, frac, scale):
    k = frac * n
    v = _vector(seed, n, scale)
    w = project_capped_simplex(v, k)
    assert float(w.min()) >= 0 and float(w.max()) <= 1
    assert abs(float(w.sum()) - k) < 1e-6
    torch.testing.assert_close(project_capped_simplex(w, k), w, atol=1e-7, rtol=0)  # feasible points stay
    order = torch.argsort(v)
    assert bool((w[order].diff() >= -1e-12).all())  # the order of v is kept
    # the nearest feasible point: <v - w, u - w> <= 0 for every feasible u (here: projections of others)
    for other in range(4):
        u = project_capped_simplex(_vector(seed + other + 1, n, 3.0), k)
        assert float((v - w) @ (u - w)) <= 1e-6 * max(1.0, scale)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**16), st.integers(2, 40), st.data())
def test_a_long_step_from_uniform_weights_lands_on_the_k_lowest_losses(seed, n, data):
    """gamma 0, w_lr large: one upper-level step is the top-K indicator of -loss."""
    k = data.draw(st.integers(1, n))
    loss = _vector(seed, n, 1.0)
    w = project_capped_simplex(torch.full((n,), k / n, dtype=torch.float64) - 1e6 * loss, k)
    expected = torch.zeros(n, dtype=torch.float64)
    expected[torch.argsort(loss)[:k]] = 1.0
    torch.testing.assert_close(w, expected, atol=1e-6, rtol=0)


def test_capped_simplex_projection_rejects_what_has_no_projection():
    with pytest.raises(ValueError, match="k"):
        project_capped_simplex(torch.zeros(3), 4)
    with pytest.raises(ValueError, match="finite"):
        project_capped_simplex(torch.tensor([0.0, float("nan")]), 1)
    assert project_capped_simplex(torch.tensor([0.3, 0.2], dtype=torch.float32), 1).dtype == torch.float32
