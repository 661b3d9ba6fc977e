r"""Closed forms between two Gaussians: Monge map, W2, entropic OT plan and Schrödinger bridge.

Conventions (Janati et al. 2020; Mallasto et al. 2022; Bunne et al. 2023). The entropic OT problem
with parameter ``ε`` is ``min_π E_π[½|x − y|²] − ε H(π)`` — the static Schrödinger bridge with
reference process ``dX = √ε dW`` — whose optimal plan between ``N(μ₀, Σ₀)`` and ``N(μ₁, Σ₁)`` is the
Gaussian with cross-covariance

    D_ε = (4 Σ₀^½ Σ₁ Σ₀^½ + ε² I)^½,    C_ε = ½ (Σ₀^½ D_ε Σ₀^{-½} − ε I).

In POT's convention on the raw squared cost (``min ⟨P, |x − y|²⟩ − ε' H(P)``, as
:func:`jaxdiff.ot_plan`) the same plan has ``ε' = 2ε``. The bridge marginal at ``t ∈ [0, 1]`` is

    μ_t = (1 − t) μ₀ + t μ₁,   Σ_t = (1 − t)² Σ₀ + t² Σ₁ + t(1 − t)(C_ε + C_εᵀ) + ε t(1 − t) I.

Shapes: means ``[D]``, covariances ``[D, D]`` (symmetric positive definite); ``t`` a scalar.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


def _check_gaussian(name: str, mean: Any, cov: Any) -> tuple[Array, Array]:
    mean = jnp.asarray(mean)
    cov = jnp.asarray(cov)
    if mean.ndim != 1:
        raise ValueError(f"{name}: mean must have shape [D], got shape {tuple(mean.shape)}.")
    d = mean.shape[0]
    if cov.shape != (d, d):
        raise ValueError(f"{name}: covariance must have shape [{d}, {d}] to match its mean, got shape {tuple(cov.shape)}.")
    if not isinstance(cov, jax.core.Tracer):
        c = np.asarray(cov, np.float64)
        if not np.allclose(c, c.T, rtol=1e-5, atol=1e-6 * max(1.0, np.abs(c).max())):
            raise ValueError(f"{name}: covariance must be symmetric.")
        if np.linalg.eigvalsh(0.5 * (c + c.T)).min() <= 0:
            raise ValueError(f"{name}: covariance must be positive definite (smallest eigenvalue <= 0).")
    return mean, cov


def _check_epsilon(epsilon: Any) -> None:
    if not isinstance(epsilon, jax.core.Tracer) and not float(epsilon) > 0:
        raise ValueError(f"epsilon must be > 0 (the bridge's reference is sqrt(epsilon) W), got epsilon={epsilon!r}.")


def sqrtm_psd(cov: Array) -> Array:
    """Symmetric square root ``Σ^½`` of a symmetric positive semi-definite matrix (by ``eigh``)."""
    cov = 0.5 * (cov + cov.T)
    w, v = jnp.linalg.eigh(cov)
    return (v * jnp.sqrt(jnp.clip(w, 0.0))) @ v.T


def inv_sqrtm_pd(cov: Array) -> Array:
    """``Σ^{-½}`` of a symmetric positive definite matrix."""
    cov = 0.5 * (cov + cov.T)
    w, v = jnp.linalg.eigh(cov)
    return (v / jnp.sqrt(w)) @ v.T


def gaussian_entropic_ot(mean0: Any, cov0: Any, mean1: Any, cov1: Any, epsilon: Any) -> Array:
    r"""Cross-covariance ``C_ε = Cov_π(x₀, x₁)`` of the entropic OT plan between two Gaussians.

    ``C_ε = ½(Σ₀^½ D_ε Σ₀^{-½} − ε I)``, ``D_ε = (4 Σ₀^½ Σ₁ Σ₀^½ + ε² I)^½``: the plan of
    ``min E[½|x₀ − x₁|²] − ε H(π)`` (the Schrödinger bridge with reference ``√ε W``). It tends to the
    Monge coupling's ``Σ₀ A`` as ``ε → 0`` and to 0 as ``ε → ∞``. Means do not enter. Returns ``[D, D]``.
    """
    _, cov0 = _check_gaussian("(mean0, cov0)", mean0, cov0)
    _, cov1 = _check_gaussian("(mean1, cov1)", mean1, cov1)
    if cov0.shape != cov1.shape:
        raise ValueError(f"cov0 and cov1 must have the same shape, got {tuple(cov0.shape)} and {tuple(cov1.shape)}.")
    _check_epsilon(epsilon)
    d = cov0.shape[0]
    eye = jnp.eye(d, dtype=cov0.dtype)
    s0 = sqrtm_psd(cov0)
    s0_inv = inv_sqrtm_pd(cov0)
    d_eps = sqrtm_psd(4.0 * s0 @ cov1 @ s0 + epsilon**2 * eye)
    return 0.5 * (s0 @ d_eps @ s0_inv - epsilon * eye)


def gaussian_bridge_marginal(
    mean0: Any, cov0: Any, mean1: Any, cov1: Any, epsilon: Any, t: Any
) -> tuple[Array, Array]:
    r"""``(μ_t, Σ_t)`` of the Schrödinger bridge with reference ``√ε W`` between two Gaussians.

    ``μ_t = (1−t)μ₀ + tμ₁``, ``Σ_t = (1−t)²Σ₀ + t²Σ₁ + t(1−t)(C_ε + C_εᵀ) + ε t(1−t) I``.
    """
    mean0, cov0 = _check_gaussian("(mean0, cov0)", mean0, cov0)
    mean1, cov1 = _check_gaussian("(mean1, cov1)", mean1, cov1)
    t = jnp.asarray(t, cov0.dtype)
    if not isinstance(t, jax.core.Tracer) and (t.ndim != 0 or not 0.0 <= float(t) <= 1.0):
        raise ValueError(f"t must be a scalar in [0, 1], got t={np.asarray(t)!r}.")
    c = gaussian_entropic_ot(mean0, cov0, mean1, cov1, epsilon)
    eye = jnp.eye(cov0.shape[0], dtype=cov0.dtype)
    mean_t = (1.0 - t) * mean0 + t * mean1
    cov_t = (1.0 - t) ** 2 * cov0 + t**2 * cov1 + t * (1.0 - t) * (c + c.T) + epsilon * t * (1.0 - t) * eye
    return mean_t, cov_t


def gaussian_bridge_conditional(
    mean0: Any, cov0: Any, mean1: Any, cov1: Any, epsilon: Any
) -> tuple[Array, Array, Array]:
    r"""The EOT plan's conditional law ``x₁ | x₀ = x ~ N(b + A x, S)``: returns ``(A, b, S)``.

    ``A = C_εᵀ Σ₀^{-1}``, ``b = μ₁ − A μ₀``, ``S = Σ₁ − C_εᵀ Σ₀^{-1} C_ε``.
    """
    mean0, cov0 = _check_gaussian("(mean0, cov0)", mean0, cov0)
    mean1, cov1 = _check_gaussian("(mean1, cov1)", mean1, cov1)
    c = gaussian_entropic_ot(mean0, cov0, mean1, cov1, epsilon)
    a = jnp.linalg.solve(cov0, c).T
    s = cov1 - a @ c
    return a, mean1 - a @ mean0, 0.5 * (s + s.T)


def gaussian_monge_map(mean0: Any, cov0: Any, mean1: Any, cov1: Any) -> tuple[Array, Array]:
    r"""The quadratic-cost OT (Monge) map ``x ↦ μ₁ + A(x − μ₀)``, returned as ``(A, μ₁ − A μ₀)``.

    ``A = Σ₀^{-½} (Σ₀^½ Σ₁ Σ₀^½)^½ Σ₀^{-½}`` (symmetric positive definite).
    """
    mean0, cov0 = _check_gaussian("(mean0, cov0)", mean0, cov0)
    mean1, cov1 = _check_gaussian("(mean1, cov1)", mean1, cov1)
    s0 = sqrtm_psd(cov0)
    s0_inv = inv_sqrtm_pd(cov0)
    a = s0_inv @ sqrtm_psd(s0 @ cov1 @ s0) @ s0_inv
    a = 0.5 * (a + a.T)
    return a, mean1 - a @ mean0


def gaussian_w2_squared(mean0: Any, cov0: Any, mean1: Any, cov1: Any) -> Array:
    r"""``W₂²(N(μ₀,Σ₀), N(μ₁,Σ₁)) = |μ₀ − μ₁|² + tr Σ₀ + tr Σ₁ − 2 tr (Σ₀^½ Σ₁ Σ₀^½)^½``."""
    mean0, cov0 = _check_gaussian("(mean0, cov0)", mean0, cov0)
    mean1, cov1 = _check_gaussian("(mean1, cov1)", mean1, cov1)
    s0 = sqrtm_psd(cov0)
    cross = sqrtm_psd(s0 @ cov1 @ s0)
    return jnp.sum((mean0 - mean1) ** 2) + jnp.trace(cov0) + jnp.trace(cov1) - 2.0 * jnp.trace(cross)


def bures_wasserstein_squared(mean0: Any, cov0: Any, mean1: Any, cov1: Any) -> Array:
    """Alias of :func:`gaussian_w2_squared` (the Bures–Wasserstein distance between Gaussian fits)."""
    return gaussian_w2_squared(mean0, cov0, mean1, cov1)
