"""Score networks: score_sde's exact parameter counts (jax.eval_shape, no compile), shapes on small
configs, FIR resampling, and the networks driven through a parameterization and a loss."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdiff
from jaxdiff.models import DDPM, NCSNpp, ScoreMLP
from jaxdiff.models.layers import fir_downsample, fir_upsample, naive_downsample, naive_upsample


def _param_count(model, shape, noise=1.0):
    x = jnp.zeros(shape)
    t = jnp.full((shape[0],), noise)
    variables = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x, t))
    return sum(int(np.prod(v.shape)) for v in jax.tree_util.tree_leaves(variables["params"]))


@pytest.mark.parametrize(
    "model, expected",
    [
        (NCSNpp(), 61_804_419),  # DDPM++ continuous (configs/vp/cifar10_ddpmpp_continuous.py)
        (NCSNpp(embedding_type="fourier", progressive_input="residual", fir=True, centered=False), 62_758_915),
        (DDPM(), 35_218_947),  # DDPM continuous (configs/vp/ddpm/cifar10_continuous.py)
    ],
    ids=["ddpm++", "ncsn++", "ddpm"],
)
def test_score_sde_parameter_counts(model, expected):
    assert _param_count(model, (1, 32, 32, 3)) == expected


def test_fourier_embedding_is_frozen():
    model = NCSNpp(nf=16, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,), embedding_type="fourier",
                   progressive_input="residual", fir=True, centered=False)
    x = jnp.ones((2, 8, 8, 1))
    t = jnp.array([0.5, 2.0])
    params = model.init(jax.random.PRNGKey(0), x, t)["params"]
    grads = jax.grad(lambda p: jnp.sum(model.apply({"params": p}, x, t) ** 2))(params)
    w_grad = grads["_TimeEmbedding_0"]["GaussianFourierProjection_0"]["W"]
    assert float(jnp.max(jnp.abs(w_grad))) == 0.0


@pytest.mark.parametrize("kind", ["ddpm++", "ncsn++", "ddpm"])
def test_small_networks_forward(kind):
    if kind == "ddpm":
        model = DDPM(nf=16, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,))
    else:
        extra = dict(embedding_type="fourier", progressive_input="residual", fir=True, centered=False) if kind == "ncsn++" else {}
        model = NCSNpp(nf=16, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,), init_scale=1.0, **extra)
    x = jax.random.normal(jax.random.PRNGKey(0), (3, 8, 8, 2))
    t = jnp.array([0.1, 0.5, 0.9])
    variables = model.init(jax.random.PRNGKey(1), x, t)
    out = model.apply(variables, x, t)
    assert out.shape == x.shape and bool(jnp.all(jnp.isfinite(out)))
    # dropout is active only in training and then needs an rng
    out_train = model.apply(variables, x, t, train=True, rngs={"dropout": jax.random.PRNGKey(2)})
    assert out_train.shape == x.shape


def test_fir_resampling():
    x = jnp.ones((1, 8, 8, 3))
    np.testing.assert_allclose(fir_downsample(x)[:, 1:-1, 1:-1], 1.0, rtol=1e-6)  # interior of a constant stays constant
    assert fir_downsample(x).shape == (1, 4, 4, 3) and fir_upsample(x).shape == (1, 16, 16, 3)
    np.testing.assert_allclose(fir_upsample(x)[:, 2:-2, 2:-2], 1.0, rtol=1e-6)
    ramp = jnp.arange(8.0)[None, :, None, None] * jnp.ones((1, 8, 8, 1))
    np.testing.assert_allclose(naive_downsample(naive_upsample(ramp)), ramp)


def test_mlp_in_a_loss_and_sampler():
    """The MLP, wrapped by a parameterization, trains a few Adam steps with the DSM loss and samples."""
    import optax

    sde = jaxdiff.VPSDE()
    mix = jaxdiff.GaussianMixture.ring(4, radius=2.0, std=0.3)
    net = ScoreMLP(hidden=(64, 64))
    x0 = mix.sample(jax.random.PRNGKey(0), 256)
    params = net.init(jax.random.PRNGKey(1), x0, jnp.ones((256,)))["params"]
    apply = lambda p, x, t: net.apply({"params": p}, x, t)  # noqa: E731
    loss = jaxdiff.eps_loss(sde, apply, parameterization=jaxdiff.Direct("eps", noise_input="t_scaled"), reduce="mean")
    opt = optax.adam(1e-3)
    state = opt.init(params)

    @jax.jit
    def step(params, state, key):
        value, grads = jax.value_and_grad(loss)(params, key, x0)
        updates, state = opt.update(grads, state)
        return optax.apply_updates(params, updates), state, value

    first = None
    for i in range(200):
        params, state, value = step(params, state, jax.random.PRNGKey(i))
        first = value if first is None else first
    assert float(value) < 0.8 * float(first)
    model = jaxdiff.ScoreModel(apply, params, jaxdiff.Direct("eps", noise_input="t_scaled"))
    samples = jaxdiff.sample(jax.random.PRNGKey(3), model, sde, shape=(64, 2), sampler="exp_abm", steps=10, t_end=0.0)
    assert samples.shape == (64, 2) and bool(jnp.all(jnp.isfinite(samples)))
