r"""Exact likelihoods through the probability-flow ODE (instantaneous change of variables).

Along the probability flow ``dx/dt = v(x, t)`` (``f(t) x − ½ g(t)² s(x, t)`` for a score model, the network
itself for a velocity model; an interpolant is read as its :class:`jaxdiff.paths.FlowProcess`), ``d log p_t(x_t)/dt = −∇·v(x_t, t)``, hence

    ``log p_{t_0}(x) = log p_prior(x_T) + ∫_{t_0}^{T} ∇·v(x_t, t) dt``,

solved forward from ``x`` at ``t_0`` (the process's ``t_min`` by default, score_sde's ``eps = 1e-5``) to
``T = t_max`` with diffrax (adaptive Tsit5 and a PID controller). The divergence is exact (a JVP per
data dimension: small dimensions) or Hutchinson's ``E[zᵀ (∂v/∂x) z]`` with one fixed probe per
example (Gaussian or Rademacher), unbiased for the log-likelihood.

``bits_per_dim`` turns a log density of dequantized n-level data into bits per dimension.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff import _validation as V
from jaxdiff import _xla
from jaxdiff.paths import Interpolant
from jaxdiff.processes import LinearProcess
from jaxdiff.sampling._core import Model
from jaxdiff.sampling.api import TRACES, resolve_model

Array = jax.Array

DIVERGENCES = ("hutchinson", "exact")
PROBES = ("rademacher", "gaussian")


def _divergence_exact(v_fn: Callable[[Array], Array], x: Array) -> tuple[Array, Array]:
    """``(v(x), ∇·v(x))`` per example, with one JVP per data dimension."""
    batch = x.shape[0]
    dim = int(np.prod(x.shape[1:]))
    basis = jnp.eye(dim, dtype=x.dtype).reshape((dim, 1) + x.shape[1:])
    basis = jnp.broadcast_to(basis, (dim,) + x.shape)

    def column(e):
        return jax.jvp(v_fn, (x,), (e,))

    values, jv = jax.vmap(column)(basis)
    div = jnp.sum((jv * basis).reshape(dim, batch, -1), axis=(0, 2))
    return values[0], div


def _divergence_hutchinson(v_fn: Callable[[Array], Array], x: Array, probe: Array) -> tuple[Array, Array]:
    """``(v(x), zᵀ (∂v/∂x) z)`` per example, one JVP."""
    value, jv = jax.jvp(v_fn, (x,), (probe,))
    return value, jnp.sum((jv * probe).reshape(x.shape[0], -1), axis=-1)


def log_likelihood(
    key: Array,
    params: Any,
    sde: LinearProcess | Interpolant,
    x: Array,
    *,
    score_fn: Callable | None = None,
    velocity_fn: Callable | None = None,
    divergence: str = "hutchinson",
    probe: str = "rademacher",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    t_start: float | None = None,
    max_steps: int = 4096,
    prior_log_prob: Callable | None = None,
    on_max_steps: str = "raise",
    return_info: bool = False,
    cond: Any = None,
):
    r"""``log p(x)`` per example under the model's probability-flow ODE, for every model family.

    Args:
      key: PRNG key for the Hutchinson probes.
      params, score_fn, velocity_fn: as :func:`jaxdiff.sample` (a model wrapper, or an analytic
        ``score_fn(params, x, t)`` / ``velocity_fn(params, x, t)``).
      sde: the process, or an interpolant path from ``N(0, I)`` (its target law's density is returned).
      x: data ``[batch, *data]``.
      divergence: ``"hutchinson"`` (one probe per example, unbiased) or ``"exact"`` (``D`` JVPs).
      probe: ``"rademacher"`` or ``"gaussian"`` Hutchinson probes.
      rtol, atol: tolerances of the adaptive solver.
      t_start: the process time the data lives at (default ``sde.t_min``; 0 for an interpolant's target).
      prior_log_prob: ``log p(x_T) -> [batch]`` of the noise/source end (default the process's prior).
      max_steps, on_max_steps: the solver's step cap, and what reaching it does: ``"raise"`` (diffrax's error) or
        ``"nan"`` (``log_p`` is NaN and ``info["converged"]`` False: an evaluation can cap its cost on a model
        whose ODE is still irregular, e.g. early in training).
      cond: class labels (an int or ints ``[batch]``) of a conditional model: ``log p(x | c)`` (default: the
        unconditional branch, ``log p(x)``); analytic functions then take ``f(params, x, t, cond)``.
    Returns:
      ``log_p [batch]``, or ``(log_p, info)`` with ``nfe``, ``converged``, ``prior_log_prob``, ``delta_log_prob``
      and ``latent`` (``x`` mapped to ``t_max``).
    """
    is_path = isinstance(sde, Interpolant)
    process = sde.as_process() if is_path else sde
    V.check_choice("divergence", divergence, DIVERGENCES)
    V.check_choice("probe", probe, PROBES)
    V.check_positive("rtol", rtol)
    V.check_positive("atol", atol)
    V.check_int_at_least("max_steps", max_steps, 1)
    V.check_choice("on_max_steps", on_max_steps, ("raise", "nan"))
    V.check_floating("x", x)
    if np.ndim(x) < 2:
        raise ValueError(f"x must have shape (batch, *data), got x.shape={np.shape(x)}.")
    if not isinstance(process, LinearProcess):
        raise TypeError(f"sde must be a jaxdiff process (a LinearProcess) or an interpolant, got {type(sde).__name__}.")
    if prior_log_prob is not None and not callable(prior_log_prob):
        raise TypeError(f"prior_log_prob must be callable prior_log_prob(x) -> [batch], got {type(prior_log_prob).__name__}.")
    t0 = float(process.t_min if t_start is None else t_start)
    lo, hi = process.time_domain
    V.check_time("t_start", t0, lo, hi, type(process).__name__)
    V.check_less("t_start", t0, "t_max", process.t_max)
    model = resolve_model(params, score_fn, velocity_fn, flow_time=is_path, takes_cond=cond is not None)
    if cond is not None:
        from jaxdiff.guidance import condition_model

        model = condition_model(model, cond, batch=int(np.shape(x)[0]))
    log_p, info = _solve(
        key, model, process, jnp.asarray(x), jnp.asarray(t0, jnp.result_type(x)),
        divergence=divergence, probe=probe, rtol=rtol, atol=atol, max_steps=max_steps, prior_log_prob=prior_log_prob,
        throw=on_max_steps == "raise",
    )
    return (log_p, info) if return_info else log_p


def _solve_impl(key, wrapper, sde, x, t0, *, divergence, probe, rtol, atol, max_steps, prior_log_prob, throw=True):
    TRACES["log_likelihood"] += 1  # (Python body: runs once per compilation)
    model = Model(sde=sde, wrapper=wrapper)
    if divergence == "hutchinson":
        z = (jax.random.rademacher(key, x.shape, x.dtype) if probe == "rademacher"
             else jax.random.normal(key, x.shape, x.dtype))

    def vector_field(t, state, args):
        y, _ = state

        def v(y_):
            return model.probability_flow(y_, t)

        if divergence == "exact":
            value, div = _divergence_exact(v, y)
        else:
            value, div = _divergence_hutchinson(v, y, z)
        return value, div

    solver = diffrax.Tsit5()
    t1 = jnp.asarray(sde.t_max, x.dtype)
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(vector_field),
        solver,
        t0=t0,
        t1=t1,
        dt0=(t1 - t0) / 32,
        y0=(x, jnp.zeros((x.shape[0],), x.dtype)),
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
        max_steps=max_steps,
        throw=throw,
    )
    latent, delta = sol.ys[0][-1], sol.ys[1][-1]
    prior = sde.prior_log_prob(latent) if prior_log_prob is None else prior_log_prob(latent)
    nfe = 6 * sol.stats["num_steps"] + 1  # Tsit5: 7 stages, first same as last (vector-field evaluations)
    converged = sol.result == diffrax.RESULTS.successful
    log_p = jnp.where(converged, prior + delta, jnp.nan)
    return log_p, {"nfe": nfe, "converged": converged, "prior_log_prob": prior, "delta_log_prob": delta,
                   "latent": latent}


_solve = _xla.jit(
    _solve_impl, static_argnames=("divergence", "probe", "rtol", "atol", "max_steps", "prior_log_prob", "throw")
)


def flow_log_likelihood(key: Array, params: Any, path: Interpolant, x: Array, *, velocity_fn: Callable | None = None,
                        source_log_prob: Callable | None = None, divergence: str = "exact", rtol: float = 1e-5,
                        atol: float = 1e-5, max_steps: int = 4096, return_info: bool = False):
    r"""``log p₁(x)`` of a flow's target law (``jaxdiff.flows.flow_log_likelihood``): :func:`log_likelihood` on the
    interpolant with the exact divergence by default and ``source_log_prob`` (default ``N(0, I)``) at ``t = 0``."""
    if not isinstance(path, Interpolant):
        raise TypeError(f"path must be a jaxdiff interpolant, got {type(path).__name__}.")
    return log_likelihood(key, params, path, x, velocity_fn=velocity_fn, divergence=divergence, rtol=rtol, atol=atol,
                          max_steps=max_steps, prior_log_prob=source_log_prob, return_info=return_info)


def dequantize(key: Array, x_int: Array, *, num_levels: int = 256, data_range: tuple[float, float] = (-1.0, 1.0)) -> Array:
    r"""Uniform dequantization: ``y = lo + (hi − lo) (k + u)/n`` with ``u ~ U[0, 1)`` for integer levels
    ``k ∈ {0, …, n−1}``."""
    V.check_int_at_least("num_levels", num_levels, 2)
    lo, hi = data_range
    V.check_less("data_range[0]", lo, "data_range[1]", hi)
    x_int = jnp.asarray(x_int)
    dtype = jnp.result_type(float)
    u = jax.random.uniform(key, x_int.shape, dtype)
    return lo + (hi - lo) * (x_int.astype(dtype) + u) / num_levels


def bits_per_dim(log_p: Array, num_dims: int, *, num_levels: int = 256, data_width: float = 2.0) -> Array:
    r"""Bits per dimension of n-level data from the log density ``log p(y)`` of its dequantized values
    on an interval of width ``data_width`` (2 for ``[−1, 1]``, 1 for ``[0, 1]``):

    ``bpd = −(log p(y) + D log(data_width / n)) / (D log 2)``, an upper bound on the discrete model's
    bits per dimension (e.g. a uniform density gives exactly ``log₂ n``; score_sde's "+7" for
    8-bit data in ``[−1, 1]`` is the ``−log₂(2/256)`` term).
    """
    V.check_int_at_least("num_dims", num_dims, 1)
    V.check_int_at_least("num_levels", num_levels, 2)
    V.check_positive("data_width", data_width)
    return -(jnp.asarray(log_p) + num_dims * math.log(data_width / num_levels)) / (num_dims * math.log(2.0))


__all__ = ["log_likelihood", "bits_per_dim", "dequantize"]
