"""The README's main command, start to finish, before and after: ``python -m experiments.train`` on its embedded
default (``vp_digits.py``), timed as a user runs it, next to the same command with the main job as it was until
2026-12-07 (a 1.26M-parameter U-Net, ``nf = 32``, and Euler–Maruyama with 100 steps for the sample grids and FD_digits),
on the same machine one after the other.

    python -m benchmarks.main_job             # both runs (about 40 minutes on a slow 2-core machine)
    python -m benchmarks.main_job --only=after

Each row: wall time of the whole command (training + the final evaluation), the evaluation's share, held-out
bits/dim and FD_digits, against the Gaussian mixture and KDE baselines (``benchmarks.digits_baselines``).
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import tempfile

from benchmarks._common import machine_description, publish, train_job

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAIN = os.path.join(ROOT, "experiments", "configs", "vp_digits.py")
GMM = (2.5856, 3.738)  # bits/dim, FD_digits of benchmarks.digits_baselines on the same split (RESULTS.md)
KDE = (3.2100, 5.680)
RUNS = {"before": ("nf = 32 (1.26M parameters), Euler–Maruyama 100 steps",
                   ["--config.model.nf=32", "--config.sampling.sampler=euler_maruyama", "--config.sampling.steps=100"]),
        "after": ("nf = 16 (317k parameters), DPM-Solver++(3M) 20 steps: the main job", [])}


def main(argv=None):
    parser = argparse.ArgumentParser(description="The main job's wall time, before and after.")
    parser.add_argument("--only", choices=tuple(RUNS), default=None)
    parser.add_argument("--no-write", action="store_true", help="do not append to RESULTS.md")
    args = parser.parse_args(argv)
    names = [args.only] if args.only else list(RUNS)
    results = {}
    for name in names:
        label, overrides = RUNS[name]
        workdir = tempfile.mkdtemp(prefix=f"main_job_{name}_")
        try:
            results[name] = train_job(MAIN, workdir, overrides)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        r = results[name]
        print(f"{name}: {r['wall_s']:.0f} s, bits/dim {r['bits_per_dim']:.4f}, FD_digits {r['fd_digits']:.3f}", flush=True)
    lines = [f"\n## main_job — {datetime.date.today()} — {machine_description()}\n",
             "`python -m experiments.train` (3,000 steps at batch 64, then eval.json: held-out bits/dim through the "
             "PF-ODE and FD_digits of 1,000 samples of the config's sampler), one run each, one after the other on a quiet "
             f"machine. Baselines: Gaussian mixture {GMM[0]} bits/dim, FD_digits {GMM[1]}; KDE {KDE[0]}, {KDE[1]}.\n",
             "| U-Net | wall (train + eval) | of which eval | bits/dim | FD_digits | beats GMM and KDE |",
             "|---|---|---|---|---|---|"]
    for name, r in results.items():
        beats = r["bits_per_dim"] < GMM[0] and r["fd_digits"] < GMM[1]
        lines.append(f"| {RUNS[name][0]} | {r['wall_s'] / 60:.1f} min ({r['wall_s']:.0f} s) | {r['eval_seconds']:.0f} s "
                     f"| {r['bits_per_dim']:.4f} ± {r.get('bits_per_dim_stderr', 0):.4f} | {r['fd_digits']:.3f} | "
                     f"{'yes' if beats else 'no'} |")
    if len(results) == 2:
        lines.append(f"\nafter / before wall time: {results['after']['wall_s'] / results['before']['wall_s']:.2f}")
    publish("\n".join(lines) + "\n", write=not args.no_write)


if __name__ == "__main__":
    main()
