r"""Classical density baselines for discrete data (digit levels, pixels), fitted with scikit-learn.

Discrete data ``k ∈ {0, …, K−1}^D`` is dequantized to ``v = k + U``, ``U ~ U[0, 1)^D``, and a continuous
density ``p_v`` is fitted to ``v``. Every bin ``k + [0, 1)^D`` has unit volume, so
``P(k) = ∫ p_v(k + u) du ≥ exp E_U log p_v(k + U)`` (Jensen) and

    bits/dim(k) = −E_U log p_v(k + U) / (D ln 2)

bounds the discrete negative log-likelihood in bits per dimension from above — the same quantity a
dequantized diffusion model reports, and below ``log₂ K`` for anything better than uniform. Samples are
``⌊v⌋`` clipped to ``0..K−1``. Hyper-parameters are chosen on a seeded validation part of the training
data, then the chosen model is refitted on all of it. scikit-learn is imported inside the functions.

Fits and scores run with BLAS/OpenMP limited to one thread (threadpoolctl, a scikit-learn dependency):
for these small problems a single thread is faster — on a busy 2-core machine the default threading
made the mixture search 4–15× slower — and it keeps the baselines' CPU use modest.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Sequence

import numpy as np

DEFAULT_COMPONENTS = (1, 2, 5, 10, 20, 40, 60, 80)
COVARIANCE_TYPES = ("full", "diag", "spherical", "tied")
DEFAULT_BANDWIDTHS = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 4.0)
GMM_MAX_ITER = 200


# --------------------------------------------------------------------------------------------------
# Dequantized data
# --------------------------------------------------------------------------------------------------


def single_threaded():
    """A context in which BLAS and OpenMP use one thread (``threadpoolctl.threadpool_limits(1)``)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1)


def _check_num_levels(num_levels) -> int:
    if isinstance(num_levels, bool) or not isinstance(num_levels, (int, np.integer)) or num_levels < 2:
        raise ValueError(f"num_levels must be an integer ≥ 2, got num_levels={num_levels!r}.")
    return int(num_levels)


def _check_fraction(name: str, value) -> float:
    if not (isinstance(value, (int, float, np.floating)) and 0.0 < float(value) < 1.0):
        raise ValueError(f"{name} must lie in (0, 1), got {name}={value!r}.")
    return float(value)


def flatten_levels(name: str, levels, num_levels: int) -> np.ndarray:
    """``levels [N, ...]`` (integers in ``0..K−1``, any numeric dtype) as float64 ``[N, D]``; a ValueError
    naming ``name`` otherwise."""
    arr = np.asarray(levels)
    if arr.ndim < 2 or arr.shape[0] < 1 or arr[0].size < 1:
        raise ValueError(f"{name} must be an array [N, ...] of N ≥ 1 examples, got shape {arr.shape}.")
    flat = arr.reshape(arr.shape[0], -1).astype(np.float64)
    if not np.all(np.isfinite(flat)) or np.any(flat != np.round(flat)) or flat.min() < 0 or flat.max() > num_levels - 1:
        raise ValueError(
            f"{name} must hold integer levels in 0..{num_levels - 1}, got values in "
            f"[{np.nanmin(flat):.6g}, {np.nanmax(flat):.6g}] (non-integer or non-finite entries: "
            f"{np.count_nonzero(~np.isfinite(flat) | (flat != np.round(flat)))})."
        )
    return flat


def dequantize_levels(flat_levels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``v = k + U`` with ``U ~ U[0, 1)`` drawn from ``rng``, elementwise."""
    return flat_levels + rng.random(flat_levels.shape)


def validation_split(num_examples: int, val_fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(fit, validation)``: a permutation of ``range(num_examples)`` drawn from ``rng``, cut after
    ``round(val_fraction · N)`` (at least 1 each) validation indices; both sorted."""
    num_val = min(max(int(round(val_fraction * num_examples)), 1), num_examples - 1)
    if num_val < 1:
        raise ValueError(f"train_levels must hold at least 2 examples to split off a validation part, got {num_examples}.")
    perm = rng.permutation(num_examples)
    return np.sort(perm[num_val:]), np.sort(perm[:num_val])


def bits_per_dim_from_log_density(log_density: np.ndarray, dim: int) -> float:
    """``−mean(log p_v) / (D ln 2)``: bits per dimension of the discrete data (unit-width bins in v)."""
    return float(-np.mean(log_density) / (dim * math.log(2.0)))


# --------------------------------------------------------------------------------------------------
# A fitted baseline
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class DequantizedDensity:
    """A density ``p_v`` on dequantized data ``v = k + U`` with bits/dim evaluation and sampling.

    ``estimator``: the fitted scikit-learn model (``score_samples(v) = log p_v(v)``). ``example_shape``:
    the shape of one example (e.g. ``(8, 8, 1)``). ``validation_bits_per_dim``: the search's score of every
    candidate (setting → validation bits/dim; ``inf`` where the fit failed). ``description``: the chosen
    setting and its validation score.
    """

    name: str
    estimator: Any
    example_shape: tuple[int, ...]
    num_levels: int
    description: str
    validation_bits_per_dim: dict[str, float]
    draw: Callable[[int, np.random.Generator], np.ndarray] = dataclasses.field(repr=False)

    @property
    def dim(self) -> int:
        return int(np.prod(self.example_shape))

    def log_density(self, values) -> np.ndarray:
        """``log p_v(v)`` (nats) of dequantized values ``v: [N, D]``."""
        return np.asarray(self.estimator.score_samples(np.asarray(values, np.float64).reshape(-1, self.dim)))

    def bits_per_dim(self, levels, *, seed: int = 0, num_draws: int = 4) -> float:
        """``−E_U log p_v(k + U) / (D ln 2)`` over the examples ``levels`` and ``num_draws`` seeded draws of
        the dequantization noise ``U`` — bits/dim of the discrete data (an upper bound, by Jensen)."""
        if isinstance(num_draws, bool) or not isinstance(num_draws, (int, np.integer)) or num_draws < 1:
            raise ValueError(f"num_draws must be an integer ≥ 1, got num_draws={num_draws!r}.")
        flat = flatten_levels("levels", levels, self.num_levels)
        if flat.shape[1] != self.dim:
            raise ValueError(f"levels must have {self.dim} values per example {self.example_shape}, got shape "
                             f"{np.shape(levels)}.")
        rng = np.random.default_rng(seed)
        with single_threaded():
            log_density = np.concatenate([self.log_density(dequantize_levels(flat, rng)) for _ in range(num_draws)])
        return bits_per_dim_from_log_density(log_density, self.dim)

    def sample(self, n: int, seed: int = 0) -> np.ndarray:
        """``n`` examples ``⌊v⌋`` clipped to ``0..K−1`` with ``v ~ p_v`` drawn with ``seed``: ``[n, *example_shape]``
        (uint8 when ``K ≤ 256``)."""
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"n must be an integer ≥ 1, got n={n!r}.")
        values = self.draw(int(n), np.random.default_rng(seed))
        levels = np.clip(np.floor(values), 0, self.num_levels - 1)
        dtype = np.uint8 if self.num_levels <= 256 else np.int32
        return levels.astype(dtype).reshape((int(n),) + self.example_shape)


# --------------------------------------------------------------------------------------------------
# Gaussian mixture
# --------------------------------------------------------------------------------------------------


def _gmm_draw(gmm) -> Callable[[int, np.random.Generator], np.ndarray]:
    """``v = μ_c + L_c z`` with ``c ~ Categorical(π)``, ``z ~ N(0, I)``, ``L_c L_cᵀ = Σ_c`` for a fitted
    ``GaussianMixture`` of any covariance type (drawn in a shuffled order, unlike sklearn's ``sample``)."""
    weights, means, covariances = gmm.weights_, gmm.means_, gmm.covariances_
    num_components, dim = means.shape

    def scale(c: int, z: np.ndarray) -> np.ndarray:
        if gmm.covariance_type == "full":
            return z @ np.linalg.cholesky(covariances[c]).T
        if gmm.covariance_type == "tied":
            return z @ np.linalg.cholesky(covariances).T
        return z * np.sqrt(covariances[c])  # diag: a variance per dimension; spherical: one per component

    def draw(n: int, rng: np.random.Generator) -> np.ndarray:
        component = rng.choice(num_components, size=n, p=weights / weights.sum())
        z = rng.standard_normal((n, dim))
        values = np.empty((n, dim))
        for c in np.unique(component):
            rows = component == c
            values[rows] = means[c] + scale(c, z[rows])
        return values

    return draw


def _fit_gmm(values: np.ndarray, n_components: int, covariance_type: str, seed: int):
    from sklearn.mixture import GaussianMixture

    with single_threaded():
        return GaussianMixture(n_components, covariance_type=covariance_type, max_iter=GMM_MAX_ITER,
                               random_state=seed).fit(values)


def gaussian_mixture_baseline(
    train_levels,
    *,
    num_levels: int = 17,
    val_fraction: float = 0.2,
    seed: int = 0,
    components: Sequence[int] = DEFAULT_COMPONENTS,
    covariance_types: Sequence[str] = COVARIANCE_TYPES,
) -> DequantizedDensity:
    """A Gaussian mixture ``p_v(v) = Σ_c π_c N(v; μ_c, Σ_c)`` fitted by EM to dequantized ``v = k + U``.

    ``n_components × covariance_type`` is chosen by validation bits/dim (the mean validation
    log-likelihood) on a seeded ``val_fraction`` of ``train_levels``; the winner is refitted on all of it.
    Everything random (split, noise, EM initialization) follows ``seed``.
    """
    num_levels = _check_num_levels(num_levels)
    val_fraction = _check_fraction("val_fraction", val_fraction)
    components = tuple(components)
    if not components or any(isinstance(c, bool) or not isinstance(c, (int, np.integer)) or c < 1 for c in components):
        raise ValueError(f"components must be a non-empty sequence of integers ≥ 1, got components={components!r}.")
    covariance_types = tuple(covariance_types)
    if not covariance_types or any(t not in COVARIANCE_TYPES for t in covariance_types):
        raise ValueError(f"covariance_types must be a non-empty subset of {COVARIANCE_TYPES}, got {covariance_types!r}.")
    flat = flatten_levels("train_levels", train_levels, num_levels)
    rng = np.random.default_rng(seed)  # one stream: the split, then the dequantization noise
    fit_idx, val_idx = validation_split(flat.shape[0], val_fraction, rng)
    if max(components) > fit_idx.size:
        raise ValueError(f"components must not exceed the {fit_idx.size} examples left for fitting, got {max(components)}.")
    fit_values, val_values = dequantize_levels(flat[fit_idx], rng), dequantize_levels(flat[val_idx], rng)
    dim = flat.shape[1]
    scores = {}
    for covariance_type in covariance_types:
        for n_components in components:
            setting = f"{covariance_type}, {n_components}"
            try:
                gmm = _fit_gmm(fit_values, int(n_components), covariance_type, seed)
            except ValueError:  # ill-defined covariance: the candidate loses
                scores[setting] = math.inf
                continue
            with single_threaded():
                scores[setting] = bits_per_dim_from_log_density(gmm.score_samples(val_values), dim)
    best = min(scores, key=scores.get)
    if not math.isfinite(scores[best]):
        raise ValueError(f"no Gaussian mixture in the search could be fitted: {scores}.")
    covariance_type, n_components = best.split(", ")
    gmm = _fit_gmm(dequantize_levels(flat, rng), int(n_components), covariance_type, seed)
    description = (
        f"GaussianMixture(n_components={n_components}, covariance_type={covariance_type!r}) refitted on "
        f"{flat.shape[0]} dequantized examples; validation {scores[best]:.4f} bits/dim on {val_idx.size} "
        f"held-back training examples (best of {len(scores)} settings)"
    )
    return DequantizedDensity("gaussian_mixture", gmm, tuple(np.shape(train_levels)[1:]), num_levels, description,
                              scores, _gmm_draw(gmm))


# --------------------------------------------------------------------------------------------------
# Kernel density estimate
# --------------------------------------------------------------------------------------------------


def _fit_kde(values: np.ndarray, bandwidth: float):
    from sklearn.neighbors import KernelDensity

    return KernelDensity(kernel="gaussian", bandwidth=bandwidth).fit(values)


def _kde_validation_bits_per_dim(fit_values: np.ndarray, val_values: np.ndarray, bandwidth: float) -> float:
    with single_threaded():
        log_density = _fit_kde(fit_values, bandwidth).score_samples(val_values)
    return bits_per_dim_from_log_density(log_density, fit_values.shape[1])


def _kde_draw(centres: np.ndarray, bandwidth: float) -> Callable[[int, np.random.Generator], np.ndarray]:
    """``v = v_i + h z`` with ``i`` uniform over the kernel centres and ``z ~ N(0, I)``."""

    def draw(n: int, rng: np.random.Generator) -> np.ndarray:
        return centres[rng.integers(0, centres.shape[0], n)] + bandwidth * rng.standard_normal((n, centres.shape[1]))

    return draw


def kde_baseline(
    train_levels,
    *,
    num_levels: int = 17,
    val_fraction: float = 0.2,
    seed: int = 0,
    bandwidths: Sequence[float] = DEFAULT_BANDWIDTHS,
) -> DequantizedDensity:
    """A Gaussian kernel density estimate ``p_v(v) = (1/N) Σ_i N(v; v_i, h² I)`` on dequantized ``v = k + U``.

    The bandwidth ``h`` is chosen by validation bits/dim on a seeded ``val_fraction`` of ``train_levels``;
    the kernels are then placed on all of it (dequantized with ``seed``).
    """
    num_levels = _check_num_levels(num_levels)
    val_fraction = _check_fraction("val_fraction", val_fraction)
    bandwidths = tuple(bandwidths)
    if not bandwidths or any(not (isinstance(h, (int, float, np.floating)) and math.isfinite(h) and h > 0)
                             for h in bandwidths):
        raise ValueError(f"bandwidths must be a non-empty sequence of finite numbers > 0, got bandwidths={bandwidths!r}.")
    flat = flatten_levels("train_levels", train_levels, num_levels)
    rng = np.random.default_rng(seed)  # one stream: the split, then the dequantization noise
    fit_idx, val_idx = validation_split(flat.shape[0], val_fraction, rng)
    fit_values, val_values = dequantize_levels(flat[fit_idx], rng), dequantize_levels(flat[val_idx], rng)
    scores = {f"{float(h):g}": _kde_validation_bits_per_dim(fit_values, val_values, float(h)) for h in bandwidths}
    best = min(scores, key=scores.get)
    bandwidth = float(best)
    centres = dequantize_levels(flat, rng)
    kde = _fit_kde(centres, bandwidth)
    description = (
        f"KernelDensity(kernel='gaussian', bandwidth={bandwidth:g}) on {flat.shape[0]} dequantized examples; "
        f"validation {scores[best]:.4f} bits/dim on {val_idx.size} held-back training examples "
        f"(best of {len(scores)} bandwidths)"
    )
    return DequantizedDensity("kde", kde, tuple(np.shape(train_levels)[1:]), num_levels, description, scores,
                              _kde_draw(centres, bandwidth))


__all__ = [
    "COVARIANCE_TYPES",
    "DEFAULT_BANDWIDTHS",
    "DEFAULT_COMPONENTS",
    "DequantizedDensity",
    "bits_per_dim_from_log_density",
    "dequantize_levels",
    "flatten_levels",
    "gaussian_mixture_baseline",
    "kde_baseline",
    "single_threaded",
    "validation_split",
]
