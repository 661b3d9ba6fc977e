r"""Time grids and the EDM/k-diffusion noise variable.

Every linear process ``x_t = α x_0 + σ ε`` has the scaled state ``x̃ = x/α`` and noise level
``σ̃ = σ/α = e^{−λ/2}`` (λ the log-SNR); its probability-flow ODE in those variables is
``dx̃/dσ̃ = (x̃ − D(x̃; σ̃))/σ̃`` for every process (Karras et al. 2022), with ``D = E[x_0 | x_t]``.
Samplers that step in ``σ̃`` (DDIM, EDM, DPM-Solver++, ...) therefore compute exactly what
k-diffusion computes for the same ``σ̃`` grid.

Convention: time ``t = 0`` means clean data for every process (``α = 1, σ = σ̃ = 0``), also for VE whose
``σ(0) = σ_min``; a grid ending at 0 makes the last step return the denoised estimate.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff import _validation as V
from jaxdiff.processes import LinearProcess

Array = jax.Array

GRIDS = ("time_uniform", "logsnr_uniform", "karras", "time_quadratic")


def alpha_sigma(sde: LinearProcess, t: Array) -> tuple[Array, Array]:
    """``(α(t), σ(t))`` with the clean-data convention at ``t = 0`` (traced ``t`` allowed)."""
    t = jnp.asarray(t)
    safe = jnp.where(t == 0, jnp.asarray(sde.t_max, t.dtype) * 0.5, t)
    alpha = jnp.where(t == 0, 1.0, sde._alpha(safe))
    sigma = jnp.where(t == 0, 0.0, sde._sigma(safe))
    return alpha, sigma


def sigma_tilde(sde: LinearProcess, t: Array) -> Array:
    """``σ̃(t) = σ(t)/α(t)`` (0 at ``t = 0``)."""
    alpha, sigma = alpha_sigma(sde, t)
    return sigma / alpha


def time_of_sigma_tilde(sde: LinearProcess, s: Array) -> Array:
    """Inverse of :func:`sigma_tilde`: the process time with ``σ(t)/α(t) = s`` (``s = 0`` → 0)."""
    s = jnp.asarray(s)
    safe = jnp.where(s > 0, s, 1.0)
    return jnp.where(s > 0, sde.t_from_log_snr(-2.0 * jnp.log(safe)), 0.0)


def _np_sigma_tilde(sde: LinearProcess, t: np.ndarray) -> np.ndarray:
    with jax.ensure_compile_time_eval():
        return np.asarray(sigma_tilde(sde, jnp.asarray(t, jnp.float64 if jax.config.jax_enable_x64 else None)), np.float64)


def _np_time_of_sigma_tilde(sde: LinearProcess, s: np.ndarray) -> np.ndarray:
    with jax.ensure_compile_time_eval():
        return np.array(time_of_sigma_tilde(sde, jnp.asarray(s)), np.float64)


def karras_sigmas(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> np.ndarray:
    """EDM's ``σ_i = (σ_max^{1/ρ} + i/(n−1) (σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ``, ``i = 0 … n−1`` (float64)."""
    ramp = np.linspace(0.0, 1.0, n)
    lo, hi = sigma_min ** (1.0 / rho), sigma_max ** (1.0 / rho)
    return (hi + ramp * (lo - hi)) ** rho


def time_grid(
    sde: LinearProcess,
    steps: int,
    kind: str = "time_uniform",
    *,
    t_start: float | None = None,
    t_end: float | None = None,
    rho: float = 7.0,
    sigma_min: float | None = None,
) -> np.ndarray:
    """A decreasing grid of ``steps + 1`` process times from ``t_start`` (default ``t_max``) to ``t_end``
    (default ``sde.sampling_eps``), as float64 numpy.

    ``kind``: ``"time_uniform"`` (uniform in t), ``"logsnr_uniform"`` (uniform in λ),
    ``"karras"`` (EDM's ρ-schedule in ``σ̃``), ``"time_quadratic"`` (uniform in √t, DDIM's quadratic).
    Where ``α(t_start) = 0`` (a flow's source end, ``σ̃ = ∞``) the ``σ̃``-based grids keep ``t_start`` and
    place their remaining ``steps − 1`` intervals from the second point of the time-uniform grid on. With ``t_end = 0`` the λ- and σ̃-based grids place their ``steps`` noisy points between
    ``t_start`` and ``sde.sampling_eps`` and append 0 (k-diffusion's ``append_zero``).
    """
    V.check_int_at_least("steps", steps, 1)
    V.check_choice("grid", kind, GRIDS)
    t0 = float(sde.t_max if t_start is None else t_start)
    t1 = float(sde.sampling_eps if t_end is None else t_end)
    lo, hi = sde.time_domain
    V.check_time("t_end", t1, lo, hi, type(sde).__name__)
    V.check_time("t_start", t0, lo, hi, type(sde).__name__)
    V.check_less("t_end", t1, "t_start", t0)
    if kind == "time_uniform":
        return np.linspace(t0, t1, steps + 1)
    if kind == "time_quadratic":
        return np.linspace(np.sqrt(t0), np.sqrt(t1), steps + 1) ** 2
    ends_at_zero = t1 == 0.0
    n_points = steps if ends_at_zero else steps + 1
    t_low = float(sde.sampling_eps) if ends_at_zero else t1
    if ends_at_zero and steps == 1:
        return np.array([t0, 0.0])
    s_max, s_min = _np_sigma_tilde(sde, np.array([t0, t_low]))
    if not np.isfinite(s_max):  # a flow's source end (α = 0): σ̃-grid from the second time-uniform point on
        if n_points <= 2:
            ts = np.array([t0, t_low])
            return np.append(ts, 0.0) if ends_at_zero else ts
        t_second = t0 - (t0 - t_low) / steps
        rest = time_grid(sde, steps - 1, kind, t_start=t_second, t_end=t1, rho=rho, sigma_min=sigma_min)
        return np.concatenate([[t0], rest])
    if sigma_min is not None:
        if not ends_at_zero:
            raise ValueError(
                f"sigma_min sets the last nonzero noise level of a grid that ends at t_end=0; got t_end={t1!r} "
                "(the grid then ends at t_end itself)."
            )
        with jax.ensure_compile_time_eval():
            s_floor = float(sde._sigma(jnp.asarray(lo)) / sde._alpha(jnp.asarray(lo)))  # the formula's σ̃ at the domain's start
        if not s_floor < sigma_min < s_max:
            raise ValueError(
                f"sigma_min must lie in ({s_floor!r}, {s_max!r}) for {type(sde).__name__} (σ̃ at t = {lo!r} and at "
                f"t_start), got sigma_min={sigma_min!r}."
            )
        s_min = float(sigma_min)
        t_low = float(_np_time_of_sigma_tilde(sde, np.array([s_min]))[0])
    if kind == "karras":
        sigmas = karras_sigmas(n_points, s_min, s_max, rho)
    else:  # logsnr_uniform: λ = −2 log σ̃ uniform ⇔ log σ̃ uniform
        sigmas = np.exp(np.linspace(np.log(s_max), np.log(s_min), n_points))
    ts = _np_time_of_sigma_tilde(sde, sigmas)
    ts[0], ts[-1] = t0, t_low  # exact end points (no round trip through the inverse)
    return np.append(ts, 0.0) if ends_at_zero else ts


def check_grid(sde: LinearProcess, ts) -> np.ndarray:
    """Validate a user grid: 1-D, at least 2 points, strictly decreasing, inside the time domain."""
    if isinstance(ts, jax.core.Tracer):
        raise ValueError("ts must be a concrete array (numpy or jax), not a traced value: the grid shapes the program.")
    arr = np.asarray(ts, dtype=np.float64)
    if arr.ndim != 1 or arr.shape[0] < 2:
        raise ValueError(f"ts must be a 1-D grid of at least 2 times, got ts.shape={arr.shape}.")
    if not np.all(np.diff(arr) < 0):
        raise ValueError(f"ts must be strictly decreasing (from noise to data), got ts={V._short(arr)}.")
    lo, hi = sde.time_domain
    V.check_time("ts", arr, lo, hi, type(sde).__name__)
    return arr
