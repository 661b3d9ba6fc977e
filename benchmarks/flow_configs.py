"""The 2-D, translation and bridge configs through the one job: each of ``fm_8gaussians``, ``fm_moons``,
``fm_sb_moons``, ``rf_8gaussians``, ``sb_8gaussians_moons``, ``sb_digits_inverted`` and ``sb_digits_paired`` is
trained, sampled and evaluated by ``python -m experiments.train`` (the same train step, stream, checkpoints,
stages and eval.json as the diffusion main job). Prints a table (2-D: exact W2 of 2,000 samples or translated
held-out source points to 2,000 held-out target points, with the W2 of two independent 2,000-point target draws
as the floor; digit domains: FD_digits, class kept, paired MSE; sampler and NFE; wall time) and appends it to
benchmarks/RESULTS.md with the machine and date.

    python -m benchmarks.flow_configs                         # all seven at their configs' steps
    python -m benchmarks.flow_configs --runs fm_8gaussians --steps 500 --no-write
"""

from __future__ import annotations

import datetime
import os

from benchmarks._common import machine_description, parse_runs, publish, train_job

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(ROOT, "experiments", "configs")
RUNS = {
    "fm_8gaussians": "OT-CFM, N(0, I) → 8 Gaussians",
    "fm_moons": "OT-CFM, 8 Gaussians → moons (translation)",
    "fm_sb_moons": "SB-CFM + noise head (interpolant), N(0, I) → moons",
    "rf_8gaussians": "2-RF + one-step distillation (3 stages), N(0, I) → 8 Gaussians",
    "sb_8gaussians_moons": "DSBM (8 stages), 8 Gaussians → moons",
    "sb_digits_inverted": "DSBM (4 stages), digits → inverted digits",
    "sb_digits_paired": "paired bridge matching, digits → rotated digits",
}


def w2_floor(name: str) -> float | None:
    """W2 between two independent 2,000-point draws of the config's target law (the sampling floor)."""
    if not name.startswith(("fm_", "rf_", "sb_8")):
        return None
    import jax

    from jaxdiff.flows.couplings import exact_w2
    from jaxdiff.flows.laws import get_law

    law = get_law("moons" if "moons" in name else "8gaussians")
    a, b = law(jax.random.PRNGKey(101), 2000), law(jax.random.PRNGKey(202), 2000)
    return exact_w2(a, b)


def main(argv=None):
    args, names = parse_runs("2-D, translation and bridge configs through the one job.", RUNS, os.path.join(ROOT, "outputs", "flow_configs"), "training.n_iters per stage (default: the configs')", argv)
    lines = [f"\n## flow_configs — {datetime.date.today()} — {machine_description()}\n",
             "Each config of `experiments/configs/` through `python -m experiments.train` (seed 0, one run each"
             + (f", {args.steps} steps per stage" if args.steps else ", the configs' steps") + "). 2-D: exact W2 "
             "between 2,000 samples (or translated held-out source points) and 2,000 held-out target points; floor: "
             "two independent 2,000-point draws of the target. Digits: FD_digits of the 359 translated held-out "
             "digits (upright) vs the held-out target digits, the fraction the digits classifier still assigns to "
             "the source digit's class, and for paired data the MSE to the paired target (model space, [−1, 1]).\n",
             "| config | what | W2 (floor) | FD_digits | class kept | paired MSE | sampler (NFE) | wall s |",
             "|---|---|---|---|---|---|---|---|"]
    for name in names:
        r = train_job(os.path.join(CONFIGS, name + ".py"), os.path.join(args.outdir, name), steps=args.steps)
        floor = w2_floor(name)
        w2 = f"{r['w2']:.3f} ({floor:.3f})" if "w2" in r else "—"
        fd = f"{r['fd_digits']:.2f}" if "fd_digits" in r else "—"
        kept = f"{r['class_preserved']:.3f}" if "class_preserved" in r else "—"
        mse = f"{r['mse_to_paired_target']:.4f}" if "mse_to_paired_target" in r else "—"
        row = (f"| {name} | {RUNS[name]} | {w2} | {fd} | {kept} | {mse} | {r['sampler']} ({r['sampler_nfe']:.0f}) "
               f"| {r['wall_s']:.0f} |")
        print(row, flush=True)
        lines.append(row)
    publish("\n".join(lines) + "\n", not args.no_write)


if __name__ == "__main__":
    main()
