"""Trained flows and bridges against closed forms: OT-CFM ≈ the Monge map, DSBM ≈ the Schrödinger
bridge (coupling and marginals) for two ε, reflow straightens, interpolant score head gives the SDE."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdiff
from jaxdiff import _xla
from jaxdiff.flows import (
    BrownianBridge,
    LinearInterpolant,
    distill_one_step,
    exact_w2,
    gaussian_bridge_marginal,
    gaussian_entropic_ot,
    gaussian_monge_map,
    sample_flow,
    straightness,
    train_dsbm,
    train_flow_matching,
    train_rectified_flow,
    translate,
)

MEAN0, COV0 = np.array([0.0, 0.0]), np.array([[1.0, 0.0], [0.0, 1.0]])
MEAN1, COV1 = np.array([1.0, -1.0]), np.array([[2.0, 0.8], [0.8, 1.0]])
HIDDEN = (64, 64)


@pytest.fixture(autouse=True)
def float32():
    """Training runs in float32, as users run it (the suite's conftest turns on float64)."""
    with jax.enable_x64(False):
        yield


def _gaussian_sampler(mean, cov):
    chol = jnp.asarray(np.linalg.cholesky(cov), jnp.float32)
    mean = jnp.asarray(mean, jnp.float32)
    return lambda key, n: mean + jax.random.normal(key, (n, mean.shape[0])) @ chol.T


@pytest.fixture
def vectorized_emitters():
    """XLA's default CPU fusion emitters for jaxdiff's programs in an execution-bound test (the suite's conftest turns
    them off: see there)."""
    with _xla.cpu_options(xla_cpu_use_fusion_emitters=True):
        yield


SOURCE = _gaussian_sampler(MEAN0, COV0)
TARGET = _gaussian_sampler(MEAN1, COV1)


def test_ot_cfm_learns_the_monge_map():
    model = train_flow_matching(jax.random.PRNGKey(0), SOURCE, TARGET, path=LinearInterpolant(0.0), coupling="exact",
                                steps=1000, batch_size=256, hidden=HIDDEN)
    x0 = SOURCE(jax.random.PRNGKey(1), 2000)
    x1 = jaxdiff.translate(jax.random.PRNGKey(2), model, LinearInterpolant(0.0), x0)
    a, b = gaussian_monge_map(MEAN0, COV0, MEAN1, COV1)
    monge = x0 @ np.asarray(a).T + np.asarray(b)
    err = float(jnp.mean(jnp.linalg.norm(x1 - monge, axis=-1)))
    # the Cholesky map x -> μ1 + L x also pushes N(0, I) to the target but is not optimal
    chol = float(jnp.mean(jnp.linalg.norm(x0 @ np.linalg.cholesky(COV1).T + MEAN1 - monge, axis=-1)))
    # minibatch OT is biased towards the independent coupling, more so for small batches. Measured (1000 steps, each
    # one an exact 256 x 256 assignment on the host, ~14 ms): err 0.062 / 0.055 / 0.062 for seeds 0 / 1 / 2 (2000 steps:
    # 0.051), chol 0.369
    assert err < 0.15 and err < 0.4 * chol, (err, chol)


@pytest.fixture(scope="module")
def dsbm_couplings():
    """DSBM for ε = 0.1 and 1: the trained bridge's (x0, X1) samples and half-way states."""
    out = {}
    with jax.enable_x64(False), _xla.cpu_options(xla_cpu_use_fusion_emitters=True):
        for epsilon in (0.1, 1.0):
            model = train_dsbm(jax.random.PRNGKey(0), SOURCE, TARGET, epsilon=epsilon, iterations=3,
                               steps_per_iteration=2000, num_pairs=10_000, hidden=HIDDEN)
            path = LinearInterpolant(0.0)
            x0 = SOURCE(jax.random.PRNGKey(5), 20_000)
            x1 = translate(jax.random.PRNGKey(6), model, path, x0, steps=100)
            x_half = sample_flow(jax.random.PRNGKey(7), model, path, x_init=x0, sampler="euler_maruyama", steps=50,
                                 t_end=0.5)
            out[epsilon] = tuple(np.asarray(v, np.float64) for v in (x0, x1, x_half))
    return out


@pytest.mark.parametrize("epsilon", [0.1, 1.0])
def test_dsbm_matches_the_gaussian_schrodinger_bridge(epsilon, dsbm_couplings):
    x0, x1, x_half = dsbm_couplings[epsilon]
    emp = np.cov(np.concatenate([x0, x1], 1).T)
    c_true = np.asarray(gaussian_entropic_ot(MEAN0, COV0, MEAN1, COV1, epsilon))
    # seed spread of this error, measured: 0.040 and 0.097 (two seeds, one train step) and 0.107 (the earlier
    # chunked loop, seed 1); an independent coupling is off by 1.32 and ε = 1's plan by 0.36
    assert np.abs(emp[:2, 2:] - c_true).max() < 0.13, (emp[:2, 2:], c_true)
    # ε = 0.1 (drifts ~ (x₁ − x)/(1 − t) large near t = 1) is the harder case: measured 0.26 (seed 0, one train
    # step) against 0.12 for ε = 1; the source law's covariance would be 1.0 off
    np.testing.assert_allclose(emp[2:, 2:], COV1, atol=0.15 if epsilon >= 1.0 else 0.3)
    np.testing.assert_allclose(x1.mean(0), MEAN1, atol=0.1)
    mean_t, cov_t = gaussian_bridge_marginal(MEAN0, COV0, MEAN1, COV1, epsilon, 0.5)
    np.testing.assert_allclose(np.cov(x_half.T), cov_t, atol=0.12)
    np.testing.assert_allclose(x_half.mean(0), mean_t, atol=0.08)


def test_dsbm_coupling_follows_epsilon(dsbm_couplings):
    """The learned cross-covariances of ε = 0.1 and ε = 1 differ as the closed forms do (ε is respected)."""
    learned = {e: np.cov(np.concatenate([v[0], v[1]], 1).T)[:2, 2:] for e, v in dsbm_couplings.items()}
    closed = {e: np.asarray(gaussian_entropic_ot(MEAN0, COV0, MEAN1, COV1, e)) for e in learned}
    np.testing.assert_allclose(learned[0.1] - learned[1.0], closed[0.1] - closed[1.0], atol=0.08)


def _eight_gaussians(key, n):
    k1, k2 = jax.random.split(key)
    angles = jax.random.randint(k1, (n,), 0, 8) * (jnp.pi / 4)
    centers = 4.0 * jnp.stack([jnp.cos(angles), jnp.sin(angles)], -1)
    return centers + 0.3 * jax.random.normal(k2, (n, 2))


def test_reflow_straightens_and_improves_one_step_samples(vectorized_emitters):
    source = lambda key, n: jax.random.normal(key, (n, 2))  # noqa: E731
    models = train_rectified_flow(jax.random.PRNGKey(0), source, _eight_gaussians, rounds=2, steps=3000,
                                  reflow_steps=3000, num_pairs=20_000, hidden=HIDDEN)
    path = LinearInterpolant(0.0)
    x0 = source(jax.random.PRNGKey(1), 2000)
    ref = _eight_gaussians(jax.random.PRNGKey(2), 2000)
    s1 = float(straightness(jax.random.PRNGKey(3), models[0], path, x0, steps=50))
    s2 = float(straightness(jax.random.PRNGKey(3), models[1], path, x0, steps=50))
    one_step = [exact_w2(sample_flow(jax.random.PRNGKey(4), m, path, x_init=x0, sampler="ode_euler", steps=1), ref)
                for m in models]
    assert s2 < 0.5 * s1, (s1, s2)
    assert one_step[1] < 0.7 * one_step[0], one_step
    distilled = distill_one_step(jax.random.PRNGKey(5), models[1], path, source, num_pairs=20_000, steps=1500)
    w2_distilled = exact_w2(sample_flow(jax.random.PRNGKey(4), distilled, path, x_init=x0, sampler="ode_euler",
                                        steps=1), ref)
    assert w2_distilled < one_step[1] * 1.05, (w2_distilled, one_step)


def test_interpolant_score_head_gives_the_sde_family(vectorized_emitters):
    """One trained (velocity, noise) pair: ODE and SDEs with two diffusion levels reach the same law (without
    the ε s correction, diffusion 2 would add ~1.5 to the variance)."""
    path = BrownianBridge(1.0)
    model = train_flow_matching(jax.random.PRNGKey(1), SOURCE, TARGET, path=path, steps=6000, batch_size=512,
                                hidden=HIDDEN, with_score=True)
    assert model.has_score
    x0 = SOURCE(jax.random.PRNGKey(1), 4000)
    for kw in ({"sampler": "ode_adaptive"}, {"sampler": "euler_maruyama", "diffusion": 0.5, "steps": 200},
               {"sampler": "euler_maruyama", "diffusion": 2.0, "steps": 200}):
        x1 = sample_flow(jax.random.PRNGKey(2), model, path, x_init=x0, **kw)
        np.testing.assert_allclose(np.cov(np.asarray(x1).T), COV1, atol=0.3, err_msg=str(kw))
        np.testing.assert_allclose(np.asarray(x1).mean(0), MEAN1, atol=0.1, err_msg=str(kw))
