r"""Training loops for flows and bridges on samplers or pair pools: flow matching (every path and
coupling), stochastic interpolants (velocity + score), rectified flow with reflow, one-step
distillation, and Diffusion Schrödinger Bridge Matching (iterative Markovian fitting, Shi et al. 2023).

All loops run jaxdiff's one train step (:func:`jaxdiff.training.make_train_step`) with ``chunk`` steps per
dispatch (one compile per chunk length), the batch drawn inside the compiled program from a traceable
``draw_batch(key) -> (x0, x1)`` or a pool of pairs.
"""

from __future__ import annotations

import functools
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff import _validation as V
from jaxdiff.flows.losses import bridge_matching_loss, distillation_loss, flow_matching_loss, interpolant_loss
from jaxdiff.flows.models import BridgeModel, FlowModel, init_mlp, mlp_apply
from jaxdiff.paths import Interpolant, LinearInterpolant
from jaxdiff.sampling import sample_flow
from jaxdiff.training.step import make_optimizer

Array = jax.Array
Sampler = Callable[[Array, int], Array]


def pair_sampler(sample_source: Sampler, sample_target: Sampler, batch_size: int) -> Callable:
    """``draw_batch(key) -> (x0 [B, D], x1 [B, D])`` with independent draws from the two samplers."""
    V.check_int_at_least("batch_size", batch_size, 1)

    def draw(key):
        k0, k1 = jax.random.split(key)
        return sample_source(k0, batch_size), sample_target(k1, batch_size)

    return draw


class _PoolDraw:
    """``draw(key, pool) -> (x0[idx], x1[idx])`` with ``batch_size`` uniform indices; the pool is an argument
    (not a closure), so one compiled training chunk serves every pool of the same shape."""

    def __init__(self, batch_size: int):
        self.batch_size = batch_size

    def __call__(self, key, pool):
        x0, x1 = pool
        idx = jax.random.randint(key, (self.batch_size,), 0, x0.shape[0])
        return x0[idx], x1[idx]

    def __hash__(self):
        return hash(("pool", self.batch_size))

    def __eq__(self, other):
        return isinstance(other, _PoolDraw) and other.batch_size == self.batch_size


def pool_sampler(x0: Array, x1: Array, batch_size: int) -> tuple[Callable, tuple[Array, Array]]:
    """``(draw_batch, pool)`` for :func:`fit`'s ``data=``: ``batch_size`` rows of a fixed pool of pairs
    (uniform, with replacement)."""
    x0, x1 = jnp.asarray(x0), jnp.asarray(x1)
    if x0.shape[0] != x1.shape[0]:
        raise ValueError(f"pair pools must have equal lengths, got {x0.shape[0]} and {x1.shape[0]}.")
    V.check_int_at_least("batch_size", batch_size, 1)
    return _PoolDraw(int(batch_size)), (x0, x1)


def fit(key: Array, loss_fn: Callable, params: Any, draw_batch: Any, *, steps: int, lr: float = 1e-3,
        warmup: int = 0, grad_clip: float = 0.0, ema_rate: float | None = None, chunk: int = 1000,
        return_losses: bool = False):
    r"""Minimize ``loss_fn(params, key, batch)`` for ``steps`` Adam steps (lr ``lr`` after a linear
    ``warmup``; global-norm clipping when ``grad_clip > 0``) with jaxdiff's one train step
    (:func:`jaxdiff.training.make_train_step`, ``chunk`` steps per dispatch), ``batch = draw_batch(key')`` —
    or, for ``draw_batch = (draw, data)`` as :func:`pool_sampler` returns, ``draw(key', data)`` with ``data`` an
    argument of the compiled step (so it is compiled once per shape). Returns the parameters (their EMA
    of rate ``ema_rate`` when given), and with ``return_losses`` the mean loss of every chunk."""
    from jaxdiff.training.step import create_train_state

    V.check_int_at_least("steps", steps, 1)
    V.check_int_at_least("chunk", chunk, 1)
    if ema_rate is not None and not 0.0 <= ema_rate < 1.0:
        raise ValueError(f"ema_rate must be None or lie in [0, 1), got ema_rate={ema_rate!r}.")
    draw, data = draw_batch if isinstance(draw_batch, tuple) else (draw_batch, None)
    optimizer = _optimizer(float(lr), int(warmup), float(grad_clip))
    key, k_state = jax.random.split(key)
    state = create_train_state(params, optimizer, k_state)
    losses = []
    done = 0
    while done < steps:
        n = min(chunk, steps - done)
        step = _train_step(loss_fn, draw if data is not None else _KeyOnly(draw), float(lr), int(warmup),
                           float(grad_clip), 0.0 if ema_rate is None else float(ema_rate), n)
        state, metrics = step(state, data)
        losses.append(float(metrics["loss"]))
        done += n
    if not np.isfinite(losses[-1]):
        raise FloatingPointError(f"training diverged: mean loss of the last chunk is {losses[-1]}.")
    out = state.ema_params if ema_rate is not None else state.params
    return (out, losses) if return_losses else out


class _KeyOnly:
    """``draw(key, data)`` for a traceable sampler ``draw(key)`` (hashable by the sampler it wraps)."""

    def __init__(self, draw):
        self.draw = draw

    def __call__(self, key, data):
        return self.draw(key)

    def __hash__(self):
        return hash(("key_only", self.draw))

    def __eq__(self, other):
        return isinstance(other, _KeyOnly) and other.draw == self.draw


@functools.lru_cache(maxsize=64)
def _optimizer(lr, warmup, grad_clip):
    return make_optimizer(lr, warmup=warmup, grad_clip=grad_clip)


@functools.lru_cache(maxsize=64)
def _train_step(loss_fn, draw, lr, warmup, grad_clip, ema_rate, steps_per_call):
    """The compiled step for one (loss, batch drawer, optimizer, chunk) combination: DSBM's iterations and
    reflow rounds reuse it."""
    from jaxdiff.training.step import make_train_step

    return make_train_step(loss_fn, _optimizer(lr, warmup, grad_clip), ema_rate=ema_rate,
                           steps_per_call=steps_per_call, draw_batch=draw, donate=False)


def _data_shape(sample: Sampler) -> tuple[int, ...]:
    return tuple(jax.eval_shape(lambda k: sample(k, 1), jax.random.PRNGKey(0)).shape[1:])


def train_flow_matching(key: Array, sample_source: Sampler, sample_target: Sampler, *, path: Interpolant | None = None,
                        coupling: str = "independent", epsilon: float | None = None, steps: int = 20_000,
                        batch_size: int = 256, lr: float = 1e-3, hidden=(256, 256, 256), with_score: bool = False,
                        init: FlowModel | None = None, ema_rate: float | None = None, activation: str = "selu",
                        return_losses: bool = False):
    r"""Train a :class:`FlowModel` by conditional flow matching between two samplers
    (``sample(key, n) -> [n, *data]``). ``with_score`` adds the interpolant's noise head (needs a path
    with noise), so the model also has the SDE family. ``init`` warm-starts from a model."""
    path = LinearInterpolant(0.0) if path is None else path
    module, apply_fn = mlp_apply(hidden, activation)
    k_init, k_noise, k_fit = jax.random.split(key, 3)
    shape = _data_shape(sample_source)
    if init is not None:
        params = dict(init.params)
    else:
        params = {"velocity": init_mlp(k_init, module, shape)}
    if with_score and "noise" not in params:
        if not path.is_stochastic:
            raise ValueError(f"with_score=True needs a path with noise (c(t) > 0), got {path!r}.")
        params["noise"] = init_mlp(k_noise, module, shape)
    if with_score:
        loss = interpolant_loss(path, apply_fn, coupling=coupling, epsilon=epsilon)
        trained = fit(k_fit, loss, params, pair_sampler(sample_source, sample_target, batch_size), steps=steps, lr=lr,
                      ema_rate=ema_rate, return_losses=return_losses)
    else:
        loss = flow_matching_loss(path, apply_fn, coupling=coupling, epsilon=epsilon)
        trained = fit(k_fit, loss, params["velocity"], pair_sampler(sample_source, sample_target, batch_size),
                      steps=steps, lr=lr, ema_rate=ema_rate, return_losses=return_losses)
    trained, losses = trained if return_losses else (trained, None)
    if not with_score:
        trained = {"velocity": trained}
    model = FlowModel(apply_fn, trained)
    return (model, losses) if return_losses else model


def reflow_pairs(key: Array, model: Any, path: Interpolant, x0: Array, *, sampler: str = "ode_adaptive",
                 steps: int | None = None, **options) -> tuple[Array, Array]:
    """``(x₀, Z₁(x₀))``: the coupling induced by the model's ODE (Liu et al.'s reflow)."""
    x1 = sample_flow(key, model, path, x_init=x0, sampler=sampler, steps=steps, **options)
    return jnp.asarray(x0), x1


def train_rectified_flow(key: Array, sample_source: Sampler, sample_target: Sampler, *, rounds: int = 2,
                         steps: int = 20_000, reflow_steps: int | None = None, num_pairs: int = 50_000,
                         batch_size: int = 256, lr: float = 1e-3, hidden=(256, 256, 256), warm_start: bool = True,
                         ode_sampler: str = "ode_adaptive") -> list[FlowModel]:
    r"""k-rectified flow: 1-RF by flow matching on independent pairs with ``LinearInterpolant(0)``, then
    ``rounds − 1`` reflows, each trained on ``num_pairs`` pairs ``(x₀, Z₁(x₀))`` of the previous flow's ODE
    (warm-started from it). Returns ``[1-RF, 2-RF, ...]``."""
    V.check_int_at_least("rounds", rounds, 1)
    V.check_int_at_least("num_pairs", num_pairs, 1)
    path = LinearInterpolant(0.0)
    key, k_first = jax.random.split(key)
    models = [train_flow_matching(k_first, sample_source, sample_target, path=path, steps=steps,
                                  batch_size=batch_size, lr=lr, hidden=hidden)]
    module, apply_fn = mlp_apply(hidden)
    for _ in range(rounds - 1):
        key, k_src, k_ode, k_fit = jax.random.split(key, 4)
        x0, x1 = reflow_pairs(k_ode, models[-1], path, sample_source(k_src, num_pairs), sampler=ode_sampler)
        init = models[-1].params["velocity"] if warm_start else init_mlp(k_fit, module, x0.shape[1:])
        loss = flow_matching_loss(path, apply_fn, coupling="paired")
        params = fit(k_fit, loss, init, pool_sampler(x0, x1, batch_size), steps=reflow_steps or steps, lr=lr)
        models.append(FlowModel(apply_fn, {"velocity": params}))
    return models


def distill_one_step(key: Array, model: FlowModel, path: Interpolant, sample_source: Sampler, *, num_pairs: int = 50_000,
                     steps: int = 10_000, batch_size: int = 256, lr: float = 1e-3) -> FlowModel:
    r"""One-step distillation (Liu et al.): fit ``v`` with ``x₀ + v(x₀, 0) ≈ Z₁(x₀)`` on ODE pairs of ``model``,
    warm-started from it; sample with ``sampler="ode_euler", steps=1``."""
    key, k_src, k_ode, k_fit = jax.random.split(key, 4)
    x0, x1 = reflow_pairs(k_ode, model, path, sample_source(k_src, num_pairs))
    params = fit(k_fit, distillation_loss(model.apply_fn), model.params["velocity"], pool_sampler(x0, x1, batch_size),
                 steps=steps, lr=lr)
    return FlowModel(model.apply_fn, {"velocity": params})


def train_dsbm(key: Array, sample_source: Sampler, sample_target: Sampler, *, epsilon: float, iterations: int = 4,
               steps_per_iteration: int = 5_000, num_pairs: int = 20_000, batch_size: int = 256, lr: float = 1e-3,
               hidden=(256, 256, 256), sde_steps: int = 100, first_coupling: str = "independent",
               verbose: bool = False) -> BridgeModel:
    r"""Diffusion Schrödinger Bridge Matching (Shi et al. 2023), iterative Markovian fitting with reference
    ``√ε W`` (bridge noise ``σ = √ε``).

    Iteration: (1) forward drift ``f`` by bridge matching on the current coupling (first: ``first_coupling``
    of the two laws — ``"independent"`` is DSBM-IMF, ``"sinkhorn"`` starts from the minibatch EOT plan);
    (2) new coupling ``(x₀, X₁)`` by simulating ``dX = f dt + σ dW`` from ``x₀ ~ p``; (3) backward drift
    ``b`` by bridge matching on it; (4) new coupling ``(X₀, x₁)`` by simulating the reversed SDE from
    ``x₁ ~ q``. Each projection keeps one marginal exact and the alternation converges to the
    Schrödinger bridge. Networks are warm-started across iterations.
    """
    V.check_positive("epsilon", epsilon)
    V.check_int_at_least("iterations", iterations, 1)
    V.check_int_at_least("num_pairs", num_pairs, 1)
    V.check_choice("first_coupling", first_coupling, ("independent", "sinkhorn", "exact"))
    sigma = float(np.sqrt(epsilon))
    module, apply_fn = mlp_apply(hidden)
    shape = _data_shape(sample_source)
    key, k_f, k_b = jax.random.split(key, 3)
    params = {"forward": init_mlp(k_f, module, shape), "backward": init_mlp(k_b, module, shape)}
    forward_loss = bridge_matching_loss(sigma, apply_fn, direction="forward")
    backward_loss = bridge_matching_loss(sigma, apply_fn, direction="backward")
    key, k0, k1 = jax.random.split(key, 3)
    x0, x1 = sample_source(k0, num_pairs), sample_target(k1, num_pairs)
    if first_coupling != "independent":
        from jaxdiff.flows.couplings import couple

        chunks = []
        for i in range(0, num_pairs, 1024):
            key, sub = jax.random.split(key)
            chunks.append(couple(sub, x0[i:i + 1024], x1[i:i + 1024], "exact" if first_coupling == "exact" else "sinkhorn",
                                 epsilon=2.0 * epsilon))
        x0, x1 = jnp.concatenate([c[0] for c in chunks]), jnp.concatenate([c[1] for c in chunks])
    for it in range(iterations):
        started = time.perf_counter()
        key, k_fit, k_src, k_sim = jax.random.split(key, 4)
        params["forward"] = fit(k_fit, forward_loss, params["forward"], pool_sampler(x0, x1, batch_size),
                                steps=steps_per_iteration, lr=lr)
        model = BridgeModel(apply_fn, params, sigma)
        x0 = sample_source(k_src, num_pairs)
        x1_hat = sample_flow(k_sim, model, LinearInterpolant(0.0), x_init=x0, sampler="euler_maruyama",
                             steps=sde_steps)
        key, k_fit, k_tgt, k_sim = jax.random.split(key, 4)
        params["backward"] = fit(k_fit, backward_loss, params["backward"], pool_sampler(x0, x1_hat, batch_size),
                                 steps=steps_per_iteration, lr=lr)
        model = BridgeModel(apply_fn, params, sigma)
        x1 = sample_target(k_tgt, num_pairs)
        x0 = sample_flow(k_sim, model, LinearInterpolant(0.0), x_init=x1, sampler="euler_maruyama", steps=sde_steps,
                         direction="backward")
        if verbose:
            print(f"dsbm iteration {it + 1}/{iterations}: {time.perf_counter() - started:.1f} s")
    return BridgeModel(apply_fn, dict(params), sigma)


def straightness(key: Array, model: Any, path: Interpolant, x0: Array, *, steps: int = 100) -> Array:
    r"""Liu et al.'s straightness ``S = ∫₀¹ E |(Z₁ − Z₀) − v(Z_t, t)|² dt`` of the ODE from ``x0`` (Euler grid of
    ``steps``; 0 for straight paths)."""
    x1, info = sample_flow(key, model, path, x_init=x0, sampler="ode_euler", steps=steps, return_info=True,
                           trajectory=True)
    traj = info["trajectory"]  # [steps + 1, B, D]
    velocities = (traj[1:] - traj[:-1]) * steps  # Euler: v(Z_{t_k}, t_k)
    displacement = (x1 - jnp.asarray(x0))[None]
    return jnp.mean(jnp.sum(((displacement - velocities) ** 2).reshape(steps, x1.shape[0], -1), -1))


def path_energy(key: Array, model: Any, path: Interpolant, x0: Array, *, steps: int = 100) -> Array:
    r"""``E ∫₀¹ |v(Z_t, t)|² dt`` along the ODE (Euler grid); ``≥ W₂²(p₀, p₁)`` with equality for the OT flow."""
    _, info = sample_flow(key, model, path, x_init=x0, sampler="ode_euler", steps=steps, return_info=True,
                          trajectory=True)
    traj = info["trajectory"]
    velocities = (traj[1:] - traj[:-1]) * steps
    return jnp.mean(jnp.sum(velocities.reshape(steps, traj.shape[1], -1) ** 2, -1))
