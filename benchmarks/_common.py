"""What every benchmark shares: the machine line of a RESULTS.md section, and printing + appending."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time

import jax

RESULTS = os.path.join(os.path.dirname(__file__), "RESULTS.md")


def cpu_model() -> str:
    """The CPU's model name and whether it has AVX-512 (``/proc/cpuinfo``; machines here differ ~3× by it)."""
    try:
        with open("/proc/cpuinfo") as fh:
            text = fh.read()
    except OSError:
        return platform.processor() or "unknown CPU"
    name = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), "")
    return f"{name or 'unknown CPU'}, {'avx512f' if ' avx512f' in text else 'no avx512f (avx2 only)'}"


def machine_description() -> str:
    """``arch, CPU model and AVX-512 flag, N usable cores, platform (device kind), jax version``."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    device = jax.devices()[0]
    return (f"{platform.machine()}, {cpu_model()}, {cores} cores, {device.platform} ({device.device_kind}), "
            f"jax {jax.__version__}")


def publish(text: str, write: bool) -> None:
    """Print a benchmark's section and, if ``write``, append it to ``benchmarks/RESULTS.md``."""
    print(text)
    if write:
        with open(RESULTS, "a") as fh:
            fh.write(text)


def train_job(config_path: str, workdir: str, overrides=(), *, steps: int | None = None, env: dict | None = None) -> dict:
    """Run ``python -m experiments.train`` on a config file (``--config.training.n_iters=steps`` when given) and
    return its eval.json with ``wall_s`` (the whole command) and ``train_s`` (wall minus the evaluation); ``env``: the
    command's environment (default this process's)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    args = [sys.executable, "-m", "experiments.train", f"--config={config_path}", f"--workdir={workdir}",
            "--progress=false", *overrides]
    if steps:
        args.append(f"--config.training.n_iters={steps}")
    started = time.time()
    proc = subprocess.run(args, cwd=root, capture_output=True, text=True, env=env)
    wall = time.time() - started
    if proc.returncode != 0:
        raise RuntimeError(f"{os.path.basename(config_path)} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    with open(os.path.join(workdir, "eval.json")) as fh:
        result = json.load(fh)
    result.update(wall_s=wall, train_s=wall - result.get("eval_seconds", 0.0))
    return result


def parse_runs(description: str, runs, outdir: str, steps_help: str, argv=None):
    """``(args, names)`` of a benchmark that trains a subset of ``runs`` through the job: ``--runs``, ``--steps``,
    ``--outdir``, ``--no-write`` (unknown run names are refused naming the known ones)."""
    import argparse

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--runs", default=",".join(runs), help=f"comma-separated subset of {list(runs)}")
    parser.add_argument("--steps", type=int, default=None, help=steps_help)
    parser.add_argument("--outdir", default=outdir)
    parser.add_argument("--no-write", action="store_true", help="do not append to RESULTS.md")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.runs.split(",") if n.strip()]
    unknown = sorted(set(names) - set(runs))
    if unknown:
        parser.error(f"unknown run(s) {unknown}; choose from {list(runs)}")
    return args, names
