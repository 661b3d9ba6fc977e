r"""Couplings of two batches ``x₀ [n, *data]`` and ``x₁ [m, *data]``: independent, minibatch exact OT,
minibatch entropic OT (Sinkhorn, through ott-jax) and paired data.

The OT problems use the squared Euclidean cost on flattened data, ``C_ij = |x₀ᵢ − x₁ⱼ|²``, and
uniform marginals ``1/n``, ``1/m``:

* exact       ``min_P ⟨P, C⟩``                 (a linear program; an assignment when ``n = m``)
* entropic    ``min_P ⟨P, C⟩ − ε H(P)``,  ``H(P) = −Σ P log P``   (POT's convention, raw cost)

The entropic plan of parameter ``ε`` is the minibatch estimate of the Schrödinger bridge with
reference ``√(ε/2) W`` (the cost ``½|x − y|²`` with regularization ``ε/2``): SB-CFM with bridge noise
``σ`` uses ``ε = 2σ²``.

Exact plans are computed on the host (``scipy.optimize.linear_sum_assignment`` for ``n = m``,
HiGHS' LP otherwise) through ``jax.pure_callback``, so they work inside ``jit``; ott-jax has no exact
solver for point clouds. Entropic plans use ott-jax's Sinkhorn in log-space.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

COUPLINGS = ("independent", "exact", "sinkhorn", "paired")


def _flatten_pair(x0: Any, x1: Any) -> tuple[Array, Array]:
    x0, x1 = jnp.asarray(x0), jnp.asarray(x1)
    if x0.ndim < 2 or x1.ndim < 2:
        raise ValueError(f"x0 and x1 must have shape [batch, *data], got {tuple(x0.shape)} and {tuple(x1.shape)}.")
    if x0.shape[1:] != x1.shape[1:]:
        raise ValueError(f"x0 and x1 must have the same data shape, got {tuple(x0.shape[1:])} and {tuple(x1.shape[1:])}.")
    return x0.reshape(x0.shape[0], -1), x1.reshape(x1.shape[0], -1)


def squared_distances(x0: Array, x1: Array) -> Array:
    """``C_ij = |x₀ᵢ − x₁ⱼ|²`` for flattened ``x₀ [n, D]``, ``x₁ [m, D]``: ``[n, m]``."""
    sq0 = jnp.sum(x0**2, axis=-1)[:, None]
    sq1 = jnp.sum(x1**2, axis=-1)[None, :]
    return jnp.maximum(sq0 + sq1 - 2.0 * x0 @ x1.T, 0.0)


def _exact_plan_host(cost: np.ndarray) -> np.ndarray:
    """Exact uniform-marginal OT plan of a cost matrix, on the host (float64)."""
    from scipy.optimize import linear_sum_assignment, linprog

    cost = np.asarray(cost, np.float64)
    n, m = cost.shape
    plan = np.zeros((n, m), np.float64)
    if n == m:
        rows, cols = linear_sum_assignment(cost)
        plan[rows, cols] = 1.0 / n
        return plan
    from scipy.sparse import coo_matrix, vstack

    idx = np.arange(n * m)
    row_sums = coo_matrix((np.ones(n * m), (idx // m, idx)), shape=(n, n * m))
    col_sums = coo_matrix((np.ones(n * m), (idx % m, idx)), shape=(m, n * m))
    a_eq = vstack([row_sums, col_sums]).tocsr()
    b_eq = np.concatenate([np.full(n, 1.0 / n), np.full(m, 1.0 / m)])
    res = linprog(cost.ravel(), A_eq=a_eq, b_eq=b_eq, bounds=(0, None), method="highs")
    if not res.success:  # pragma: no cover - HiGHS solves every feasible transport LP
        raise RuntimeError(f"exact OT linear program failed: {res.message}")
    return np.clip(res.x.reshape(n, m), 0.0, None)


def squared_euclidean_assignment(f0: np.ndarray, f1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r"""``(rows, cols)``: the permutation minimising ``Σᵢ |x₀ᵢ − x₁_{cols[i]}|²`` for equal-size flattened batches
    ``[n, D]`` (host, float64).

    ``|x − y|² = |x|² + |y|² − 2 x·y`` and the row and column terms are the same for every permutation, so the
    assignment is solved on ``−x₀ x₁ᵀ``: the same argmin, and scipy's solver is faster on it (``benchmarks/exact_ot.py``,
    2-core AMD EPYC: n = 256 in 2-D 10 ms instead of 14 ms, in 64-D 3 ms instead of 9 ms; n = 2000 3.3 s instead of
    5.0 s)."""
    from scipy.optimize import linear_sum_assignment

    f0, f1 = np.asarray(f0, np.float64), np.asarray(f1, np.float64)
    return linear_sum_assignment(-(f0 @ f1.T))


def _squared_euclidean_plan_host(f0: np.ndarray, f1: np.ndarray) -> np.ndarray:
    """The exact uniform-marginal OT plan of two equal-size point batches ``[n, D]`` (a permutation / n)."""
    rows, cols = squared_euclidean_assignment(f0, f1)
    plan = np.zeros((f0.shape[0], f1.shape[0]), np.float64)
    plan[rows, cols] = 1.0 / f0.shape[0]
    return plan


def exact_ot_plan(cost: Array) -> Array:
    """The exact OT plan ``argmin_P ⟨P, C⟩`` with uniform marginals for a cost ``[n, m]`` (host LP)."""
    cost = jnp.asarray(cost)
    out = jax.ShapeDtypeStruct(cost.shape, cost.dtype)
    return jax.pure_callback(lambda c: _exact_plan_host(c).astype(c.dtype), out, cost)


def sinkhorn_plan(
    x0: Array, x1: Array, epsilon: float, *, threshold: float = 1e-6, max_iterations: int = 5000
) -> Array:
    r"""Entropic plan ``argmin_P ⟨P, C⟩ − ε H(P)`` (raw squared-Euclidean cost, absolute ``ε``) by
    ott-jax's log-domain Sinkhorn; ``threshold`` is ott's marginal-error stopping criterion. Compiled once per
    shape (called eagerly, ott's loops would be traced again at every call: the training job's host coupling)."""
    return _sinkhorn_plan(jnp.asarray(x0), jnp.asarray(x1), jnp.asarray(epsilon, jnp.result_type(float)),
                          threshold=float(threshold), max_iterations=int(max_iterations))


@functools.partial(jax.jit, static_argnames=("threshold", "max_iterations"))
def _sinkhorn_plan(x0, x1, epsilon, *, threshold, max_iterations):
    from ott.geometry import costs, pointcloud
    from ott.solvers import linear

    geom = pointcloud.PointCloud(x0, x1, cost_fn=costs.SqEuclidean(), epsilon=epsilon)
    out = linear.solve(geom, threshold=threshold, max_iterations=max_iterations, lse_mode=True)
    return out.matrix


def ot_plan(x0: Any, x1: Any, *, epsilon: float | None = None, threshold: float = 1e-6,
            max_iterations: int = 5000) -> Array:
    r"""The coupling matrix ``P [n, m]`` (rows sum to ``1/n``, columns to ``1/m``) of the squared-Euclidean
    OT problem between two batches.

    ``epsilon=None``: exact, ``min ⟨P, C⟩`` (assignment / LP on the host). Otherwise entropic in POT's
    convention ``min ⟨P, C⟩ − ε H(P)`` on the raw cost ``C_ij = |x₀ᵢ − x₁ⱼ|²`` (ott-jax Sinkhorn).
    Data axes are flattened. Works under ``jit``.
    """
    f0, f1 = _flatten_pair(x0, x1)
    if epsilon is None:
        if f0.shape[0] != f1.shape[0]:
            return exact_ot_plan(squared_distances(f0, f1))
        # equal sizes: the points go to the host, which solves the assignment in float64
        out = jax.ShapeDtypeStruct((f0.shape[0], f1.shape[0]), jnp.result_type(f0.dtype, f1.dtype))
        return jax.pure_callback(lambda a, b: _squared_euclidean_plan_host(a, b).astype(out.dtype), out, f0, f1)
    if not isinstance(epsilon, jax.core.Tracer):
        if isinstance(epsilon, bool) or not float(epsilon) > 0:
            raise ValueError(f"epsilon must be None (exact OT) or a number > 0, got epsilon={epsilon!r}.")
    return sinkhorn_plan(f0, f1, epsilon, threshold=threshold, max_iterations=max_iterations)


def sample_plan(key: Array, plan: Array, num: int | None = None, *, replace: bool = True) -> tuple[Array, Array]:
    """Index pairs ``(i, j)`` drawn from a plan ``P [n, m]`` (``num`` draws, default ``n``).

    With ``replace=False`` the draws are distinct cells (torchcfm draws with replacement, the default).
    """
    n, m = plan.shape
    num = n if num is None else int(num)
    flat = plan.reshape(-1)
    flat = jnp.clip(flat, 0.0) / jnp.sum(jnp.clip(flat, 0.0))
    cells = jax.random.choice(key, n * m, (num,), replace=replace, p=flat)
    return cells // m, cells % m


def coupling_indices(key: Array, x0: Any, x1: Any, coupling: str = "independent", *, epsilon: float | None = None,
                     replace: bool = True) -> tuple[Array, Array]:
    r"""Row indices ``(i, j)`` (``n`` each) that pair ``x0[i]`` with ``x1[j]`` under ``coupling``.

    * ``"independent"`` / ``"paired"``: ``i = j = 0..n−1`` (rows already independent or paired);
    * ``"exact"``: minibatch exact OT; for equal batch sizes the plan is a permutation and ``j`` permutes
      ``x₁`` (no sampling noise); otherwise pairs are drawn from the plan;
    * ``"sinkhorn"``: ``n`` pairs drawn from the entropic plan of parameter ``epsilon`` (POT convention).
    """
    if coupling not in COUPLINGS:
        raise ValueError(f"coupling must be one of {COUPLINGS}, got coupling={coupling!r}.")
    host = not isinstance(x0, jax.core.Tracer) and not isinstance(x1, jax.core.Tracer)
    x0, x1 = (np.asarray(x0), np.asarray(x1)) if host else (jnp.asarray(x0), jnp.asarray(x1))
    if x0.ndim < 1 or x0.shape[1:] != x1.shape[1:]:
        raise ValueError(f"x0 and x1 must be batches of examples of the same shape, got x0.shape={x0.shape} and "
                         f"x1.shape={x1.shape}.")
    n = x0.shape[0]
    if coupling in ("independent", "paired"):
        if n != x1.shape[0]:
            raise ValueError(f"coupling={coupling!r} needs batches of equal size, got x0 with {n} rows and x1 with "
                             f"{x1.shape[0]}.")
        return jnp.arange(n), jnp.arange(n)
    if coupling == "sinkhorn":
        if epsilon is None:
            raise ValueError("coupling='sinkhorn' needs epsilon > 0 (the entropic regularization), got epsilon=None.")
        return sample_plan(key, ot_plan(x0, x1, epsilon=epsilon), n, replace=replace)
    if n == x1.shape[0] and host:
        # on the host (the training job's global-batch coupling): the assignment straight from the float64 points,
        # without the dense plan and its device round trips (41 → 6 ms at batch 256, measured)
        rows, cols = squared_euclidean_assignment(np.reshape(x0, (n, -1)), np.reshape(x1, (n, -1)))
        return jnp.asarray(rows), jnp.asarray(cols)
    plan = ot_plan(x0, x1)
    if n == x1.shape[0]:
        return jnp.arange(n), jnp.argmax(plan, axis=1)
    return sample_plan(key, plan, n, replace=replace)


def couple(key: Array, x0: Any, x1: Any, coupling: str = "independent", *, epsilon: float | None = None,
           replace: bool = True) -> tuple[Array, Array]:
    r"""Re-pair a source batch and a target batch according to ``coupling`` (see :func:`coupling_indices`).
    Returns ``(x0', x1')`` with ``n`` rows each."""
    if coupling in ("independent", "paired"):
        coupling_indices(key, x0, x1, coupling)  # validates the names and sizes
        return jnp.asarray(x0), jnp.asarray(x1)
    i, j = coupling_indices(key, x0, x1, coupling, epsilon=epsilon, replace=replace)
    return jnp.asarray(x0)[i], jnp.asarray(x1)[j]


def exact_w2(x0: Any, x1: Any) -> float:
    """Exact ``W₂`` between two empirical measures with uniform weights (host; assignment for equal sizes)."""
    f0 = np.asarray(x0, np.float64).reshape(np.shape(x0)[0], -1)
    f1 = np.asarray(x1, np.float64).reshape(np.shape(x1)[0], -1)
    if f0.shape[0] == f1.shape[0]:
        rows, cols = squared_euclidean_assignment(f0, f1)
        return float(np.sqrt(np.mean(np.sum((f0[rows] - f1[cols]) ** 2, axis=-1))))
    cost = ((f0[:, None, :] - f1[None, :, :]) ** 2).sum(-1) if f0.shape[0] * f1.shape[0] <= 4_000_000 else None
    if cost is None:
        cost = np.maximum((f0**2).sum(1)[:, None] + (f1**2).sum(1)[None, :] - 2.0 * f0 @ f1.T, 0.0)
    plan = _exact_plan_host(cost)
    return float(np.sqrt(np.sum(plan * cost)))
