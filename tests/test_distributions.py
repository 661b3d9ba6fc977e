"""GaussianMixture: density, score, sampling, exact marginals under a process, posterior mean, Tweedie."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import jaxdiff


def _scipy_log_prob(mix, x):
    x = np.asarray(x)
    comps = [
        np.log(w) + stats.multivariate_normal(m, np.diag(s**2)).logpdf(x)
        for w, m, s in zip(np.asarray(mix.weights), np.asarray(mix.means), np.asarray(mix.stds))
    ]
    return np.logaddexp.reduce(np.stack(comps, -1), axis=-1)


def test_log_prob_and_score(mixture_2d):
    x = jax.random.normal(jax.random.PRNGKey(0), (7, 2)) * 2
    np.testing.assert_allclose(mixture_2d.log_prob(x), _scipy_log_prob(mixture_2d, x), rtol=1e-12)
    autodiff = jax.vmap(jax.grad(mixture_2d.log_prob))(x)
    np.testing.assert_allclose(mixture_2d.score(x), autodiff, rtol=1e-10, atol=1e-12)


def test_sample_moments(mixture_2d):
    x, comp = mixture_2d.sample_with_components(jax.random.PRNGKey(1), 60000)
    np.testing.assert_allclose(np.mean(x, 0), mixture_2d.mean(), atol=0.02)
    np.testing.assert_allclose(np.cov(np.asarray(x).T), mixture_2d.covariance(), atol=0.03)
    np.testing.assert_allclose(np.mean(np.asarray(comp) == 1), 0.7, atol=0.01)


def test_marginal_is_law_of_forward_process(process, mixture_2d):
    t = 0.3
    x0 = mixture_2d.sample(jax.random.PRNGKey(2), 60000)
    x_t, _ = process.marginal_sample(jax.random.PRNGKey(3), x0, t)
    marg = mixture_2d.marginal(process, t)
    assert isinstance(marg, jaxdiff.GaussianMixture)
    scale = float(np.sqrt(np.max(np.diag(marg.covariance()))))
    np.testing.assert_allclose(np.mean(x_t, 0), marg.mean(), atol=0.02 * scale)
    np.testing.assert_allclose(np.cov(np.asarray(x_t).T), marg.covariance(), atol=0.03 * scale**2)
    # likelihood of the draws under the exact marginal beats a moment-matched Gaussian
    gauss = stats.multivariate_normal(np.asarray(marg.mean()), np.asarray(marg.covariance()))
    assert float(np.mean(marg.log_prob(x_t))) >= float(np.mean(gauss.logpdf(np.asarray(x_t)))) - 1e-3


def test_per_example_times_match_scalar_marginals(process, mixture_2d):
    x = jax.random.normal(jax.random.PRNGKey(4), (3, 2))
    t = jnp.array([0.1, 0.4, 0.8])
    lp = mixture_2d.marginal_log_prob(process, x, t)
    sc = mixture_2d.marginal_score(process, x, t)
    for i in range(3):
        marg = mixture_2d.marginal(process, t[i])
        np.testing.assert_allclose(lp[i], marg.log_prob(x[i]), rtol=1e-12)
        np.testing.assert_allclose(sc[i], marg.score(x[i]), rtol=1e-12)


def test_posterior_mean_is_tweedie(process, mixture_2d):
    """E[x0 | x_t] = (x_t + σ² ∇log p_t(x_t)) / α (Tweedie), against the direct mixture posterior."""
    t = jnp.array([0.05, 0.3, 0.6, 0.9])
    x_t = 1.5 * jax.random.normal(jax.random.PRNGKey(5), (4, 2))
    posterior = mixture_2d.posterior_mean(process, x_t, t)
    tweedie = jaxdiff.tweedie_denoise(process, x_t, t, mixture_2d.marginal_score(process, x_t, t))
    np.testing.assert_allclose(posterior, tweedie, rtol=1e-9, atol=1e-9)


def test_tweedie_lecture_form(mixture_1d):
    """The notes' form: Y = X + δZ, E[X | Y=y] = y + δ² ∇log p_Y(y) — Monte Carlo posterior mean."""
    delta = 0.4
    key_x, key_z = jax.random.split(jax.random.PRNGKey(6))
    x = mixture_1d.sample(key_x, 400000)
    y = x + delta * jax.random.normal(key_z, x.shape)
    ve = jaxdiff.VESDE(sigma_min=0.1, sigma_max=10.0)
    t = float(np.log(delta / 0.1) / np.log(100.0))  # σ_VE(t) = δ
    np.testing.assert_allclose(float(ve.marginal_std(t)), delta, rtol=1e-12)
    y_np, x_np = np.asarray(y[:, 0]), np.asarray(x[:, 0])
    marginal = mixture_1d.marginal(ve, t)
    right, wrong = [], []
    for centre in (-1.5, -0.3, 0.4, 1.1, 2.0):
        sel = np.abs(y_np - centre) < 0.05  # a narrow bin: E[X | Y ∈ bin] ≈ E[X | Y = mean y in bin]
        y_mean = jnp.array([[y_np[sel].mean()]])
        score = float(marginal.score(y_mean)[0, 0])
        right.append(abs(x_np[sel].mean() - (float(y_mean[0, 0]) + delta**2 * score)))
        wrong.append(abs(x_np[sel].mean() - (float(y_mean[0, 0]) + delta * score)))
    assert max(right) < 0.03, right
    assert max(wrong) > 0.1, wrong  # a wrong power of δ is caught


def test_constructors():
    ring = jaxdiff.GaussianMixture.ring(8, radius=4.0, std=0.5)
    assert ring.means.shape == (8, 2)
    np.testing.assert_allclose(np.linalg.norm(np.asarray(ring.means), axis=-1), 4.0)
    g = jaxdiff.GaussianMixture.gaussian([1.0, 2.0], 0.5)
    np.testing.assert_allclose(g.covariance(), np.diag([0.25, 0.25]), atol=1e-15)


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        (dict(weights=[0.5, 0.4], means=[[0.0], [1.0]], stds=[[1.0], [1.0]]), "weights must sum to 1"),
        (dict(weights=[1.2, -0.2], means=[[0.0], [1.0]], stds=[[1.0], [1.0]]), "weights must be finite and >= 0"),
        (dict(weights=[0.5, 0.5], means=[[0.0], [1.0]], stds=[[1.0], [-1.0]]), "stds must be finite and > 0"),
        (dict(weights=[0.5, 0.5], means=[0.0, 1.0], stds=[1.0, 1.0]), "means must have shape (components, dim)"),
        (dict(weights=[1.0], means=[[0.0], [1.0]], stds=[[1.0], [1.0]]), "weights must have shape"),
        (dict(weights=[0.5, 0.5], means=[[0.0], [1.0]], stds=[[1.0, 1.0]]), "stds must have shape"),
    ],
)
def test_bad_input(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        jaxdiff.GaussianMixture(**kwargs)


def test_point_shape_checked(mixture_2d):
    with pytest.raises(ValueError, match=r"x must have shape \(\.\.\., 2\)"):
        mixture_2d.log_prob(jnp.ones((4, 3)))
    with pytest.raises(ValueError, match="t must be a scalar"):
        mixture_2d.marginal(jaxdiff.VPSDE(), jnp.array([0.1, 0.2]))
