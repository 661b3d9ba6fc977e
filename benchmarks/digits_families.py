"""Digits, one run per model family at equal steps with the main job's U-Net: the VP-SDE main job
(vp_digits.py), I-CFM, OT-CFM, rectified flow (1 round) and a stochastic interpolant — every one trained,
sampled and evaluated by the same ``python -m experiments.train`` (one train step, stream, checkpointer and
eval.json). Prints a table (held-out bits/dim through the same probability-flow likelihood, FD_digits of
1,000 samples, the default sampler and its NFE, training and evaluation wall time) and appends it to
benchmarks/RESULTS.md with the machine and date.

    python -m benchmarks.digits_families                      # all five, 3,000 steps each (~1 h on 2 cores)
    python -m benchmarks.digits_families --runs ot_cfm,si --steps 500 --no-write
"""

from __future__ import annotations

import datetime
import json
import os

from benchmarks._common import machine_description, parse_runs, publish, train_job

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(ROOT, "experiments", "configs")

# name -> (label, config file, overrides)
RUNS = {
    # (the main job's U-Net is nf = 16 since 2026-12-07; the families compare at the nf = 32 the flow configs use)
    "vp_sde": ("VP-SDE, DSM (vp_digits.py at nf = 32)", "vp_digits.py", ["--config.model.nf=32"]),
    "i_cfm": ("I-CFM (fm_digits.py, independent, σ = 0.1)", "fm_digits.py",
              ["--config.flow.coupling=independent", "--config.flow.sigma=0.1"]),
    "ot_cfm": ("OT-CFM (fm_digits.py, exact OT on the batch)", "fm_digits.py", []),
    "rf": ("rectified flow, 1 round (rf_digits.py)", "rf_digits.py", []),
    "si": ("stochastic interpolant, v + η heads (si_digits.py)", "si_digits.py", []),
}
GMM_BPD, KDE_FD = 2.5856, 5.680  # benchmarks.digits_baselines on the same split (RESULTS.md, 2026-11-23)


def run_one(name: str, workdir: str, steps: int | None) -> dict:
    label, config, overrides = RUNS[name]
    result = train_job(os.path.join(CONFIGS, config), workdir, overrides, steps=steps)
    result.update(label=label)
    return result


def main(argv=None):
    args, names = parse_runs("Digits: VP-SDE vs I-CFM, OT-CFM, rectified flow, interpolant.", RUNS, os.path.join(ROOT, "outputs", "digits_families"), "training steps (default: the configs' 3,000)", argv)
    rows = []
    for name in names:
        result = run_one(name, os.path.join(args.outdir, name), args.steps)
        print(f"{name}: {json.dumps({k: result[k] for k in ('bits_per_dim', 'fd_digits', 'sampler_nfe')})}",
              flush=True)
        rows.append(result)
    steps = args.steps or 3000
    lines = [f"\n## digits_families — {datetime.date.today()} — {machine_description()}\n",
             f"One run each, {steps} steps at batch 64, the digits configs' 1.26M-parameter DDPM++ U-Net (nf = 32; si: a two-head "
             "last layer, 1,259,682), EMA 0.999 with warm-up, seed 0, `python -m experiments.train` for all. "
             "Bits/dim: held-out digits (359) through `jaxdiff.log_likelihood` (PF-ODE, Hutchinson, tolerance "
             "1e-4); FD_digits: 1,000 samples of the config's default sampler vs the held-out images. Targets: "
             f"bits/dim below the best Gaussian mixture ({GMM_BPD}) and FD_digits below the KDE ({KDE_FD}).\n",
             "| model | held-out bits/dim | FD_digits | sampler (NFE) | train s | eval s |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['label']} | {r['bits_per_dim']:.4f} ± {r.get('bits_per_dim_stderr', 0):.4f} | "
                     f"{r['fd_digits']:.3f} | {r['sampler']} ({r['sampler_nfe']:.0f}) | {r['train_s']:.0f} | "
                     f"{r['eval_seconds']:.0f} |")
    publish("\n".join(lines) + "\n", not args.no_write)


if __name__ == "__main__":
    main()
