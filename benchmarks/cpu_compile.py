"""XLA's CPU optimisation level for jaxdiff's programs: compile time and run time of the main job's pieces, and the
smoke run of the README's main command, with XLA's default (``xla_backend_optimization_level`` 3) against jaxdiff's
CPU options (level 1; level 0 for the one-off state initialisation: :mod:`jaxdiff._xla`).

    python -m benchmarks.cpu_compile                 # both settings (about 8 minutes on a slow 2-core machine)
    python -m benchmarks.cpu_compile --no-smoke      # the per-program table only

Each setting runs in its own process (XLA reads ``XLA_FLAGS`` once). "XLA default" sets
``XLA_FLAGS=--xla_backend_optimization_level=3``, which jaxdiff respects (it then passes no options); "jaxdiff" leaves
``XLA_FLAGS`` unset. Per program: the first call (trace + compile + run) and the median of the next 5 calls (run) of
- the train state's initialisation (the main job's U-Net, nf = 16, and Adam),
- the train step at batch 64,
- ``log_likelihood`` of 128 held-out digits (Tsit5, rtol = atol = 1e-4, Hutchinson): its NFE is reported, because
  the adaptive solver's step count moves with the last bits of the arithmetic,
- ``sample`` of 1,000 digits with DPM-Solver++(3M), 20 steps,
on the freshly initialised network (the cost per evaluation does not depend on the weights). The smoke run is
``python -m experiments.train --config.training.n_iters=40`` start to finish (its evaluation included).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from benchmarks._common import machine_description, publish, train_job

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAIN = os.path.join(ROOT, "experiments", "configs", "vp_digits.py")
SETTINGS = {"XLA default (level 3)": "--xla_backend_optimization_level=3", "jaxdiff (level 1, init 0)": None}


def _env(flags: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    if flags:
        env["XLA_FLAGS"] = flags
    return env


def _timed(fn) -> float:
    import jax

    started = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - started


def _first_and_run(fn, repeats: int = 5) -> tuple[float, float]:
    """``(first call, median of the next ``repeats`` calls)`` in seconds."""
    first = _timed(fn)
    return first, statistics.median(_timed(fn) for _ in range(repeats))


def child() -> dict:
    """Each program's first call and the median of its next 5 calls, in this process's XLA setting."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from experiments.configs.vp_digits import get_config
    from jaxdiff import _xla
    from jaxdiff.likelihood import log_likelihood
    from jaxdiff.training import config as C
    from jaxdiff.training.data import load_dataset, preprocess
    from jaxdiff.training.run import _model_wrapper, init_model_params, make_loss_fn
    from jaxdiff.training.step import create_train_state, make_train_step

    config = get_config()
    network, optimizer = C.build_network(config), C.build_optimizer(config)
    sde, parameterization, shape = C.build_path(config), C.build_parameterization(config), C.data_shape(config)
    dataset = load_dataset(config.data)
    k_init, k_train = jax.random.split(jax.random.key(0))
    out = {}

    def fresh_state():
        return create_train_state(init_model_params(config, network, shape, k_init), optimizer, k_train)

    init = _xla.jit(fresh_state, once=True)
    out["init"] = _first_and_run(init)
    state = init()
    step = make_train_step(make_loss_fn(config, dataset, sde, network, parameterization), optimizer,
                           ema_rate=config.model.ema_rate, ema_warmup=True, donate=False)
    batch = jnp.asarray(dataset.train[:64])
    out["train step (batch 64)"] = _first_and_run(lambda: step(state, batch))
    model = _model_wrapper(config, network, parameterization, sde, state.ema_params)
    held = jnp.asarray(np.asarray(preprocess(dataset, jax.random.key(1), dataset.test[:128])))
    nfe = []

    def likelihood():
        log_p, info = log_likelihood(jax.random.key(2), model, sde, held, rtol=1e-4, atol=1e-4, return_info=True)
        nfe.append(int(info["nfe"]))
        return log_p

    out["log_likelihood (128 rows)"] = _first_and_run(likelihood)
    out["likelihood_nfe"] = nfe[-1]
    import jaxdiff

    def draw():
        return jaxdiff.sample(jax.random.key(3), model, sde, shape=(1000, *shape), sampler="dpmpp_3m", steps=20)

    out["sample (1,000, DPM-Solver++(3M) 20)"] = _first_and_run(draw)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description="XLA CPU optimisation level: compile and run times.")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--no-smoke", action="store_true", help="skip the smoke runs of the main command")
    parser.add_argument("--no-write", action="store_true", help="do not append to RESULTS.md")
    args = parser.parse_args(argv)
    if args.child:
        print("RESULT " + json.dumps(child()), flush=True)
        return
    programs, smoke = {}, {}
    for name, flags in SETTINGS.items():
        proc = subprocess.run([sys.executable, "-m", "benchmarks.cpu_compile", "--child"], cwd=ROOT, env=_env(flags),
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"{name} failed:\n{proc.stderr[-3000:]}")
        programs[name] = json.loads(next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))[7:])
        print(name, programs[name], flush=True)
        if not args.no_smoke:
            workdir = tempfile.mkdtemp(prefix="cpu_compile_")
            try:
                smoke[name] = train_job(MAIN, workdir, steps=40, env=_env(flags))
            finally:
                shutil.rmtree(workdir, ignore_errors=True)
            print(name, f"smoke run {smoke[name]['wall_s']:.1f} s", flush=True)
    names = list(SETTINGS)
    lines = [f"\n## cpu_compile — {datetime.date.today()} — {machine_description()}\n",
             "First call (trace + compile + run) and the median of the next 5 calls (run) of the main job's programs (U-Net nf = 16), "
             "each setting in its own process; one run each.\n",
             "| program | " + " | ".join(f"{n}: first call / run" for n in names) + " |",
             "|---|" + "---|" * len(names)]
    for key in programs[names[0]]:
        if key == "likelihood_nfe":
            continue
        cells = [f"{programs[n][key][0]:.1f} s / {programs[n][key][1] * 1000:.1f} ms" for n in names]
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    lines.append("| log_likelihood NFE | " + " | ".join(str(programs[n]["likelihood_nfe"]) for n in names) + " |")
    if smoke:
        lines.append("| smoke run, `experiments.train --config.training.n_iters=40` (wall; bits/dim) | "
                     + " | ".join(f"{smoke[n]['wall_s']:.0f} s; {smoke[n]['bits_per_dim']:.3f}" for n in names) + " |")
    publish("\n".join(lines) + "\n", write=not args.no_write)


if __name__ == "__main__":
    main()
