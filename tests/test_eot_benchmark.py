"""Entropic-OT benchmark pairs with a known plan, the cBW²₂-UVP metric and the Light SB solver.

The pair's plan ``π(y|x) ∝ exp(⟨x, y⟩/ε) v(y)`` is checked three ways: its closed-form conditional moments
against Monte Carlo of its own sampler, its component form against Gushchin et al.'s heat-kernel form, and —
for a single-Gaussian ``v`` with a Gaussian source — its cross-covariance against the independent closed form
:func:`gaussian_entropic_ot` (the project's ``ε``). Then the metric separates the exact plan from wrong ones,
and Light SB, trained briefly, recovers the plan.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff import translate
from jaxdiff.flows.eot_benchmark import (
    EOTBenchmarkPair,
    bw2_batch,
    bw2_uvp,
    cbw2_uvp,
    cbw2_uvp_for_model,
    conditional_mixture,
    heat_kernel_potential,
    make_eot_benchmark,
    make_eot_pair,
)
from jaxdiff.flows.gaussian import gaussian_entropic_ot, gaussian_w2_squared
from jaxdiff.flows.light_sb import LightSB, train_light_sb

EPSILON = 0.7


def random_spd(rng, dim, low=0.3, high=1.5):
    q, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
    return (q * rng.uniform(low, high, size=dim)) @ q.T


@pytest.fixture(scope="module")
def full_cov_pair():
    """A 3-D pair with a correlated source and three full-covariance components of ``v``."""
    rng = np.random.default_rng(0)
    dim, k = 3, 3
    return make_eot_pair(
        rng.normal(size=dim) * 0.3, random_spd(rng, dim), rng.normal(size=k), rng.normal(size=(k, dim)) * 1.5,
        np.stack([random_spd(rng, dim, 0.2, 0.8) for _ in range(k)]), EPSILON, moment_samples=20_000,
    )


@pytest.fixture(scope="module")
def benchmark_pair():
    return make_eot_benchmark(2, 1.0, seed=0, moment_samples=20_000)


@pytest.fixture(scope="module")
def trained_light_sb(benchmark_pair):
    pair = benchmark_pair
    return train_light_sb(jax.random.key(0), pair.sample_source, pair.sample_target, epsilon=pair.epsilon,
                          num_components=20, steps=1000, lr=3e-2)


# ------------------------------------------------------------------------------------------ the pair


def test_conditional_moments_match_monte_carlo(full_cov_pair):
    pair = full_cov_pair
    x = pair.sample_source(jax.random.key(1), 4)
    n = 40_000
    y = np.asarray(pair.conditional_sample(jax.random.key(2), x, n))
    mean, cov = map(np.asarray, pair.conditional_moments(x))
    assert y.shape == (4, n, 3)
    sd = np.sqrt(np.diagonal(cov, axis1=1, axis2=2))
    np.testing.assert_array_less(np.abs(y.mean(1) - mean), 5 * sd / np.sqrt(n))
    centred = y - y.mean(1, keepdims=True)
    mc_cov = np.einsum("nmd,nme->nde", centred, centred) / (n - 1)
    np.testing.assert_allclose(mc_cov, cov, atol=0.04 * np.abs(cov).max())


def test_components_match_the_heat_kernel_form():
    """``N(y; x, εI) Σ p_k N(μ_k, Σ_k)`` has weights ∝ ``p_k N(x; μ_k, Σ_k + εI)`` and components
    ``N((Σ_k⁻¹ + I/ε)⁻¹(Σ_k⁻¹μ_k + x/ε), (Σ_k⁻¹ + I/ε)⁻¹)`` (Gushchin et al.'s form)."""
    rng = np.random.default_rng(1)
    dim, k, eps = 2, 3, 0.4
    p = rng.uniform(0.2, 1.0, size=k)
    p /= p.sum()
    mu = rng.normal(size=(k, dim)) * 2
    sigma = np.stack([random_spd(rng, dim) for _ in range(k)])
    log_alpha, r, s = heat_kernel_potential(p, mu, sigma, eps)
    x = rng.normal(size=(5, dim))
    logits, means = map(np.asarray, jax.jit(conditional_mixture)(jnp.asarray(x), log_alpha, r, s, eps))
    spread = sigma + eps * np.eye(dim)
    diff = x[:, None, :] - mu[None]
    log_heat = np.log(p) - 0.5 * np.linalg.slogdet(spread)[1] - 0.5 * np.einsum(
        "nkd,nkd->nk", diff, np.linalg.solve(spread[None], diff[..., None])[..., 0])
    weights = np.exp(logits - logits.max(1, keepdims=True))
    heat_weights = np.exp(log_heat - log_heat.max(1, keepdims=True))
    np.testing.assert_allclose(weights / weights.sum(1, keepdims=True), heat_weights / heat_weights.sum(1, keepdims=True),
                               atol=1e-10)
    plan_cov = np.linalg.inv(np.linalg.inv(sigma) + np.eye(dim) / eps)
    plan_means = np.einsum("kde,nke->nkd", plan_cov, np.einsum("kde,ke->kd", np.linalg.inv(sigma), mu)[None] + x[:, None] / eps)
    np.testing.assert_allclose(means, plan_means, atol=1e-10)
    np.testing.assert_allclose(s, plan_cov, atol=1e-12)


def test_single_gaussian_potential_gives_the_gaussian_eot_plan():
    """p = N(m₀, Σ₀), v = N(r, S): y|x ~ N(r + Sx/ε, S), so Cov(x, y) = Σ₀S/ε must be the closed-form C_ε."""
    m0, cov0 = np.array([0.5, -1.0]), np.array([[1.5, 0.6], [0.6, 0.8]])
    r, s = np.array([1.0, 2.0]), np.array([[0.5, -0.2], [-0.2, 0.3]])  # Σ₀S is not symmetric
    pair = make_eot_pair(m0, cov0, [0.0], [r], [s], EPSILON, moment_samples=40_000)
    target_mean = r + s @ m0 / EPSILON
    target_cov = s + s @ cov0 @ s / EPSILON**2
    cross = cov0 @ s / EPSILON
    np.testing.assert_allclose(gaussian_entropic_ot(m0, cov0, target_mean, target_cov, EPSILON), cross, atol=1e-10)
    assert np.abs(gaussian_entropic_ot(m0, cov0, target_mean, target_cov, 2 * EPSILON) - cross).max() > 0.05
    np.testing.assert_allclose(pair.target_mean, target_mean, atol=0.02)
    np.testing.assert_allclose(pair.target_cov, target_cov, atol=0.03)
    x, y = map(np.asarray, pair.sample_plan(jax.random.key(3), 50_000))
    mc_cross = (x - x.mean(0)).T @ (y - y.mean(0)) / len(x)
    np.testing.assert_allclose(mc_cross, cross, atol=0.04)


def test_make_eot_benchmark_is_deterministic_and_sized(benchmark_pair):
    again = make_eot_benchmark(2, 1.0, seed=0, moment_samples=20_000)
    np.testing.assert_array_equal(again.potential_means, benchmark_pair.potential_means)
    assert isinstance(benchmark_pair, EOTBenchmarkPair)
    assert benchmark_pair.num_components == 5 and benchmark_pair.dim == 2
    assert benchmark_pair.sample_target(jax.random.key(0), 7).shape == (7, 2)
    other = make_eot_benchmark(2, 1.0, seed=1, moment_samples=20_000)
    assert not np.allclose(other.potential_means, benchmark_pair.potential_means)


# ------------------------------------------------------------------------------------------ metrics


def test_bw2_batch_matches_gaussian_w2():
    rng = np.random.default_rng(2)
    a, b = random_spd(rng, 3), random_spd(rng, 3)
    ma, mb = rng.normal(size=3), rng.normal(size=3)
    np.testing.assert_allclose(bw2_batch(ma, a, mb, b), gaussian_w2_squared(ma, a, mb, b), rtol=1e-8)
    np.testing.assert_allclose(bw2_batch(ma, a, ma, a), 0.0, atol=1e-8)


def test_cbw2_uvp_separates_exact_and_wrong_plans(benchmark_pair):
    pair = benchmark_pair
    x = pair.sample_source(jax.random.key(4), 200)
    exact = cbw2_uvp(pair.conditional_sample(jax.random.key(5), x, 4000), x, pair)
    identity = cbw2_uvp(jnp.repeat(x[:, None], 4, axis=1), x, pair)
    wrong_eps = make_eot_pair(pair.source_mean, pair.source_cov, pair.potential_log_weights, pair.potential_means,
                              pair.potential_covs, 2 * pair.epsilon, moment_samples=20_000)
    mismatched = cbw2_uvp(wrong_eps.conditional_sample(jax.random.key(5), x, 4000), x, pair)
    assert 0.0 <= exact < 0.1
    assert identity > 50.0
    assert mismatched > 3.0
    assert cbw2_uvp_for_model(jax.random.key(6), pair, pair, num_x=200, n_per_x=4000, chunk=200) < 0.1
    assert bw2_uvp(pair.sample_target(jax.random.key(7), 50_000), pair) < 0.1
    assert bw2_uvp(pair.sample_source(jax.random.key(7), 50_000), pair) > 10.0


# ------------------------------------------------------------------------------------------ Light SB


def light_sb_from_pair(pair):
    """The pair's own potential in Light SB's parameters: v = Σ α_k N(r_k, ε S_k) with S_k = (pair's S_k)/ε."""
    variances = jax.vmap(jnp.diag)(pair.potential_covs)
    return LightSB(pair.potential_log_weights, pair.potential_means, jnp.log(variances / pair.epsilon),
                   np.zeros(1), epsilon=pair.epsilon, dim=pair.dim)


def test_light_sb_closed_forms_on_the_true_potential(benchmark_pair):
    pair = benchmark_pair
    model = light_sb_from_pair(pair)  # the benchmark's S_k are isotropic, so Light SB represents v exactly
    x = pair.sample_source(jax.random.key(8), 200)
    mean, cov = model.conditional_moments(x)
    true_mean, true_cov = pair.conditional_moments(x)
    np.testing.assert_allclose(mean, true_mean, atol=1e-5)
    np.testing.assert_allclose(cov, true_cov, atol=1e-5)
    np.testing.assert_allclose(model.drift(x, 0.0), true_mean - x, atol=1e-4)  # g(x, 0) = E[y|x] − x
    # Euler–Maruyama on the closed-form drift lands on π(·|x).
    n = 10_000
    ends = np.asarray(model.sample_sde(jax.random.key(9), jnp.repeat(x[:3], n, axis=0), num_steps=100)).reshape(3, n, 2)
    np.testing.assert_allclose(ends.mean(1), true_mean[:3], atol=0.05)
    centred = ends - ends.mean(1, keepdims=True)
    np.testing.assert_allclose(np.einsum("nmd,nme->nde", centred, centred) / n, true_cov[:3], atol=0.05)


def test_light_sb_recovers_the_benchmark_plan(benchmark_pair, trained_light_sb):
    pair, model = benchmark_pair, trained_light_sb
    assert np.all(np.isfinite(model.loss_history)) and model.loss_history.shape == (1000,)
    x = pair.sample_source(jax.random.key(10), 200)
    mean, cov = model.conditional_moments(x)
    true_mean, true_cov = pair.conditional_moments(x)
    exact_metric = float(100 * jnp.mean(bw2_batch(mean, cov, true_mean, true_cov)) / pair.target_variance)
    assert exact_metric < 0.15  # 0.006–0.02 over training seeds; an ε-mismatched plan scores ≈ 12, the identity ≈ 113
    # The protocol adds the Gaussian fits' sampling noise (≈ 0.025 for the exact plan at these sizes).
    assert cbw2_uvp_for_model(jax.random.key(11), model, pair, num_x=200, n_per_x=4000, chunk=200) < 0.2
    y = translate(jax.random.key(12), model, None, x)  # the project's front door
    assert y.shape == x.shape and np.all(np.isfinite(y))


# ------------------------------------------------------------------------------------------ bad input


def test_bad_input_is_named(benchmark_pair):
    with pytest.raises(ValueError, match="epsilon"):
        make_eot_benchmark(2, 0.0)
    with pytest.raises(ValueError, match="dim"):
        make_eot_benchmark(0, 1.0)
    with pytest.raises(ValueError, match="potential_covs"):
        make_eot_pair(np.zeros(2), np.eye(2), [0.0], [[0.0, 0.0]], [-np.eye(2)], 1.0)
    with pytest.raises(ValueError, match=r"x must have shape \[N, 2\]"):
        benchmark_pair.conditional_moments(jnp.zeros((3, 4)))
    with pytest.raises(ValueError, match="pred_conditional_samples"):
        cbw2_uvp(jnp.zeros((3, 5, 3)), jnp.zeros((3, 2)), benchmark_pair)
    with pytest.raises(ValueError, match="epsilon"):
        train_light_sb(jax.random.key(0), benchmark_pair.sample_source, benchmark_pair.sample_target, epsilon=-1.0)
    with pytest.raises(ValueError, match="init"):
        train_light_sb(jax.random.key(0), benchmark_pair.sample_source, benchmark_pair.sample_target, epsilon=1.0,
                       init="uniform", steps=1)
