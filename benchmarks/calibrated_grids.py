"""Model-calibrated grids (``jaxdiff.calibrated_grid``) against the peers' algorithms on their grid rules.

    python -m benchmarks.calibrated_grids           # 7 mixtures + 1 flow, NFE 5/10/20 (~10 min on 2 CPU cores)
    python -m benchmarks.calibrated_grids --quick   # NFE 10 only, fewer paths
    python -m benchmarks.calibrated_grids --workdir=DIR   # also a trained digits run (experiments.train's workdir)

Gaussian mixtures with closed-form scores under the VP-SDE (β 0.1 → 20), of dimensions 1 to 64 and component
stds from 0.02 to 2, drawn from seeds that were not used while the calibration was developed. For each NFE:

* peers: DPM-Solver++(2M), DPM-Solver++(3M) and DDIM as jaxdiff runs them (they match k-diffusion / diffusers
  step for step), each on every fixed grid rule (uniform in t, uniform in log-SNR, EDM's ρ = 7, quadratic in t;
  the rule is part of the peer's default in one library or another): the best of these 12 is the baseline;
* jaxdiff's own ``exp_abm`` on its default grid;
* the same three algorithms on grids calibrated for this model and NFE (512 calibration paths from a key
  distinct from the evaluation noise, 100 Adam iterations, the default settings).

Error: mean Euclidean distance over 2,000 evaluation paths between a sampler's output and the exact
probability-flow endpoint from the same noise (diffrax Dopri8 in float64, rtol = atol = 1e-10, to σ̃ = 1e-6,
then denoised). Samplers and calibration run in float32. Every grid ends at t = 0. A flow row: rectified flow
(linear interpolant) from N(0, I) to one of the mixtures with its exact velocity.

With ``--workdir`` (a trained digits run, e.g. the main job's): the same comparison on the trained network at 10
NFE, against the network's own 256-step DPM-Solver++(3M) solve (there is no exact endpoint), plus FD_digits of
1,000 samples per grid (the project's digits-classifier Fréchet distance to the held-out digits).
"""

from __future__ import annotations

import argparse
import datetime
import time

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import jaxdiff  # noqa: E402
from benchmarks._common import machine_description, publish  # noqa: E402
from benchmarks.sampler_nfe import SDE, exact_flow  # noqa: E402

PEERS = ("dpmpp_2m", "dpmpp_3m", "ddim")
RULES = ("time_uniform", "logsnr_uniform", "karras", "time_quadratic")
CALIBRATED = ("dpmpp_3m", "dpmpp_2m", "ddim")


def mixture(seed: int, components: int, dim: int, std_lo: float, std_hi: float, spread: float):
    """Weights ~ Dirichlet(3), means ~ N(0, spread²), per-dimension stds ~ U(std_lo, std_hi)."""
    rng = np.random.default_rng(seed)
    weights = rng.dirichlet(np.full(components, 3.0))
    return jaxdiff.GaussianMixture(weights, rng.normal(0.0, spread, (components, dim)),
                                   rng.uniform(std_lo, std_hi, (components, dim)))


def two_scales():
    """2-D: one wide component (std 2) and two sharp ones (std 0.02)."""
    return jaxdiff.GaussianMixture([0.5, 0.25, 0.25], [[0.0, 0.0], [1.0, -1.0], [-1.5, 0.5]],
                                   [[2.0, 2.0], [0.02, 0.02], [0.02, 0.02]])


MIXTURES = [
    ("1-D, 3 comps, std 0.02-0.05", lambda: mixture(2026_01, 3, 1, 0.02, 0.05, 1.0)),
    ("2-D, 8 comps, std 0.02-0.2", lambda: mixture(2026_02, 8, 2, 0.02, 0.2, 1.5)),
    ("3-D, 5 comps, std 0.05-0.5", lambda: mixture(2026_03, 5, 3, 0.05, 0.5, 1.0)),
    ("2-D, std 2 and 0.02", two_scales),
    ("8-D, 6 comps, std 0.5-2", lambda: mixture(2026_04, 6, 8, 0.5, 2.0, 2.0)),
    ("16-D, 10 comps, std 0.02-2", lambda: mixture(2026_05, 10, 16, 0.02, 2.0, 1.0)),
    ("64-D, 10 comps, std 0.1-1", lambda: mixture(2026_06, 10, 64, 0.1, 1.0, 1.0)),
]


def error(x, reference) -> float:
    return float(jnp.mean(jnp.linalg.norm(jnp.asarray(x, jnp.float64) - reference, axis=-1)))


def compare(name: str, model_kw: dict, process, z32, reference, nfe: int, calib_rows: int) -> tuple[str, float, float]:
    """One table row: the best peer, exp_abm, each calibrated algorithm, and the ratio best-calibrated / best-peer."""
    key = jax.random.PRNGKey(0)
    end = 1.0 if isinstance(process, jaxdiff.Interpolant) else 0.0  # the data end (a path's t_end is flow time)
    peer = {}
    for alg in PEERS:
        for rule in RULES:
            x = jaxdiff.sample(key, None, process, sampler=alg, steps=nfe, grid=rule, t_end=end, x_init=z32, **model_kw)
            peer[(alg, rule)] = error(x, reference)
    best_peer = min(peer, key=peer.get)
    abm = error(jaxdiff.sample(key, None, process, sampler="exp_abm", steps=nfe, t_end=end, x_init=z32, **model_kw),
                reference)
    cal, seconds = {}, 0.0
    for alg in CALIBRATED:
        started = time.perf_counter()
        ts = jaxdiff.calibrated_grid(jax.random.PRNGKey(100), None, process, sampler=alg, steps=nfe,
                                     shape=(calib_rows, z32.shape[1]), t_end=end, dtype=jnp.float32, **model_kw)
        seconds += time.perf_counter() - started
        cal[alg] = error(jaxdiff.sample(key, None, process, sampler=alg, ts=ts, x_init=z32, **model_kw), reference)
    best_cal = min(cal, key=cal.get)
    ratio = cal[best_cal] / peer[best_peer]
    row = (f"| {name} | {nfe} | {peer[best_peer]:.4g} ({best_peer[0]}, {best_peer[1]}) | {abm:.4g} | "
           + " | ".join(f"{cal[a]:.4g}" for a in CALIBRATED) + f" | **{ratio:.3f}** | {seconds:.1f} |")
    print(row, flush=True)
    return row, ratio, seconds


def flow_case(n_paths: int):
    """Rectified flow from N(0, I) to the 3-D mixture with its exact velocity; the exact endpoint by Dopri8."""
    target = MIXTURES[2][1]()
    source = jaxdiff.GaussianMixture.gaussian(np.zeros(target.dim), np.ones(target.dim))
    path = jaxdiff.LinearInterpolant()
    velocity = lambda p, x, t: source.interpolant_velocity(target, path, x, t)  # noqa: E731
    z = jax.random.normal(jax.random.PRNGKey(1), (n_paths, target.dim), jnp.float64)
    reference = jaxdiff.sample(jax.random.PRNGKey(0), None, path, x_init=z, velocity_fn=velocity, sampler="ode_adaptive",
                               solver="dopri8", rtol=1e-10, atol=1e-10, max_steps=100_000)
    return path, {"velocity_fn": velocity}, z.astype(jnp.float32), reference


def trained_run_table(workdir: str, nfe: int = 10, n_paths: int = 256, n_fd: int = 1000,
                      calib_rows: int = 128, samplers: tuple[str, ...] = ("dpmpp_3m",)) -> list[str]:
    """Fixed rules vs calibrated grids on a trained digits run: endpoint error vs its own fine solve, and FD_digits."""
    from jaxdiff.metrics import digits_frechet_distance
    from jaxdiff.sampling._calibrate import REFERENCE_SAMPLER, reference_grid
    from jaxdiff.training.data import digits_upright

    run = jaxdiff.load_run(workdir)
    model, sde, dataset = run.params, run.sde, run.dataset
    z = jax.random.normal(jax.random.PRNGKey(1), (n_paths, *run.shape), jnp.float32)
    reference = np.asarray(jaxdiff.sample(jax.random.PRNGKey(0), model, sde, sampler=REFERENCE_SAMPLER, x_init=z,
                                          ts=reference_grid(sde, float(sde.t_max), 0.0, 256)), np.float64)
    held_out = digits_upright(dataset.name, dataset.test)

    def figures(sampler, **grid):
        x = jaxdiff.sample(jax.random.PRNGKey(0), model, sde, sampler=sampler, x_init=z, **grid)
        err = float(np.mean(np.linalg.norm((np.asarray(x, np.float64) - reference).reshape(n_paths, -1), axis=-1)))
        draws = jaxdiff.sample(jax.random.PRNGKey(5), model, sde, sampler=sampler, shape=(n_fd, *run.shape), **grid)
        units = digits_upright(dataset.name, dataset.to_data_units(np.asarray(draws)))
        return err, float(digits_frechet_distance(units, held_out, seed=0))

    lines = [f"\n### trained digits run ({workdir}, step {run.step}), {nfe} NFE\n",
             f"Endpoint error: mean Euclidean distance over {n_paths} paths to the network's own 256-step "
             f"{REFERENCE_SAMPLER} solve; FD_digits of {n_fd} samples. Calibration: {calib_rows} paths, 100 Adam "
             "iterations (default settings).\n",
             "| sampler | grid | endpoint error | FD_digits | calibration s |", "|---|---|---|---|---|"]
    fine_units = digits_upright(dataset.name, dataset.to_data_units(np.asarray(jaxdiff.sample(
        jax.random.PRNGKey(5), model, sde, sampler=REFERENCE_SAMPLER, shape=(n_fd, *run.shape),
        ts=reference_grid(sde, float(sde.t_max), 0.0, 256)))))
    lines.append(f"| {REFERENCE_SAMPLER} | 256 steps (reference) | 0 | "
                 f"{float(digits_frechet_distance(fine_units, held_out, seed=0)):.3f} | |")
    print(lines[-1], flush=True)
    for sampler in samplers:
        for rule in RULES:
            err, fd = figures(sampler, steps=nfe, grid=rule, t_end=0.0)
            lines.append(f"| {sampler} | {rule} | {err:.4f} | {fd:.3f} | |")
            print(lines[-1], flush=True)
        started = time.perf_counter()
        ts = jaxdiff.calibrated_grid(jax.random.PRNGKey(100), model, sde, sampler=sampler, steps=nfe,
                                     shape=(calib_rows, *run.shape), t_end=0.0)
        seconds = time.perf_counter() - started
        err, fd = figures(sampler, ts=ts)
        lines.append(f"| {sampler} | **calibrated** | {err:.4f} | {fd:.3f} | {seconds:.0f} |")
        print(lines[-1], flush=True)
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description="Calibrated grids vs the peers' algorithms on fixed grid rules.")
    parser.add_argument("--quick", action="store_true", help="NFE 10 only, 500 evaluation paths")
    parser.add_argument("--no-write", action="store_true", help="do not append to RESULTS.md")
    parser.add_argument("--workdir", default=None, help="a trained digits run: add its table")
    parser.add_argument("--only-workdir", action="store_true", help="only the trained run's table")
    args = parser.parse_args(argv)
    nfes = [10] if args.quick else [5, 10, 20]
    n_paths, calib_rows = (500, 512) if args.quick else (2000, 512)
    stamp = datetime.date.today().isoformat()
    lines = [f"\n## calibrated_grids — {stamp} — {machine_description()}{' (quick)' if args.quick else ''}\n",
             "Mean endpoint error vs the exact probability-flow ODE (float64 Dopri8), float32 samplers, grids ending "
             f"at t = 0, {n_paths} evaluation paths; calibration: {calib_rows} paths from another key, 100 Adam "
             "iterations. Best peer: the best of DPM-Solver++ 2M / 3M and DDIM on each of the four fixed grid rules. "
             "Ratio: the best calibrated error over the best peer's (target ≤ 0.5 at 10 NFE).\n",
             "| data | NFE | best peer (algorithm, grid) | exp_abm (default grid) | calibrated dpmpp_3m | "
             "calibrated dpmpp_2m | calibrated ddim | ratio | calibration s (3 grids) |",
             "|---|---|---|---|---|---|---|---|---|"]
    ratios: dict[int, list[float]] = {n: [] for n in nfes}
    if args.only_workdir:
        lines = lines[:1] + trained_run_table(args.workdir)
        publish("\n".join(lines) + "\n", write=not args.no_write)
        return
    for name, make in MIXTURES:
        mix = make()
        score = lambda p, x, t, mix=mix: mix.marginal_score(SDE, x, t)  # noqa: E731
        z = jax.random.normal(jax.random.PRNGKey(1), (n_paths, mix.dim), jnp.float64)
        reference = exact_flow(mix, z)
        for nfe in nfes:
            row, ratio, _ = compare(name, {"score_fn": score}, SDE, z.astype(jnp.float32), reference, nfe, calib_rows)
            lines.append(row)
            ratios[nfe].append(ratio)
    path, model_kw, z32, reference = flow_case(n_paths)
    for nfe in nfes:
        row, _, _ = compare("flow: rectified, N(0, I) → 3-D mixture", model_kw, path, z32, reference, nfe, calib_rows)
        lines.append(row)
    lines.append("")
    for nfe in nfes:
        worst = max(ratios[nfe])
        lines.append(f"NFE {nfe}: worst ratio over the {len(ratios[nfe])} diffusion mixtures {worst:.3f}, "
                     f"geometric mean {float(np.exp(np.mean(np.log(ratios[nfe])))):.3f}.")
    if args.workdir:
        lines += trained_run_table(args.workdir)
    publish("\n".join(lines) + "\n", write=not args.no_write)


if __name__ == "__main__":
    main()
