"""Distances between sample sets, used by tests, benchmarks and evaluation.

Besides the sliced Wasserstein distance, the Fréchet distance ``‖μa − μb‖² + tr(Σa + Σb −
2 (Σa^{1/2} Σb Σa^{1/2})^{1/2})`` between Gaussians fitted to features, and FD_digits: the Fréchet
distance in the feature space of the project's digits classifier (:func:`digits_classifier`, a small
MLP trained on the training split of scikit-learn's digits). FD_digits is analogous to FID but not
comparable to it: another network, other features, other data.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax.linen as nn
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


# --------------------------------------------------------------------------------------------------
# Fréchet distance between Gaussians fitted to features
# --------------------------------------------------------------------------------------------------


def _check_features(name: str, features) -> np.ndarray:
    """``features`` as a float64 ``[N, F]`` array with ``N ≥ 2`` finite rows, or a ValueError naming it."""
    arr = np.asarray(features, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array [num_points, num_features], got shape {arr.shape}.")
    if arr.shape[0] < 2:
        raise ValueError(f"{name} needs at least 2 rows to estimate a covariance, got shape {arr.shape}.")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {np.count_nonzero(~np.isfinite(arr))} non-finite entries.")
    return arr


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """``A^{1/2} = Q diag(√max(λ, 0)) Qᵀ`` for a symmetric ``A = Q diag(λ) Qᵀ`` (round-off negatives → 0)."""
    eigenvalues, eigenvectors = np.linalg.eigh(0.5 * (matrix + matrix.T))
    return (eigenvectors * np.sqrt(np.clip(eigenvalues, 0.0, None))) @ eigenvectors.T


def frechet_distance_from_moments(mu_a, cov_a, mu_b, cov_b) -> float:
    r"""Fréchet (2-Wasserstein²) distance between ``N(μa, Σa)`` and ``N(μb, Σb)``:
    ``‖μa − μb‖² + tr(Σa + Σb − 2 (Σa^{1/2} Σb Σa^{1/2})^{1/2})``.

    Float64 NumPy with symmetric eigendecompositions only (so singular covariances are fine: eigenvalues
    that round-off pushes below 0 are clipped to 0). Covariances are symmetrized; the result is clipped
    at 0 for the same reason.
    """
    mu_a, mu_b = np.asarray(mu_a, np.float64), np.asarray(mu_b, np.float64)
    cov_a, cov_b = np.asarray(cov_a, np.float64), np.asarray(cov_b, np.float64)
    for name, mu in (("mu_a", mu_a), ("mu_b", mu_b)):
        if mu.ndim != 1:
            raise ValueError(f"{name} must be a 1-D mean vector, got shape {mu.shape}.")
    if mu_a.shape != mu_b.shape:
        raise ValueError(f"mu_a and mu_b must have the same dimension, got shapes {mu_a.shape} and {mu_b.shape}.")
    dim = mu_a.shape[0]
    for name, cov in (("cov_a", cov_a), ("cov_b", cov_b)):
        if cov.shape != (dim, dim):
            raise ValueError(f"{name} must be a ({dim}, {dim}) covariance matching the means, got shape {cov.shape}.")
        if not np.all(np.isfinite(cov)):
            raise ValueError(f"{name} must be finite, got {np.count_nonzero(~np.isfinite(cov))} non-finite entries.")
    sqrt_a = _psd_sqrt(cov_a)
    cross = sqrt_a @ (0.5 * (cov_b + cov_b.T)) @ sqrt_a
    cross_eigenvalues = np.linalg.eigvalsh(0.5 * (cross + cross.T))
    trace_sqrt_cross = np.sum(np.sqrt(np.clip(cross_eigenvalues, 0.0, None)))
    mean_term = np.sum((mu_a - mu_b) ** 2)
    value = mean_term + np.trace(cov_a) + np.trace(cov_b) - 2.0 * trace_sqrt_cross
    return float(max(value, 0.0))


def frechet_distance(features_a, features_b) -> float:
    r"""Fréchet distance between Gaussians fitted to two feature sets ``[Na, F]`` and ``[Nb, F]``:
    ``‖μa − μb‖² + tr(Σa + Σb − 2 (Σa^{1/2} Σb Σa^{1/2})^{1/2})`` with sample means and unbiased
    (``N − 1``) covariances, in float64 (see :func:`frechet_distance_from_moments`)."""
    a = _check_features("features_a", features_a)
    b = _check_features("features_b", features_b)
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"features_a and features_b must have the same number of features, got shapes {a.shape} and {b.shape}."
        )
    return frechet_distance_from_moments(
        a.mean(axis=0), np.cov(a, rowvar=False, ddof=1).reshape(a.shape[1], a.shape[1]),
        b.mean(axis=0), np.cov(b, rowvar=False, ddof=1).reshape(b.shape[1], b.shape[1]),
    )


# --------------------------------------------------------------------------------------------------
# FD_digits: the Fréchet distance in the feature space of the project's digits classifier
# --------------------------------------------------------------------------------------------------

DIGITS_LEVELS = 17  # scikit-learn's digits: grey levels 0..16
DIGITS_HELD_OUT_FRACTION = 0.2  # the project's fixed held-out split: stratified_split(labels, 0.2, seed=0)
DIGITS_SPLIT_SEED = 0
CLASSIFIER_STEPS = 600
CLASSIFIER_LEARNING_RATE = 3e-3
CLASSIFIER_WEIGHT_DECAY = 1e-4


class DigitsMLP(nn.Module):
    """``x ∈ [0, 1]^64 → relu(W₁x) ∈ ℝ^128 → f = relu(W₂ ·) ∈ ℝ^64 (features) → logits ∈ ℝ^10``, float32."""

    hidden_dim: int = 128
    feature_dim: int = 64
    num_classes: int = 10

    @nn.compact
    def __call__(self, x):
        """``(logits [N, 10], features [N, 64])`` of ``x: [N, 64]``."""
        dense = lambda width: nn.Dense(width, dtype=jnp.float32, param_dtype=jnp.float32)  # noqa: E731
        hidden = nn.relu(dense(self.hidden_dim)(x.astype(jnp.float32)))
        features = nn.relu(dense(self.feature_dim)(hidden))
        return dense(self.num_classes)(features), features


def _digits_inputs(levels, name: str = "levels") -> jax.Array:
    """Digit images in level units (``[N, 8, 8, 1]``, ``[N, 8, 8]`` or ``[N, 64]``, any numeric dtype) →
    classifier inputs ``levels / 16`` as float32 ``[N, 64]``."""
    arr = np.asarray(levels)
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise ValueError(f"{name} must be a numeric array of digit levels 0..16, got dtype {arr.dtype}.")
    if arr.ndim < 2 or arr.shape[1:] not in ((8, 8, 1), (8, 8), (64,)):
        raise ValueError(f"{name} must have shape [N, 8, 8, 1], [N, 8, 8] or [N, 64], got {arr.shape}.")
    flat = arr.reshape(arr.shape[0], 64).astype(np.float32)
    if not np.all(np.isfinite(flat)):
        raise ValueError(f"{name} must be finite, got {np.count_nonzero(~np.isfinite(flat))} non-finite entries.")
    return jnp.asarray(flat / np.float32(DIGITS_LEVELS - 1), dtype=jnp.float32)


@jax.jit
def _classifier_outputs(params, x):
    return DigitsMLP().apply({"params": params}, x)


def _adamw_step(params, grads, first_moment, second_moment, step_count):
    r"""One float32 AdamW step (``t = step_count``, gradient ``g``, decoupled weight decay ``λ``):
    ``m ← β₁m + (1−β₁)g``, ``v ← β₂v + (1−β₂)g²``, ``p ← p − η (m/(1−β₁ᵗ) / (√(v/(1−β₂ᵗ)) + ε) + λ p)``.

    Written out (rather than optax's) so every constant is float32 and the result is the same bit for bit
    with and without ``jax_enable_x64``."""
    f32 = np.float32
    b1, b2, eps = f32(0.9), f32(0.999), f32(1e-8)
    lr, wd = f32(CLASSIFIER_LEARNING_RATE), f32(CLASSIFIER_WEIGHT_DECAY)
    t = jnp.asarray(step_count, jnp.float32)
    first_moment = jax.tree.map(lambda m, g: b1 * m + (f32(1) - b1) * g, first_moment, grads)
    second_moment = jax.tree.map(lambda v, g: b2 * v + (f32(1) - b2) * g * g, second_moment, grads)
    correction_1, correction_2 = f32(1) - b1**t, f32(1) - b2**t
    params = jax.tree.map(
        lambda p, m, v: p - lr * ((m / correction_1) / (jnp.sqrt(v / correction_2) + eps) + wd * p),
        params, first_moment, second_moment,
    )
    return params, first_moment, second_moment


def _train_digits_mlp(seed: int, x: jax.Array, y: jax.Array):
    """Full-batch AdamW (:func:`_adamw_step`) on the mean cross-entropy ``−(1/N) Σ log softmax(f(x_i))_{y_i}``
    for ``CLASSIFIER_STEPS`` steps from a ``PRNGKey(seed)`` initialization; float32 throughout."""
    model = DigitsMLP()
    params = model.init(jax.random.PRNGKey(seed), x[:1])["params"]
    one_hot = jax.nn.one_hot(y, model.num_classes, dtype=jnp.float32)

    def loss(p):
        logits, _ = model.apply({"params": p}, x)
        return -jnp.mean(jnp.sum(one_hot * jax.nn.log_softmax(logits), axis=-1))

    def step(i, carry):
        p, m, v = carry
        return _adamw_step(p, jax.grad(loss)(p), m, v, i + 1)

    zeros = jax.tree.map(jnp.zeros_like, params)
    train = jax.jit(lambda p: jax.lax.fori_loop(0, CLASSIFIER_STEPS, step, (p, zeros, zeros))[0])
    return train(params)


@dataclasses.dataclass(frozen=True)
class DigitsClassifier:
    """The project's digits classifier (:class:`DigitsMLP`, trained by :func:`train_digits_classifier`).

    ``features(levels)`` is its 64-D penultimate layer; FD_digits — the Fréchet distance in the feature
    space of the project's digits classifier — is :func:`frechet_distance` of two sets of these features.
    It plays the role of FID for 8×8 digits but is not comparable to FID (different network, features
    and data).
    """

    seed: int
    params: Any
    train_accuracy: float
    test_accuracy: float

    def features(self, levels) -> np.ndarray:
        """Penultimate-layer features ``[N, 64]`` (float32) of images in level units 0..16."""
        return np.asarray(_classifier_outputs(self.params, _digits_inputs(levels))[1])

    def predict(self, levels) -> np.ndarray:
        """Predicted digit classes ``[N]`` (int32) of images in level units 0..16."""
        logits = _classifier_outputs(self.params, _digits_inputs(levels))[0]
        return np.asarray(jnp.argmax(logits, axis=-1), dtype=np.int32)


def train_digits_classifier(seed: int = 0) -> DigitsClassifier:
    """Train the digits classifier for FD_digits on the project's training split only
    (``stratified_split(labels, 0.2, seed=0)``'s ``keep``, 1438 images); uncached — use
    :func:`digits_classifier`.

    A :class:`DigitsMLP` (64 → 128 → 64 features → 10) on ``levels / 16``, full-batch AdamW (lr 3e-3,
    weight decay 1e-4) for 600 steps in float32 from ``PRNGKey(seed)`` — no minibatch order, no
    augmentation — so a seed gives the same weights bit for bit in the same environment, with or without
    ``jax_enable_x64``. ``test_accuracy`` is measured on the 359 held-out images (0.9666 for seed 0 on
    x86-64 CPU; ≥ 0.95 is tested). About 1 s on 2 CPU cores once compiled.
    """
    from jaxdiff.training.data import load_digits_arrays, stratified_split

    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an integer, got seed={seed!r}.")
    images, labels = load_digits_arrays()
    keep, held = stratified_split(labels, DIGITS_HELD_OUT_FRACTION, DIGITS_SPLIT_SEED)
    x_train, y_train = _digits_inputs(images[keep], "images"), jnp.asarray(labels[keep], jnp.int32)
    params = _train_digits_mlp(int(seed), x_train, y_train)
    classifier = DigitsClassifier(int(seed), params, 0.0, 0.0)
    train_accuracy = float(np.mean(classifier.predict(images[keep]) == labels[keep]))
    test_accuracy = float(np.mean(classifier.predict(images[held]) == labels[held]))
    return dataclasses.replace(classifier, train_accuracy=train_accuracy, test_accuracy=test_accuracy)


@functools.lru_cache(maxsize=None)
def _cached_digits_classifier(seed: int) -> DigitsClassifier:
    return train_digits_classifier(seed)


def digits_classifier(seed: int = 0) -> DigitsClassifier:
    """The digits classifier behind FD_digits (:func:`train_digits_classifier`), trained once per ``seed``
    and process (``functools.lru_cache``)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an integer, got seed={seed!r}.")
    return _cached_digits_classifier(int(seed))


def digits_frechet_distance(samples_levels, reference_levels, seed: int = 0) -> float:
    """FD_digits: :func:`frechet_distance` between the :func:`digits_classifier` ``(seed)`` features of two
    sets of digit images in level units 0..16 (e.g. model samples and held-out images)."""
    samples = _digits_inputs(samples_levels, "samples_levels")
    reference = _digits_inputs(reference_levels, "reference_levels")
    params = digits_classifier(seed).params
    return frechet_distance(np.asarray(_classifier_outputs(params, samples)[1]),
                            np.asarray(_classifier_outputs(params, reference)[1]))


__all__ = [
    "DIGITS_LEVELS",
    "DigitsClassifier",
    "DigitsMLP",
    "digits_classifier",
    "digits_frechet_distance",
    "frechet_distance",
    "frechet_distance_from_moments",
    "mixture_weight_error",
    "sliced_wasserstein",
    "train_digits_classifier",
]
