"""Exact OT between equal-size point batches: scipy's assignment on the full squared-distance cost against jaxdiff's
:func:`jaxdiff.flows.couplings.squared_euclidean_assignment`, which solves it on the cross term ``−x₀ x₁ᵀ`` (the row
and column terms of ``|x − y|²`` are the same for every permutation, so the argmin is the same).

    python -m benchmarks.exact_ot              # about 1 minute on a slow 2-core machine
    python -m benchmarks.exact_ot --no-write   # print only

Batches: ``x₀ ~ N(0, I)`` and ``x₁`` an anisotropic shifted Gaussian in 2-D (OT-CFM's minibatches at 256, its
2-D benchmarks; ``exact_w2`` on 2,000 points, as the flow tests run it) and 64-D (digits). Times are the median of
several solves; "same cost" compares the two assignments' total squared distance (relative difference).
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import time

import numpy as np
from scipy.optimize import linear_sum_assignment

from benchmarks._common import machine_description, publish
from jaxdiff.flows.couplings import squared_euclidean_assignment

CASES = ((256, 2, 20), (256, 64, 20), (1000, 2, 3), (2000, 2, 3))  # (n, dimension, repeats)


def _batches(n: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    mix = np.eye(dim) + 0.4 * np.tril(rng.normal(size=(dim, dim)), -1)
    return rng.normal(size=(n, dim)), rng.normal(size=(n, dim)) @ mix.T + 1.0


def _median_seconds(solve, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        solve()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Exact OT assignment: full cost vs cross term.")
    parser.add_argument("--no-write", action="store_true", help="do not append to RESULTS.md")
    args = parser.parse_args(argv)
    lines = [f"\n## exact_ot ({datetime.date.today().isoformat()}; {machine_description()})\n",
             "`python -m benchmarks.exact_ot`: scipy `linear_sum_assignment` on |x0 - x1|^2 vs on -x0 x1^T "
             "(`squared_euclidean_assignment`), median seconds per solve.\n",
             "| n | dim | full cost (s) | cross term (s) | speed-up | same cost (rel. diff) |",
             "|---|---|---|---|---|---|"]
    for n, dim, repeats in CASES:
        x0, x1 = _batches(n, dim, seed=n + dim)
        full = ((x0[:, None, :] - x1[None, :, :]) ** 2).sum(-1)
        t_full = _median_seconds(lambda: linear_sum_assignment(full), repeats)
        t_cross = _median_seconds(lambda: squared_euclidean_assignment(x0, x1), repeats)
        rows, cols = squared_euclidean_assignment(x0, x1)
        best = full[linear_sum_assignment(full)].sum()
        rel = abs(full[rows, cols].sum() - best) / best
        lines.append(f"| {n} | {dim} | {t_full:.4f} | {t_cross:.4f} | {t_full / t_cross:.2f}x | {rel:.1e} |")
    publish("\n".join(lines) + "\n", write=not args.no_write)


if __name__ == "__main__":
    main()
