"""Shared test setup: float64 (precision is the point of closed-form checks) and common fixtures."""

import jax

jax.config.update("jax_enable_x64", True)

import zlib  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import jaxdiff  # noqa: E402


def all_processes():
    """One instance of every forward process, with non-default parameters where that sharpens a test."""
    return [
        jaxdiff.VPSDE(),
        jaxdiff.SubVPSDE(),
        jaxdiff.CosineVPSDE(),
        jaxdiff.VESDE(),
        jaxdiff.OUProcess(beta=0.7, sigma=1.3),
    ]


PROCESS_IDS = ["vp", "subvp", "cosine", "ve", "ou"]


@pytest.fixture(params=list(range(len(PROCESS_IDS))), ids=PROCESS_IDS)
def process(request):
    return all_processes()[request.param]


@pytest.fixture
def mixture_2d():
    """Two unequal, anisotropic components in 2-D."""
    return jaxdiff.GaussianMixture(
        weights=[0.3, 0.7], means=[[-1.0, 0.5], [1.5, -0.5]], stds=[[0.4, 0.8], [0.6, 0.3]]
    )


@pytest.fixture
def mixture_1d():
    """Three components in 1-D with unequal weights."""
    return jaxdiff.GaussianMixture(
        weights=[0.2, 0.5, 0.3], means=[[-2.0], [0.3], [2.5]], stds=[[0.3], [0.6], [0.4]]
    )


def random_inception_state(seed: int = 0, conv_gain: float = 2.0) -> dict:
    """Seeded random weights for every key of pytorch-fid's Inception state dict (each key its own generator):
    the recipe behind ``fixtures/inception_random_weights.npz`` (see tests/test_inception.py)."""
    from jaxdiff import inception

    out = {}
    for key, shape in inception.state_dict_shapes():
        if key.endswith("num_batches_tracked"):
            out[key] = np.array(0, np.int64)
            continue
        rng = np.random.default_rng([seed, zlib.crc32(key.encode())])
        if key.endswith("running_var") or key.endswith("bn.weight"):
            a = rng.uniform(0.5, 1.5, shape)
        elif key.endswith("running_mean") or key.endswith("bn.bias"):
            a = rng.normal(0.0, 0.1, shape)
        elif key.endswith("conv.weight"):
            a = rng.normal(0.0, np.sqrt(conv_gain / np.prod(shape[1:])), shape)
        elif key == "fc.weight":
            a = rng.normal(0.0, 1.0 / np.sqrt(shape[1]), shape)
        else:
            a = rng.normal(0.0, 0.01, shape)
        out[key] = a.astype(np.float32)
    return out


@pytest.fixture(scope="session")
def inception_state():
    return random_inception_state()


@pytest.fixture(scope="session")
def inception_weights(tmp_path_factory, inception_state):
    """An ``.npz`` of :func:`random_inception_state` (pytorch-fid's state dict layout): a stand-in weights file."""
    path = tmp_path_factory.mktemp("inception") / "random_inception.npz"
    np.savez(path, **inception_state)
    return str(path)
