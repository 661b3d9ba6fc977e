"""Every loss is minimized by the true score: fit an affine score to Gaussian data exactly (the loss is
quadratic in the affine parameters, so one Newton step from zero on a fixed Monte Carlo batch gives
the empirical minimizer) and compare with the closed-form marginal score. Then: time sampling is
unbiased and importance sampling reduces the variance of the likelihood-weighted loss."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree
from scipy import stats

import jaxdiff
from jaxdiff.time_sampling import constant_time_sampler, make_time_sampler

MEAN = jnp.array([0.5, -1.0])
STD = jnp.array([0.7, 1.3])
DATA = jaxdiff.GaussianMixture.gaussian(MEAN, STD)
N = 20000
T_FIT = 0.3


def _affine(params, x, noise=None):
    return x @ params["A"].T + params["b"]


def _zeros():
    return {"A": jnp.zeros((2, 2)), "b": jnp.zeros((2,))}


def newton_minimizer(loss_fn, params0, key, x0):
    """Exact minimizer of a loss that is quadratic in the parameters (fixed key and batch)."""
    flat0, unravel = ravel_pytree(params0)
    objective = lambda flat: loss_fn(unravel(flat), key, x0)  # noqa: E731
    grad = jax.grad(objective)(flat0)
    hess = jax.hessian(objective)(flat0)
    return unravel(flat0 - jnp.linalg.solve(hess, grad))


def true_affine_score(sde, t):
    """Score of N(α μ, α² diag s² + σ² I) at time t: A = −Σ_t⁻¹, b = Σ_t⁻¹ α μ."""
    alpha, sigma = float(sde.marginal_mean_coeff(t)), float(sde.marginal_std(t))
    var = alpha**2 * STD**2 + sigma**2
    return -jnp.diag(1.0 / var), alpha * MEAN / var


def _implied_score_params(fitted, parameterization, sde, t):
    """The affine score that a fitted affine network implies, through its parameterization."""
    x = jnp.concatenate([jnp.zeros((1, 2)), jnp.eye(2)])
    s = parameterization.predict(_affine, fitted, sde, x, jnp.full((3,), t), "score")
    b = s[0]
    return (s[1:] - b).T, b


def _assert_close_to_truth(A, b, sde, t, rtol):
    A_true, b_true = true_affine_score(sde, t)
    scale = float(jnp.max(jnp.abs(A_true)))
    np.testing.assert_allclose(A, A_true, atol=rtol * scale)
    np.testing.assert_allclose(b, b_true, atol=rtol * scale)


PROCESSES = [jaxdiff.VPSDE(), jaxdiff.VESDE(sigma_min=0.05, sigma_max=5.0), jaxdiff.SubVPSDE()]


@pytest.fixture(scope="module")
def data_batch():
    return DATA.sample(jax.random.PRNGKey(0), N)


@pytest.mark.parametrize("sde", PROCESSES, ids=["vp", "ve", "subvp"])
@pytest.mark.parametrize(
    "builder, prediction",
    [
        ("dsm_sigma2", "score"),
        ("dsm_likelihood", "score"),
        ("eps", "eps"),
        ("eps", "score"),
        ("x0", "x0"),
        ("v", "v"),
        ("velocity", "velocity"),
        ("ssm", "score"),
        ("ssm_vr_rademacher", "score"),
    ],
)
def test_minimizer_is_true_score(sde, builder, prediction, data_batch):
    param = jaxdiff.Direct(prediction)
    sampler = constant_time_sampler(T_FIT)
    common = dict(parameterization=param, time_sampling=sampler)
    if builder.startswith("dsm"):
        loss = jaxdiff.dsm_loss(sde, _affine, weighting=builder.split("_")[1], **common)
    elif builder in ("eps", "x0", "v", "velocity"):
        loss = jaxdiff.denoising_loss(sde, _affine, objective=builder, **common)
    elif builder == "ssm":
        loss = jaxdiff.sliced_score_matching_loss(_affine, sde=sde, num_projections=4, **common)
    else:
        loss = jaxdiff.sliced_score_matching_loss(
            _affine, sde=sde, projection="rademacher", variance_reduced=True, **common
        )
    fitted = newton_minimizer(loss, _zeros(), jax.random.PRNGKey(1), data_batch)
    A, b = _implied_score_params(fitted, param, sde, T_FIT)
    _assert_close_to_truth(A, b, sde, T_FIT, rtol=0.04)


def test_ssm_on_data_and_dsm_agree(data_batch):
    """Sliced score matching without a process recovers the data score −Σ⁻¹(x − μ)."""
    loss = jaxdiff.sliced_score_matching_loss(lambda p, x: _affine(p, x), num_projections=4)
    fitted = newton_minimizer(loss, _zeros(), jax.random.PRNGKey(2), data_batch)
    np.testing.assert_allclose(fitted["A"], -jnp.diag(1 / STD**2), atol=0.04 * float(1 / STD[0] ** 2))
    np.testing.assert_allclose(fitted["b"], MEAN / STD**2, atol=0.04 * float(1 / STD[0] ** 2))
    # DSM and SSM find the same score at the same noise level
    sde = jaxdiff.VPSDE()
    dsm = newton_minimizer(
        jaxdiff.dsm_loss(sde, _affine, time_sampling=constant_time_sampler(T_FIT)), _zeros(), jax.random.PRNGKey(3), data_batch
    )
    ssm = newton_minimizer(
        jaxdiff.sliced_score_matching_loss(_affine, sde=sde, num_projections=4, time_sampling=constant_time_sampler(T_FIT)),
        _zeros(),
        jax.random.PRNGKey(4),
        data_batch,
    )
    np.testing.assert_allclose(dsm["A"], ssm["A"], atol=0.05)
    np.testing.assert_allclose(dsm["b"], ssm["b"], atol=0.05)


def _level_affine(levels_of_t):
    """An affine model with separate parameters per discrete level, chosen from the noise input."""

    def apply(params, x, noise):
        idx = levels_of_t(noise)
        return jnp.einsum("bij,bj->bi", params["A"][idx], x) + params["b"][idx]

    return apply


def test_ncsn_loss_minimizer(data_batch):
    ncsn = jaxdiff.NCSNSchedule(sigma_min=0.4, sigma_max=2.0, num_scales=3)
    apply = _level_affine(lambda t: jnp.round((1.0 - t) * 2).astype(jnp.int32))
    params0 = {"A": jnp.zeros((3, 2, 2)), "b": jnp.zeros((3, 2))}
    fitted = newton_minimizer(jaxdiff.ncsn_loss(ncsn, apply), params0, jax.random.PRNGKey(5), data_batch)
    for level, sigma in enumerate(np.asarray(ncsn.sigmas)):
        var = STD**2 + sigma**2
        scale = float(1 / var[0])
        np.testing.assert_allclose(fitted["A"][level], -jnp.diag(1 / var), atol=0.06 * scale)
        np.testing.assert_allclose(fitted["b"][level], MEAN / var, atol=0.06 * scale)


def test_ddpm_loss_minimizer(data_batch):
    """L_simple's minimizer: ε* = −√(1−ᾱ_i) ∇log q(x_i) at each step."""
    ddpm = jaxdiff.DDPMSchedule(num_steps=3, beta_start=0.1, beta_end=0.5)
    apply = _level_affine(lambda t: (jnp.round(t * 3) - 1).astype(jnp.int32))
    params0 = {"A": jnp.zeros((3, 2, 2)), "b": jnp.zeros((3, 2))}
    fitted = newton_minimizer(jaxdiff.ddpm_loss(ddpm, apply), params0, jax.random.PRNGKey(6), data_batch)
    for i in range(3):
        abar = float(ddpm.alphas_cumprod[i])
        var = abar * STD**2 + (1 - abar)
        k = math.sqrt(1 - abar)
        np.testing.assert_allclose(fitted["A"][i], k * jnp.diag(1 / var), atol=0.04)
        np.testing.assert_allclose(fitted["b"][i], -k * math.sqrt(abar) * MEAN / var, atol=0.04)


# --- time sampling and variance reduction ------------------------------------------------------


def test_importance_time_density():
    sde = jaxdiff.VPSDE()
    sampler = make_time_sampler(sde, "importance")
    t, w = sampler(jax.random.PRNGKey(7), 20000)
    lam_lo, lam_hi = float(sde.log_snr(sde.t_min)), float(sde.log_snr(sde.t_max))

    def cdf(s):
        return (lam_lo - np.asarray(sde.log_snr(jnp.asarray(s)))) / (lam_lo - lam_hi)

    assert stats.kstest(np.asarray(t), cdf).pvalue > 1e-3
    # the weights undo the proposal: E_p[w] = 1
    np.testing.assert_allclose(float(jnp.mean(w)), 1.0, rtol=0.05)


@pytest.mark.parametrize("method", ["stratified", "low_discrepancy", "antithetic"])
def test_uniform_variants_cover_interval(method):
    sde = jaxdiff.VPSDE()
    t, w = make_time_sampler(sde, method)(jax.random.PRNGKey(8), 1000)
    assert float(jnp.min(t)) >= sde.t_min and float(jnp.max(t)) <= sde.t_max
    np.testing.assert_allclose(w, 1.0)
    # each of 10 equal strata gets 100 ± few draws (i.i.d. uniform would wander by ~±30)
    counts = np.histogram(np.asarray(t), bins=10, range=(sde.t_min, sde.t_max))[0]
    assert np.all(np.abs(counts - 100) <= (2 if method != "antithetic" else 40))


def _exact_score_model(sde):
    """A 'network' that returns the exact marginal score of the Gaussian data (params unused)."""

    def apply(params, x, t):
        return DATA.marginal_score(sde, x, t) + params

    return apply


def test_time_sampling_unbiased_and_importance_reduces_variance():
    sde = jaxdiff.VPSDE()
    apply = _exact_score_model(sde)
    x0 = DATA.sample(jax.random.PRNGKey(9), 64)
    keys = jax.random.split(jax.random.PRNGKey(10), 600)

    def stats_for(method, weighting):
        loss = jaxdiff.dsm_loss(sde, apply, weighting=weighting, time_sampling=method)
        values = jax.vmap(lambda k: loss(0.0, k, x0))(keys)
        return float(jnp.mean(values)), float(jnp.var(values))

    m_u, v_u = stats_for("uniform", "likelihood")
    m_is, v_is = stats_for("importance", "likelihood")
    se = math.sqrt(v_u / len(keys) + v_is / len(keys))
    assert abs(m_u - m_is) < 4 * se
    assert v_is < 0.5 * v_u
    m_s, v_s = stats_for("stratified", "sigma2")
    m_u2, v_u2 = stats_for("uniform", "sigma2")
    assert abs(m_s - m_u2) < 4 * math.sqrt(v_s / len(keys) + v_u2 / len(keys))
    assert v_s < v_u2


def test_losses_are_scalars_or_per_example(data_batch):
    sde = jaxdiff.VPSDE()
    x0 = data_batch[:8]
    params = {"A": -jnp.eye(2), "b": jnp.zeros(2)}
    loss = jaxdiff.dsm_loss(sde, _affine)
    per = jaxdiff.dsm_loss(sde, _affine, per_example=True)
    assert loss(params, jax.random.PRNGKey(0), x0).shape == ()
    values = per(params, jax.random.PRNGKey(0), x0)
    assert values.shape == (8,)
    np.testing.assert_allclose(values.mean(), loss(params, jax.random.PRNGKey(0), x0))
    mean_reduced = jaxdiff.dsm_loss(sde, _affine, reduce="mean")(params, jax.random.PRNGKey(0), x0)
    np.testing.assert_allclose(mean_reduced * 2, loss(params, jax.random.PRNGKey(0), x0))


def test_dsm_matches_score_sde_formulas(data_batch):
    """score_sde: σ² weighting → ‖σ s + z‖²; likelihood → ‖s + z/σ‖² g² (sum over dims, batch mean)."""
    sde = jaxdiff.VPSDE()
    x0 = data_batch[:16]
    params = {"A": -0.8 * jnp.eye(2), "b": jnp.array([0.1, -0.2])}
    key = jax.random.PRNGKey(11)
    k_t, k_eps, _ = jax.random.split(key, 3)
    t = jax.random.uniform(k_t, (16,), minval=sde.t_min, maxval=sde.t_max)
    x_t, z = sde.marginal_sample(k_eps, x0, t)
    s = _affine(params, x_t)
    std = sde.marginal_std(t)[:, None]
    g2 = sde.diffusion(t)[:, None] ** 2
    ref_sigma2 = jnp.mean(jnp.sum((s * std + z) ** 2, -1))
    ref_lik = jnp.mean(jnp.sum((s + z / std) ** 2 * g2, -1))
    np.testing.assert_allclose(jaxdiff.dsm_loss(sde, _affine, parameterization=jaxdiff.Direct("score"))(params, key, x0), ref_sigma2, rtol=1e-10)
    np.testing.assert_allclose(jaxdiff.dsm_loss(sde, _affine, weighting="likelihood")(params, key, x0), ref_lik, rtol=1e-10)


@pytest.mark.parametrize(
    "make, fragment",
    [
        (lambda: jaxdiff.dsm_loss(jaxdiff.VPSDE(), _affine, weighting="snr"), "weighting must be one of"),
        (lambda: jaxdiff.dsm_loss(jaxdiff.VPSDE(), _affine, time_sampling="sobol"), "time_sampling must be one of"),
        (lambda: jaxdiff.dsm_loss(jaxdiff.VPSDE(), _affine, reduce="max"), "reduce must be one of"),
        (lambda: jaxdiff.denoising_loss(jaxdiff.VPSDE(), _affine, objective="noise"), "objective must be one of"),
        (lambda: make_time_sampler(jaxdiff.VPSDE(), "importance", t_min=0.0), "needs a finite log-SNR"),
        (lambda: jaxdiff.sliced_score_matching_loss(_affine, projection="sphere"), "projection must be one of"),
        (lambda: jaxdiff.sliced_score_matching_loss(_affine, num_projections=0), "num_projections must be an integer >= 1"),
        (lambda: jaxdiff.dsm_loss(jaxdiff.VPSDE(), _affine)(_zeros(), jax.random.PRNGKey(0), jnp.ones((4, 2), jnp.int32)), "x0 must have a floating dtype"),
        (lambda: jaxdiff.dsm_loss(jaxdiff.VPSDE(), _affine)(_zeros(), jax.random.PRNGKey(0), jnp.ones((4,))), r"x0 must have shape \(batch, \*data\)"),
    ],
)
def test_bad_input(make, fragment):
    with pytest.raises((ValueError, TypeError), match=fragment):
        make()
