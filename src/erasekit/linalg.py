"""Shared closed-form math (UCE, RECE, MLLMEraser's null-space steering map, and the closed-form
attacks) and gradient surgery, computed in float64.

Row convention: a set of ``n`` key vectors of width ``d`` is a ``(n, d)`` tensor ``C``, so
``sum_i c_i c_i^T = C^T C``. A projection ``W`` is ``(out, d)``.
"""

from __future__ import annotations

import torch

from erasekit.errors import UserError


def _f64(x: torch.Tensor) -> torch.Tensor:
    return x.detach().to(torch.float64)


def spd_solve_right(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ inv(b)`` for symmetric positive-definite ``b``, by Cholesky (no explicit inverse)."""
    chol = torch.linalg.cholesky(b)
    # X b = a  <=>  b X^T = a^T  (b symmetric)
    return torch.cholesky_solve(a.T, chol).T


def uce_right_factor(
    erase: torch.Tensor,
    guide: torch.Tensor,
    preserve: torch.Tensor | None,
    lamb: float,
    erase_scale: float = 1.0,
    preserve_scale: float = 1.0,
) -> torch.Tensor:
    """The ``(d, d)`` matrix ``M`` such that the UCE edit of every layer is ``W* = W0 @ M``.

    UCE (Gandikota et al. 2024, Eq. 7) with targets ``v*_i = W0 g_i`` and ``W0 c_j`` for preserved
    keys solves ``W* (lamb I + a_e C^T C + a_p P^T P) = lamb W0 + a_e W0 G^T C + a_p W0 P^T P``;
    every term on the right is ``W0 @ (...)``, so one ``d x d`` solve serves all layers.
    """
    d = erase.shape[1]
    c, g = _f64(erase), _f64(guide)
    eye = torch.eye(d, dtype=torch.float64)
    lhs = lamb * eye + erase_scale * (c.T @ c)
    rhs = lamb * eye + erase_scale * (g.T @ c)
    if preserve is not None and preserve.numel():
        p = _f64(preserve)
        pp = preserve_scale * (p.T @ p)
        lhs = lhs + pp
        rhs = rhs + pp
    return spd_solve_right(rhs, lhs)


def fuse_closed_form(
    targets: list[tuple[torch.Tensor, torch.Tensor]],
    anchor: torch.Tensor,
    lamb: float,
    prior: torch.Tensor | None = None,
    prior_weight: torch.Tensor | None = None,
    prior_scale: float = 0.0,
) -> torch.Tensor:
    """MACE's closed-form fusion of several edits of one layer (Lu et al. 2024, Eq. 10):
    ``argmin_W sum_i |W E_i^T - W_i E_i^T|^2 + lamb |W - anchor|^2 + s |W P^T - W_p P^T|^2``
    for edits ``W_i`` each meant for its keys ``E_i`` ``(n_i, d)``: the weight that does what every
    edit does on its own keys, stays near ``anchor`` elsewhere, and keeps ``W_p``'s outputs on the
    prior keys ``P``. Returned in ``anchor``'s dtype."""
    d = anchor.shape[1]
    lhs = lamb * torch.eye(d, dtype=torch.float64)
    rhs = lamb * _f64(anchor)
    for w, e in targets:
        ee = _f64(e).T @ _f64(e)
        lhs = lhs + ee
        rhs = rhs + _f64(w) @ ee
    if prior is not None and prior.numel() and prior_scale > 0:
        pp = prior_scale * (_f64(prior).T @ _f64(prior))
        lhs = lhs + pp
        rhs = rhs + _f64(anchor if prior_weight is None else prior_weight) @ pp
    return spd_solve_right(rhs, lhs).to(anchor.dtype)


def edit_weight(weight: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``weight @ factor`` in float64, returned in the weight's dtype."""
    return (_f64(weight) @ factor).to(weight.dtype)


def closed_form_embedding(
    weights: list[torch.Tensor], originals: list[torch.Tensor], targets: torch.Tensor, reg: float
) -> torch.Tensor:
    """RECE's adversarial keys (Gong et al. 2024): ``argmin_c sum_l |W_l c - W0_l t|^2 + reg |c|^2``.

    For every row ``t`` of ``targets`` ``(n, d)``, returns the key that makes the edited layers
    ``W_l`` output what the original layers ``W0_l`` output for ``t``:
    ``c = (sum W_l^T W_l + reg I)^-1 (sum W_l^T W0_l) t``.
    """
    d = targets.shape[1]
    gram = reg * torch.eye(d, dtype=torch.float64)
    cross = torch.zeros(d, d, dtype=torch.float64)
    for w, w0 in zip(weights, originals):
        w, w0 = _f64(w), _f64(w0)
        gram = gram + w.T @ w
        cross = cross + w.T @ w0
    rhs = cross @ _f64(targets).T  # (d, n)
    chol = torch.linalg.cholesky(gram)
    return torch.cholesky_solve(rhs, chol).T.to(targets.dtype)


def project_out_rows(weight: torch.Tensor, direction: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """``W - scale r r^T W`` for a matrix ``W (d, in)`` writing into a space where ``r (d,)`` lives.

    Directional ablation baked into weights (Arditi et al. 2024): with ``scale=1`` and unit ``r``,
    ``r^T W = 0``, so the layer can no longer write along ``r``.
    """
    w, r = _f64(weight), _f64(direction)
    r = r / r.norm()
    return (w - scale * torch.outer(r, r @ w)).to(weight.dtype)


def project_out_cols(weight: torch.Tensor, direction: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """``W - scale W r r^T`` for ``W (n, d)`` whose rows live in ``r``'s space (token embeddings)."""
    return project_out_rows(weight.T, direction, scale).T.contiguous()


def orthogonal_to_span(g: torch.Tensor, basis: list[torch.Tensor], tol: float = 1e-10) -> torch.Tensor:
    """The component of the flat vector ``g`` orthogonal to ``span(basis)`` (Gram-Schmidt via QR, float64).

    Geometric-disentanglement unlearning (GU, arXiv 2511.17100) keeps only this component of the
    forget update, so the retain loss is unchanged to first order.
    """
    if not basis:
        return g
    m = torch.stack([_f64(b) for b in basis], 1)  # (n, k)
    q, r = torch.linalg.qr(m)
    keep = r.diagonal().abs() > tol * max(1.0, float(r.diagonal().abs().max()))
    q = q[:, keep]
    g64 = _f64(g)
    return (g64 - q @ (q.T @ g64)).to(g.dtype)


def conflict_projection(g_u: torch.Tensor, g_r: torch.Tensor, lam: float = 1.0, *,
                        scale_by_norm: bool = False) -> torch.Tensor:
    """The unlearning gradient ``g_u`` with its conflict with the retention gradient ``g_r`` reduced.

    DoCo's concept-preserving gradient (Wu et al., AAAI 2025), per parameter tensor: with unit
    vectors ``u = g_u/|g_u|`` and ``r = g_r/|g_r|``, if ``<u, r> < 0`` then
    ``g_u <- g_u - lam <u, r> r``; otherwise ``g_u`` is returned unchanged. This is the rule of both
    public reimplementations (fmp453/erase-eval, CUIG): the correction has length ``lam |cos|``
    whatever ``|g_u|``, so after clipping the gradient norm to 1, ``lam = 1`` leaves ``<g_u, g_r> >= 0``.
    ``scale_by_norm`` multiplies the correction by ``|g_u|``, which with ``lam = 1`` is PCGrad's
    projection onto the normal plane of ``g_r`` (Yu et al. 2020). Either way the part of ``g_u``
    orthogonal to ``g_r`` is kept, and ``<g_u, g_r>`` never decreases for ``lam >= 0``. (The codes add
    1e-8 to the norms; here a zero gradient is returned unchanged instead.)
    """
    if lam < 0:
        raise UserError(f"lam: must be >= 0, got {lam}")
    u, r = _f64(g_u).flatten(), _f64(g_r).flatten()
    u_norm, r_norm = u.norm(), r.norm()
    if u_norm == 0 or r_norm == 0:  # nothing to correct, or nothing to protect
        return g_u
    r_hat = r / r_norm
    cos = (u @ r_hat) / u_norm
    if cos >= 0:
        return g_u
    step = lam * cos * (u_norm if scale_by_norm else 1.0)
    return (u - step * r_hat).reshape(g_u.shape).to(g_u.dtype)


def saliency_mask(grads: dict[str, torch.Tensor], fraction: float) -> dict[str, torch.Tensor]:
    """Boolean masks of the ``fraction`` of entries with the largest ``|g|`` over all tensors together.

    SalUn's weight saliency (Fan et al., ICLR 2024): one global threshold over the forget loss's
    gradient, so a tensor may be wholly salient, partly, or not at all. Ties at the threshold are
    broken by position (``torch.topk``); ``fraction`` 0 selects nothing, 1 everything.
    """
    if not 0.0 <= fraction <= 1.0:
        raise UserError(f"fraction: must be in [0, 1], got {fraction}")
    flat = torch.cat([g.detach().abs().flatten().float() for g in grads.values()])
    keep = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
    k = round(fraction * flat.numel())
    if k > 0:
        keep[torch.topk(flat, k, sorted=False).indices] = True
    out, start = {}, 0
    for name, g in grads.items():
        out[name] = keep[start : start + g.numel()].reshape(g.shape)
        start += g.numel()
    return out


def quantize_rtn(weight: torch.Tensor, bits: int) -> torch.Tensor:
    """Per-row symmetric round-to-nearest fake quantisation to ``bits`` bits (int8 / int4 without a backend).

    ``scale = max|w_row| / (2^(bits-1) - 1)``; any ``W + d`` with ``|d| < scale / 2`` (and the same
    row maxima) rounds back to the same grid point as ``W`` when ``W`` is on the grid.
    """
    if bits < 2 or bits > 16:
        raise UserError(f"bits: must be in 2..16, got {bits}")
    w = _f64(weight)
    qmax = 2 ** (bits - 1) - 1
    scale = w.abs().amax(dim=-1, keepdim=True).clamp(min=1e-12) / qmax
    return (torch.round(w / scale).clamp(-qmax, qmax) * scale).to(weight.dtype)


def null_space_projector(acts: torch.Tensor, energy: float = 1.0, rtol: float = 1e-10) -> torch.Tensor:
    """The ``(d, d)`` float64 projector onto the (approximate) null space of the rows of ``acts`` ``(n, d)``.

    Eigen-directions of ``acts^T acts`` are taken from the smallest eigenvalue up while they hold at
    most ``1 - energy`` of the total energy (plus ``rtol``, so ``energy=1`` keeps the exact null
    space of rank-deficient ``acts``); ``|P a|^2 <= (1 - energy + rtol) sum |a_i|^2`` summed over
    the rows. AlphaEdit's and MLLMEraser's retain projector (there: eigenvalues below a threshold).
    """
    if not 0.0 < energy <= 1.0:
        raise UserError(f"energy: must be in (0, 1], got {energy}")
    a = _f64(acts)
    evals, evecs = torch.linalg.eigh(a.T @ a)  # ascending
    evals = evals.clamp(min=0)
    total = float(evals.sum())
    if total == 0:
        return torch.eye(a.shape[1], dtype=torch.float64)
    keep = torch.cumsum(evals, 0) / total <= (1.0 - energy) + rtol
    u = evecs[:, keep]
    return u @ u.T


def null_space_steering_map(forget: torch.Tensor, targets: torch.Tensor, retain: torch.Tensor, gamma: float,
                            energy: float = 1.0) -> torch.Tensor:
    """MLLMEraser's input-aware steering map (Ding et al. 2025, arXiv 2510.04217), in float64.

    With ``P`` the :func:`null_space_projector` of the ``retain`` rows, forget rows ``H_f`` ``(n, d)``
    and their targets ``D`` ``(n, k)``: ``W = D^T H_f P (P H_f^T H_f P + gamma P)^+`` ``(k, d)``, the
    ridge least-squares map with ``W h_f ~ d`` on the forget rows whose input is restricted to the
    retain null space, so ``W h_r = W P h_r ~ 0`` for retain rows (exactly 0 for ``energy=1`` when the
    retain rows do not span the space). The pseudo-inverse is taken on ``range(P)``, where every
    eigenvalue is at least ``gamma``.
    """
    if gamma <= 0:
        raise UserError(f"gamma: must be > 0, got {gamma}")
    p = null_space_projector(retain, energy)
    hp = _f64(forget) @ p
    evals, evecs = torch.linalg.eigh(hp.T @ hp + gamma * p)
    keep = evals > gamma / 2  # range(P); the rest is the kernel P leaves
    pinv = (evecs[:, keep] / evals[keep]) @ evecs[:, keep].T
    return _f64(targets).T @ hp @ pinv
def project_capped_simplex(v: torch.Tensor, k: float, tol: float = 1e-9, max_iter: int = 200) -> torch.Tensor:
    """The Euclidean projection of ``v`` onto ``{w : 0 <= w <= 1, sum w = k}``, by bisection.

    The worst-case forget-set selection of Fan et al. (Challenging Forgets, ECCV 2024) keeps its
    weights there: the projection is ``clamp(v - tau, 0, 1)`` for the shift ``tau`` at which the
    sum is ``k`` (the sum falls monotonically in ``tau``, from ``n`` at ``min v - 1`` to 0 at
    ``max v``), found by bisection to ``tol`` on the sum. Order-preserving: ``v_i >= v_j`` gives
    ``w_i >= w_j``. Returned in ``v``'s dtype.
    """
    if v.ndim != 1 or not v.numel():
        raise UserError(f"v: must be a non-empty vector, got shape {tuple(v.shape)}")
    n = v.numel()
    if not 0 <= k <= n:
        raise UserError(f"k: must be in [0, {n}], got {k}")
    x = _f64(v)
    if not torch.isfinite(x).all():
        raise UserError("v: must be finite")
    low, high = float(x.min()) - 1.0, float(x.max())  # sum n at low, 0 at high
    for _ in range(max_iter):
        mid = 0.5 * (low + high)
        total = float((x - mid).clamp(0.0, 1.0).sum())
        if abs(total - k) <= tol:
            break
        if total > k:
            low = mid
        else:
            high = mid
    return (x - mid).clamp(0.0, 1.0).to(v.dtype)
