r"""Draws of the training time ``t`` and their importance weights.

Every sampler returns ``(t, w)`` of shape ``[n]`` such that, for any ``h``,
``E[w · h(t)] = (1/(t_max − t_min)) ∫_{t_min}^{t_max} h(t) dt``: the estimate of the uniform-time
objective stays unbiased, only its variance changes.

* ``"uniform"``          ``t ~ U[t_min, t_max]`` i.i.d.
* ``"stratified"``       one draw in each of ``n`` equal strata, shuffled over the batch
* ``"low_discrepancy"``  ``u_i = (u_0 + i/n) mod 1`` (Kingma et al. 2021)
* ``"antithetic"``       pairs ``u, 1 − u``
* ``"importance"``       ``p(t) ∝ g(t)²/σ(t)² = −dλ/dt`` (λ the log-SNR), drawn by inverting λ; this
  makes the likelihood weighting ``λ(t) = g²`` of the score loss constant in ε-space
  (Song et al. 2021, "Maximum likelihood training of score-based diffusion models")
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from jaxdiff import _validation as V
from jaxdiff.processes import LinearProcess

Array = jax.Array
TimeSampler = Callable[[Array, int], tuple[Array, Array]]

TIME_SAMPLINGS = ("uniform", "stratified", "low_discrepancy", "antithetic", "importance")


def _unit_draws(key: Array, n: int, method: str, dtype: Any) -> Array:
    """``n`` numbers in ``[0, 1)`` whose empirical law is uniform, by ``method``."""
    if method == "uniform" or method == "importance":
        return jax.random.uniform(key, (n,), dtype)
    if method == "stratified":
        k_u, k_perm = jax.random.split(key)
        u = (jnp.arange(n, dtype=dtype) + jax.random.uniform(k_u, (n,), dtype)) / n
        return jax.random.permutation(k_perm, u)
    if method == "low_discrepancy":
        u0 = jax.random.uniform(key, (), dtype)
        return jnp.mod(u0 + jnp.arange(n, dtype=dtype) / n, 1.0)
    # antithetic
    half = (n + 1) // 2
    u = jax.random.uniform(key, (half,), dtype)
    return jnp.concatenate([u, 1.0 - u])[:n]


def make_time_sampler(
    sde: LinearProcess,
    method: str = "uniform",
    *,
    t_min: float | None = None,
    t_max: float | None = None,
) -> TimeSampler:
    """A sampler ``(key, n) -> (t [n], weight [n])`` on ``[t_min, t_max]`` (the process's by default)."""
    V.check_choice("time_sampling", method, TIME_SAMPLINGS)
    lo = float(sde.t_min if t_min is None else t_min)
    hi = float(sde.t_max if t_max is None else t_max)
    V.check_less("t_min", lo, "t_max", hi)
    V.check_time("t_min", lo, *sde.time_domain, type(sde).__name__)
    V.check_time("t_max", hi, *sde.time_domain, type(sde).__name__)
    dtype = jnp.result_type(float)

    if method != "importance":

        def sampler(key, n):
            u = _unit_draws(key, n, method, dtype)
            return lo + (hi - lo) * u, jnp.ones((n,), dtype)

        return sampler

    lam_lo, lam_hi = sde.log_snr(lo), sde.log_snr(hi)  # λ(t_min) > λ(t_max)
    if not (jnp.isfinite(lam_lo) and jnp.isfinite(lam_hi)):
        raise ValueError(
            f"time_sampling='importance' needs a finite log-SNR at both ends, got log_snr(t_min={lo!r}) = "
            f"{float(lam_lo)!r} and log_snr(t_max={hi!r}) = {float(lam_hi)!r}; use t_min > 0."
        )
    total = lam_lo - lam_hi

    def importance_sampler(key, n):
        u = jax.random.uniform(key, (n,), dtype)
        t = jnp.clip(sde.t_from_log_snr(lam_lo - u * total), lo, hi)
        density = (sde._diffusion_sq(t) / sde._sigma(t) ** 2) / total  # p(t)
        return t, 1.0 / (density * (hi - lo))

    return importance_sampler


def discrete_time_sampler(times: Any) -> TimeSampler:
    """Uniform over a finite set of times (e.g. NCSN's noise levels), weight 1."""
    times = jnp.asarray(times)
    if times.ndim != 1 or times.shape[0] < 1:
        raise ValueError(f"times must be a non-empty 1-D array, got times.shape={times.shape}.")

    def sampler(key, n):
        idx = jax.random.randint(key, (n,), 0, times.shape[0])
        return times[idx], jnp.ones((n,), times.dtype)

    return sampler


def constant_time_sampler(t: float) -> TimeSampler:
    """Every draw is ``t`` (for fitting a score at one noise level)."""

    def sampler(key, n):
        dtype = jnp.result_type(float)
        return jnp.full((n,), t, dtype), jnp.ones((n,), dtype)

    return sampler


def resolve_time_sampler(sde: LinearProcess, time_sampling: str | TimeSampler) -> TimeSampler:
    """A sampler from a name in ``TIME_SAMPLINGS`` or a callable ``(key, n) -> (t, weight)``."""
    if callable(time_sampling):
        return time_sampling
    return make_time_sampler(sde, time_sampling)
