r"""Interpolant paths between two laws: ``x_t = a(t) x₀ + b(t) x₁ + c(t) z``, ``z ~ N(0, I)``.

Source ``x₀`` sits at ``t = 0`` and target ``x₁`` at ``t = 1`` (the torchcfm / flow_matching
convention). A path is an immutable pytree (an ``equinox.Module``) fixed by the three coefficients
``(a, b, c)`` — the stochastic-interpolant form of Albergo & Vanden-Eijnden; everything else is
derived once, here:

* mean                     ``m_t = a(t) x₀ + b(t) x₁``, std ``c(t)``
* conditional velocity     ``u_t = ȧ x₀ + ḃ x₁ + ċ z = ȧ x₀ + ḃ x₁ + (ċ/c)(x_t − m_t)``
* conditional score        ``∇ log p(x_t | x₀, x₁) = −(x_t − m_t)/c²``  (where ``c > 0``)

Time derivatives come from forward-mode autodiff of the coefficients unless a path gives them in
closed form (the tests check both agree). ``t`` is a scalar or ``[batch]`` and broadcasts over the
data axes of ``x₀, x₁: [batch, *data]``.

The paths:
``LinearInterpolant(σ)``   ``(1−t) x₀ + t x₁ + σ z``            I-CFM; σ = 0 is rectified flow
``BrownianBridge(σ)``      ``(1−t) x₀ + t x₁ + σ√(t(1−t)) z``    SB-CFM / bridge matching (σ² = ε)
``TrigInterpolant()``      ``cos(πt/2) x₀ + sin(πt/2) x₁``         trigonometric / cosine
``OTPath(σ_min)``          ``(1 − (1−σ_min)t) x₀ + t x₁``          Lipman et al.'s OT path (x₀ noise)
``VPInterpolant(...)``     ``σ_VP(1−t) x₀ + α_VP(1−t) x₁``         the VP diffusion path in flow time
``StochasticInterpolant``  any ``(a, b, c)`` from a named family plus a bridge noise ``γ(t)``
"""

from __future__ import annotations

import abc
import math
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff import _validation as V
from jaxdiff.processes import LinearProcess, broadcast_time

Array = jax.Array


def _time(t: Any) -> Array:
    t = jnp.asarray(t)
    if not jnp.issubdtype(t.dtype, jnp.floating):
        t = t.astype(jnp.result_type(float))
    if t.ndim > 1:
        raise ValueError(f"t must be a scalar or have shape [batch], got shape {tuple(t.shape)}.")
    if not isinstance(t, jax.core.Tracer):
        tv = np.asarray(t)
        if tv.size and (tv.min() < 0.0 or tv.max() > 1.0):
            raise ValueError(f"t must lie in [0, 1] (source at 0, target at 1), got values in [{tv.min()}, {tv.max()}].")
    return t


def _check_nonnegative(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name} must be a number, got {value!r}.")
    value = float(value)
    if not (value >= 0.0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a finite number >= 0, got {name}={value!r}.")
    return value


def _check_pair(x0: Any, x1: Any) -> tuple[Array, Array]:
    x0, x1 = jnp.asarray(x0), jnp.asarray(x1)
    if x0.shape != x1.shape:
        raise ValueError(f"x0 and x1 must have the same shape [batch, *data], got {tuple(x0.shape)} and {tuple(x1.shape)}.")
    if x0.ndim < 1:
        raise ValueError("x0 and x1 must have shape [batch, *data].")
    return x0, x1


def _check_t_batch(t: Array, x: Array) -> None:
    if t.ndim == 1 and t.shape[0] != x.shape[0]:
        raise ValueError(f"t has shape {tuple(t.shape)} but the batch has {x.shape[0]} rows; t must be a scalar or [batch].")


def _combine(a: Array, b: Array, x0: Array, x1: Array) -> Array:
    """``a x₀ + b x₁`` with time coefficients broadcast over the data axes."""
    return broadcast_time(a, x0) * x0 + broadcast_time(b, x1) * x1


class Interpolant(eqx.Module):
    r"""Base class: ``x_t = a(t) x₀ + b(t) x₁ + c(t) z``.

    Subclasses implement ``_coefficients(t) -> (a, b, c)`` elementwise in ``t`` and may override
    ``_derivatives(t) -> (ȧ, ḃ, ċ)``. ``c(t) ≥ 0`` everywhere. ``t_min = 0``, ``t_max = 1``.
    """

    def __hash__(self) -> int:
        try:
            return eqx.Module.__hash__(self)
        except TypeError:
            return id(self)

    t_min = 0.0
    t_max = 1.0

    # --- subclasses ---------------------------------------------------------------------------
    @abc.abstractmethod
    def _coefficients(self, t: Array) -> tuple[Array, Array, Array]:
        """``(a(t), b(t), c(t))`` elementwise in ``t``."""

    def _derivatives(self, t: Array) -> tuple[Array, Array, Array]:
        _, tangents = jax.jvp(self._coefficients, (t,), (jnp.ones_like(t),))
        return tangents

    @property
    def is_stochastic(self) -> bool:
        """Whether ``c(t) > 0`` somewhere in ``(0, 1)`` (the path has a Gaussian bridge noise)."""
        return bool(np.asarray(self._coefficients(jnp.asarray(0.5))[2]) > 0)

    # --- public -------------------------------------------------------------------------------
    def coefficients(self, t: Any) -> tuple[Array, Array, Array]:
        """``(a(t), b(t), c(t))``, each of the shape of ``t``."""
        return self._coefficients(_time(t))

    def coefficient_derivatives(self, t: Any) -> tuple[Array, Array, Array]:
        """``(ȧ(t), ḃ(t), ċ(t))``, each of the shape of ``t``."""
        return self._derivatives(_time(t))

    def mean(self, x0: Any, x1: Any, t: Any) -> Array:
        """``m_t = a(t) x₀ + b(t) x₁``: ``[batch, *data]``."""
        x0, x1 = _check_pair(x0, x1)
        t = _time(t)
        _check_t_batch(t, x0)
        a, b, _ = self._coefficients(t)
        return _combine(a, b, x0, x1)

    def std(self, t: Any) -> Array:
        """``c(t)``, the standard deviation of ``x_t`` given ``(x₀, x₁)``; the shape of ``t``."""
        return self._coefficients(_time(t))[2]

    def sample(self, x0: Any, x1: Any, t: Any, z: Any) -> Array:
        """``x_t = m_t + c(t) z`` for a given standard normal ``z`` of the shape of ``x₀``."""
        x0, x1 = _check_pair(x0, x1)
        z = jnp.asarray(z)
        if z.shape != x0.shape:
            raise ValueError(f"z must have the shape of x0 {tuple(x0.shape)}, got {tuple(z.shape)}.")
        t = _time(t)
        _check_t_batch(t, x0)
        a, b, c = self._coefficients(t)
        return _combine(a, b, x0, x1) + broadcast_time(c, z) * z

    def conditional_velocity(self, x0: Any, x1: Any, t: Any, x_t: Any) -> Array:
        r"""``u_t(x_t | x₀, x₁) = ȧ x₀ + ḃ x₁ + (ċ/c)(x_t − m_t)`` (the ``z`` term is 0 where ``c = 0``).

        This is ``d x_t / dt`` along the path with ``z`` held fixed: the regression target of
        conditional flow matching.
        """
        x0, x1 = _check_pair(x0, x1)
        x_t = jnp.asarray(x_t)
        if x_t.shape != x0.shape:
            raise ValueError(f"x_t must have the shape of x0 {tuple(x0.shape)}, got {tuple(x_t.shape)}.")
        t = _time(t)
        _check_t_batch(t, x0)
        a, b, c = self._coefficients(t)
        da, db, dc = self._derivatives(t)
        mean = _combine(a, b, x0, x1)
        safe_c = jnp.where(c > 0, c, 1.0)
        ratio = jnp.where(c > 0, dc / safe_c, 0.0)
        return _combine(da, db, x0, x1) + broadcast_time(ratio, x_t) * (x_t - mean)

    def velocity_from_noise(self, x0: Any, x1: Any, t: Any, z: Any) -> Array:
        """``ȧ x₀ + ḃ x₁ + ċ z``: the conditional velocity written with the noise ``z`` (no division by ``c``)."""
        x0, x1 = _check_pair(x0, x1)
        t = _time(t)
        da, db, dc = self._derivatives(t)
        z = jnp.asarray(z)
        return _combine(da, db, x0, x1) + broadcast_time(dc, z) * z

    def reversed(self) -> "ReversedInterpolant":
        """The same path read from target to source: ``a'(t) = b(1−t)``, ``b'(t) = a(1−t)``, ``c'(t) = c(1−t)``."""
        return ReversedInterpolant(self)

    def as_process(self, *, source_std: float = 1.0, gaussian_source: bool = True, t_min: float = 0.0,
                   sampling_eps: float = 1e-3) -> "FlowProcess":
        """This path as a :class:`FlowProcess` (process time ``s = 1 − t``; see there)."""
        return FlowProcess(self, source_std=source_std, gaussian_source=gaussian_source, t_min=t_min,
                           sampling_eps=sampling_eps)

    def conditional_score(self, x0: Any, x1: Any, t: Any, x_t: Any) -> Array:
        """``∇ log N(x_t; m_t, c² I) = −(x_t − m_t)/c²`` (defined where ``c(t) > 0``)."""
        x_t = jnp.asarray(x_t)
        mean = self.mean(x0, x1, t)
        c = broadcast_time(self.std(t), x_t)
        return -(x_t - mean) / c**2


class LinearInterpolant(Interpolant):
    r"""``x_t = (1 − t) x₀ + t x₁ + σ z`` (I-CFM of Tong et al.; ``σ = 0`` is rectified flow)."""

    sigma: float = 0.0

    def __init__(self, sigma: float = 0.0):
        self.sigma = _check_nonnegative("sigma", sigma)

    def _coefficients(self, t):
        return 1.0 - t, t, jnp.full_like(t, self.sigma)

    def _derivatives(self, t):
        return -jnp.ones_like(t), jnp.ones_like(t), jnp.zeros_like(t)


class BrownianBridge(Interpolant):
    r"""``x_t = (1 − t) x₀ + t x₁ + σ √(t(1 − t)) z``: the Brownian bridge of ``σ W`` pinned at
    ``x₀, x₁`` (SB-CFM of Tong et al., bridge matching; the Schrödinger bridge with ``ε = σ²``).
    Albergo & Vanden-Eijnden's ``γ(t) = √(2t(1−t))`` is ``σ = √2``."""

    sigma: float = 1.0

    def __init__(self, sigma: float = 1.0):
        self.sigma = _check_nonnegative("sigma", sigma)

    @property
    def epsilon(self) -> float:
        """``ε = σ²``, the entropic regularization of the bridge's reference ``√ε W``."""
        return self.sigma**2

    def _coefficients(self, t):
        return 1.0 - t, t, self.sigma * jnp.sqrt(jnp.clip(t * (1.0 - t), 0.0))

    def _derivatives(self, t):
        root = jnp.sqrt(jnp.clip(t * (1.0 - t), 0.0))
        safe = jnp.where(root > 0, root, 1.0)
        dc = jnp.where(root > 0, self.sigma * (1.0 - 2.0 * t) / (2.0 * safe), 0.0)
        return -jnp.ones_like(t), jnp.ones_like(t), dc


class TrigInterpolant(Interpolant):
    r"""``x_t = cos(πt/2) x₀ + sin(πt/2) x₁`` (the trigonometric / cosine interpolant; with a Gaussian
    source it is the cosine VP path)."""

    def _coefficients(self, t):
        return jnp.cos(0.5 * jnp.pi * t), jnp.sin(0.5 * jnp.pi * t), jnp.zeros_like(t)

    def _derivatives(self, t):
        h = 0.5 * jnp.pi
        return -h * jnp.sin(h * t), h * jnp.cos(h * t), jnp.zeros_like(t)


class OTPath(Interpolant):
    r"""Lipman et al.'s conditional OT path: ``x_t = (1 − (1 − σ_min) t) x₀ + t x₁`` with ``x₀ ~ N(0, I)``,
    i.e. ``x_t | x₁ ~ N(t x₁, (1 − (1 − σ_min)t)² I)``; target velocity ``x₁ − (1 − σ_min) x₀``."""

    sigma_min: float = 1e-4

    def __init__(self, sigma_min: float = 1e-4):
        self.sigma_min = _check_nonnegative("sigma_min", sigma_min)
        if self.sigma_min >= 1.0:
            raise ValueError(f"sigma_min must lie in [0, 1), got sigma_min={sigma_min!r}.")

    def _coefficients(self, t):
        return 1.0 - (1.0 - self.sigma_min) * t, t, jnp.zeros_like(t)

    def _derivatives(self, t):
        return jnp.full_like(t, -(1.0 - self.sigma_min)), jnp.ones_like(t), jnp.zeros_like(t)


class VPInterpolant(Interpolant):
    r"""The VP-SDE path in flow time (Lipman et al.'s "VP path"): ``x_t = σ_VP(1−t) x₀ + α_VP(1−t) x₁``
    with ``α_VP(s) = exp(−¼ s² (β_max − β_min) − ½ s β_min)``, ``σ_VP = √(1 − α_VP²)`` and ``x₀ ~ N(0, I)``."""

    beta_min: float = 0.1
    beta_max: float = 20.0

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0):
        self.beta_min = _check_nonnegative("beta_min", beta_min)
        self.beta_max = _check_nonnegative("beta_max", beta_max)
        if self.beta_max <= self.beta_min:
            raise ValueError(f"beta_max must exceed beta_min, got beta_min={beta_min!r}, beta_max={beta_max!r}.")

    def _coefficients(self, t):
        s = 1.0 - t
        log_alpha = -0.25 * s**2 * (self.beta_max - self.beta_min) - 0.5 * s * self.beta_min
        alpha = jnp.exp(log_alpha)
        return jnp.sqrt(-jnp.expm1(2.0 * log_alpha)), alpha, jnp.zeros_like(t)


_FAMILIES = ("linear", "trig", "vp")
_GAMMAS = ("none", "bridge", "sqrt_bridge", "constant")


class StochasticInterpolant(Interpolant):
    r"""A general stochastic interpolant ``x_t = a(t) x₀ + b(t) x₁ + γ(t) z``.

    ``family``: ``"linear"`` (``a = 1−t, b = t``), ``"trig"`` (``a = cos(πt/2), b = sin(πt/2)``) or
    ``"vp"`` (``a = √(1 − b²)``, ``b = exp(−¼(1−t)²(β_max−β_min) − ½(1−t)β_min)``).
    ``gamma``: ``"none"``, ``"bridge"`` (``γ = scale·√(t(1−t))``), ``"sqrt_bridge"`` (``γ = scale·√(2t(1−t))``,
    Albergo & Vanden-Eijnden) or ``"constant"`` (``γ = scale``).
    """

    family: str = eqx.field(static=True, default="linear")
    gamma: str = eqx.field(static=True, default="bridge")
    scale: float = 1.0

    def __init__(self, family: str = "linear", gamma: str = "bridge", scale: float = 1.0):
        if family not in _FAMILIES:
            raise ValueError(f"family must be one of {_FAMILIES}, got family={family!r}.")
        if gamma not in _GAMMAS:
            raise ValueError(f"gamma must be one of {_GAMMAS}, got gamma={gamma!r}.")
        self.family, self.gamma = family, gamma
        self.scale = _check_nonnegative("scale", scale)

    def _coefficients(self, t):
        if self.family == "linear":
            a, b = 1.0 - t, t
        elif self.family == "trig":
            a, b = jnp.cos(0.5 * jnp.pi * t), jnp.sin(0.5 * jnp.pi * t)
        else:
            a, b, _ = VPInterpolant()._coefficients(t)
        if self.gamma == "none":
            c = jnp.zeros_like(t)
        elif self.gamma == "constant":
            c = jnp.full_like(t, self.scale)
        else:
            factor = 1.0 if self.gamma == "bridge" else 2.0
            c = self.scale * jnp.sqrt(jnp.clip(factor * t * (1.0 - t), 0.0))
        return a, b, c

    def _derivatives(self, t):
        (a, b, c), (da, db, dc) = jax.jvp(self._coefficients, (t,), (jnp.ones_like(t),))
        if self.gamma in ("bridge", "sqrt_bridge"):  # the sqrt's derivative is infinite at 0 and 1
            factor = 1.0 if self.gamma == "bridge" else 2.0
            root = jnp.sqrt(jnp.clip(factor * t * (1.0 - t), 0.0))
            safe = jnp.where(root > 0, root, 1.0)
            dc = jnp.where(root > 0, self.scale * factor * (1.0 - 2.0 * t) / (2.0 * safe), 0.0)
        return da, db, dc


PATHS = {
    "linear": LinearInterpolant,
    "brownian_bridge": BrownianBridge,
    "trig": TrigInterpolant,
    "ot": OTPath,
    "vp": VPInterpolant,
    "stochastic": StochasticInterpolant,
}


class ReversedInterpolant(Interpolant):
    r"""``path`` read backwards: ``x_t = a(1−t) x₁ + b(1−t) x₀ + c(1−t) z`` (the target becomes the source)."""

    path: Interpolant

    def _coefficients(self, t):
        a, b, c = self.path._coefficients(1.0 - t)
        return b, a, c

    def _derivatives(self, t):
        da, db, dc = self.path._derivatives(1.0 - t)
        return -db, -da, -dc


class FlowProcess(LinearProcess):
    r"""An interpolant read as a process: **the one place where flow time and process time meet**.

    Process time ``s = 1 − t`` (``t`` the interpolant's time: source at ``t = 0``, target at ``t = 1``), so
    that, as for every :class:`jaxdiff.LinearProcess`, the data (target) sits at ``s = 0`` and the
    source/noise at ``s = t_max = 1``, and every sampler, grid and likelihood of :mod:`jaxdiff.sampling`
    runs on it unchanged. With a Gaussian source ``x₀ ~ N(0, source_std² I)`` independent of ``x₁``,
    ``x_t = a x₀ + b x₁ + c z`` is the linear process

    ``α(s) = b(1 − s)``, ``σ(s) = √(source_std² a(1 − s)² + c(1 − s)²)``, ``α' = −ḃ``, ``σ' = −(source_std² a ȧ + c ċ)/σ``,

    whose ``f = α'/α``, ``g² = 2σσ' − 2fσ²``, log-SNR and score conversions follow as for a diffusion. At the
    source end ``α(1) = b(0) = 0``: ``f``, ``g²`` and ``σ̃ = σ/α`` are infinite there, so velocity conversions use
    ``(α', σ')`` in closed form (:meth:`_rates`), and the ``σ̃``-stepping samplers begin with one exact
    first-order step from ``s = 1`` (see :func:`jaxdiff.sample`).

    ``gaussian_source=False`` (translation between two data laws, bridges): ``α``, ``σ`` and everything
    Gaussian are undefined and refused; the ODE/SDE samplers still run on the model's velocity (and score).
    ``reverse_noise_sq(s) = 2 c(1 − s)`` is the default noise of the SDE family ``dX = (v + ε_t s) dt + √(2ε_t) dW``
    with ``ε_t = diffusion · c(t)`` (same marginals for every ``diffusion ≥ 0``; 0 for paths without noise).
    """

    path: Interpolant
    source_std: float
    t_min: float = eqx.field(static=True)
    t_max: float = eqx.field(static=True)
    sampling_eps: float = eqx.field(static=True)
    gaussian_source: bool = eqx.field(static=True)

    def __init__(self, path: Interpolant, *, source_std: float = 1.0, gaussian_source: bool = True,
                 t_min: float = 0.0, sampling_eps: float = 1e-3):
        if not isinstance(path, Interpolant):
            raise TypeError(f"path must be a jaxdiff interpolant (LinearInterpolant, ...), got {type(path).__name__}.")
        V.check_positive("source_std", source_std)
        if not 0.0 <= float(t_min) < 1.0:
            raise ValueError(f"t_min must lie in [0, 1), got t_min={t_min!r}.")
        if not 0.0 <= float(sampling_eps) < 1.0:
            raise ValueError(f"sampling_eps must lie in [0, 1), got sampling_eps={sampling_eps!r}.")
        self.path = path
        self.source_std = float(source_std)
        self.gaussian_source = bool(gaussian_source)
        self.t_min, self.t_max, self.sampling_eps = float(t_min), 1.0, float(sampling_eps)

    @property
    def prior_std(self):
        """``√(source_std² a(0)² + c(0)²)``: the law at ``s = 1`` (``t = 0``) is the source, ``N(0, prior_std² I)``."""
        a, _, c = self.path._coefficients(jnp.asarray(0.0))
        return jnp.sqrt(self.source_std**2 * a**2 + c**2)

    def _need_gaussian(self) -> None:
        if not self.gaussian_source:
            raise ValueError(
                "this flow's source is a data law, not N(0, s² I): α, σ, the score↔velocity conversions and the "
                "Gaussian samplers (ddim, ddpm, dpmpp_*, exp_abm, edm_heun) do not apply; use an ODE sampler "
                "(ode_euler, ode_heun, ode_midpoint, ode_adaptive) or, with a score, euler_maruyama.")

    def _alpha(self, s):
        self._need_gaussian()
        return self.path._coefficients(1.0 - s)[1]

    def _sigma(self, s):
        self._need_gaussian()
        a, _, c = self.path._coefficients(1.0 - s)
        return jnp.sqrt(self.source_std**2 * a**2 + c**2)

    def _rates(self, s):
        self._need_gaussian()
        t = 1.0 - s
        a, b, c = self.path._coefficients(t)
        da, db, dc = self.path._derivatives(t)
        var_rate = self.source_std**2 * a * da + c * dc  # ½ d(σ²)/dt
        sigma = jnp.sqrt(self.source_std**2 * a**2 + c**2)
        limit = jnp.sqrt(self.source_std**2 * da**2 + dc**2)  # dσ/ds where a = c = 0
        d_sigma = jnp.where(sigma > 0, -var_rate / jnp.where(sigma > 0, sigma, 1.0), limit)
        return b, sigma, -db, d_sigma

    def _drift_coeff(self, s):
        alpha, _, d_alpha, _ = self._rates(s)
        return d_alpha / alpha

    def _diffusion_sq(self, s):
        alpha, sigma, d_alpha, d_sigma = self._rates(s)
        return 2.0 * sigma * d_sigma - 2.0 * (d_alpha / alpha) * sigma**2

    def reverse_noise_sq(self, s):
        return 2.0 * self.path._coefficients(1.0 - s)[2]


__all__ = [
    "PATHS", "BrownianBridge", "FlowProcess", "Interpolant", "LinearInterpolant", "OTPath", "ReversedInterpolant",
    "StochasticInterpolant", "TrigInterpolant", "VPInterpolant",
]
