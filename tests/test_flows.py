"""Flows: interpolant paths, couplings, Gaussian EOT / Schrödinger-bridge closed forms, the exact
marginal velocity of Gaussian-mixture interpolants, and the flow samplers / likelihood against them."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdiff
from jaxdiff import GaussianMixture
from jaxdiff.flows import (
    BrownianBridge,
    LinearInterpolant,
    OTPath,
    StochasticInterpolant,
    TrigInterpolant,
    VPInterpolant,
    couple,
    exact_w2,
    flow_log_likelihood,
    gaussian_bridge_conditional,
    gaussian_bridge_marginal,
    gaussian_entropic_ot,
    gaussian_monge_map,
    gaussian_w2_squared,
    ot_plan,
    sample_flow,
    translate,
)
from jaxdiff.flows.couplings import squared_distances

ALL_PATHS = [
    LinearInterpolant(0.0), LinearInterpolant(0.3), BrownianBridge(1.0), BrownianBridge(0.5), TrigInterpolant(),
    OTPath(1e-2), VPInterpolant(0.1, 20.0), StochasticInterpolant("trig", "sqrt_bridge", 0.7),
    StochasticInterpolant("linear", "constant", 0.2),
]


@pytest.fixture(scope="module")
def batch():
    k0, k1, kz = jax.random.split(jax.random.PRNGKey(0), 3)
    return (jax.random.normal(k0, (6, 3)), jax.random.normal(k1, (6, 3)) + 2.0, jax.random.normal(kz, (6, 3)),
            jnp.linspace(0.05, 0.95, 6))


# --- paths --------------------------------------------------------------------------------------
def test_public_path_formulas(batch):
    x0, x1, z, t = batch
    tb = t[:, None]
    cases = [
        (LinearInterpolant(0.3), (1 - tb) * x0 + tb * x1 + 0.3 * z, 0.3 * jnp.ones_like(t)),
        (BrownianBridge(0.8), (1 - tb) * x0 + tb * x1 + 0.8 * jnp.sqrt(tb * (1 - tb)) * z, 0.8 * jnp.sqrt(t * (1 - t))),
        (TrigInterpolant(), jnp.cos(jnp.pi * tb / 2) * x0 + jnp.sin(jnp.pi * tb / 2) * x1, jnp.zeros_like(t)),
    ]
    for path, expected, std in cases:
        np.testing.assert_allclose(path.sample(x0, x1, t, z), expected, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(path.std(t), std, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(path.mean(x0, x1, t) + path.std(t)[:, None] * z, expected, rtol=1e-5, atol=1e-6)
    # rectified flow: the conditional velocity is x1 - x0 at every t
    np.testing.assert_allclose(LinearInterpolant().conditional_velocity(x0, x1, t, (1 - tb) * x0 + tb * x1), x1 - x0,
                               rtol=1e-6)


@pytest.mark.parametrize("path", ALL_PATHS, ids=lambda p: repr(p))
def test_conditional_velocity_is_the_time_derivative_of_the_path(path, batch):
    x0, x1, z, t = batch
    x_t, dx_dt = jax.jvp(lambda s: path.sample(x0, x1, s, z), (t,), (jnp.ones_like(t),))
    np.testing.assert_allclose(path.conditional_velocity(x0, x1, t, x_t), dx_dt, rtol=1e-4, atol=1e-4)
    # the closed-form derivatives agree with autodiff of the coefficients
    auto = jax.jvp(path._coefficients, (t,), (jnp.ones_like(t),))[1]
    for got, want in zip(path.coefficient_derivatives(t), auto):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_path_time_broadcasting_and_errors(batch):
    x0, x1, z, _ = batch
    path = BrownianBridge(1.0)
    np.testing.assert_allclose(path.sample(x0, x1, 0.3, z), path.sample(x0, x1, jnp.full((6,), 0.3), z), rtol=1e-6)
    img0 = jnp.ones((2, 4, 4, 1))
    assert path.sample(img0, -img0, jnp.array([0.2, 0.7]), img0).shape == (2, 4, 4, 1)
    with pytest.raises(ValueError, match="sigma"):
        LinearInterpolant(-1.0)
    with pytest.raises(ValueError, match=r"t must lie in \[0, 1\]"):
        path.mean(x0, x1, 1.5)
    with pytest.raises(ValueError, match="same shape"):
        path.mean(x0, x1[:, :2], 0.5)
    with pytest.raises(ValueError, match="batch"):
        path.mean(x0, x1, jnp.ones((4,)) * 0.5)
    with pytest.raises(ValueError, match="family"):
        StochasticInterpolant("spline")


# --- Gaussian-mixture ground truth ---------------------------------------------------------------
@pytest.fixture(scope="module")
def mixtures():
    source = GaussianMixture(jnp.array([0.3, 0.7]), jnp.array([[-1.0, 0.5], [1.0, -0.5]]), jnp.array([[0.6, 0.4], [0.5, 0.8]]))
    target = GaussianMixture.ring(5, 3.0, 0.4)
    return source, target


@pytest.mark.parametrize("path", ALL_PATHS, ids=lambda p: repr(p))
def test_mixture_marginal_velocity_solves_the_continuity_equation(path, mixtures):
    """∂_t log p_t + ∇·u_t + u_t·∇log p_t = 0 with p_t and u_t both in closed form (autodiff, float64)."""
    with jax.enable_x64(True):
        source, target = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), mixtures)
        xs = jax.random.normal(jax.random.PRNGKey(1), (5, 2), jnp.float64) * 2.0

        def residual(x, t):
            logp = lambda y, s: source.interpolant_log_prob(target, path, y[None], s)[0]  # noqa: E731
            u = lambda y: source.interpolant_velocity(target, path, y[None], t)[0]  # noqa: E731
            return (jax.grad(logp, 1)(x, t) + jnp.trace(jax.jacfwd(u)(x)) + u(x) @ jax.grad(logp)(x, t))

        for t in (0.2, 0.55, 0.9):
            res = jax.vmap(residual, (0, None))(xs, jnp.asarray(t))
            scale = jnp.abs(source.interpolant_velocity(target, path, xs, t)).max()
            assert float(jnp.abs(res).max()) < 1e-9 * max(1.0, float(scale)), (t, res)
        # score is the gradient of the closed-form log density
        grad = jax.vmap(jax.grad(lambda y: source.interpolant_log_prob(target, path, y[None], 0.4)[0]))(xs)
        np.testing.assert_allclose(source.interpolant_score(target, path, xs, 0.4), grad, rtol=1e-9, atol=1e-12)


def test_mixture_marginal_velocity_is_the_conditional_expectation(mixtures):
    """For a stochastic path, u_t(x) = E[u_t(x | x0, x1) | x_t = x], estimated by importance weights."""
    source, target = mixtures
    path = BrownianBridge(1.0)
    k0, k1, kz = jax.random.split(jax.random.PRNGKey(2), 3)
    n = 400_000
    x0, x1 = source.sample(k0, n), target.sample(k1, n)
    t = 0.6
    x = jnp.array([[0.5, 1.0], [-1.0, -0.5]])
    c = path.std(t)
    mean = path.mean(x0, x1, t)
    for xi, ui in zip(x, source.interpolant_velocity(target, path, x, t)):
        logw = -0.5 * jnp.sum((xi - mean) ** 2, -1) / c**2
        w = jax.nn.softmax(logw)
        u_cond = path.conditional_velocity(x0, x1, t, jnp.broadcast_to(xi, x0.shape))
        np.testing.assert_allclose(w @ u_cond, ui, atol=0.05)
    marg = source.interpolant_marginal(target, path, t)
    sample_t = path.sample(x0, x1, t, jax.random.normal(kz, x0.shape))
    np.testing.assert_allclose(sample_t.mean(0), marg.mean(), atol=0.02)
    np.testing.assert_allclose(jnp.cov(sample_t.T), marg.covariance(), atol=0.04)


# --- couplings -----------------------------------------------------------------------------------
def test_exact_ot_plan_equals_brute_force_assignment():
    for seed in range(3):
        k0, k1 = jax.random.split(jax.random.PRNGKey(seed))
        x0, x1 = jax.random.normal(k0, (6, 2)), jax.random.normal(k1, (6, 2)) + 1.0
        cost = np.asarray(squared_distances(x0, x1), np.float64)
        best = min(itertools.permutations(range(6)), key=lambda p: sum(cost[i, p[i]] for i in range(6)))
        plan = np.asarray(jax.jit(ot_plan)(x0, x1))
        np.testing.assert_allclose(plan, np.eye(6)[list(best)] / 6, atol=1e-7)
        paired0, paired1 = couple(jax.random.PRNGKey(0), x0, x1, "exact")
        np.testing.assert_allclose(paired1, x1[np.array(best)])
        np.testing.assert_allclose(exact_w2(x0, x1), np.sqrt(np.mean(cost[np.arange(6), list(best)])), rtol=1e-12)
    # the assignment solved on -x0 x1^T (the cross term) has the full cost's optimum on a larger problem
    from scipy.optimize import linear_sum_assignment

    from jaxdiff.flows.couplings import squared_euclidean_assignment

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(300, 3)), 2.0 * rng.normal(size=(300, 3)) + 1.0
    full = ((a[:, None] - b[None]) ** 2).sum(-1)
    rows, cols = squared_euclidean_assignment(a, b)
    np.testing.assert_allclose(full[rows, cols].sum(), full[linear_sum_assignment(full)].sum(), rtol=1e-12)
    # unequal sizes: a linear program; marginals uniform and the cost no worse than any vertex we try
    x0, x1 = jax.random.normal(jax.random.PRNGKey(5), (4, 3)), jax.random.normal(jax.random.PRNGKey(6), (6, 3))
    plan = np.asarray(ot_plan(x0, x1), np.float64)
    np.testing.assert_allclose(plan.sum(1), 1 / 4, atol=1e-9)
    np.testing.assert_allclose(plan.sum(0), 1 / 6, atol=1e-9)
    cost = np.asarray(squared_distances(x0, x1), np.float64)
    # brute force over the 12-by-12 assignment of the common refinement (each point split into 3 or 2 copies)
    rep0, rep1 = np.repeat(np.arange(4), 3), np.repeat(np.arange(6), 2)
    big = cost[np.ix_(rep0, rep1)]
    from scipy.optimize import linear_sum_assignment

    r, c = linear_sum_assignment(big)
    assert abs((plan * cost).sum() - big[r, c].sum() / 12) < 1e-6
    # images are flattened
    assert ot_plan(jnp.ones((3, 2, 2, 1)), jnp.zeros((3, 2, 2, 1))).shape == (3, 3)


def _sinkhorn_reference(cost: np.ndarray, epsilon: float, iterations: int = 3000) -> np.ndarray:
    """POT's convention, float64 log-domain Sinkhorn: min <P, C> - eps H(P), uniform marginals."""
    from scipy.special import logsumexp

    n, m = cost.shape
    log_a, log_b = np.full(n, -np.log(n)), np.full(m, -np.log(m))
    f, g = np.zeros(n), np.zeros(m)
    for _ in range(iterations):
        f = epsilon * (log_a - logsumexp((g[None, :] - cost) / epsilon, axis=1))
        g = epsilon * (log_b - logsumexp((f[:, None] - cost) / epsilon, axis=0))
    return np.exp((f[:, None] + g[None, :] - cost) / epsilon)


def test_entropic_ot_plan_matches_a_reference_sinkhorn():
    x0 = jax.random.normal(jax.random.PRNGKey(3), (12, 2))
    x1 = jax.random.normal(jax.random.PRNGKey(4), (9, 2)) * 1.5 + 0.5
    cost = np.asarray(squared_distances(x0, x1), np.float64)
    for eps in (0.3, 2.0):
        plan = np.asarray(ot_plan(x0, x1, epsilon=eps), np.float64)
        np.testing.assert_allclose(plan, _sinkhorn_reference(cost, eps), atol=2e-5)
    with pytest.raises(ValueError, match="epsilon"):
        ot_plan(x0, x1, epsilon=-1.0)
    with pytest.raises(ValueError, match="coupling"):
        couple(jax.random.PRNGKey(0), x0, x1, "greedy")


# --- Gaussian entropic OT and Schrödinger bridge closed forms -------------------------------------
def test_gaussian_entropic_ot_closed_form_values():
    eye = np.eye(2)
    np.testing.assert_allclose(gaussian_entropic_ot(np.zeros(2), eye, np.zeros(2), eye, 1.0),
                               (np.sqrt(5) - 1) / 2 * eye, rtol=1e-6)
    cov0 = np.array([[1.0, 0.3], [0.3, 0.5]])
    cov1 = np.array([[2.0, -0.4], [-0.4, 1.0]])
    a, _ = gaussian_monge_map(np.zeros(2), cov0, np.ones(2), cov1)
    np.testing.assert_allclose(a @ cov0 @ a, cov1, rtol=1e-5, atol=1e-6)  # A pushes Σ0 to Σ1
    # ε → 0: the plan's cross-covariance tends to the Monge coupling's Σ0 A
    np.testing.assert_allclose(gaussian_entropic_ot(np.zeros(2), cov0, np.ones(2), cov1, 1e-4), cov0 @ a, atol=1e-3)
    # ε → ∞: independence
    assert np.abs(gaussian_entropic_ot(np.zeros(2), cov0, np.ones(2), cov1, 1e4)).max() < 1e-3
    mean_t, cov_t = gaussian_bridge_marginal(np.zeros(2), cov0, np.ones(2), cov1, 0.5, 0.0)
    np.testing.assert_allclose(cov_t, cov0, atol=1e-6)
    mean_t, cov_t = gaussian_bridge_marginal(np.zeros(2), cov0, np.ones(2), cov1, 0.5, 1.0)
    np.testing.assert_allclose(cov_t, cov1, atol=1e-6)
    np.testing.assert_allclose(mean_t, np.ones(2))
    w2 = gaussian_w2_squared(np.zeros(2), cov0, np.ones(2), cov1)
    assert float(w2) > 2.0  # |Δμ|² = 2 plus a positive Bures term
    with pytest.raises(ValueError, match="epsilon"):
        gaussian_entropic_ot(np.zeros(2), cov0, np.zeros(2), cov1, 0.0)
    with pytest.raises(ValueError, match="positive definite"):
        gaussian_entropic_ot(np.zeros(2), -cov0, np.zeros(2), cov1, 1.0)


def _log_sinkhorn_x64(log_a, log_b, cost, reg, iterations):
    """Float64 log-domain Sinkhorn (POT's convention) with given log-marginals, compiled."""
    with jax.enable_x64(True):
        log_a, log_b, cost = (jnp.asarray(v, jnp.float64) for v in (log_a, log_b, cost))

        def body(_, fg):
            f, g = fg
            f = reg * (log_a - jax.nn.logsumexp((g[None, :] - cost) / reg, axis=1))
            g = reg * (log_b - jax.nn.logsumexp((f[:, None] - cost) / reg, axis=0))
            return f, g

        f, g = jax.lax.fori_loop(0, iterations, body, (jnp.zeros_like(log_a), jnp.zeros_like(log_b)))
        return np.asarray(jnp.exp((f[:, None] + g[None, :] - cost) / reg))


def test_gaussian_entropic_ot_matches_discretized_sinkhorn():
    """Independent check of C_ε: Sinkhorn on fine grids of the two Gaussian densities (POT's ε' = 2ε)."""
    from scipy.special import logsumexp

    # 1-D, for three ε (the plan's cross-covariance is the same in every direction of a product)
    grid = np.linspace(-7, 9, 320)
    m0, s0, m1, s1 = 0.0, 1.0, 1.5, 1.7
    log_a = -0.5 * ((grid - m0) / s0) ** 2
    log_b = -0.5 * ((grid - m1) / s1) ** 2
    log_a -= logsumexp(log_a)
    log_b -= logsumexp(log_b)
    cost = (grid[:, None] - grid[None, :]) ** 2
    for eps in (0.1, 1.0, 4.0):
        plan = np.asarray(_log_sinkhorn_x64(log_a, log_b, cost, 2.0 * eps, 1500))
        cross = np.sum(plan * np.outer(grid - plan.sum(1) @ grid, grid - plan.sum(0) @ grid))
        closed = float(gaussian_entropic_ot(np.zeros(1), [[s0**2]], np.zeros(1), [[s1**2]], eps)[0, 0])
        assert abs(cross - closed) < 2e-3 * s0 * s1, (eps, cross, closed)


def test_bridge_marginal_is_the_brownian_bridge_over_the_entropic_plan():
    """Σ_t of the closed form equals the law of BrownianBridge(√ε) between pairs drawn from the EOT plan."""
    mean0, cov0 = np.array([0.5, -1.0]), np.array([[1.0, 0.3], [0.3, 0.5]])
    mean1, cov1 = np.array([2.0, 0.0]), np.array([[2.0, -0.4], [-0.4, 1.0]])
    for eps in (0.2, 2.0):
        a, b, s = gaussian_bridge_conditional(mean0, cov0, mean1, cov1, eps)
        k0, k1, kz = jax.random.split(jax.random.PRNGKey(7), 3)
        n = 400_000
        x0 = mean0 + jax.random.normal(k0, (n, 2)) @ np.linalg.cholesky(cov0).T
        x1 = x0 @ a.T + b + jax.random.normal(k1, (n, 2)) @ np.linalg.cholesky(s).T
        np.testing.assert_allclose(jnp.cov(x1.T), cov1, atol=0.03)
        t = 0.35
        x_t = BrownianBridge(np.sqrt(eps)).sample(x0, x1, t, jax.random.normal(kz, (n, 2)))
        mean_t, cov_t = gaussian_bridge_marginal(mean0, cov0, mean1, cov1, eps, t)
        np.testing.assert_allclose(x_t.mean(0), mean_t, atol=0.01)
        np.testing.assert_allclose(jnp.cov(x_t.T), cov_t, atol=0.02)


# --- samplers, translation and likelihood with exact fields --------------------------------------
@pytest.fixture(scope="module")
def gaussian_to_ring():
    return GaussianMixture.gaussian(jnp.zeros(2), jnp.ones(2)), GaussianMixture.ring(6, 3.0, 0.4)


def test_flow_samplers_with_the_exact_velocity_reach_the_target(gaussian_to_ring):
    source, target = gaussian_to_ring
    ref = target.sample(jax.random.PRNGKey(10), 1500)
    floor = exact_w2(target.sample(jax.random.PRNGKey(11), 1500), ref)
    for path in (LinearInterpolant(0.0), TrigInterpolant(), BrownianBridge(1.0)):
        v = lambda p, x, t, path=path: source.interpolant_velocity(target, path, x, t)  # noqa: E731
        s = lambda p, x, t, path=path: source.interpolant_score(target, path, x, t)  # noqa: E731
        x, info = jaxdiff.sample(jax.random.PRNGKey(1), None, path, shape=(1500, 2), velocity_fn=v, return_info=True)
        assert exact_w2(x, ref) < 1.5 * floor, path
        assert int(info["nfe"]) < 400
        if path.is_stochastic:  # the SDE family dX = (v + ε s) dt + √(2ε) dW has the same marginals
            x = sample_flow(jax.random.PRNGKey(2), None, path, shape=(1500, 2), velocity_fn=v, score_fn=s,
                            sampler="euler_maruyama", steps=400, diffusion=2.0)
            assert exact_w2(x, ref) < 1.5 * floor


def test_translate_backward_inverts_forward_and_likelihood_matches(gaussian_to_ring):
    source, target = gaussian_to_ring
    path = LinearInterpolant(0.0)
    v = lambda p, x, t: source.interpolant_velocity(target, path, x, t)  # noqa: E731
    x0 = jax.random.normal(jax.random.PRNGKey(3), (64, 2))
    x1 = translate(jax.random.PRNGKey(0), None, path, x0, velocity_fn=v, rtol=1e-6, atol=1e-6)
    back = translate(jax.random.PRNGKey(0), None, path, x1, velocity_fn=v, direction="backward", rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(back, x0, atol=2e-3)
    with jax.enable_x64(True):
        xt = jnp.asarray(target.sample(jax.random.PRNGKey(4), 16), jnp.float64)
        src64, tgt64 = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), (source, target))
        v64 = lambda p, x, t: src64.interpolant_velocity(tgt64, path, x, t)  # noqa: E731
        log_p = flow_log_likelihood(jax.random.PRNGKey(0), None, path, xt, velocity_fn=v64, rtol=1e-8, atol=1e-8)
        np.testing.assert_allclose(log_p, tgt64.log_prob(xt), atol=1e-4)


def test_flow_sampler_errors():
    path = LinearInterpolant()
    with pytest.raises(ValueError, match="velocity"):
        jaxdiff.sample(jax.random.PRNGKey(0), None, path, shape=(4, 2))
    v = lambda p, x, t: x  # noqa: E731
    with pytest.raises(ValueError, match="sampler"):
        sample_flow(jax.random.PRNGKey(0), None, path, shape=(4, 2), velocity_fn=v, sampler="no_such_sampler")
    # between two data laws (translate) the Gaussian samplers and the velocity→score conversion do not apply
    with pytest.raises(ValueError, match="Gaussian samplers"):
        translate(jax.random.PRNGKey(0), None, path, jnp.zeros((4, 2)), velocity_fn=v, sampler="dpmpp_2m")
    with pytest.raises(ValueError, match="euler_maruyama"):
        translate(jax.random.PRNGKey(0), None, path, jnp.zeros((4, 2)), velocity_fn=v, sampler="euler_maruyama")
    with pytest.raises(ValueError, match="t_end"):
        jaxdiff.sample(jax.random.PRNGKey(0), None, path, shape=(4, 2), velocity_fn=v, t_end=1.5)
    with pytest.raises(TypeError, match="path"):
        translate(jax.random.PRNGKey(0), None, "linear", jnp.zeros((4, 2)))
