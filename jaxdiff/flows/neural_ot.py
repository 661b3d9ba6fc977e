r"""Neural optimal transport from samples: NOT (Korotin et al., ICLR 2023) and ENOT (Gushchin et al.,
NeurIPS 2023).

Source ``x ~ p`` (``t = 0``), target ``y ~ q`` (``t = 1``), quadratic cost ``c(x, y) = ½|x − y|²``.

**NOT** learns a (stochastic) map ``T(x, z)`` and a potential ``f`` from the max–min dual

    sup_f inf_T  E_x [ C(x, T(x, ·)♯N(0, σ_z² I)) − E_z f(T(x, z)) ] + E_y f(y),

with either cost

* ``"strong"``: ``C(x, δ_T(x)) = ½|x − T(x)|²`` — a deterministic map; at the saddle point ``T`` is the
  Monge (Brenier) map;
* ``"weak"`` (γ-weak quadratic): ``C(x, μ) = ∫ ½|x − y|² dμ(y) − (γ/2) Var(μ)``, estimated from
  ``z_per_x`` draws of ``z`` per ``x`` (the sample variance unbiased). ``γ = 0`` is the strong cost with a
  noise input; ``γ > 0`` rewards spread, so the map becomes one-to-many. Since
  ``C(x, μ) = ½|x − m_μ|² + ½(1 − γ) Var(μ)``, only the conditional mean ``m(x)`` is pinned down: between
  ``N(μ₀, Σ₀)`` and ``N(μ₁, Σ₁)`` with ``Σ₀/γ² ≼ Σ₁`` it is ``m(x) = μ₁ + (x − μ₀)/γ`` and the average
  conditional variance is ``tr Σ₁ − tr Σ₀/γ²``. At the saddle point the map's inner problem is indifferent
  to the spread around ``m(x)`` (the "fake solutions" of Korotin et al., *Kernel Neural Optimal
  Transport*, ICLR 2023): only the potential's pressure on the marginal sets it, so it converges more
  slowly than ``m``. ``γ ≤ 1`` is required here: for ``γ > 1`` the variance term is negative and an MLP
  potential, of at most linear growth, cannot keep the spread bounded.

**ENOT** replaces the map by the SDE ``dX_t = g_θ(X_t, t) dt + √ε dW_t`` from ``X₀ = x`` and the cost by
its energy, with a potential ``β`` on the endpoint:

    sup_β inf_θ  E[ ∫₀¹ ½|g_θ(X_t, t)|² dt − β(X₁) ] + E_y β(y).

``E ∫ ½|g|² dt = ε KL(law(X) ‖ law(x + √ε W))``, so the inner problem is the Schrödinger bridge with
reference ``√ε W`` and ``(X₀, X₁)`` follows the entropic OT plan of ``min E_π[½|x − y|²] − ε H(π)`` —
the convention of :mod:`jaxdiff.flows.gaussian` (its ``C_ε``, ``S``). ``ε`` enters only through the
noise: a constant factor on the energy just rescales ``β``. The SDE is solved by Euler–Maruyama with
``num_steps`` steps, noise in every step; the energy is the left Riemann sum over the same grid.

Training follows both papers: Adam on both players, ``inner_steps`` updates of the map (or drift) per
update of the potential; each update draws fresh batches. The map's loss is ``E[cost − f(T)]`` and the
potential's ``E f(T(x)) − E f(y)`` (the map is held fixed there). Our choices: swish MLPs, a residual map
``T(x, z) = x + MLP([x, z])``, the drift ``MLP([x, t])``, training in float32.

``sample_source(key, n)`` and ``sample_target(key, n)`` must return ``[n, D]`` arrays and be traceable by
JAX (they are called inside the jitted training steps).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable

import equinox as eqx
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

Array = jax.Array
Sampler = Callable[[Array, int], Array]

NOT_COSTS = ("strong", "weak")
_TRAIN_DTYPE = jnp.float32
LR_FINAL_FRACTION = 0.1  # the learning rate decays (cosine) from lr to lr * LR_FINAL_FRACTION


# --------------------------------------------------------------------------------------------- networks


class MLP(nn.Module):
    """``h [batch, in] → (Dense → swish) × len(hidden) → Dense → [batch, out_dim]``."""

    hidden: tuple[int, ...]
    out_dim: int

    @nn.compact
    def __call__(self, h: Array) -> Array:
        for width in self.hidden:
            h = nn.swish(nn.Dense(width)(h))
        return nn.Dense(self.out_dim)(h)


def _map_apply(net: MLP, params: Any, x: Array, z: Array) -> Array:
    """Residual map ``T(x, z) = x + MLP([x, z])``: ``x [B, D]``, ``z [B, z_dim]`` → ``[B, D]``."""
    return x + net.apply(params, jnp.concatenate([x, z], axis=-1))


def _drift_apply(net: MLP, params: Any, x: Array, t: Array) -> Array:
    """Drift ``g(x, t) = MLP([x, t])``: ``x [B, D]``, scalar ``t`` → ``[B, D]``."""
    t_column = jnp.broadcast_to(jnp.asarray(t, x.dtype), (x.shape[0], 1))
    return net.apply(params, jnp.concatenate([x, t_column], axis=-1))


def _potential_apply(net: MLP, params: Any, y: Array) -> Array:
    """Scalar potential ``f(y)``: ``y [B, D]`` → ``[B]``."""
    return net.apply(params, y)[:, 0]


# Compiled once per network (and shape) for the result objects' methods.
_jitted_map_apply = jax.jit(_map_apply, static_argnums=0)
_jitted_potential_apply = jax.jit(_potential_apply, static_argnums=0)


# ------------------------------------------------------------------------------------ argument checks


def _check_choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {name}={value!r}.")


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {name}={value!r}.")
    return int(value)


def _check_float(name: str, value: Any, *, strictly_positive: bool) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    ok = math.isfinite(number) and (number > 0 if strictly_positive else number >= 0)
    if not ok:
        rule = "> 0" if strictly_positive else ">= 0"
        raise ValueError(f"{name} must be a finite number {rule}, got {name}={value!r}.")
    return number


def _check_hidden(hidden: Any) -> tuple[int, ...]:
    widths = (hidden,) if isinstance(hidden, (int, np.integer)) else tuple(hidden)
    if not widths or any(isinstance(w, bool) or not isinstance(w, (int, np.integer)) or w < 1 for w in widths):
        raise ValueError(f"hidden must be a non-empty sequence of positive layer widths, got hidden={hidden!r}.")
    return tuple(int(w) for w in widths)


def _data_dim(name: str, sampler: Any, key: Array) -> int:
    """Call ``sampler(key, 2)`` once (outside jit) and return ``D`` of its ``[2, D]`` output."""
    if not callable(sampler):
        raise ValueError(f"{name} must be a callable (key, n) -> [n, D] array, got {type(sampler).__name__}.")
    shape = tuple(jnp.shape(sampler(key, 2)))
    if len(shape) != 2 or shape[0] != 2:
        raise ValueError(f"{name}(key, n) must return an array of shape [n, D]; for n=2 it returned shape {shape}.")
    return shape[1]


def _check_samplers(sample_source: Any, sample_target: Any) -> int:
    dim_source = _data_dim("sample_source", sample_source, jax.random.key(0))
    dim_target = _data_dim("sample_target", sample_target, jax.random.key(0))
    if dim_source != dim_target:
        raise ValueError(
            f"sample_source and sample_target must give the same data dimension D, got {dim_source} and {dim_target}."
        )
    return dim_source


def _check_points(name: str, x: Any, dim: int) -> Array:
    x = jnp.asarray(x)
    if x.ndim != 2 or x.shape[1] != dim:
        raise ValueError(f"{name} must have shape [N, {dim}], got shape {tuple(x.shape)}.")
    return x


def _draw(sampler: Sampler, key: Array, n: int) -> Array:
    return jnp.asarray(sampler(key, n)).astype(_TRAIN_DTYPE)


# ------------------------------------------------------------------------------------ training loop


def _cosine_decay(lr: Array, num_updates: Array) -> optax.Schedule:
    """Rate ``lr`` decaying along a cosine to ``lr · LR_FINAL_FRACTION`` after ``num_updates`` updates.

    Both may be traced, so runs that differ only in ``lr`` or ``steps`` share one compiled step.
    """

    def schedule(count: Array) -> Array:
        progress = jnp.minimum(count / jnp.maximum(num_updates, 1), 1.0)
        return lr * (LR_FINAL_FRACTION + (1.0 - LR_FINAL_FRACTION) * 0.5 * (1.0 + jnp.cos(jnp.pi * progress)))

    return schedule


def _optimizers(lr: Array, steps: Array, inner_steps: int) -> tuple[optax.GradientTransformation, ...]:
    """Adam for the map/drift (``steps · inner_steps`` updates) and for the potential (``steps`` updates)."""
    return optax.adam(_cosine_decay(lr, steps * inner_steps)), optax.adam(_cosine_decay(lr, steps))


def _run_outer_loop(
    outer_step: Callable, map_params: Any, potential_params: Any, *, lr: float, steps: int, inner_steps: int, key: Array
) -> tuple[tuple, np.ndarray]:
    """Initialise both optimizers, then ``state, objective = outer_step(state, key, schedule)`` ``steps`` times.

    ``schedule = (lr, steps)`` as arrays, traced in the jitted step. Returns the state and the objectives.
    """
    schedule = (jnp.asarray(lr, _TRAIN_DTYPE), jnp.asarray(steps, _TRAIN_DTYPE))
    map_optimizer, potential_optimizer = _optimizers(*schedule, inner_steps)
    state = (map_params, potential_params, map_optimizer.init(map_params), potential_optimizer.init(potential_params))
    objectives = []
    for step_key in jax.random.split(key, steps):
        state, objective = outer_step(state, step_key, schedule)
        objectives.append(objective)
    return state, np.asarray(jnp.stack(objectives))


# --------------------------------------------------------------------------------------- NOT (map)


def weak_quadratic_cost(x: Array, y: Array, gamma: float) -> Array:
    r"""Unbiased estimate of ``C(x, μ) = ∫ ½|x − y|² dμ − (γ/2) Var(μ)`` from ``K ≥ 2`` draws of ``μ``.

    ``x [B, D]``, ``y [B, K, D]`` (``y[b, k] ~ μ_b``) → ``[B]``:
    ``mean_k ½|x − y_k|² − (γ/2) Σ_k |y_k − ȳ|² / (K − 1)``.
    """
    transport = 0.5 * jnp.mean(jnp.sum((x[:, None, :] - y) ** 2, axis=-1), axis=1)
    spread = jnp.sum((y - jnp.mean(y, axis=1, keepdims=True)) ** 2, axis=(1, 2)) / (y.shape[1] - 1)
    return transport - 0.5 * gamma * spread


class NeuralOTMap(eqx.Module):
    r"""A NOT map ``T(x, z)`` (``z ~ N(0, z_std² I)``, ``z_dim = 0`` for the strong cost) and potential ``f``.

    ``translate(key, x [N, D]) → [N, D]``; ``conditional_sample(key, x, n_per_x) → [N, n_per_x, D]``;
    ``potential(y [M, D]) → [M]``. ``objective_history [steps]``: the minibatch dual objective
    ``E[C − f(T)] + E f(y)`` at each potential update (for the strong cost it estimates ``½ W₂²``).
    """

    map_params: Any
    potential_params: Any
    objective_history: np.ndarray
    gamma: float
    z_std: float
    dim: int = eqx.field(static=True)
    z_dim: int = eqx.field(static=True)
    cost: str = eqx.field(static=True)
    map_net: MLP = eqx.field(static=True)
    potential_net: MLP = eqx.field(static=True)

    def _noise(self, key: Array | None, n: int) -> Array:
        if self.z_dim == 0:  # deterministic map: no key needed
            return jnp.zeros((n, 0), _TRAIN_DTYPE)
        return self.z_std * jax.random.normal(key, (n, self.z_dim), _TRAIN_DTYPE)

    def translate(self, key: Array | None, x_source: Array) -> Array:
        """One sample ``T(x, z)`` per row of ``x_source [N, D]`` → ``[N, D]`` (``key`` may be None if ``z_dim = 0``)."""
        x = _check_points("x_source", x_source, self.dim)
        x32 = x.astype(_TRAIN_DTYPE)
        y = _jitted_map_apply(self.map_net, self.map_params, x32, self._noise(key, x.shape[0]))
        return y.astype(x.dtype)

    def conditional_sample(self, key: Array, x: Array, n_per_x: int) -> Array:
        """``n_per_x`` draws of ``T(x, z)`` for each row of ``x [N, D]`` → ``[N, n_per_x, D]``."""
        x = _check_points("x", x, self.dim)
        n_per_x = _check_int("n_per_x", n_per_x, 1)
        x_repeated = jnp.repeat(x, n_per_x, axis=0)
        return self.translate(key, x_repeated).reshape(x.shape[0], n_per_x, self.dim)

    def potential(self, y: Array) -> Array:
        """The learned potential ``f(y)`` for ``y [M, D]`` → ``[M]``."""
        y = _check_points("y", y, self.dim)
        values = _jitted_potential_apply(self.potential_net, self.potential_params, y.astype(_TRAIN_DTYPE))
        return values.astype(y.dtype)


@dataclasses.dataclass(frozen=True)
class _NOTConfig:
    """Everything static about a NOT training run (hashable: the jitted step compiles once per config)."""

    sample_source: Sampler
    sample_target: Sampler
    map_net: MLP
    potential_net: MLP
    cost: str
    dim: int
    z_dim: int
    z_per_x: int
    batch_size: int
    inner_steps: int


def _not_transported(config: _NOTConfig, map_params: Any, z_std: Array, key: Array) -> tuple[Array, Array]:
    """A fresh source batch ``x [B, D]`` and its images ``y [B, K, D]`` (``K = z_per_x`` draws of ``z`` each)."""
    batch, k = config.batch_size, config.z_per_x
    x_key, z_key = jax.random.split(key)
    x = _draw(config.sample_source, x_key, batch)
    z = z_std * jax.random.normal(z_key, (batch * k, config.z_dim), _TRAIN_DTYPE)
    y = _map_apply(config.map_net, map_params, jnp.repeat(x, k, axis=0), z)
    return x, y.reshape(batch, k, config.dim)


def _not_cost(config: _NOTConfig, x: Array, y: Array, gamma: Array) -> Array:
    """Per-point cost ``[B]`` of ``x [B, D]`` and its images ``y [B, K, D]``."""
    if config.cost == "weak":
        return weak_quadratic_cost(x, y, gamma)
    return 0.5 * jnp.sum((x - y[:, 0]) ** 2, axis=-1)


def _not_map_loss(config: _NOTConfig, map_params: Any, potential_params: Any, gamma: Array, z_std: Array, key: Array):
    """``E_x[C(x, T(x, ·)) − E_z f(T(x, z))]`` on a fresh batch."""
    x, y = _not_transported(config, map_params, z_std, key)
    f_y = _potential_apply(config.potential_net, potential_params, y.reshape(-1, config.dim))
    return jnp.mean(_not_cost(config, x, y, gamma)) - jnp.mean(f_y)


def _potential_loss(potential_net: MLP, potential_params: Any, y_mapped: Array, y_target: Array) -> Array:
    """``E f(mapped) − E f(target)``: the potential's loss (it ascends the dual objective)."""
    f_mapped = _potential_apply(potential_net, potential_params, y_mapped)
    return jnp.mean(f_mapped) - jnp.mean(_potential_apply(potential_net, potential_params, y_target))


@functools.partial(jax.jit, static_argnames="config")
def _not_outer_step(
    state: tuple, key: Array, schedule: tuple, gamma: Array, z_std: Array, config: _NOTConfig
) -> tuple[tuple, Array]:
    """``inner_steps`` Adam updates of the map, then one of the potential; returns the state and the objective."""
    map_params, potential_params, map_opt_state, potential_opt_state = state
    map_optimizer, potential_optimizer = _optimizers(*schedule, config.inner_steps)

    def map_update(carry: tuple, step_key: Array) -> tuple[tuple, None]:
        params, opt_state = carry
        grads = jax.grad(_not_map_loss, argnums=1)(config, params, potential_params, gamma, z_std, step_key)
        updates, opt_state = map_optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), None

    inner_key, x_key, y_key = jax.random.split(key, 3)
    inner_keys = jax.random.split(inner_key, config.inner_steps)
    (map_params, map_opt_state), _ = jax.lax.scan(map_update, (map_params, map_opt_state), inner_keys)
    x, y = jax.lax.stop_gradient(_not_transported(config, map_params, z_std, x_key))
    y_target = _draw(config.sample_target, y_key, config.batch_size)
    loss, grads = jax.value_and_grad(_potential_loss, argnums=1)(
        config.potential_net, potential_params, y.reshape(-1, config.dim), y_target
    )
    updates, potential_opt_state = potential_optimizer.update(grads, potential_opt_state, potential_params)
    potential_params = optax.apply_updates(potential_params, updates)
    objective = jnp.mean(_not_cost(config, x, y, gamma)) - loss
    return (map_params, potential_params, map_opt_state, potential_opt_state), objective


def train_neural_ot(
    key: Array,
    sample_source: Sampler,
    sample_target: Sampler,
    *,
    cost: str = "strong",
    gamma: float = 0.0,
    steps: int = 2000,
    inner_steps: int = 10,
    batch_size: int = 256,
    z_dim: int | None = None,
    z_per_x: int = 4,
    z_std: float = 1.0,
    lr: float = 1e-3,
    hidden: tuple[int, ...] = (64, 64),
) -> NeuralOTMap:
    r"""Train NOT: ``sup_f inf_T E_x[C(x, T(x, ·)) − E_z f(T(x, z))] + E_y f(y)`` (see the module docstring).

    ``cost``: ``"strong"`` (``½|x − T(x)|²``, deterministic map; ``gamma`` must be 0) or ``"weak"``
    (``∫ ½|x − y|² dμ − (γ/2) Var μ`` with ``0 ≤ gamma ≤ 1``, ``z_per_x ≥ 2`` draws of ``z`` per ``x``).
    ``z_dim``: noise dimension of the map's input (default 0 for ``"strong"``, ``D`` for ``"weak"``);
    ``z ~ N(0, z_std² I)``. ``steps`` potential updates, each after ``inner_steps`` map updates; Adam for
    both, its rate decaying (cosine) from ``lr`` to ``lr/10``; batches of ``batch_size`` source points
    (each with ``z_per_x`` draws of ``z`` for the weak cost) and target points. ``hidden``: widths of the
    swish MLPs of the map and the potential. Returns a :class:`NeuralOTMap`.
    """
    _check_choice("cost", cost, NOT_COSTS)
    gamma = _check_float("gamma", gamma, strictly_positive=False)
    if cost == "strong" and gamma != 0.0:
        raise ValueError(f"gamma applies only to cost='weak'; with cost='strong' it must be 0, got gamma={gamma!r}.")
    if gamma > 1.0:
        raise ValueError(
            f"gamma must lie in [0, 1], got gamma={gamma!r}: for gamma > 1 the weak cost rewards spread without "
            "bound (its variance term (1 - gamma)/2 Var is negative) and an MLP potential, which grows at most "
            "linearly, cannot hold the map back."
        )
    steps = _check_int("steps", steps, 1)
    inner_steps = _check_int("inner_steps", inner_steps, 1)
    batch_size = _check_int("batch_size", batch_size, 1)
    lr = _check_float("lr", lr, strictly_positive=True)
    z_std = _check_float("z_std", z_std, strictly_positive=True)
    hidden = _check_hidden(hidden)
    z_per_x = _check_int("z_per_x", z_per_x, 2) if cost == "weak" else 1
    if z_dim is not None:
        z_dim = _check_int("z_dim", z_dim, 1 if cost == "weak" else 0)
    dim = _check_samplers(sample_source, sample_target)
    if z_dim is None:
        z_dim = dim if cost == "weak" else 0

    config = _NOTConfig(
        sample_source=sample_source,
        sample_target=sample_target,
        map_net=MLP(hidden=hidden, out_dim=dim),
        potential_net=MLP(hidden=hidden, out_dim=1),
        cost=cost,
        dim=dim,
        z_dim=z_dim,
        z_per_x=z_per_x,
        batch_size=batch_size,
        inner_steps=inner_steps,
    )
    key, map_key, potential_key = jax.random.split(key, 3)
    map_params = config.map_net.init(map_key, jnp.zeros((1, dim + z_dim), _TRAIN_DTYPE))
    potential_params = config.potential_net.init(potential_key, jnp.zeros((1, dim), _TRAIN_DTYPE))
    gamma_array, z_std_array = jnp.asarray(gamma, _TRAIN_DTYPE), jnp.asarray(z_std, _TRAIN_DTYPE)

    def outer_step(state: tuple, step_key: Array, schedule: tuple) -> tuple[tuple, Array]:
        return _not_outer_step(state, step_key, schedule, gamma_array, z_std_array, config=config)

    state, history = _run_outer_loop(
        outer_step, map_params, potential_params, lr=lr, steps=steps, inner_steps=inner_steps, key=key
    )
    return NeuralOTMap(
        map_params=state[0],
        potential_params=state[1],
        objective_history=history,
        gamma=gamma,
        z_std=z_std,
        dim=dim,
        z_dim=z_dim,
        cost=cost,
        map_net=config.map_net,
        potential_net=config.potential_net,
    )


# ------------------------------------------------------------------------------------- ENOT (SDE)


def euler_maruyama_with_energy(
    drift_net: MLP, drift_params: Any, key: Array, x: Array, epsilon: float, num_steps: int
) -> tuple[Array, Array, Array]:
    r"""Simulate ``dX = g(X, t) dt + √ε dW`` from ``X₀ = x [B, D]`` on ``t_k = k/num_steps``.

    Returns ``(X₁ [B, D], energy [B], path [num_steps + 1, B, D])`` with
    ``energy = Σ_k ½|g(X_{t_k}, t_k)|² Δt`` (the discretised ``∫₀¹ ½|g|² dt``).
    """
    dt = 1.0 / num_steps
    noise_scale = jnp.sqrt(jnp.asarray(epsilon * dt, x.dtype))

    def step(carry: tuple, inputs: tuple) -> tuple[tuple, Array]:
        x, energy = carry
        t, step_key = inputs
        drift = _drift_apply(drift_net, drift_params, x, t)
        noise = jax.random.normal(step_key, x.shape, x.dtype)
        x_next = x + drift * dt + noise_scale * noise
        energy = energy + 0.5 * jnp.sum(drift**2, axis=-1) * dt
        return (x_next, energy), x_next

    times = jnp.arange(num_steps, dtype=x.dtype) * dt
    keys = jax.random.split(key, num_steps)
    (x_end, energy), path = jax.lax.scan(step, (x, jnp.zeros(x.shape[0], x.dtype)), (times, keys))
    return x_end, energy, jnp.concatenate([x[None], path], axis=0)


_jitted_euler_maruyama = jax.jit(euler_maruyama_with_energy, static_argnames=("drift_net", "num_steps"))


class EntropicNeuralOTMap(eqx.Module):
    r"""An ENOT drift ``g(x, t)`` of ``dX = g dt + √ε dW`` (``t: 0 → 1``, ``num_steps`` Euler–Maruyama steps)
    and endpoint potential ``β``. ``(x, X₁)`` approximates the entropic OT plan of
    ``min E[½|x − y|²] − ε H(π)``.

    ``translate(key, x [N, D]) → [N, D]``; ``conditional_sample(key, x, n_per_x) → [N, n_per_x, D]``;
    ``sample_path(key, x) → [num_steps + 1, N, D]``; ``potential(y [M, D]) → [M]``.
    ``objective_history [steps]``: the minibatch objective ``E[energy − β(X₁)] + E β(y)`` per potential update.
    """

    drift_params: Any
    potential_params: Any
    objective_history: np.ndarray
    epsilon: float
    dim: int = eqx.field(static=True)
    num_steps: int = eqx.field(static=True)
    drift_net: MLP = eqx.field(static=True)
    potential_net: MLP = eqx.field(static=True)

    def sample_path(self, key: Array, x_source: Array) -> Array:
        """Euler–Maruyama path from each row of ``x_source [N, D]``, ``t_k = k/num_steps``: ``[num_steps+1, N, D]``."""
        x = _check_points("x_source", x_source, self.dim)
        _, _, path = _jitted_euler_maruyama(
            self.drift_net, self.drift_params, key, x.astype(_TRAIN_DTYPE), self.epsilon, self.num_steps
        )
        return path.astype(x.dtype)

    def translate(self, key: Array, x_source: Array) -> Array:
        """One endpoint ``X₁`` of the SDE per row of ``x_source [N, D]`` → ``[N, D]``."""
        return self.sample_path(key, x_source)[-1]

    def conditional_sample(self, key: Array, x: Array, n_per_x: int) -> Array:
        """``n_per_x`` endpoints ``X₁`` from each row of ``x [N, D]`` → ``[N, n_per_x, D]``."""
        x = _check_points("x", x, self.dim)
        n_per_x = _check_int("n_per_x", n_per_x, 1)
        return self.translate(key, jnp.repeat(x, n_per_x, axis=0)).reshape(x.shape[0], n_per_x, self.dim)

    def potential(self, y: Array) -> Array:
        """The learned endpoint potential ``β(y)`` for ``y [M, D]`` → ``[M]``."""
        y = _check_points("y", y, self.dim)
        values = _jitted_potential_apply(self.potential_net, self.potential_params, y.astype(_TRAIN_DTYPE))
        return values.astype(y.dtype)


@dataclasses.dataclass(frozen=True)
class _ENOTConfig:
    """Everything static about an ENOT training run (hashable: the jitted step compiles once per config)."""

    sample_source: Sampler
    sample_target: Sampler
    drift_net: MLP
    potential_net: MLP
    num_steps: int
    batch_size: int
    inner_steps: int


def _enot_simulate(config: _ENOTConfig, drift_params: Any, epsilon: Array, key: Array) -> tuple[Array, Array]:
    """Endpoints ``X₁ [B, D]`` and energies ``[B]`` of the SDE from a fresh source batch."""
    x_key, path_key = jax.random.split(key)
    x = _draw(config.sample_source, x_key, config.batch_size)
    x_end, energy, _ = euler_maruyama_with_energy(
        config.drift_net, drift_params, path_key, x, epsilon, config.num_steps
    )
    return x_end, energy


def _enot_drift_loss(config: _ENOTConfig, drift_params: Any, potential_params: Any, epsilon: Array, key: Array):
    """``E[∫ ½|g|² dt − β(X₁)]`` on a fresh batch."""
    x_end, energy = _enot_simulate(config, drift_params, epsilon, key)
    return jnp.mean(energy) - jnp.mean(_potential_apply(config.potential_net, potential_params, x_end))


@functools.partial(jax.jit, static_argnames="config")
def _enot_outer_step(
    state: tuple, key: Array, schedule: tuple, epsilon: Array, config: _ENOTConfig
) -> tuple[tuple, Array]:
    """``inner_steps`` Adam updates of the drift, then one of the potential; returns the state and the objective."""
    drift_params, potential_params, drift_opt_state, potential_opt_state = state
    drift_optimizer, potential_optimizer = _optimizers(*schedule, config.inner_steps)

    def drift_update(carry: tuple, step_key: Array) -> tuple[tuple, None]:
        params, opt_state = carry
        grads = jax.grad(_enot_drift_loss, argnums=1)(config, params, potential_params, epsilon, step_key)
        updates, opt_state = drift_optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), None

    inner_key, path_key, y_key = jax.random.split(key, 3)
    inner_keys = jax.random.split(inner_key, config.inner_steps)
    (drift_params, drift_opt_state), _ = jax.lax.scan(drift_update, (drift_params, drift_opt_state), inner_keys)
    x_end, energy = jax.lax.stop_gradient(_enot_simulate(config, drift_params, epsilon, path_key))
    y_target = _draw(config.sample_target, y_key, config.batch_size)
    loss, grads = jax.value_and_grad(_potential_loss, argnums=1)(
        config.potential_net, potential_params, x_end, y_target
    )
    updates, potential_opt_state = potential_optimizer.update(grads, potential_opt_state, potential_params)
    potential_params = optax.apply_updates(potential_params, updates)
    objective = jnp.mean(energy) - loss
    return (drift_params, potential_params, drift_opt_state, potential_opt_state), objective


def train_entropic_neural_ot(
    key: Array,
    sample_source: Sampler,
    sample_target: Sampler,
    *,
    epsilon: float,
    num_steps: int = 10,
    steps: int = 2000,
    inner_steps: int = 10,
    batch_size: int = 256,
    lr: float = 1e-3,
    hidden: tuple[int, ...] = (64, 64),
) -> EntropicNeuralOTMap:
    r"""Train ENOT: ``sup_β inf_θ E[∫₀¹ ½|g_θ(X_t, t)|² dt − β(X₁)] + E_y β(y)``, ``dX = g_θ dt + √ε dW``.

    ``X₀ ~ p``. ``epsilon > 0``: the entropic parameter of ``min E_π[½|x − y|²] − ε H(π)`` (the reference ``√ε W``).
    ``num_steps`` Euler–Maruyama steps (the training backpropagates through the whole path);
    ``steps`` potential updates, each after ``inner_steps`` drift updates; Adam for both, its rate
    decaying (cosine) from ``lr`` to ``lr/10``; batches of ``batch_size``. ``hidden``: widths of the
    swish MLPs of the drift and the potential. Returns an :class:`EntropicNeuralOTMap`.
    """
    epsilon = _check_float("epsilon", epsilon, strictly_positive=True)
    num_steps = _check_int("num_steps", num_steps, 1)
    steps = _check_int("steps", steps, 1)
    inner_steps = _check_int("inner_steps", inner_steps, 1)
    batch_size = _check_int("batch_size", batch_size, 1)
    lr = _check_float("lr", lr, strictly_positive=True)
    hidden = _check_hidden(hidden)
    dim = _check_samplers(sample_source, sample_target)

    config = _ENOTConfig(
        sample_source=sample_source,
        sample_target=sample_target,
        drift_net=MLP(hidden=hidden, out_dim=dim),
        potential_net=MLP(hidden=hidden, out_dim=1),
        num_steps=num_steps,
        batch_size=batch_size,
        inner_steps=inner_steps,
    )
    key, drift_key, potential_key = jax.random.split(key, 3)
    drift_params = config.drift_net.init(drift_key, jnp.zeros((1, dim + 1), _TRAIN_DTYPE))
    potential_params = config.potential_net.init(potential_key, jnp.zeros((1, dim), _TRAIN_DTYPE))
    epsilon_array = jnp.asarray(epsilon, _TRAIN_DTYPE)

    def outer_step(state: tuple, step_key: Array, schedule: tuple) -> tuple[tuple, Array]:
        return _enot_outer_step(state, step_key, schedule, epsilon_array, config=config)

    state, history = _run_outer_loop(
        outer_step, drift_params, potential_params, lr=lr, steps=steps, inner_steps=inner_steps, key=key
    )
    return EntropicNeuralOTMap(
        drift_params=state[0],
        potential_params=state[1],
        objective_history=history,
        epsilon=epsilon,
        dim=dim,
        num_steps=num_steps,
        drift_net=config.drift_net,
        potential_net=config.potential_net,
    )
