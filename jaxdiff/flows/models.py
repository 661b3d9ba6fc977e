r"""The MLP of low-dimensional flows and bridges. The model wrappers :class:`FlowModel` and
:class:`BridgeModel` live with every other wrapper in :mod:`jaxdiff.parameterization` (re-exported here):

* :class:`FlowModel` — ``v(x, t) ≈ E[u_t | x_t = x]`` (flow matching / rectified flow / interpolants)
  and, with a ``"noise"`` head ``η(x, t) ≈ E[z | x_t = x]``, the score ``s = −η / c(t)``. The pair
  gives the ODE ``dX = v dt`` and the SDE family ``dX = (v + ε s) dt + √(2ε) dW`` with the same
  marginals for every ``ε ≥ 0`` (Albergo & Vanden-Eijnden).
* :class:`BridgeModel` — forward drift ``f(x, t)`` of ``dX = f dt + σ dW`` (``t: 0 → 1``) and backward
  drift ``b(x, t)`` of the time-reversed SDE (``t: 1 → 0``, ``dX = b d(1−t) + σ dW``); Nelson's relation
  gives the score ``σ² ∇ log p_t = f + b`` and the probability-flow velocity ``½(f − b)``.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff.parameterization import BridgeModel, FlowModel  # noqa: F401  (re-exported)

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
