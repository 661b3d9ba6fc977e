r"""Samplers that integrate the reverse-time SDE or the probability-flow ODE with diffrax.

Reverse SDE (Eq. 26 of the tutorial): ``dx = [f(t) x − g(t)² s(x, t)] dt + g(t) dW̄`` from ``t_max`` down
to ``t_end`` (``dt < 0``). Probability-flow ODE: ``dx/dt = f(t) x − ½ g(t)² s(x, t)``.

Brownian paths, chosen deliberately:

* fixed steps (``euler_maruyama``, ``sde`` without ``rtol``): ``diffrax.UnsafeBrownianPath`` — each
  increment is one normal draw keyed by its interval, O(1) memory and O(state) work per step (the
  cheapest path: ~20× faster than a ``VirtualBrownianTree`` at 3,072 dimensions here, see
  STACK_NOTES), but it cannot be queried at arbitrary sub-intervals twice, so no adaptive steps and no
  reverse-mode gradients through the solve (``DirectAdjoint``).
* adaptive steps (``sde`` with ``rtol``): ``diffrax.VirtualBrownianTree`` on ``[t_end, t_max]`` with
  tolerance ``bm_tol`` — O(1) memory, O(log(T/bm_tol)) normal draws per query, and consistent when a
  step is rejected and retried (required for adaptive stepping and for gradients).
"""

from __future__ import annotations

import diffrax
import jax
import jax.numpy as jnp
import lineax as lx

from jaxdiff.sampling._core import Model, SamplerSpec, register

Array = jax.Array

_ODE_SOLVERS = {"tsit5": diffrax.Tsit5, "dopri5": diffrax.Dopri5, "dopri8": diffrax.Dopri8}
# (drift evaluations per step) of diffrax's additive-noise SRK solvers
_SDE_SOLVERS = {"sea": (diffrax.SEA, 1), "sra1": (diffrax.SRA1, 2), "shark": (diffrax.ShARK, 2)}


def _saveat(ts: Array, trajectory: bool) -> diffrax.SaveAt:
    return diffrax.SaveAt(ts=ts) if trajectory else diffrax.SaveAt(t1=True)


def _reverse_sde_terms(model: Model, t_start: Array, brownian) -> diffrax.MultiTerm:
    r"""The reverse SDE in the forward time ``τ = t_start − t``: ``dy = −(u − ½ g_rev² s)(y, t) dτ + g_rev(t) dW_τ``
    (``u`` the probability flow; ``g_rev = g`` for a diffusion at ``diffusion = 1``: ``u − ½ g² s = f y − g² s``).

    diffrax's stochastic Runge–Kutta solvers are written for increasing time; running them on
    ``τ`` keeps every solver (and every Brownian path) in its intended direction."""

    def drift(tau, y, args):
        return -model.reverse_drift(y, (t_start - tau).astype(y.dtype))

    def diffusion(tau, y, args):
        g = jnp.sqrt(model.noise_sq((t_start - tau).astype(y.dtype))).astype(y.dtype)
        return lx.DiagonalLinearOperator(g * jnp.ones_like(y))

    return diffrax.MultiTerm(diffrax.ODETerm(drift), diffrax.ControlTerm(diffusion, brownian))


def _final_mean_step(model: Model, x: Array, t: Array, s: Array) -> Array:
    """The last Euler step without noise (score_sde's ``noise_removal``)."""
    return x + (s - t) * model.reverse_drift(x, t)


def _euler_maruyama(key, x, ts, model: Model, options, trajectory):
    r"""Euler–Maruyama on the reverse SDE through diffrax: ``x ← x + (f x − g² s) Δt + g ΔW̄``.

    ``noise_removal`` (default, as score_sde) makes the last step deterministic (its mean)."""
    noise_removal = options["noise_removal"]
    run = ts[:-1] if noise_removal else ts
    brownian = diffrax.UnsafeBrownianPath(shape=jax.ShapeDtypeStruct(x.shape, x.dtype), key=key)
    nfe = ts.shape[0] - 1
    if run.shape[0] >= 2:
        taus = run[0] - run
        sol = diffrax.diffeqsolve(
            _reverse_sde_terms(model, run[0], brownian),
            diffrax.Euler(),
            t0=taus[0],
            t1=taus[-1],
            dt0=None,
            y0=x,
            stepsize_controller=diffrax.StepTo(ts=taus),
            saveat=_saveat(taus, trajectory),
            adjoint=diffrax.DirectAdjoint(),
            max_steps=run.shape[0] - 1,
        )
        traj = sol.ys if trajectory else None
        x = sol.ys[-1]
    else:
        traj = x[None] if trajectory else None
    if noise_removal:
        x = _final_mean_step(model, x, ts[-2], ts[-1])
        if trajectory:
            traj = jnp.concatenate([traj, x[None]], axis=0)
    return x, nfe, traj


def _sde_srk(key, x, ts, model: Model, options, trajectory):
    r"""A higher-order stochastic Runge–Kutta solver for additive noise (the reverse SDE's noise
    ``g(t) dW̄`` does not depend on ``x``): diffrax's ShARK (default), SRA1 or SEA.

    Fixed steps on the grid by default; with ``rtol`` set, adaptive steps (PID controller,
    ``atol``) on a ``VirtualBrownianTree``, from ``ts[0]`` to ``ts[-1]``.
    """
    solver_cls, evals = _SDE_SOLVERS[options["solver"]]
    rtol = options["rtol"]
    taus = ts[0] - ts
    span = taus[-1]
    if rtol is None:
        brownian = diffrax.UnsafeBrownianPath(
            shape=jax.ShapeDtypeStruct(x.shape, x.dtype), key=key, levy_area=diffrax.SpaceTimeLevyArea
        )
        controller = diffrax.StepTo(ts=taus)
        adjoint = diffrax.DirectAdjoint()
        max_steps = ts.shape[0] - 1
        dt0 = None
    else:
        brownian = diffrax.VirtualBrownianTree(
            t0=jnp.zeros((), span.dtype), t1=span, tol=options["bm_tol"], shape=jax.ShapeDtypeStruct(x.shape, x.dtype),
            key=key, levy_area=diffrax.SpaceTimeLevyArea,
        )
        controller = diffrax.PIDController(rtol=rtol, atol=options["atol"])
        adjoint = diffrax.RecursiveCheckpointAdjoint()
        max_steps = options["max_steps"]
        dt0 = span / (ts.shape[0] - 1)
    sol = diffrax.diffeqsolve(
        _reverse_sde_terms(model, ts[0], brownian),
        solver_cls(),
        t0=jnp.zeros((), span.dtype),
        t1=span,
        dt0=dt0,
        y0=x,
        stepsize_controller=controller,
        saveat=_saveat(taus, trajectory),
        adjoint=adjoint,
        max_steps=max_steps,
    )
    nfe = evals * sol.stats["num_steps"]
    return sol.ys[-1], nfe, (sol.ys if trajectory else None)


def _ode_fixed(solver_cls, evals_per_step):
    def run(key, x, ts, model: Model, options, trajectory):
        term = diffrax.ODETerm(lambda t, y, args: model.probability_flow(y, t))
        sol = diffrax.diffeqsolve(
            term,
            solver_cls(),
            t0=ts[0],
            t1=ts[-1],
            dt0=None,
            y0=x,
            stepsize_controller=diffrax.StepTo(ts=ts),
            saveat=_saveat(ts, trajectory),
            max_steps=ts.shape[0] - 1,
        )
        return sol.ys[-1], evals_per_step * (ts.shape[0] - 1), (sol.ys if trajectory else None)

    return run


def _ode_adaptive(key, x, ts, model: Model, options, trajectory):
    r"""Probability-flow ODE with an adaptive embedded Runge–Kutta pair (Tsit5, Dopri5 or Dopri8) and a
    PID step-size controller (``rtol``, ``atol``), from ``ts[0]`` to ``ts[-1]``; the grid only sets the
    first step (``(ts[-1] − ts[0])/(len(ts) − 1)``) and, with ``trajectory``, the saved times.

    The whole batch is one state (one step-size sequence for all examples: ~3× cheaper than a
    ``vmap`` over examples, whose while-loop runs until the slowest example finishes)."""
    solver = _ODE_SOLVERS[options["solver"]]()
    term = diffrax.ODETerm(lambda t, y, args: model.probability_flow(y, t))
    sol = diffrax.diffeqsolve(
        term,
        solver,
        t0=ts[0],
        t1=ts[-1],
        dt0=(ts[-1] - ts[0]) / (ts.shape[0] - 1),
        y0=x,
        stepsize_controller=diffrax.PIDController(rtol=options["rtol"], atol=options["atol"]),
        saveat=_saveat(ts, trajectory),
        max_steps=options["max_steps"],
    )
    tableau = solver.tableau
    fsal = int(tableau.fsal)
    nfe = (tableau.num_stages - fsal) * sol.stats["num_steps"] + fsal
    return sol.ys[-1], nfe, (sol.ys if trajectory else None)


register(SamplerSpec(
    name="euler_maruyama",
    fn=_euler_maruyama,
    options={"noise_removal": True, "diffusion": 1.0},
    description="Euler–Maruyama on the reverse-time SDE (Eq. 26) through diffrax, UnsafeBrownianPath; "
                "diffusion scales the noise level (same marginals for every value ≥ 0; 0 is the ODE).",
    default_steps=1000,
    handles_zero=False,
    lands_with_velocity=True,
    stochastic=True,
))
register(SamplerSpec(
    name="sde",
    fn=_sde_srk,
    options={"solver": "shark", "rtol": None, "atol": 1e-3, "bm_tol": 1e-5, "max_steps": 16384, "diffusion": 1.0},
    description="Reverse SDE with an additive-noise SRK solver of diffrax (shark, sra1, sea); adaptive with rtol.",
    default_steps=100,
    handles_zero=False,
    stochastic=True,
))
register(SamplerSpec(
    name="ode_euler",
    fn=_ode_fixed(diffrax.Euler, 1),
    options={},
    description="Probability-flow ODE, Euler steps in t through diffrax.",
    default_steps=100,
    handles_zero=False,
    lands_with_velocity=True,
))
register(SamplerSpec(
    name="ode_heun",
    fn=_ode_fixed(diffrax.Heun, 2),
    options={},
    description="Probability-flow ODE, Heun steps in t through diffrax (2 NFE per step).",
    default_steps=50,
    handles_zero=False,
    lands_with_velocity=True,
))
register(SamplerSpec(
    name="ode_midpoint",
    fn=_ode_fixed(diffrax.Midpoint, 2),
    options={},
    description="Probability-flow ODE, explicit midpoint steps in t through diffrax (2 NFE per step).",
    default_steps=50,
    handles_zero=False,
    lands_with_velocity=True,
))
register(SamplerSpec(
    name="ode_adaptive",
    fn=_ode_adaptive,
    options={"solver": "tsit5", "rtol": 1e-5, "atol": 1e-5, "max_steps": 4096},
    description="Probability-flow ODE with adaptive Tsit5/Dopri5/Dopri8 and a PID controller through diffrax.",
    default_steps=16,
    handles_zero=False,
    adaptive=True,
    lands_with_velocity=True,
))
