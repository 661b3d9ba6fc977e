"""What every benchmark shares: the machine line of a RESULTS.md section, and printing + appending."""

from __future__ import annotations

import os
import platform

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
