r"""Light Schrödinger Bridge (Korotin, Gushchin & Burnaev, ICLR 2024): a Gaussian-mixture Schrödinger
potential fitted from samples by one maximum-likelihood-like objective, with the plan and the bridge drift
in closed form.

Problem (convention of :mod:`jaxdiff.flows.gaussian`): ``min_π E_π[½|x − y|²] − ε H(π)``, ``x ~ p`` at
``t = 0``, ``y ~ q`` at ``t = 1``; the Schrödinger bridge has reference ``√ε W``. Its plan has the form
``π(y|x) = exp(⟨x, y⟩/ε) v(y) / c(x)`` with ``c(x) = ∫ exp(⟨x, y⟩/ε) v(y) dy``. Light SB takes the
*adjusted potential* as a mixture with diagonal covariances (the paper's main setting),

    v_θ(y) = Σ_k α_k N(y; r_k, ε S_k),     S_k = diag(exp(log_s_k)),

so that, with ``N(y; r, εS) e^{⟨x, y⟩/ε} = N(y; r + S x, εS) exp((xᵀS x + 2⟨r, x⟩)/(2ε))``,

    c_θ(x) = Σ_k α_k exp((xᵀS_k x + 2⟨r_k, x⟩)/(2ε)),
    π_θ(y|x) = Σ_k w_k(x) N(y; r_k + S_k x, ε S_k),   w_k(x) ∝ α_k exp((xᵀS_k x + 2⟨r_k, x⟩)/(2ε)),

and is trained on samples by minimising ``L(θ) = E_{x~p} log c_θ(x) − E_{y~q} log v_θ(y)`` with Adam. Since
``log π_θ(y|x) = ⟨x, y⟩/ε + log v_θ(y) − log c_θ(x)``, ``KL(π* ‖ π_θ) = L(θ) + const`` for the true plan ``π*``.

**Drift.** ``π_θ(y|x) ∝ N(y; x, εI) φ(y)`` with ``φ(y) = e^{|y|²/(2ε)} v_θ(y)``, so the bridge is
``dX_t = g(X_t, t) dt + √ε dW_t`` with ``g = ε ∇ log φ_t``, ``φ_t(x) = ∫ N(y; x, ε(1 − t) I) φ(y) dy``. Per
component the integral is Gaussian (precision ``A_k = t/(ε(1−t)) + 1/(ε S_k)``, diagonal), which gives

    g(x, t) = (Σ_k ω_k(x, t) m_k(x, t) − x) / (1 − t),     m_k(x, t) = (S_k x + (1 − t) r_k) / (t S_k + 1 − t),
    log ω_k = log α_k − ½ Σ log(ε S_k A_k) − ½ Σ r_k²/(ε S_k) + ½ Σ b_k²/A_k,   b_k = x/(ε(1−t)) + r_k/(ε S_k)

(elementwise over the ``D`` coordinates); at ``t = 0`` it is ``E_θ[y|x] − x``.

Shapes: ``x [N, D]``; parameters ``log_alpha [K]``, ``means [K, D]``, ``log_s [K, D]``. ``sample_source(key, n)``
and ``sample_target(key, n)`` must return ``[n, D]`` and be traceable by JAX (called in the jitted step).
Training runs in float32.
"""

from __future__ import annotations

import functools
import math
import time
from typing import Any, Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxdiff.flows.eot_benchmark import sample_categorical

Array = jax.Array
Sampler = Callable[[Array, int], Array]

_TRAIN_DTYPE = jnp.float32
LR_FINAL_FRACTION = 0.1  # the learning rate decays (cosine) from lr to lr * LR_FINAL_FRACTION
INITS = ("target", "source", "normal")


# ------------------------------------------------------------------------------------ argument checks


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {name}={value!r}.")
    return int(value)


def _check_positive(name: str, value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not (math.isfinite(number) and number > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {name}={value!r}.")
    return number


def _check_points(name: str, x: Any, dim: int) -> Array:
    x = jnp.asarray(x)
    if x.ndim != 2 or x.shape[1] != dim:
        raise ValueError(f"{name} must have shape [N, {dim}] (N points of dimension D={dim}), got shape {tuple(x.shape)}.")
    return x


def _sampler_dim(name: str, sampler: Any) -> int:
    if not callable(sampler):
        raise ValueError(f"{name} must be a callable (key, n) -> [n, D] array, got {type(sampler).__name__}.")
    shape = tuple(jax.eval_shape(lambda key: sampler(key, 2), jax.random.key(0)).shape)  # traced, not compiled
    if len(shape) != 2 or shape[0] != 2:
        raise ValueError(f"{name}(key, n) must return an array of shape [n, D]; for n=2 it returned shape {shape}.")
    return shape[1]


# ------------------------------------------------------------------------------ closed forms (pure)


def log_normalizer(params: dict, x: Array, epsilon: float) -> Array:
    r"""``log c_θ(x) = logsumexp_k [log α_k + (xᵀS_k x + 2⟨r_k, x⟩)/(2ε)]`` for ``x [N, D]`` → ``[N]``."""
    return jax.scipy.special.logsumexp(_plan_logits(params, x, epsilon), axis=-1)


def _plan_logits(params: dict, x: Array, epsilon: float) -> Array:
    """``log α_k + (xᵀS_k x + 2⟨r_k, x⟩)/(2ε)``: ``[N, K]``."""
    s = jnp.exp(params["log_s"])
    quad = (x**2) @ s.T
    return params["log_alpha"] + (quad + 2.0 * x @ params["means"].T) / (2.0 * epsilon)


def log_potential(params: dict, y: Array, epsilon: float) -> Array:
    r"""``log v_θ(y) = logsumexp_k [log α_k + log N(y; r_k, ε S_k)]`` for ``y [M, D]`` → ``[M]``."""
    var = epsilon * jnp.exp(params["log_s"])  # [K, D]
    diff = y[:, None, :] - params["means"][None]
    log_n = -0.5 * jnp.sum(diff**2 / var + jnp.log(2.0 * jnp.pi * var), axis=-1)
    return jax.scipy.special.logsumexp(params["log_alpha"] + log_n, axis=-1)


def light_sb_loss(params: dict, x: Array, y: Array, epsilon: float) -> Array:
    r"""``L(θ) = mean_x log c_θ(x) − mean_y log v_θ(y)`` on a batch ``x [B, D]``, ``y [B', D]``."""
    return jnp.mean(log_normalizer(params, x, epsilon)) - jnp.mean(log_potential(params, y, epsilon))


def _conditional_components(params: dict, x: Array, epsilon: float) -> tuple[Array, Array, Array]:
    """``(logits [N, K], means r_k + S_k x [N, K, D], variances ε S_k [K, D])`` of ``π_θ(·|x)``."""
    s = jnp.exp(params["log_s"])
    return _plan_logits(params, x, epsilon), params["means"][None] + s[None] * x[:, None, :], epsilon * s


@jax.jit
def _conditional_moments(params, x, epsilon):
    logits, means, variances = _conditional_components(params, x, epsilon)
    weights = jax.nn.softmax(logits, axis=-1)
    mean = jnp.einsum("nk,nkd->nd", weights, means)
    centred = means - mean[:, None, :]
    cov = jnp.einsum("nk,nkd,nke->nde", weights, centred, centred)
    cov = cov + jax.vmap(jnp.diag)(weights @ variances)
    return mean, cov


@functools.partial(jax.jit, static_argnames=("n_per_x",))
def _conditional_sample(params, key, x, epsilon, n_per_x):
    logits, means, variances = _conditional_components(params, x, epsilon)
    k_comp, k_noise = jax.random.split(key)
    components = sample_categorical(k_comp, logits, n_per_x)
    centre = jnp.take_along_axis(means, components[..., None], axis=1)
    scale = jnp.sqrt(variances)[components]
    return centre + scale * jax.random.normal(k_noise, centre.shape, centre.dtype)


def bridge_drift(params: dict, x: Array, t: Array, epsilon: float) -> Array:
    r"""``g(x, t) = (Σ_k ω_k(x, t) m_k(x, t) − x)/(1 − t)`` of the Light SB bridge (module docstring).

    ``x [N, D]``, ``t`` scalar or ``[N]`` in ``[0, 1)`` → ``[N, D]``.
    """
    t = jnp.broadcast_to(jnp.asarray(t, x.dtype), x.shape[:1])[:, None, None]  # [N, 1, 1]
    s = jnp.exp(params["log_s"])[None]  # [1, K, D]
    r = params["means"][None]
    xk = x[:, None, :]
    one_minus_t = 1.0 - t
    precision = t / (epsilon * one_minus_t) + 1.0 / (epsilon * s)  # A_k, [N, K, D]
    linear = xk / (epsilon * one_minus_t) + r / (epsilon * s)  # b_k
    logits = (
        params["log_alpha"][None]
        - 0.5 * jnp.sum(jnp.log(epsilon * s * precision), axis=-1)
        - 0.5 * jnp.sum(r**2 / (epsilon * s), axis=-1)
        + 0.5 * jnp.sum(linear**2 / precision, axis=-1)
    )
    weights = jax.nn.softmax(logits, axis=-1)
    targets = (s * xk + one_minus_t * r) / (t * s + one_minus_t)  # A_k⁻¹ b_k
    return (jnp.einsum("nk,nkd->nd", weights, targets) - x) / one_minus_t[:, 0]


_jitted_drift = jax.jit(bridge_drift)


@jax.jit
def _euler_maruyama(params, key, x, times, epsilon):
    def step(state, inputs):
        t, dt, k = inputs
        y = state + bridge_drift(params, state, t, epsilon) * dt + jnp.sqrt(epsilon * dt) * jax.random.normal(
            k, state.shape, state.dtype)
        return y, y

    dts = jnp.diff(times)
    keys = jax.random.split(key, dts.shape[0])
    _, path = jax.lax.scan(step, x, (times[:-1], dts, keys))
    return path


# ------------------------------------------------------------------------------------------ the model


class LightSB(eqx.Module):
    r"""A trained Light SB: ``v_θ(y) = Σ_k α_k N(y; r_k, ε S_k)`` with diagonal ``S_k`` (module docstring).

    ``log_alpha [K]``, ``means = r [K, D]``, ``log_s = log diag S [K, D]``; ``loss_history [steps]`` holds the
    minibatch objective ``E log c_θ(x) − E log v_θ(y)`` at each step.
    """

    log_alpha: Array
    means: Array
    log_s: Array
    loss_history: np.ndarray
    epsilon: float = eqx.field(static=True)
    dim: int = eqx.field(static=True)

    @property
    def params(self) -> dict:
        """The parameters as float32 arrays (the dtype every method computes in)."""
        return {name: jnp.asarray(value, _TRAIN_DTYPE)
                for name, value in (("log_alpha", self.log_alpha), ("means", self.means), ("log_s", self.log_s))}

    @property
    def num_components(self) -> int:
        return int(self.log_alpha.shape[0])

    def _points(self, name: str, x: Any) -> Array:
        return _check_points(name, x, self.dim).astype(_TRAIN_DTYPE)

    def conditional_moments(self, x: Array) -> tuple[Array, Array]:
        r"""``E_θ[y|x] [N, D]`` and ``Cov_θ[y|x] [N, D, D]`` of the mixture ``π_θ(·|x)``, in closed form."""
        x_in = jnp.asarray(x)
        mean, cov = _conditional_moments(self.params, self._points("x", x_in), self.epsilon)
        return mean.astype(x_in.dtype), cov.astype(x_in.dtype)

    def conditional_sample(self, key: Array, x: Array, n_per_x: int) -> Array:
        """``n_per_x`` draws of ``y ~ π_θ(·|x)`` per row of ``x [N, D]`` → ``[N, n_per_x, D]``."""
        x_in = jnp.asarray(x)
        n_per_x = _check_int("n_per_x", n_per_x, 1)
        y = _conditional_sample(self.params, key, self._points("x", x_in), self.epsilon, n_per_x)
        return y.astype(x_in.dtype)

    def translate(self, key: Array, x_source: Array) -> Array:
        """One draw of ``y ~ π_θ(·|x)`` per row of ``x_source [N, D]`` → ``[N, D]``."""
        return self.conditional_sample(key, x_source, 1)[:, 0]

    def drift(self, x: Array, t: Any) -> Array:
        """The bridge drift ``g(x, t)`` for ``x [N, D]`` and ``t`` (scalar or ``[N]``) in ``[0, 1)`` → ``[N, D]``."""
        x_in = jnp.asarray(x)
        t_arr = np.asarray(t, np.float64) if not isinstance(t, jax.core.Tracer) else None
        if t_arr is not None and (np.any(t_arr < 0) or np.any(t_arr >= 1) or t_arr.ndim > 1):
            raise ValueError(f"t must be a scalar or [N] array with values in [0, 1), got t={t!r}.")
        return _jitted_drift(self.params, self._points("x", x_in), jnp.asarray(t, _TRAIN_DTYPE),
                             self.epsilon).astype(x_in.dtype)

    def sample_sde(self, key: Array, x: Array, num_steps: int = 100, *, return_path: bool = False) -> Array:
        r"""Euler–Maruyama for ``dX = g(X, t) dt + √ε dW`` from ``X₀ = x [N, D]`` on ``t_i = i/num_steps``.

        Returns ``X₁ [N, D]``, or the path ``[num_steps + 1, N, D]`` (with ``X₀``) if ``return_path``.
        """
        x_in = jnp.asarray(x)
        num_steps = _check_int("num_steps", num_steps, 1)
        x32 = self._points("x", x_in)
        times = jnp.linspace(0.0, 1.0, num_steps + 1, dtype=_TRAIN_DTYPE)
        path = _euler_maruyama(self.params, key, x32, times, self.epsilon)
        if return_path:
            return jnp.concatenate([x32[None], path]).astype(x_in.dtype)
        return path[-1].astype(x_in.dtype)

    def log_potential(self, y: Array) -> Array:
        """``log v_θ(y)`` for ``y [M, D]`` → ``[M]``."""
        return log_potential(self.params, self._points("y", y), self.epsilon)

    def log_normalizer(self, x: Array) -> Array:
        """``log c_θ(x)`` for ``x [N, D]`` → ``[N]``."""
        return log_normalizer(self.params, self._points("x", x), self.epsilon)


# ------------------------------------------------------------------------------------------ training


def _cosine_decay(lr: float, steps: int) -> optax.Schedule:
    return optax.cosine_decay_schedule(lr, decay_steps=max(steps, 1), alpha=LR_FINAL_FRACTION)


def init_light_sb_params(key: Array, sample_source: Sampler, sample_target: Sampler, *, dim: int, num_components: int,
                         init: Any = "target", init_s: float = 1.0) -> dict:
    r"""Initial parameters: ``α_k = 1/K``, ``S_k = init_s · I`` (component covariance ``ε · init_s · I``) and
    means ``r_k`` from ``init``: ``"target"`` (``K`` draws of ``q``, the paper's choice), ``"source"``
    (draws of ``p``), ``"normal"`` (``N(0, I)``) or an array ``[K, D]``.
    """
    if isinstance(init, str):
        if init not in INITS:
            raise ValueError(f"init must be one of {list(INITS)} or an array [K, D], got init={init!r}.")
        if init == "target":
            means = sample_target(key, num_components)
        elif init == "source":
            means = sample_source(key, num_components)
        else:
            means = jax.random.normal(key, (num_components, dim))
    else:
        means = jnp.asarray(init)
        if means.shape != (num_components, dim):
            raise ValueError(f"init as an array must have shape [K={num_components}, D={dim}], got {tuple(means.shape)}.")
    return {
        "log_alpha": jnp.full((num_components,), -math.log(num_components), _TRAIN_DTYPE),
        "means": jnp.asarray(means, _TRAIN_DTYPE),
        "log_s": jnp.full((num_components, dim), math.log(init_s), _TRAIN_DTYPE),
    }


def train_light_sb(
    key: Array, sample_source: Sampler, sample_target: Sampler, *, epsilon: float, num_components: int = 50,
    steps: int = 10_000, batch_size: int = 128, lr: float = 1e-2, init: Any = "target", init_s: float = 1.0,
    verbose: bool = False,
) -> LightSB:
    r"""Fit Light SB between ``p`` and ``q`` from sample batches: Adam on ``E log c_θ(x) − E log v_θ(y)``.

    Each of ``steps`` updates draws fresh ``x ~ p`` and ``y ~ q`` batches of ``batch_size`` inside one jitted step
    (compiled once). The learning rate decays along a cosine from ``lr`` to ``lr · 0.1`` (our choice; the paper
    keeps it constant: K = 50, batch 128, 10⁴ steps, means initialised on target samples, diagonal ``S``).
    Parameters: ``log_alpha`` (we learn ``log α`` directly, the paper ``ε log α``), ``means``, ``log_s``.
    """
    epsilon = _check_positive("epsilon", epsilon)
    num_components = _check_int("num_components", num_components, 1)
    steps = _check_int("steps", steps, 1)
    batch_size = _check_int("batch_size", batch_size, 1)
    lr = _check_positive("lr", lr)
    init_s = _check_positive("init_s", init_s)
    dim = _sampler_dim("sample_source", sample_source)
    dim_target = _sampler_dim("sample_target", sample_target)
    if dim != dim_target:
        raise ValueError(f"sample_source and sample_target must give the same dimension D, got {dim} and {dim_target}.")

    key, k_init = jax.random.split(key)
    params = init_light_sb_params(k_init, sample_source, sample_target, dim=dim, num_components=num_components,
                                  init=init, init_s=init_s)
    optimizer = optax.adam(_cosine_decay(lr, steps))

    @jax.jit
    def train_step(params, opt_state, step_key):
        k_x, k_y = jax.random.split(step_key)
        x = jnp.asarray(sample_source(k_x, batch_size)).astype(_TRAIN_DTYPE)
        y = jnp.asarray(sample_target(k_y, batch_size)).astype(_TRAIN_DTYPE)
        loss, grads = jax.value_and_grad(light_sb_loss)(params, x, y, epsilon)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    opt_state = optimizer.init(params)
    losses = []
    started = time.perf_counter()
    for i, step_key in enumerate(jax.random.split(key, steps)):
        params, opt_state, loss = train_step(params, opt_state, step_key)
        losses.append(loss)
        if verbose and (i + 1) % max(1, steps // 10) == 0:
            print(f"light_sb step {i + 1}/{steps}: loss {float(loss):.5f} ({time.perf_counter() - started:.1f}s)")
    history = np.asarray(jnp.stack(losses))
    if not np.all(np.isfinite(history)):
        raise FloatingPointError(f"Light SB training diverged (non-finite loss); lower lr (got lr={lr}).")
    return LightSB(params["log_alpha"], params["means"], params["log_s"], history, epsilon=epsilon, dim=dim)


__all__ = [
    "INITS", "LightSB", "bridge_drift", "init_light_sb_params", "light_sb_loss", "log_normalizer", "log_potential",
    "train_light_sb",
]
