r"""Model-calibrated time grids: the grid a deterministic sampler runs best on, fitted to the model itself.

A fixed grid rule (uniform in t, in log-SNR, EDM's ρ = 7) encodes a guess of where the probability-flow
ODE bends; where it really bends depends on the data's scales, which only the model knows. Here the grid
is *learned* for one sampler and one step budget (as in LD3, Tong et al. 2025, "Learning to Discretize
Denoising Diffusion ODEs"): draw a calibration batch of prior noise ``x_T``, solve the model's own
probability-flow ODE finely from it (the reference ``x_ref``, DPM-Solver++(3M) on a dense log-SNR grid
that ends below every data scale), and minimise over the grid

    ``L(ts) = mean_b ‖ Sampler(x_T^b; ts) − x_ref^b ‖₂``

by gradient descent (Adam) through the sampler itself: the samplers are ``lax.scan``s whose coefficients
are functions of the (traced) grid, so ``∂L/∂ts`` is exact. The grid is parametrised by the logits of its
interval lengths (``t_i = t_end + (t_max − t_end) Σ_{j ≥ i} softmax(θ)_j``): every θ is a strictly decreasing
grid with the same end points, and the last noisy time of a grid ending at 0 is free. The search starts
from the best of the fixed rules on the same batch and keeps the best grid seen, so a calibrated grid is
never worse than the fixed rules on the calibration batch.

Only the sampler's error against the model's own ODE is measured: the calibrated grid makes a 10-step
sampler reproduce what a 256-step solve of the same model would give, whatever the model's quality.
"""

from __future__ import annotations

import functools
import weakref
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxdiff import _validation as V
from jaxdiff import _xla
from jaxdiff.processes import LinearProcess
from jaxdiff.sampling._core import get_spec
from jaxdiff.sampling._engine import _plan, _run, merged_options, sampler_grid
from jaxdiff.sampling._grid import GRIDS, time_grid

Array = jax.Array

# The deterministic samplers whose update is a differentiable function of the grid.
CALIBRATABLE = ("ddim", "dpmpp_2m", "dpmpp_3m", "edm_heun", "ode_euler", "ode_heun", "ode_midpoint")
REFERENCE_SAMPLER = "dpmpp_3m"
REFERENCE_SIGMA_MIN = 1e-4  # the reference solve's last noisy σ̃ (below the scales of any data it is meant for)
CALIBRATION_ROWS = 128  # sample(grid="calibrated") calibrates on at most this many rows of its batch


def check_calibratable(sampler: str, options: dict) -> None:
    """Refuse samplers a grid cannot be fitted for (stochastic, adaptive, or with grid-precomputed coefficients)."""
    if sampler not in CALIBRATABLE:
        raise ValueError(
            f"grid='calibrated' (jaxdiff.calibrated_grid) fits the grid of a deterministic fixed-grid sampler: "
            f"sampler must be one of {list(CALIBRATABLE)}, got sampler={sampler!r} (stochastic and adaptive samplers "
            "have no single trajectory to match; exp_abm precomputes its coefficients from the grid on the host)."
        )
    if sampler == "ddim" and float(options.get("eta", 0.0)) != 0.0:
        raise ValueError(f"grid='calibrated' needs the deterministic DDIM (eta=0), got eta={options['eta']!r}.")
    if sampler == "edm_heun" and float(options.get("s_churn", 0.0)) != 0.0:
        raise ValueError(f"grid='calibrated' needs the deterministic Heun sampler (s_churn=0), got "
                         f"s_churn={options['s_churn']!r}.")


def grid_from_logits(theta: Array, t_start: Array, t_end: Array) -> Array:
    """``t_i = t_end + (t_start − t_end) Σ_{j ≥ i} softmax(θ)_j``, ``i = 0 … len(θ)``: a strictly decreasing grid
    from ``t_start`` to ``t_end`` (summed from the end, so small last intervals keep their relative precision)."""
    weights = jax.nn.softmax(theta)
    tail = jnp.cumsum(weights[::-1])[::-1]  # Σ_{j ≥ i} w_j, i = 0 … n−1 (tail[0] = 1)
    grid = t_end + (t_start - t_end) * jnp.concatenate([tail, jnp.zeros((1,), tail.dtype)])
    return grid.at[0].set(t_start).at[-1].set(t_end)


def logits_of_grid(grid: np.ndarray) -> np.ndarray:
    """The θ of :func:`grid_from_logits` that gives ``grid`` (the logs of its interval lengths)."""
    grid = np.asarray(grid, np.float64)
    return np.log(-np.diff(grid))


def reference_grid(sde: LinearProcess, t_start: float, t_end: float, steps: int) -> np.ndarray:
    """The reference solve's grid: ``steps`` log-SNR-uniform intervals from ``t_start`` to ``t_end``, or, when
    ``t_end = 0``, down to ``σ̃ = max(1e-4, 1.001·σ̃_floor)`` and then 0 (its last step returns ``E[x_0 | x]``)."""
    if t_end > 0:
        return time_grid(sde, steps, "logsnr_uniform", t_start=t_start, t_end=t_end)
    lo = sde.time_domain[0]
    with jax.ensure_compile_time_eval():
        floor = float(sde._sigma(jnp.asarray(lo)) / sde._alpha(jnp.asarray(lo)))
    s_min = max(REFERENCE_SIGMA_MIN, 1.001 * floor) if floor > 0 else REFERENCE_SIGMA_MIN
    return time_grid(sde, steps, "logsnr_uniform", t_start=t_start, t_end=0.0, sigma_min=s_min)


@functools.partial(_xla.jit, static_argnames=("sampler", "options", "shape", "dtype", "first_step", "diffusion",
                                             "plan"))
def _loss_and_grad(theta, model, sde, x_init, reference, t_start, t_end, *, sampler, options, shape, dtype,
                   first_step, diffusion, plan):
    """``(L(θ), ∂L/∂θ)`` with ``L`` the mean Euclidean distance of the sampler's outputs to the reference."""

    def loss(theta):
        run_grid, final_t = plan.run_points(grid_from_logits(theta, t_start, t_end))
        x, _, _ = _run(jax.random.PRNGKey(0), model, sde, x_init, run_grid, final_t, sampler=sampler,
                       options=options, shape=shape, dtype=dtype, trajectory=False, first_step=first_step,
                       diffusion=diffusion)
        sq = jnp.sum(jnp.square(x - reference).reshape(x.shape[0], -1), axis=-1)
        return jnp.mean(jnp.sqrt(sq + jnp.finfo(x.dtype).tiny))

    return jax.value_and_grad(loss)(theta)


def calibrate(key: Array, model: Any, sde: LinearProcess, sampler: str, *, steps: int | None, shape: tuple[int, ...],
              t_end: float, dtype: Any = None, options: dict | None = None, iterations: int = 100,
              learning_rate: float = 0.1, reference_steps: int = 256, log: Callable[[str], None] | None = None,
              ) -> tuple[np.ndarray, dict]:
    """The calibrated grid (process time, float64, decreasing) of ``sampler`` with ``steps`` intervals for the
    resolved model wrapper ``model`` on ``sde``, and an info dict (losses of the fixed rules, the start rule, the
    calibrated loss, the iterations run). See the module docstring for the method."""
    spec = get_spec(sampler)
    merged = merged_options(sampler, spec, dict(options or {}))
    check_calibratable(sampler, merged)
    steps = spec.default_steps if steps is None else steps
    V.check_int_at_least("steps", steps, 1)
    V.check_int_at_least("iterations", iterations, 0)
    V.check_int_at_least("reference_steps", reference_steps, 2)
    V.check_positive("learning_rate", learning_rate)
    shape = tuple(int(s) for s in shape)
    if len(shape) < 2 or min(shape) < 1:
        raise ValueError(f"shape must be (batch, *data) with positive sizes, got shape={shape}.")
    dtype = jnp.dtype(jnp.result_type(float) if dtype is None else dtype)
    t_start = float(sde.t_max)

    # The fixed rules, as sample() would build them for this sampler (the sampler's own default first).
    candidates: dict[str, np.ndarray] = {}
    for name in (spec.default_grid,) + GRIDS:
        if name not in candidates:
            candidates[name] = sampler_grid(spec, sde, steps, name, t_end=t_end)
    plan = _plan(spec, model, sde, candidates[spec.default_grid], False, merged)

    k_prior, _ = jax.random.split(key)
    x_init = sde.prior_sample(k_prior, shape, dtype)
    ref_grid = reference_grid(sde, t_start, t_end, reference_steps)
    ref_spec = get_spec(REFERENCE_SAMPLER)
    ref_plan = _plan(ref_spec, model, sde, ref_grid, False, dict(ref_spec.options))
    ref_run, ref_final_t = ref_plan.run_points(ref_grid)
    reference, _, _ = _run(jax.random.PRNGKey(0), model, sde, x_init, jnp.asarray(ref_run, dtype),
                           None if ref_final_t is None else jnp.asarray(ref_final_t, dtype), sampler=REFERENCE_SAMPLER,
                           options=ref_plan.options, shape=shape, dtype=dtype.name, trajectory=False,
                           first_step=ref_plan.first_step, diffusion=ref_plan.diffusion)
    if not bool(jnp.all(jnp.isfinite(reference))):
        raise FloatingPointError("the reference solve of the calibration batch is not finite: the model's "
                                 "probability-flow ODE diverges from the prior (check the model and the process).")

    static = dict(sampler=sampler, options=plan.options, shape=shape, dtype=dtype.name, first_step=plan.first_step,
                  diffusion=plan.diffusion, plan=plan)
    t0 = jnp.asarray(t_start, dtype)
    t1 = jnp.asarray(t_end, dtype)

    def loss_and_grad(theta):
        value, grad = _loss_and_grad(jnp.asarray(theta, dtype), model, sde, x_init, reference, t0, t1, **static)
        return float(value), np.asarray(grad, np.float64)

    rule_losses = {name: loss_and_grad(logits_of_grid(g))[0] for name, g in candidates.items()}
    finite = {k: v for k, v in rule_losses.items() if np.isfinite(v)}
    if not finite:
        raise FloatingPointError(f"the sampler {sampler!r} diverges on every fixed grid rule for this model "
                                 f"(losses {rule_losses}); no grid can be calibrated from there.")
    start = min(finite, key=finite.get)
    theta = logits_of_grid(candidates[start])
    best_theta, best_loss = theta.copy(), finite[start]
    optimizer = optax.adam(learning_rate)
    opt_state = optimizer.init(theta)
    ran = 0
    for it in range(iterations):
        value, grad = loss_and_grad(theta)
        ran = it + 1
        if not (np.isfinite(value) and np.all(np.isfinite(grad))):
            break
        if value < best_loss:
            best_theta, best_loss = theta.copy(), value
        updates, opt_state = optimizer.update(grad, opt_state, theta)
        theta = np.asarray(optax.apply_updates(theta, updates), np.float64)
        if log is not None and (it % 50 == 0 or it == iterations - 1):
            log(f"calibration step {it}: loss {value:.4g} (best {best_loss:.4g})")
    if iterations:
        value, _ = loss_and_grad(theta)  # the last update's result
        if np.isfinite(value) and value < best_loss:
            best_theta, best_loss = theta.copy(), value
    grid = np.array(grid_from_logits(jnp.asarray(best_theta, jnp.float64 if jax.config.jax_enable_x64 else dtype),
                                       t_start, t_end), np.float64)
    grid[0], grid[-1] = t_start, t_end
    grid = _strictly_decreasing(grid)
    info = {"rule_losses": rule_losses, "start": start, "loss": best_loss, "iterations": ran,
            "reference_steps": reference_steps, "calibration_rows": shape[0]}
    return grid, info


def _strictly_decreasing(grid: np.ndarray) -> np.ndarray:
    """Guard against float rounding merging two calibrated times (never expected; a merged pair is split)."""
    for i in range(1, len(grid) - 1):
        if not grid[i] < grid[i - 1]:
            grid[i] = np.nextafter(grid[i - 1], -np.inf)
    return grid


# sample(grid="calibrated"): one calibration per (model object, process object, sampler, steps, ...), kept while
# both objects live.
_CACHE: dict[tuple, tuple[Any, Any, np.ndarray]] = {}


def calibrate_for_sample(model: Any, sde: LinearProcess, spec, *, steps: int | None, shape: tuple[int, ...],
                         t_end: float, dtype: Any, options: dict, whole_batch: bool = False) -> np.ndarray:
    """The grid of ``sample(..., grid="calibrated")``: :func:`calibrate` on the first (at most 128) rows of the batch
    (all of them for a conditioned model, whose labels are per row), from a fixed key, cached per model object."""
    rows = shape[0] if whole_batch else min(shape[0], CALIBRATION_ROWS)
    steps = spec.default_steps if steps is None else int(steps)
    cache_key = (id(model), id(sde), spec.name, steps, (rows, *shape[1:]), float(t_end), jnp.dtype(dtype).name,
                 tuple(sorted(options.items())))
    hit = _CACHE.get(cache_key)
    if hit is not None and hit[0]() is model and hit[1]() is sde:
        return hit[2].copy()
    grid, _ = calibrate(jax.random.PRNGKey(0x5EED), model, sde, spec.name, steps=steps, shape=(rows, *shape[1:]),
                        t_end=t_end, dtype=dtype, options=options)
    try:
        refs = (weakref.ref(model, lambda _: _CACHE.pop(cache_key, None)), weakref.ref(sde))
    except TypeError:  # an object without weak references: not cached
        return grid
    _CACHE[cache_key] = (*refs, grid.copy())
    return grid
