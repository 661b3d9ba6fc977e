"""Shared test setup: float64 (precision is the point of closed-form checks) and common fixtures."""

import jax

jax.config.update("jax_enable_x64", True)

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


@pytest.fixture(scope="session")
def inception_state():
    """Seeded stand-in Inception weights (``jaxdiff.inception.random_state_dict``): the recipe behind
    ``fixtures/inception_random_weights.npz``."""
    from jaxdiff import inception

    return inception.random_state_dict()


@pytest.fixture(scope="session")
def inception_weights(tmp_path_factory, inception_state):
    """An ``.npz`` of :func:`inception_state` (pytorch-fid's state dict layout): a stand-in weights file."""
    path = tmp_path_factory.mktemp("inception") / "random_inception.npz"
    np.savez(path, **inception_state)
    return str(path)
