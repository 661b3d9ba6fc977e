"""Time of the FID formula itself (no network): ``jaxdiff.metrics.fid(features, reference_stats)`` against the
``F × F`` eigen-form (:func:`jaxdiff.metrics.frechet_distance_from_moments` of the features' moments) at 2,048
features, for sample counts below and above 2,048 (below it ``fid`` uses the ``[N, N]`` Gram form).

    python -m benchmarks.fid_time              # about 2 minutes on a slow 2-core machine
    python -m benchmarks.fid_time --no-write   # print only

Features are random Gaussians (the formula's cost does not depend on where features come from); the reference
statistics are those of 4,000 other rows. Each time is the median of 3 calls.
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import time

import numpy as np

from benchmarks._common import machine_description, publish
from jaxdiff import metrics

FEATURES = 2048
SAMPLE_COUNTS = (12, 500, 2000, 5000)


def _median_seconds(fn, repeats: int = 3) -> tuple[float, float]:
    times, value = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), value


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="FID formula time: Gram form vs F x F eigen-form.")
    parser.add_argument("--no-write", action="store_true", help="do not append to RESULTS.md")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    mixing = np.eye(FEATURES) + 0.05 * rng.normal(size=(FEATURES, FEATURES))
    reference = metrics.feature_statistics(rng.normal(size=(4000, FEATURES)) @ mixing)
    lines = [f"\n## fid_time ({datetime.date.today().isoformat()}; {machine_description()})\n",
             f"`python -m benchmarks.fid_time`: FID of N samples against reference statistics, {FEATURES} features, "
             "median seconds of 3 calls.\n",
             "| N | `fid` (s) | F x F eigen-form (s) | speed-up | relative difference |", "|---|---|---|---|---|"]
    for n in SAMPLE_COUNTS:
        features = rng.normal(size=(n, FEATURES)) @ mixing + 0.1
        t_fid, value = _median_seconds(lambda: metrics.fid(features, reference))
        t_full, full = _median_seconds(
            lambda: metrics.frechet_distance_from_moments(*metrics.feature_statistics(features), *reference))
        lines.append(f"| {n} | {t_fid:.2f} | {t_full:.2f} | {t_full / t_fid:.1f}x | {abs(value - full) / full:.1e} |")
    publish("\n".join(lines) + "\n", write=not args.no_write)


if __name__ == "__main__":
    main()
