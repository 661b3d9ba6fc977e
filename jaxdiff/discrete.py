r"""Discrete-time chains: DDPM's variance-preserving Markov chain and NCSN's geometric noise levels.

Both map onto a continuous process of :mod:`jaxdiff.processes`:

* DDPM with linear betas ``β_i = linspace(β_start, β_end, N)`` is the VP-SDE with
  ``β_min = N β_start``, ``β_max = N β_end`` (0.1 and 20 at N = 1000, β ∈ [1e-4, 0.02]); index ``i``
  (0-based, DDPM's ``t = i + 1``) sits at continuous time ``t_i = (i + 1)/N``, where
  ``ᾱ_i ≈ α(t_i)²`` (max abs. error 8e-4 at N = 1000).
* NCSN's levels ``σ_1 > … > σ_L`` (geometric) are the VE-SDE's ``σ(t)`` on the uniform grid
  ``t_i = 1 − i/(L−1)`` (0-based ``i``, largest first).

Indices ``i`` are integers, scalars or ``[batch]`` arrays, and broadcast over data like times do.
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff import _validation as V
from jaxdiff.processes import VESDE, VPSDE, broadcast_time

Array = jax.Array

_DDPM_SCHEDULES = ("linear", "cosine")


def _checked_index(i: Any, size: int, owner: str, name: str = "i") -> Array:
    """An integer index array, checked to lie in ``[0, size − 1]`` when concrete."""
    i = jnp.asarray(i)
    if not jnp.issubdtype(i.dtype, jnp.integer):
        raise TypeError(f"{name} must be an integer index, got {name}.dtype={i.dtype}.")
    if V.is_concrete(i):
        arr = np.asarray(i)
        if np.any(arr < 0) or np.any(arr >= size):
            raise ValueError(f"{name} must lie in [0, {size - 1}] for {owner}, got {name}={arr.tolist()}.")
    return i


class _ArrayModule(eqx.Module):
    """Identity hash (fields are arrays), so that ``jax.jit(obj.method)`` works."""

    def __hash__(self) -> int:
        return id(self)


class DDPMSchedule(_ArrayModule):
    r"""The DDPM forward chain ``q(x_i | x_{i−1}) = N(√(1−β_i) x_{i−1}, β_i I)`` (Ho et al. 2020).

    ``α_i = 1 − β_i``, ``ᾱ_i = Π_{j≤i} α_j`` so that ``x_i = √ᾱ_i x_0 + √(1−ᾱ_i) ε``. Indices are
    0-based: ``betas[i]`` is DDPM's ``β_{i+1}``, as in diffusers.

    Args:
      num_steps: number of steps ``N``.
      beta_start, beta_end: first and last beta of the linear schedule.
      beta_schedule: ``"linear"`` (DDPM) or ``"cosine"`` (Nichol & Dhariwal, betas clipped at 0.999,
        diffusers' ``squaredcos_cap_v2``; ``beta_start``/``beta_end`` are then unused).
    """

    betas: Array
    alphas: Array
    alphas_cumprod: Array
    num_steps: int = eqx.field(static=True)
    beta_start: float = eqx.field(static=True)
    beta_end: float = eqx.field(static=True)
    beta_schedule: str = eqx.field(static=True)

    def __init__(
        self,
        num_steps: int = 1000,
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
        beta_schedule: str = "linear",
    ):
        V.check_int_at_least("num_steps", num_steps, 1)
        V.check_choice("beta_schedule", beta_schedule, _DDPM_SCHEDULES)
        if beta_schedule == "linear":
            V.check_positive("beta_start", beta_start)
            V.check_positive("beta_end", beta_end)
            V.check_less("beta_start", beta_start, "beta_end", beta_end, strict=False)
            if beta_end >= 1.0:
                raise ValueError(f"beta_end must be < 1, got beta_end={beta_end!r}.")
            betas = np.linspace(beta_start, beta_end, num_steps, dtype=np.float64)
        else:
            betas = _cosine_betas(num_steps)
        dtype = jnp.result_type(float)
        alphas = 1.0 - betas
        self.betas = jnp.asarray(betas, dtype)
        self.alphas = jnp.asarray(alphas, dtype)
        self.alphas_cumprod = jnp.asarray(np.cumprod(alphas), dtype)
        self.num_steps = int(num_steps)
        self.beta_start = float(beta_start)
        self.beta_end = float(beta_end)
        self.beta_schedule = beta_schedule

    # --- indices ------------------------------------------------------------------------------
    def _index(self, i: Any, name: str = "i") -> Array:
        return _checked_index(i, self.num_steps, f"DDPMSchedule(num_steps={self.num_steps})", name)

    def alphas_cumprod_prev(self, i: Any) -> Array:
        """``ᾱ_{i−1}`` with ``ᾱ_{−1} = 1``."""
        i = self._index(i)
        return jnp.where(i > 0, self.alphas_cumprod[jnp.maximum(i - 1, 0)], 1.0)

    def continuous_time(self, i: Any) -> Array:
        """The VP time ``t_i = (i + 1)/N`` of step ``i`` (where ``ᾱ_i ≈ α(t_i)²``)."""
        i = self._index(i)
        return (i + 1).astype(jnp.result_type(float)) / self.num_steps

    # --- forward -------------------------------------------------------------------------------
    def marginal_sample(self, key: Array, x0: Array, i: Any) -> tuple[Array, Array]:
        """``x_i = √ᾱ_i x_0 + √(1−ᾱ_i) ε``. Returns ``(x_i, ε)``."""
        V.check_floating("x0", x0)
        V.check_time_shape("i", i, x0, "x0")
        i = self._index(i)
        eps = jax.random.normal(key, np.shape(x0), jnp.result_type(x0))
        abar = broadcast_time(self.alphas_cumprod[i], x0)
        return jnp.sqrt(abar) * x0 + jnp.sqrt(1.0 - abar) * eps, eps

    # --- posterior q(x_{i−1} | x_i, x_0) -------------------------------------------------------
    def posterior_mean_coeffs(self, i: Any) -> tuple[Array, Array]:
        r"""``(c_0, c_t)`` with ``μ̃ = c_0 x_0 + c_t x_i``:
        ``c_0 = β_i √ᾱ_{i−1}/(1−ᾱ_i)``, ``c_t = (1−ᾱ_{i−1}) √α_i/(1−ᾱ_i)``."""
        i = self._index(i)
        abar, abar_prev = self.alphas_cumprod[i], self.alphas_cumprod_prev(i)
        c0 = self.betas[i] * jnp.sqrt(abar_prev) / (1.0 - abar)
        ct = (1.0 - abar_prev) * jnp.sqrt(self.alphas[i]) / (1.0 - abar)
        return c0, ct

    def posterior_mean(self, x0: Array, x_t: Array, i: Any) -> Array:
        """Mean of ``q(x_{i−1} | x_i, x_0)``."""
        V.check_same_shape("x0", x0, "x_t", x_t)
        V.check_time_shape("i", i, x_t, "x_t")
        c0, ct = self.posterior_mean_coeffs(i)
        return broadcast_time(c0, x_t) * x0 + broadcast_time(ct, x_t) * x_t

    def posterior_variance(self, i: Any) -> Array:
        """``β̃_i = β_i (1−ᾱ_{i−1})/(1−ᾱ_i)`` (zero at ``i = 0``)."""
        i = self._index(i)
        return self.betas[i] * (1.0 - self.alphas_cumprod_prev(i)) / (1.0 - self.alphas_cumprod[i])

    # --- reverse -------------------------------------------------------------------------------
    def reverse_mean(self, x_t: Array, i: Any, eps_pred: Array) -> Array:
        r"""DDPM's ``μ_θ(x_i, i) = (x_i − β_i/√(1−ᾱ_i) · ε_θ) / √α_i`` from a noise prediction."""
        V.check_same_shape("x_t", x_t, "eps_pred", eps_pred)
        V.check_time_shape("i", i, x_t, "x_t")
        i = self._index(i)
        beta = broadcast_time(self.betas[i], x_t)
        abar = broadcast_time(self.alphas_cumprod[i], x_t)
        alpha = broadcast_time(self.alphas[i], x_t)
        return (x_t - beta / jnp.sqrt(1.0 - abar) * eps_pred) / jnp.sqrt(alpha)

    def score_from_eps(self, eps_pred: Array, i: Any) -> Array:
        """``s_θ(x_i, i) = −ε_θ / √(1 − ᾱ_i)`` (Tweedie's relation of the lecture notes)."""
        i = self._index(i)
        return -eps_pred / broadcast_time(jnp.sqrt(1.0 - self.alphas_cumprod[i]), eps_pred)

    # --- continuous limit ----------------------------------------------------------------------
    def to_vpsde(self) -> VPSDE:
        """The VP-SDE this chain discretizes: ``β_min = N β_start``, ``β_max = N β_end`` (linear only)."""
        if self.beta_schedule != "linear":
            raise ValueError(
                f"to_vpsde() needs beta_schedule='linear', got beta_schedule={self.beta_schedule!r}; "
                "use jaxdiff.CosineVPSDE for the cosine schedule."
            )
        return VPSDE(beta_min=self.num_steps * self.beta_start, beta_max=self.num_steps * self.beta_end)

    @classmethod
    def from_vpsde(cls, sde: VPSDE, num_steps: int = 1000) -> "DDPMSchedule":
        """The chain with ``β_i = linspace(β_min/N, β_max/N, N)`` (score_sde's discretization)."""
        V.check_int_at_least("num_steps", num_steps, 1)
        return cls(num_steps, float(sde.beta_min) / num_steps, float(sde.beta_max) / num_steps)


def _cosine_betas(num_steps: int, s: float = 0.008, max_beta: float = 0.999) -> np.ndarray:
    """``β_i = min(1 − ᾱ(t_{i+1})/ᾱ(t_i), 0.999)`` with ``ᾱ(t) = cos²((t+s)/(1+s) π/2)``, ``t_i = i/N``."""

    def abar(t):
        return np.cos((t + s) / (1.0 + s) * np.pi / 2) ** 2

    t = np.arange(num_steps + 1, dtype=np.float64) / num_steps
    return np.minimum(1.0 - abar(t[1:]) / abar(t[:-1]), max_beta)


class NCSNSchedule(_ArrayModule):
    r"""NCSN's noise levels (Song & Ermon 2019): ``σ_1 > σ_2 > … > σ_L`` geometric, largest first.

    ``sigmas[i] = σ_max (σ_min/σ_max)^{i/(L−1)}``, ``i = 0 … L−1``. Defaults are NCSN's (1, 0.01, 10).
    """

    sigmas: Array
    sigma_min: float = eqx.field(static=True)
    sigma_max: float = eqx.field(static=True)
    num_scales: int = eqx.field(static=True)

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 1.0, num_scales: int = 10):
        V.check_positive("sigma_min", sigma_min)
        V.check_positive("sigma_max", sigma_max)
        V.check_less("sigma_min", sigma_min, "sigma_max", sigma_max)
        V.check_int_at_least("num_scales", num_scales, 2)
        sigmas = np.exp(np.linspace(np.log(sigma_max), np.log(sigma_min), num_scales))
        self.sigmas = jnp.asarray(sigmas, jnp.result_type(float))
        self.sigma_min = float(sigma_min)
        self.sigma_max = float(sigma_max)
        self.num_scales = int(num_scales)

    def continuous_time(self, i: Any) -> Array:
        """The VE time ``t_i = 1 − i/(L−1)`` with ``σ_VE(t_i) = sigmas[i]``."""
        i = _checked_index(i, self.num_scales, f"NCSNSchedule(num_scales={self.num_scales})")
        return 1.0 - i.astype(jnp.result_type(float)) / (self.num_scales - 1)

    def continuous_times(self) -> Array:
        """All level times, decreasing: ``[L]``."""
        return self.continuous_time(jnp.arange(self.num_scales))

    def annealed_langevin_step_sizes(self, step_lr: Any) -> Array:
        """NCSN's step rule ``γ_i = ε σ_i² / σ_L²`` (Algorithm 2), ``[L]``."""
        V.check_positive("step_lr", step_lr)
        return step_lr * self.sigmas**2 / self.sigmas[-1] ** 2

    def to_vesde(self) -> VESDE:
        """The VE-SDE whose ``σ(t)`` passes through every level."""
        return VESDE(sigma_min=self.sigma_min, sigma_max=self.sigma_max)

    @classmethod
    def from_vesde(cls, sde: VESDE, num_scales: int) -> "NCSNSchedule":
        """Levels ``σ(t_i)`` of a VE-SDE on ``t_i = 1 − i/(L−1)``."""
        return cls(float(sde.sigma_min), float(sde.sigma_max), num_scales)
