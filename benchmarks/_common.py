"""What every benchmark shares: the machine line of a RESULTS.md section, and printing + appending."""

from __future__ import annotations

import os
import platform

import jax

RESULTS = os.path.join(os.path.dirname(__file__), "RESULTS.md")


def machine_description() -> str:
    """``arch, N usable cores, platform (device kind), jax version``."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    device = jax.devices()[0]
    return f"{platform.machine()}, {cores} cores, {device.platform} ({device.device_kind}), jax {jax.__version__}"


def publish(text: str, write: bool) -> None:
    """Print a benchmark's section and, if ``write``, append it to ``benchmarks/RESULTS.md``."""
    print(text)
    if write:
        with open(RESULTS, "a") as fh:
            fh.write(text)
