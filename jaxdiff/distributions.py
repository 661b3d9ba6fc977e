r"""Ground truth with closed forms: Gaussian mixtures with diagonal covariances.

For any linear process ``x_t = α(t) x_0 + σ(t) ε`` and ``x_0 ~ Σ_k w_k N(μ_k, diag s_k²)``, the law of
``x_t`` is again a mixture: ``Σ_k w_k N(α μ_k, diag(α² s_k² + σ²))``. So the marginal density, its
score ``∇ log p_t`` and the posterior mean ``E[x_0 | x_t]`` are exact, and every test and benchmark of
the project measures against them.

Shapes: a mixture of ``K`` components in ``D`` dimensions has ``weights: [K]``, ``means: [K, D]``,
``stds: [K, D]``; points are ``x: [..., D]``; per-point values are ``[...]``.
"""

from __future__ import annotations

import math
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff import _validation as V
from jaxdiff.processes import LinearProcess

Array = jax.Array

_LOG_2PI = math.log(2.0 * math.pi)


class GaussianMixture(eqx.Module):
    r"""``p(x) = Σ_k w_k N(x; μ_k, diag(s_k²))``.

    Args:
      weights: ``[K]`` non-negative, summing to 1.
      means: ``[K, D]``.
      stds: ``[K, D]`` positive (``[K]`` or a scalar broadcast to ``[K, D]``).
    """

    weights: Array
    means: Array
    stds: Array

    def __hash__(self) -> int:  # identity: fields are arrays; lets jax.jit(mixture.log_prob) work
        return id(self)

    def __init__(self, weights: Any, means: Any, stds: Any):
        dtype = jnp.result_type(float)
        means_np = np.asarray(means, dtype=np.float64) if V.is_concrete(means) else None
        if means_np is not None and means_np.ndim != 2:
            raise ValueError(
                f"means must have shape (components, dim), got means.shape={means_np.shape}."
            )
        num_components, dim = np.shape(means)
        weights_shape = np.shape(weights)
        if weights_shape != (num_components,):
            raise ValueError(
                f"weights must have shape (components,) = ({num_components},) to match means, "
                f"got weights.shape={weights_shape}."
            )
        stds_arr = jnp.asarray(stds, dtype)
        if stds_arr.ndim == 0 or stds_arr.shape == (num_components,):
            stds_arr = jnp.broadcast_to(
                stds_arr.reshape(stds_arr.shape + (1,) * (2 - stds_arr.ndim)), (num_components, dim)
            )
        if stds_arr.shape != (num_components, dim):
            raise ValueError(
                f"stds must have shape (components, dim) = ({num_components}, {dim}) like means, "
                f"got stds.shape={np.shape(stds)}."
            )
        V.check_positive("stds", stds_arr)
        if V.is_concrete(weights):
            w = np.asarray(weights, dtype=np.float64)
            if np.any(w < 0) or not np.all(np.isfinite(w)):
                raise ValueError(f"weights must be finite and >= 0, got weights={w.tolist()}.")
            if abs(w.sum() - 1.0) > 1e-5:
                raise ValueError(
                    f"weights must sum to 1 (within 1e-5), got weights={w.tolist()} with sum {w.sum():.8g}."
                )
        self.weights = jnp.asarray(weights, dtype)
        self.means = jnp.asarray(means, dtype)
        self.stds = stds_arr

    # --- constructors ----------------------------------------------------------------------------
    @classmethod
    def ring(cls, num_components: int = 8, radius: float = 4.0, std: float = 0.5) -> "GaussianMixture":
        """Equal-weight isotropic components on a circle in 2-D (the classic "8 Gaussians")."""
        V.check_int_at_least("num_components", num_components, 1)
        V.check_positive("radius", radius)
        V.check_positive("std", std)
        angles = 2.0 * np.pi * np.arange(num_components) / num_components
        means = radius * np.stack([np.cos(angles), np.sin(angles)], axis=-1)
        weights = np.full(num_components, 1.0 / num_components)
        return cls(weights, means, np.full((num_components, 2), std))

    @classmethod
    def gaussian(cls, mean: Any, std: Any) -> "GaussianMixture":
        """A single diagonal Gaussian ``N(mean, diag(std²))`` as a one-component mixture."""
        mean = jnp.atleast_1d(jnp.asarray(mean, jnp.result_type(float)))
        std = jnp.broadcast_to(jnp.asarray(std, mean.dtype), mean.shape)
        return cls(jnp.ones((1,)), mean[None], std[None])

    # --- basic facts ---------------------------------------------------------------------------
    @property
    def num_components(self) -> int:
        return self.means.shape[0]

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def mean(self) -> Array:
        """``E[x] = Σ_k w_k μ_k``. ``[D]``."""
        return self.weights @ self.means

    def covariance(self) -> Array:
        """``Cov[x] = Σ_k w_k (diag s_k² + μ_k μ_kᵀ) − E[x] E[x]ᵀ``. ``[D, D]``."""
        second = jnp.einsum("k,kd,ke->de", self.weights, self.means, self.means)
        second = second + jnp.diag(self.weights @ self.stds**2)
        m = self.mean()
        return second - jnp.outer(m, m)

    def _check_points(self, x: Any) -> Array:
        V.check_floating("x", x)
        if np.ndim(x) < 1 or np.shape(x)[-1] != self.dim:
            raise ValueError(
                f"x must have shape (..., {self.dim}) for this {self.dim}-D mixture, got x.shape={np.shape(x)}."
            )
        return jnp.asarray(x)

    # --- sampling and density ------------------------------------------------------------------
    def sample(self, key: Array, n: int) -> Array:
        """``n`` i.i.d. draws. Returns ``[n, D]``."""
        return self.sample_with_components(key, n)[0]

    def sample_with_components(self, key: Array, n: int) -> tuple[Array, Array]:
        """Draws and the index of the component each came from: ``([n, D], [n])``."""
        V.check_int_at_least("n", n, 1)
        k_comp, k_noise = jax.random.split(key)
        comp = jax.random.categorical(k_comp, jnp.log(self.weights), shape=(n,))
        noise = jax.random.normal(k_noise, (n, self.dim), self.means.dtype)
        return self.means[comp] + self.stds[comp] * noise, comp

    def component_log_probs(self, x: Array) -> Array:
        """``log w_k + log N(x; μ_k, diag s_k²)`` for every component. ``[..., D] -> [..., K]``."""
        x = self._check_points(x)
        return _component_log_probs(x, self.weights, self.means, self.stds)

    def log_prob(self, x: Array) -> Array:
        """``log p(x)``. ``[..., D] -> [...]``."""
        return jax.nn.logsumexp(self.component_log_probs(x), axis=-1)

    def prob(self, x: Array) -> Array:
        """``p(x)``. ``[..., D] -> [...]``."""
        return jnp.exp(self.log_prob(x))

    def responsibilities(self, x: Array) -> Array:
        """Posterior component probabilities ``P(k | x)``. ``[..., D] -> [..., K]``."""
        return jax.nn.softmax(self.component_log_probs(x), axis=-1)

    def score(self, x: Array) -> Array:
        r"""``∇ log p(x) = Σ_k P(k|x) · (μ_k − x) / s_k²``. ``[..., D] -> [..., D]``."""
        x = self._check_points(x)
        return _mixture_score(x, self.weights, self.means, self.stds)

    # --- under a linear process -----------------------------------------------------------------
    def marginal(self, sde: LinearProcess, t: Any) -> "GaussianMixture":
        """The exact law of ``x_t = α(t) x_0 + σ(t) ε`` for ``x_0`` from this mixture (scalar ``t``)."""
        if np.ndim(t) != 0:
            raise ValueError(
                f"t must be a scalar for marginal() (it returns one mixture), got t.shape={np.shape(t)}; "
                "use marginal_log_prob / marginal_score for per-example times."
            )
        alpha = sde.marginal_mean_coeff(t)
        sigma = sde.marginal_std(t)
        means = alpha * self.means
        stds = jnp.sqrt(alpha**2 * self.stds**2 + sigma**2)
        return GaussianMixture._unchecked(self.weights, means, stds)

    def _marginal_params(self, sde: LinearProcess, x: Array, t: Any) -> tuple[Array, Array, Array]:
        """Component means, stds of ``p_t`` and ``α(t)``, shaped to broadcast against ``x[..., None, :]``."""
        V.check_time_shape("t", t, x)
        t = sde._time(t)
        alpha, sigma = sde._alpha(t), sde._sigma(t)
        if np.ndim(t) == 1:  # one time per leading (batch) entry of x
            extra = (1,) * (np.ndim(x) - 1 + 1)  # the remaining leading axes, then K and D
            alpha = alpha.reshape(alpha.shape + extra)
            sigma = sigma.reshape(sigma.shape + extra)
        alpha = jnp.asarray(alpha, x.dtype)
        sigma = jnp.asarray(sigma, x.dtype)
        means = alpha * self.means.astype(x.dtype)
        stds = jnp.sqrt(alpha**2 * self.stds.astype(x.dtype) ** 2 + sigma**2)
        return means, stds, alpha

    def marginal_log_prob(self, sde: LinearProcess, x: Array, t: Any) -> Array:
        """``log p_t(x)``; ``t`` scalar or ``[batch]`` (one per ``x[i]``). ``[..., D] -> [...]``."""
        x = self._check_points(x)
        means, stds, _ = self._marginal_params(sde, x, t)
        return jax.nn.logsumexp(_component_log_probs(x, self.weights, means, stds), axis=-1)

    def marginal_score(self, sde: LinearProcess, x: Array, t: Any) -> Array:
        """``∇ log p_t(x)``; ``t`` scalar or ``[batch]``. ``[..., D] -> [..., D]``."""
        x = self._check_points(x)
        means, stds, _ = self._marginal_params(sde, x, t)
        return _mixture_score(x, self.weights, means, stds)

    def conditional_score(self, sde: LinearProcess, x: Array, t: Any, cond: Any) -> Array:
        r"""``∇ log p_t(x | c)`` when the components are the classes: component ``c``'s marginal score
        ``(α μ_c − x) / (α² s_c² + σ²)``; ``cond`` an int or ints ``[batch]`` (one per ``x[i]``), ``t`` scalar or
        ``[batch]``. The guided score of weight ``w`` is ``(1 + w) conditional_score − w marginal_score``.
        ``[..., D] -> [..., D]``."""
        x = self._check_points(x)
        means, stds, _ = self._marginal_params(sde, x, t)
        cond = jnp.asarray(cond)
        if not jnp.issubdtype(cond.dtype, jnp.integer):
            raise TypeError(f"cond must be integer component indices, got dtype {cond.dtype}.")
        if V.is_concrete(cond) and np.size(cond) and (np.min(cond) < 0 or np.max(cond) >= self.num_components):
            raise ValueError(f"cond must lie in [0, {self.num_components}) (one class per component), got "
                             f"min {np.min(cond)}, max {np.max(cond)}.")
        one_hot = jax.nn.one_hot(cond, self.num_components, dtype=x.dtype)
        weights = jnp.broadcast_to(one_hot, x.shape[:-1] + (self.num_components,))
        return _mixture_score(x, weights, means, stds)

    def posterior_mean(self, sde: LinearProcess, x_t: Array, t: Any) -> Array:
        r"""``E[x_0 | x_t]`` under ``x_t = α x_0 + σ ε``; ``t`` scalar or ``[batch]``.

        ``Σ_k P(k | x_t) [μ_k + α s_k² / (α² s_k² + σ²) · (x_t − α μ_k)]``. ``[..., D] -> [..., D]``.
        """
        x_t = self._check_points(x_t)
        means_t, stds_t, alpha = self._marginal_params(sde, x_t, t)
        log_resp = _component_log_probs(x_t, self.weights, means_t, stds_t)
        resp = jax.nn.softmax(log_resp, axis=-1)[..., None]  # [..., K, 1]
        prior_means = self.means.astype(x_t.dtype)
        prior_var = self.stds.astype(x_t.dtype) ** 2
        gain = alpha * prior_var / stds_t**2
        per_comp = prior_means + gain * (x_t[..., None, :] - means_t)
        return jnp.sum(resp * per_comp, axis=-2)

    # --- under an interpolant to another mixture (flows; x0 from self, x1 from target) ----------
    def _interpolant_params(self, target: "GaussianMixture", path: Any, x: Array, t: Any):
        r"""Pair-component parameters of ``x_t = a x₀ + b x₁ + c z`` with ``x₀ ~ self``, ``x₁ ~ target``
        independent: weights ``w_i v_j``, means ``a μ_i + b ν_j``, variances ``a² s_i² + b² r_j² + c²``
        and their time derivatives, flattened over ``(i, j)`` and shaped against ``x[..., None, :]``."""
        if not isinstance(target, GaussianMixture):
            raise TypeError(f"target must be a GaussianMixture, got {type(target).__name__}.")
        if target.dim != self.dim:
            raise ValueError(f"target has dimension {target.dim}, but this mixture has dimension {self.dim}.")
        V.check_time_shape("t", t, x)
        (a, b, c), (da, db, dc) = path.coefficients(t), path.coefficient_derivatives(t)  # both check t
        coeffs = [jnp.asarray(v, x.dtype) for v in (a, b, c, da, db, dc)]
        if np.ndim(t) == 1:
            extra = (1,) * (np.ndim(x) - 1 + 1)
            coeffs = [v.reshape(v.shape + extra) for v in coeffs]
        a, b, c, da, db, dc = coeffs
        dtype = x.dtype
        mu0, s0 = self.means.astype(dtype)[:, None, :], self.stds.astype(dtype)[:, None, :] ** 2
        mu1, s1 = target.means.astype(dtype)[None, :, :], target.stds.astype(dtype)[None, :, :] ** 2
        k = self.num_components * target.num_components
        weights = (self.weights[:, None] * target.weights[None, :]).reshape(k).astype(dtype)
        shape = lambda v: v.reshape(v.shape[:-3] + (k, self.dim))  # noqa: E731
        means = shape(a[..., None] * mu0 + b[..., None] * mu1)
        var = shape(a[..., None] ** 2 * s0 + b[..., None] ** 2 * s1 + c[..., None] ** 2)
        mean_rate = shape(da[..., None] * mu0 + db[..., None] * mu1)
        half_var_rate = shape(a[..., None] * da[..., None] * s0 + b[..., None] * db[..., None] * s1
                              + c[..., None] * dc[..., None])
        return weights, means, var, mean_rate, half_var_rate

    def interpolant_marginal(self, target: "GaussianMixture", path: Any, t: Any) -> "GaussianMixture":
        r"""The exact law of ``x_t = a x₀ + b x₁ + c z`` (``x₀ ~ self``, ``x₁ ~ target`` independent) at a
        scalar ``t``: the mixture ``Σ_ij w_i v_j N(a μ_i + b ν_j, diag(a² s_i² + b² r_j² + c²))``."""
        if np.ndim(t) != 0:
            raise ValueError(f"t must be a scalar for interpolant_marginal(), got t.shape={np.shape(t)}.")
        x = jnp.zeros((self.dim,), self.means.dtype)
        weights, means, var, _, _ = self._interpolant_params(target, path, x, t)
        return GaussianMixture._unchecked(weights, means, jnp.sqrt(var))

    def interpolant_log_prob(self, target: "GaussianMixture", path: Any, x: Array, t: Any) -> Array:
        """``log p_t(x)`` of the interpolant's marginal; ``t`` scalar or ``[batch]``. ``[..., D] -> [...]``."""
        x = self._check_points(x)
        weights, means, var, _, _ = self._interpolant_params(target, path, x, t)
        return jax.nn.logsumexp(_component_log_probs(x, weights, means, jnp.sqrt(var)), axis=-1)

    def interpolant_score(self, target: "GaussianMixture", path: Any, x: Array, t: Any) -> Array:
        """``∇ log p_t(x)`` of the interpolant's marginal; ``t`` scalar or ``[batch]``. ``[..., D] -> [..., D]``."""
        x = self._check_points(x)
        weights, means, var, _, _ = self._interpolant_params(target, path, x, t)
        return _mixture_score(x, weights, means, jnp.sqrt(var))

    def interpolant_velocity(self, target: "GaussianMixture", path: Any, x: Array, t: Any) -> Array:
        r"""The marginal velocity ``u_t(x) = E[ȧ x₀ + ḃ x₁ + ċ z | x_t = x]`` of the independent coupling.

        Per pair component ``(i, j)`` the triple ``(x₀, x₁, z)`` and ``x_t`` are jointly Gaussian, so
        ``E[u | x_t = x, ij] = ṁ_ij + ½ Ṡ_ij S_ij^{-1} (x − m_ij)`` with ``S_ij = a² s_i² + b² r_j² + c²``
        (diagonal), ``½ Ṡ_ij = a ȧ s_i² + b ḃ r_j² + c ċ``; ``u_t(x) = Σ_ij P(ij | x) E[u | x, ij]``.
        It satisfies the continuity equation ``∂_t p_t + ∇·(p_t u_t) = 0``. ``[..., D] -> [..., D]``.
        """
        x = self._check_points(x)
        weights, means, var, mean_rate, half_var_rate = self._interpolant_params(target, path, x, t)
        resp = jax.nn.softmax(_component_log_probs(x, weights, means, jnp.sqrt(var)), axis=-1)[..., None]
        per_comp = mean_rate + half_var_rate / var * (x[..., None, :] - means)
        return jnp.sum(resp * per_comp, axis=-2)

    @classmethod
    def _unchecked(cls, weights: Array, means: Array, stds: Array) -> "GaussianMixture":
        """Build without the Python-side checks (for values derived inside traced code)."""
        obj = object.__new__(cls)
        object.__setattr__(obj, "weights", weights)
        object.__setattr__(obj, "means", means)
        object.__setattr__(obj, "stds", stds)
        return obj


def _component_log_probs(x: Array, weights: Array, means: Array, stds: Array) -> Array:
    """``log w_k + Σ_d log N(x_d; μ_kd, s_kd²)``, ``x: [..., D]`` against ``means: [..., K, D]``."""
    dtype = x.dtype
    means = means.astype(dtype)
    stds = stds.astype(dtype)
    z = (x[..., None, :] - means) / stds
    per_dim = -0.5 * z**2 - jnp.log(stds) - 0.5 * _LOG_2PI
    return jnp.log(weights.astype(dtype)) + per_dim.sum(axis=-1)


def _mixture_score(x: Array, weights: Array, means: Array, stds: Array) -> Array:
    """``Σ_k P(k|x) (μ_k − x)/s_k²`` with responsibilities from ``_component_log_probs``."""
    resp = jax.nn.softmax(_component_log_probs(x, weights, means, stds), axis=-1)[..., None]
    comp_scores = (means.astype(x.dtype) - x[..., None, :]) / stds.astype(x.dtype) ** 2
    return jnp.sum(resp * comp_scores, axis=-2)

