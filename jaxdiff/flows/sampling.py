r"""Sampling and translation along a flow: the ODE ``dX = v(X, t) dt`` and the SDEs with the same
marginals, integrated with diffrax (the same solvers, Brownian paths and NFE accounting as the
diffusion samplers of :mod:`jaxdiff.sampling`), from ``t = 0`` (source) to ``t = 1`` (target) or back.

Samplers:

* ``ode_euler``, ``ode_heun``, ``ode_midpoint`` — fixed steps on a uniform grid of ``steps`` intervals;
* ``ode_adaptive`` — Tsit5 / Dopri5 / Dopri8 with a PID controller (``rtol``, ``atol``);
* ``euler_maruyama`` — an SDE with the flow's marginals: for a :class:`BridgeModel`
  ``dX = f dt + σ dW`` (forward) or the reversed SDE with drift ``b`` (backward); for a
  :class:`FlowModel` with a score ``s`` (a ``"noise"`` head, or ``score_fn``)
  ``dX = (v + ε_t s) dt + √(2 ε_t) dW`` with ``ε_t = diffusion · c(t)`` (vanishing where the path's
  noise ``c`` does, so the drift ``v − diffusion·η`` stays bounded); ``diffusion = 0`` is the ODE.
"""

from __future__ import annotations

from typing import Any, Callable

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np

from jaxdiff import _validation as V
from jaxdiff.flows.models import BridgeModel, FlowModel
from jaxdiff.flows.paths import Interpolant
from jaxdiff.processes import broadcast_time

Array = jax.Array

FLOW_SAMPLERS = ("ode_euler", "ode_heun", "ode_midpoint", "ode_adaptive", "euler_maruyama")
_FIXED = {"ode_euler": (diffrax.Euler, 1), "ode_heun": (diffrax.Heun, 2), "ode_midpoint": (diffrax.Midpoint, 2)}
_ADAPTIVE = {"tsit5": diffrax.Tsit5, "dopri5": diffrax.Dopri5, "dopri8": diffrax.Dopri8}
_DEFAULT_STEPS = {"ode_euler": 100, "ode_heun": 50, "ode_midpoint": 50, "ode_adaptive": 16, "euler_maruyama": 200}


def _velocity_of(params: Any, path: Interpolant, velocity_fn: Callable | None) -> Callable:
    if velocity_fn is not None:
        if not callable(velocity_fn):
            raise TypeError(f"velocity_fn must be callable velocity_fn(params, x, t), got {type(velocity_fn).__name__}.")
        return lambda x, t: velocity_fn(params, x, t)
    if hasattr(params, "velocity") and callable(params.velocity):
        return params.velocity
    raise ValueError(
        "a flow sampler needs a velocity: pass velocity_fn=velocity_fn(params, x, t), or params that carry their "
        f"network (a jaxdiff.flows.FlowModel or BridgeModel); got params of type {type(params).__name__}."
    )


def _sde_terms(params, path, velocity, score_fn, diffusion, direction):
    """``(drift(x, t), noise_scale(t, x))`` of the SDE in flow time (forward: dt > 0)."""
    if isinstance(params, BridgeModel) and score_fn is None:
        sigma = params.sigma
        if direction == "forward":
            return params.forward_drift, lambda t, x: jnp.full_like(x, sigma)
        return params.backward_drift, lambda t, x: jnp.full_like(x, sigma)
    if score_fn is not None:
        score = lambda x, t: score_fn(params, x, t)  # noqa: E731
    elif isinstance(params, FlowModel) and params.has_score:
        score = lambda x, t: params.score(path, x, t)  # noqa: E731
    else:
        raise ValueError(
            "sampler='euler_maruyama' needs a score of the interpolant: a FlowModel with a 'noise' head, a "
            "BridgeModel, or score_fn=score_fn(params, x, t)."
        )
    sign = 1.0 if direction == "forward" else -1.0

    def drift(x, t):
        eps_t = diffusion * broadcast_time(path._coefficients(t)[2], x)
        # forward: v + ε s; in reversed time the drift of dX = (−v + ε s) dτ
        return sign * velocity(x, t) + eps_t * score(x, t)

    def noise_scale(t, x):
        return jnp.sqrt(2.0 * diffusion * broadcast_time(path._coefficients(jnp.broadcast_to(t, (x.shape[0],)))[2], x)
                        * jnp.ones_like(x))

    return drift, noise_scale


@eqx.filter_jit
def _integrate(key, x, t0, t1, params, path, velocity_fn, score_fn, diffusion, *, sampler, steps, solver, rtol, atol,
               max_steps, trajectory, direction):
    velocity = _velocity_of(params, path, velocity_fn)
    sde_parts = None
    if sampler == "euler_maruyama":
        sde_parts = _sde_terms(params, path, velocity, score_fn, diffusion, direction)
    ts = jnp.linspace(t0, t1, steps + 1).astype(x.dtype)
    saveat = diffrax.SaveAt(ts=ts) if trajectory else diffrax.SaveAt(t1=True)

    def batch_t(t, y):
        return jnp.broadcast_to(jnp.asarray(t, y.dtype), (y.shape[0],))

    if sampler == "euler_maruyama":
        drift, noise_scale = sde_parts
        # run in τ = |t − t0| (diffrax's SDE solvers step forward in time)
        sign = 1.0 if direction == "forward" else -1.0
        taus = jnp.abs(ts - t0)
        brownian = diffrax.UnsafeBrownianPath(shape=jax.ShapeDtypeStruct(x.shape, x.dtype), key=key)
        terms = diffrax.MultiTerm(
            diffrax.ODETerm(lambda tau, y, args: drift(y, batch_t(t0 + sign * tau, y))),
            diffrax.ControlTerm(lambda tau, y, args: lx.DiagonalLinearOperator(noise_scale(t0 + sign * tau, y)),
                                brownian),
        )
        sol = diffrax.diffeqsolve(terms, diffrax.Euler(), t0=taus[0], t1=taus[-1], dt0=None, y0=x,
                                  stepsize_controller=diffrax.StepTo(ts=taus),
                                  saveat=diffrax.SaveAt(ts=taus) if trajectory else diffrax.SaveAt(t1=True),
                                  adjoint=diffrax.DirectAdjoint(), max_steps=steps)
        return sol.ys[-1], jnp.asarray(steps), (sol.ys if trajectory else None)
    term = diffrax.ODETerm(lambda t, y, args: velocity(y, batch_t(t, y)))
    if sampler in _FIXED:
        solver_cls, evals = _FIXED[sampler]
        sol = diffrax.diffeqsolve(term, solver_cls(), t0=ts[0], t1=ts[-1], dt0=None, y0=x,
                                  stepsize_controller=diffrax.StepTo(ts=ts), saveat=saveat, max_steps=steps)
        return sol.ys[-1], jnp.asarray(evals * steps), (sol.ys if trajectory else None)
    solver_obj = _ADAPTIVE[solver]()
    sol = diffrax.diffeqsolve(term, solver_obj, t0=ts[0], t1=ts[-1], dt0=(ts[-1] - ts[0]) / steps, y0=x,
                              stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol), saveat=saveat,
                              max_steps=max_steps)
    tableau = solver_obj.tableau
    fsal = int(tableau.fsal)
    nfe = (tableau.num_stages - fsal) * sol.stats["num_steps"] + fsal
    return sol.ys[-1], nfe, (sol.ys if trajectory else None)


def sample_flow(
    key: Array,
    params: Any,
    path: Interpolant,
    *,
    shape: tuple[int, ...] | None = None,
    sampler: str = "ode_adaptive",
    steps: int | None = None,
    x_init: Array | None = None,
    velocity_fn: Callable | None = None,
    score_fn: Callable | None = None,
    diffusion: float = 1.0,
    direction: str = "forward",
    t_start: float | None = None,
    t_end: float | None = None,
    solver: str = "tsit5",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    max_steps: int = 4096,
    source_std: float = 1.0,
    return_info: bool = False,
    trajectory: bool = False,
    dtype: Any = None,
):
    r"""Integrate a flow from the source (``t = 0``) to the target (``t = 1``), or back with
    ``direction="backward"``. The start is ``x_init``, else ``N(0, source_std² I)`` of ``shape``.

    Returns the end states ``[batch, *data]``, or ``(samples, info)`` with ``nfe`` (network
    evaluations), ``ts`` and, with ``trajectory=True``, ``trajectory`` (the states on the grid;
    for ``ode_adaptive`` the grid is ``steps + 1`` uniform save times).
    """
    V.check_choice("sampler", sampler, FLOW_SAMPLERS)
    V.check_choice("direction", direction, ("forward", "backward"))
    V.check_choice("solver", solver, tuple(_ADAPTIVE))
    V.check_positive("rtol", rtol)
    V.check_positive("atol", atol)
    V.check_nonnegative("diffusion", diffusion)
    steps = _DEFAULT_STEPS[sampler] if steps is None else steps
    V.check_int_at_least("steps", steps, 1)
    V.check_int_at_least("max_steps", max_steps, 1)
    if not isinstance(path, Interpolant):
        raise TypeError(f"path must be a jaxdiff interpolant (jaxdiff.LinearInterpolant, ...), got {type(path).__name__}.")
    velocity = _velocity_of(params, path, velocity_fn)
    t_start = (0.0 if direction == "forward" else 1.0) if t_start is None else float(t_start)
    t_end = (1.0 if direction == "forward" else 0.0) if t_end is None else float(t_end)
    for name, value in (("t_start", t_start), ("t_end", t_end)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must lie in [0, 1], got {name}={value!r}.")
    if (t_end - t_start) * (1 if direction == "forward" else -1) <= 0:
        raise ValueError(f"direction={direction!r} needs t_end {'>' if direction == 'forward' else '<'} t_start, "
                         f"got t_start={t_start}, t_end={t_end}.")
    if x_init is not None:
        V.check_floating("x_init", x_init)
        if shape is not None and tuple(shape) != tuple(np.shape(x_init)):
            raise ValueError(f"shape={tuple(shape)} does not match x_init.shape={tuple(np.shape(x_init))}.")
        dtype = jnp.result_type(x_init) if dtype is None else dtype
        x = jnp.asarray(x_init, dtype)
        shape = tuple(x.shape)
    else:
        if shape is None:
            raise ValueError("shape=(batch, *data) is required when x_init is not given.")
        shape = tuple(int(s) for s in shape)
        if len(shape) < 2 or min(shape) < 1:
            raise ValueError(f"shape must be (batch, *data) with positive sizes, got shape={shape}.")
        dtype = jnp.dtype(jnp.result_type(float) if dtype is None else dtype)
        key, k_init = jax.random.split(key)
        x = source_std * jax.random.normal(k_init, shape, dtype)
    if sampler == "euler_maruyama":  # fail before compiling when there is no score
        _sde_terms(params, path, velocity, score_fn, float(diffusion), direction)
    out, nfe, traj = _integrate(
        key, x, jnp.asarray(t_start, x.dtype), jnp.asarray(t_end, x.dtype), params, path, velocity_fn, score_fn,
        float(diffusion), sampler=sampler, steps=int(steps), solver=solver, rtol=float(rtol), atol=float(atol),
        max_steps=int(max_steps), trajectory=bool(trajectory), direction=direction,
    )
    if not return_info:
        return out
    info = {"nfe": nfe, "ts": np.linspace(t_start, t_end, int(steps) + 1)}
    if trajectory:
        info["trajectory"] = traj
    return out, info


def translate(
    key: Array,
    params: Any,
    path: Interpolant | None,
    x_source: Array,
    *,
    sampler: str | None = None,
    direction: str = "forward",
    **options,
) -> Array:
    r"""Carry ``x_source`` from one law to the other along a trained flow or bridge.

    ``direction="forward"`` maps source (``t = 0``) samples to the target, ``"backward"`` target samples
    to the source. With a :class:`FlowModel` the default sampler is the ODE (``ode_adaptive``), with a
    :class:`BridgeModel` the bridge SDE (``euler_maruyama``); ``options`` go to :func:`sample_flow`.
    Models that transport by themselves (neural OT maps, Light SB: anything with a
    ``translate(key, x)`` method) are called directly, with ``path=None``.
    """
    if path is None or not isinstance(path, Interpolant):
        method = getattr(params, "translate", None)
        if callable(method) and path is None:
            if options or sampler is not None or direction != "forward":
                raise ValueError("a model with its own translate(key, x) takes no sampler, direction or options.")
            return method(key, jnp.asarray(x_source))
        raise TypeError(
            f"path must be a jaxdiff interpolant, or None for models with their own translate(key, x); got "
            f"{type(path).__name__} with params of type {type(params).__name__}."
        )
    if sampler is None:
        sampler = "euler_maruyama" if isinstance(params, BridgeModel) else "ode_adaptive"
    return sample_flow(key, params, path, x_init=x_source, sampler=sampler, direction=direction, **options)


def flow_log_likelihood(
    key: Array,
    params: Any,
    path: Interpolant,
    x: Array,
    *,
    velocity_fn: Callable | None = None,
    source_log_prob: Callable | None = None,
    divergence: str = "exact",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    max_steps: int = 4096,
    return_info: bool = False,
):
    r"""``log p₁(x)`` of the flow's target law by the instantaneous change of variables:
    ``log p₁(x₁) = log p₀(x₀) − ∫₀¹ ∇·v(x_t, t) dt``, integrating ``(x, ∫ ∇·v)`` from ``t = 1`` back to 0.

    ``source_log_prob(x0) -> [batch]`` defaults to the standard normal. ``divergence``: ``"exact"`` (D
    JVPs) or ``"hutchinson"`` (one Rademacher probe from ``key``).
    """
    V.check_choice("divergence", divergence, ("exact", "hutchinson"))
    V.check_positive("rtol", rtol)
    V.check_positive("atol", atol)
    V.check_floating("x", x)
    if np.ndim(x) < 2:
        raise ValueError(f"x must have shape (batch, *data), got x.shape={np.shape(x)}.")
    if not isinstance(path, Interpolant):
        raise TypeError(f"path must be a jaxdiff interpolant, got {type(path).__name__}.")
    _velocity_of(params, path, velocity_fn)
    x = jnp.asarray(x)
    latent, delta, nfe = _likelihood_solve(key, x, params, path, velocity_fn, divergence, float(rtol), float(atol),
                                           int(max_steps))
    if source_log_prob is None:
        flat = latent.reshape(latent.shape[0], -1)
        prior = -0.5 * jnp.sum(flat**2, axis=-1) - 0.5 * flat.shape[-1] * jnp.log(2.0 * jnp.pi)
    else:
        prior = source_log_prob(latent)
    log_p = prior + delta
    if return_info:
        return log_p, {"nfe": nfe, "latent": latent, "prior_log_prob": prior, "delta_log_prob": delta}
    return log_p


@eqx.filter_jit
def _likelihood_solve(key, x, params, path, velocity_fn, divergence, rtol, atol, max_steps):
    from jaxdiff.likelihood import _divergence_exact, _divergence_hutchinson

    velocity = _velocity_of(params, path, velocity_fn)
    probe = jax.random.rademacher(key, x.shape, x.dtype)

    def field(t, state, args):
        y, _ = state
        t_b = jnp.broadcast_to(t.astype(y.dtype), (y.shape[0],))
        v = lambda y_: velocity(y_, t_b)  # noqa: E731
        if divergence == "exact":
            return _divergence_exact(v, y)
        return _divergence_hutchinson(v, y, probe)

    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(field), diffrax.Tsit5(), t0=jnp.asarray(1.0, x.dtype), t1=jnp.asarray(0.0, x.dtype),
        dt0=jnp.asarray(-1.0 / 32, x.dtype), y0=(x, jnp.zeros((x.shape[0],), x.dtype)),
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol), max_steps=max_steps,
    )
    nfe = 6 * sol.stats["num_steps"] + 1
    return sol.ys[0][-1], sol.ys[1][-1], nfe
