"""The FID Inception pipeline against pytorch-fid, the torch file reader, and FID / IS / KID formulas.

``fixtures/inception_random_weights.npz`` holds pytorch-fid's pool3 features and logits (PyTorch 2.14.1,
pytorch-fid 0.3.0) of the images :func:`fixture_images` makes, computed with the seeded random weights
:func:`jaxdiff.inception.random_state_dict` makes (the same recipe in NumPy, loaded into pytorch-fid's network). Any wrong
layer, pooling mode, resize convention or normalization changes the features by far more than the tolerance.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from jaxdiff import inception, metrics
from jaxdiff._torch_pickle import load_torch_file

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


def fixture_images(size: int, n: int = 2) -> np.ndarray:
    """Blocky random uint8 images ``[n, size, size, 3]`` with pixel noise (integer arithmetic only)."""
    rng = np.random.default_rng([7, size])
    g = max(size // 8, 1) if size > 8 else 4
    low = rng.integers(0, 256, (n, g, g, 3))
    img = np.repeat(np.repeat(low, size // g, axis=1), size // g, axis=2)
    img = img + rng.integers(-20, 21, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def weights_file(inception_weights):
    return inception_weights


@pytest.fixture(scope="module")
def reference():
    with np.load(os.path.join(FIXTURES, "inception_random_weights.npz")) as data:
        return {k: data[k] for k in data.files}


def test_features_and_logits_equal_pytorch_fid(weights_file, reference):
    # Sizes 8, 32, 64 (upsampled) and 512 (downsampled without antialiasing) → 299: one batch of all four sizes'
    # features must match pytorch-fid's to 1e-4 absolute (features reach ~40).
    fc_bias = inception.random_state_dict()["fc.bias"]  # pytorch-fid's reference logits include it; IS's don't
    for size in (8, 32, 64, 512):
        images = fixture_images(size)
        assert int(images.astype(np.int64).sum()) == int(reference[f"images_{size}_checksum"])
        pool3, logits = metrics.inception_features_and_logits(images, weights_file, batch_size=2)
        assert pool3.dtype == np.float64 and pool3.shape == (2, 2048)
        assert np.abs(reference[f"pool3_{size}"]).max() > 5.0
        np.testing.assert_allclose(pool3, reference[f"pool3_{size}"], atol=1e-4, rtol=0)
        np.testing.assert_allclose(logits + fc_bias, reference[f"logits_{size}"], atol=1e-4, rtol=0)


def test_images_of_another_size_reuse_the_compiled_network(weights_file):
    # the resize is its own program: a new input size or mode compiles it, not the 299 x 299 network
    metrics.inception_features_and_logits(fixture_images(8), weights_file, batch_size=2)
    compiled = inception._network_batch._cache_size()
    metrics.inception_features_and_logits(fixture_images(16), weights_file, batch_size=2)
    metrics.inception_features_and_logits(fixture_images(8), weights_file, batch_size=2, mode="tf_legacy")
    assert inception._network_batch._cache_size() == compiled


def test_a_wrong_resize_or_normalization_is_detected(weights_file, reference):
    images = fixture_images(32)
    tf_style = metrics.inception_features(images, weights_file, mode="tf_legacy", batch_size=2)
    assert np.abs(tf_style - reference["pool3_32"]).max() > 1e-2


def test_bilinear_matrix_matches_the_definitions():
    # PyTorch (align_corners=False): s = (i + ½)·in/out − ½, clamped at 0; rows sum to 1.
    up = inception.bilinear_matrix(4, 8, "pytorch_fid")
    np.testing.assert_allclose(up.sum(axis=1), 1.0)
    np.testing.assert_allclose(up[0], [1, 0, 0, 0])  # s = −0.25 → clamped to 0
    np.testing.assert_allclose(up[1], [0.75, 0.25, 0, 0])  # s = 0.25
    np.testing.assert_allclose(up[7], [0, 0, 0, 1])  # s = 3.25 → both taps on the last pixel
    down = inception.bilinear_matrix(8, 4, "pytorch_fid")  # s = 0.5, 2.5, ...: two taps, no antialiasing
    np.testing.assert_allclose(down[0], [0.5, 0.5, 0, 0, 0, 0, 0, 0])
    legacy = inception.bilinear_matrix(8, 4, "tf_legacy")  # s = 2i: a single tap
    np.testing.assert_allclose(legacy[1], [0, 0, 1, 0, 0, 0, 0, 0])


def test_weights_are_checked_by_key_and_shape(tmp_path, inception_state):
    state = dict(inception_state)
    state["Mixed_6b.branch7x7_2.conv.weight"] = state["Mixed_6b.branch7x7_2.conv.weight"][:, :, :, :3]
    with pytest.raises(ValueError, match="Mixed_6b.branch7x7_2.conv.weight"):
        inception.fold_state_dict(state)
    del state["fc.bias"]
    with pytest.raises(ValueError, match="fc.bias"):
        inception.fold_state_dict(state)
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        metrics.inception_features(np.zeros((1, 8, 8, 3), np.uint8), str(tmp_path / "nowhere.pth"))
    not_torch = tmp_path / "notes.pth"
    not_torch.write_text("hello")
    with pytest.raises(ValueError, match="notes.pth"):
        metrics.inception_features(np.zeros((1, 8, 8, 3), np.uint8), str(not_torch))
    with pytest.raises(TypeError, match="uint8"):
        metrics.inception_features(np.zeros((1, 8, 8, 3), np.float32), str(not_torch))
    with pytest.raises(ValueError, match="mode"):
        metrics.inception_features(np.zeros((1, 8, 8, 3), np.uint8), str(not_torch), mode="clean")


@pytest.mark.parametrize("name", ["torch_save_zip.pth", "torch_save_legacy.pth"])
def test_torch_files_are_read_without_torch(name):
    obj = load_torch_file(os.path.join(FIXTURES, name))
    assert list(obj) == ["w", "b", "h", "p", "s", "nested", "step"]
    np.testing.assert_array_equal(obj["w"], np.arange(6, dtype=np.float32).reshape(2, 3).T)  # a strided view
    assert obj["b"].dtype == np.int64 and obj["b"].tolist() == [1, -2, 3]
    assert obj["h"].dtype == np.float16 and obj["h"].tolist() == [0.5, -1.25]
    np.testing.assert_array_equal(obj["p"], [[1.5, 2.5]])
    assert obj["s"].shape == () and float(obj["s"]) == 3.0
    assert obj["nested"]["x"].dtype == np.float64 and obj["nested"]["l"][0].tolist() == [0.0]
    assert obj["step"] == 7


def test_torch_reader_refuses_code(tmp_path):
    import pickle

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        for item in (0x1950A86A20F9469CFC6C, 1001, {}):
            pickle.dump(item, f, protocol=2)
        pickle.dump(Evil(), f, protocol=2)
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        load_torch_file(path)


# --------------------------------------------------------------------------------------------------
# FID / IS / KID formulas
# --------------------------------------------------------------------------------------------------


def test_fid_of_gaussians_and_statistics_files(tmp_path):
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4000, 3))
    b = rng.normal(size=(4000, 3)) * 2.0 + 1.0
    # N(0, I) vs N(1, 4I): ‖Δμ‖² + tr(I + 4I − 2·2I) = 3 + 3 = 6 (sampling error ~0.1).
    assert abs(metrics.fid(a, b) - 6.0) < 0.3
    np.savez(tmp_path / "stats.npz", mu=b.mean(0), sigma=np.cov(b, rowvar=False))
    np.savez(tmp_path / "acts.npz", pool_3=b)
    from_stats = metrics.fid(a, metrics.load_statistics(tmp_path / "stats.npz"))
    from_acts = metrics.fid(a, metrics.load_statistics(tmp_path / "acts.npz"))
    assert from_stats == pytest.approx(metrics.fid(a, b), rel=1e-12)
    assert from_acts == pytest.approx(from_stats, rel=1e-12)
    np.savez(tmp_path / "other.npz", x=b)
    with pytest.raises(ValueError, match="other.npz"):
        metrics.load_statistics(tmp_path / "other.npz")
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        metrics.load_statistics(tmp_path / "missing.npz")


def test_fid_with_singular_covariances():
    # 50 points in 512 dimensions: rank-49 covariances; the eigen-form stays finite and ≥ 0, and a set against
    # itself is 0.
    rng = np.random.default_rng(1)
    a = rng.normal(size=(50, 512))
    assert metrics.fid(a, a) == pytest.approx(0.0, abs=1e-6)
    assert np.isfinite(metrics.fid(a, rng.normal(size=(50, 512))))
    # fewer rows than features: the [N, N] Gram form gives the F x F eigen-form's value, either argument order (to
    # 2e-8 here: the F x F form also takes the square roots of the ~460 round-off eigenvalues of a rank-49 product)
    stats = metrics.feature_statistics(rng.normal(size=(600, 512)) @ rng.normal(size=(512, 512)) * 0.1 + 0.3)
    full = metrics.frechet_distance_from_moments(*metrics.feature_statistics(a), *stats)
    assert full > 10.0
    assert metrics.fid(a, stats) == pytest.approx(full, rel=1e-7)
    assert metrics.fid(stats, a) == pytest.approx(full, rel=1e-7)


def test_inception_score_closed_forms():
    # Confident, uniformly spread predictions over k classes: IS = k. Identical predictions: IS = 1.
    k = 10
    logits = np.full((100, 1008), -1e4)
    logits[np.arange(100), np.arange(100) % k] = 0.0
    mean, std = metrics.inception_score(logits, splits=10)
    assert mean == pytest.approx(k, rel=1e-9) and std == pytest.approx(0.0, abs=1e-9)
    assert metrics.inception_score(np.zeros((20, 1008)), splits=2)[0] == pytest.approx(1.0)


def test_kid_closed_form_and_unbiasedness():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(300, 4))
    # Same distribution: unbiased MMD² averages to ~0; a shifted one is clearly positive.
    same = metrics.kernel_inception_distance(x, rng.normal(size=(300, 4)), subsets=20, subset_size=100)[0]
    shifted = metrics.kernel_inception_distance(x, rng.normal(size=(300, 4)) + 1.0, subsets=20, subset_size=100)[0]
    assert abs(same) < 0.05 and shifted > 0.5
    # The formula on one subset: m = subset_size = N, so the draw is a permutation and the value is exact.
    y = rng.normal(size=(5, 4)) + 0.3
    xs = x[:5]
    k = lambda u, v: (u @ v.T / 4 + 1.0) ** 3  # noqa: E731
    expected = ((k(xs, xs).sum() - np.trace(k(xs, xs))) / 20 + (k(y, y).sum() - np.trace(k(y, y))) / 20
                - 2 * k(xs, y).mean())
    assert metrics.kernel_inception_distance(xs, y, subsets=1, subset_size=5)[0] == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ValueError, match="subset_size"):
        metrics.kernel_inception_distance(xs, y, subset_size=6)
