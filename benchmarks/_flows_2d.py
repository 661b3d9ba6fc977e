r"""The 2-D flow benchmark of torchcfm / the [SF]²M paper: samplers, methods and evaluation.

Data (as jax samplers ``sample(key, n) -> [n, 2]``; sources: atong01/conditional-flow-matching)

* ``paper_8gaussians`` — ``runner/configs/datamodule/gaussians.yaml`` → torchdyn's
  ``generate_gaussians(n_gaussians=8, radius=5, std_gaussians=1, noise=1e-4)`` (8 equal modes on the
  circle of radius 5, standard deviation 1; the per-mode 1e-4 offset is dropped). The paper's
  "N → 8gaussians".
* ``paper_moons`` — ``runner/src/datamodules/distribution_datamodule.py`` (``SKLearnDataModule``):
  ``make_moons(noise=0.05) * 2``, ``x -= 1``. The paper's "N → moons".
* ``dsb_moons`` / ``dsb_8gaussians`` — ``runner/src/datamodules/components/two_dim.py`` (from DSB), used by
  ``runner/configs/datamodule/twodim.yaml`` (``system: "moon-8gaussians"``, source first): moons
  ``make_moons(noise=0.1)`` standardized by the scalar mean / std of all coordinates and ×7; 8 Gaussians
  on the circle of radius 4 with std 0.5, all ×3 (radius 12, std 1.5). The paper's "moons → 8gaussians".
* ``tcfm_8gaussians`` / ``tcfm_moons`` — ``torchcfm/utils.py`` (the tutorials' "8gaussians → moons"):
  ``eight_normal_sample(n, 2, scale=5, var=0.1)`` passes ``sqrt(var) I`` as the *covariance*, so the
  per-mode std is ``0.1 ** 0.25 ≈ 0.562``; ``sample_moons`` is torchdyn's ``generate_moons(n, noise=0.2)
  * 3 - 1``, whose "noise" is one ``U[0, 0.2)`` shift added to *both* coordinates.

Moons are drawn with i.i.d. angles ``U[0, π]`` on a fair coin's arc (sklearn / torchdyn use a
``linspace`` of angles with exactly half the points per arc: the same law, stratified).

Methods: ``fit(key, sample_source, sample_target, steps) -> (model, path)`` for a FlowModel /
BridgeModel, or ``(ScoreModel, VPSDE)`` for the diffusion. Evaluation: :func:`evaluate`.
"""

from __future__ import annotations

import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

import jaxdiff
from jaxdiff.flows import (
    BrownianBridge,
    LinearInterpolant,
    exact_w2,
    path_energy,
    sample_flow,
    train_dsbm,
    train_flow_matching,
    train_rectified_flow,
)

# torchcfm's runner (runner/configs/model/{cfm,otcfm,sbcfm}.yaml): VelocityNet hidden [64, 64, 64], SELU,
# no batch norm; AdamW lr 1e-3 (weight decay 1e-5); σ = 0.1 (I-CFM, OT-CFM), σ = 1.0 (SB-CFM).
HIDDEN = (64, 64, 64)
ACTIVATION = "selu"
LR = 1e-3
SIGMA_CFM = 0.1
SIGMA_SB = 1.0
EVAL_N = 10_000


# --------------------------------------------------------------------------------------------- samplers

def normal(key, n):
    """``N(0, I₂)``: the paper's "N" source."""
    return jax.random.normal(key, (n, 2))


def _ring(key, n, radius, std, modes=8):
    k_mode, k_noise = jax.random.split(key)
    angle = 2.0 * jnp.pi * jax.random.randint(k_mode, (n,), 0, modes) / modes
    centers = radius * jnp.stack([jnp.cos(angle), jnp.sin(angle)], axis=-1)
    return centers + std * jax.random.normal(k_noise, (n, 2))


def paper_8gaussians(key, n):
    """torchdyn ``generate_gaussians(n_gaussians=8, radius=5, std_gaussians=1)`` (runner ``gaussians``)."""
    return _ring(key, n, 5.0, 1.0)


def dsb_8gaussians(key, n):
    """DSB's ``8gaussians`` (runner ``two_dim.py``): radius 4, std 0.5, then ×3."""
    return _ring(key, n, 12.0, 1.5)


def tcfm_8gaussians(key, n):
    """torchcfm ``sample_8gaussians``: centers ×5, covariance ``sqrt(0.1) I`` (std ``0.1 ** 0.25``)."""
    return _ring(key, n, 5.0, 0.1 ** 0.25)


def _moon_arcs(key, n):
    """Noise-free sklearn/torchdyn moons: outer ``(cos θ, sin θ)``, inner ``(1 − cos θ, 0.5 − sin θ)``."""
    k_arc, k_angle = jax.random.split(key)
    theta = jax.random.uniform(k_angle, (n,), minval=0.0, maxval=jnp.pi)
    inner = jax.random.bernoulli(k_arc, 0.5, (n,))
    outer_pts = jnp.stack([jnp.cos(theta), jnp.sin(theta)], axis=-1)
    inner_pts = jnp.stack([1.0 - jnp.cos(theta), 0.5 - jnp.sin(theta)], axis=-1)
    return jnp.where(inner[:, None], inner_pts, outer_pts)


def paper_moons(key, n):
    """runner ``SKLearnDataModule`` moons: ``make_moons(noise=0.05) * 2``, ``x -= 1``."""
    k_arc, k_noise = jax.random.split(key)
    x = _moon_arcs(k_arc, n) + 0.05 * jax.random.normal(k_noise, (n, 2))
    return x * 2.0 - jnp.array([1.0, 0.0])


# scalar mean / std over both coordinates of make_moons(noise=0.1): 0.375 (exact) and 0.7229 (10⁶ draws).
_DSB_MOON_MEAN, _DSB_MOON_STD = 0.375, 0.7229


def dsb_moons(key, n):
    """DSB's ``moon``: ``make_moons(noise=0.1)``, ``(X − mean) / std × 7`` with the scalar mean / std of ``X``."""
    k_arc, k_noise = jax.random.split(key)
    x = _moon_arcs(k_arc, n) + 0.1 * jax.random.normal(k_noise, (n, 2))
    return (x - _DSB_MOON_MEAN) / _DSB_MOON_STD * 7.0


def tcfm_moons(key, n):
    """torchcfm ``sample_moons``: torchdyn ``generate_moons(n, noise=0.2) * 3 − 1`` (one U[0, 0.2) shift on both axes)."""
    k_arc, k_noise = jax.random.split(key)
    x = _moon_arcs(k_arc, n) + 0.2 * jax.random.uniform(k_noise, (n, 1))
    return x * 3.0 - 1.0


# task name -> (source, target, source is N(0, I), description, published W2 by method)
TASKS: dict[str, tuple[Callable, Callable, bool, str, dict[str, float]]] = {
    "n-8gaussians": (normal, paper_8gaussians, True, "N → 8 Gaussians (runner `gaussians`: radius 5, std 1)",
                     {"[SF]²M-Exact": 0.275, "otcfm": 0.303, "DSBM-IPF": 0.315, "icfm": 0.373, "rf1": 0.421}),
    "moons-8gaussians": (dsb_moons, dsb_8gaussians, False,
                         "moons → 8 Gaussians (runner `twodim` moon-8gaussians: DSB moons ×7, ring radius 12, std 1.5)",
                         {"otcfm": 0.601}),
    "n-moons": (normal, paper_moons, True, "N → moons (runner `moons`: make_moons(0.05)·2 − (1, 0))", {}),
    "8gaussians-moons": (tcfm_8gaussians, tcfm_moons, False,
                         "8 Gaussians → moons (torchcfm.utils tutorial samplers)", {}),
}


# ---------------------------------------------------------------------------------------------- methods

def fit_cfm(path, coupling, epsilon=None, batch_size=256):
    def fit(key, sample_source, sample_target, steps):
        model = train_flow_matching(key, sample_source, sample_target, path=path, coupling=coupling, epsilon=epsilon,
                                    steps=steps, batch_size=batch_size, lr=LR, hidden=HIDDEN, activation=ACTIVATION)
        return model, path
    return fit


def fit_dsbm(sigma=SIGMA_SB, iterations=4, batch_size=256, num_pairs=10_000):
    """DSBM-IMF with reference ``σ W`` (``ε = σ²``); ``iterations`` × (forward + backward) share ``steps``."""
    def fit(key, sample_source, sample_target, steps):
        per = max(1, steps // (2 * iterations))
        model = train_dsbm(key, sample_source, sample_target, epsilon=sigma**2, iterations=iterations,
                           steps_per_iteration=per, num_pairs=num_pairs, batch_size=batch_size, lr=LR, hidden=HIDDEN,
                           sde_steps=100)
        return model, LinearInterpolant(0.0)
    return fit


def fit_rf(batch_size=256, num_pairs=10_000):
    """1-RF (``steps/2``) then 2-RF (reflow on ``num_pairs`` ODE pairs, ``steps/2``, warm-started): returns both."""
    def fit(key, sample_source, sample_target, steps):
        models = train_rectified_flow(key, sample_source, sample_target, rounds=2, steps=steps // 2,
                                      reflow_steps=steps - steps // 2, num_pairs=num_pairs, batch_size=batch_size,
                                      lr=LR, hidden=HIDDEN)
        return models, LinearInterpolant(0.0)
    return fit


def fit_rf1(batch_size=256):
    """1-RF alone, all ``steps`` (flow matching on independent pairs with LinearInterpolant(0))."""
    def fit(key, sample_source, sample_target, steps):
        models = train_rectified_flow(key, sample_source, sample_target, rounds=1, steps=steps,
                                      batch_size=batch_size, lr=LR, hidden=HIDDEN)
        return models[0], LinearInterpolant(0.0)
    return fit


def fit_vp(batch_size=256):
    """VP-SDE (β 0.1 → 20) score model trained with ``dsm_loss`` (ε-prediction, σ² weighting); noise source only."""
    from jaxdiff.flows.training import fit as fit_loop
    from jaxdiff.models import ScoreMLP

    def fit(key, sample_source, sample_target, steps):
        sde = jaxdiff.VPSDE()
        net = ScoreMLP(hidden=HIDDEN)
        k_init, k_fit = jax.random.split(key)
        params = net.init(k_init, jnp.zeros((2, 2)), jnp.ones((2,)))["params"]
        apply = lambda p, x, t: net.apply({"params": p}, x, t)  # noqa: E731
        param = jaxdiff.Direct("eps", noise_input="t_scaled")
        loss = jaxdiff.dsm_loss(sde, apply, parameterization=param, reduce="mean")
        trained = fit_loop(k_fit, loss, params, lambda k: sample_target(k, batch_size), steps=steps, lr=LR)
        return jaxdiff.ScoreModel(apply, trained, param), sde
    return fit


# ------------------------------------------------------------------------------------------- evaluation

def w2(x, y) -> float:
    """Exact W2 between two equal-size clouds: POT's network simplex when importable, else ``exact_w2``."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    try:
        import ot
    except ImportError:
        return exact_w2(x, y)
    cost = ot.dist(x, y)
    a = np.full(x.shape[0], 1.0 / x.shape[0])
    b = np.full(y.shape[0], 1.0 / y.shape[0])
    return float(np.sqrt(ot.emd2(a, b, cost, numItermax=int(1e8))))


def w2_backend() -> str:
    try:
        import ot
        return f"POT {ot.__version__} ot.emd2 (network simplex)"
    except ImportError:
        return "jaxdiff.flows.exact_w2 (scipy linear_sum_assignment)"


def _vp_path_energy(key, model, sde, x_init, steps=100):
    """``Σ |Δx|²/Δt`` along the VP probability-flow ODE (Euler grid, t: 1 → sampling_eps; the final
    Tweedie jump to t = 0 is left out)."""
    _, info = jaxdiff.sample(key, model, sde, x_init=x_init, sampler="ode_euler", steps=steps, return_info=True,
                             trajectory=True)
    traj = np.asarray(info["trajectory"], np.float64)
    ts = np.asarray(info["trajectory_ts"], np.float64)
    keep = len(ts)
    if ts[-1] == 0.0 and len(ts) > steps + 1:
        keep -= 1
    traj, ts = traj[:keep], ts[:keep]
    dt = np.abs(np.diff(ts))
    sq = np.sum((traj[1:] - traj[:-1]) ** 2, axis=-1).mean(axis=-1)
    return float(np.sum(sq / dt))


def evaluate(key, model, path, sample_source, sample_target, w2sq_source_target: float, *, n: int = EVAL_N,
             one_step: bool = False, rtol: float = 1e-5, atol: float = 1e-5) -> dict:
    """W2 (``n`` pushed samples vs ``n`` fresh target samples, exact OT), NPE, adaptive NFE (Tsit5,
    ``rtol``/``atol``) and, with ``one_step``, the W2 of one Euler step."""
    k_src, k_tgt, k_ode, k_pe = jax.random.split(key, 4)
    x0 = sample_source(k_src, n)
    x1 = sample_target(k_tgt, n)
    out = {}
    t0 = time.perf_counter()
    if isinstance(path, jaxdiff.VPSDE):
        xs, info = jaxdiff.sample(k_ode, model, path, x_init=x0, sampler="ode_adaptive", rtol=rtol, atol=atol,
                                  return_info=True)
        energy = _vp_path_energy(k_pe, model, path, x0[:2000])
    else:
        xs, info = sample_flow(k_ode, model, path, x_init=x0, sampler="ode_adaptive", rtol=rtol, atol=atol,
                               return_info=True)
        energy = float(path_energy(k_pe, model, path, x0[:2000], steps=100))
    out["nfe"] = int(info["nfe"])
    out["sample_s"] = time.perf_counter() - t0
    xs = np.asarray(xs)
    if not np.all(np.isfinite(xs)):
        out["w2"] = float("nan")
    else:
        out["w2"] = w2(xs, x1)
    out["path_energy"] = energy
    out["npe"] = abs(energy - w2sq_source_target) / w2sq_source_target
    if one_step:
        x_one = sample_flow(k_ode, model, path, x_init=x0, sampler="ode_euler", steps=1)
        out["w2_1step"] = w2(np.asarray(x_one), x1)
    return out


def task_constants(key, task: str, n: int = EVAL_N) -> dict:
    """``W2²(p0, p1)`` between ``n`` source and ``n`` target samples, and the W2 floor: two independent ``n``-sample
    draws of the target."""
    source, target, _, _, _ = TASKS[task]
    k0, k1, k2 = jax.random.split(key, 3)
    x0, x1, x1b = source(k0, n), target(k1, n), target(k2, n)
    return {"w2sq": w2(x0, x1) ** 2, "floor": w2(x1, x1b)}


def coupling_cost(batch_size: int = 256, steps: int = 1000, repeats: int = 1) -> dict:
    """Seconds per ``steps`` training steps of OT-CFM's loop with independent / exact / sinkhorn couplings
    (N → 8 Gaussians, the benchmark's network), after a compile-and-warm-up call of the same length."""
    from jaxdiff.flows.losses import flow_matching_loss
    from jaxdiff.flows.models import init_mlp, mlp_apply
    from jaxdiff.flows.training import fit as fit_loop
    from jaxdiff.flows.training import pair_sampler

    module, apply_fn = mlp_apply(HIDDEN, ACTIVATION)
    params = init_mlp(jax.random.PRNGKey(0), module, (2,))
    draw = pair_sampler(normal, paper_8gaussians, batch_size)
    out = {}
    for name, path, coupling, eps in (("independent", LinearInterpolant(SIGMA_CFM), "independent", None),
                                      ("exact", LinearInterpolant(SIGMA_CFM), "exact", None),
                                      ("sinkhorn", BrownianBridge(SIGMA_SB), "sinkhorn", 2 * SIGMA_SB**2)):
        loss = flow_matching_loss(path, apply_fn, coupling=coupling, epsilon=eps)
        fit_loop(jax.random.PRNGKey(1), loss, params, draw, steps=steps, chunk=steps)  # compile + warm-up
        times = []
        for r in range(repeats):
            t0 = time.perf_counter()
            fit_loop(jax.random.PRNGKey(2 + r), loss, params, draw, steps=steps, chunk=steps)
            times.append(time.perf_counter() - t0)
        out[name] = float(np.median(times)) * 1000.0 / steps
    return out


METHODS: dict[str, tuple[str, Callable]] = {
    "icfm": ("I-CFM (LinearInterpolant(0.1), independent)", lambda bs: fit_cfm(LinearInterpolant(SIGMA_CFM), "independent",
                                                                                batch_size=bs)),
    "otcfm": ("OT-CFM (LinearInterpolant(0.1), exact minibatch OT)", lambda bs: fit_cfm(LinearInterpolant(SIGMA_CFM), "exact",
                                                                                         batch_size=bs)),
    "sbcfm": (f"SB-CFM (BrownianBridge({SIGMA_SB}), sinkhorn ε=2σ²={2 * SIGMA_SB**2:g})",
              lambda bs: fit_cfm(BrownianBridge(SIGMA_SB), "sinkhorn", epsilon=2 * SIGMA_SB**2, batch_size=bs)),
    "dsbm": (f"DSBM-IMF (σ={SIGMA_SB}, ε=σ², 4 iterations × (fwd + bwd) of steps/8)", lambda bs: fit_dsbm(batch_size=bs)),
    "rf": ("RF: 1-RF (steps/2) → 2-RF (reflow of 10k ODE pairs, steps/2)", lambda bs: fit_rf(batch_size=bs)),
    "rf1": ("1-RF alone (LinearInterpolant(0), independent, all steps)", lambda bs: fit_rf1(batch_size=bs)),
    "vp": ("VP-SDE + dsm_loss (ScoreMLP, ε-pred.), PF-ODE", lambda bs: fit_vp(batch_size=bs)),
}
