r"""Forward noising processes, all linear in the data: ``x_t = α(t) x_0 + σ(t) ε``.

A process is an immutable pytree (an ``equinox.Module``) fixed by its pair ``(α(t), σ(t))``, its time
range and its prior. Everything else is derived once, in :class:`LinearProcess`, for every process:

* drift coefficient     ``f(t) = d log α(t) / dt``                         (so ``f(x, t) = f(t) x``)
* squared diffusion     ``g(t)² = dσ(t)²/dt − 2 f(t) σ(t)²``
* log signal-to-noise   ``λ(t) = log(α(t)² / σ(t)²)``, with ``g²/σ² = −dλ/dt``

so that ``dX = f(t) X dt + g(t) dW`` has ``X_t | X_0 ~ N(α(t) X_0, σ(t)² I)``. Concrete processes give
closed forms of ``f`` and ``g²`` where they are cheaper; the autodiff forms (``derived_*``) stay
available and the tests check that both agree.

Shapes: ``x`` is ``[batch, *data]``; ``t`` is a scalar or ``[batch]`` and broadcasts over the data
axes. Time-only methods (``marginal_std(t)``, ``diffusion(t)``, ...) return the shape of ``t``.
"""

from __future__ import annotations

import abc
import math
from typing import Any, Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff import _validation as V

Array = jax.Array


def broadcast_time(coeff: Array, x: Array) -> Array:
    """Reshape a time coefficient (scalar or ``[batch]``) to broadcast against ``x: [batch, *data]``.

    The result is cast to ``x``'s dtype, so float32 data stays float32 under ``jax_enable_x64``.
    """
    coeff = jnp.asarray(coeff)
    if coeff.ndim == 1:
        coeff = coeff.reshape(coeff.shape + (1,) * (np.ndim(x) - 1))
    return coeff.astype(jnp.result_type(x))


def _float_time(t: Any) -> Array:
    """Time as a floating array (integers are promoted)."""
    t = jnp.asarray(t)
    if not jnp.issubdtype(t.dtype, jnp.floating):
        t = t.astype(jnp.result_type(float))
    return t


def _elementwise_derivative(fn: Callable[[Array], Array], t: Array) -> tuple[Array, Array]:
    """``(fn(t), d fn/dt)`` for an elementwise function of ``t`` (scalar or ``[batch]``)."""
    return jax.jvp(fn, (t,), (jnp.ones_like(t),))


class LinearProcess(eqx.Module):
    r"""Base class: a forward process ``x_t = α(t) x_0 + σ(t) ε`` with ``ε ~ N(0, I)``.

    Subclasses implement ``_alpha(t)`` and ``_sigma(t)`` (and optionally ``_log_alpha``,
    ``_drift_coeff``, ``_diffusion_sq``, ``_t_from_log_snr`` in closed form) and the fields
    ``t_min`` (smallest time used in training), ``t_max`` (the time the prior stands for),
    ``sampling_eps`` (where samplers stop by default) and the property ``prior_std``.

    The prior is ``N(0, prior_std² I)``. Public methods check concrete times against the domain
    ``[0, t_max]`` where the formulas hold (``time_domain``); traced times are not checked.
    """

    def __hash__(self) -> int:
        # Value hash when every field is hashable (Python floats), identity otherwise (array fields),
        # so that ``jax.jit(sde.marginal_std)`` works either way.
        try:
            return eqx.Module.__hash__(self)
        except TypeError:
            return id(self)

    # --- to be provided by subclasses -------------------------------------------------------
    t_min: eqx.AbstractVar[float]
    t_max: eqx.AbstractVar[float]
    sampling_eps: eqx.AbstractVar[float]

    @property
    @abc.abstractmethod
    def prior_std(self) -> Any:
        """Standard deviation of the prior ``N(0, prior_std² I)`` that stands for ``p_{t_max}``."""

    @abc.abstractmethod
    def _alpha(self, t: Array) -> Array:
        """``α(t)`` for a floating ``t`` (no checks)."""

    @abc.abstractmethod
    def _sigma(self, t: Array) -> Array:
        """``σ(t)`` for a floating ``t`` (no checks)."""

    # --- overridable closed forms (defaults are the generic derivations) -----------------------
    def _log_alpha(self, t: Array) -> Array:
        return jnp.log(self._alpha(t))

    def _drift_coeff(self, t: Array) -> Array:
        return self.derived_drift_coeff(t)

    def _diffusion_sq(self, t: Array) -> Array:
        return self._derived_diffusion_sq(t)

    def _t_from_log_snr(self, log_snr: Array) -> Array:
        return self._bisect_log_snr(log_snr)

    @property
    def time_domain(self) -> tuple[float, float]:
        """Closed interval of times where ``α`` and ``σ`` are defined (checked on concrete input)."""
        return (0.0, float(self.t_max))

    # --- helpers ---------------------------------------------------------------------------
    def _time(self, t: Any, name: str = "t") -> Array:
        lo, hi = self.time_domain
        V.check_time(name, t, lo, hi, type(self).__name__)
        return _float_time(t)

    def _time_for(self, t: Any, x: Any, x_name: str = "x") -> Array:
        V.check_time_shape("t", t, x, x_name)
        return self._time(t)

    # --- the (α, σ) pair -------------------------------------------------------------------
    def marginal_mean_coeff(self, t: Any) -> Array:
        """``α(t)``, the coefficient of ``x_0`` in ``x_t``. Shape of ``t``."""
        return self._alpha(self._time(t))

    def log_mean_coeff(self, t: Any) -> Array:
        """``log α(t)``. Shape of ``t``."""
        return self._log_alpha(self._time(t))

    def marginal_std(self, t: Any) -> Array:
        """``σ(t)``, the standard deviation of ``x_t | x_0``. Shape of ``t``."""
        return self._sigma(self._time(t))

    def log_snr(self, t: Any) -> Array:
        """``λ(t) = log α(t)² − log σ(t)²``, decreasing in ``t``. Shape of ``t``."""
        t = self._time(t)
        return 2.0 * (self._log_alpha(t) - jnp.log(self._sigma(t)))

    def t_from_log_snr(self, log_snr: Any) -> Array:
        """Inverse of :meth:`log_snr` on ``[0, t_max]`` (closed form where known, else bisection whose
        derivative is ``dt/dλ = −σ²/g²``). Keeps a floating input's dtype."""
        log_snr = jnp.asarray(log_snr)
        if not jnp.issubdtype(log_snr.dtype, jnp.floating):
            log_snr = log_snr.astype(jnp.result_type(float))
        return self._t_from_log_snr(log_snr)

    def marginal_mean(self, x0: Array, t: Any) -> Array:
        """``E[x_t | x_0] = α(t) x_0``. Shape of ``x0``."""
        V.check_floating("x0", x0)
        t = self._time_for(t, x0, "x0")
        return broadcast_time(self._alpha(t), x0) * x0

    def marginal_sample(self, key: Array, x0: Array, t: Any) -> tuple[Array, Array]:
        """Draw ``x_t = α(t) x_0 + σ(t) ε``. Returns ``(x_t, ε)``, both of ``x0``'s shape and dtype."""
        V.check_floating("x0", x0)
        t = self._time_for(t, x0, "x0")
        eps = jax.random.normal(key, np.shape(x0), jnp.result_type(x0))
        x_t = broadcast_time(self._alpha(t), x0) * x0 + broadcast_time(self._sigma(t), x0) * eps
        return x_t, eps

    # --- SDE coefficients --------------------------------------------------------------------
    def drift_coeff(self, t: Any) -> Array:
        """``f(t) = d log α/dt`` (closed form where the process has one). Shape of ``t``."""
        return self._drift_coeff(self._time(t))

    def diffusion_sq(self, t: Any) -> Array:
        """``g(t)² = dσ²/dt − 2 f(t) σ²`` (closed form where the process has one). Shape of ``t``."""
        return self._diffusion_sq(self._time(t))

    def drift(self, x: Array, t: Any) -> Array:
        """Forward drift ``f(x, t) = f(t) x``. Shape of ``x``."""
        V.check_floating("x", x)
        t = self._time_for(t, x)
        return broadcast_time(self._drift_coeff(t), x) * x

    def diffusion(self, t: Any) -> Array:
        """Diffusion coefficient ``g(t)``. Shape of ``t``."""
        return jnp.sqrt(self._diffusion_sq(self._time(t)))

    def _rates(self, t: Array) -> tuple[Array, Array, Array, Array]:
        """``(α, σ, dα/dt, dσ/dt)`` at a floating ``t`` (no checks). Generic: ``α' = f α``,
        ``σ' = (½ g² + f σ²)/σ``; a process whose ``f`` is infinite somewhere (a flow's source end, where
        ``α = 0``) overrides it with closed forms."""
        alpha, sigma = self._alpha(t), self._sigma(t)
        f, g2 = self._drift_coeff(t), self._diffusion_sq(t)
        return alpha, sigma, f * alpha, (0.5 * g2 + f * sigma**2) / sigma

    def reverse_noise_sq(self, t: Array) -> Array:
        """The squared noise level ``g_rev(t)²`` that the SDE samplers use by default (their option
        ``diffusion`` scales it): ``g(t)²`` for a diffusion (the reverse-time SDE of score_sde). Any
        ``g_rev`` gives the same marginals with the drift ``u − ½ g_rev² s`` (``u`` the probability flow)."""
        return self._diffusion_sq(t)

    def flow_time(self, t: Any) -> Array:
        """The generative ("flow") time ``t_max − t`` of a process time ``t``: 0 at the noise end, ``t_max`` at
        the data end. Networks and functions written in flow time (flow matching, interpolants) receive it."""
        return self.t_max - jnp.asarray(t)

    def process_time(self, t_flow: Any) -> Array:
        """Inverse of :meth:`flow_time`."""
        return self.t_max - jnp.asarray(t_flow)

    def derived_drift_coeff(self, t: Any) -> Array:
        """``f(t) = d log α/dt`` by forward-mode autodiff of ``log α`` (no closed form used)."""
        t = _float_time(t)
        return _elementwise_derivative(self._log_alpha, t)[1]

    def derived_diffusion_sq(self, t: Any) -> Array:
        """``g(t)² = dσ²/dt − 2 f(t) σ²`` by autodiff of ``σ²`` and ``log α`` (no closed form used)."""
        return self._derived_diffusion_sq(_float_time(t))

    def _derived_diffusion_sq(self, t: Array) -> Array:
        var, dvar = _elementwise_derivative(lambda s: self._sigma(s) ** 2, t)
        return dvar - 2.0 * self.derived_drift_coeff(t) * var

    # --- prior ---------------------------------------------------------------------------------
    def prior_sample(self, key: Array, shape: tuple[int, ...], dtype: Any = None) -> Array:
        """Draw from the prior ``N(0, prior_std² I)``; ``shape`` is ``(batch, *data)``."""
        shape = tuple(int(s) for s in shape)
        dtype = jnp.result_type(float) if dtype is None else dtype
        std = jnp.asarray(self.prior_std, dtype)
        return std * jax.random.normal(key, shape, dtype)

    def prior_log_prob(self, x: Array) -> Array:
        """``log N(x; 0, prior_std² I)`` summed over all non-batch axes. ``x: [batch, *data] -> [batch]``."""
        V.check_floating("x", x)
        if np.ndim(x) < 1:
            raise ValueError(f"x must have a batch axis, got x.shape={np.shape(x)}.")
        x = jnp.asarray(x)
        std = jnp.asarray(self.prior_std, x.dtype)
        per_dim = -0.5 * (x / std) ** 2 - jnp.log(std) - 0.5 * math.log(2 * math.pi)
        return per_dim.reshape(x.shape[0], -1).sum(axis=-1)

    # --- generic inverse of the log-SNR --------------------------------------------------------
    def _bisect_log_snr(self, log_snr: Array) -> Array:
        """Bisection for ``λ(t) = log_snr`` on ``[0, t_max]``, differentiable: ``dt/dλ = −σ²/g²``."""

        @jax.custom_jvp
        def inverse(lam):
            return self._bisect_log_snr_values(lam)

        @inverse.defjvp
        def inverse_jvp(primals, tangents):
            (lam,), (d_lam,) = primals, tangents
            t = inverse(lam)
            return t, d_lam * -(self._sigma(t) ** 2) / self._diffusion_sq(t)

        return inverse(log_snr)

    def _bisect_log_snr_values(self, log_snr: Array, iterations: int = 64) -> Array:
        lo = jnp.zeros_like(log_snr)
        hi = jnp.full_like(log_snr, self.t_max)

        def body(_, bounds):
            lo, hi = bounds
            mid = 0.5 * (lo + hi)
            mid_val = 2.0 * (self._log_alpha(mid) - jnp.log(self._sigma(mid)))
            # log-SNR decreases in t: if λ(mid) > target, the root lies above mid.
            go_up = mid_val > log_snr
            return jnp.where(go_up, mid, lo), jnp.where(go_up, hi, mid)

        lo, hi = jax.lax.fori_loop(0, iterations, body, (lo, hi))
        return 0.5 * (lo + hi)


# =============================================================================================
# Concrete processes
# =============================================================================================


class _LinearBetaProcess(LinearProcess):
    """Shared fields of the VP and sub-VP SDEs: ``β(t) = β_min + t (β_max − β_min)`` on ``[0, 1]``."""

    beta_min: Any
    beta_max: Any
    t_min: float = eqx.field(static=True)
    t_max: float = eqx.field(static=True)
    sampling_eps: float = eqx.field(static=True)

    def __init__(
        self,
        beta_min: float = 0.1,
        beta_max: float = 20.0,
        *,
        t_min: float = 1e-5,
        t_max: float = 1.0,
        sampling_eps: float = 1e-3,
    ):
        V.check_positive("beta_min", beta_min)
        V.check_positive("beta_max", beta_max)
        V.check_less("beta_min", beta_min, "beta_max", beta_max, strict=False)
        _check_time_range(t_min, t_max, sampling_eps)
        self.beta_min = beta_min
        self.beta_max = beta_max
        self.t_min, self.t_max, self.sampling_eps = float(t_min), float(t_max), float(sampling_eps)

    @property
    def prior_std(self):
        return 1.0

    def beta(self, t: Any) -> Array:
        """``β(t) = β_min + t (β_max − β_min)``."""
        return self.beta_min + self._time(t) * (self.beta_max - self.beta_min)

    def _log_alpha(self, t):
        return -0.25 * t**2 * (self.beta_max - self.beta_min) - 0.5 * t * self.beta_min

    def _alpha(self, t):
        return jnp.exp(self._log_alpha(t))

    def _drift_coeff(self, t):
        return -0.5 * (self.beta_min + t * (self.beta_max - self.beta_min))


class VPSDE(_LinearBetaProcess):
    r"""Variance-preserving SDE with a linear schedule (Song et al. 2021; DDPM's continuous limit).

    ``dX = −½ β(t) X dt + √β(t) dW``, ``β(t) = β_min + t (β_max − β_min)``, ``t ∈ [0, 1]``;
    ``log α(t) = −¼ t² (β_max − β_min) − ½ t β_min``, ``σ(t)² = 1 − α(t)²``, prior ``N(0, I)``.
    """

    def _sigma(self, t):
        return jnp.sqrt(-jnp.expm1(2.0 * self._log_alpha(t)))

    def _diffusion_sq(self, t):
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def _t_from_log_snr(self, log_snr):
        # σ²/α² = e^{∫β} − 1 = e^{−λ}  =>  ∫_0^t β = ½Δt² + β_min t = log(1 + e^{−λ}).
        delta = self.beta_max - self.beta_min
        integral = jax.nn.softplus(-log_snr)
        safe_delta = jnp.where(delta > 0, delta, 1.0)
        quad = (-self.beta_min + jnp.sqrt(self.beta_min**2 + 2.0 * delta * integral)) / safe_delta
        return jnp.where(delta > 0, quad, integral / self.beta_min)


class SubVPSDE(_LinearBetaProcess):
    r"""Sub-VP SDE of Song et al. (2021): the VP drift with a smaller diffusion.

    ``dX = −½ β(t) X dt + √(β(t) (1 − e^{−2∫_0^t β})) dW``; ``α(t)`` as VP and ``σ(t) = 1 − α(t)²``
    (its variance is below the VP variance ``1 − α²`` at every t). Prior ``N(0, I)``.
    """

    def _sigma(self, t):
        return -jnp.expm1(2.0 * self._log_alpha(t))

    def _diffusion_sq(self, t):
        beta = self.beta_min + t * (self.beta_max - self.beta_min)
        return beta * -jnp.expm1(4.0 * self._log_alpha(t))


class CosineVPSDE(LinearProcess):
    r"""Variance-preserving process with the cosine schedule of Nichol & Dhariwal (2021).

    ``α(t) = cos(φ(t)) / cos(φ(0))``, ``φ(t) = (t + s)/(1 + s) · π/2``, ``σ(t)² = 1 − α(t)²``;
    ``f(t) = −(π/2)/(1+s) · tan φ(t)`` and ``g(t)² = −2 f(t)`` (so ``β(t) = −2 f(t)``).
    ``f`` diverges at ``t = 1``, hence ``t_max = 0.999`` by default (``α(t_max)² ≈ 2e-6``).
    """

    s: Any
    t_min: float = eqx.field(static=True)
    t_max: float = eqx.field(static=True)
    sampling_eps: float = eqx.field(static=True)

    def __init__(
        self,
        s: float = 0.008,
        *,
        t_min: float = 1e-5,
        t_max: float = 0.999,
        sampling_eps: float = 1e-3,
    ):
        V.check_positive("s", s)
        _check_time_range(t_min, t_max, sampling_eps)
        if t_max >= 1.0:
            raise ValueError(
                f"t_max must be < 1 for CosineVPSDE (α(1) = 0 and f(1) is infinite), got t_max={t_max!r}."
            )
        self.s = s
        self.t_min, self.t_max, self.sampling_eps = float(t_min), float(t_max), float(sampling_eps)

    @property
    def prior_std(self):
        return 1.0

    def _phi(self, t):
        return (t + self.s) / (1.0 + self.s) * (jnp.pi / 2)

    def _alpha(self, t):
        return jnp.cos(self._phi(t)) / jnp.cos(self._phi(jnp.zeros_like(t)))

    def _sigma(self, t):
        # 1 − α without cancellation: α = cos δ − tan φ(0) sin δ with δ = φ(t) − φ(0).
        delta = t / (1.0 + self.s) * (jnp.pi / 2)
        one_minus_alpha = 2.0 * jnp.sin(0.5 * delta) ** 2 + jnp.tan(self._phi(jnp.zeros_like(t))) * jnp.sin(delta)
        return jnp.sqrt(one_minus_alpha * (2.0 - one_minus_alpha))

    def _drift_coeff(self, t):
        return -(jnp.pi / 2) / (1.0 + self.s) * jnp.tan(self._phi(t))

    def _diffusion_sq(self, t):
        return -2.0 * self._drift_coeff(t)


class VESDE(LinearProcess):
    r"""Variance-exploding SDE (SMLD / NCSN in continuous time, Song et al. 2021).

    ``α(t) = 1``, ``σ(t) = σ_min (σ_max/σ_min)^t``, ``dX = σ(t) √(2 log(σ_max/σ_min)) dW``, ``t ∈ [0, 1]``,
    prior ``N(0, σ_max² I)``. As in score_sde, ``σ(0) = σ_min > 0``: the kernel is that of the SDE
    started at ``x_0 + σ_min ε`` (the forward SDE from ``x_0`` itself has variance ``σ(t)² − σ_min²``).
    """

    sigma_min: Any
    sigma_max: Any
    t_min: float = eqx.field(static=True)
    t_max: float = eqx.field(static=True)
    sampling_eps: float = eqx.field(static=True)

    def __init__(
        self,
        sigma_min: float = 0.01,
        sigma_max: float = 50.0,
        *,
        t_min: float = 1e-5,
        t_max: float = 1.0,
        sampling_eps: float = 1e-5,
    ):
        V.check_positive("sigma_min", sigma_min)
        V.check_positive("sigma_max", sigma_max)
        V.check_less("sigma_min", sigma_min, "sigma_max", sigma_max)
        _check_time_range(t_min, t_max, sampling_eps)
        self.sigma_min = sigma_min
        self.sigma_max = sigma_max
        self.t_min, self.t_max, self.sampling_eps = float(t_min), float(t_max), float(sampling_eps)

    @property
    def prior_std(self):
        return self.sigma_max

    def _log_ratio(self):
        return jnp.log(self.sigma_max) - jnp.log(self.sigma_min)

    def _alpha(self, t):
        return jnp.ones_like(t)

    def _log_alpha(self, t):
        return jnp.zeros_like(t)

    def _sigma(self, t):
        return self.sigma_min * jnp.exp(t * self._log_ratio())

    def _drift_coeff(self, t):
        return jnp.zeros_like(t)

    def _diffusion_sq(self, t):
        return 2.0 * self._log_ratio() * self._sigma(t) ** 2

    def _t_from_log_snr(self, log_snr):
        return (-0.5 * log_snr - jnp.log(self.sigma_min)) / self._log_ratio()


class OUProcess(LinearProcess):
    r"""Ornstein–Uhlenbeck process ``dX = −β X dt + s dW`` (lecture notes, section 3).

    ``α(t) = e^{−βt}``, ``σ(t)² = s²/(2β) (1 − e^{−2βt})``; the stationary law and the prior are
    ``N(0, s²/(2β) I)``. The defaults ``β = 1, s = √2`` make it ``N(0, I)``. The diffusion ``s`` may be
    passed as ``sigma=`` (the notes' name) or ``s=``. The formulas hold for every ``t ≥ 0``; ``t_max``
    (default ``log(1000)/β``, where ``α = 10⁻³``) is only where sampling starts.
    """

    beta: Any
    sigma: Any
    t_min: float = eqx.field(static=True)
    t_max: float = eqx.field(static=True)
    sampling_eps: float = eqx.field(static=True)

    def __init__(
        self,
        beta: float = 1.0,
        sigma: float | None = None,
        *,
        s: float | None = None,
        t_min: float = 1e-5,
        t_max: float | None = None,
        sampling_eps: float = 1e-3,
    ):
        if sigma is not None and s is not None:
            raise ValueError(f"pass the diffusion as sigma= or s=, not both (got sigma={sigma!r}, s={s!r}).")
        sigma = s if sigma is None else sigma
        sigma = math.sqrt(2.0) if sigma is None else sigma
        V.check_positive("beta", beta)
        V.check_positive("sigma", sigma)
        if t_max is None:
            if not V.is_concrete(beta):
                raise ValueError("t_max must be given when beta is traced (its default is log(1000)/beta).")
            t_max = math.log(1000.0) / float(beta)
        _check_time_range(t_min, t_max, sampling_eps)
        self.beta = beta
        self.sigma = sigma
        self.t_min, self.t_max, self.sampling_eps = float(t_min), float(t_max), float(sampling_eps)

    @property
    def s(self):
        """The diffusion coefficient ``s`` of ``dX = −βX dt + s dW`` (alias of ``sigma``)."""
        return self.sigma

    @property
    def time_domain(self) -> tuple[float, float]:
        return (0.0, math.inf)

    @property
    def stationary_std(self):
        """Standard deviation of the stationary law ``N(0, s²/(2β))``."""
        return self.sigma / jnp.sqrt(2.0 * self.beta)

    @property
    def prior_std(self):
        return self.stationary_std

    def _alpha(self, t):
        return jnp.exp(-self.beta * t)

    def _log_alpha(self, t):
        return -self.beta * t

    def _sigma(self, t):
        return jnp.sqrt(self.sigma**2 / (2.0 * self.beta) * -jnp.expm1(-2.0 * self.beta * t))

    def _drift_coeff(self, t):
        return jnp.full_like(t, -1.0) * self.beta

    def _diffusion_sq(self, t):
        return jnp.full_like(t, 1.0) * self.sigma**2


def _check_time_range(t_min: float, t_max: float, sampling_eps: float) -> None:
    V.check_nonnegative("t_min", t_min)
    V.check_positive("t_max", t_max)
    V.check_less("t_min", t_min, "t_max", t_max)
    V.check_nonnegative("sampling_eps", sampling_eps)
    V.check_less("sampling_eps", sampling_eps, "t_max", t_max)


# =============================================================================================
# Quantities derived once, for every process
# =============================================================================================


def conditional_score(sde: LinearProcess, x_t: Array, x0: Array, t: Any) -> Array:
    r"""Score of the transition kernel: ``∇ log p(x_t | x_0) = −(x_t − α(t) x_0) / σ(t)²``.

    ``x_t, x0: [batch, *data]``, ``t`` scalar or ``[batch]``. Returns ``x_t``'s shape.
    """
    V.check_same_shape("x_t", x_t, "x0", x0)
    V.check_same_dtype("x_t", x_t, "x0", x0)
    V.check_floating("x_t", x_t)
    t = sde._time_for(t, x_t, "x_t")
    alpha = broadcast_time(sde._alpha(t), x_t)
    sigma = broadcast_time(sde._sigma(t), x_t)
    return -(x_t - alpha * x0) / sigma**2


def reverse_sde_drift(sde: LinearProcess, x: Array, t: Any, score: Array) -> Array:
    r"""Drift of the reverse-time SDE (Anderson; Eq. 26 of the tutorial): ``f(x, t) − g(t)² s``.

    Integrated backwards in time (``dt < 0``) with noise ``g(t) dW̄``. ``score`` is ``∇ log p_t(x)``
    of ``x``'s shape.
    """
    V.check_same_shape("x", x, "score", score)
    t = sde._time_for(t, x)
    g2 = broadcast_time(sde._diffusion_sq(t), x)
    return broadcast_time(sde._drift_coeff(t), x) * x - g2 * score


def probability_flow_drift(sde: LinearProcess, x: Array, t: Any, score: Array) -> Array:
    r"""Velocity of the probability-flow ODE: ``v(x, t) = f(x, t) − ½ g(t)² ∇ log p_t(x)``.

    Its flow has the same marginals ``p_t`` as the forward SDE (continuity equation, Eq. 22).
    """
    V.check_same_shape("x", x, "score", score)
    t = sde._time_for(t, x)
    g2 = broadcast_time(sde._diffusion_sq(t), x)
    return broadcast_time(sde._drift_coeff(t), x) * x - 0.5 * g2 * score


def euler_maruyama_step(
    key: Array | None,
    x: Array,
    t: Any,
    dt: Any,
    drift: Callable[[Array, Any], Array],
    diffusion: Callable[[Any], Array] | None = None,
) -> Array:
    r"""One Euler–Maruyama step: ``x_{t+dt} = x + drift(x, t) dt + diffusion(t) √|dt| z``, ``z ~ N(0, I)``.

    Works forwards (``dt > 0``) and backwards (``dt < 0``, the reverse SDE: pass
    ``lambda x, t: reverse_sde_drift(sde, x, t, score_fn(x, t))``). With ``diffusion=None`` (and then
    ``key`` may be ``None``) it is the Euler step of an ODE, e.g. the probability flow.

    Args:
      key: PRNG key for ``z`` (ignored when ``diffusion`` is None).
      x: state ``[batch, *data]``.
      t: current time, scalar or ``[batch]``.
      dt: signed step, scalar or ``[batch]``.
      drift: ``(x, t) -> [batch, *data]``.
      diffusion: ``t -> g(t)`` (scalar or ``[batch]``), or None.
    Returns:
      the state at ``t + dt``, ``x``'s shape.
    """
    dt_b = broadcast_time(jnp.asarray(dt), x)
    x_next = x + drift(x, t) * dt_b
    if diffusion is None:
        return x_next
    if key is None:
        raise ValueError("key must be a PRNG key when diffusion is given (got key=None).")
    noise = jax.random.normal(key, np.shape(x), jnp.result_type(x))
    g = broadcast_time(diffusion(t), x)
    return x_next + g * jnp.sqrt(jnp.abs(dt_b)) * noise
