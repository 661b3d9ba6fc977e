"""XLA compile options for jaxdiff's large compiled programs (train step, samplers, likelihood, state init).

On the CPU backend, XLA's default LLVM optimisation (``xla_backend_optimization_level`` 3) costs compile time that
these programs do not win back. On the main job's U-Net (2-core AMD EPYC, AVX2; ``python -m benchmarks.cpu_compile``)
level 1 makes the train step's first call 15 s instead of 21 s at the same step time, and the likelihood solve and
the samplers run 15–19 % faster. A program that runs once (a train state's initialisation) is compiled at level 0:
5 s instead of 11 s, bit-identical parameters.

Only the CPU backend is touched (GPU and TPU compiles keep XLA's defaults), and a level the user sets in
``XLA_FLAGS`` (``--xla_backend_optimization_level=N``) always wins: jaxdiff then passes no options.

:func:`cpu_options` adds XLA options to the CPU programs jaxdiff compiles inside a block (they win over ``XLA_FLAGS``),
e.g. to compare settings in one process or to give one execution-bound part of a run other options than the rest.
"""

from __future__ import annotations

import contextlib
import functools
import os
from typing import Any, Callable

import jax

CPU_LEVEL = 1  # programs that run many times (steps, sampler and solver loops)
CPU_LEVEL_ONCE = 0  # programs that run once (parameter and optimizer-state initialisation)


_CPU_OVERRIDES: dict[str, Any] = {}


def compiler_options(*, once: bool = False) -> dict[str, Any] | None:
    """The ``compiler_options`` jaxdiff gives ``jax.jit`` on the current default backend: on CPU
    ``{"xla_backend_optimization_level": 1}`` (``0`` with ``once``), elsewhere or when ``XLA_FLAGS`` sets the
    level, ``None`` (XLA's defaults); on CPU, the options of an enclosing :func:`cpu_options` block are added."""
    if jax.default_backend() != "cpu":
        return None
    options = {}
    if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
        options["xla_backend_optimization_level"] = CPU_LEVEL_ONCE if once else CPU_LEVEL
    options.update(_CPU_OVERRIDES)
    return options or None


@contextlib.contextmanager
def cpu_options(**options: Any):
    """Within the block, CPU programs jaxdiff compiles (or looks up: a program compiled with other options is not
    reused) add ``options``, XLA debug options by name such as ``xla_cpu_use_fusion_emitters=True``, to
    :func:`compiler_options`. Blocks nest; the previous options come back on exit."""
    saved = dict(_CPU_OVERRIDES)
    _CPU_OVERRIDES.update(options)
    try:
        yield
    finally:
        _CPU_OVERRIDES.clear()
        _CPU_OVERRIDES.update(saved)


class BackendJit:
    """``jax.jit(fun, **jit_kwargs)`` with :func:`compiler_options` for the default backend, built at the first
    call (a module-level jit must not initialise the backend at import, e.g. before ``jax.distributed``).

    Calls, ``lower`` and the other attributes of the jitted function pass through to it; one instance compiles
    once per distinct static arguments and shapes, like ``jax.jit``."""

    def __init__(self, fun: Callable, *, once: bool = False, **jit_kwargs):
        self._fun, self._once, self._jit_kwargs = fun, once, jit_kwargs
        self._jitted: dict[tuple, Any] = {}
        functools.update_wrapper(self, fun)

    @property
    def jitted(self):
        """The underlying ``jax.jit`` object for the current options (made on first use; one per distinct
        options, so a :func:`cpu_options` block neither reuses nor replaces programs compiled outside it)."""
        options = compiler_options(once=self._once)
        key = tuple(sorted((options or {}).items()))
        if key not in self._jitted:
            self._jitted[key] = jax.jit(self._fun, compiler_options=options, **self._jit_kwargs)
        return self._jitted[key]

    def __call__(self, *args, **kwargs):
        return self.jitted(*args, **kwargs)

    def __getattr__(self, name):
        if name.startswith("__") or name in ("_fun", "_once", "_jit_kwargs", "_jitted"):
            raise AttributeError(name)
        return getattr(self.jitted, name)


def jit(fun: Callable | None = None, *, once: bool = False, **jit_kwargs):
    """``jax.jit`` with jaxdiff's CPU compile options (:class:`BackendJit`); usable as ``jit(f, ...)``,
    ``@jit`` or ``functools.partial(jit, static_argnames=...)``."""
    if fun is None:
        return functools.partial(jit, once=once, **jit_kwargs)
    return BackendJit(fun, once=once, **jit_kwargs)
