"""What ``sample`` and the grid calibration share: the grid a sampler runs on, how it runs on a concrete grid
(:class:`_Plan`), the option checks, and the one compiled sampler program :func:`_run`."""

from __future__ import annotations

import collections
import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff import _validation as V
from jaxdiff import _xla
from jaxdiff.parameterization import VELOCITY_KINDS
from jaxdiff.sampling._core import Model, get_spec
from jaxdiff.sampling._grid import GRIDS, sigma_tilde, time_grid

TRACES: collections.Counter = collections.Counter()  # compilations of the samplers (tests: compile once)


def sampler_grid(spec, sde, steps, grid, *, t_end, rho=7.0, sigma_min=None) -> np.ndarray:
    """The grid ``sample`` runs ``spec`` on without ``ts``: ``steps`` (default the sampler's) intervals of the
    ``grid`` rule (default the sampler's, with its own last noise level when the grid ends at 0)."""
    steps = spec.default_steps if steps is None else steps
    V.check_int_at_least("steps", steps, 1)
    grid_name = spec.default_grid if grid is None else grid
    V.check_choice("grid", grid_name, GRIDS)
    if sigma_min is None and t_end == 0 and spec.default_sigma_min is not None and grid_name == spec.default_grid:
        sigma_min = spec.default_sigma_min(steps)
    return time_grid(sde, steps, grid_name, t_end=t_end, rho=rho, sigma_min=sigma_min)


@dataclasses.dataclass(frozen=True)
class _Plan:
    """How a sampler runs on a concrete grid (what stays fixed when only the grid's values change).

    The sampler runs on the grid's first ``keep`` points (then on ``append_eps`` if set: an adaptive solver
    integrating on to ``sampling_eps``); ``tweedie``: a final ``x ← E[x_0 | x]`` at the last point it ran to.
    ``first_step``: a σ̃-sampler's first interval from ``α = 0`` is one DDIM step. ``options``: the static options
    of :func:`_run`; ``diffusion`` the SDE samplers' noise scale."""

    keep: int
    append_eps: float | None
    tweedie: bool
    first_step: bool
    options: tuple
    diffusion: float


    def run_points(self, grid):
        """``(run_ts, final_t)``: the points the sampler runs on and the time of the final Tweedie step (``None``
        without one), for a numpy grid or a traced one of the same length."""
        run_ts = grid[: self.keep]
        if self.append_eps is not None:
            run_ts = np.append(run_ts, self.append_eps)  # integrate on to sampling_eps
        return run_ts, (run_ts[-1] if self.tweedie else None)


def merged_options(sampler: str, spec, options: dict, extra_hint: str = "") -> dict:
    """The sampler's default options updated with the caller's ``options``; unknown names, non-scalar values and
    invalid values are refused by name."""
    public_options = {k: v for k, v in spec.options.items() if not k.startswith("_")}
    unknown = sorted(set(options) - set(public_options))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for sampler={sampler!r}; its options are "
                         f"{sorted(public_options)}{extra_hint}.")
    for name, value in options.items():
        if not isinstance(value, (bool, int, float, str, type(None))):
            raise TypeError(f"option {name} must be a bool, number, string or None, got {type(value).__name__}.")
    merged = {**spec.options, **options}
    _check_option_values(sampler, merged)
    return merged


def _plan(spec, model, sde, grid_np: np.ndarray, denoise: bool, merged: dict) -> _Plan:
    """The :class:`_Plan` of ``spec`` on ``grid_np`` (``merged``: the sampler's options with the caller's)."""
    merged = dict(merged)
    ends_at_zero = bool(grid_np[-1] == 0.0)
    lands = spec.handles_zero or (spec.lands_with_velocity and model.prediction in VELOCITY_KINDS)
    keep, append_eps, tweedie = len(grid_np), None, False
    last = float(grid_np[-1])
    if ends_at_zero and not lands:  # the last interval [t, 0] becomes a Tweedie step at t
        keep, last, tweedie = len(grid_np) - 1, float(grid_np[-2]), True
        if spec.adaptive and last > sde.sampling_eps > 0:
            append_eps, last = float(sde.sampling_eps), float(sde.sampling_eps)
    elif denoise and not ends_at_zero:
        tweedie = True
    run_grid = grid_np[:keep] if append_eps is None else np.append(grid_np[:keep], append_eps)
    first_step = False
    if spec.sigma_tilde_steps and len(run_grid) >= 2:
        with jax.ensure_compile_time_eval():
            first_step = float(sde._alpha(jnp.asarray(run_grid[0]))) == 0.0
    sampler_grid = run_grid[1:] if first_step else run_grid
    merged["_ends_at_zero"] = ends_at_zero and spec.handles_zero
    if "_log_sigma_tilde" in spec.options:  # samplers whose coefficients are precomputed from the grid
        with jax.ensure_compile_time_eval():
            s_tilde = np.asarray(sigma_tilde(sde, jnp.asarray(sampler_grid)), np.float64)
        merged["_log_sigma_tilde"] = tuple(float(v) for v in np.log(np.where(s_tilde > 0, s_tilde, 1.0)))
    diffusion = float(merged.pop("diffusion", 1.0))
    return _Plan(keep=keep, append_eps=append_eps, tweedie=tweedie, first_step=first_step,
                 options=tuple(sorted(merged.items())), diffusion=diffusion)


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
    if sampler in ("euler_maruyama", "sde"):
        V.check_nonnegative("diffusion", options["diffusion"])
    if sampler in ("ode_adaptive", "sde"):
        if options["rtol"] is not None:
            V.check_positive("rtol", options["rtol"])
            V.check_positive("atol", options["atol"])
        V.check_int_at_least("max_steps", options["max_steps"], 1)


@functools.partial(_xla.jit, static_argnames=("sampler", "options", "shape", "dtype", "trajectory", "first_step",
                                             "diffusion"))
def _run(key, wrapper, sde, x_init, run_ts, final_t, *, sampler, options, shape, dtype, trajectory, first_step,
         diffusion):
    TRACES["sample"] += 1  # (Python body: runs once per compilation)
    spec = get_spec(sampler)
    model = Model(sde=sde, wrapper=wrapper, diffusion=diffusion)
    k_prior, k_run = jax.random.split(key)
    x = sde.prior_sample(k_prior, shape, dtype) if x_init is None else x_init
    nfe = 0
    traj = x[None] if trajectory else None
    if first_step:  # from α = 0 (σ̃ = ∞): one DDIM step x ← α_s D(x) + σ_s x/σ_t, then the σ̃-sampler
        ddim = get_spec("ddim")
        x, nfe, first = ddim.fn(k_run, x, run_ts[:2], model, {"eta": 0.0, "clip_x0": None}, trajectory)
        traj = first
        run_ts = run_ts[1:]
        k_run = jax.random.fold_in(k_run, 1)
    if run_ts.shape[0] >= spec.min_points:
        x, more, part = spec.fn(k_run, x, run_ts, model, dict(options), trajectory)
        nfe = nfe + more
        if trajectory:
            traj = jnp.concatenate([traj, part[1:]], axis=0)
    if final_t is not None:
        x = model.denoise(x, final_t)
        nfe = nfe + 1
        if trajectory:
            traj = jnp.concatenate([traj, x[None]], axis=0)
    return x, jnp.asarray(nfe), traj
