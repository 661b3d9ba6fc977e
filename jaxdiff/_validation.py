"""Argument checks that run in Python, before anything is traced or compiled.

Every check names the argument, shows the offending value and says what is allowed. Checks on
values are skipped for traced arrays (inside ``jit``/``vmap``/``grad`` the value is unknown); checks
on shapes and dtypes always run, since shapes are static.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def is_concrete(value: Any) -> bool:
    """True when ``value`` can be read on the host (a Python number, a NumPy or non-traced JAX array)."""
    return not isinstance(value, jax.core.Tracer)


def _short(value: Any) -> str:
    """A short printable form of a value for an error message."""
    try:
        arr = np.asarray(value)
    except Exception:  # pragma: no cover - anything unprintable
        return repr(value)
    if arr.ndim == 0:
        return repr(arr.item())
    if arr.size <= 6:
        return str(arr.tolist())
    return f"array of shape {arr.shape} with min {arr.min():.6g} and max {arr.max():.6g}"


def check_positive(name: str, value: Any) -> None:
    """Raise if a concrete ``value`` has an entry that is not finite and > 0."""
    if not is_concrete(value):
        return
    arr = np.asarray(value, dtype=np.float64)
    if not (np.all(np.isfinite(arr)) and np.all(arr > 0)):
        raise ValueError(f"{name} must be finite and > 0, got {name}={_short(value)}.")


def check_nonnegative(name: str, value: Any) -> None:
    """Raise if a concrete ``value`` has an entry that is not finite and >= 0."""
    if not is_concrete(value):
        return
    arr = np.asarray(value, dtype=np.float64)
    if not (np.all(np.isfinite(arr)) and np.all(arr >= 0)):
        raise ValueError(f"{name} must be finite and >= 0, got {name}={_short(value)}.")


def check_less(name_lo: str, lo: Any, name_hi: str, hi: Any, *, strict: bool = True) -> None:
    """Raise unless ``lo < hi`` (or ``lo <= hi`` when not strict), for concrete scalars."""
    if not (is_concrete(lo) and is_concrete(hi)):
        return
    lo_f, hi_f = float(np.asarray(lo)), float(np.asarray(hi))
    ok = lo_f < hi_f if strict else lo_f <= hi_f
    if not ok:
        rel = "<" if strict else "<="
        raise ValueError(
            f"{name_lo} must be {rel} {name_hi}, got {name_lo}={lo_f!r} and {name_hi}={hi_f!r}."
        )


def check_time(name: str, t: Any, t_lo: float, t_hi: float, owner: str) -> None:
    """Raise if a concrete time ``t`` has an entry outside ``[t_lo, t_hi]`` (a 1e-6 relative slack)."""
    if not is_concrete(t):
        return
    arr = np.asarray(t, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {name}={_short(t)} for {owner}.")
    slack = 1e-6 * max(1.0, abs(t_hi) if math.isfinite(t_hi) else 1.0)
    if np.any(arr < t_lo - slack) or np.any(arr > t_hi + slack):
        raise ValueError(
            f"{name} must lie in [{t_lo!r}, {t_hi!r}] for {owner}, got {name}={_short(t)}."
        )


def check_time_shape(name: str, t: Any, x: Any, x_name: str = "x") -> None:
    """Time must be a scalar or have shape ``(batch,)`` with ``batch == x.shape[0]``."""
    t_shape = np.shape(t)
    x_shape = np.shape(x)
    if len(t_shape) == 0:
        return
    if len(t_shape) != 1:
        raise ValueError(
            f"{name} must be a scalar or have shape (batch,), got {name}.shape={t_shape} "
            f"with {x_name}.shape={x_shape}."
        )
    if len(x_shape) == 0 or x_shape[0] != t_shape[0]:
        raise ValueError(
            f"{name} of shape {t_shape} must match the batch axis of {x_name}: "
            f"{x_name}.shape={x_shape} (a (batch,) time needs {x_name}.shape[0] == batch)."
        )


def check_floating(name: str, x: Any) -> None:
    """Data arrays must have a floating dtype."""
    dtype = jnp.result_type(x)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"{name} must have a floating dtype, got {name}.dtype={dtype}.")


def check_same_shape(name_a: str, a: Any, name_b: str, b: Any) -> None:
    """Two arrays that are combined elementwise must have the same shape."""
    if np.shape(a) != np.shape(b):
        raise ValueError(
            f"{name_a} and {name_b} must have the same shape, got {name_a}.shape={np.shape(a)} "
            f"and {name_b}.shape={np.shape(b)}."
        )


def check_same_dtype(name_a: str, a: Any, name_b: str, b: Any) -> None:
    """Two data arrays that are combined must have the same floating dtype."""
    da, db = jnp.result_type(a), jnp.result_type(b)
    if da != db:
        raise TypeError(
            f"{name_a} and {name_b} must have the same dtype, got {name_a}.dtype={da} and "
            f"{name_b}.dtype={db}; cast one of them first."
        )


def check_choice(name: str, value: Any, allowed: tuple[str, ...] | list[str]) -> None:
    """Raise unless ``value`` is one of ``allowed``."""
    if value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {name}={value!r}.")


def check_int_at_least(name: str, value: Any, minimum: int) -> None:
    """Raise unless ``value`` is an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {name}={value!r}.")
