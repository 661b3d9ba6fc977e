"""Class conditions and classifier-free guidance against closed forms.

A Gaussian mixture whose components are the classes has exact conditional scores (a component's marginal score)
and an exact unconditional one, so the guided score ``(1 + w) ∇log p_t(x|c) − w ∇log p_t(x)`` is known exactly:
every sampler run with the exact model must draw component ``c`` at ``w = 0`` and reach the accurately solved
guided ODE's endpoint at ``w > 0``; guiding any prediction kind and converting must give the same samples; the
job's label dropout is per example; a conditional network makes both branches in one batched call.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdiff
from jaxdiff.distributions import GaussianMixture
from jaxdiff.guidance import Guided, condition_model, drop_labels, guided_combination
from jaxdiff.parameterization import Direct, FunctionModel, ScoreModel, convert
from jaxdiff.sampling.api import TRACES

MIX = GaussianMixture(jnp.array([0.3, 0.5, 0.2]), jnp.array([[-2.0, 0.5], [1.5, 1.0], [0.5, -2.0]]),
                      jnp.array([[0.30, 0.50], [0.60, 0.20], [0.25, 0.25]]))
SDE = jaxdiff.VPSDE()


def exact_score(params, x, t, cond):
    """``f(params, x, t, cond)``: the component ``cond``'s marginal score, or the mixture's for ``cond=None``."""
    return MIX.marginal_score(SDE, x, t) if cond is None else MIX.conditional_score(SDE, x, t, cond)


def guided_exact(x, t, cond, w):
    return (1 + w) * MIX.conditional_score(SDE, x, t, cond) - w * MIX.marginal_score(SDE, x, t)


def test_conditional_score_is_the_components_marginal_score():
    x = jax.random.normal(jax.random.key(0), (6, 2))
    t = jnp.linspace(0.05, 0.9, 6)
    cond = jnp.array([0, 1, 2, 2, 1, 0])
    got = MIX.conditional_score(SDE, x, t, cond)
    for i in range(6):
        single = GaussianMixture.gaussian(MIX.means[int(cond[i])], MIX.stds[int(cond[i])])
        np.testing.assert_allclose(got[i], single.marginal_score(SDE, x[i:i + 1], t[i:i + 1])[0], rtol=1e-5)
    # the mixture score is the responsibility-weighted mean of the conditional ones
    resp = jax.nn.softmax(MIX.marginal(SDE, 0.3).component_log_probs(x), axis=-1)
    per = jnp.stack([MIX.conditional_score(SDE, x, 0.3, k) for k in range(3)], axis=-1)
    np.testing.assert_allclose(jnp.sum(per * resp[:, None, :], -1), MIX.marginal_score(SDE, x, 0.3), rtol=1e-4,
                               atol=1e-5)
    with pytest.raises(ValueError, match=r"cond must lie in \[0, 3\)"):
        MIX.conditional_score(SDE, x, 0.3, 3)


def test_guided_model_predicts_the_guided_score_in_every_kind():
    x = jax.random.normal(jax.random.key(1), (5, 2))
    t = jnp.full((5,), 0.4)
    cond = jnp.array([0, 1, 2, 0, 1])
    model = condition_model(FunctionModel(exact_score, kind="score", takes_cond=True), cond, 2.5, batch=5)
    assert isinstance(model, Guided)
    expected = guided_exact(x, t, cond, 2.5)
    np.testing.assert_allclose(model.score(SDE, x, t), expected, rtol=1e-5, atol=1e-6)
    for kind in ("eps", "x0", "v", "velocity"):  # the guided score converted = the guided kind (affine maps)
        np.testing.assert_allclose(model.predict(SDE, x, t, kind), convert(SDE, x, t, expected, source="score",
                                                                           target=kind), rtol=1e-4, atol=1e-5)


SAMPLERS_W0 = [("ode_heun", 40), ("dpmpp_2m", 25), ("exp_abm", 15), ("ddim", 250), ("euler_maruyama", 200),
               ("pc", 200), ("ode_adaptive", None), ("edm_heun", 40), ("ode_euler", 200), ("ode_midpoint", 60),
               ("dpmpp_3m", 25), ("sde", None), ("ddpm", 250), ("langevin", None), ("annealed_langevin", None)]


def test_the_w0_check_covers_every_registered_sampler():
    assert sorted(name for name, _ in SAMPLERS_W0) == sorted(jaxdiff.samplers())


@pytest.mark.parametrize("sampler,steps", SAMPLERS_W0)
def test_every_sampler_with_w0_draws_the_class_component(sampler, steps):
    """w = 0 is the conditional model: class 1's samples have component 1's mean and std (2000 draws: the
    mean's standard error is ≤ 0.014, a wrong class is ≥ 2 away, the unconditional law's std is ≥ 1.4)."""
    kw = {} if steps is None else {"steps": steps}
    x = jaxdiff.sample(jax.random.key(2), None, SDE, shape=(2000, 2), sampler=sampler, score_fn=exact_score,
                       cond=1, guidance=0.0, **kw)
    np.testing.assert_allclose(np.mean(x, 0), MIX.means[1], atol=0.06)
    np.testing.assert_allclose(np.std(x, 0), MIX.stds[1], rtol=0.1)


def _accurate_guided_endpoint(x_init, cond, w):
    """The guided probability-flow ODE from t = 1 to sampling_eps, solved tightly, then a Tweedie step."""
    return jaxdiff.sample(jax.random.key(0), None, SDE, x_init=x_init, sampler="ode_adaptive", rtol=1e-7, atol=1e-7,
                          score_fn=exact_score, cond=cond, guidance=w, t_end=0.0)


def test_guided_samplers_reach_the_accurate_guided_ode_endpoint():
    x_init = jax.random.normal(jax.random.key(3), (256, 2))
    cond = jnp.arange(256) % 3
    w = 2.0
    reference = _accurate_guided_endpoint(x_init, cond, w)
    unguided = _accurate_guided_endpoint(x_init, cond, 0.0)
    gap = float(jnp.sqrt(jnp.mean(jnp.sum((reference - unguided) ** 2, -1))))
    assert gap > 0.05  # guidance moves the endpoint: the check below can tell w = 2 from w = 0
    for sampler, steps in (("ode_heun", 100), ("dpmpp_2m", 100), ("exp_abm", 60), ("ode_euler", 400)):
        x = jaxdiff.sample(jax.random.key(0), None, SDE, x_init=x_init, sampler=sampler, steps=steps, t_end=0.0,
                           score_fn=exact_score, cond=cond, guidance=w)
        err = float(jnp.sqrt(jnp.mean(jnp.sum((x - reference) ** 2, -1))))
        assert err < 0.1 * gap, (sampler, err, gap)
    # at w > 0 a class's samples concentrate: the guided law of class 0 is tighter than the component
    x = jaxdiff.sample(jax.random.key(4), None, SDE, shape=(2000, 2), sampler="dpmpp_2m", steps=40,
                       score_fn=exact_score, cond=0, guidance=3.0)
    assert np.all(np.std(x, 0) < 0.95 * np.asarray(MIX.stds[0]))


def test_guidance_commutes_with_the_conversions():
    """Guided ε, x₀, v, score and velocity models (each branch an exact prediction of that kind) give the same
    samples: guidance acts on the model, and every conversion is affine in the prediction."""
    def of_kind(kind):
        def fn(params, x, t, cond):
            return convert(SDE, x, t, exact_score(params, x, t, cond), source="score", target=kind)
        return fn

    x_init = jax.random.normal(jax.random.key(5), (128, 2))
    cond = jnp.arange(128) % 3
    outs = {}
    for kind in ("score", "eps", "x0", "v", "velocity"):
        model = FunctionModel(of_kind(kind), kind=kind, takes_cond=True)
        outs[kind] = jaxdiff.sample(jax.random.key(0), model, SDE, x_init=x_init, sampler="ddim", steps=20,
                                    cond=cond, guidance=1.5)
    for kind, x in outs.items():
        np.testing.assert_allclose(x, outs["score"], rtol=1e-3, atol=1e-3, err_msg=kind)


def test_flow_guidance_with_a_velocity_fn():
    """On a linear interpolant from N(0, I) the exact conditional velocity (one component as the target) at w = 0
    carries the source to that component; the guided velocity goes through the same samplers."""
    path = jaxdiff.LinearInterpolant()
    source = GaussianMixture.gaussian(jnp.zeros(2), jnp.ones(2))
    components = [GaussianMixture.gaussian(MIX.means[k], MIX.stds[k]) for k in range(3)]

    def velocity_fn(params, x, t, cond):
        if cond is None:
            return source.interpolant_velocity(MIX, path, x, t)
        per = jnp.stack([source.interpolant_velocity(c, path, x, t) for c in components])  # [K, B, D]
        return jnp.take_along_axis(per, cond[None, :, None], axis=0)[0]

    x = jaxdiff.sample(jax.random.key(6), None, path, shape=(2000, 2), sampler="ode_heun", steps=30,
                       velocity_fn=velocity_fn, cond=2, guidance=0.0)
    np.testing.assert_allclose(np.mean(x, 0), MIX.means[2], atol=0.05)
    np.testing.assert_allclose(np.std(x, 0), MIX.stds[2], rtol=0.1)
    guided = jaxdiff.sample(jax.random.key(6), None, path, shape=(2000, 2), sampler="ode_heun", steps=30,
                            velocity_fn=velocity_fn, cond=2, guidance=2.0)
    assert np.all(np.isfinite(guided)) and np.linalg.norm(np.mean(guided, 0) - MIX.means[2]) < 0.5


def test_a_guided_bridge_moves_by_the_guided_drift():
    """A bridge whose forward drift is a constant ``a_c`` per class (backward ``−a_c``: velocity ``a_c``, score 0):
    translating 0 along ``dX = f dt + σ dW`` over [0, 1] ends at mean ``(1 + w) a_c − w a_∅``, std ``σ``."""
    from jaxdiff.parameterization import BridgeModel

    class ClassDrift:
        num_classes = 2

        def __call__(self, params, x, t, cond=None):
            labels = jnp.full((x.shape[0],), 2) if cond is None else cond
            return jnp.broadcast_to(params[labels], x.shape)

        def __hash__(self):
            return 2

        def __eq__(self, other):
            return isinstance(other, ClassDrift)

    a = jnp.array([[1.0, 0.0], [0.0, 2.0], [0.5, 0.5]])  # classes 0, 1 and the null class
    model = BridgeModel(ClassDrift(), {"forward": a, "backward": -a}, sigma=0.5)
    x0 = jnp.zeros((4000, 2))
    x1 = jaxdiff.translate(jax.random.key(9), model, jaxdiff.LinearInterpolant(), x0, sampler="euler_maruyama",
                           steps=20, cond=jnp.ones(4000, jnp.int32), guidance=2.0)
    np.testing.assert_allclose(np.mean(x1, 0), 3.0 * a[1] - 2.0 * a[2], atol=0.03)
    np.testing.assert_allclose(np.std(x1, 0), 0.5, rtol=0.05)


class CountingApply:
    """A conditional linear 'network' ``out = x·a + emb[cond]``; records the batch of every call (trace time)."""

    num_classes = 3

    def __init__(self):
        self.batches = []

    def __call__(self, params, x, noise, cond=None):
        self.batches.append(x.shape[0])
        labels = jnp.full((x.shape[0],), self.num_classes) if cond is None else cond
        return x * params["a"] + params["emb"][labels][:, None] * noise[:, None]

    def __hash__(self):
        return 1

    def __eq__(self, other):
        return isinstance(other, CountingApply)


def test_a_network_model_guides_in_one_batched_call_and_compiles_once():
    apply_fn = CountingApply()
    params = {"a": jnp.array(0.7), "emb": jnp.array([0.1, -0.4, 0.9, 0.25])}
    model = ScoreModel(apply_fn, params, Direct("eps"))
    x = jax.random.normal(jax.random.key(7), (4, 2))
    t = jnp.full((4,), 0.5)
    cond = jnp.array([0, 2, 1, 2])
    guided = condition_model(model, cond, 1.5, batch=4)
    eps = guided.predict(SDE, x, t, "eps")
    assert apply_fn.batches == [8]  # both branches in one call of twice the batch
    manual = guided_combination(model.with_cond(cond).predict(SDE, x, t, "eps"),
                                model.with_cond(None).predict(SDE, x, t, "eps"), 1.5)
    np.testing.assert_allclose(eps, manual, rtol=1e-6)
    # new labels and a new weight are leaves: the sampler compiles once
    before = TRACES["sample"]
    for w, c in ((1.0, 0), (3.0, 2)):
        jaxdiff.sample(jax.random.key(0), model, SDE, shape=(4, 2), sampler="ddim", steps=3, cond=c, guidance=w)
    assert TRACES["sample"] - before == 1


def test_autoguidance_uses_the_guide_model_as_the_reference_branch():
    weak = FunctionModel(lambda p, x, t, c: 0.5 * exact_score(p, x, t, c), kind="score", takes_cond=True)
    strong = FunctionModel(exact_score, kind="score", takes_cond=True)
    x = jax.random.normal(jax.random.key(8), (3, 2))
    t = jnp.full((3,), 0.3)
    cond = jnp.array([0, 1, 2])
    model = condition_model(strong, cond, 2.0, weak, batch=3)
    expected = 3.0 * MIX.conditional_score(SDE, x, t, cond) - 2.0 * 0.5 * MIX.conditional_score(SDE, x, t, cond)
    np.testing.assert_allclose(model.score(SDE, x, t), expected, rtol=1e-5)
    out = jaxdiff.sample(jax.random.key(0), strong, SDE, shape=(3, 2), sampler="ddim", steps=4, cond=cond,
                         guidance=2.0, guide_model=weak)
    assert out.shape == (3, 2)


def test_label_dropout_is_per_example():
    labels = jnp.arange(4096) % 10
    dropped = drop_labels(jax.random.key(0), labels, 0.1, 10)
    is_null = np.asarray(dropped == 10)
    assert 0.08 < is_null.mean() < 0.12
    np.testing.assert_array_equal(np.asarray(dropped)[~is_null], np.asarray(labels)[~is_null])
    # within each batch of 64 some labels are dropped and most are kept (not all-or-nothing per batch)
    per_batch = is_null.reshape(64, 64).sum(1)
    assert np.all(per_batch < 64) and np.count_nonzero(per_batch) > 48


def test_bad_conditions_are_refused_before_compiling():
    model = FunctionModel(exact_score, kind="score", takes_cond=True)
    plain = FunctionModel(lambda p, x, t: MIX.marginal_score(SDE, x, t), kind="score")
    with pytest.raises(ValueError, match="unconditional"):
        jaxdiff.sample(jax.random.key(0), plain, SDE, shape=(2, 2), cond=1)
    with pytest.raises(ValueError, match="need class labels"):
        jaxdiff.sample(jax.random.key(0), model, SDE, shape=(2, 2), guidance=1.0)
    with pytest.raises(ValueError, match=r"shape \[batch\] = \(2,\)"):
        jaxdiff.sample(jax.random.key(0), model, SDE, shape=(2, 2), cond=jnp.array([0, 1, 2]))
    with pytest.raises(TypeError, match="integer class labels"):
        jaxdiff.sample(jax.random.key(0), model, SDE, shape=(2, 2), cond=jnp.array([0.5, 1.0]))
    with pytest.raises(ValueError, match="guidance must be a finite number"):
        jaxdiff.sample(jax.random.key(0), model, SDE, shape=(2, 2), cond=0, guidance=float("nan"))
    net = ScoreModel(CountingApply(), {"a": 1.0, "emb": jnp.zeros(4)}, Direct("eps"))
    with pytest.raises(ValueError, match=r"outside \[0, 3\)"):
        jaxdiff.sample(jax.random.key(0), net, SDE, shape=(2, 2), cond=3)


def test_conditional_log_likelihood_is_the_components_log_density():
    """``log_likelihood(..., cond=c)`` with the exact conditional score is ``log N(x; μ_c, s_c²)`` (the PF-ODE of one
    component), and without ``cond`` the mixture's ``log p(x)``."""
    cond = jnp.arange(8) % 3
    means, stds = MIX.means[cond], MIX.stds[cond]
    x = means + stds * jax.random.normal(jax.random.key(10), (8, 2))  # each point drawn from its class
    logp = jaxdiff.log_likelihood(jax.random.key(0), None, SDE, x, score_fn=exact_score, cond=cond,
                                  divergence="exact", rtol=1e-6, atol=1e-6)
    expected = jnp.sum(-0.5 * ((x - means) / stds) ** 2 - jnp.log(stds) - 0.5 * jnp.log(2 * jnp.pi), -1)
    np.testing.assert_allclose(logp, expected, atol=0.03)  # (the prior's mismatch at t_max, float32 solves)
    assert np.all(np.abs(np.asarray(expected - MIX.log_prob(x))) > 0.3)  # the unconditional density is far off


def test_networks_embed_the_label_with_a_null_class():
    from jaxdiff.models import DDPM, NCSNpp, ScoreMLP

    x = jax.random.normal(jax.random.key(11), (3, 2))
    noise = jnp.full((3,), 0.5)
    mlp = ScoreMLP(hidden=(16,), embedding_dim=8, init_scale=1.0, num_classes=4)
    params = mlp.init(jax.random.key(0), x, noise)["params"]
    assert params["ClassEmbedding_0"]["Embed_0"]["embedding"].shape == (5, 8)  # 4 classes + the null row
    out = {c: mlp.apply({"params": params}, x, noise, cond=jnp.full((3,), c)) for c in range(5)}
    assert not np.allclose(out[0], out[1])  # the label changes the output
    np.testing.assert_array_equal(mlp.apply({"params": params}, x, noise), out[4])  # cond=None is the null class
    with pytest.raises(ValueError, match="unconditional"):
        ScoreMLP(hidden=(16,), embedding_dim=8).init(jax.random.key(0), x, noise, cond=jnp.zeros(3, jnp.int32))
    # the U-Nets add the embedding to their 4·nf time embedding; unconditional parameter counts are unchanged
    images = jnp.zeros((1, 8, 8, 1))

    def count(net):
        shapes = jax.eval_shape(lambda: net.init(jax.random.key(0), images, jnp.ones((1,))))["params"]
        return sum(int(np.prod(a.shape)) for a in jax.tree_util.tree_leaves(shapes))

    for cls in (NCSNpp, DDPM):
        kw = dict(nf=8, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,))
        assert count(cls(num_classes=10, **kw)) - count(cls(**kw)) == 11 * 4 * 8
