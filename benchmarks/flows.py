"""Flow / bridge benchmarks: the 2-D table of torchcfm and the [SF]²M paper, Gaussian bridges, and the EOT benchmark.

    python -m benchmarks.flows --suite 2d --seeds 5 --steps 20000 --tasks n-8gaussians,moons-8gaussians,n-moons
    python -m benchmarks.flows --suite 2d --cell n-8gaussians:otcfm:5:20000 --cell moons-8gaussians:otcfm:5:20000
    python -m benchmarks.flows --suite 2d --log runs.jsonl ...    # record each run; reruns skip recorded ones
    python -m benchmarks.flows --suite 2d --log runs.jsonl --report-only --cell ...   # table from the log only
    python -m benchmarks.flows --suite gaussian                 # Gaussian → Gaussian bridges, D = 2, 16, 64
    python -m benchmarks.flows --suite eot                      # benchmarks/_flows_eot.py (another engineer's)
    python -m benchmarks.flows --suite 2d,gaussian --no-write   # several suites; print only

``--suite`` takes a comma list; each suite is a function ``run(args) -> list[str]`` (markdown lines) in
``SUITES``; add one there. Everything is printed and, unless ``--no-write``, appended with the machine and
the date to ``benchmarks/RESULTS.md``.

2d suite (``benchmarks/_flows_2d.py``): tasks × methods × seeds, every method trained for the same number
of gradient steps. Per run: W2 between 10k pushed source samples and 10k fresh target samples (exact OT),
the normalized path energy ``NPE = |E∫₀¹|v(Z_t,t)|² dt − W₂²(p₀,p₁)| / W₂²(p₀,p₁)`` (energy on 2k ODE paths,
100 Euler steps; ``W₂²(p₀,p₁)`` from 10k + 10k samples), the NFE of the adaptive solver (Tsit5,
rtol = atol = 1e-5) and, for rectified flows, the W2 of a single Euler step. ``--coupling-cost`` adds the
seconds per 1k training steps of the independent / exact / sinkhorn couplings.

gaussian suite: N(μ₀, Σ₀) → N(μ₁, Σ₁) in D = 2, 16, 64 with σ = 1 (ε = σ² = 1): DSBM and SB-CFM against
the closed-form Schrödinger bridge (``jaxdiff.flows.gaussian_entropic_ot`` / ``gaussian_bridge_marginal``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks._common import machine_description, publish

# -------------------------------------------------------------------------------------------------- 2d

def _parse_cells(args) -> list[tuple[str, str, int, int]]:
    from benchmarks._flows_2d import METHODS, TASKS

    if args.cell:
        cells = []
        for spec in args.cell:
            parts = spec.split(":")
            if len(parts) != 4:
                raise SystemExit(f"--cell wants TASK:METHOD:SEEDS:STEPS, got {spec!r}")
            cells.append((parts[0], parts[1], int(parts[2]), int(parts[3])))
    else:
        tasks = args.tasks.split(",")
        methods = args.methods.split(",")
        cells = [(t, m, args.seeds, args.steps) for t in tasks for m in methods]
    out = []
    for task, method, seeds, steps in cells:
        if task not in TASKS:
            raise SystemExit(f"unknown task {task!r}; tasks: {sorted(TASKS)}")
        if method not in METHODS:
            raise SystemExit(f"unknown method {method!r}; methods: {sorted(METHODS)}")
        if method == "vp" and not TASKS[task][2]:
            print(f"skipping vp on {task}: the VP diffusion's source is N(0, I) only")
            continue
        out.append((task, method, seeds, steps))
    return out


def _load_log(path):
    records = []
    if path and os.path.exists(path):
        with open(path) as fh:
            records = [json.loads(line) for line in fh if line.strip()]
    return records


def _append_log(path, record):
    if path:
        with open(path, "a") as fh:
            fh.write(json.dumps(record) + "\n")


def _run_2d_cell(task, method, seed, steps, batch_size, eval_n, constants):
    from benchmarks import _flows_2d as F

    source, target, _, _, _ = F.TASKS[task]
    key = jax.random.PRNGKey(seed)
    k_fit, k_eval = jax.random.split(key)
    fit = F.METHODS[method][1](batch_size)
    t0 = time.perf_counter()
    model, path = fit(k_fit, source, target, steps)
    jax.block_until_ready(jax.tree_util.tree_leaves(model))
    train_s = time.perf_counter() - t0
    records = []
    if method == "rf":
        variants = [("rf2", model[1], True)]
    else:
        variants = [(method, model, method in ("rf1",))]
    for name, m, one_step in variants:
        t0 = time.perf_counter()
        res = F.evaluate(k_eval, m, path, source, target, constants["w2sq"], n=eval_n, one_step=one_step)
        res.update(task=task, method=name, seed=seed, steps=steps, batch_size=batch_size, eval_n=eval_n,
                   train_s=train_s, eval_s=time.perf_counter() - t0)
        records.append(res)
    return records


def _fmt(values, fmt=".3f"):
    values = [v for v in values if v is not None]
    if not values:
        return "—"
    if len(values) == 1:
        return format(values[0], fmt)
    return f"{np.mean(values):{fmt}} ± {np.std(values, ddof=1):{fmt}}"


ROW_NAMES = {"icfm": "I-CFM", "otcfm": "OT-CFM", "sbcfm": "SB-CFM", "dsbm": "DSBM-IMF", "rf1": "RF-1", "rf2": "RF-2",
             "vp": "VP diffusion (PF-ODE)"}
PUBLISHED_ROWS = {"dsbm": "DSBM-IPF", "rf1": "rf1", "rf2": None}


def run_2d(args) -> list[str]:
    from benchmarks import _flows_2d as F

    cells = _parse_cells(args)
    records = _load_log(args.log)
    constants = {r["task"]: r for r in records if r.get("kind") == "constants" and r.get("eval_n") == args.eval_n}
    for task in dict.fromkeys(c[0] for c in cells):
        if task not in constants:
            t0 = time.perf_counter()
            c = F.task_constants(jax.random.PRNGKey(12345), task, args.eval_n)
            c.update(kind="constants", task=task, eval_n=args.eval_n, seconds=time.perf_counter() - t0)
            constants[task] = c
            _append_log(args.log, c)
            print(f"[{task}] W2²(p0,p1) = {c['w2sq']:.4f}, W2 floor (two target draws) = {c['floor']:.4f} "
                  f"({c['seconds']:.0f} s)", flush=True)
    runs = [r for r in records if r.get("kind", "run") == "run"]

    def done(task, method, seed, steps):
        name = "rf2" if method == "rf" else method
        return any(r["task"] == task and r["method"] == name and r["seed"] == seed and r["steps"] == steps
                   and r["batch_size"] == args.batch_size and r["eval_n"] == args.eval_n for r in runs)

    if not args.report_only:
        for task, method, seeds, steps in cells:
            for seed in range(seeds):
                if done(task, method, seed, steps):
                    continue
                for rec in _run_2d_cell(task, method, seed, steps, args.batch_size, args.eval_n, constants[task]):
                    rec["kind"] = "run"
                    runs.append(rec)
                    _append_log(args.log, rec)
                    print(f"[{task}] {rec['method']} seed {seed} steps {steps}: W2 {rec['w2']:.4f}, NPE {rec['npe']:.3f}, "
                          f"NFE {rec['nfe']}" + (f", 1-step W2 {rec['w2_1step']:.3f}" if "w2_1step" in rec else "")
                          + f" (train {rec['train_s']:.0f} s, eval {rec['eval_s']:.0f} s)", flush=True)

    lines = [f"W2 backend: {F.w2_backend()}. Network (all methods): jaxdiff FlowMLP {list(F.HIDDEN)} {F.ACTIVATION} "
             f"(input [x, t, sin/cos(2πkt), k ≤ 8]); VP: ScoreMLP {list(F.HIDDEN)} swish. Adam lr {F.LR}, batch "
             f"{args.batch_size}, fresh samples every step. Each row: the seeds × steps actually run (seeds 0..k−1); "
             f"mean ± sd over seeds. W2: {args.eval_n} ODE samples (Tsit5, rtol = atol = 1e-5) vs {args.eval_n} fresh "
             "target samples, exact OT. NFE: that solve. NPE: see the script's docstring. 1-step: one Euler step. "
             "Published: W2 quoted for this project from Tong et al. (TMLR 2024, OT-CFM / I-CFM / RF; AISTATS 2024, [SF]²M / DSBM-IPF), 5 seeds."]
    for task in dict.fromkeys(c[0] for c in cells):
        _, _, _, description, published = F.TASKS[task]
        c = constants[task]
        lines += ["", f"### {description}", "",
                  f"W2²(p0, p1) = {c['w2sq']:.3f} ({args.eval_n} + {args.eval_n} samples); W2 floor (two independent "
                  f"{args.eval_n}-sample draws of the target) = {c['floor']:.3f}.", "",
                  "| method | seeds × steps | W2 | published W2 | NPE | NFE (adaptive) | 1-step W2 | train s/run |",
                  "|---|---|---|---|---|---|---|---|"]
        methods_here = []
        for _, m, _, _ in [x for x in cells if x[0] == task]:
            methods_here.append("rf2" if m == "rf" else m)
        for name in dict.fromkeys(methods_here):
            rs = [r for r in runs if r["task"] == task and r["method"] == name and r["batch_size"] == args.batch_size
                  and r["eval_n"] == args.eval_n]
            wanted = [x for x in cells if x[0] == task and ("rf2" if x[1] == "rf" else x[1]) == name]
            steps = wanted[0][3]
            rs = [r for r in rs if r["steps"] == steps and r["seed"] < wanted[0][2]]
            if not rs:
                continue
            pub_key = PUBLISHED_ROWS.get(name, name)
            pub = published.get(pub_key) if pub_key else None
            pub_s = "—" if pub is None else (f"{pub:.3f}" + (f" ({pub_key})" if pub_key != name else ""))
            lines.append(
                f"| {ROW_NAMES.get(name, name)} | {len(rs)} × {steps} | {_fmt([r['w2'] for r in rs])} | {pub_s} | "
                f"{_fmt([r['npe'] for r in rs])} | {_fmt([float(r['nfe']) for r in rs], '.0f')} | "
                f"{_fmt([r.get('w2_1step') for r in rs])} | {np.mean([r['train_s'] for r in rs]):.0f} |")
        if "[SF]²M-Exact" in published:
            lines.append(f"| [SF]²M-Exact (published only, not run here) | — | — | {published['[SF]²M-Exact']:.3f} | — | — "
                         "| — | — |")
    names = dict(ROW_NAMES, rf="RF-2")
    lines += ["", "Methods: " + "; ".join(f"{names.get(k, k)} = {v[0]}" for k, v in F.METHODS.items()
                                         if k in {c[1] for c in cells}) + "."]
    if args.coupling_cost:
        cost = F.coupling_cost(batch_size=256, steps=args.coupling_cost_steps)
        lines += ["", f"Training-loop cost of the couplings (OT-CFM's loop on N → 8 Gaussians, batch 256, network as "
                      f"above; median wall time of {args.coupling_cost_steps} jitted steps after a warm-up, on this "
                      "shared machine):", "",
                  "| coupling | s per 1k steps |", "|---|---|"]
        labels = {"independent": "independent (I-CFM)",
                  "exact": "exact (OT-CFM: scipy linear_sum_assignment on the host via pure_callback)",
                  "sinkhorn": f"sinkhorn ε = {2 * F.SIGMA_SB**2:g} (SB-CFM: ott-jax log-domain Sinkhorn)"}
        lines += [f"| {labels.get(k, k)} | {v:.2f} |" for k, v in cost.items()]
    return lines


# ---------------------------------------------------------------------------------------------- gaussian

def _random_gaussian(key, dim, lo=0.5, hi=2.0):
    k_q, k_e, k_m = jax.random.split(key, 3)
    q, _ = jnp.linalg.qr(jax.random.normal(k_q, (dim, dim)))
    eig = jax.random.uniform(k_e, (dim,), minval=lo, maxval=hi)
    cov = (q * eig) @ q.T
    return jax.random.normal(k_m, (dim,)) / np.sqrt(dim), 0.5 * (cov + cov.T)


def _gaussian_sampler(mean, cov):
    chol = jnp.linalg.cholesky(cov)

    def sample(key, n):
        return mean + jax.random.normal(key, (n, mean.shape[0])) @ chol.T

    return sample


def _sb_cfm_sde(key, model, path, x0, sigma, steps=100):
    """Euler–Maruyama of the SB SDE ``dX = (v + σ²/2 ∇log p_t) dt + σ dW`` from a FlowModel with a noise head;
    returns the states on the grid ``[steps + 1, n, D]``."""
    import equinox as eqx

    dt = 1.0 / steps

    @eqx.filter_jit
    def run(model, x0, keys):
        def step(x, inp):
            i, k = inp
            t = jnp.full((x.shape[0],), i * dt, x.dtype)
            tc = jnp.clip(t, 1e-3, 1 - 1e-3)  # the noise head's score −η/c(t) needs c(t) > 0
            drift = model.velocity(x, t) + 0.5 * sigma**2 * model.score(path, x, tc)
            x = x + drift * dt + sigma * np.sqrt(dt) * jax.random.normal(k, x.shape, x.dtype)
            return x, x

        _, xs = jax.lax.scan(step, x0, (jnp.arange(steps), keys))
        return jnp.concatenate([x0[None], xs])

    return run(model, x0, jax.random.split(key, steps))


def _rel(a, b):
    return float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))


def run_gaussian(args) -> list[str]:
    from jaxdiff.flows import (
        BrownianBridge,
        LinearInterpolant,
        gaussian_bridge_marginal,
        gaussian_entropic_ot,
        sample_flow,
        train_dsbm,
        train_flow_matching,
    )

    sigma = 1.0
    eps = sigma**2
    n = args.gaussian_n
    steps = args.gaussian_steps
    hidden = (128, 128, 128)
    dims = [int(d) for d in args.gaussian_dims.split(",")]
    lines = [f"N(μ₀, Σ₀) → N(μ₁, Σ₁), eigenvalues of Σ uniform in [0.5, 2], random rotations and means; σ = {sigma} "
             f"(ε = σ² = {eps}). SB-CFM: BrownianBridge(σ) with sinkhorn ε' = 2σ² and a noise head (with_score), "
             "coupling by Euler–Maruyama of dX = (v + σ²/2 s) dt + σ dW (100 steps, written in the benchmark). DSBM: "
             f"train_dsbm(ε = σ², 4 iterations × (fwd + bwd) of steps/8, 10k pairs), coupling by its forward SDE "
             f"(100 steps). Both: {steps} gradient steps in total, batch 256, FlowMLP {list(hidden)} selu, seed 0. "
             f"Errors from {n} simulated pairs: ‖Ĉ − C_ε‖_F/‖C_ε‖_F for the cross-covariance Cov(X₀, X₁), and "
             "‖Σ̂_t − Σ_t‖_F/‖Σ_t‖_F for the marginal at t = 0.5 and 1; 'exact' = the same statistics of "
             f"{n} exact draws (the sampling floor).", "",
             "| D | method | coupling C err | Σ(0.5) err | Σ(1) err | train s |", "|---|---|---|---|---|---|"]
    for dim in dims:
        key = jax.random.PRNGKey(100 + dim)
        k0, k1, k_fit, k_sim, k_x0, k_ex = jax.random.split(key, 6)
        m0, c0 = _random_gaussian(k0, dim)
        m1, c1 = _random_gaussian(k1, dim)
        src, tgt = _gaussian_sampler(m0, c0), _gaussian_sampler(m1, c1)
        c_eps = gaussian_entropic_ot(m0, c0, m1, c1, eps)
        truth = {t: gaussian_bridge_marginal(m0, c0, m1, c1, eps, t)[1] for t in (0.5, 1.0)}
        x0 = src(k_x0, n)

        def stats(xa, xmid, xb):
            cross = jnp.cov(jnp.concatenate([xa, xb], 1).T)[:dim, dim:]
            return (_rel(cross, c_eps), _rel(jnp.cov(xmid.T), truth[0.5]), _rel(jnp.cov(xb.T), truth[1.0]))

        # exact draws of the EOT plan and of the bridge at t = 0.5
        a = jnp.linalg.solve(c0, c_eps).T
        cond = c1 - a @ c_eps
        ke1, ke2, ke3 = jax.random.split(k_ex, 3)
        xb = m1 + (x0 - m0) @ a.T + jax.random.normal(ke1, x0.shape) @ jnp.linalg.cholesky(0.5 * (cond + cond.T)).T
        xmid = 0.5 * (x0 + xb) + sigma * 0.5 * jax.random.normal(ke2, x0.shape)
        lines.append(f"| {dim} | exact (floor) | " + " | ".join(f"{v:.3f}" for v in stats(x0, xmid, xb)) + " | — |")

        t0 = time.perf_counter()
        path = BrownianBridge(sigma)
        model = train_flow_matching(k_fit, src, tgt, path=path, coupling="sinkhorn", epsilon=2 * eps, steps=steps,
                                    batch_size=256, hidden=hidden, with_score=True)
        train_s = time.perf_counter() - t0
        xs = _sb_cfm_sde(k_sim, model, path, x0, sigma)
        lines.append(f"| {dim} | SB-CFM | " + " | ".join(f"{v:.3f}" for v in stats(x0, xs[50], xs[-1]))
                     + f" | {train_s:.0f} |")
        print(lines[-1], flush=True)

        t0 = time.perf_counter()
        bridge = train_dsbm(k_fit, src, tgt, epsilon=eps, iterations=4, steps_per_iteration=max(1, steps // 8),
                            num_pairs=10_000, batch_size=256, hidden=hidden)
        train_s = time.perf_counter() - t0
        _, info = sample_flow(k_sim, bridge, LinearInterpolant(0.0), x_init=x0, sampler="euler_maruyama", steps=100,
                              return_info=True, trajectory=True)
        traj = info["trajectory"]
        lines.append(f"| {dim} | DSBM | " + " | ".join(f"{v:.3f}" for v in stats(x0, traj[50], traj[-1]))
                     + f" | {train_s:.0f} |")
        print(lines[-1], flush=True)
    return lines


# --------------------------------------------------------------------------------------------------- eot

def run_eot(args) -> list[str]:
    """The entropic-OT benchmark of ``benchmarks/_flows_eot.py`` (``run_eot_benchmark`` + ``format_eot_table``)."""
    try:
        from benchmarks import _flows_eot
    except ImportError:
        msg = ("suite 'eot' needs benchmarks/_flows_eot.py (run_eot_benchmark(...) -> list[dict] and "
               "format_eot_table(rows)); it is not there.")
        print(msg)
        return [msg]
    options = {"seeds": tuple(range(args.eot_seeds)), "steps": args.eot_steps}
    if args.eot_dims:
        options["dims"] = tuple(int(d) for d in args.eot_dims.split(","))
    if args.eot_epsilons:
        options["epsilons"] = tuple(float(e) for e in args.eot_epsilons.split(","))
    rows = _flows_eot.run_eot_benchmark(**options)
    doc = (_flows_eot.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
    return [doc, "", f"Options: {options}.", "", _flows_eot.format_eot_table(rows).rstrip("\n")]


SUITES = {"2d": ("2-D flows (torchcfm / [SF]²M table)", run_2d),
          "gaussian": ("Gaussian → Gaussian Schrödinger bridges", run_gaussian),
          "eot": ("entropic OT benchmark", run_eot)}


def main(argv=None):
    parser = argparse.ArgumentParser(description="Flow / bridge benchmarks.")
    parser.add_argument("--suite", default="2d", help=f"comma list of {sorted(SUITES)}")
    parser.add_argument("--tasks", default="n-8gaussians,moons-8gaussians,n-moons")
    parser.add_argument("--methods", default="icfm,otcfm,sbcfm,dsbm,rf1,rf,vp")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--cell", action="append", default=[],
                        help="TASK:METHOD:SEEDS:STEPS (repeatable); replaces --tasks/--methods/--seeds/--steps")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--eval-n", type=int, default=10_000)
    parser.add_argument("--log", default=None, help="JSONL file of finished runs (appended; recorded runs are skipped)")
    parser.add_argument("--report-only", action="store_true", help="print the table from --log without running")
    parser.add_argument("--coupling-cost", action="store_true", help="2d: time the couplings' training loops")
    parser.add_argument("--coupling-cost-steps", type=int, default=1000)
    parser.add_argument("--gaussian-dims", default="2,16,64")
    parser.add_argument("--gaussian-steps", type=int, default=4000)
    parser.add_argument("--gaussian-n", type=int, default=10_000)
    parser.add_argument("--eot-seeds", type=int, default=1)
    parser.add_argument("--eot-steps", type=int, default=None, help="eot: training steps per method (default: its own)")
    parser.add_argument("--eot-dims", default=None, help="eot: comma list of D (default: the module's 2,16,64)")
    parser.add_argument("--eot-epsilons", default=None, help="eot: comma list of ε (default: the module's)")
    parser.add_argument("--note", default="", help="a sentence added under the section header")
    parser.add_argument("--no-write", action="store_true", help="do not append to RESULTS.md")
    args = parser.parse_args(argv)
    suites = [s.strip() for s in args.suite.split(",") if s.strip()]
    unknown = [s for s in suites if s not in SUITES]
    if unknown:
        raise SystemExit(f"unknown suite(s) {unknown}; suites: {sorted(SUITES)}")
    stamp = datetime.date.today().isoformat()
    machine = machine_description()
    for suite in suites:
        title, runner = SUITES[suite]
        started = time.perf_counter()
        body = runner(args)
        lines = [f"\n## flows --suite {suite}: {title} — {stamp} — {machine}\n"]
        if args.note:
            lines.append(args.note + "\n")
        lines += body
        lines.append(f"\n(suite wall time {time.perf_counter() - started:.0f} s)")
        publish("\n".join(lines) + "\n", write=not args.no_write)


if __name__ == "__main__":
    main()
