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
    mu_a, cov_a, mu_b, cov_b = _checked_moments(mu_a, cov_a, mu_b, cov_b)
    sqrt_a = _psd_sqrt(cov_a)
    cross = sqrt_a @ (0.5 * (cov_b + cov_b.T)) @ sqrt_a
    cross_eigenvalues = np.linalg.eigvalsh(0.5 * (cross + cross.T))
    trace_sqrt_cross = np.sum(np.sqrt(np.clip(cross_eigenvalues, 0.0, None)))
    mean_term = np.sum((mu_a - mu_b) ** 2)
    value = mean_term + np.trace(cov_a) + np.trace(cov_b) - 2.0 * trace_sqrt_cross
    return float(max(value, 0.0))


def _frechet_distance_few_rows(features_a: np.ndarray, mu_b, cov_b) -> float:
    r""":func:`frechet_distance_from_moments` of the features ``[N, F]``'s Gaussian and ``N(μb, Σb)`` when
    ``N − 1 < F``: with centred rows ``A``, ``Σa = AᵀA/(N−1)`` and the nonzero eigenvalues of ``Σa^{1/2} Σb Σa^{1/2}``
    are those of ``A Σb Aᵀ/(N−1)`` (``[N, N]``), so no ``F × F`` decomposition is needed (FID of a few hundred samples
    in 2,048 Inception features)."""
    n, dim = features_a.shape
    mu_a = features_a.mean(axis=0)
    centered = features_a - mu_a
    _, _, mu_b, cov_b = _checked_moments(mu_a, np.broadcast_to(0.0, (dim, dim)), mu_b, cov_b)  # (μb, Σb's checks)
    small = centered @ (0.5 * (cov_b + cov_b.T)) @ centered.T / (n - 1)
    trace_sqrt_cross = np.sum(np.sqrt(np.clip(np.linalg.eigvalsh(0.5 * (small + small.T)), 0.0, None)))
    value = np.sum((mu_a - mu_b) ** 2) + np.sum(centered**2) / (n - 1) + np.trace(cov_b) - 2.0 * trace_sqrt_cross
    return float(max(value, 0.0))


def _checked_moments(mu_a, cov_a, mu_b, cov_b):
    """Float64 ``(μa, Σa, μb, Σb)``, or a ValueError naming the argument with a wrong shape or non-finite entries."""
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
    return mu_a, cov_a, mu_b, cov_b


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


# --------------------------------------------------------------------------------------------------
# FID, Inception Score and KID with the FID Inception network (pytorch-fid's weights)
# --------------------------------------------------------------------------------------------------


def _check_images(images) -> np.ndarray:
    arr = np.asarray(images)
    if arr.dtype != np.uint8:
        raise TypeError(f"images must be uint8 [N, H, W, 3] (0..255), got dtype {arr.dtype}; convert float images in "
                        "[0, 1] as score_sde does: np.clip(x * 255, 0, 255).astype(np.uint8).")
    if arr.ndim != 4 or arr.shape[-1] != 3 or arr.shape[0] < 1:
        raise ValueError(f"images must be [N, H, W, 3] with N >= 1 (NHWC, RGB), got shape {arr.shape}.")
    return arr


def inception_features_and_logits(images, weights, *, mode: str = "pytorch_fid",
                                  batch_size: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """uint8 ``[N, H, W, 3]`` images → (pool3 features ``[N, 2048]``, logits ``[N, 1008]``), both float64; the logits
    are ``pool3 · Wᵀ`` without the fc bias, as the Inception Score's original code and torch-fidelity take them.

    The FID Inception network (:mod:`jaxdiff.inception`) with ``weights`` (the path of pytorch-fid's
    ``pt_inception-2015-12-05-6726825d.pth`` state dict, an ``.npz`` of it, or the dict itself) and the input
    pipeline ``mode`` ("pytorch_fid" or "tf_legacy"). Batches of ``batch_size`` images, one compile per shape
    (the last batch is padded to ``batch_size``).
    """
    from jaxdiff import inception

    if mode not in inception.MODES:
        raise ValueError(f"mode must be one of {inception.MODES}, got mode={mode!r}.")
    V.check_int_at_least("batch_size", batch_size, 1)
    arr = _check_images(images)
    params = inception.load_params(weights)
    n = arr.shape[0]
    size = min(batch_size, n)
    pools, logits = [], []
    for start in range(0, n, size):
        chunk = arr[start:start + size]
        real = chunk.shape[0]
        if real < size:
            chunk = np.concatenate([chunk, np.zeros((size - real,) + chunk.shape[1:], np.uint8)])
        pool, logit = inception._features_batch(params, jnp.asarray(chunk), mode)
        pools.append(np.asarray(pool, np.float64)[:real])
        logits.append(np.asarray(logit, np.float64)[:real])
    return np.concatenate(pools), np.concatenate(logits)


def inception_features(images, weights, *, mode: str = "pytorch_fid", batch_size: int = 100) -> np.ndarray:
    """Pool3 features float64 ``[N, 2048]`` of uint8 images ``[N, H, W, 3]``, as pytorch-fid computes them
    (``mode="pytorch_fid"``: bilinear resize to 299 with PyTorch's half-pixel rule, no antialiasing, ``2x − 1``).
    See :func:`inception_features_and_logits`."""
    return inception_features_and_logits(images, weights, mode=mode, batch_size=batch_size)[0]


def feature_statistics(features) -> tuple[np.ndarray, np.ndarray]:
    """``(μ, Σ)`` of features ``[N, F]`` in float64: the mean and the unbiased (``N − 1``) covariance, as
    pytorch-fid's ``calculate_activation_statistics``."""
    arr = _check_features("features", features)
    return arr.mean(axis=0), np.cov(arr, rowvar=False, ddof=1).reshape(arr.shape[1], arr.shape[1])


def load_reference(path, expected_dim: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Reference ``(μ, Σ, activations or None)`` from an ``.npz``: ``mu`` and ``sigma`` (pytorch-fid's
    ``--save-stats`` files; :mod:`experiments.fid_stats` writes them, and ``pool_3`` too unless told not to) or raw
    pool3 activations only (``pool_3``, as score_sde's ``cifar10_stats.npz``; or ``features`` / ``activations``),
    whose statistics are computed here. ``expected_dim``: refuse statistics of another feature size. Raises
    FileNotFoundError / ValueError naming the file and what it holds."""
    import os

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"fid_stats: no statistics file at {path!r}.")
    try:
        data = np.load(path, allow_pickle=False)
    except Exception as err:  # noqa: BLE001
        raise ValueError(f"fid_stats: {path} is not an .npz file of statistics ({err}).") from None
    if not hasattr(data, "files"):
        raise ValueError(f"fid_stats: {path} is a bare array; expected an .npz with 'mu' and 'sigma' or 'pool_3'.")
    with data:
        files = set(data.files)
        acts = None
        for key in ("pool_3", "features", "activations"):
            if key in files:
                acts = np.asarray(data[key], np.float64)
                acts = acts.reshape(acts.shape[0], -1)
                break
        if {"mu", "sigma"} <= files:
            mu, sigma = np.asarray(data["mu"], np.float64), np.asarray(data["sigma"], np.float64)
            if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
                raise ValueError(f"fid_stats: {path} has mu of shape {mu.shape} and sigma of shape {sigma.shape}; "
                                 "expected [F] and [F, F].")
        elif acts is not None:
            mu, sigma = feature_statistics(acts)
        else:
            raise ValueError(f"fid_stats: {path} holds {sorted(files)}; expected 'mu' and 'sigma' (statistics) or "
                             "'pool_3' (activations).")
    if expected_dim is not None and mu.shape[0] != expected_dim:
        raise ValueError(f"fid_stats: {path} holds statistics of {mu.shape[0]} features, expected {expected_dim} "
                         "(Inception pool3).")
    return mu, sigma, acts


def load_statistics(path) -> tuple[np.ndarray, np.ndarray]:
    """Reference ``(μ, Σ)`` of a statistics or activations file (see :func:`load_reference`)."""
    return load_reference(path)[:2]


def fid(features_or_stats_a, features_or_stats_b) -> float:
    """FID: the Fréchet distance between two feature sets ``[N, 2048]`` or ``(μ, Σ)`` pairs (either may be
    either), with float64 moments and a symmetric eigen-form trace square root that is exact for singular
    covariances (see :func:`frechet_distance_from_moments`). A feature set with fewer rows than features (N − 1 < F)
    is used through its ``[N, N]`` Gram form, the same value without a ``2048 × 2048`` eigendecomposition."""

    def moments(x, name):
        if isinstance(x, tuple) and len(x) == 2:
            return x
        return feature_statistics(_check_features(name, x))

    sides = ((features_or_stats_a, "features_a", features_or_stats_b, "features_b"),
             (features_or_stats_b, "features_b", features_or_stats_a, "features_a"))
    for features, name, other, other_name in sides:  # (FD is symmetric)
        if not (isinstance(features, tuple) and len(features) == 2):
            rows = _check_features(name, features)
            if rows.shape[0] - 1 < rows.shape[1]:  # fewer samples than features: the [N, N] form
                return _frechet_distance_few_rows(rows, *moments(other, other_name))
    mu_a, sigma_a = moments(features_or_stats_a, "features_a")
    mu_b, sigma_b = moments(features_or_stats_b, "features_b")
    return frechet_distance_from_moments(mu_a, sigma_a, mu_b, sigma_b)


def inception_score(logits, splits: int = 10, shuffle_seed: int | None = None) -> tuple[float, float]:
    r"""Inception Score ``exp(E_x KL(p(y|x) ‖ p(y)))`` from logits ``[N, 1008]``: mean and population standard
    deviation (``ddof = 0``) over ``splits`` consecutive chunks (rows ``⌊iN/splits⌋ … ⌊(i+1)N/splits⌋``), softmax over all
    1008 logits in float64. ``shuffle_seed=None`` keeps the rows in order (the original code); ``shuffle_seed=2020``
    first permutes them with ``np.random.RandomState(2020).permutation(N)``, torch-fidelity's default, so equal logits
    give its number."""
    V.check_int_at_least("splits", splits, 1)
    z = np.asarray(logits, np.float64)
    if z.ndim != 2 or z.shape[0] < splits:
        raise ValueError(f"logits must be [N, classes] with N >= splits={splits}, got shape {z.shape}.")
    if shuffle_seed is not None:
        z = z[np.random.RandomState(shuffle_seed).permutation(z.shape[0])]
    log_p = z - z.max(axis=1, keepdims=True)
    log_p = log_p - np.log(np.exp(log_p).sum(axis=1, keepdims=True))
    p = np.exp(log_p)
    n = z.shape[0]
    scores = []
    for i in range(splits):
        lo, hi = i * n // splits, (i + 1) * n // splits
        q = p[lo:hi].mean(axis=0, keepdims=True)
        log_q = np.log(np.where(q > 0, q, 1.0))
        terms = np.where(p[lo:hi] > 0, p[lo:hi] * (log_p[lo:hi] - log_q), 0.0)  # 0·log 0 = 0
        scores.append(np.exp(np.mean(np.sum(terms, axis=1))))
    return float(np.mean(scores)), float(np.std(scores))


def _polynomial_mmd2(x: np.ndarray, y: np.ndarray, degree: int, gamma: float, coef0: float) -> float:
    """Unbiased MMD² with the kernel ``k(a, b) = (γ a·b + c)^d`` between equal-size sets ``[m, F]``."""
    m = x.shape[0]
    k_xx = (gamma * (x @ x.T) + coef0) ** degree
    k_yy = (gamma * (y @ y.T) + coef0) ** degree
    k_xy = (gamma * (x @ y.T) + coef0) ** degree
    off_diagonal = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return float(off_diagonal - 2.0 * k_xy.sum() / m**2)


def kernel_inception_distance(features_a, features_b, *, subsets: int = 100, subset_size: int = 1000,
                              degree: int = 3, gamma: float | None = None, coef0: float = 1.0,
                              seed: int = 2020) -> tuple[float, float]:
    r"""KID (Bińkowski et al.): mean and standard deviation over ``subsets`` of the unbiased MMD² with the
    polynomial kernel ``(γ a·b + coef0)^degree``, ``γ = 1/F`` by default, between random subsets of
    ``subset_size`` rows of each feature set (float64).

    Subsets are drawn as torch-fidelity does, so equal inputs give its numbers: one
    ``np.random.RandomState(seed)``, and per subset ``choice(Na, subset_size, replace=False)`` for ``a`` then
    the same for ``b``. The standard deviation is the population one (``ddof = 0``).
    """
    a = _check_features("features_a", features_a)
    b = _check_features("features_b", features_b)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"features_a and features_b must have the same number of features, got {a.shape} and {b.shape}.")
    V.check_int_at_least("subsets", subsets, 1)
    V.check_int_at_least("subset_size", subset_size, 2)
    if subset_size > min(a.shape[0], b.shape[0]):
        raise ValueError(f"subset_size={subset_size} exceeds the smaller feature set ({min(a.shape[0], b.shape[0])} "
                         "rows); pass a smaller subset_size.")
    gamma = 1.0 / a.shape[1] if gamma is None else float(gamma)
    rng = np.random.RandomState(seed)
    values = []
    for _ in range(subsets):
        rows_a = a[rng.choice(a.shape[0], subset_size, replace=False)]
        rows_b = b[rng.choice(b.shape[0], subset_size, replace=False)]
        values.append(_polynomial_mmd2(rows_a, rows_b, degree, gamma, coef0))
    return float(np.mean(values)), float(np.std(values))


__all__ = [
    "DIGITS_LEVELS",
    "DigitsClassifier",
    "DigitsMLP",
    "digits_classifier",
    "digits_frechet_distance",
    "feature_statistics",
    "fid",
    "inception_features",
    "inception_features_and_logits",
    "inception_score",
    "kernel_inception_distance",
    "load_reference",
    "load_statistics",
    "frechet_distance",
    "frechet_distance_from_moments",
    "mixture_weight_error",
    "sliced_wasserstein",
    "train_digits_classifier",
]
