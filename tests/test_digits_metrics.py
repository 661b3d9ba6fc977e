"""Fréchet distance, the digits classifier behind FD_digits, and the classical digits baselines."""

import math

import numpy as np
import pytest
import scipy.linalg

from jaxdiff.baselines import gaussian_mixture_baseline, kde_baseline
from jaxdiff.metrics import (
    digits_classifier,
    digits_frechet_distance,
    frechet_distance,
    frechet_distance_from_moments,
    train_digits_classifier,
)
from jaxdiff.training.data import load_digits_arrays, stratified_split

MU_A = np.array([0.3, -1.2, 2.0])
MU_B = np.array([-0.5, 0.4, 1.1])
COV_A = np.array([[2.0, 0.6, -0.3], [0.6, 1.0, 0.2], [-0.3, 0.2, 0.5]])
COV_B = np.array([[0.7, -0.4, 0.1], [-0.4, 1.5, 0.5], [0.1, 0.5, 0.9]])


@pytest.fixture(scope="module")
def digits_split():
    images, labels = load_digits_arrays()
    keep, held = stratified_split(labels, 0.2, seed=0)
    return images[keep], labels[keep], images[held], labels[held]


def closed_form(mu_a, cov_a, mu_b, cov_b):
    """‖μa − μb‖² + tr(Σa + Σb − 2 (Σa^{1/2} Σb Σa^{1/2})^{1/2}) with scipy's general matrix square root."""
    sqrt_a = scipy.linalg.sqrtm(cov_a)
    cross = scipy.linalg.sqrtm(sqrt_a @ cov_b @ sqrt_a)
    return float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a + cov_b - 2.0 * np.real(cross)))


def test_covariances_do_not_commute():
    assert not np.allclose(COV_A @ COV_B, COV_B @ COV_A)


def test_frechet_distance_from_moments_matches_closed_form():
    expected = closed_form(MU_A, COV_A, MU_B, COV_B)
    assert frechet_distance_from_moments(MU_A, COV_A, MU_B, COV_B) == pytest.approx(expected, abs=1e-8, rel=1e-10)
    assert frechet_distance_from_moments(MU_B, COV_B, MU_A, COV_A) == pytest.approx(expected, abs=1e-8, rel=1e-10)


def test_frechet_distance_from_moments_singular_covariances():
    """Diagonal (commuting) covariances with zeros: the distance is ‖Δμ‖² + Σ (√a_i − √b_i)²."""
    a, b = np.array([1.0, 0.0, 4.0]), np.array([0.0, 0.0, 1.0])
    expected = np.sum((MU_A - MU_B) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance_from_moments(MU_A, np.diag(a), MU_B, np.diag(b)) == pytest.approx(expected, abs=1e-12)


def test_frechet_distance_uses_sample_moments_and_is_symmetric():
    rng = np.random.default_rng(0)
    a = rng.multivariate_normal(MU_A, COV_A, 4000)
    b = rng.multivariate_normal(MU_B, COV_B, 3000)
    from_moments = frechet_distance_from_moments(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
    assert frechet_distance(a, b) == pytest.approx(from_moments, abs=1e-10)
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), abs=1e-10)
    assert frechet_distance(a, b) == pytest.approx(closed_form(MU_A, COV_A, MU_B, COV_B), rel=0.1)


def test_frechet_distance_is_zero_for_identical_inputs():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((50, 8))
    x[:, 3] = 0.0  # a singular covariance
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-10)
    assert frechet_distance_from_moments(MU_A, COV_A, MU_A, COV_A) == pytest.approx(0.0, abs=1e-10)


@pytest.mark.parametrize(
    "a, b, match",
    [
        (np.zeros(5), np.zeros((5, 2)), "features_a"),
        (np.zeros((5, 2)), np.zeros((1, 2)), "features_b"),
        (np.zeros((5, 2)), np.zeros((5, 3)), "same number of features"),
    ],
)
def test_frechet_distance_rejects_bad_inputs(a, b, match):
    with pytest.raises(ValueError, match=match):
        frechet_distance(a, b)


def test_frechet_distance_from_moments_rejects_mismatched_covariance():
    with pytest.raises(ValueError, match="cov_b"):
        frechet_distance_from_moments(MU_A, COV_A, MU_B, COV_B[:2, :2])


def test_digits_classifier_accuracy_and_determinism(digits_split):
    train, _, test, test_labels = digits_split
    classifier = digits_classifier(0)
    assert classifier.test_accuracy >= 0.95
    assert np.mean(classifier.predict(test) == test_labels) == classifier.test_accuracy
    assert digits_classifier(0) is classifier  # cached per seed
    retrained = train_digits_classifier(0)  # a second, uncached training
    features = classifier.features(test)
    assert features.shape == (len(test), 64) and features.dtype == np.float32
    np.testing.assert_array_equal(retrained.features(test), features)
    # the same images as [N, 8, 8] floats or [N, 64] ints give the same features
    np.testing.assert_array_equal(classifier.features(test[..., 0].astype(np.float64)), features)
    np.testing.assert_array_equal(classifier.features(test.reshape(len(test), 64).astype(np.int64)), features)


def test_digits_classifier_rejects_bad_inputs():
    with pytest.raises(ValueError, match="levels"):
        digits_classifier(0).features(np.zeros((3, 7, 7)))
    with pytest.raises(ValueError, match="samples_levels"):
        digits_frechet_distance(np.full((3, 64), np.nan), np.zeros((3, 64)))
    with pytest.raises(ValueError, match="seed"):
        digits_classifier(0.5)


def test_digits_frechet_distance_separates_data_from_noise(digits_split):
    train, _, test, _ = digits_split
    floor = digits_frechet_distance(train, test)
    noise = np.random.default_rng(0).integers(0, 17, (len(test), 8, 8, 1))
    assert 0.0 < floor < 0.1 * digits_frechet_distance(noise, test)


def test_gaussian_mixture_baseline_bits_per_dim(digits_split):
    train, _, test, _ = digits_split
    model = gaussian_mixture_baseline(train, components=(10, 40), covariance_types=("diag",))
    assert set(model.validation_bits_per_dim) == {"diag, 10", "diag, 40"}
    assert "n_components=" in model.description
    bpd = model.bits_per_dim(test)
    assert 1.0 < bpd < math.log2(17)
    samples = model.sample(16, seed=3)
    assert samples.shape == (16, 8, 8, 1) and samples.dtype == np.uint8 and samples.max() <= 16
    np.testing.assert_array_equal(model.sample(16, seed=3), samples)


def test_kde_baseline_bits_per_dim(digits_split):
    train, _, test, _ = digits_split
    model = kde_baseline(train, bandwidths=(1.0, 1.5, 2.0))
    assert 1.0 < model.bits_per_dim(test, num_draws=1) < math.log2(17)
    samples = model.sample(8, seed=0)
    assert samples.shape == (8, 8, 8, 1) and samples.dtype == np.uint8 and samples.max() <= 16


def test_baselines_reject_non_level_data(digits_split):
    train = digits_split[0]
    with pytest.raises(ValueError, match="train_levels"):
        gaussian_mixture_baseline(train + 0.5, components=(1,))
    with pytest.raises(ValueError, match="val_fraction"):
        kde_baseline(train, val_fraction=1.5)
