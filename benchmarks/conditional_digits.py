"""Class-conditional digits with classifier-free guidance: the VP-SDE (vp_digits_cond.py) and OT-CFM
(fm_digits_cond.py, the best flow config of benchmarks.digits_families), each trained by ``python -m
experiments.train`` (3,000 steps, like their unconditional configs) and sampled at several guidance weights w
(``(1 + w)·cond − w·uncond``; w = 0 is the conditional model) with the config's sampler.

Per weight: class accuracy (the fraction of samples the project's digits classifier assigns to the label they were
drawn for), overall and per class; FD_digits overall against the 359 held-out digits (on all samples, and on the
first 100 per class — 1,000, the sample count of the unconditional runs' FD_digits in RESULTS.md), and per class
against every digit of that class in scikit-learn's set (train and held-out, ~180: the held-out split alone has
~36 per class, fewer than the 64 feature dimensions); NFE (guided model calls per sample: each evaluates both
branches in one network call on a doubled batch).

    python -m benchmarks.conditional_digits                         # train both if needed, 1,000 per class
    python -m benchmarks.conditional_digits --per-class 100 --workdirs vp=DIR,fm=DIR --no-write
"""

from __future__ import annotations

import argparse
import datetime
import os
import time

import numpy as np

from benchmarks._common import machine_description, publish

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(ROOT, "experiments", "configs")
RUNS = {"vp": ("VP-SDE, DSM (vp_digits_cond.py)", "vp_digits_cond.py"),
        "fm": ("OT-CFM (fm_digits_cond.py)", "fm_digits_cond.py")}
UNCONDITIONAL_FD = {"vp": 2.774, "fm": 2.802}  # benchmarks.digits_families, 1,000 samples (RESULTS.md 2026-12-02)


def ensure_trained(name: str, workdir: str) -> float | None:
    """Train the run through the job unless its workdir already has a finished checkpoint; returns train seconds."""
    import subprocess
    import sys

    from jaxdiff.training.run import load_run

    try:
        run = load_run(workdir)
        if run.step >= run.config.training.n_iters:
            return None
    except (FileNotFoundError, ValueError):
        pass
    started = time.time()
    args = [sys.executable, "-m", "experiments.train", f"--config={os.path.join(CONFIGS, RUNS[name][1])}",
            f"--workdir={workdir}", "--progress=false", "--config.eval.at_end=false"]
    proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"training {name} failed:\n{proc.stderr[-3000:]}")
    return time.time() - started


def evaluate(name: str, workdir: str, weights, per_class: int, seed: int = 0) -> list[dict]:
    import jax

    from jaxdiff.metrics import digits_classifier, digits_frechet_distance
    from jaxdiff.training.data import load_digits_arrays
    from jaxdiff.training.run import load_run

    run = load_run(workdir)
    classes = run.num_classes
    classifier = digits_classifier(0)
    held_out = run.dataset.test
    images, all_labels = load_digits_arrays()
    labels = np.repeat(np.arange(classes, dtype=np.int32), per_class)
    first_100 = np.concatenate([np.arange(c * per_class, c * per_class + min(100, per_class)) for c in range(classes)])
    rows = []
    for w in weights:
        started = time.time()
        x, nfe = run.sample(jax.random.key(seed), len(labels), cond=labels, guidance=float(w), return_nfe=True,
                            batch_size=min(1000, len(labels)))
        seconds = time.time() - started
        levels = run.dataset.to_data_units(x)
        predicted = classifier.predict(levels)
        per_class_acc = [float(np.mean(predicted[labels == c] == c)) for c in range(classes)]
        per_class_fd = [float(digits_frechet_distance(levels[labels == c], images[all_labels == c])) for c in range(classes)]
        rows.append({"run": name, "guidance": float(w), "accuracy": float(np.mean(predicted == labels)),
                     "per_class_accuracy": per_class_acc, "fd": float(digits_frechet_distance(levels, held_out)),
                     "fd_1000": float(digits_frechet_distance(levels[first_100], held_out)),
                     "per_class_fd": per_class_fd, "nfe": nfe, "seconds": seconds, "num": len(labels)})
        print(f"{name} w={w:g}: accuracy {rows[-1]['accuracy']:.4f}, FD {rows[-1]['fd']:.3f} "
              f"(1,000: {rows[-1]['fd_1000']:.3f}), {seconds:.0f} s", flush=True)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description="Conditional digits with classifier-free guidance.")
    parser.add_argument("--workdirs", default="", help="name=DIR pairs (default outputs/conditional_digits/<name>)")
    parser.add_argument("--runs", default="vp,fm")
    parser.add_argument("--weights", default="0,1,3")
    parser.add_argument("--per-class", type=int, default=1000)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    dirs = dict(item.split("=", 1) for item in args.workdirs.split(",") if item)
    weights = [float(w) for w in args.weights.split(",")]
    rows, trained = [], {}
    for name in [n for n in args.runs.split(",") if n]:
        if name not in RUNS:
            parser.error(f"unknown run {name!r}; choose from {list(RUNS)}")
        workdir = dirs.get(name, os.path.join(ROOT, "outputs", "conditional_digits", name))
        trained[name] = ensure_trained(name, workdir)
        rows += evaluate(name, workdir, weights, args.per_class)
    n = args.per_class
    lines = [f"\n## conditional_digits — {datetime.date.today()} — {machine_description()}\n",
             "Class-conditional runs (3,000 steps, batch 64, label dropout 0.1 per example, the unconditional configs' "
             f"U-Net plus a label embedding: 1,260,801 parameters), one run each, seed 0. {n} samples per class at each "
             "guidance weight w ((1 + w)·cond − w·uncond, w = 0: conditional) with the config's sampler. Accuracy: "
             "fraction classified (project's digits classifier, held-out accuracy 0.967) as the label drawn for. FD: "
             "FD_digits vs the 359 held-out digits on all samples, and on 100 per class (1,000: the sample count of the "
             "unconditional figure, given beside it); per-class FD vs all ~180 digits of the class (train + held-out). "
             "NFE: guided model calls per sample (w ≠ 0: each one network call on the doubled batch).\n",
             "| model | w | accuracy | min class acc | FD (all) | FD (1,000) | unconditional FD (1,000) | per-class FD "
             "(0..9) | NFE | sampling s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {RUNS[r['run']][0]} | {r['guidance']:g} | {r['accuracy']:.4f} | "
                     f"{min(r['per_class_accuracy']):.3f} | {r['fd']:.3f} | {r['fd_1000']:.3f} | "
                     f"{UNCONDITIONAL_FD[r['run']]} | {' '.join(f'{v:.1f}' for v in r['per_class_fd'])} | "
                     f"{r['nfe']:g} | {r['seconds']:.0f} |")
    times = ", ".join(f"{k}: {v:.0f} s" for k, v in trained.items() if v is not None)
    if times:
        lines.append(f"\nTraining wall time in this call: {times}.")
    publish("\n".join(lines) + "\n", not args.no_write)


if __name__ == "__main__":
    main()
