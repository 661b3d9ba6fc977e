"""DDPM chain and NCSN levels: closed forms, Gaussian algebra, and the maps to continuous processes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdiff


def test_ddpm_linear_schedule_and_vp_limit():
    ddpm = jaxdiff.DDPMSchedule()
    betas = np.linspace(1e-4, 0.02, 1000)
    np.testing.assert_allclose(ddpm.betas, betas, rtol=1e-12)
    np.testing.assert_allclose(ddpm.alphas_cumprod, np.cumprod(1 - betas), rtol=1e-12)
    vp = ddpm.to_vpsde()
    assert (float(vp.beta_min), float(vp.beta_max)) == pytest.approx((0.1, 20.0))
    i = jnp.arange(1000)
    alpha2 = vp.marginal_mean_coeff(ddpm.continuous_time(i)) ** 2
    # ᾱ_i ↔ α(t_i)² with t_i = (i+1)/N: agree to the O(1/N) discretization error
    err = float(jnp.max(jnp.abs(ddpm.alphas_cumprod - alpha2)))
    assert err < 1e-3
    # and the grid matters: one step off (t = i/N) is more than twice as far
    shifted = vp.marginal_mean_coeff(i / 1000.0) ** 2
    assert float(jnp.max(jnp.abs(ddpm.alphas_cumprod - shifted))) > 2 * err
    back = jaxdiff.DDPMSchedule.from_vpsde(vp, 1000)
    np.testing.assert_allclose(back.betas, ddpm.betas, rtol=1e-12)


def test_ddpm_cosine_schedule():
    ddpm = jaxdiff.DDPMSchedule(1000, beta_schedule="cosine")
    s = 0.008
    abar = lambda t: np.cos((t + s) / (1 + s) * np.pi / 2) ** 2  # noqa: E731
    t = np.arange(1001) / 1000
    expected = np.minimum(1 - abar(t[1:]) / abar(t[:-1]), 0.999)
    np.testing.assert_allclose(ddpm.betas, expected, rtol=1e-12)
    cos = jaxdiff.CosineVPSDE()
    # away from the clipped end, ᾱ_i equals the continuous cosine α(t)² at t = (i+1)/N
    idx = jnp.arange(900)
    np.testing.assert_allclose(
        ddpm.alphas_cumprod[:900], cos.marginal_mean_coeff(ddpm.continuous_time(idx)) ** 2, rtol=1e-9
    )
    with pytest.raises(ValueError, match="beta_schedule='linear'"):
        ddpm.to_vpsde()


def _posterior_by_gaussian_algebra(ddpm, i, x0, x_t):
    """Condition the joint Gaussian of (x_{i-1}, x_i) | x0 directly."""
    abar = np.asarray(ddpm.alphas_cumprod, dtype=np.float64)
    abar_prev = 1.0 if i == 0 else abar[i - 1]
    a_i = 1.0 - float(ddpm.betas[i])
    m_prev, v_prev = np.sqrt(abar_prev) * x0, 1.0 - abar_prev  # x_{i-1} | x0
    m_i, v_i = np.sqrt(a_i) * m_prev, a_i * v_prev + float(ddpm.betas[i])  # x_i | x0
    cov = np.sqrt(a_i) * v_prev  # Cov(x_{i-1}, x_i | x0)
    return m_prev + cov / v_i * (x_t - m_i), v_prev - cov**2 / v_i


@pytest.mark.parametrize("i", [0, 1, 10, 500, 999])
def test_ddpm_posterior_and_reverse_mean(i):
    ddpm = jaxdiff.DDPMSchedule()
    key = jax.random.PRNGKey(i)
    x0 = jax.random.normal(key, (3, 4))
    x_t, eps = ddpm.marginal_sample(jax.random.PRNGKey(100 + i), x0, i)
    mean_ref, var_ref = _posterior_by_gaussian_algebra(ddpm, i, np.asarray(x0), np.asarray(x_t))
    np.testing.assert_allclose(ddpm.posterior_mean(x0, x_t, i), mean_ref, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(float(ddpm.posterior_variance(i)), var_ref, rtol=1e-9, atol=1e-15)
    # μ_θ with the true noise is the posterior mean (DDPM's parameterization is exact there)
    np.testing.assert_allclose(ddpm.reverse_mean(x_t, i, eps), mean_ref, rtol=1e-8, atol=1e-10)
    # s = −ε/√(1−ᾱ) is the conditional score of q(x_i | x0)
    cond = -(x_t - jnp.sqrt(ddpm.alphas_cumprod[i]) * x0) / (1 - ddpm.alphas_cumprod[i])
    np.testing.assert_allclose(ddpm.score_from_eps(eps, i), cond, rtol=1e-9, atol=1e-12)


def test_ddpm_batched_indices():
    ddpm = jaxdiff.DDPMSchedule(num_steps=50, beta_start=1e-3, beta_end=0.2)
    i = jnp.array([0, 7, 49])
    x0 = jnp.ones((3, 2))
    x_t, eps = ddpm.marginal_sample(jax.random.PRNGKey(0), x0, i)
    for row in range(3):
        np.testing.assert_allclose(ddpm.posterior_mean(x0, x_t, i)[row], ddpm.posterior_mean(x0[row:row + 1], x_t[row:row + 1], int(i[row]))[0])


def test_ncsn_levels_and_ve_map():
    ncsn = jaxdiff.NCSNSchedule(sigma_min=0.01, sigma_max=1.0, num_scales=10)
    expected = np.geomspace(1.0, 0.01, 10)
    np.testing.assert_allclose(ncsn.sigmas, expected, rtol=1e-12)
    ve = ncsn.to_vesde()
    np.testing.assert_allclose(ve.marginal_std(ncsn.continuous_times()), expected, rtol=1e-12)
    steps = ncsn.annealed_langevin_step_sizes(2e-5)
    np.testing.assert_allclose(steps, 2e-5 * expected**2 / 0.01**2, rtol=1e-12)
    assert float(steps[-1]) == pytest.approx(2e-5)
    back = jaxdiff.NCSNSchedule.from_vesde(jaxdiff.VESDE(0.01, 50.0), 232)
    np.testing.assert_allclose(np.asarray(back.sigmas)[[0, -1]], [50.0, 0.01], rtol=1e-12)


@pytest.mark.parametrize(
    "make, fragment",
    [
        (lambda: jaxdiff.DDPMSchedule(0), "num_steps must be an integer >= 1"),
        (lambda: jaxdiff.DDPMSchedule(10, beta_start=0.1, beta_end=0.01), "beta_start must be <= beta_end"),
        (lambda: jaxdiff.DDPMSchedule(10, beta_schedule="quadratic"), "beta_schedule must be one of"),
        (lambda: jaxdiff.DDPMSchedule(10).posterior_variance(10), r"i must lie in \[0, 9\]"),
        (lambda: jaxdiff.DDPMSchedule(10).posterior_variance(0.5), "i must be an integer"),
        (lambda: jaxdiff.NCSNSchedule(sigma_min=2.0, sigma_max=1.0), "sigma_min must be < sigma_max"),
        (lambda: jaxdiff.NCSNSchedule(num_scales=1), "num_scales must be an integer >= 2"),
    ],
)
def test_bad_input(make, fragment):
    with pytest.raises((ValueError, TypeError), match=fragment):
        make()
