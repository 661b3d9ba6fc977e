"""Configs (score_sde values, schema validation, network shapes) and the data layer (CIFAR-10 archive
loader on a fake archive, digits split, the grain stream: determinism, shards, resume)."""

import importlib
import io
import os
import pickle
import tarfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff.training import config as C
from jaxdiff.training import data as D

CONFIGS = ["vp_cifar", "vp_cifar_deep", "subvp_cifar", "subvp_cifar_deep", "ve_cifar", "ve_cifar_deep",
           "vp_ddpm_cifar", "vp_digits", "toy_ring", "toy_moons", "toy_checkerboard"]


def get(name):
    return importlib.import_module(f"experiments.configs.{name}").get_config()


# --------------------------------------------------------------------------------------------------
# Configs
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", CONFIGS)
def test_every_config_validates(name):
    C.validate_config(get(name), device_count=1)


def test_cifar_configs_carry_score_sde_values():
    shared = {"training.batch_size": 128, "optim.lr": 2e-4, "optim.eps": 1e-8, "optim.warmup": 5000,
              "optim.grad_clip": 1.0, "optim.beta1": 0.9, "optim.optimizer": "Adam", "training.t_eps": 1e-5,
              "model.dropout": 0.1, "data.random_flip": True, "model.nf": 128, "model.ch_mult": [1, 2, 2, 2],
              "model.attn_resolutions": [16], "model.resblock_type": "biggan", "model.skip_rescale": True,
              "training.continuous": True, "model.beta_min": 0.1, "model.beta_max": 20.0,
              "model.sigma_min": 0.01, "model.sigma_max": 50.0, "model.num_scales": 1000, "seed": 42}
    for name in ["vp_cifar", "subvp_cifar", "ve_cifar", "vp_cifar_deep", "subvp_cifar_deep", "ve_cifar_deep"]:
        flat = C.flatten_config(get(name))
        for key, value in shared.items():
            assert flat[key] == value, (name, key, flat[key])
        deep = name.endswith("_deep")
        assert flat["training.n_iters"] == (950001 if deep else 1300001)
        assert flat["model.num_res_blocks"] == (8 if deep else 4)
        if name.startswith("ve"):
            assert flat["training.sde"] == "vesde" and flat["model.embedding_type"] == "fourier"
            assert flat["model.fourier_scale"] == 16 and flat["model.scale_by_sigma"] is True
            assert flat["model.fir"] is True and flat["model.progressive_input"] == "residual"
            assert flat["model.ema_rate"] == 0.999 and flat["training.reduce_mean"] is False
            assert flat["data.centered"] is False and flat["sampling.corrector"] == "langevin"
            assert flat["sampling.predictor"] == "reverse_diffusion" and flat["sampling.snr"] == 0.16
            assert C.sampler_settings(get(name))[0] == "pc"
        else:
            assert flat["training.sde"] == ("vpsde" if name.startswith("vp") else "subvpsde")
            assert flat["model.embedding_type"] == "positional" and flat["model.scale_by_sigma"] is False
            assert flat["model.ema_rate"] == 0.9999 and flat["training.reduce_mean"] is True
            assert flat["data.centered"] is True and flat["sampling.predictor"] == "euler_maruyama"
            assert C.sampler_settings(get(name))[0] == "euler_maruyama"


def _count(tree):
    return sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(tree))


@pytest.mark.parametrize("name,expected", [("vp_cifar", 61_804_419), ("ve_cifar", 62_758_915),
                                           ("vp_ddpm_cifar", 35_218_947)])
def test_config_networks_match_score_sde_parameter_counts(name, expected):
    from jaxdiff.training.run import init_params

    config = get(name)
    shapes = jax.eval_shape(lambda k: init_params(C.build_network(config), C.data_shape(config), k), jax.random.key(0))
    assert _count(shapes) == expected


@pytest.mark.parametrize("name", ["subvp_cifar_deep", "vp_digits", "toy_ring"])
def test_network_output_shape_for_config(name):
    from jaxdiff.training.run import init_params, make_apply_fn

    config = get(name)
    net = C.build_network(config)
    shape = C.data_shape(config)
    params = jax.eval_shape(lambda k: init_params(net, shape, k), jax.random.key(0))
    out = jax.eval_shape(make_apply_fn(net), params, jax.ShapeDtypeStruct((3, *shape), jnp.float32),
                         jax.ShapeDtypeStruct((3,), jnp.float32))
    assert out.shape == (3, *shape)


@pytest.mark.parametrize(
    "field,value,fragment",
    [
        ("optim.lr", -1e-3, "optim.lr=-0.001"),
        ("training.sde", "vpsdee", "training.sde='vpsdee'"),
        ("sampling.sampler", "heun_magic", "sampling.sampler='heun_magic'"),
        ("model.name", "unet9000", "model.name='unet9000'"),
        ("model.ema_rate", 1.5, "model.ema_rate=1.5"),
        ("model.attn_resolutions", (3,), "model.attn_resolutions"),
        ("data.dataset", "imagenet", "data.dataset='imagenet'"),
        ("training.batch_size", 0, "training.batch_size=0"),
        ("eval.inception_mode", "clean", "eval.inception_mode='clean'"),
        ("eval.fid_stats", "/w/stats.npz", "needs eval.inception_path"),
        ("model.norm_groups", 32, "applies to model.name='ddpm'"),
        ("sampling.grid", "cosine", "sampling.grid='cosine'"),
    ],
)
def test_bad_values_are_refused_with_the_field_name(field, value, fragment):
    config = get("vp_digits")
    section, key = field.split(".")
    with config.unlocked():
        config[section][key] = value
    with pytest.raises(C.ConfigError, match=None) as err:
        C.validate_config(config)
    assert fragment in str(err.value)


def test_a_calibrated_grid_needs_a_calibratable_sampler():
    config = get("vp_digits")
    config.sampling.grid = "calibrated"
    C.validate_config(config)  # the main job samples with dpmpp_3m: a grid can be fitted for it
    config.sampling.sampler = "euler_maruyama"
    with pytest.raises(C.ConfigError) as err:
        C.validate_config(config)
    assert "sampling.grid='calibrated'" in str(err.value) and "set sampling.sampler to one of" in str(err.value)


def test_unknown_key_and_indivisible_batch_are_refused():
    config = get("vp_digits")
    with config.unlocked():
        config.training.n_iter = 10  # a typo of n_iters
    with pytest.raises(C.ConfigError, match="unknown key 'training.n_iter'.*n_iters"):
        C.validate_config(config)
    with pytest.raises(C.ConfigError, match="batch_size=64 is not divisible by the 3 devices"):
        C.validate_config(get("vp_digits"), device_count=3)


def test_incompatible_fields_are_named():
    a = C.flatten_config(get("vp_digits"))
    b = dict(a, **{"model.nf": 64, "training.sde": "subvpsde", "optim.lr": 1.0, "model.ema_rate": 0.9})
    diffs = C.incompatible_fields(a, b)
    assert len(diffs) == 2 and any("model.nf" in d for d in diffs) and any("training.sde" in d for d in diffs)


# --------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------


def _fake_cifar(n_per_batch=4, seed=0):
    rng = np.random.default_rng(seed)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batches[name] = {b"data": rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8),
                         b"labels": list(rng.integers(0, 10, n_per_batch)), b"batch_label": name.encode()}
    return batches


def _write_archive(path, batches):
    with tarfile.open(path, "w:gz") as tar:
        for name, batch in batches.items():
            raw = pickle.dumps(batch, protocol=2)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))


def test_cifar_loader_reads_the_python_archive_and_its_folder(tmp_path):
    batches = _fake_cifar()
    archive = str(tmp_path / "cifar-10-python.tar.gz")
    _write_archive(archive, batches)
    train, train_labels, test, test_labels = D.load_cifar10_arrays(archive)
    assert train.shape == (20, 32, 32, 3) and train.dtype == np.uint8 and test.shape == (4, 32, 32, 3)
    # row layout: 1024 red, 1024 green, 1024 blue values, each row-major 32×32
    row = batches["data_batch_2"][b"data"][1]
    np.testing.assert_array_equal(train[5, 3, 7], [row[3 * 32 + 7], row[1024 + 3 * 32 + 7], row[2048 + 3 * 32 + 7]])
    np.testing.assert_array_equal(test_labels, batches["test_batch"][b"labels"])
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path, filter="data")
    again = D.load_cifar10_arrays(str(tmp_path / "cifar-10-batches-py"))
    np.testing.assert_array_equal(again[0], train)
    np.testing.assert_array_equal(D.load_cifar10_arrays(str(tmp_path))[2], test)


def test_missing_cifar_says_what_to_download_before_compiling(tmp_path):
    from jaxdiff.training.run import train

    config = get("vp_cifar")
    config.data.path = str(tmp_path / "nowhere" / "cifar-10-python.tar.gz")
    with pytest.raises(FileNotFoundError, match="cifar-10-python.tar.gz.*www.cs.toronto.edu/~kriz/cifar.html"):
        train(config, str(tmp_path / "run"))
    assert not os.path.exists(tmp_path / "run" / "checkpoints")


def test_digits_split_is_stratified_and_deterministic():
    images, labels = D.load_digits_arrays()
    assert images.shape == (1797, 8, 8, 1) and images.max() == 16 and images.min() == 0
    keep, held = D.stratified_split(labels, 0.2, seed=0)
    assert len(held) == 359 and len(np.intersect1d(keep, held)) == 0 and len(keep) + len(held) == 1797
    counts = np.bincount(labels[held], minlength=10) / np.bincount(labels, minlength=10)
    assert np.all(np.abs(counts - 0.2) < 0.02)
    np.testing.assert_array_equal(D.stratified_split(labels, 0.2, seed=0)[1], held)


def test_stream_is_seeded_epochwise_sharded_and_resumable():
    config = get("vp_digits")
    dataset = D.load_dataset(config.data)
    n = dataset.train.shape[0]
    whole = D.make_stream(dataset, global_batch=8, seed=3)
    again = D.make_stream(dataset, global_batch=8, seed=3)
    np.testing.assert_array_equal(whole[5], again[5])
    assert not np.array_equal(whole[5], D.make_stream(dataset, global_batch=8, seed=4)[5])
    # two processes read disjoint halves whose concatenation is the global batch, row for row
    halves = [D.make_stream(dataset, global_batch=8, seed=3, process_index=p, process_count=2) for p in (0, 1)]
    for i in (0, 7, 1000):
        np.testing.assert_array_equal(np.concatenate([halves[0][i], halves[1][i]]), whole[i])
    # one epoch visits every example once: compare the multiset of images of the first n/8 batches
    stream = D.make_stream(dataset, global_batch=n, seed=3)
    epoch = stream[0].reshape(n, -1)
    ref = dataset.train.reshape(n, -1)
    assert sorted(map(bytes, epoch)) == sorted(map(bytes, ref))
    assert not np.array_equal(stream[0], stream[1])  # a new permutation per epoch
    it = D.DataIterator(whole)
    for _ in range(3):
        next(it)
    state = it.get_state()
    expected = next(it)
    resumed = D.DataIterator(whole)
    resumed.set_state(state)
    np.testing.assert_array_equal(next(resumed), expected)
    with pytest.raises(ValueError, match="batch_size=9 is not divisible by the number of processes 2"):
        D.make_stream(dataset, global_batch=9, seed=0, process_index=0, process_count=2)


def test_preprocess_maps_levels_into_their_bins_and_back():
    config = get("vp_digits")
    dataset = D.load_dataset(config.data)
    x = dataset.train[:50]
    y = np.asarray(D.preprocess(dataset, jax.random.key(0), x))
    assert y.min() >= -1.0 and y.max() <= 1.0
    np.testing.assert_array_equal(dataset.to_data_units(y), x)
    lo = 2.0 * x / 17 - 1.0
    assert np.all(y >= lo - 1e-6) and np.all(y <= lo + 2.0 / 17 + 1e-6)


@pytest.mark.parametrize("name", D.TOY_DATASETS)
def test_toy_sets_are_deterministic_and_finite(name):
    a, b = D.toy_points(name, 500, 1), D.toy_points(name, 500, 1)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (500, 2) and np.all(np.isfinite(a)) and a.std() > 0.3


def test_precision_remat_and_jitted_steps_fields():
    from experiments.configs.vp_digits import get_config
    from jaxdiff.training import config as C

    config = get_config()
    config.training.precision = "float16"
    config.training.n_jitted_steps = 0
    with pytest.raises(C.ConfigError) as err:
        C.validate_config(config)
    assert "training.precision='float16'" in str(err.value) and "['float32', 'bfloat16']" in str(err.value)
    assert "training.n_jitted_steps=0" in str(err.value)
    config = get_config()
    config.training.precision, config.model.remat = "bfloat16", True
    network = C.build_network(C.validate_config(config))
    assert network.dtype == jnp.bfloat16 and network.remat
    # neither changes the saved parameters: a workdir may be resumed with them switched
    saved = C.flatten_config(get_config())
    assert C.incompatible_fields(saved, C.flatten_config(config)) == []
