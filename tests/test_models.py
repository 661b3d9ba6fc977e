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
    """The Gaussian Fourier projection's W gets no gradient (score_sde keeps it fixed); the smallest NCSN++ with that
    embedding, compiled (one program instead of hundreds of op-by-op ones)."""
    model = NCSNpp(nf=8, ch_mult=(1,), num_res_blocks=1, attn_resolutions=(), embedding_type="fourier", centered=False)
    x = jnp.ones((2, 4, 4, 1))
    t = jnp.array([0.5, 2.0])
    params = jax.jit(model.init)(jax.random.PRNGKey(0), x, t)["params"]
    grads = jax.jit(jax.grad(lambda p: jnp.sum(model.apply({"params": p}, x, t) ** 2)))(params)
    assert float(jnp.max(jnp.abs(grads["_TimeEmbedding_0"]["Dense_0"]["kernel"]))) > 0.0  # the rest does learn
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


def _small_unet(cls, **kw):
    base = dict(nf=16, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,), dropout=0.0)
    if cls is NCSNpp:
        base["init_scale"] = 1.0  # a nonzero last layer: outputs that a wrong precision or remat would change
    return cls(**base, **kw)


@pytest.mark.parametrize("cls", [NCSNpp, DDPM])
def test_remat_keeps_parameters_and_gradients_and_stores_fewer_activations(cls):
    """``remat=True``: the same parameter tree and values, gradients equal to the plain network's, and the
    activations kept for the backward pass (JAX's saved residuals) at least halved."""
    from jax._src.ad_checkpoint import saved_residuals

    x = jax.random.normal(jax.random.key(0), (4, 8, 8, 3))
    noise = jnp.linspace(0.1, 0.9, 4)
    plain, remat = _small_unet(cls), _small_unet(cls, remat=True)
    params = jax.jit(plain.init)(jax.random.key(1), x, noise)["params"]
    assert jax.tree_util.tree_structure(jax.eval_shape(remat.init, jax.random.key(1), x, noise)["params"]) == \
        jax.tree_util.tree_structure(params)

    def loss(net):
        return lambda p: jnp.sum(net.apply({"params": p}, x, noise, train=True, rngs={"dropout": jax.random.key(2)}) ** 2)

    g_plain, g_remat = jax.jit(jax.grad(loss(plain)))(params), jax.jit(jax.grad(loss(remat)))(params)
    for a, b in zip(jax.tree_util.tree_leaves(g_plain), jax.tree_util.tree_leaves(g_remat)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)

    def saved_bytes(net):
        return sum(int(np.prod(a.shape)) * a.dtype.itemsize for a, _ in saved_residuals(loss(net), params))

    assert saved_bytes(remat) < 0.5 * saved_bytes(plain)


def test_bfloat16_compute_keeps_float32_parameters_and_loss_close():
    """``dtype=bfloat16``: parameters (and their gradients) stay float32, the layers compute in bfloat16 (the output
    differs from float32 by bfloat16 rounding, not more), and a DSM loss on the same batch agrees to 1 %."""
    x = jax.random.normal(jax.random.key(3), (4, 8, 8, 3), jnp.float32)
    noise = jnp.linspace(1.0, 900.0, 4, dtype=jnp.float32)
    f32, bf16 = _small_unet(NCSNpp), _small_unet(NCSNpp, dtype=jnp.bfloat16)
    params = jax.jit(f32.init)(jax.random.key(4), x, noise)["params"]
    dtypes = {a.dtype for a in jax.tree_util.tree_leaves(jax.eval_shape(bf16.init, jax.random.key(4), x, noise)["params"])}
    assert jnp.bfloat16 not in dtypes and dtypes == {a.dtype for a in jax.tree_util.tree_leaves(params)}
    out32, out16 = (jax.jit(net.apply)({"params": params}, x, noise) for net in (f32, bf16))
    assert out16.dtype == jnp.float32  # returned in the input's dtype
    rel = float(jnp.linalg.norm(out16 - out32) / jnp.linalg.norm(out32))
    assert 1e-4 < rel < 0.05, rel  # bfloat16 arithmetic happened, and only rounding-sized differences
    sde = jaxdiff.VPSDE()
    apply32 = lambda p, y, n: f32.apply({"params": p}, y, n)  # noqa: E731
    apply16 = lambda p, y, n: bf16.apply({"params": p}, y, n)  # noqa: E731
    losses = [jax.jit(jaxdiff.dsm_loss(sde, fn, reduce="mean"))(params, jax.random.key(5), x)
              for fn in (apply32, apply16)]
    assert abs(float(losses[1]) / float(losses[0]) - 1.0) < 0.01
    grads = jax.eval_shape(jax.grad(jaxdiff.dsm_loss(sde, apply16, reduce="mean")), params, jax.random.key(5), x)
    assert all(g.dtype == p.dtype for g, p in zip(jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(params)))
