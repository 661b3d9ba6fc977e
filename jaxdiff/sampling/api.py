"""The front door: ``jaxdiff.sample``."""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff import _validation as V
from jaxdiff.processes import LinearProcess
from jaxdiff.sampling._core import Model, get_spec
from jaxdiff.sampling._grid import GRIDS, check_grid, sigma_tilde, time_grid

Array = jax.Array

_FRONT_DOOR = ("shape", "sampler", "steps", "score_fn", "x_init", "ts", "t_end", "grid", "rho", "sigma_min", "denoise",
               "return_info", "trajectory", "dtype")


def _resolve_score_fn(params: Any, score_fn: Callable | None) -> Callable | None:
    if score_fn is not None:
        if not callable(score_fn):
            raise TypeError(f"score_fn must be a callable score_fn(params, x, t), got {type(score_fn).__name__}.")
        return score_fn
    if hasattr(params, "score") and callable(params.score):
        return None  # the Model asks params.score(sde, x, t)
    raise ValueError(
        "sample() needs a score: pass score_fn=score_fn(params, x, t), or params that carry their network "
        f"(a jaxdiff.ScoreModel, as jaxdiff.load_run gives); got params of type {type(params).__name__} and no score_fn."
    )


def sample(
    key: Array,
    params: Any,
    sde: LinearProcess,
    *,
    shape: tuple[int, ...] | None = None,
    sampler: str | None = None,
    steps: int | None = None,
    score_fn: Callable | None = None,
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
    **options,
):
    r"""Draw samples by running ``sampler`` from the prior at ``t_max`` (or ``x_init``) down to ``t_end``.

    Args:
      key: PRNG key (prior draw and sampler noise).
      params: network parameters; with ``score_fn=None`` they must carry their network (a
        :class:`jaxdiff.ScoreModel`, as training saves it); may be ``None`` with an analytic ``score_fn``.
      sde: the process the score belongs to, or a flow path (a :class:`jaxdiff.LinearInterpolant`,
        ...): then ``params`` is a ``FlowModel``/``BridgeModel`` (or ``velocity_fn=`` is given), the flow
        is integrated from the source ``N(0, I)`` (or ``x_init``) at ``t = 0`` to ``t = 1``, the default
        sampler is ``"ode_adaptive"`` and the options are :func:`jaxdiff.flows.sample_flow`'s.
      shape: ``(batch, *data)`` (taken from ``x_init`` when given).
      sampler: a name of :func:`jaxdiff.samplers` (default ``"euler_maruyama"``; for flows
        ``"ode_adaptive"``).
      steps: number of grid intervals (each sampler has a default).
      score_fn: ``score_fn(params, x, t) -> ∇ log p_t(x)`` with ``t`` of shape ``[batch]``.
      x_init: the state at the first grid time instead of a prior draw (SDEdit, reproducing a run).
      ts: an explicit decreasing grid of process times (overrides ``steps``, ``grid``, ``t_end`` and
        ``sigma_min``).
      t_end: where sampling stops (default ``sde.sampling_eps``); 0 makes the last step return the
        denoised estimate ``E[x_0 | x]``.
      grid: ``"time_uniform"``, ``"logsnr_uniform"``, ``"karras"`` (with ``rho``) or
        ``"time_quadratic"``; default: the sampler's.
      sigma_min: the smallest nonzero ``σ̃ = σ/α`` of a ``logsnr_uniform`` or ``karras`` grid (default
        ``σ̃(sde.sampling_eps)``).
      denoise: finish with a Tweedie step ``x ← E[x_0 | x_{t_end}]`` (1 NFE).
      return_info: also return ``info`` with ``nfe`` (network evaluations used), ``ts`` (the grid) and,
        with ``trajectory=True``, ``trajectory`` (the state at every time the sampler visited, then the
        final Tweedie estimate if one was taken) with its times ``trajectory_ts`` (0 for that estimate).
        Samplers that cannot step onto ``t = 0`` (diffrax ODE/SDE solvers, ``pc``, annealed Langevin)
        replace a last interval ``[t, 0]`` by a Tweedie step at ``t``; ``ode_adaptive`` first integrates
        on to ``sde.sampling_eps``.
      dtype: of the samples (default: ``x_init``'s, else JAX's default float).
      **options: the sampler's own options (see ``jaxdiff.samplers()[sampler]["options"]``).
    Returns:
      ``samples`` of ``shape``, or ``(samples, info)``.
    """
    from jaxdiff.flows.paths import Interpolant

    if isinstance(sde, Interpolant):  # a flow path: integrate its ODE/SDE from the source at t = 0
        from jaxdiff.flows.sampling import sample_flow

        if score_fn is not None:
            options["score_fn"] = score_fn
        for name, value in (("ts", ts), ("grid", grid), ("sigma_min", sigma_min), ("t_end", t_end)):
            if value is not None:
                raise ValueError(f"{name} is a diffusion-sampler argument; flow paths take steps, t_start/t_end via "
                                 "jaxdiff.flows.sample_flow, and their own options.")
        if denoise:
            raise ValueError("denoise=True is a diffusion-sampler argument; flows end at t = 1 without a Tweedie step.")
        return sample_flow(key, params, sde, shape=shape, sampler="ode_adaptive" if sampler is None else sampler,
                           steps=steps, x_init=x_init, return_info=return_info, trajectory=trajectory, dtype=dtype,
                           **options)
    sampler = "euler_maruyama" if sampler is None else sampler
    spec = get_spec(sampler)
    public_options = {k: v for k, v in spec.options.items() if not k.startswith("_")}
    unknown = sorted(set(options) - set(public_options))
    if unknown:
        raise ValueError(
            f"unknown option(s) {unknown} for sampler={sampler!r}; its options are {sorted(public_options)} "
            f"(and sample() takes {list(_FRONT_DOOR)})."
        )
    if not isinstance(sde, LinearProcess):
        raise TypeError(f"sde must be a jaxdiff process (a LinearProcess), got {type(sde).__name__}.")
    merged = {**spec.options, **options}
    for name, value in options.items():
        if not isinstance(value, (bool, int, float, str, type(None))):
            raise TypeError(f"option {name} must be a bool, number, string or None, got {type(value).__name__}.")
    _check_option_values(sampler, merged)
    resolved_score = _resolve_score_fn(params, score_fn)

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

    if ts is not None:  # an explicit grid overrides steps, grid, t_end and sigma_min
        grid_np = check_grid(sde, ts)
    else:
        steps = spec.default_steps if steps is None else steps
        V.check_int_at_least("steps", steps, 1)
        grid_name = spec.default_grid if grid is None else grid
        V.check_choice("grid", grid_name, GRIDS)
        if sigma_min is None and t_end == 0 and spec.default_sigma_min is not None and grid_name == spec.default_grid:
            sigma_min = spec.default_sigma_min(steps)
        grid_np = time_grid(sde, steps, grid_name, t_end=t_end, rho=rho, sigma_min=sigma_min)

    ends_at_zero = bool(grid_np[-1] == 0.0)
    # The grid the sampler itself runs on, and where (if anywhere) a final Tweedie step is taken.
    run_grid, final_t = grid_np, None
    if ends_at_zero and not spec.handles_zero:
        run_grid = grid_np[:-1]
        if spec.adaptive and run_grid[-1] > sde.sampling_eps:
            run_grid = np.append(run_grid, float(sde.sampling_eps))  # integrate on to sampling_eps
        final_t = float(run_grid[-1])
    elif denoise and not ends_at_zero:
        final_t = float(grid_np[-1])
    merged["_ends_at_zero"] = ends_at_zero and spec.handles_zero
    if "_log_sigma_tilde" in spec.options:  # samplers whose coefficients are precomputed from the grid
        with jax.ensure_compile_time_eval():
            s_tilde = np.asarray(sigma_tilde(sde, jnp.asarray(run_grid)), np.float64)
        merged["_log_sigma_tilde"] = tuple(float(v) for v in np.log(np.where(s_tilde > 0, s_tilde, 1.0)))
    static_options = tuple(sorted(merged.items()))

    samples, nfe, traj = _run(
        key,
        params,
        sde,
        None if x_init is None else jnp.asarray(x_init, dtype),
        jnp.asarray(run_grid, dtype),
        None if final_t is None else jnp.asarray(final_t, dtype),
        sampler=sampler,
        options=static_options,
        shape=shape,
        dtype=dtype.name,
        score_fn=resolved_score,
        trajectory=bool(trajectory),
    )
    if not return_info:
        return samples
    info = {"nfe": nfe, "ts": grid_np}
    if trajectory:
        info["trajectory_ts"] = run_grid if final_t is None else np.append(run_grid, 0.0)
    if trajectory:
        info["trajectory"] = traj
    return samples, info


def _check_option_values(sampler: str, options: dict) -> None:
    if sampler in ("ddim", "ddpm") and options["clip_x0"] is not None:
        V.check_positive("clip_x0", options["clip_x0"])
    if sampler == "ddim":
        V.check_nonnegative("eta", options["eta"])
    if sampler == "ddpm":
        V.check_choice("variance", options["variance"], ("posterior", "beta"))
    if sampler == "langevin":
        V.check_positive("step_size", options["step_size"])
    if sampler == "annealed_langevin":
        V.check_int_at_least("n_steps_each", options["n_steps_each"], 1)
        V.check_positive("step_lr", options["step_lr"])
    if sampler == "pc":
        V.check_positive("snr", options["snr"])
        V.check_int_at_least("n_corrector", options["n_corrector"], 0)
    if sampler == "edm_heun":
        V.check_nonnegative("s_churn", options["s_churn"])
        V.check_nonnegative("s_noise", options["s_noise"])
    if sampler == "ode_adaptive":
        V.check_choice("solver", options["solver"], ("tsit5", "dopri5", "dopri8"))
    if sampler == "sde":
        V.check_choice("solver", options["solver"], ("shark", "sra1", "sea"))
    if sampler == "exp_abm":
        if options["order"] is not None:
            V.check_int_at_least("order", options["order"], 1)
        V.check_choice("final", options["final"], ("extrapolate", "denoise"))
        if options["sigma_data"] is not None:
            V.check_positive("sigma_data", options["sigma_data"])
    if sampler in ("ode_adaptive", "sde"):
        if options["rtol"] is not None:
            V.check_positive("rtol", options["rtol"])
            V.check_positive("atol", options["atol"])
        V.check_int_at_least("max_steps", options["max_steps"], 1)


@functools.partial(jax.jit, static_argnames=("sampler", "options", "shape", "dtype", "score_fn", "trajectory"))
def _run(key, params, sde, x_init, run_ts, final_t, *, sampler, options, shape, dtype, score_fn, trajectory):
    spec = get_spec(sampler)
    model = Model(sde=sde, score_fn=score_fn, params=params)
    k_prior, k_run = jax.random.split(key)
    x = sde.prior_sample(k_prior, shape, dtype) if x_init is None else x_init
    nfe = 0
    traj = x[None] if trajectory else None
    if run_ts.shape[0] >= spec.min_points:
        x, nfe, traj = spec.fn(k_run, x, run_ts, model, dict(options), trajectory)
    if final_t is not None:
        x = model.denoise(x, final_t)
        nfe = nfe + 1
        if trajectory:
            traj = jnp.concatenate([traj, x[None]], axis=0)
    return x, jnp.asarray(nfe), traj
