"""jaxdiff's low-NFE solver: exact quadrature weights, convergence order, and the 10-NFE claim against
DPM-Solver++ on a mixture (the full comparison is benchmarks/sampler_nfe.py)."""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdiff
from jaxdiff.sampling import alpha_sigma, sigma_tilde
from jaxdiff.sampling._stepping import abm_coefficients

VP = jaxdiff.VPSDE()


@pytest.mark.parametrize("order", [1, 2, 3])
def test_weights_integrate_polynomials_exactly(order):
    """Predictor weights reproduce ∫ e^{−(λ1−λ)} q(λ) dλ for polynomials of degree < p, corrector < p+1."""
    log_sigmas = np.log(np.geomspace(80.0, 0.05, 9))
    lam = -log_sigmas
    coeff = abm_coefficients(log_sigmas, order, None)

    def exact(q, a, b):  # ∫_a^b e^{-(b-λ)} q(λ) dλ by dense quadrature
        x, w = np.polynomial.legendre.leggauss(64)
        u = 0.5 * (b - a) * x + 0.5 * (b + a)
        return np.sum(w * 0.5 * (b - a) * np.exp(-(b - u)) * q(u))

    for i in range(order, len(lam) - 1):  # full-order steps
        for degree in range(order):
            q = lambda u, d=degree: u**d  # noqa: E731
            values = q(lam[i - np.arange(order)])
            np.testing.assert_allclose(coeff["pred"][i] @ values, exact(q, lam[i], lam[i + 1]), rtol=1e-10, atol=1e-12)
        for degree in range(order + 1):
            q = lambda u, d=degree: u**d  # noqa: E731
            values = q(np.concatenate([[lam[i + 1]], lam[i - np.arange(order)]]))
            np.testing.assert_allclose(coeff["corr"][i] @ values, exact(q, lam[i], lam[i + 1]), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(coeff["decay"], np.exp(-(lam[1:] - lam[:-1])))


MIX = jaxdiff.GaussianMixture.ring(8, radius=4.0, std=0.5)
SCORE = lambda p, x, t: MIX.marginal_score(VP, x, t)  # noqa: E731


def _flow_to_zero(z):
    """Exact probability-flow ODE from t = 1 to 0 (in x̃ and log σ̃, Dopri8 at 1e-10), denoised at σ̃ = 1e-6."""
    s_max = float(sigma_tilde(VP, jnp.asarray(1.0)))
    a_max = float(alpha_sigma(VP, jnp.asarray(1.0))[0])

    def denoiser(xs, s):
        t = VP.t_from_log_snr(-2.0 * jnp.log(s))
        return MIX.posterior_mean(VP, xs * VP._alpha(t), t)

    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(lambda u, xs, a: xs - denoiser(xs, jnp.exp(u))), diffrax.Dopri8(),
        t0=np.log(s_max), t1=np.log(1e-6), dt0=-0.05, y0=z / a_max,
        stepsize_controller=diffrax.PIDController(rtol=1e-10, atol=1e-10), max_steps=100_000,
    )
    return denoiser(sol.ys[-1], 1e-6)


@pytest.fixture(scope="module")
def noise_and_reference():
    z = jax.random.normal(jax.random.PRNGKey(1), (300, 2))
    return z, _flow_to_zero(z)


def _error(z, reference, **kwargs):
    x = jaxdiff.sample(jax.random.PRNGKey(0), None, VP, x_init=z, score_fn=SCORE, t_end=0.0, **kwargs)
    return float(jnp.mean(jnp.linalg.norm(x - reference, axis=-1)))


def test_ten_nfe_beats_dpm_solver_pp_by_half(noise_and_reference):
    z, reference = noise_and_reference
    ours = _error(z, reference, sampler="exp_abm", steps=10)
    baselines = {
        "2M uniform": _error(z, reference, sampler="dpmpp_2m", steps=10, grid="time_uniform"),
        "2M karras": _error(z, reference, sampler="dpmpp_2m", steps=10, grid="karras"),
        "3M karras": _error(z, reference, sampler="dpmpp_3m", steps=10, grid="karras"),
    }
    assert ours <= 0.5 * min(baselines.values()), (ours, baselines)


def test_convergence_order(noise_and_reference):
    """Doubling the steps cuts the error by ≥ 4 (second order or better) on a fixed λ-range grid."""
    z, _ = noise_and_reference
    ts_ref = np.array([1.0, 0.05])
    ref = jaxdiff.sample(jax.random.PRNGKey(0), None, VP, sampler="ode_adaptive", x_init=z, score_fn=SCORE,
                         ts=ts_ref, rtol=1e-10, atol=1e-10, max_steps=100_000)
    errs = []
    for steps in (10, 20, 40):
        ts = jaxdiff.time_grid(VP, steps, "logsnr_uniform", t_end=0.05)
        x = jaxdiff.sample(jax.random.PRNGKey(0), None, VP, sampler="exp_abm", x_init=z, score_fn=SCORE, ts=ts, order=3)
        errs.append(float(jnp.mean(jnp.linalg.norm(x - ref, axis=-1))))
    assert errs[0] / errs[1] > 4 and errs[1] / errs[2] > 4, errs
