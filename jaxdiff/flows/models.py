r"""What the flow samplers integrate: a trained velocity field (plus, optionally, an interpolant
score) or a pair of bridge drifts, each carrying its network so that ``jaxdiff.sample`` and
``jaxdiff.translate`` need nothing else.

* :class:`FlowModel` — ``v(x, t) ≈ E[u_t | x_t = x]`` (flow matching / rectified flow / interpolants)
  and, with a ``"noise"`` head ``η(x, t) ≈ E[z | x_t = x]``, the score ``s = −η / c(t)``. The pair
  gives the ODE ``dX = v dt`` and the SDE family ``dX = (v + ε s) dt + √(2ε) dW`` with the same
  marginals for every ``ε ≥ 0`` (Albergo & Vanden-Eijnden).
* :class:`BridgeModel` — forward drift ``f(x, t)`` of ``dX = f dt + σ dW`` (``t: 0 → 1``) and backward
  drift ``b(x, t)`` of the time-reversed SDE (``t: 1 → 0``, ``dX = b d(1−t) + σ dW``); Nelson's relation
  gives the score ``σ² ∇ log p_t = f + b`` and the probability-flow velocity ``½(f − b)``.
"""

from __future__ import annotations

from typing import Any, Callable

import equinox as eqx
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff.processes import broadcast_time

Array = jax.Array


class FlowMLP(nn.Module):
    r"""An MLP for low-dimensional flows: ``[x, t, sin(2πkt), cos(2πkt)]_{k ≤ K} → (Dense → act)×L → Dense``.

    ``x: [batch, *data]``, ``t: [batch]`` in ``[0, 1]`` → ``[batch, *data]``.
    """

    hidden: tuple[int, ...] = (256, 256, 256)
    time_frequencies: int = 8
    activation: str = "selu"

    @nn.compact
    def __call__(self, x, t):
        shape = x.shape
        t = jnp.broadcast_to(jnp.asarray(t, x.dtype), (shape[0],))[:, None]
        k = jnp.arange(1, self.time_frequencies + 1, dtype=x.dtype)[None, :]
        feats = [x.reshape(shape[0], -1), t, jnp.sin(2 * jnp.pi * k * t), jnp.cos(2 * jnp.pi * k * t)]
        h = jnp.concatenate(feats, axis=-1)
        act = {"selu": nn.selu, "swish": nn.swish, "gelu": nn.gelu, "relu": nn.relu}[self.activation]
        for width in self.hidden:
            h = act(nn.Dense(width)(h))
        out = nn.Dense(int(np.prod(shape[1:])))(h)
        return out.reshape(shape)


def mlp_apply(hidden=(256, 256, 256), activation: str = "selu", time_frequencies: int = 8):
    """``(module, apply_fn)`` for :class:`FlowMLP` with ``apply_fn(params, x, t)``."""
    module = FlowMLP(hidden=tuple(hidden), activation=activation, time_frequencies=time_frequencies)

    def apply_fn(params, x, t):
        return module.apply(params, x, t)

    return module, apply_fn


def init_mlp(key: Array, module: nn.Module, data_shape: tuple[int, ...]) -> Any:
    """Parameters of ``module`` for data of shape ``data_shape`` (without the batch axis)."""
    x = jnp.zeros((1, *data_shape))
    return module.init(key, x, jnp.zeros((1,)))


class FlowModel(eqx.Module):
    r"""A velocity network (head ``"velocity"``) and optionally a noise network (head ``"noise"``).

    ``apply_fn(head_params, x, t) -> [batch, *data]`` is shared by the heads (static); ``params`` maps
    head names to parameter pytrees. ``velocity(x, t)``; ``score(path, x, t) = −η(x, t)/c(t)``.
    """

    params: dict
    apply_fn: Callable = eqx.field(static=True)

    def __init__(self, apply_fn: Callable, params: dict):
        if not callable(apply_fn):
            raise TypeError(f"apply_fn must be callable apply_fn(params, x, t), got {type(apply_fn).__name__}.")
        if not isinstance(params, dict) or "velocity" not in params:
            raise ValueError("params must be a dict with a 'velocity' head (and optionally a 'noise' head).")
        unknown = sorted(set(params) - {"velocity", "noise"})
        if unknown:
            raise ValueError(f"unknown head(s) {unknown} in params; allowed heads are 'velocity' and 'noise'.")
        self.apply_fn = apply_fn
        self.params = params

    @property
    def has_score(self) -> bool:
        return "noise" in self.params

    def velocity(self, x: Array, t: Array) -> Array:
        t = jnp.broadcast_to(jnp.asarray(t, x.dtype), (x.shape[0],))
        return self.apply_fn(self.params["velocity"], x, t).astype(x.dtype)

    def noise(self, x: Array, t: Array) -> Array:
        if "noise" not in self.params:
            raise ValueError("this FlowModel has no 'noise' head, so no score: train it with the interpolant "
                             "noise objective (jaxdiff.flows.interpolant_noise_loss) or sample with the ODE.")
        t = jnp.broadcast_to(jnp.asarray(t, x.dtype), (x.shape[0],))
        return self.apply_fn(self.params["noise"], x, t).astype(x.dtype)

    def score(self, path: Any, x: Array, t: Array) -> Array:
        t = jnp.broadcast_to(jnp.asarray(t, x.dtype), (x.shape[0],))
        c = broadcast_time(path._coefficients(t)[2], x)
        return -self.noise(x, t) / jnp.where(c > 0, c, 1.0)


class BridgeModel(eqx.Module):
    r"""Forward and backward drifts of a diffusion bridge with noise ``σ`` (``ε = σ²``), as DSBM trains.

    ``forward_drift(x, t)``: ``dX = f dt + σ dW`` from ``t = 0`` to 1. ``backward_drift(x, t)``: the
    reversed SDE's drift, ``dX = b (−dt) + σ dW`` from 1 to 0. ``velocity = ½(f − b)`` (probability flow),
    ``score = (f + b)/σ²``.
    """

    params: dict
    sigma: float
    apply_fn: Callable = eqx.field(static=True)

    def __init__(self, apply_fn: Callable, params: dict, sigma: float):
        if not isinstance(params, dict) or not {"forward", "backward"} >= set(params) or not params:
            raise ValueError("params must be a dict with 'forward' and/or 'backward' drift heads.")
        if not float(sigma) > 0:
            raise ValueError(f"sigma must be > 0 (the bridge's noise), got sigma={sigma!r}.")
        self.apply_fn = apply_fn
        self.params = params
        self.sigma = float(sigma)

    def _head(self, name: str, x: Array, t: Array) -> Array:
        if name not in self.params:
            raise ValueError(f"this BridgeModel has no {name!r} drift; it has {sorted(self.params)}.")
        t = jnp.broadcast_to(jnp.asarray(t, x.dtype), (x.shape[0],))
        return self.apply_fn(self.params[name], x, t).astype(x.dtype)

    def forward_drift(self, x: Array, t: Array) -> Array:
        return self._head("forward", x, t)

    def backward_drift(self, x: Array, t: Array) -> Array:
        return self._head("backward", x, t)

    def velocity(self, x: Array, t: Array) -> Array:
        return 0.5 * (self.forward_drift(x, t) - self.backward_drift(x, t))

    def score(self, path: Any, x: Array, t: Array) -> Array:
        return (self.forward_drift(x, t) + self.backward_drift(x, t)) / self.sigma**2
