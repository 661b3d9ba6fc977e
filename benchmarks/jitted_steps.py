"""Optimizer steps per dispatch (``training.n_jitted_steps``) in the one job: training steps per second of small
models, where Python dispatch and the host's batch work dominate, at 1, 5 and 25 steps per call. Each run goes
through ``jaxdiff.training.train`` (stream, coupling on the host, checkpoints at the end only); the rate is
measured between the first and the last log line, so compilation is excluded.

    python -m benchmarks.jitted_steps                 # toy_moons (MLP, DSM) and fm_8gaussians (OT-CFM), ~3 min
    python -m benchmarks.jitted_steps --steps 2000 --no-write
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import tempfile

from benchmarks._common import machine_description, publish

CONFIGS = {"toy_moons": "experiments.configs.toy_moons", "fm_8gaussians": "experiments.configs.fm_8gaussians"}


def steps_per_second(module: str, n_jitted: int, steps: int) -> tuple[float, float]:
    """``(steps/s after the first log, final loss)`` of a run of ``steps`` steps with ``n_jitted`` steps per call."""
    import importlib

    from jaxdiff.training.run import train

    config = importlib.import_module(module).get_config()
    config.training.n_iters = steps
    config.training.log_freq = 100
    config.training.snapshot_freq = steps
    config.training.snapshot_sampling = False
    config.training.sample_freq = 0
    config.eval.at_end = False
    config.training.n_jitted_steps = n_jitted
    with tempfile.TemporaryDirectory() as workdir:
        train(config, workdir, progress=False, log=lambda m: None)
        with open(os.path.join(workdir, "metrics.jsonl")) as fh:
            rows = [json.loads(line) for line in fh]
    first, last = rows[0], rows[-1]
    return (last["step"] - first["step"]) / (last["time"] - first["time"]), last["loss"]


def main(argv=None):
    parser = argparse.ArgumentParser(description="Steps per dispatch in the training job.")
    parser.add_argument("--steps", type=int, default=1100)
    parser.add_argument("--per-call", default="1,5,25")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    per_call = [int(k) for k in args.per_call.split(",")]
    lines = [f"\n## jitted_steps — {datetime.date.today()} — {machine_description()}\n",
             f"`training.n_jitted_steps` = k optimizer steps per dispatch (one `lax.scan`), {args.steps} steps through "
             "`jaxdiff.training.train`, rate between the first and last log line (compilation excluded). The final "
             "loss column shows the runs train the same model (equal to the last digits on CPU).\n",
             "| config | " + " | ".join(f"k = {k}: steps/s" for k in per_call) + " | speed-up (largest k vs 1) | "
             "final loss (k = 1) |",
             "|---|" + "---|" * len(per_call) + "---|---|"]
    for name, module in CONFIGS.items():
        rates = {}
        for k in per_call:
            rates[k] = steps_per_second(module, k, args.steps)
            print(f"{name} k={k}: {rates[k][0]:.1f} steps/s (loss {rates[k][1]:.4f})", flush=True)
        lines.append(f"| {name} | " + " | ".join(f"{rates[k][0]:.1f}" for k in per_call)
                     + f" | {rates[per_call[-1]][0] / rates[per_call[0]][0]:.2f}× | {rates[per_call[0]][1]:.4f} |")
    publish("\n".join(lines) + "\n", not args.no_write)


if __name__ == "__main__":
    main()
