"""Forward processes against closed forms: SDE coefficients, Euler–Maruyama moments, priors,
Fokker–Planck and continuity equations, the derived reverse and probability-flow drifts."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import jaxdiff
from jaxdiff.processes import broadcast_time

TIMES = jnp.array([0.05, 0.2, 0.5, 0.8, 0.95])


def euler_maruyama_forward(sde, key, x_init, t0, t1, n_steps):
    """Forward SDE ``dX = f X dt + g dW`` from ``x_init`` at ``t0`` to ``t1`` with the library's step."""
    dt = (t1 - t0) / n_steps

    def body(x, inputs):
        k, i = inputs
        t = t0 + i * dt
        return jaxdiff.euler_maruyama_step(k, x, t, dt, sde.drift, sde.diffusion), None

    keys = jax.random.split(key, n_steps)
    x, _ = jax.lax.scan(body, x_init, (keys, jnp.arange(n_steps)))
    return x


# --- textbook closed forms --------------------------------------------------------------------


def _textbook(sde, t):
    t = np.asarray(t, dtype=np.float64)
    if isinstance(sde, (jaxdiff.VPSDE, jaxdiff.SubVPSDE)):
        beta = sde.beta_min + t * (sde.beta_max - sde.beta_min)
        integral = sde.beta_min * t + 0.5 * t**2 * (sde.beta_max - sde.beta_min)
        alpha = np.exp(-0.5 * integral)
        if isinstance(sde, jaxdiff.SubVPSDE):  # score_sde: std = 1 - exp(-∫β), g² = β (1 - e^{-2∫β})
            return alpha, 1 - np.exp(-integral), -beta / 2, np.sqrt(beta * (1 - np.exp(-2 * integral)))
        return alpha, np.sqrt(1 - np.exp(-integral)), -beta / 2, np.sqrt(beta)
    if isinstance(sde, jaxdiff.VESDE):
        ratio = sde.sigma_max / sde.sigma_min
        sigma = sde.sigma_min * ratio**t
        return np.ones_like(t), sigma, np.zeros_like(t), sigma * np.sqrt(2 * np.log(ratio))
    if isinstance(sde, jaxdiff.OUProcess):
        b, s = sde.beta, sde.sigma
        return (np.exp(-b * t), np.sqrt(s**2 / (2 * b) * (1 - np.exp(-2 * b * t))),
                -b * np.ones_like(t), s * np.ones_like(t))
    # cosine: ᾱ = cos²(φ(t))/cos²(φ(0)), β(t) = π/(1+s) tan φ(t)
    s = sde.s
    phi = (t + s) / (1 + s) * np.pi / 2
    alpha = np.cos(phi) / np.cos(s / (1 + s) * np.pi / 2)
    beta = np.pi / (1 + s) * np.tan(phi)
    return alpha, np.sqrt(1 - alpha**2), -beta / 2, np.sqrt(beta)


def test_coefficients_match_textbook_and_autodiff(process):
    alpha, sigma, f, g = _textbook(process, TIMES)
    np.testing.assert_allclose(process.marginal_mean_coeff(TIMES), alpha, rtol=1e-12)
    np.testing.assert_allclose(process.marginal_std(TIMES), sigma, rtol=1e-12)
    np.testing.assert_allclose(process.drift_coeff(TIMES), f, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(process.diffusion(TIMES), g, rtol=1e-12)
    # the generic derivation from (α, σ) alone agrees with the closed forms
    np.testing.assert_allclose(process.derived_drift_coeff(TIMES), f, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(process.derived_diffusion_sq(TIMES), g**2, rtol=1e-9)
    x = jnp.linspace(-2.0, 2.0, 10).reshape(5, 2)
    np.testing.assert_allclose(process.drift(x, TIMES), f[:, None] * np.asarray(x), rtol=1e-12, atol=1e-14)


def test_log_snr_inverse(process):
    t = jnp.array([1e-3, 0.1, 0.4, 0.9])
    lam = process.log_snr(t)
    assert np.all(np.diff(np.asarray(lam)) < 0), "log-SNR must decrease in t"
    np.testing.assert_allclose(process.t_from_log_snr(lam), t, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(process._bisect_log_snr(lam), t, rtol=1e-8, atol=1e-10)


def test_prior(process):
    x = jax.random.normal(jax.random.PRNGKey(0), (4, 3, 2))
    expected = stats.norm(0, float(process.prior_std)).logpdf(np.asarray(x)).reshape(4, -1).sum(-1)
    np.testing.assert_allclose(process.prior_log_prob(x), expected, rtol=1e-12)
    draws = process.prior_sample(jax.random.PRNGKey(1), (20000, 2))
    assert draws.shape == (20000, 2)
    np.testing.assert_allclose(np.std(draws), float(process.prior_std), rtol=0.02)
    # the prior stands for p_{t_max}: at t_max the signal-to-noise ratio α/σ is tiny and σ is the prior's
    t_max = process.t_max
    assert float(process.marginal_mean_coeff(t_max) / process.marginal_std(t_max)) < 0.03
    np.testing.assert_allclose(float(process.marginal_std(t_max)), float(process.prior_std), rtol=0.01)


def test_marginal_sample_moments(process):
    x0 = jnp.full((40000, 1), 1.5)
    t = 0.4
    x_t, eps = process.marginal_sample(jax.random.PRNGKey(2), x0, t)
    alpha, sigma = float(process.marginal_mean_coeff(t)), float(process.marginal_std(t))
    np.testing.assert_allclose(np.asarray(x_t), alpha * 1.5 + sigma * np.asarray(eps), rtol=1e-12)
    np.testing.assert_allclose(np.mean(x_t), alpha * 1.5, atol=4 * sigma / 200)
    np.testing.assert_allclose(np.std(x_t), sigma, rtol=0.02)


def test_euler_maruyama_matches_marginals(process):
    """Forward Euler–Maruyama from a fixed x0 (plus the kernel's σ(0) noise, nonzero for VE only)."""
    n, x0, t1 = 20000, 1.5, 0.5
    key_init, key_path = jax.random.split(jax.random.PRNGKey(3))
    x_init = x0 + float(process.marginal_std(0.0)) * jax.random.normal(key_init, (n, 1))
    x = euler_maruyama_forward(process, key_path, x_init, 0.0, t1, 500)
    alpha, sigma = float(process.marginal_mean_coeff(t1)), float(process.marginal_std(t1))
    np.testing.assert_allclose(np.mean(x), alpha * x0, atol=5 * sigma / math.sqrt(n) + 0.01 * alpha)
    np.testing.assert_allclose(np.std(x), sigma, rtol=0.03)


def test_ou_exact_solution_and_stationary_law():
    beta, s, x0 = 0.8, 1.2, 2.0
    ou = jaxdiff.OUProcess(beta=beta, sigma=s)
    assert ou.s == s and jaxdiff.OUProcess(beta=beta, s=s).sigma == s
    n = 40000
    t1 = 1.0
    x = euler_maruyama_forward(ou, jax.random.PRNGKey(4), jnp.full((n, 1), x0), 0.0, t1, 400)
    mean, var = x0 * math.exp(-beta * t1), s**2 / (2 * beta) * (1 - math.exp(-2 * beta * t1))
    np.testing.assert_allclose(np.mean(x), mean, atol=5 * math.sqrt(var / n))
    np.testing.assert_allclose(np.var(x), var, rtol=0.035)
    # long run: the stationary law N(0, s²/(2β)), whatever x0
    t_long = 12.0
    x = euler_maruyama_forward(ou, jax.random.PRNGKey(5), jnp.full((n, 1), x0), 0.0, t_long, 2400)
    stationary_var = s**2 / (2 * beta)
    np.testing.assert_allclose(np.mean(x), 0.0, atol=5 * math.sqrt(stationary_var / n))
    np.testing.assert_allclose(np.var(x), stationary_var, rtol=0.035)
    np.testing.assert_allclose(float(ou.marginal_std(t_long)) ** 2, stationary_var, rtol=1e-8)
    assert stats.kstest(np.asarray(x[:, 0]) / math.sqrt(stationary_var), "norm").pvalue > 1e-3


def test_reverse_and_probability_flow_drifts(process):
    key = jax.random.PRNGKey(6)
    x = jax.random.normal(key, (5, 2))
    score = jax.random.normal(jax.random.PRNGKey(7), (5, 2))
    f = np.asarray(process.drift_coeff(TIMES))[:, None]
    g2 = np.asarray(process.diffusion(TIMES))[:, None] ** 2
    np.testing.assert_allclose(jaxdiff.reverse_sde_drift(process, x, TIMES, score), f * x - g2 * score, rtol=1e-12)
    np.testing.assert_allclose(
        jaxdiff.probability_flow_drift(process, x, TIMES, score), f * x - 0.5 * g2 * score, rtol=1e-12
    )


def test_euler_maruyama_step_noise_scale():
    sde = jaxdiff.VPSDE()
    x = jnp.zeros((50000, 1))
    t, dt = 0.6, -0.01
    drift = lambda x, t: jnp.ones_like(x)  # noqa: E731
    ode = jaxdiff.euler_maruyama_step(None, x, t, dt, drift)
    np.testing.assert_allclose(ode, dt)
    sde_step = jaxdiff.euler_maruyama_step(jax.random.PRNGKey(8), x, t, dt, drift, sde.diffusion)
    np.testing.assert_allclose(np.mean(sde_step), dt, atol=5 * 0.1 * float(sde.diffusion(t)) / 220)
    np.testing.assert_allclose(np.std(sde_step), float(sde.diffusion(t)) * math.sqrt(abs(dt)), rtol=0.02)


# --- Fokker–Planck (Eq. 23) and continuity (Eq. 22) for a 1-D mixture ---------------------------


@pytest.mark.parametrize("t", [0.1, 0.35, 0.7])
def test_fokker_planck_and_continuity(process, mixture_1d, t):
    """∂p/∂t = −∂x(f x p) + ½ g² ∂²x p, and ∂p/∂t = −∂x(v p) with v = f x − ½ g² ∂x log p.

    Derivatives by central finite differences of the exact marginal density (float64)."""
    xs = jnp.linspace(-3.5, 3.5, 29)[:, None]
    f = float(process.drift_coeff(t))
    g2 = float(process.diffusion(t)) ** 2

    def density(x, s):
        return mixture_1d.marginal(process, s).prob(x)

    h_t, h_x = 1e-5, 1e-4
    dp_dt = (density(xs, t + h_t) - density(xs, t - h_t)) / (2 * h_t)
    p = density(xs, t)
    p_plus, p_minus = density(xs + h_x, t), density(xs - h_x, t)
    flux_fp = lambda x: f * x[:, 0] * density(x, t)  # noqa: E731
    d_flux = (flux_fp(xs + h_x) - flux_fp(xs - h_x)) / (2 * h_x)
    d2p = (p_plus - 2 * p + p_minus) / h_x**2
    scale = float(np.max(np.abs(dp_dt))) + float(np.max(np.abs(0.5 * g2 * d2p)))
    fp_residual = dp_dt - (-d_flux + 0.5 * g2 * d2p)
    assert float(np.max(np.abs(fp_residual))) < 2e-5 * scale

    def pf_flux(x):
        v = jaxdiff.probability_flow_drift(process, x, t, mixture_1d.marginal_score(process, x, t))
        return v[:, 0] * density(x, t)

    ce_residual = dp_dt + (pf_flux(xs + h_x) - pf_flux(xs - h_x)) / (2 * h_x)
    assert float(np.max(np.abs(ce_residual))) < 2e-5 * scale
    # the check has teeth: the reverse-SDE drift (factor g² instead of ½g²) breaks the equation
    def wrong_flux(x):
        v = jaxdiff.reverse_sde_drift(process, x, t, mixture_1d.marginal_score(process, x, t))
        return v[:, 0] * density(x, t)

    wrong = dp_dt + (wrong_flux(xs + h_x) - wrong_flux(xs - h_x)) / (2 * h_x)
    assert float(np.max(np.abs(wrong))) > 1e-2 * scale


def test_time_broadcasting_shapes(process):
    x = jnp.ones((3, 4, 5))
    t = jnp.array([0.1, 0.5, 0.9])
    assert process.drift(x, t).shape == x.shape
    assert process.drift(x, 0.3).shape == x.shape
    x_t, eps = process.marginal_sample(jax.random.PRNGKey(0), x, t)
    assert x_t.shape == eps.shape == x.shape
    np.testing.assert_allclose(
        x_t, broadcast_time(process.marginal_mean_coeff(t), x) * x + broadcast_time(process.marginal_std(t), x) * eps
    )
    assert process.prior_log_prob(x).shape == (3,)
    # float32 data stays float32 even with x64 enabled
    x32 = jnp.ones((3, 2), jnp.float32)
    assert process.drift(x32, t).dtype == jnp.float32
    assert process.marginal_sample(jax.random.PRNGKey(0), x32, t)[0].dtype == jnp.float32
