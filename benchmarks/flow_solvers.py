"""Gaussian solvers on a flow: with the exact velocity of a Gaussian mixture under ``LinearInterpolant(0)``
from N(0, I) (rectified flow / I-CFM's path), the error at a fixed NFE of ``exp_abm``, ``dpmpp_2m``,
``dpmpp_3m`` and ``ddim`` — which run on the flow through its process view (``FlowProcess``: α = t,
σ = 1 − t at t = 1 − s) — next to the flow ODE solvers ``ode_euler``, ``ode_heun``, ``ode_midpoint`` at equal
NFE, on the time-uniform, log-SNR-uniform and Karras grids.

Error: mean Euclidean distance between a sampler's output and the exact flow-ODE endpoint from the same
source draw (diffrax Dopri8, rtol = atol = 1e-10, float64). The σ̃-stepping samplers start with one DDIM step
from the source end (α = 0, σ̃ = ∞), counted in the NFE.

    python -m benchmarks.flow_solvers               # NFE 10 (and 20), three mixtures, ~3 min on 2 cores
"""

from __future__ import annotations

import argparse
import datetime

import jax

jax.config.update("jax_enable_x64", True)

import diffrax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import jaxdiff  # noqa: E402
from benchmarks._common import machine_description, publish  # noqa: E402

PATH = jaxdiff.LinearInterpolant(0.0)
SOURCE = jaxdiff.GaussianMixture.gaussian(jnp.zeros(1), jnp.ones(1))  # re-made per dimension below
GRIDS = ("time_uniform", "logsnr_uniform", "karras")
# name -> (sampler, NFE per step)
SOLVERS = {"ode_euler": ("ode_euler", 1), "ode_heun": ("ode_heun", 2), "ode_midpoint": ("ode_midpoint", 2),
           "ddim": ("ddim", 1), "dpmpp_2m": ("dpmpp_2m", 1), "dpmpp_3m": ("dpmpp_3m", 1), "exp_abm": ("exp_abm", 1)}


def mixtures() -> dict:
    rng = np.random.default_rng(1)
    small = jaxdiff.GaussianMixture(np.full(5, 0.2), rng.normal(0.0, 1.0, (5, 3)), rng.uniform(0.05, 0.5, (5, 3)))
    rng = np.random.default_rng(0)
    weights = rng.uniform(0.5, 2.0, 10)
    wide = jaxdiff.GaussianMixture(weights / weights.sum(), rng.normal(0.0, 1.0, (10, 64)),
                                   rng.uniform(0.2, 0.8, (10, 64)))
    return {"2-D ring (8 × std 0.5, radius 4)": jaxdiff.GaussianMixture.ring(8, radius=4.0, std=0.5),
            "3-D, component scales 0.05–0.5": small, "64-D, 10 components": wide}


def velocity_of(target):
    dim = target.means.shape[-1]
    source = jaxdiff.GaussianMixture.gaussian(jnp.zeros(dim), jnp.ones(dim))
    return lambda params, x, t: source.interpolant_velocity(target, PATH, x, t)


def exact_endpoint(velocity, x0):
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(lambda t, y, args: velocity(None, y, jnp.full((y.shape[0],), t))), diffrax.Dopri8(),
        t0=0.0, t1=1.0, dt0=0.01, y0=x0, stepsize_controller=diffrax.PIDController(rtol=1e-10, atol=1e-10),
        max_steps=100_000)
    return sol.ys[-1]


def main(argv=None):
    parser = argparse.ArgumentParser(description="Gaussian solvers vs flow ODE solvers on a flow, at equal NFE.")
    parser.add_argument("--nfe", default="10,20", help="comma-separated NFE budgets")
    parser.add_argument("--num", type=int, default=2000, help="samples per mixture")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    budgets = [int(v) for v in args.nfe.split(",")]
    lines = [f"\n## flow_solvers — {datetime.date.today()} — {machine_description()}\n",
             f"Exact velocity of each mixture under `LinearInterpolant(0)` from N(0, I); mean Euclidean error of "
             f"{args.num} samples against the exact flow-ODE endpoint from the same source draw (Dopri8, 1e-10, "
             "float64). Grid: time-uniform / log-SNR-uniform / Karras (ρ = 7); the σ̃-samplers' first interval "
             "is one DDIM step from the source end. Ratio: best Gaussian solver (exp_abm, dpmpp_2m) over best "
             "flow ODE solver (Euler, Heun, midpoint), each at its best grid.\n"]
    for label, target in mixtures().items():
        velocity = velocity_of(target)
        dim = target.means.shape[-1]
        x0 = jax.random.normal(jax.random.PRNGKey(0), (args.num, dim), jnp.float64)
        ref = exact_endpoint(velocity, x0)
        lines += [f"\n**{label}**\n", "| solver | NFE | " + " | ".join(GRIDS) + " |",
                  "|---|---|" + "---|" * len(GRIDS)]
        for nfe in budgets:
            best = {}
            for name, (sampler, per_step) in SOLVERS.items():
                cells = []
                for grid in GRIDS:
                    x, info = jaxdiff.sample(jax.random.PRNGKey(1), None, PATH, x_init=x0, velocity_fn=velocity,
                                             sampler=sampler, steps=nfe // per_step, grid=grid, return_info=True)
                    err = float(jnp.mean(jnp.linalg.norm(x - ref, axis=-1)))
                    assert int(info["nfe"]) == nfe, (name, grid, int(info["nfe"]))
                    best[name] = min(best.get(name, np.inf), err)
                    cells.append(f"{err:.2e}")
                lines.append(f"| {name} | {nfe} | " + " | ".join(cells) + " |")
            flow_best = min(best[n] for n in ("ode_euler", "ode_heun", "ode_midpoint"))
            gauss_best = min(best[n] for n in ("exp_abm", "dpmpp_2m"))
            lines.append(f"| **ratio** (best of exp_abm/dpmpp_2m ÷ best of Euler/Heun/midpoint) | {nfe} | "
                         f"{gauss_best / flow_best:.3f} | | |")
            print(label, nfe, {k: f"{v:.2e}" for k, v in best.items()}, f"ratio {gauss_best / flow_best:.3f}",
                  flush=True)
    publish("\n".join(lines) + "\n", not args.no_write)


if __name__ == "__main__":
    main()
