"""Distances between sample sets, used by tests, benchmarks and evaluation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff import _validation as V

Array = jax.Array


def sliced_wasserstein(key: Array, x: Array, y: Array, num_projections: int = 256) -> Array:
    r"""Sliced 2-Wasserstein distance ``(E_θ W₂²(θᵀx, θᵀy))^{1/2}`` over random unit directions ``θ``.

    ``x, y: [n, ...]`` with the same ``n`` (the 1-D W₂ between equal-size empirical laws is the mean
    squared difference of sorted projections). Returns a scalar.
    """
    V.check_int_at_least("num_projections", num_projections, 1)
    x = jnp.reshape(x, (np.shape(x)[0], -1))
    y = jnp.reshape(y, (np.shape(y)[0], -1))
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same number of points and dimensions, got {x.shape} and {y.shape}.")
    theta = jax.random.normal(key, (x.shape[1], num_projections), x.dtype)
    theta = theta / jnp.linalg.norm(theta, axis=0, keepdims=True)
    px, py = jnp.sort(x @ theta, axis=0), jnp.sort(y @ theta, axis=0)
    return jnp.sqrt(jnp.mean((px - py) ** 2))


def mixture_weight_error(mixture, x: Array) -> Array:
    """Max abs difference between the mixture weights and the mean responsibilities of ``x`` (the
    fraction of samples each component explains)."""
    return jnp.max(jnp.abs(jnp.mean(mixture.responsibilities(x), axis=0) - mixture.weights))
