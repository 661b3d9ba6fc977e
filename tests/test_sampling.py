"""Every sampler, fed the exact score of a Gaussian mixture, reproduces the mixture at its documented
step count; deterministic samplers compute what k-diffusion / diffusers compute; the front door's
contract (keys, vmap, grids, x_init, info, errors)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdiff
from jaxdiff.metrics import mixture_weight_error, sliced_wasserstein

MIX = jaxdiff.GaussianMixture(
    [0.2, 0.5, 0.3], [[-2.0, 0.0], [1.0, 1.5], [1.5, -1.5]], [[0.5, 0.3], [0.4, 0.6], [0.3, 0.3]]
)
N = 3000
VP = jaxdiff.VPSDE()
VE = jaxdiff.VESDE(sigma_min=0.05, sigma_max=10.0)


def exact_score(sde):
    def score_fn(params, x, t):
        return MIX.marginal_score(sde, x, t)

    return score_fn


SCORES = {id(VP): exact_score(VP), id(VE): exact_score(VE)}


@pytest.fixture(scope="module")
def reference():
    return MIX.sample(jax.random.PRNGKey(100), N)


def _distribution_errors(x, target, ref):
    sw = float(sliced_wasserstein(jax.random.PRNGKey(7), x, ref))
    weights = float(mixture_weight_error(target, x))
    cov = float(np.max(np.abs(np.cov(np.asarray(x).T) - np.asarray(target.covariance()))))
    return sw, weights, cov


# (sampler, process, options): the documented step counts; the floor SW between two exact sets of
# 3,000 points is ~0.1 here, and a sign or factor-2 error in a drift gives SW > 1.
CASES = [
    ("euler_maruyama", VP, dict(steps=500)),
    ("pc", VP, dict(steps=200)),
    ("pc", VE, dict(steps=200)),
    ("ddpm", VP, dict(steps=200)),
    ("ddim", VP, dict(steps=50)),
    ("ddim", VP, dict(steps=200, eta=1.0)),
    ("ode_euler", VP, dict(steps=200)),
    ("ode_heun", VP, dict(steps=50)),
    ("ode_adaptive", VP, dict()),
    ("edm_heun", VP, dict(steps=18, t_end=0.0)),
    ("edm_heun", VP, dict(steps=40, t_end=0.0, s_churn=20.0)),
    ("dpmpp_2m", VP, dict(steps=20, t_end=0.0)),
    ("dpmpp_3m", VP, dict(steps=20, t_end=0.0)),
    ("sde", VP, dict(steps=100)),
    ("sde", VP, dict(rtol=1e-2, atol=1e-2)),
    ("annealed_langevin", VE, dict(steps=9, n_steps_each=100, step_lr=1e-3)),
]


@pytest.mark.parametrize("name, sde, options", CASES, ids=[f"{c[0]}-{type(c[1]).__name__}-{i}" for i, c in enumerate(CASES)])
def test_sampler_matches_mixture(name, sde, options, reference):
    x, info = jaxdiff.sample(
        jax.random.PRNGKey(0), None, sde, shape=(N, 2), sampler=name, score_fn=SCORES[id(sde)], return_info=True, **options
    )
    assert x.shape == (N, 2) and bool(jnp.all(jnp.isfinite(x)))
    sw, weights, cov = _distribution_errors(x, MIX, reference)
    assert sw < 0.2, (sw, weights, cov)
    assert weights < 0.04, (sw, weights, cov)
    assert cov < 0.2, (sw, weights, cov)
    assert int(info["nfe"]) > 0


def test_langevin_targets_marginal():
    """Algorithm 1 at t_end = 0.5 samples p_{0.5} (the exact marginal mixture)."""
    target = MIX.marginal(VP, 0.5)
    x = jaxdiff.sample(
        jax.random.PRNGKey(0), None, VP, shape=(N, 2), sampler="langevin", steps=2000, t_end=0.5,
        step_size=0.01, score_fn=SCORES[id(VP)],
    )
    sw, weights, cov = _distribution_errors(x, target, target.sample(jax.random.PRNGKey(3), N))
    assert sw < 0.15 and weights < 0.03 and cov < 0.1, (sw, weights, cov)


def test_factor_two_errors_are_caught(reference):
    """A score off by a factor 2 (as if the reverse drift used ½g²) fails the thresholds above."""
    half = lambda p, x, t: 0.5 * MIX.marginal_score(VP, x, t)  # noqa: E731
    for name, steps in (("euler_maruyama", 500), ("ode_heun", 50)):
        x = jaxdiff.sample(jax.random.PRNGKey(0), None, VP, shape=(N, 2), sampler=name, steps=steps, score_fn=half)
        assert _distribution_errors(x, MIX, reference)[0] > 1.0


# --- faithfulness to k-diffusion and diffusers (independent NumPy re-implementations) -----------------


def _np_denoiser(x_tilde, sigma):
    """E[x0 | x0 + σ ε = x̃] of the mixture, in NumPy (k-diffusion's VE-form denoiser D(x̃; σ))."""
    w, mu, s = (np.asarray(a, np.float64) for a in (MIX.weights, MIX.means, MIX.stds))
    var = s**2 + sigma**2
    logp = np.log(w) - 0.5 * np.sum((x_tilde[:, None, :] - mu) ** 2 / var + np.log(2 * np.pi * var), -1)
    resp = np.exp(logp - logp.max(-1, keepdims=True))
    resp /= resp.sum(-1, keepdims=True)
    post = mu + s**2 / var * (x_tilde[:, None, :] - mu)
    return np.sum(resp[..., None] * post, axis=1)


def _np_dpmpp_2m(x, sigmas):
    old = None
    for i in range(len(sigmas) - 1):
        d = _np_denoiser(x, sigmas[i])
        t, t_next = -np.log(sigmas[i]), (-np.log(sigmas[i + 1]) if sigmas[i + 1] > 0 else np.inf)
        h = t_next - t
        if old is None or sigmas[i + 1] == 0:
            x = (sigmas[i + 1] / sigmas[i]) * x - np.expm1(-h) * d
        else:
            r = (t - (-np.log(sigmas[i - 1]))) / h
            x = (sigmas[i + 1] / sigmas[i]) * x - np.expm1(-h) * ((1 + 1 / (2 * r)) * d - 1 / (2 * r) * old)
        old = d
    return x


def _np_dpmpp_3m(x, sigmas):
    d1 = d2 = h1 = h2 = None
    for i in range(len(sigmas) - 1):
        d = _np_denoiser(x, sigmas[i])
        if sigmas[i + 1] == 0:
            x = d
        else:
            h = np.log(sigmas[i]) - np.log(sigmas[i + 1])
            x = np.exp(-h) * x - np.expm1(-h) * d
            phi2 = np.expm1(-h) / h + 1
            if h2 is not None:
                r0, r1 = h1 / h, h2 / h
                d10, d11 = (d - d1) / r0, (d1 - d2) / r1
                x = x + phi2 * (d10 + (d10 - d11) * r0 / (r0 + r1)) - (phi2 / h - 0.5) * (d10 - d11) / (r0 + r1)
            elif h1 is not None:
                x = x + phi2 * (d - d1) / (h1 / h)
            h1, h2 = h, h1
        d1, d2 = d, d1
    return x


def _np_heun(x, sigmas):
    for i in range(len(sigmas) - 1):
        d = (x - _np_denoiser(x, sigmas[i])) / sigmas[i]
        dt = sigmas[i + 1] - sigmas[i]
        if sigmas[i + 1] == 0:
            x = x + d * dt
        else:
            x2 = x + d * dt
            d2 = (x2 - _np_denoiser(x2, sigmas[i + 1])) / sigmas[i + 1]
            x = x + (d + d2) / 2 * dt
    return x


def _np_ddim(x_vp, alphas_cumprod):
    """diffusers' DDIMScheduler.step with η = 0 on a grid of ᾱ values (last one 1: set_alpha_to_one)."""
    for a_t, a_prev in zip(alphas_cumprod[:-1], alphas_cumprod[1:]):
        sigma = np.sqrt((1 - a_t) / a_t)
        x0 = _np_denoiser(x_vp / np.sqrt(a_t), sigma)
        eps = (x_vp - np.sqrt(a_t) * x0) / np.sqrt(1 - a_t)
        x_vp = np.sqrt(a_prev) * x0 + np.sqrt(1 - a_prev) * eps
    return x_vp


@pytest.mark.parametrize("name, reference_fn", [("dpmpp_2m", _np_dpmpp_2m), ("dpmpp_3m", _np_dpmpp_3m), ("edm_heun", _np_heun)])
@pytest.mark.parametrize("grid", ["karras", "time_uniform"])
def test_matches_k_diffusion(name, reference_fn, grid):
    """Same σ̃ grid, same start, exact denoiser: jaxdiff's output equals k-diffusion's algorithm."""
    ts = jaxdiff.time_grid(VP, 10, grid, t_end=0.0)
    alpha, sigma = (np.asarray(a) for a in jaxdiff.sampling.alpha_sigma(VP, jnp.asarray(ts)))
    sigmas = sigma / alpha
    x_tilde = sigmas[0] * np.asarray(jax.random.normal(jax.random.PRNGKey(1), (64, 2)))
    x_init = jnp.asarray(alpha[0] * x_tilde)  # the same state in the process's own variables
    ours = jaxdiff.sample(jax.random.PRNGKey(0), None, VP, sampler=name, score_fn=SCORES[id(VP)], x_init=x_init, ts=ts)
    np.testing.assert_allclose(np.asarray(ours), reference_fn(x_tilde, sigmas), rtol=1e-8, atol=1e-8)


def test_ddim_matches_diffusers():
    ts = jaxdiff.time_grid(VP, 12, "time_uniform", t_end=0.0)
    alpha = np.asarray(jaxdiff.sampling.alpha_sigma(VP, jnp.asarray(ts))[0])
    x_init = jax.random.normal(jax.random.PRNGKey(2), (64, 2))
    ours = jaxdiff.sample(jax.random.PRNGKey(0), None, VP, sampler="ddim", score_fn=SCORES[id(VP)], x_init=x_init, ts=ts)
    np.testing.assert_allclose(np.asarray(ours), _np_ddim(np.asarray(x_init), alpha**2), rtol=1e-8, atol=1e-8)


def test_ddpm_step_is_dddpm_mu_theta():
    """On a DDPM grid, one ancestral step's mean is μ_θ = (x − β/√(1−ᾱ) ε̂)/√α (noise removed by eta)."""
    ts = np.array([0.6, 0.55])
    x_init = jax.random.normal(jax.random.PRNGKey(3), (16, 2))
    a_t, a_s = (float(VP.marginal_mean_coeff(t)) ** 2 for t in ts)
    eps = -np.sqrt(1 - a_t) * np.asarray(MIX.marginal_score(VP, x_init, ts[0]))
    beta = 1 - a_t / a_s
    mu = (np.asarray(x_init) - beta / np.sqrt(1 - a_t) * eps) / np.sqrt(1 - beta)
    many = jax.vmap(
        lambda k: jaxdiff.sample(k, None, VP, sampler="ddpm", score_fn=SCORES[id(VP)], x_init=x_init, ts=ts)
    )(jax.random.split(jax.random.PRNGKey(4), 4000))
    var = beta * (1 - a_s) / (1 - a_t)
    np.testing.assert_allclose(np.asarray(many.mean(0)), mu, atol=5 * math.sqrt(var / 4000))
    np.testing.assert_allclose(float(many.var(0).mean()), var, rtol=0.05)


# --- probability-flow round trip and likelihood ----------------------------------------------------


def test_probability_flow_round_trip():
    z = jax.random.normal(jax.random.PRNGKey(5), (32, 2))
    x0 = jaxdiff.sample(
        jax.random.PRNGKey(0), None, VP, sampler="ode_adaptive", score_fn=SCORES[id(VP)], x_init=z,
        ts=np.array([VP.t_max, VP.t_min]), rtol=1e-8, atol=1e-8,
    )
    _, info = jaxdiff.log_likelihood(
        jax.random.PRNGKey(0), None, VP, x0, score_fn=SCORES[id(VP)], rtol=1e-8, atol=1e-8, return_info=True
    )
    np.testing.assert_allclose(np.asarray(info["latent"]), np.asarray(z), atol=1e-4)


@pytest.mark.parametrize("sde", [VP, jaxdiff.SubVPSDE(), jaxdiff.VESDE()], ids=["vp", "subvp", "ve"])
def test_log_likelihood_matches_analytic(sde):
    """Exact divergence: log p equals the mixture's analytic log density of p_{t_min} to 0.05 nats
    (the gap is the prior's mismatch with p_{t_max}); a flipped divergence sign misses by > 1."""
    x = MIX.sample(jax.random.PRNGKey(6), 16)
    score = exact_score(sde)
    log_p, info = jaxdiff.log_likelihood(
        jax.random.PRNGKey(1), None, sde, x, score_fn=score, divergence="exact", rtol=1e-6, atol=1e-6, return_info=True
    )
    analytic = MIX.marginal_log_prob(sde, x, sde.t_min)
    np.testing.assert_allclose(np.asarray(log_p), np.asarray(analytic), atol=0.05)
    flipped = info["prior_log_prob"] - info["delta_log_prob"]
    assert float(jnp.max(jnp.abs(flipped - analytic))) > 1.0


def test_hutchinson_agrees_with_exact_in_expectation():
    x = MIX.sample(jax.random.PRNGKey(7), 4)
    score = SCORES[id(VP)]
    exact = jaxdiff.log_likelihood(jax.random.PRNGKey(0), None, VP, x, score_fn=score, divergence="exact")
    for probe in ("rademacher", "gaussian"):
        keys = jax.random.split(jax.random.PRNGKey(8), 200)
        draws = jax.vmap(lambda k: jaxdiff.log_likelihood(k, None, VP, x, score_fn=score, probe=probe))(keys)
        se = draws.std(0) / math.sqrt(200)
        assert bool(jnp.all(jnp.abs(draws.mean(0) - exact) < 4 * se + 1e-3)), (draws.mean(0) - exact, se)


def test_bits_per_dim_by_hand():
    # a uniform density on [−1, 1]^D is exactly log2(256) = 8 bits per dimension of 8-bit data
    d = 12
    np.testing.assert_allclose(float(jaxdiff.bits_per_dim(-d * math.log(2.0), d)), 8.0, rtol=1e-12)
    # 17-level digits on [0, 1]: log p = 0.3 nats/dim → −(0.3 + log(1/17))/log 2
    expected = -(0.3 + math.log(1 / 17)) / math.log(2)
    np.testing.assert_allclose(float(jaxdiff.bits_per_dim(0.3 * 64, 64, num_levels=17, data_width=1.0)), expected)
    y = jaxdiff.dequantize(jax.random.PRNGKey(0), jnp.array([[0, 255]]), num_levels=256)
    assert -1.0 <= float(y[0, 0]) < -1.0 + 2 / 256 and 1.0 - 2 / 256 <= float(y[0, 1]) < 1.0


# --- the front door's contract ------------------------------------------------------------------------


def test_keys_vmap_and_info():
    kw = dict(shape=(8, 2), sampler="euler_maruyama", steps=20, score_fn=SCORES[id(VP)])
    a = jaxdiff.sample(jax.random.PRNGKey(1), None, VP, **kw)
    b = jaxdiff.sample(jax.random.PRNGKey(1), None, VP, **kw)
    c = jaxdiff.sample(jax.random.PRNGKey(2), None, VP, **kw)
    np.testing.assert_array_equal(a, b)
    assert float(jnp.max(jnp.abs(a - c))) > 1e-3
    batched = jax.vmap(lambda k: jaxdiff.sample(k, None, VP, **kw))(jnp.stack([jax.random.PRNGKey(1), jax.random.PRNGKey(2)]))
    np.testing.assert_allclose(batched[0], a, rtol=1e-10)
    np.testing.assert_allclose(batched[1], c, rtol=1e-10)
    x, info = jaxdiff.sample(jax.random.PRNGKey(1), None, VP, return_info=True, trajectory=True, **kw)
    assert int(info["nfe"]) == 20 and info["ts"].shape == (21,)
    assert info["trajectory"].shape == (21, 8, 2)
    np.testing.assert_allclose(info["trajectory"][-1], x)


def test_nfe_is_counted_exactly():
    calls = []

    def counting_score(params, x, t):
        jax.debug.callback(lambda: calls.append(1))
        return MIX.marginal_score(VP, x, t)

    for name, options, expected in [
        ("edm_heun", dict(steps=6, t_end=0.0), 11),
        ("dpmpp_2m", dict(steps=7, t_end=0.0), 7),
        ("pc", dict(steps=5, n_corrector=2), 15),
        ("ode_heun", dict(steps=4, t_end=0.0), 3 * 2 + 1),  # 3 Heun steps to ts[-2], then Tweedie to 0
        ("ddim", dict(steps=5, denoise=True), 6),
    ]:
        calls.clear()
        _, info = jaxdiff.sample(jax.random.PRNGKey(0), None, VP, shape=(4, 2), sampler=name, score_fn=counting_score, return_info=True, **options)
        jax.effects_barrier()
        assert len(calls) == int(info["nfe"]) == expected, (name, len(calls), int(info["nfe"]))


def test_ends_at_zero_returns_denoised_estimate():
    """One step from t to 0 returns E[x0 | x_t] for every sampler family."""
    x_init = jax.random.normal(jax.random.PRNGKey(9), (16, 2))
    ts = np.array([0.4, 0.0])
    expected = MIX.posterior_mean(VP, x_init, 0.4)
    for name in ("ddim", "ddpm", "dpmpp_2m", "dpmpp_3m", "edm_heun", "ode_euler", "euler_maruyama", "pc"):
        out = jaxdiff.sample(jax.random.PRNGKey(0), None, VP, sampler=name, score_fn=SCORES[id(VP)], x_init=x_init, ts=ts)
        np.testing.assert_allclose(out, expected, rtol=1e-9, atol=1e-9, err_msg=name)


def test_score_model_params_need_nothing_else():
    """params that carry their network (ScoreModel) are sampled with no score_fn."""

    def apply_fn(params, x, t):  # an "eps network" that is exactly right for the mixture
        return -VP.marginal_std(t)[:, None] * MIX.marginal_score(VP, x, t) * params

    model = jaxdiff.ScoreModel(apply_fn, jnp.asarray(1.0), jaxdiff.Direct("eps"))
    a = jaxdiff.sample(jax.random.PRNGKey(0), model, VP, shape=(16, 2), sampler="ddim", steps=10)
    b = jaxdiff.sample(jax.random.PRNGKey(0), None, VP, shape=(16, 2), sampler="ddim", steps=10, score_fn=SCORES[id(VP)])
    np.testing.assert_allclose(a, b, rtol=1e-8)


def test_samplers_listing():
    listing = jaxdiff.samplers()
    required = {"langevin", "annealed_langevin", "euler_maruyama", "pc", "ddpm", "ddim", "ode_euler", "ode_heun",
                "ode_adaptive", "edm_heun", "dpmpp_2m"}
    assert required <= set(listing)
    assert listing["ddim"]["options"] == {"eta": 0.0, "clip_x0": None}


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        (dict(sampler="dpm"), r"sampler must be one of \["),
        (dict(sampler="ddim", etaa=0.5), r"unknown option\(s\) \['etaa'\] for sampler='ddim'; its options are \['clip_x0', 'eta'\]"),
        (dict(sampler="ddim", eta=-1.0), r"eta must be finite and >= 0"),
        (dict(sampler="ddim", grid="cosine"), r"grid must be one of"),
        (dict(sampler="ddim", steps=0), r"steps must be an integer >= 1"),
        (dict(sampler="ddim", ts=[0.5, 0.7]), r"ts must be strictly decreasing"),
        (dict(sampler="ddim", ts=[1.5, 0.1]), r"ts must lie in \[0.0, 1.0\]"),
        (dict(sampler="ode_adaptive", solver="rk4"), r"solver must be one of"),
        (dict(sampler="ddim", t_end=2.0), r"t_end must lie in"),
    ],
)
def test_bad_input(kwargs, fragment):
    with pytest.raises((ValueError, TypeError), match=fragment):
        jaxdiff.sample(jax.random.PRNGKey(0), None, VP, shape=(4, 2), score_fn=SCORES[id(VP)], **kwargs)


def test_explicit_grid_overrides_steps():
    kw = dict(shape=(8, 2), sampler="ddim", score_fn=SCORES[id(VP)])
    ts = np.array([0.9, 0.5, 0.1])
    a, info = jaxdiff.sample(jax.random.PRNGKey(0), None, VP, ts=ts, steps=50, t_end=0.0, return_info=True, **kw)
    b = jaxdiff.sample(jax.random.PRNGKey(0), None, VP, ts=ts, **kw)
    np.testing.assert_array_equal(a, b)
    assert int(info["nfe"]) == 2 and np.array_equal(info["ts"], ts)


def test_second_call_does_not_retrace():
    traces = []

    def score(params, x, t):
        traces.append(1)  # Python runs only while tracing
        return MIX.marginal_score(VP, x, t)

    for seed in range(3):
        jaxdiff.sample(jax.random.PRNGKey(seed), None, VP, shape=(8, 2), sampler="dpmpp_2m", steps=6, score_fn=score)
    assert len(traces) == 1


def test_missing_score_is_explained():
    with pytest.raises(ValueError, match="needs a score"):
        jaxdiff.sample(jax.random.PRNGKey(0), {"w": 1.0}, VP, shape=(4, 2))
    with pytest.raises(ValueError, match="shape=\\(batch, \\*data\\) is required"):
        jaxdiff.sample(jax.random.PRNGKey(0), None, VP, score_fn=SCORES[id(VP)])


def test_float32_samples_under_x64():
    """Every sampler keeps float32 data float32 (the suite runs with x64 enabled)."""
    x = jnp.ones((4, 3), jnp.float32)
    score = lambda p, x, t: -x  # noqa: E731
    for name in jaxdiff.samplers():
        extra = {"rtol": 1e-2} if name == "sde" else {}
        for kw in ({}, extra):
            out = jaxdiff.sample(jax.random.PRNGKey(0), None, VP, sampler=name, steps=4, x_init=x, score_fn=score, **kw)
            assert out.dtype == jnp.float32, name


def test_edge_cases_of_the_front_door():
    score = SCORES[id(VP)]
    # an adaptive ODE solve asked to end at 0 integrates on to sampling_eps, then denoises
    x, info = jaxdiff.sample(jax.random.PRNGKey(0), None, VP, shape=(8, 2), sampler="ode_adaptive", t_end=0.0,
                             score_fn=score, return_info=True, trajectory=True)
    assert info["trajectory_ts"][-2] == VP.sampling_eps and info["trajectory_ts"][-1] == 0.0
    np.testing.assert_allclose(info["trajectory"][-1], x)
    # the adaptive SDE solver keeps a trajectory too
    _, info = jaxdiff.sample(jax.random.PRNGKey(0), None, VP, shape=(8, 2), sampler="sde", rtol=1e-2, t_end=0.0,
                             score_fn=score, return_info=True, trajectory=True)
    assert info["trajectory"].shape[0] == len(info["trajectory_ts"])
    # one noise level is a valid annealed-Langevin run
    _, info = jaxdiff.sample(jax.random.PRNGKey(0), None, VE, shape=(8, 2), sampler="annealed_langevin", steps=1,
                             t_end=0.0, n_steps_each=7, score_fn=SCORES[id(VE)], return_info=True)
    assert int(info["nfe"]) == 7 + 1
    # denoise=True: the trajectory ends with the returned sample
    x, info = jaxdiff.sample(jax.random.PRNGKey(0), None, VP, shape=(8, 2), sampler="ddim", steps=5, denoise=True,
                             score_fn=score, return_info=True, trajectory=True)
    np.testing.assert_allclose(info["trajectory"][-1], x)
    assert info["trajectory"].shape[0] == len(info["trajectory_ts"]) == 7


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        (dict(sde=VP, t_end=0.5, sigma_min=0.1, grid="karras"), "sigma_min sets the last nonzero noise level"),
        (dict(sde=jaxdiff.VESDE(), t_end=0.0, sigma_min=0.002, grid="karras"), r"sigma_min must lie in \(0.01"),
    ],
)
def test_bad_sigma_min(kwargs, fragment):
    sde = kwargs.pop("sde")
    with pytest.raises(ValueError, match=fragment):
        jaxdiff.sample(jax.random.PRNGKey(0), None, sde, shape=(4, 2), sampler="edm_heun", score_fn=exact_score(sde), **kwargs)
