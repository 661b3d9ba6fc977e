r"""The train state and a pure, jitted, data-parallel train step.

``train_step(state, batch) -> (state, metrics)``:

    key, state.rng = split(state.rng)
    loss, grads    = value_and_grad(loss_fn)(params, key, batch)
    params         = params + optimizer_update(grads)       (clip by global norm → Adam(W) with warm-up)
    ema_params     = r · ema_params + (1 − r) · params

On a ``jax.sharding.Mesh`` the batch is sharded over the ``"data"`` axis and the state replicated; XLA
inserts the all-reduce of the gradient, so the same code runs on 1 device or many (and, with
``jax.distributed``, many hosts). Random draws use JAX's partitionable threefry, so a sharded run
draws the same numbers as an unsharded one.
"""

from __future__ import annotations

from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxdiff import _validation as V
from jaxdiff import _xla

Array = jax.Array


@flax.struct.dataclass
class TrainState:
    """``step`` (int32 scalar), ``params``, ``ema_params``, ``opt_state`` and the PRNG ``rng``."""

    step: Array
    params: Any
    ema_params: Any
    opt_state: Any
    rng: Array


def make_optimizer(
    lr: float = 2e-4,
    *,
    warmup: int = 5000,
    grad_clip: float = 1.0,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    optimizer: str = "adam",
) -> optax.GradientTransformation:
    """score_sde's optimizer: clip by global norm (if ``grad_clip > 0``), then Adam (or AdamW with
    ``weight_decay``) at ``lr · min(step/warmup, 1)``."""
    V.check_positive("lr", lr)
    V.check_choice("optimizer", optimizer, ("adam", "adamw"))
    V.check_int_at_least("warmup", warmup, 0)
    V.check_nonnegative("grad_clip", grad_clip)
    V.check_nonnegative("weight_decay", weight_decay)
    schedule = optax.linear_schedule(0.0, lr, warmup) if warmup > 0 else optax.constant_schedule(lr)
    if optimizer == "adam":
        core = optax.adam(schedule, b1=beta1, b2=beta2, eps=eps)
    else:
        core = optax.adamw(schedule, b1=beta1, b2=beta2, eps=eps, weight_decay=weight_decay, mask=_decayed)
    return optax.chain(optax.clip_by_global_norm(grad_clip), core) if grad_clip > 0 else core


def _decayed(params):
    """Weight-decay mask: every leaf except fixed buffers kept in ``params`` (the Gaussian Fourier
    embedding's ``W``, which has a zero gradient and must not shrink)."""

    def keep(path, _):
        return not any("GaussianFourierProjection" in str(getattr(k, "key", k)) for k in path)

    return jax.tree_util.tree_map_with_path(keep, params)


def create_train_state(params: Any, optimizer: optax.GradientTransformation, rng: Array) -> TrainState:
    """A fresh state: step 0, EMA equal to the parameters. Buffers are copied, so donating the state
    to a train step never invalidates the caller's ``params``."""
    own = jax.tree_util.tree_map(jnp.copy, params)
    return TrainState(
        step=jnp.zeros((), jnp.int32), params=own, ema_params=jax.tree_util.tree_map(jnp.copy, params),
        opt_state=optimizer.init(own), rng=jnp.copy(rng),
    )


def make_train_step(
    loss_fn: Callable[[Any, Array, Any], Array],
    optimizer: optax.GradientTransformation,
    *,
    ema_rate: float = 0.9999,
    ema_warmup: bool = False,
    mesh: Mesh | None = None,
    donate: bool = True,
    steps_per_call: int = 1,
    draw_batch: Callable[[Array, Any], Any] | None = None,
    per_step_metrics: bool = False,
) -> Callable[[TrainState, Any], tuple[TrainState, dict]]:
    """A jitted ``train_step(state, batch) -> (state, {"loss", "grad_norm"})``: the one train step of jaxdiff
    (the main job, and every training loop of :mod:`jaxdiff.flows` through :func:`jaxdiff.flows.fit`).

    Args:
      loss_fn: ``loss_fn(params, key, batch) -> scalar`` (e.g. :func:`jaxdiff.dsm_loss`,
        :func:`jaxdiff.flows.flow_matching_loss`).
      optimizer: an optax transformation (:func:`make_optimizer`).
      ema_rate: EMA decay ``r`` in ``ema ← r ema + (1 − r) params``.
      ema_warmup: use ``r_k = min(r, (1 + k)/(10 + k))`` at step ``k`` (the EMA of a short run then
        forgets the initialization; score_sde uses a constant ``r``).
      mesh: a mesh with a ``"data"`` axis; the batch's leading axis is sharded over it and the state
        replicated. ``None``: no sharding constraints.
      donate: donate the input state's buffers (the caller must not reuse the old state).
      steps_per_call: ``n > 1`` runs ``n`` optimizer steps per call under ``lax.scan`` (one dispatch: what
        small models need); the metrics are then the mean loss and the last gradient norm. Without
        ``draw_batch`` the batch argument stacks ``n`` batches on a leading axis.
      draw_batch: ``draw_batch(key, data) -> batch``: each step draws its batch inside the program from the
        state's key and the call's ``data`` argument (a pool of pairs, or None for traceable samplers).
      per_step_metrics: with ``steps_per_call > 1``, return every step's ``loss`` and ``grad_norm`` (arrays
        ``[steps_per_call]``, score_sde's ``n_jitted_steps``: the job logs and checks each step) instead of the
        mean loss and last norm.
    """
    if not 0.0 <= ema_rate < 1.0:
        raise ValueError(f"ema_rate must lie in [0, 1), got ema_rate={ema_rate!r}.")
    V.check_int_at_least("steps_per_call", steps_per_call, 1)
    if draw_batch is not None and not callable(draw_batch):
        raise TypeError(f"draw_batch must be callable draw_batch(key, data), got {type(draw_batch).__name__}.")

    def one_step(state: TrainState, batch):
        rng, key = jax.random.split(state.rng)
        loss, grads = jax.value_and_grad(loss_fn)(state.params, key, batch)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        rate = jnp.asarray(ema_rate, jnp.float32)
        if ema_warmup:
            k = state.step.astype(jnp.float32)
            rate = jnp.minimum(rate, (1.0 + k) / (10.0 + k))
        ema = jax.tree_util.tree_map(lambda e, p: (rate * e + (1.0 - rate) * p).astype(e.dtype), state.ema_params, params)
        new = TrainState(step=state.step + 1, params=params, ema_params=ema, opt_state=opt_state, rng=rng)
        return new, {"loss": loss, "grad_norm": optax.tree.norm(grads)}

    def drawn_step(state: TrainState, data):
        rng, k_batch = jax.random.split(state.rng)
        return one_step(state.replace(rng=rng), draw_batch(k_batch, data))

    if steps_per_call == 1:
        step = one_step if draw_batch is None else drawn_step
    else:
        def step(state: TrainState, batch):
            if draw_batch is None:
                state, metrics = jax.lax.scan(one_step, state, batch)
            else:
                state, metrics = jax.lax.scan(lambda s, _: drawn_step(s, batch), state, None, length=steps_per_call)
            if per_step_metrics:
                return state, metrics
            return state, {"loss": jnp.mean(metrics["loss"]), "grad_norm": metrics["grad_norm"][-1]}

    donate_argnums = (0,) if donate else ()
    if mesh is None:
        return _xla.jit(step, donate_argnums=donate_argnums)
    if "data" not in mesh.axis_names:
        raise ValueError(f"mesh must have a 'data' axis, got axis names {mesh.axis_names}.")
    replicated = NamedSharding(mesh, P())
    sharded = NamedSharding(mesh, P("data") if steps_per_call == 1 or draw_batch is not None else P(None, "data"))
    return _xla.jit(
        step,
        in_shardings=(replicated, replicated if draw_batch is not None else sharded),
        out_shardings=(replicated, replicated),
        donate_argnums=donate_argnums,
    )
