"""The front door: ``jaxdiff.sample``, ``jaxdiff.translate`` (and the flow-time convenience ``sample_flow``).

No branch on the model family: a process or an interpolant (read as a :class:`jaxdiff.paths.FlowProcess`,
the one place where flow time becomes process time), and a model wrapper (``ScoreModel``, ``FlowModel``,
``BridgeModel``, or an analytic ``score_fn=`` / ``velocity_fn=``) go to the same registry of samplers.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff import _validation as V
from jaxdiff.parameterization import FunctionModel, ModelWrapper, ScoreMethodModel, TimeReversed
from jaxdiff.paths import FlowProcess, Interpolant
from jaxdiff.processes import LinearProcess
from jaxdiff.sampling import _calibrate
from jaxdiff.sampling._core import get_spec
from jaxdiff.sampling._engine import TRACES, _plan, _run, merged_options, sampler_grid  # noqa: F401  (TRACES: re-exported)
from jaxdiff.sampling._grid import GRIDS, check_grid

Array = jax.Array

_FRONT_DOOR = ("shape", "sampler", "steps", "score_fn", "velocity_fn", "x_init", "ts", "t_end", "grid", "rho",
               "sigma_min", "denoise", "return_info", "trajectory", "dtype", "cond", "guidance", "guide_model")


def resolve_model(params: Any, score_fn: Callable | None = None, velocity_fn: Callable | None = None, *,
                  flow_time: bool = False, takes_cond: bool = False) -> ModelWrapper:
    """The model wrapper the samplers use: ``params`` itself when it is one (``ScoreModel``, ``FlowModel``,
    ``BridgeModel``, as training saves them), else an analytic :class:`FunctionModel` from ``velocity_fn``
    (``dx/dt`` in flow time; with ``score_fn`` as its score) or ``score_fn``. ``flow_time``: ``score_fn``
    takes flow time (it was given with an interpolant). ``takes_cond``: the functions are ``f(params, x, t, cond)``
    (``cond`` int labels ``[batch]``, or None for the unconditional branch)."""
    for name, fn in (("score_fn", score_fn), ("velocity_fn", velocity_fn)):
        if fn is not None and not callable(fn):
            raise TypeError(f"{name} must be a callable {name}(params, x, t), got {type(fn).__name__}.")
    if velocity_fn is not None:
        return FunctionModel(velocity_fn, params, kind="flow_velocity", flow_time=True, score_fn=score_fn,
                             score_flow_time=flow_time, takes_cond=takes_cond)
    if score_fn is not None:
        return FunctionModel(score_fn, params, kind="score", flow_time=flow_time, takes_cond=takes_cond)
    if isinstance(params, ModelWrapper):
        return params
    if callable(getattr(params, "score", None)):  # any object with score(sde, x, t), e.g. a user's own wrapper
        return ScoreMethodModel(params)
    raise ValueError(
        "sampling needs a score or a velocity: pass score_fn=score_fn(params, x, t) or velocity_fn=velocity_fn(params, x, t), or "
        "params that carry their network (a jaxdiff.ScoreModel, FlowModel or BridgeModel, as jaxdiff.load_run "
        f"gives); got params of type {type(params).__name__} and neither score_fn nor velocity_fn."
    )


def sample(
    key: Array,
    params: Any,
    sde: LinearProcess | Interpolant,
    *,
    shape: tuple[int, ...] | None = None,
    sampler: str | None = None,
    steps: int | None = None,
    score_fn: Callable | None = None,
    velocity_fn: Callable | None = None,
    x_init: Array | None = None,
    ts: Any = None,
    t_end: float | None = None,
    grid: str | None = None,
    rho: float = 7.0,
    sigma_min: float | None = None,
    denoise: bool = False,
    return_info: bool = False,
    trajectory: bool = False,
    dtype: Any = None,
    cond: Any = None,
    guidance: float | None = None,
    guide_model: Any = None,
    **options,
):
    r"""Draw samples by running ``sampler`` from the noise end (or ``x_init``) to the data end.

    Args:
      key: PRNG key (prior draw and sampler noise).
      params: a model wrapper (:class:`jaxdiff.ScoreModel`, ``FlowModel``, ``BridgeModel``: what training
        saves), or the parameters given to ``score_fn`` / ``velocity_fn`` (``None`` for analytic ones).
      sde: a process (:class:`jaxdiff.VPSDE`, ...; data at ``t = 0``), or an interpolant path
        (:class:`jaxdiff.LinearInterpolant`, ...; source ``N(0, I)`` at ``t = 0``, target at ``t = 1``), which
        is read as :class:`jaxdiff.paths.FlowProcess` (process time ``1 − t``): then ``t_end`` and ``ts`` are
        flow times (``t_end`` default 1, ``ts`` increasing) and user functions receive flow time.
      shape: ``(batch, *data)`` (taken from ``x_init`` when given).
      sampler: a name of :func:`jaxdiff.samplers` (default ``"euler_maruyama"``; on an interpolant
        ``"ode_adaptive"``). Every sampler runs on every model: the Gaussian ones (``ddim``, ``dpmpp_2m``,
        ``exp_abm``, ...) need a Gaussian source end, which an interpolant from ``N(0, I)`` has.
      steps: number of grid intervals (each sampler has a default).
      score_fn: ``score_fn(params, x, t) -> ∇ log p_t(x)`` with ``t`` of shape ``[batch]``.
      velocity_fn: ``velocity_fn(params, x, t) -> dx/dt`` in flow time (``t: [batch]``, 0 at the noise end);
        with ``score_fn`` too, the SDE samplers use that score.
      x_init: the state at the first grid time instead of a prior draw (SDEdit, reproducing a run).
      ts: an explicit grid (overrides ``steps``, ``grid``, ``t_end`` and ``sigma_min``).
      t_end: where sampling stops (default ``sde.sampling_eps``; 0 on a flow, its target); 0 makes
        the last step return the denoised estimate ``E[x_0 | x]`` (a velocity model integrates onto 0).
      grid: ``"time_uniform"``, ``"logsnr_uniform"``, ``"karras"`` (with ``rho``), ``"time_quadratic"``, or
        ``"calibrated"``: the grid fitted to this model for this sampler and ``steps``
        (:func:`jaxdiff.calibrated_grid`, on a batch of at most 128 of ``shape``'s rows from a fixed key; the result is
        cached for the same model object, and ``info["ts"]`` returns it for reuse as ``ts``); default: the sampler's.
      sigma_min: the smallest nonzero ``σ̃ = σ/α`` of a ``logsnr_uniform`` or ``karras`` grid ending at 0.
      denoise: finish with a Tweedie step ``x ← E[x_0 | x_{t_end}]`` (1 NFE).
      return_info: also return ``info`` with ``nfe`` (network evaluations used), ``ts`` (the grid, process
        time) and, with ``trajectory=True``, ``trajectory`` (the state at every time the sampler visited, then
        the final Tweedie estimate if one was taken) with its times ``trajectory_ts`` (0 for that estimate).
        Samplers that cannot step onto ``t = 0`` with a score (diffrax ODE/SDE solvers, ``pc``, annealed
        Langevin) replace a last interval ``[t, 0]`` by a Tweedie step at ``t`` (``ode_adaptive`` first
        integrates on to ``sde.sampling_eps``); with a velocity model the ODE solvers and Euler–Maruyama
        integrate onto 0 themselves.
      dtype: of the samples (default: ``x_init``'s, else JAX's default float).
      cond: class labels, an int or ints ``[batch]`` in ``[0, num_classes)``, for a conditional model (trained
        with ``model.num_classes``) or ``score_fn``/``velocity_fn`` of the form ``f(params, x, t, cond)`` (``cond``
        None is their unconditional branch).
      guidance: classifier-free guidance weight ``w``: the model is replaced by
        ``(1 + w)·f(·, cond) − w·f(·, None)`` (:class:`jaxdiff.guidance.Guided`) in the prediction every sampler
        asks for; 0 or None is the purely conditional model (one branch).
      guide_model: autoguidance: a second (weaker) model of the same family as the reference branch instead of
        the unconditional one (needs ``guidance``).
      **options: the sampler's own options (see ``jaxdiff.samplers()[sampler]["options"]``).
    Returns:
      ``samples`` of ``shape``, or ``(samples, info)``.
    """
    is_path = isinstance(sde, Interpolant)
    if is_path:
        process = sde.as_process()
        t_end = 0.0 if t_end is None else 1.0 - _flow_time("t_end", t_end)
        if ts is not None:
            ts = 1.0 - np.asarray(ts, np.float64)
    else:
        process = sde
    model = resolve_model(params, score_fn, velocity_fn, flow_time=is_path, takes_cond=cond is not None)
    model = _condition(model, cond, guidance, guide_model, shape, x_init)
    return _sample(key, model, process, shape=shape, sampler=sampler or ("ode_adaptive" if is_path else "euler_maruyama"),
                   steps=steps, x_init=x_init, ts=ts, t_end=t_end, grid=grid, rho=rho, sigma_min=sigma_min,
                   denoise=denoise, return_info=return_info, trajectory=trajectory, dtype=dtype, options=options,
                   whole_batch=cond is not None)


def calibrated_grid(key: Array, params: Any, process_or_path: LinearProcess | Interpolant, *, sampler: str,
                    steps: int | None = None, shape: tuple[int, ...], score_fn: Callable | None = None,
                    velocity_fn: Callable | None = None, t_end: float | None = None, iterations: int = 100,
                    learning_rate: float = 0.1, reference_steps: int = 256, dtype: Any = None,
                    return_info: bool = False, log: Callable[[str], None] | None = None, **options):
    r"""The time grid of ``sampler`` with ``steps`` intervals fitted to this model (see
    :mod:`jaxdiff.sampling._calibrate`): pass it to :func:`jaxdiff.sample` as ``ts=`` (no recompilation: a
    grid is a traced argument).

    Args:
      key: PRNG key of the calibration batch's prior noise.
      params, score_fn, velocity_fn: the model, as for :func:`jaxdiff.sample` (a model wrapper, or parameters
        with an analytic ``score_fn(params, x, t)`` / ``velocity_fn(params, x, t)``).
      process_or_path: a process (the grid is in process time, decreasing), or an interpolant path (the grid
        is in flow time, increasing from 0), as ``sample`` takes ``ts``.
      sampler: one of ``ddim`` (η = 0), ``dpmpp_2m``, ``dpmpp_3m``, ``edm_heun`` (no churn), ``ode_euler``,
        ``ode_heun``, ``ode_midpoint``.
      steps: grid intervals (NFE = steps for the one-evaluation samplers; default the sampler's).
      shape: ``(batch, *data)`` of the calibration batch (a few hundred rows suffice: the grid has ``steps``
        parameters).
      t_end: where sampling stops, as in ``sample`` (default ``sampling_eps``, 0 on a path); 0 lets the last
        noisy time be fitted too.
      iterations, learning_rate: Adam on the interval logits; reference_steps: the reference solve's steps.
      dtype: of the calibration batch and the solves (default JAX's default float: calibrate in the precision you
        sample in).
      return_info: also return the info dict (``rule_losses`` of the fixed rules, ``start``, ``loss``).
      **options: the sampler's options.
    Returns:
      ``ts`` (float64 numpy, ``steps + 1`` times), or ``(ts, info)``.
    """
    is_path = isinstance(process_or_path, Interpolant)
    if is_path:
        process = process_or_path.as_process()
        t_end = 0.0 if t_end is None else 1.0 - _flow_time("t_end", t_end)
    elif isinstance(process_or_path, LinearProcess):
        process = process_or_path
        if t_end is None:  # as sample(): a flow runs to its target, a diffusion to sampling_eps
            t_end = 0.0 if isinstance(process, FlowProcess) else float(process.sampling_eps)
        t_end = float(t_end)
    else:
        raise TypeError(f"process_or_path must be a jaxdiff process or an interpolant path, got "
                        f"{type(process_or_path).__name__}.")
    lo, hi = process.time_domain
    V.check_time("t_end", t_end, lo, hi, type(process).__name__)
    model = resolve_model(params, score_fn, velocity_fn, flow_time=is_path)
    grid, info = _calibrate.calibrate(key, model, process, sampler, steps=steps, shape=shape, t_end=t_end, dtype=dtype,
                           options=options, iterations=iterations, learning_rate=learning_rate, reference_steps=reference_steps, log=log)
    if is_path:
        grid = 1.0 - grid
    return (grid, info) if return_info else grid


def _condition(model, cond, guidance, guide_model, shape, x_init):
    """The conditioned / guided model (:func:`jaxdiff.guidance.condition_model`) for a batch of ``shape[0]``."""
    if cond is None and guidance is None and guide_model is None:
        return model
    from jaxdiff.guidance import condition_model

    if x_init is not None:
        batch = int(np.shape(x_init)[0])
    elif shape is not None and len(tuple(shape)) >= 1:
        batch = int(tuple(shape)[0])
    else:
        raise ValueError("shape=(batch, *data) is required when x_init is not given.")
    guide = None if guide_model is None else resolve_model(guide_model)
    return condition_model(model, cond, guidance, guide, batch=batch)


def _flow_time(name: str, value: Any) -> float:
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} is a flow time and must lie in [0, 1] (source 0, target 1), got {name}={value!r}.")
    return value


def translate(
    key: Array,
    params: Any,
    path: Interpolant | None,
    x_source: Array,
    *,
    sampler: str | None = None,
    direction: str = "forward",
    steps: int | None = None,
    score_fn: Callable | None = None,
    velocity_fn: Callable | None = None,
    t_start: float | None = None,
    t_end: float | None = None,
    return_info: bool = False,
    trajectory: bool = False,
    cond: Any = None,
    guidance: float | None = None,
    guide_model: Any = None,
    **options,
):
    r"""Carry ``x_source`` from one law to the other along a trained flow or bridge, through the same
    samplers as :func:`sample`.

    ``direction="forward"`` maps source (``t = 0``) samples to the target, ``"backward"`` target samples
    to the source (the model is read on the reversed path, :class:`jaxdiff.parameterization.TimeReversed`).
    ``t_start``/``t_end`` are flow times (defaults: the two ends). ``path``: an interpolant, or a run's
    :class:`jaxdiff.paths.FlowProcess` (``run.path``: its interpolant is used). The source is a data law here, so the
    Gaussian samplers are refused; default sampler: ``ode_adaptive``, or for a ``BridgeModel`` its SDE
    ``euler_maruyama`` (``dX = f dt + σ dW``). Models that transport by themselves (neural OT maps, Light SB:
    anything with a ``translate(key, x)`` method) are called directly, with ``path=None``. ``cond``, ``guidance``,
    ``guide_model``: class conditions and guidance as in :func:`sample`.
    """
    if isinstance(path, FlowProcess):  # a run's path (run.path): translate along its interpolant
        path = path.path
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
    from jaxdiff.parameterization import BridgeModel

    V.check_choice("direction", direction, ("forward", "backward"))
    model = resolve_model(params, score_fn, velocity_fn, flow_time=True, takes_cond=cond is not None)
    if sampler is None:
        sampler = "euler_maruyama" if isinstance(model, BridgeModel) else "ode_adaptive"
    model = _condition(model, cond, guidance, guide_model, None, x_source)
    process = path.as_process(gaussian_source=False)
    forward = direction == "forward"
    t_start = _flow_time("t_start", (0.0 if forward else 1.0) if t_start is None else t_start)
    t_end = _flow_time("t_end", (1.0 if forward else 0.0) if t_end is None else t_end)
    if (t_end - t_start) * (1 if forward else -1) <= 0:
        raise ValueError(f"direction={direction!r} needs t_end {'>' if forward else '<'} t_start, "
                         f"got t_start={t_start}, t_end={t_end}.")
    if forward:
        s_start, s_end = 1.0 - t_start, 1.0 - t_end
    else:  # the reversed path's process time is the original flow time
        model = TimeReversed(model, process)
        process = path.reversed().as_process(gaussian_source=False)
        s_start, s_end = t_start, t_end
    x_source = jnp.asarray(x_source)
    V.check_floating("x_source", x_source)
    steps = get_spec(sampler).default_steps if steps is None else steps
    V.check_int_at_least("steps", steps, 1)
    grid = None if s_start == 1.0 else np.linspace(s_start, s_end, int(steps) + 1)
    return _sample(key, model, process, shape=None, sampler=sampler, steps=steps, x_init=x_source, ts=grid,
                   t_end=s_end, grid="time_uniform", rho=7.0, sigma_min=None, denoise=False, return_info=return_info,
                   trajectory=trajectory, dtype=None, options=options)


def sample_flow(key: Array, params: Any, path: Interpolant, *, shape=None, sampler: str = "ode_adaptive", steps=None,
                x_init=None, velocity_fn=None, score_fn=None, diffusion: float = 1.0, direction: str = "forward",
                t_start=None, t_end=None, solver: str = "tsit5", rtol: float = 1e-5, atol: float = 1e-5,
                max_steps: int = 4096, source_std: float = 1.0, return_info: bool = False, trajectory: bool = False,
                dtype=None):
    r"""The flow-time convenience of :func:`sample` / :func:`translate` (``jaxdiff.flows.sample_flow``): from
    ``x_init`` (or ``N(0, source_std² I)``) at flow time ``t_start`` to ``t_end``; ``direction="backward"``
    runs from the target back to the source. ``solver, rtol, atol, max_steps`` go to ``ode_adaptive``,
    ``diffusion`` to the SDE samplers; everything else as :func:`sample`."""
    options = {}
    if sampler == "ode_adaptive":
        options.update(solver=solver, rtol=rtol, atol=atol, max_steps=max_steps)
    if sampler in ("euler_maruyama", "sde"):
        options["diffusion"] = float(diffusion)
    if x_init is not None or direction != "forward" or t_start not in (None, 0.0):
        if x_init is None:
            raise ValueError("x_init is required with direction='backward' or t_start > 0.")
        return translate(key, params, path, x_init, sampler=sampler, direction=direction, steps=steps,
                         score_fn=score_fn, velocity_fn=velocity_fn, t_start=t_start, t_end=t_end,
                         return_info=return_info, trajectory=trajectory, **options)
    process = path.as_process(source_std=source_std) if isinstance(path, Interpolant) else path
    if not isinstance(path, Interpolant):
        raise TypeError(f"path must be a jaxdiff interpolant (jaxdiff.LinearInterpolant, ...), got {type(path).__name__}.")
    model = resolve_model(params, score_fn, velocity_fn, flow_time=True)
    s_end = 0.0 if t_end is None else 1.0 - _flow_time("t_end", t_end)
    return _sample(key, model, process, shape=shape, sampler=sampler, steps=steps, x_init=None, ts=None, t_end=s_end,
                   grid=None, rho=7.0, sigma_min=None, denoise=False, return_info=return_info, trajectory=trajectory,
                   dtype=dtype, options=options)


def _sample(key, model, sde, *, shape, sampler, steps, x_init, ts, t_end, grid, rho, sigma_min, denoise, return_info,
            trajectory, dtype, options, whole_batch=False):
    spec = get_spec(sampler)
    if not isinstance(sde, LinearProcess):
        raise TypeError(f"sde must be a jaxdiff process (a LinearProcess) or an interpolant path, got "
                        f"{type(sde).__name__}.")
    merged = merged_options(sampler, spec, options, f" (and sample() takes {list(_FRONT_DOOR)})")

    if x_init is not None:
        V.check_floating("x_init", x_init)
        if shape is not None and tuple(shape) != tuple(np.shape(x_init)):
            raise ValueError(f"shape={tuple(shape)} does not match x_init.shape={tuple(np.shape(x_init))}.")
        shape = tuple(np.shape(x_init))
        dtype = jnp.result_type(x_init) if dtype is None else dtype
    if shape is None:
        raise ValueError("shape=(batch, *data) is required when x_init is not given.")
    shape = tuple(int(s) for s in shape)
    if len(shape) < 2 or min(shape) < 1:
        raise ValueError(f"shape must be (batch, *data) with positive sizes, got shape={shape}.")
    dtype = jnp.dtype(jnp.result_type(float) if dtype is None else dtype)
    if isinstance(sde, FlowProcess):
        if not sde.gaussian_source and x_init is None:
            raise ValueError("a flow between two data laws has no prior to draw from: pass x_init (source samples).")
        t_end = 0.0 if t_end is None else t_end  # a flow runs to its target

    if ts is None and grid is not None:
        V.check_choice("grid", grid, GRIDS + ("calibrated",))
    if ts is not None:  # an explicit grid overrides steps, grid, t_end and sigma_min
        grid_np = check_grid(sde, ts)
    elif grid == "calibrated":
        grid_np = _calibrate.calibrate_for_sample(model, sde, spec, steps=steps, shape=shape,
                                       t_end=float(sde.sampling_eps if t_end is None else t_end), dtype=dtype,
                                       options=options, whole_batch=whole_batch)
    else:
        grid_np = sampler_grid(spec, sde, steps, grid, t_end=t_end, rho=rho, sigma_min=sigma_min)

    plan = _plan(spec, model, sde, grid_np, denoise, merged)
    run_grid, final_t = plan.run_points(grid_np)
    samples, nfe, traj = _run(
        key,
        model,
        sde,
        None if x_init is None else jnp.asarray(x_init, dtype),
        jnp.asarray(run_grid, dtype),
        None if final_t is None else jnp.asarray(final_t, dtype),
        sampler=sampler,
        options=plan.options,
        shape=shape,
        dtype=dtype.name,
        trajectory=bool(trajectory),
        first_step=plan.first_step,
        diffusion=plan.diffusion,
    )
    if not return_info:
        return samples
    info = {"nfe": nfe, "ts": grid_np}
    if trajectory:
        info["trajectory_ts"] = run_grid if final_t is None else np.append(run_grid, 0.0)
        info["trajectory"] = traj
    return samples, info

