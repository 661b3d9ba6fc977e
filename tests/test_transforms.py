"""Every public function works under jit, vmap and grad; processes are pytrees; no retracing."""

import jax
import jax.numpy as jnp
import numpy as np

import jaxdiff

T = jnp.array([0.1, 0.5, 0.9])


def test_process_methods_under_jit_vmap_grad(process):
    x = jnp.ones((3, 2))

    @jax.jit
    def everything(sde, x, t, key):
        x_t, eps = sde.marginal_sample(key, x, t)
        score = jaxdiff.conditional_score(sde, x_t, x, t)
        return (
            sde.marginal_mean_coeff(t),
            sde.marginal_std(t),
            sde.drift(x, t),
            sde.diffusion(t),
            sde.log_snr(t),
            sde.prior_log_prob(x_t),
            jaxdiff.reverse_sde_drift(sde, x_t, t, score),
            jaxdiff.probability_flow_drift(sde, x_t, t, score),
        )

    jitted = everything(process, x, T, jax.random.PRNGKey(0))
    np.testing.assert_allclose(jitted[1], process.marginal_std(T), rtol=1e-12)
    np.testing.assert_allclose(jitted[2], process.drift(x, T), rtol=1e-12)
    # vmap over times of scalar-time methods
    np.testing.assert_allclose(jax.vmap(process.marginal_std)(T), process.marginal_std(T), rtol=1e-12)
    np.testing.assert_allclose(jax.vmap(lambda t: process.drift(x[:1], t))(T)[:, 0], process.drift(x, T), rtol=1e-12)
    # grad in t: dσ/dt from the closed forms matches (½g² + fσ²)/σ
    d_sigma = jax.vmap(jax.grad(process.marginal_std))(T)
    sigma, f, g2 = process.marginal_std(T), process.drift_coeff(T), process.diffusion(T) ** 2
    np.testing.assert_allclose(d_sigma, (0.5 * g2 + f * sigma**2) / sigma, rtol=1e-9)
    # vmap over keys
    keys = jax.random.split(jax.random.PRNGKey(1), 4)
    draws = jax.vmap(lambda k: process.prior_sample(k, (2, 3)))(keys)
    assert draws.shape == (4, 2, 3)


def test_grad_with_respect_to_process_parameters():
    def sigma_at(beta_max):
        return jaxdiff.VPSDE(beta_min=0.1, beta_max=beta_max).marginal_std(0.5)

    # dσ/dβ_max at t = 0.5: σ² = 1 − exp(−(β_min t + ½ t² Δ)), ∂/∂β_max of the exponent is ½t²
    integral = 0.1 * 0.5 + 0.5 * 0.25 * (20.0 - 0.1)
    expected = 0.5 * np.exp(-integral) * 0.5 * 0.25 / np.sqrt(1 - np.exp(-integral))
    np.testing.assert_allclose(jax.grad(sigma_at)(20.0), expected, rtol=1e-9)
    # a process passed through jit keeps its parameters as leaves
    leaves = jax.tree_util.tree_leaves(jaxdiff.VESDE(0.02, 30.0))
    assert [float(v) for v in leaves] == [0.02, 30.0]


def test_mixture_under_transforms(mixture_2d):
    x = jax.random.normal(jax.random.PRNGKey(2), (5, 2))
    sde = jaxdiff.VPSDE()
    np.testing.assert_allclose(jax.jit(mixture_2d.log_prob)(x), mixture_2d.log_prob(x), rtol=1e-12)
    np.testing.assert_allclose(jax.vmap(mixture_2d.log_prob)(x), mixture_2d.log_prob(x), rtol=1e-12)
    np.testing.assert_allclose(jax.vmap(jax.grad(mixture_2d.log_prob))(x), mixture_2d.score(x), rtol=1e-10)
    jitted = jax.jit(lambda m, x, t: m.marginal_score(sde, x, t))(mixture_2d, x, 0.4)
    np.testing.assert_allclose(jitted, mixture_2d.marginal_score(sde, x, 0.4), rtol=1e-12)
    # d/dt of log p_t through the exact marginal
    d_logp = jax.grad(lambda t: mixture_2d.marginal_log_prob(sde, x[:1], t)[0])(0.4)
    assert np.isfinite(float(d_logp))
    posterior = jax.vmap(lambda xi, ti: mixture_2d.posterior_mean(sde, xi[None], ti[None])[0])(x, jnp.linspace(0.1, 0.9, 5))
    assert posterior.shape == (5, 2)
    draws = jax.jit(lambda m, k: m.sample(k, 7))(mixture_2d, jax.random.PRNGKey(3))
    assert draws.shape == (7, 2)


def test_loss_jit_grad_and_no_retrace():
    sde = jaxdiff.VPSDE()

    def apply(params, x, t):
        return x * params["w"] + params["b"] * t[:, None]

    params = {"w": jnp.array(-1.0), "b": jnp.array(0.0)}
    x0 = jax.random.normal(jax.random.PRNGKey(4), (8, 2))
    for loss in (
        jaxdiff.dsm_loss(sde, apply),
        jaxdiff.eps_loss(sde, apply),
        jaxdiff.x0_loss(sde, apply),
        jaxdiff.v_loss(sde, apply),
        jaxdiff.sliced_score_matching_loss(apply, sde=sde),
        jaxdiff.dsm_loss(sde, apply, weighting="likelihood", time_sampling="importance"),
    ):
        traces = []

        @jax.jit
        def step(params, key):
            traces.append(1)  # runs only while tracing
            return jax.value_and_grad(loss)(params, key, x0)

        for i in range(3):
            value, grads = step(params, jax.random.PRNGKey(i))
        assert len(traces) == 1, "a second call must not retrace"
        assert np.isfinite(float(value))
        assert all(np.isfinite(float(g)) for g in jax.tree_util.tree_leaves(grads))
        # vmap over keys
        values = jax.vmap(lambda k: loss(params, k, x0))(jax.random.split(jax.random.PRNGKey(9), 3))
        assert values.shape == (3,)


def test_bisection_inverse_is_differentiable():
    """dt/dλ = −σ²/g² through the bisection inverse (sub-VP, cosine, OU have no closed form)."""
    for sde in (jaxdiff.SubVPSDE(), jaxdiff.CosineVPSDE(), jaxdiff.OUProcess()):
        t = jnp.array(0.37)
        lam = sde.log_snr(t)
        grad = jax.grad(sde.t_from_log_snr)(lam)
        np.testing.assert_allclose(grad, 1.0 / jax.grad(sde.log_snr)(t), rtol=1e-8)


def test_traced_construction():
    sigma = jax.vmap(lambda b: jaxdiff.VPSDE(beta_max=b).marginal_std(0.5))(jnp.array([10.0, 20.0]))
    assert sigma.shape == (2,)
    sigma = jax.vmap(lambda b: jaxdiff.OUProcess(beta=b, t_max=5.0).marginal_std(0.5))(jnp.array([0.5, 1.0]))
    np.testing.assert_allclose(sigma, np.sqrt(2 / (2 * np.array([0.5, 1.0])) * (1 - np.exp(-2 * np.array([0.5, 1.0]) * 0.5))))


def test_float32_pipeline():
    """With float32 data everything stays float32 (x64 enabled in the suite)."""
    sde = jaxdiff.VPSDE()
    x0 = jnp.ones((4, 2), jnp.float32)

    def apply(params, x, t):
        return params * x

    loss = jaxdiff.dsm_loss(sde, apply)
    grad = jax.grad(loss)(jnp.float32(1.0), jax.random.PRNGKey(0), x0)
    assert grad.dtype == jnp.float32
    x_t, _ = sde.marginal_sample(jax.random.PRNGKey(1), x0, jnp.array([0.1, 0.2, 0.3, 0.4], jnp.float32))
    assert x_t.dtype == jnp.float32
    conv = jaxdiff.convert(sde, x_t, 0.3, x_t, source="eps", target="x0")
    assert conv.dtype == jnp.float32
    # the network's noise conditioning follows the data's dtype too
    seen = []

    def net(params, x, noise):
        seen.append(noise.dtype)
        return params * x

    jaxdiff.dsm_loss(sde, net)(jnp.float32(1.0), jax.random.PRNGKey(0), x0)
    jaxdiff.x0_loss(sde, net, parameterization=jaxdiff.EDMPreconditioning())(jnp.float32(1.0), jax.random.PRNGKey(0), x0)
    jaxdiff.ddpm_loss(jaxdiff.DDPMSchedule(), net)(jnp.float32(1.0), jax.random.PRNGKey(0), x0)
    assert seen == [jnp.float32] * 3
    # the cosine schedule's σ keeps full relative precision at small t in float32
    cos = jaxdiff.CosineVPSDE()
    small = jnp.array([1e-5, 1e-4, 1e-3], jnp.float32)
    np.testing.assert_allclose(cos.marginal_std(small), cos.marginal_std(small.astype(jnp.float64)), rtol=1e-5)
