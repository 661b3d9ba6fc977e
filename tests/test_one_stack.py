"""One stack: interpolants read as processes (FlowProcess), one model wrapper whose conversions round-trip
on every path, every sampler of the registry on a flow, the flow configs' networks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdiff
from jaxdiff import GaussianMixture
from jaxdiff.parameterization import PREDICTION_KINDS, FunctionModel, convert
from jaxdiff.paths import (
    BrownianBridge,
    LinearInterpolant,
    OTPath,
    StochasticInterpolant,
    TrigInterpolant,
    VPInterpolant,
)

PATHS = [LinearInterpolant(0.0), LinearInterpolant(0.5), BrownianBridge(1.0), TrigInterpolant(), OTPath(1e-3),
         VPInterpolant(), StochasticInterpolant("trig", "sqrt_bridge", 0.7)]
PROCESSES = [p.as_process() for p in PATHS] + [jaxdiff.VPSDE(), jaxdiff.SubVPSDE(), jaxdiff.VESDE(0.01, 50.0),
                                                jaxdiff.CosineVPSDE()]


@pytest.fixture(scope="module")
def mixtures():
    with jax.enable_x64(True):
        source = GaussianMixture.gaussian(jnp.zeros(2), jnp.ones(2))
        target = GaussianMixture(jnp.array([0.3, 0.7]), jnp.array([[-1.5, 0.5], [1.0, -0.8]]),
                                 jnp.array([[0.3, 0.6], [0.5, 0.2]]))
        return jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), (source, target))


@pytest.mark.parametrize("process", PROCESSES, ids=lambda p: getattr(p, "path", p).__class__.__name__)
def test_conversions_round_trip_on_every_path(process):
    with jax.enable_x64(True):
        x = jax.random.normal(jax.random.PRNGKey(0), (5, 3), jnp.float64)
        value = jax.random.normal(jax.random.PRNGKey(1), (5, 3), jnp.float64)
        t = jnp.array([0.05, 0.3, 0.5, 0.7, 0.95]) * process.t_max
        for source in PREDICTION_KINDS:
            for target in PREDICTION_KINDS:
                there = convert(process, x, t, value, source=source, target=target)
                back = convert(process, x, t, there, source=target, target=source)
                np.testing.assert_allclose(back, value, rtol=1e-9, atol=1e-9, err_msg=f"{source}->{target}")
        # the closed-form rates (α', σ') equal autodiff of (α, σ), so velocities are exact
        _, _, d_alpha, d_sigma = process._rates(t)
        np.testing.assert_allclose(d_alpha, jax.vmap(jax.grad(process._alpha))(t), rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(d_sigma, jax.vmap(jax.grad(process._sigma))(t), rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("path", PATHS[:5], ids=lambda p: type(p).__name__)
def test_flow_process_is_the_interpolant_read_backwards(mixtures, path):
    """The marginal law and the exact velocity of x_t = a x0 + b x1 + c z from N(0, I), through the process
    view (α, σ at s = 1 − t, score ↔ flow velocity by the generic conversion), equal the interpolant's."""
    source, target = mixtures
    process = path.as_process()
    with jax.enable_x64(True):
        x = jax.random.normal(jax.random.PRNGKey(2), (6, 2), jnp.float64) * 2.0
        for t in (0.1, 0.45, 0.8):
            s = 1.0 - t
            np.testing.assert_allclose(target.marginal(process, s).log_prob(x),
                                       source.interpolant_log_prob(target, path, x, t), rtol=1e-10)
            score = target.marginal_score(process, x, s)
            velocity = convert(process, x, jnp.full((6,), s), score, source="score", target="flow_velocity")
            np.testing.assert_allclose(velocity, source.interpolant_velocity(target, path, x, t), rtol=1e-8,
                                       atol=1e-10)


def test_velocity_conversions_are_finite_at_the_source_end():
    """At s = 1 (t = 0) α = 0: f, g² and σ̃ are infinite, but score/ε/x̂₀ from a velocity are finite; at the data
    end a score is infinite (σ = 0), which is why velocity models land on 0 and score models stop at sampling_eps."""
    process = LinearInterpolant(0.0).as_process()
    x = jnp.ones((2, 2))
    u = jnp.full((2, 2), 0.5)
    for kind in ("score", "eps", "x0"):
        assert np.all(np.isfinite(convert(process, x, jnp.ones(2), u, source="flow_velocity", target=kind)))
    assert not np.isfinite(float(process._drift_coeff(jnp.asarray(1.0))))
    assert not np.all(np.isfinite(convert(process, x, jnp.zeros(2), u, source="flow_velocity", target="score")))


# Langevin-type samplers target a fixed noise level with NCSN's step sizes (σ_min 0.01): they stop at t = 0.99.
_T_END = {"langevin": 0.99, "annealed_langevin": 0.99, "pc": 0.99}
_STEPS = {"langevin": 200, "annealed_langevin": 100, "ddpm": 200, "euler_maruyama": 200, "pc": 200}


def test_every_sampler_runs_on_a_flow_with_an_exact_velocity():
    """``jaxdiff.sample(..., path, velocity_fn=v, sampler=name)`` for every registered name: Gaussian solvers
    (DDIM, DPM-Solver++, exp_abm, EDM), SDEs (the velocity's score through α, σ) and ODEs reach the target:
    the exact target log-density of the samples matches that of true draws, and so does the spread."""
    source = GaussianMixture.gaussian(jnp.zeros(2), jnp.ones(2))
    target = GaussianMixture.ring(6, 3.0, 0.4)
    path = LinearInterpolant(0.0)
    n = 1000
    true = target.sample(jax.random.PRNGKey(10), n)
    ref_logp, ref_radius = float(jnp.mean(target.log_prob(true))), float(jnp.mean(jnp.linalg.norm(true, axis=-1)))
    v = lambda p, x, t: source.interpolant_velocity(target, path, x, t)  # noqa: E731
    noise = jax.random.normal(jax.random.PRNGKey(1), (n, 2))
    assert float(jnp.mean(target.log_prob(noise))) < ref_logp - 3.0  # the check has teeth
    for name in sorted(jaxdiff.samplers()):
        x, info = jaxdiff.sample(jax.random.PRNGKey(1), None, path, shape=(n, 2), velocity_fn=v, sampler=name,
                                 t_end=_T_END.get(name), steps=_STEPS.get(name), return_info=True)
        logp, radius = float(jnp.mean(target.log_prob(x))), float(jnp.mean(jnp.linalg.norm(x, axis=-1)))
        slack = 0.15  # the sampling noise of the mean log-density of 1,000 draws is ~0.04
        radius_slack = 0.06 if name not in _T_END else 0.15  # Langevin-type: NCSN's fixed step sizes, coarser
        assert abs(logp - ref_logp) < slack and abs(radius - ref_radius) < radius_slack, (name, logp, ref_logp, radius)
        assert int(info["nfe"]) >= 1


def test_ddim_on_the_linear_flow_is_euler():
    """On x_t = (1 − t) z + t x the DDIM update is exactly an Euler step of the flow ODE (Liu et al.; both are
    exact for straight paths), so through the process view the two samplers agree to rounding on any grid."""
    target = GaussianMixture.ring(5, 2.0, 0.3)
    source = GaussianMixture.gaussian(jnp.zeros(2), jnp.ones(2))
    path = LinearInterpolant(0.0)
    v = lambda p, x, t: source.interpolant_velocity(target, path, x, t)  # noqa: E731
    x0 = jax.random.normal(jax.random.PRNGKey(3), (64, 2))
    for grid in ("time_uniform", "karras"):
        euler = jaxdiff.sample(jax.random.PRNGKey(0), None, path, x_init=x0, velocity_fn=v, sampler="ode_euler",
                               steps=7, grid=grid)
        ddim = jaxdiff.sample(jax.random.PRNGKey(0), None, path, x_init=x0, velocity_fn=v, sampler="ddim", steps=7,
                              grid=grid)
        np.testing.assert_allclose(ddim, euler, rtol=1e-9, atol=1e-9)
    far = jaxdiff.sample(jax.random.PRNGKey(0), None, path, x_init=x0, velocity_fn=v, sampler="ode_heun", steps=7)
    assert float(jnp.max(jnp.abs(far - euler))) > 1e-3


def test_a_sample_call_with_the_same_function_compiles_once():
    traces = []

    def velocity(params, x, t):
        traces.append(1)
        return -x

    path = LinearInterpolant(0.0)
    jaxdiff.sample(jax.random.PRNGKey(0), None, path, shape=(8, 2), velocity_fn=velocity, sampler="ode_euler", steps=4)
    first = len(traces)  # diffrax traces the vector field a few times while compiling
    for seed in range(1, 3):
        jaxdiff.sample(jax.random.PRNGKey(seed), None, path, shape=(8, 2), velocity_fn=velocity, sampler="ode_euler",
                       steps=4)
    model = FunctionModel(velocity, None, kind="flow_velocity", flow_time=True)
    jaxdiff.sample(jax.random.PRNGKey(5), model, path, shape=(8, 2), sampler="ode_euler", steps=4)
    assert len(traces) == first  # the same function (or wrapper), a fresh path object: the same program


@pytest.mark.parametrize("name", ["fm_cifar", "rf_cifar", "si_cifar"])
def test_flow_cifar_configs_use_score_sdes_ddpmpp(name):
    import importlib

    from jaxdiff.training import config as C
    from jaxdiff.training.run import init_params

    config = importlib.import_module(f"experiments.configs.{name}").get_config()
    C.validate_config(config)
    network = C.build_network(config)
    params = jax.eval_shape(lambda k: init_params(network, (32, 32, 3), k), jax.random.key(0))
    count = sum(int(np.prod(a.shape)) for a in jax.tree_util.tree_leaves(params))
    heads = 2 if name == "si_cifar" else 1
    assert count == 61_804_419 + (heads - 1) * (128 * 9 * 3 + 3), count  # vp_cifar.py's DDPM++ (+ a 2nd head)
    out = jax.eval_shape(lambda p, x, t: network.apply({"params": p}, x, t), params,
                         jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32), jax.ShapeDtypeStruct((2,), jnp.float32))
    assert out.shape == (2, 32, 32, 3 * heads)
    assert isinstance(C.build_path(config), jaxdiff.FlowProcess)
    assert C.build_parameterization(config).prediction == "flow_velocity"
