r"""Objectives for flows and bridges, each ``loss(params, key, batch) -> scalar`` (or ``[batch]`` per example
with ``per_example=True``, as :func:`jaxdiff.dsm_loss`): the contract :func:`jaxdiff.training.make_train_step`
takes. ``batch`` is ``(x0, x1)`` or ``{"source": x0, "target": x1}``; built from a path, a coupling and
``apply_fn(params, x, t)`` in flow time (``apply_fn(params, x, t, key)`` with ``model_key=True``: dropout).

Couplings act on the batch the loss receives. In the training job (:mod:`jaxdiff.training.run`) that is the
**global** batch: every process draws the same global source batch and reads the same global target rows,
computes the same plan on the host (exact OT / Sinkhorn are deterministic), keeps its own rows of the coupled
pairs and hands the step ``coupling="paired"`` pairs — so 1 process and N processes train on identical pairs.
Called directly inside a jitted step instead, exact OT runs on the host through ``jax.pure_callback``.

* conditional flow matching (velocity regression), for every path and coupling
  ``E_{t, (x₀,x₁)∼π, z} |v_θ(x_t, t) − (ȧ x₀ + ḃ x₁ + ċ z)|²`` — I-CFM (independent, LinearInterpolant(σ)),
  OT-CFM (``coupling="exact"``), SB-CFM (``"sinkhorn"`` with ``ε = 2σ²`` and BrownianBridge(σ)),
  rectified flow (LinearInterpolant(0), independent or reflowed pairs);
* the stochastic-interpolant noise (denoiser) objective ``E |η_θ(x_t, t) − z|²``, whose minimizer gives
  the score ``∇ log p_t = −η/c(t)``, and both heads at once (:func:`interpolant_loss`);
* bridge matching (DSBM / I²SB): forward drift ``E |f_θ(x_t, t) − (x₁ − x_t)/(1 − t)|²`` and backward
  drift ``E |b_θ(x_t, t) − (x₀ − x_t)/t|²`` on the Brownian bridge of ``σ W`` between coupled pairs;
* one-step distillation ``E |x₀ + v_θ(x₀, 0) − x₁|²`` on (reflowed) pairs.

Losses average the squared error over batch and data elements (torchcfm's convention).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from jaxdiff.flows.couplings import COUPLINGS, couple
from jaxdiff.paths import BrownianBridge, Interpolant
from jaxdiff.processes import broadcast_time

Array = jax.Array
ApplyFn = Callable[[Any, Array, Array], Array]


def _check_common(path: Any, apply_fn: Any, coupling: str, epsilon: Any, t_eps: float) -> None:
    if not isinstance(path, Interpolant):
        raise TypeError(f"path must be a jaxdiff interpolant (LinearInterpolant, BrownianBridge, ...), got {type(path).__name__}.")
    if not callable(apply_fn):
        raise TypeError(f"apply_fn must be callable apply_fn(params, x, t), got {type(apply_fn).__name__}.")
    if coupling not in COUPLINGS:
        raise ValueError(f"coupling must be one of {COUPLINGS}, got coupling={coupling!r}.")
    if coupling == "sinkhorn" and (epsilon is None or not float(epsilon) > 0):
        raise ValueError(f"coupling='sinkhorn' needs epsilon > 0, got epsilon={epsilon!r}.")
    if not 0.0 <= t_eps < 0.5:
        raise ValueError(f"t_eps must lie in [0, 0.5), got t_eps={t_eps!r}.")


def split_batch(batch: Any) -> tuple[Array, Array]:
    """``(x0, x1)`` from a ``(source, target)`` pair or a ``{"source", "target"}`` dict (``"cond"`` optional)."""
    if isinstance(batch, dict):
        missing = sorted({"source", "target"} - set(batch))
        if missing:
            raise ValueError(f"a flow batch needs the keys 'source' and 'target'; missing {missing}.")
        unknown = sorted(set(batch) - {"source", "target", "cond"})
        if unknown:
            raise ValueError(f"unknown key(s) {unknown} in a flow batch; allowed are 'source', 'target', 'cond'.")
        return batch["source"], batch["target"]
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        return batch[0], batch[1]
    raise TypeError(f"a flow batch is (source, target) or {{'source', 'target'[, 'cond']}}, got {type(batch).__name__}.")


def batch_condition(batch: Any, coupling: str) -> Array | None:
    """The class labels ``[batch]`` of a conditional flow batch (``{"source", "target", "cond"}``; each label
    belongs to its target row), else None. A coupling that re-pairs rows inside the loss would separate labels
    from their targets, so a conditional batch must come coupled (``"paired"``, as the job hands it) or
    independent (rows stay in place)."""
    cond = batch.get("cond") if isinstance(batch, dict) else None
    if cond is not None and coupling not in ("independent", "paired"):
        raise ValueError(f"a conditional batch ('cond') needs coupling='paired' or 'independent', got "
                         f"coupling={coupling!r}: couple on the host first (the job does) so labels follow targets.")
    return cond


def _reduce(err: Array, per_example: bool) -> Array:
    """Mean over data dimensions (torchcfm's convention), then over the batch unless ``per_example``."""
    per = jnp.mean(err.reshape(err.shape[0], -1), axis=-1)
    return per if per_example else jnp.mean(per)


def _net(apply_fn: ApplyFn, params: Any, x: Array, t: Array, key: Array, model_key: bool,
         cond: Array | None = None) -> Array:
    extra = {} if cond is None else {"cond": cond}
    return apply_fn(params, x, t, key, **extra) if model_key else apply_fn(params, x, t, **extra)


def _draw(key: Array, batch: Any, path: Interpolant, coupling: str, epsilon: Any, t_eps: float):
    """Couple the batch, draw ``t ~ U[t_eps, 1 − t_eps]`` and ``z``; return ``(x0, x1, t, z, x_t)``."""
    x0, x1 = split_batch(batch)
    k_pair, k_t, k_z = jax.random.split(key, 3)
    x0, x1 = couple(k_pair, x0, x1, coupling, epsilon=epsilon)
    t = jax.random.uniform(k_t, (x0.shape[0],), x0.dtype, t_eps, 1.0 - t_eps)
    z = jax.random.normal(k_z, x0.shape, x0.dtype)
    return x0, x1, t, z, path.sample(x0, x1, t, z)


def flow_matching_loss(path: Interpolant, apply_fn: ApplyFn, *, coupling: str = "independent",
                       epsilon: float | None = None, t_eps: float = 0.0, per_example: bool = False,
                       model_key: bool = False) -> Callable:
    r"""Conditional flow matching: ``E |v_θ(x_t, t) − u_t(x_t | x₀, x₁)|²`` with ``(x₀, x₁)`` from ``coupling``."""
    _check_common(path, apply_fn, coupling, epsilon, t_eps)

    def loss(params: Any, key: Array, batch: Any) -> Array:
        key, k_model = jax.random.split(key) if model_key else (key, None)
        cond = batch_condition(batch, coupling)
        x0, x1, t, z, x_t = _draw(key, batch, path, coupling, epsilon, t_eps)
        target = path.velocity_from_noise(x0, x1, t, z)
        return _reduce((_net(apply_fn, params, x_t, t, k_model, model_key, cond) - target) ** 2, per_example)

    return loss


def interpolant_noise_loss(path: Interpolant, apply_fn: ApplyFn, *, coupling: str = "independent",
                           epsilon: float | None = None, t_eps: float = 1e-3, per_example: bool = False,
                           model_key: bool = False) -> Callable:
    r"""The interpolant's denoiser: ``E |η_θ(x_t, t) − z|²``; ``s_θ = −η_θ / c(t)`` estimates ``∇ log p_t``."""
    _check_common(path, apply_fn, coupling, epsilon, t_eps)

    def loss(params: Any, key: Array, batch: Any) -> Array:
        key, k_model = jax.random.split(key) if model_key else (key, None)
        cond = batch_condition(batch, coupling)
        _, _, t, z, x_t = _draw(key, batch, path, coupling, epsilon, t_eps)
        return _reduce((_net(apply_fn, params, x_t, t, k_model, model_key, cond) - z) ** 2, per_example)

    return loss


def interpolant_loss(path: Interpolant, apply_fn: ApplyFn, *, coupling: str = "independent",
                     epsilon: float | None = None, t_eps: float = 1e-3, heads: str = "dict",
                     per_example: bool = False, model_key: bool = False) -> Callable:
    r"""Velocity and noise heads together, on the same draws: the sum of both objectives. ``heads="dict"``:
    params ``{"velocity": ..., "noise": ...}`` of one ``apply_fn`` (as a :class:`jaxdiff.flows.FlowModel` holds
    them); ``heads="stacked"``: one network whose output stacks ``[velocity, noise]`` on the channel axis
    (``out_heads=2``, ``Direct(..., noise_head=True)``: the training job's form). The trained pair gives the
    ODE and the SDE family ``dX = (v + ε s) dt + √(2ε) dW``."""
    _check_common(path, apply_fn, coupling, epsilon, t_eps)
    if heads not in ("dict", "stacked"):
        raise ValueError(f"heads must be 'dict' or 'stacked', got heads={heads!r}.")

    def loss(params: Any, key: Array, batch: Any) -> Array:
        key, k_model = jax.random.split(key) if model_key else (key, None)
        cond = batch_condition(batch, coupling)
        x0, x1, t, z, x_t = _draw(key, batch, path, coupling, epsilon, t_eps)
        target = path.velocity_from_noise(x0, x1, t, z)
        if heads == "dict":
            velocity = _net(apply_fn, params["velocity"], x_t, t, k_model, model_key, cond)
            eta = _net(apply_fn, params["noise"], x_t, t, None if k_model is None else jax.random.fold_in(k_model, 1),
                       model_key, cond)
        else:
            out = _net(apply_fn, params, x_t, t, k_model, model_key, cond)
            channels = x_t.shape[-1]
            velocity, eta = out[..., :channels], out[..., channels:]
        return _reduce((velocity - target) ** 2, per_example) + _reduce((eta - z) ** 2, per_example)

    return loss


def bridge_matching_loss(sigma: float, apply_fn: ApplyFn, *, direction: str = "forward",
                         coupling: str = "paired", epsilon: float | None = None, t_eps: float = 1e-3,
                         per_example: bool = False, model_key: bool = False) -> Callable:
    r"""Bridge matching on the Brownian bridge of ``σ W`` between coupled pairs (DSBM's Markovian
    projection; I²SB for paired data).

    ``direction="forward"``: ``E |f_θ(x_t, t) − (x₁ − x_t)/(1 − t)|²`` (the drift of ``dX = f dt + σ dW``);
    ``"backward"``: ``E |b_θ(x_t, t) − (x₀ − x_t)/t|²`` (the drift of the reversed SDE).
    """
    if direction not in ("forward", "backward"):
        raise ValueError(f"direction must be 'forward' or 'backward', got direction={direction!r}.")
    if not float(sigma) > 0:
        raise ValueError(f"sigma must be > 0 (the bridge noise, epsilon = sigma**2), got sigma={sigma!r}.")
    path = BrownianBridge(float(sigma))
    _check_common(path, apply_fn, coupling, epsilon, t_eps)
    if t_eps <= 0.0:
        raise ValueError(f"bridge matching divides by t and 1 - t: t_eps must be > 0, got t_eps={t_eps!r}.")

    def loss(params: Any, key: Array, batch: Any) -> Array:
        key, k_model = jax.random.split(key) if model_key else (key, None)
        cond = batch_condition(batch, coupling)
        x0, x1, t, z, x_t = _draw(key, batch, path, coupling, epsilon, t_eps)
        if direction == "forward":
            target = (x1 - x_t) / broadcast_time(1.0 - t, x_t)
        else:
            target = (x0 - x_t) / broadcast_time(t, x_t)
        return _reduce((_net(apply_fn, params, x_t, t, k_model, model_key, cond) - target) ** 2, per_example)

    return loss


def distillation_loss(apply_fn: ApplyFn, *, per_example: bool = False) -> Callable:
    r"""One-step distillation of a (reflowed) flow: ``E |x₀ + v_θ(x₀, 0) − x₁|²`` on ODE pairs ``(x₀, x₁)``,
    so one Euler step ``x₁ ≈ x₀ + v_θ(x₀, 0)`` reproduces the ODE map."""
    if not callable(apply_fn):
        raise TypeError(f"apply_fn must be callable apply_fn(params, x, t), got {type(apply_fn).__name__}.")

    def loss(params: Any, key: Array, batch: Any) -> Array:
        x0, x1 = split_batch(batch)
        t = jnp.zeros((x0.shape[0],), x0.dtype)
        return _reduce((x0 + apply_fn(params, x0, t) - x1) ** 2, per_example)

    return loss
