"""Sampler accuracy per network evaluation (NFE), with exact scores of Gaussian mixtures.

    python -m benchmarks.sampler_nfe            # full run (~15 min on 2 CPU cores)
    python -m benchmarks.sampler_nfe --quick    # fewer samples and NFE values (~3 min)
    python -m benchmarks.sampler_nfe --part timing    # only table (c)

Two mixtures with closed-form scores under the VP-SDE (β 0.1 → 20): a 2-D ring of 8 Gaussians and a
64-D mixture of 10 Gaussians with unequal weights and diagonal covariances. For NFE in
{5, 10, 20, 50, 100} and every sampler:
  (a) trajectory error: mean Euclidean distance between a deterministic sampler's output and the exact
      probability-flow ODE solution from the same noise (diffrax Dopri8, rtol = atol = 1e-10, float64,
      integrated in log σ̃ down to σ̃ = 1e-6 and denoised);
  (b) sliced Wasserstein distance (512 directions) between 20,000 samples and 20,000 exact draws,
      next to the distance between two exact draws (the floor);
  (c) wall time per NFE of a sampler driving a ~10.9M-parameter MLP, against the bare network
      evaluated in a compiled loop (no dispatch), so the difference is the solver's own work.
Prints the tables and appends them, with the machine and the date, to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime
import time

import jax

jax.config.update("jax_enable_x64", True)

import diffrax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import jaxdiff  # noqa: E402
from benchmarks._common import machine_description, publish  # noqa: E402
from jaxdiff.metrics import sliced_wasserstein  # noqa: E402
from jaxdiff.sampling import alpha_sigma, sigma_tilde  # noqa: E402

SDE = jaxdiff.VPSDE(0.1, 20.0)


def ring_mixture():
    return jaxdiff.GaussianMixture.ring(8, radius=4.0, std=0.5)


def mixture_64d(seed: int = 0):
    rng = np.random.default_rng(seed)
    weights = rng.uniform(0.5, 2.0, 10)
    return jaxdiff.GaussianMixture(weights / weights.sum(), rng.normal(0.0, 1.0, (10, 64)), rng.uniform(0.2, 0.8, (10, 64)))


def exact_flow(mixture, z):
    """The probability-flow ODE from x(t=1) = z to t = 0, in x̃ = x/α and u = log σ̃ (float64)."""
    s_max = float(sigma_tilde(SDE, jnp.asarray(1.0)))
    a_max = float(alpha_sigma(SDE, jnp.asarray(1.0))[0])
    s_min = 1e-6

    def denoiser(xs, s):
        t = SDE.t_from_log_snr(-2.0 * jnp.log(s))
        return mixture.posterior_mean(SDE, xs * SDE._alpha(t), t)

    def field(u, xs, args):
        return xs - denoiser(xs, jnp.exp(u))

    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(field), diffrax.Dopri8(), t0=np.log(s_max), t1=np.log(s_min), dt0=-0.05, y0=z / a_max,
        stepsize_controller=diffrax.PIDController(rtol=1e-10, atol=1e-10), max_steps=200_000,
    )
    return denoiser(sol.ys[-1], s_min)


# name -> (sampler, fixed options, NFE per step, extra NFE, deterministic)
SAMPLERS = {
    "exp_abm (jaxdiff)": ("exp_abm", {}, 1, 0, True),
    "dpmpp_2m uniform-t": ("dpmpp_2m", {"grid": "time_uniform"}, 1, 0, True),
    "dpmpp_2m karras": ("dpmpp_2m", {"grid": "karras"}, 1, 0, True),
    "dpmpp_3m karras": ("dpmpp_3m", {"grid": "karras"}, 1, 0, True),
    "dpmpp_3m logsnr": ("dpmpp_3m", {"grid": "logsnr_uniform"}, 1, 0, True),
    "ddim": ("ddim", {}, 1, 0, True),
    "edm_heun": ("edm_heun", {}, 2, -1, True),
    "ode_euler": ("ode_euler", {}, 1, 1, True),
    "ode_heun": ("ode_heun", {}, 2, 1, True),
    "euler_maruyama": ("euler_maruyama", {}, 1, 1, False),
    "ddpm": ("ddpm", {}, 1, 0, False),
    "ddim eta=1": ("ddim", {"eta": 1.0}, 1, 0, False),
    "pc (snr 0.16)": ("pc", {}, 2, 1, False),
    "sde (ShARK)": ("sde", {}, 2, 1, False),
}


def steps_for(nfe, per_step, extra):
    """The largest step count whose NFE (per_step·steps + extra) does not exceed ``nfe``."""
    return max(1, (nfe - extra) // per_step)


def run_sampler(mixture, name, nfe, z, key):
    sampler, opts, per_step, extra, _ = SAMPLERS[name]
    opts = dict(opts)
    grid = opts.pop("grid", None)
    steps = steps_for(nfe, per_step, extra)
    score = lambda p, x, t: mixture.marginal_score(SDE, x, t)  # noqa: E731
    x, info = jaxdiff.sample(key, None, SDE, sampler=sampler, steps=steps, grid=grid, t_end=0.0, x_init=z,
                             score_fn=score, return_info=True, **opts)
    return x, int(info["nfe"])


def accuracy_tables(mixtures, nfes, n_traj, n_sw):
    lines = []
    for mname, mixture in mixtures:
        key = jax.random.PRNGKey(0)
        z = jax.random.normal(jax.random.PRNGKey(1), (n_sw, mixture.dim))
        t0 = time.perf_counter()
        reference = exact_flow(mixture, z[:n_traj])
        ref_time = time.perf_counter() - t0
        data = mixture.sample(jax.random.PRNGKey(2), n_sw)
        proj = jax.random.PRNGKey(4)
        floors = [float(sliced_wasserstein(proj, data, mixture.sample(jax.random.PRNGKey(10 + i), n_sw), 512)) for i in range(5)]
        floor = f"{np.mean(floors):.4f} ± {np.std(floors):.4f} (mean ± sd over 5 exact draws)"
        lines.append(f"\n### {mname}: (a) trajectory error vs exact PF-ODE ({n_traj} paths) / (b) sliced W2 ({n_sw} samples; floor {floor})\n")
        lines.append(f"(reference solve {ref_time:.1f} s)\n")
        header = "| sampler | " + " | ".join(f"NFE {n}: traj / SW" for n in nfes) + " |"
        lines.append(header)
        lines.append("|" + "---|" * (len(nfes) + 1))
        for name, (_, _, _, _, deterministic) in SAMPLERS.items():
            cells = []
            for nfe in nfes:
                x, used = run_sampler(mixture, name, nfe, z, key)
                traj = float(jnp.mean(jnp.linalg.norm(x[:n_traj] - reference, axis=-1))) if deterministic else None
                sw = float(sliced_wasserstein(proj, x, data, 512))
                cell = (f"{traj:.4f}" if traj is not None else "—") + f" / {sw:.4f}"
                if used != nfe:
                    cell += f" ({used})"
                cells.append(cell)
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
            print(lines[-1], flush=True)
    return lines


def mlp_params(key, dim, width, depth):
    keys = jax.random.split(key, depth + 1)
    sizes = [dim + 1] + [width] * depth + [dim]
    return [
        (jax.random.normal(k, (a, b), jnp.float32) / np.sqrt(a), jnp.zeros((b,), jnp.float32))
        for k, a, b in zip(keys, sizes[:-1], sizes[1:])
    ]


def mlp_apply(params, x, t):
    h = jnp.concatenate([x, t[:, None]], axis=-1)
    for i, (w, b) in enumerate(params):
        h = h @ w + b
        if i < len(params) - 1:
            h = jax.nn.silu(h)
    return 0.01 * h


def timing_table(nfes, batch):
    dim, width, depth = 64, 2304, 3
    params = mlp_params(jax.random.PRNGKey(0), dim, width, depth)
    n_params = sum(w.size + b.size for w, b in params)
    x = jax.random.normal(jax.random.PRNGKey(1), (batch, dim), jnp.float32)
    t = jnp.full((batch,), 0.5, jnp.float32)
    reps = 50

    @jax.jit
    def bare_loop(params, x, t):  # the network alone, `reps` times inside one compiled loop
        return jax.lax.fori_loop(0, reps, lambda i, y: (y + mlp_apply(params, y, t)).astype(y.dtype), x)

    bare_loop(params, x, t).block_until_ready()
    t0 = time.perf_counter()
    for _ in range(3):
        out = bare_loop(params, x, t)
    out.block_until_ready()
    per_call = (time.perf_counter() - t0) / (3 * reps)
    score = lambda p, x, t: mlp_apply(p, x, t)  # noqa: E731
    lines = [f"\n### (c) wall time per NFE, MLP {dim}-{width}x{depth}-{dim} ({n_params / 1e6:.1f}M params), batch {batch}, float32\n",
             f"bare network evaluation (inside one compiled loop of {reps}): {per_call * 1e3:.2f} ms\n",
             "| sampler | NFE | ms per NFE | overhead vs bare call |", "|---|---|---|---|"]
    for name in ("exp_abm (jaxdiff)", "dpmpp_2m uniform-t", "dpmpp_3m karras", "edm_heun", "ddim", "ode_heun", "euler_maruyama", "sde (ShARK)"):
        sampler, opts, per_step, extra, _ = SAMPLERS[name]
        opts = dict(opts)
        grid = opts.pop("grid", None)
        for nfe in nfes:
            steps = steps_for(nfe, per_step, extra)
            kw = dict(sampler=sampler, steps=steps, grid=grid, t_end=0.0, x_init=x, score_fn=score, return_info=True, **opts)
            out, info = jaxdiff.sample(jax.random.PRNGKey(0), params, SDE, **kw)  # compile
            out.block_until_ready()
            t0 = time.perf_counter()
            for _ in range(3):
                out, info = jaxdiff.sample(jax.random.PRNGKey(0), params, SDE, **kw)
            out.block_until_ready()
            per_nfe = (time.perf_counter() - t0) / 3 / int(info["nfe"])
            lines.append(f"| {name} | {int(info['nfe'])} | {per_nfe * 1e3:.2f} | {100 * (per_nfe / per_call - 1):+.1f}% |")
            print(lines[-1], flush=True)
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description="Sampler accuracy and overhead per NFE.")
    parser.add_argument("--quick", action="store_true", help="fewer samples and NFE values")
    parser.add_argument("--no-write", action="store_true", help="do not append to RESULTS.md")
    parser.add_argument("--part", choices=("all", "accuracy", "timing"), default="all", help="which tables to run")
    args = parser.parse_args(argv)
    nfes = [5, 10, 20] if args.quick else [5, 10, 20, 50, 100]
    n_traj, n_sw = (500, 4000) if args.quick else (2000, 20000)
    mixtures = [("2-D ring of 8 Gaussians", ring_mixture()), ("64-D mixture of 10 Gaussians", mixture_64d())]
    stamp = datetime.date.today().isoformat()
    machine = machine_description()
    lines = [f"\n## sampler_nfe — {stamp} — {machine}{' (quick)' if args.quick else ''}\n",
             "VP-SDE 0.1/20, exact mixture scores, every grid ends at t = 0; a cell's (n) is the NFE actually used "
             "when a sampler's step structure cannot hit the column's NFE exactly."]
    if args.part in ("all", "accuracy"):
        lines += accuracy_tables(mixtures, nfes, n_traj, n_sw)
    if args.part in ("all", "timing"):
        lines += timing_table([10, 50] if args.quick else [10, 20, 50, 100], batch=512)
    publish("\n".join(lines) + "\n", write=not args.no_write)


if __name__ == "__main__":
    main()
