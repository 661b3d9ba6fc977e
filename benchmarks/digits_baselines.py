"""Classical baselines on scikit-learn's digits: held-out bits/dim and FD_digits.

    python -m benchmarks.digits_baselines                      # fit, print, append to RESULTS.md (~1 min on 2 cores)
    python -m benchmarks.digits_baselines --no-write           # print only
    python -m benchmarks.digits_baselines --workdir DIR        # also a row for the trained model in DIR/eval.json

The project's fixed split (``stratified_split(labels, 0.2, seed=0)``: 1438 training, 359 held-out
images). A Gaussian mixture and a Gaussian kernel density estimate are fitted to the dequantized
training images ``v = k + U`` (hyper-parameters chosen on a held-back fifth of the training split, see
:mod:`jaxdiff.baselines`) and scored by
  * held-out bits/dim ``−E_U log p_v(k + U) / (64 ln 2)`` (an upper bound on the discrete NLL), and
  * FD_digits, the Fréchet distance in the feature space of the project's digits classifier
    (:func:`jaxdiff.metrics.digits_classifier`), between ``--samples`` samples and the held-out images —
    analogous to FID, not comparable to it.
Reference rows: the training images themselves against the held-out ones (the FD floor at these sample
sizes) and i.i.d. uniform levels (``log₂ 17`` bits/dim). With ``--workdir``, the trained model's figures
are read from ``DIR/eval.json`` (keys ``bits_per_dim`` and ``fd_digits``; missing ones print as —).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import time

import numpy as np

from benchmarks._common import machine_description, publish
from jaxdiff.baselines import gaussian_mixture_baseline, kde_baseline
from jaxdiff.metrics import DIGITS_LEVELS, digits_classifier, frechet_distance
from jaxdiff.training.data import load_digits_arrays, stratified_split


def read_model_eval(workdir: str) -> dict | None:
    """``bits_per_dim`` and ``fd_digits`` from ``workdir/eval.json`` (``None`` for a missing key, or when the
    file does not exist)."""
    path = os.path.join(workdir, "eval.json")
    if not os.path.exists(path):
        return None
    with open(path) as fh:
        record = json.load(fh)
    return {key: record.get(key) for key in ("bits_per_dim", "fd_digits")}


def cell(value, fmt: str = ".3f") -> str:
    """A table cell: ``value`` formatted, or — when it is missing."""
    return "—" if value is None else format(float(value), fmt)


def baseline_rows(train, test, num_samples: int, seed: int, test_features, feature_fn):
    """One row ``(method, held-out bits/dim, FD_digits, fit seconds, description)`` per baseline."""
    rows = []
    for name, fit in (("Gaussian mixture", gaussian_mixture_baseline), ("Gaussian KDE", kde_baseline)):
        t0 = time.perf_counter()
        model = fit(train, num_levels=DIGITS_LEVELS, seed=seed)
        fit_time = time.perf_counter() - t0
        bpd = model.bits_per_dim(test, seed=seed)
        fd = frechet_distance(feature_fn(model.sample(num_samples, seed=seed)), test_features)
        rows.append((name, bpd, fd, fit_time, model.description))
        print(f"{name}: {bpd:.4f} bits/dim, FD_digits {fd:.3f}, fit {fit_time:.1f} s — {model.description}", flush=True)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description="Gaussian-mixture and KDE baselines on digits: bits/dim, FD_digits.")
    parser.add_argument("--workdir", default=None, help="a training run's folder; adds a row from DIR/eval.json")
    parser.add_argument("--samples", type=int, default=None,
                        help="samples per baseline for FD_digits (default: the run's eval.num_samples, else 1000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the baselines' split, noise and samples")
    parser.add_argument("--no-write", action="store_true", help="do not append to RESULTS.md")
    args = parser.parse_args(argv)

    images, labels = load_digits_arrays()
    keep, held = stratified_split(labels, 0.2, seed=0)
    train, test = images[keep], images[held]
    t0 = time.perf_counter()
    classifier = digits_classifier(0)
    classifier_time = time.perf_counter() - t0
    test_features = classifier.features(test)

    if args.samples is None:
        args.samples = 1000
        if args.workdir and os.path.exists(os.path.join(args.workdir, "eval.json")):
            with open(os.path.join(args.workdir, "eval.json")) as fh:
                args.samples = int(json.load(fh).get("num_samples", 1000))
    rows = baseline_rows(train, test, args.samples, args.seed, test_features, classifier.features)
    uniform = np.random.default_rng(args.seed).integers(0, DIGITS_LEVELS, (args.samples,) + test.shape[1:])
    references = [
        (f"training images ({len(train)}) vs held-out: FD floor", None, frechet_distance(classifier.features(train), test_features)),
        (f"i.i.d. uniform levels ({args.samples})", math.log2(DIGITS_LEVELS), frechet_distance(classifier.features(uniform), test_features)),
    ]
    model_eval = read_model_eval(args.workdir) if args.workdir else None

    stamp = datetime.date.today().isoformat()
    lines = [
        f"\n## digits_baselines — {stamp} — {machine_description()}\n",
        f"scikit-learn digits, split stratified_split(labels, 0.2, seed=0): {len(train)} training / {len(test)} held-out "
        f"images. Bits/dim: −E log p_v(k + U)/(64 ln 2) on the held-out images (4 noise draws). FD_digits: Fréchet "
        f"distance in the 64-D feature space of the project's digits classifier (MLP, held-out accuracy "
        f"{classifier.test_accuracy:.4f}, trained in {classifier_time:.1f} s) between {args.samples} samples and the "
        f"{len(test)} held-out images — analogous to FID, not comparable to it.\n",
        "| method | held-out bits/dim | FD_digits | fit time |",
        "|---|---|---|---|",
    ]
    for name, bpd, fd, fit_time, _ in rows:
        lines.append(f"| {name} | {bpd:.4f} | {fd:.3f} | {fit_time:.1f} s |")
    if args.workdir:
        if model_eval is None:
            lines.append(f"| trained model ({args.workdir}: no eval.json) | — | — | — |")
        else:
            lines.append(f"| trained model ({args.workdir}) | {cell(model_eval['bits_per_dim'], '.4f')} | "
                         f"{cell(model_eval['fd_digits'])} | — |")
    for name, bpd, fd in references:
        lines.append(f"| {name} | {cell(bpd, '.4f')} | {fd:.3f} | — |")
    lines.append("")
    lines += [f"- {name}: {description}" for name, _, _, _, description in rows]
    publish("\n".join(lines) + "\n", write=not args.no_write)


if __name__ == "__main__":
    main()
