"""Model-calibrated grids (jaxdiff.calibrated_grid, sample(grid="calibrated")) against closed forms.

Gaussian data N(μ, diag(s²)) has an exact probability-flow endpoint: along the ODE in x̃ = x/α and σ̃ = σ/α,
x̃ − μ ∝ √(s² + σ̃²), so x(0) = μ + (x̃_T − μ)·s/√(s² + σ̃_T²); a rectified flow from N(0, I) to it ends at μ + s·z.
A calibrated grid must beat every fixed grid rule on fresh noise by a wide margin (a grid that was not fitted, or
fitted to the wrong target, does not)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdiff
from jaxdiff.sampling import _calibrate
from jaxdiff.sampling._grid import GRIDS, alpha_sigma

SDE = jaxdiff.VPSDE(0.1, 20.0)
MEAN = np.array([0.5, -1.0, 0.3])
STD = np.array([0.02, 0.3, 2.0])  # three scales two decades apart: no fixed rule suits all of them
DATA = jaxdiff.GaussianMixture.gaussian(MEAN, STD)


def score(params, x, t):
    return DATA.marginal_score(SDE, x, t)


def exact_endpoint(z):
    """The PF-ODE's x(0) from x(1) = z for N(MEAN, diag(STD²))."""
    alpha, sigma = (float(v) for v in alpha_sigma(SDE, jnp.asarray(1.0)))
    xs, st = z / alpha, sigma / alpha
    return MEAN + (xs - MEAN) * STD / np.sqrt(STD**2 + st**2)


def error(x, truth):
    return float(np.mean(np.linalg.norm(np.asarray(x, np.float64) - truth, axis=-1)))


@pytest.fixture(scope="module")
def fresh_noise():
    z = np.asarray(jax.random.normal(jax.random.PRNGKey(7), (512, 3)), np.float64)
    return z, exact_endpoint(z)


# (measured ratios to the best fixed rule: dpmpp_2m 0.14, ode_heun 0.29, ddim 0.82 — first order, the grid can only
# balance its error)
@pytest.mark.parametrize("sampler, steps, bound", [("dpmpp_2m", 6, 0.3), ("ode_heun", 4, 0.5), ("ddim", 6, 0.9)])
def test_calibrated_grid_beats_every_fixed_rule_on_fresh_noise(sampler, steps, bound, fresh_noise):
    z, truth = fresh_noise
    ts, info = jaxdiff.calibrated_grid(jax.random.PRNGKey(1), None, SDE, sampler=sampler, steps=steps, shape=(128, 3),
                                       score_fn=score, t_end=0.0, iterations=60, return_info=True)
    assert ts.shape == (steps + 1,) and ts[0] == 1.0 and ts[-1] == 0.0 and np.all(np.diff(ts) < 0)
    assert info["loss"] <= min(info["rule_losses"].values())
    key = jax.random.PRNGKey(0)
    fixed = {rule: error(jaxdiff.sample(key, None, SDE, sampler=sampler, steps=steps, grid=rule, t_end=0.0,
                                        x_init=jnp.asarray(z, jnp.float32), score_fn=score), truth) for rule in GRIDS}
    calibrated = error(jaxdiff.sample(key, None, SDE, sampler=sampler, ts=ts, x_init=jnp.asarray(z, jnp.float32),
                                      score_fn=score), truth)
    assert calibrated <= bound * min(fixed.values()), (calibrated, fixed)


def test_calibrated_grid_of_a_flow_is_in_flow_time_and_beats_the_fixed_rules():
    source = jaxdiff.GaussianMixture.gaussian(np.zeros(3), np.ones(3))
    path = jaxdiff.LinearInterpolant()

    def velocity(params, x, t):
        return source.interpolant_velocity(DATA, path, x, t)

    ts = jaxdiff.calibrated_grid(jax.random.PRNGKey(1), None, path, sampler="dpmpp_2m", steps=5, shape=(128, 3),
                                 velocity_fn=velocity, iterations=60)
    assert ts.shape == (6,) and ts[0] == 0.0 and ts[-1] == 1.0 and np.all(np.diff(ts) > 0)
    z = np.asarray(jax.random.normal(jax.random.PRNGKey(7), (512, 3)), np.float64)
    truth = MEAN + STD * z  # the Gaussian flow map
    x0 = jnp.asarray(z, jnp.float32)
    fixed = [error(jaxdiff.sample(jax.random.PRNGKey(0), None, path, sampler="dpmpp_2m", steps=5, grid=rule, x_init=x0,
                                  velocity_fn=velocity), truth) for rule in GRIDS]
    calibrated = error(jaxdiff.sample(jax.random.PRNGKey(0), None, path, sampler="dpmpp_2m", ts=ts, x_init=x0,
                                      velocity_fn=velocity), truth)
    assert calibrated <= 0.5 * min(fixed), (calibrated, fixed)


def test_grid_from_logits_round_trips_and_keeps_tiny_last_intervals():
    grid = np.array([1.0, 0.5, 0.1, 1e-3, 1e-6, 0.0])
    back = np.asarray(_calibrate.grid_from_logits(jnp.asarray(_calibrate.logits_of_grid(grid), jnp.float32),
                                                  jnp.float32(1.0), jnp.float32(0.0)))
    np.testing.assert_allclose(back, grid, rtol=1e-5, atol=0)  # relative: the 1e-6 point survives float32


def test_sample_grid_calibrated_calibrates_once_per_model_and_never_recompiles(monkeypatch):
    from jaxdiff.sampling.api import TRACES

    calls = []
    original = _calibrate.calibrate

    def counting(*args, **kw):
        calls.append(kw["shape"])
        return original(*args, **{**kw, "iterations": 5})

    monkeypatch.setattr(_calibrate, "calibrate", counting)
    model = jaxdiff.FunctionModel(score, None, kind="score")
    kw = dict(sampler="dpmpp_2m", steps=5, grid="calibrated", t_end=0.0, return_info=True)
    x1, info1 = jaxdiff.sample(jax.random.PRNGKey(3), model, SDE, shape=(300, 3), **kw)
    traces = TRACES["sample"]
    x2, info2 = jaxdiff.sample(jax.random.PRNGKey(4), model, SDE, shape=(300, 3), **kw)
    assert calls == [(128, 3)]  # once, on at most 128 rows of the batch
    np.testing.assert_array_equal(info1["ts"], info2["ts"])
    assert TRACES["sample"] == traces  # the same compiled sampler for the second call
    x3 = jaxdiff.sample(jax.random.PRNGKey(3), model, SDE, shape=(300, 3), sampler="dpmpp_2m", ts=info1["ts"])
    np.testing.assert_array_equal(np.asarray(x1), np.asarray(x3))
    assert TRACES["sample"] == traces  # another grid of the same length: still no recompilation


@pytest.mark.parametrize("kwargs, match", [
    ({"sampler": "euler_maruyama"}, "sampler must be one of"),
    ({"sampler": "exp_abm"}, "sampler must be one of"),
    ({"sampler": "ddim", "eta": 1.0}, "eta=0"),
    ({"sampler": "edm_heun", "s_churn": 10.0}, "s_churn=0"),
    ({"sampler": "ddim", "steps": 0}, "steps"),
    ({"sampler": "ddim", "iterations": -1}, "iterations"),
    ({"sampler": "ddim", "shape": (3,)}, "shape"),
    ({"sampler": "ddim", "t_end": 2.0}, "t_end"),
])
def test_bad_calibration_arguments_are_refused_by_name(kwargs, match):
    kw = {"steps": 4, "shape": (8, 3), **kwargs}
    with pytest.raises(ValueError, match=match):
        jaxdiff.calibrated_grid(jax.random.PRNGKey(0), None, SDE, score_fn=score, **kw)
