"""score ↔ ε ↔ x0 ↔ v ↔ velocity conversions, and the network preconditionings."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdiff
from jaxdiff.parameterization import PREDICTION_KINDS, error_scale_to_score, from_x0_eps

T = jnp.array([0.05, 0.3, 0.6, 0.9])


def test_conversions_are_exact_inverses(process):
    x_t = jax.random.normal(jax.random.PRNGKey(0), (4, 3))
    value = jax.random.normal(jax.random.PRNGKey(1), (4, 3))
    for source, target in itertools.permutations(PREDICTION_KINDS, 2):
        there = jaxdiff.convert(process, x_t, T, value, source=source, target=target)
        back = jaxdiff.convert(process, x_t, T, there, source=target, target=source)
        np.testing.assert_allclose(back, value, rtol=1e-8, atol=1e-8, err_msg=f"{source}->{target}")


def test_conversions_from_true_pair(process):
    """Each kind computed from (x0, ε) converts to the score −ε/σ and the noise ε."""
    x0 = jax.random.normal(jax.random.PRNGKey(2), (4, 3))
    x_t, eps = process.marginal_sample(jax.random.PRNGKey(3), x0, T)
    sigma = process.marginal_std(T)[:, None]
    for kind in PREDICTION_KINDS:
        value = from_x0_eps(process, x_t, T, x0, eps, kind)
        np.testing.assert_allclose(jaxdiff.convert(process, x_t, T, value, source=kind, target="eps"), eps, rtol=1e-8, atol=1e-8)
        np.testing.assert_allclose(jaxdiff.convert(process, x_t, T, value, source=kind, target="x0"), x0, rtol=1e-7, atol=1e-7)
        np.testing.assert_allclose(
            jaxdiff.convert(process, x_t, T, value, source=kind, target="score"), -eps / sigma, rtol=1e-8, atol=1e-8
        )
    np.testing.assert_allclose(
        jaxdiff.conditional_score(process, x_t, x0, T), -eps / sigma, rtol=1e-9, atol=1e-9
    )


def test_v_matches_salimans_ho_on_vp():
    vp = jaxdiff.VPSDE()
    x0 = jax.random.normal(jax.random.PRNGKey(4), (4, 2))
    x_t, eps = vp.marginal_sample(jax.random.PRNGKey(5), x0, T)
    alpha, sigma = vp.marginal_mean_coeff(T)[:, None], vp.marginal_std(T)[:, None]
    v = alpha * eps - sigma * x0
    np.testing.assert_allclose(from_x0_eps(vp, x_t, T, x0, eps, "v"), v)
    # VP identities: x0 = α x_t − σ v, ε = σ x_t + α v
    np.testing.assert_allclose(jaxdiff.convert(vp, x_t, T, v, source="v", target="x0"), alpha * x_t - sigma * v, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(jaxdiff.convert(vp, x_t, T, v, source="v", target="eps"), sigma * x_t + alpha * v, rtol=1e-9, atol=1e-12)


def test_marginal_velocity_is_probability_flow(process, mixture_2d):
    """E[α' x0 + σ' ε | x_t] = f x_t − ½ g² ∇log p_t(x_t): the velocity kind of the exact posterior
    equals the probability-flow drift of the exact score."""
    x_t = 1.3 * jax.random.normal(jax.random.PRNGKey(6), (4, 2))
    x0_hat = mixture_2d.posterior_mean(process, x_t, T)
    velocity = jaxdiff.convert(process, x_t, T, x0_hat, source="x0", target="velocity")
    pf = jaxdiff.probability_flow_drift(process, x_t, T, mixture_2d.marginal_score(process, x_t, T))
    np.testing.assert_allclose(velocity, pf, rtol=1e-8, atol=1e-8)
    # and α', σ' inside it are the derivatives of α and σ
    d_alpha = jax.vmap(jax.grad(lambda s: process.marginal_mean_coeff(s)))(T)
    d_sigma = jax.vmap(jax.grad(lambda s: process.marginal_std(s)))(T)
    x0 = jnp.ones((4, 2))
    eps = jnp.zeros((4, 2))
    np.testing.assert_allclose(from_x0_eps(process, x_t, T, x0, eps, "velocity")[:, 0], d_alpha, rtol=1e-9)
    np.testing.assert_allclose(from_x0_eps(process, x_t, T, eps, x0, "velocity")[:, 0], d_sigma, rtol=1e-9)


@pytest.mark.parametrize("kind", PREDICTION_KINDS)
def test_error_scale(process, kind):
    x_t = jax.random.normal(jax.random.PRNGKey(7), (4, 3))
    a = jax.random.normal(jax.random.PRNGKey(8), (4, 3))
    b = jax.random.normal(jax.random.PRNGKey(9), (4, 3))
    ds = jaxdiff.convert(process, x_t, T, a, source=kind, target="score") - jaxdiff.convert(
        process, x_t, T, b, source=kind, target="score"
    )
    ratio = jnp.linalg.norm(ds, axis=-1) / jnp.linalg.norm(a - b, axis=-1)
    np.testing.assert_allclose(ratio, error_scale_to_score(process, T, kind), rtol=1e-8)


def _linear_net(params, x, noise):
    return params * x + noise[:, None]


def test_direct_parameterization_and_scaling():
    ve = jaxdiff.VESDE()
    x = jnp.ones((4, 2))
    out = jaxdiff.Direct("score", scale_by_sigma=True, noise_input="sigma")(_linear_net, 2.0, ve, x, T)
    sigma = ve.marginal_std(T)[:, None]
    np.testing.assert_allclose(out, (2.0 * x + sigma) / sigma)
    vp = jaxdiff.VPSDE()
    eps_param = jaxdiff.Direct("eps", noise_input="t_scaled")
    np.testing.assert_allclose(eps_param(_linear_net, 0.0, vp, x, T), jnp.broadcast_to(999 * T[:, None], x.shape))
    score = eps_param.score_fn(_linear_net, vp)(0.5, x, T)
    np.testing.assert_allclose(score, -(0.5 * x + 999 * T[:, None]) / vp.marginal_std(T)[:, None])


def test_edm_preconditioning_ve_and_scaled():
    """For VE (α = 1) the EDM coefficients are Table 1 of Karras et al.; for VP, EDM's scaled form."""
    sd = 0.5
    edm = jaxdiff.EDMPreconditioning(sigma_data=sd)
    ve = jaxdiff.VESDE(sigma_min=0.002, sigma_max=80.0)
    x = jax.random.normal(jax.random.PRNGKey(10), (4, 2))
    seen = {}

    def net(params, x_in, c_noise):
        seen["x_in"], seen["c_noise"] = x_in, c_noise
        return params * jnp.ones_like(x_in)

    out = edm(net, 3.0, ve, x, T)
    s = ve.marginal_std(T)[:, None]
    c_skip, c_out, c_in = sd**2 / (s**2 + sd**2), s * sd / jnp.sqrt(s**2 + sd**2), 1 / jnp.sqrt(s**2 + sd**2)
    np.testing.assert_allclose(out, c_skip * x + c_out * 3.0, rtol=1e-12)
    np.testing.assert_allclose(seen["x_in"], c_in * x, rtol=1e-12)
    np.testing.assert_allclose(seen["c_noise"], 0.25 * jnp.log(s[:, 0]), rtol=1e-12)
    # a general linear process: D(x_t) = EDM denoiser of x_t/α at σ̃ = σ/α
    vp = jaxdiff.VPSDE()
    a, sv = vp.marginal_mean_coeff(T)[:, None], vp.marginal_std(T)[:, None]
    st = sv / a
    out = edm(net, 3.0, vp, x, T)
    expected = sd**2 / (st**2 + sd**2) * x / a + st * sd / jnp.sqrt(st**2 + sd**2) * 3.0
    np.testing.assert_allclose(out, expected, rtol=1e-12)
    assert edm.prediction == "x0"


@pytest.mark.parametrize(
    "make, fragment",
    [
        (lambda: jaxdiff.Direct("noise"), "prediction must be one of"),
        (lambda: jaxdiff.Direct("eps", scale_by_sigma=True), "scale_by_sigma applies to prediction='score'"),
        (lambda: jaxdiff.Direct("eps", noise_input="logsnr"), "noise_input must be one of"),
        (lambda: jaxdiff.EDMPreconditioning(sigma_data=0.0), "sigma_data must be finite and > 0"),
        (lambda: jaxdiff.convert(jaxdiff.VPSDE(), jnp.ones((2, 2)), 0.5, jnp.ones((2, 2)), source="eps", target="y"), "target must be one of"),
        (lambda: jaxdiff.convert(jaxdiff.VPSDE(), jnp.ones((2, 2)), 0.5, jnp.ones((2, 3)), source="eps", target="x0"), "same shape"),
    ],
)
def test_bad_input(make, fragment):
    with pytest.raises(ValueError, match=fragment):
        make()
