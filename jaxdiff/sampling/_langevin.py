r"""Langevin-type samplers of the tutorial and of score_sde.

* ``langevin`` — Algorithm 1: ``X ← X + γ s(X) + √(2γ) z``, ``M = steps`` iterations at one noise
  level (the grid's last time ``t_end``).
* ``annealed_langevin`` — Algorithm 2 (NCSN): for each level ``t_i`` of the grid (largest noise first),
  ``n_steps_each`` Langevin steps with ``γ_i = ε σ_i²/σ_L²``.
* ``pc`` — score_sde's predictor–corrector: per grid interval, ``n_corrector`` Langevin corrector steps
  at ``t`` with the step set by a target signal-to-noise ratio, then one reverse-diffusion predictor
  step ``t → s``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxdiff.sampling._core import Model, SamplerSpec, register, scan_steps

Array = jax.Array


def _batch_norm_mean(v: Array) -> Array:
    """Mean over the batch of the per-example Euclidean norm."""
    return jnp.mean(jnp.linalg.norm(v.reshape(v.shape[0], -1), axis=-1))


def _langevin(key, x, ts, model: Model, options, trajectory):
    """Algorithm 1 at the time ``ts[-1]``, ``len(ts) − 1`` iterations, step ``step_size``."""
    gamma = options["step_size"]
    t = ts[-1]
    n = ts.shape[0] - 1
    keys = jax.random.split(key, n)

    def step(x, k):
        return x + gamma * model.score(x, t) + jnp.sqrt(2.0 * gamma) * jax.random.normal(k, x.shape, x.dtype)

    x, traj = scan_steps(step, x, keys, trajectory, lambda c: c)
    return x, n, traj


def _annealed_langevin(key, x, ts, model: Model, options, trajectory):
    r"""Algorithm 2: every grid time is a level; ``γ_i = step_lr · σ(t_i)² / σ(t_L)²``, and each step is
    ``x ← x + γ_i s + √(2γ_i) z`` as in NCSN's code (the paper writes ``α_i/2`` and ``√α_i``, so
    ``step_lr`` is the paper's ``ε/2``)."""
    m = options["n_steps_each"]
    step_lr = options["step_lr"]
    sigmas = model.sde._sigma(ts)
    gammas = step_lr * sigmas**2 / sigmas[-1] ** 2
    keys = jax.random.split(key, (ts.shape[0], m))

    def level(x, inputs):
        t, gamma, level_keys = inputs

        def inner(x, k):
            noise = jax.random.normal(k, x.shape, x.dtype)
            return x + gamma * model.score(x, t) + jnp.sqrt(2.0 * gamma) * noise, None

        x, _ = jax.lax.scan(inner, x, level_keys)
        return x

    x, traj = scan_steps(level, x, (ts, gammas, keys), trajectory, lambda c: c)
    if trajectory:
        traj = traj[1:]  # states after each level
    return x, ts.shape[0] * m, traj


def _pc(key, x, ts, model: Model, options, trajectory):
    r"""Reverse-diffusion predictor + Langevin corrector (Song et al. 2021, Algorithms 2–3).

    Corrector at ``t``: ``ε = 2 r² (snr ‖z‖/‖s‖)²`` (batch-mean norms), ``x ← x + ε s + √(2ε) z``, with
    ``r² = (α_t/α_s)²`` (score_sde's ``alpha`` of the VP chain; 1 for VE). Predictor ``t → s``: the
    exact one-step forward kernel ``x_t = r x_s + G z``, ``G² = σ_t² − r² σ_s²``, reversed:
    ``x_s = x − (r − 1) x + G² s(x, t) + G z`` (no noise on the last step with ``noise_removal``).
    """
    snr, n_corr = options["snr"], options["n_corrector"]
    noise_removal = options["noise_removal"]
    t_now, t_next = ts[:-1], ts[1:]
    n = t_now.shape[0]
    keys = jax.random.split(key, n)
    sde = model.sde

    def step(x, inputs):
        k, i, t, s = inputs
        a_t, s_t = sde._alpha(t), sde._sigma(t)
        a_s, s_s = sde._alpha(s), sde._sigma(s)
        r = a_t / a_s
        k_corr, k_pred = jax.random.split(k)

        def corrector(x, kc):
            grad = model.score(x, t)
            noise = jax.random.normal(kc, x.shape, x.dtype)
            eps = 2.0 * r**2 * (snr * _batch_norm_mean(noise) / _batch_norm_mean(grad)) ** 2
            return x + eps * grad + jnp.sqrt(2.0 * eps) * noise, None

        if n_corr > 0:
            x, _ = jax.lax.scan(corrector, x, jax.random.split(k_corr, n_corr))
        g2 = s_t**2 - r**2 * s_s**2
        mean = x - (r - 1.0) * x + g2 * model.score(x, t)
        noise_scale = jnp.sqrt(g2)
        if noise_removal:
            noise_scale = jnp.where(i == n - 1, 0.0, noise_scale)
        return mean + noise_scale * jax.random.normal(k_pred, x.shape, x.dtype)

    x, traj = scan_steps(step, x, (keys, jnp.arange(n), t_now, t_next), trajectory, lambda c: c)
    return x, n * (1 + n_corr), traj


register(SamplerSpec(
    name="langevin",
    fn=_langevin,
    options={"step_size": 1e-2},
    description="Langevin dynamics (Algorithm 1) with the score at t_end; steps = iterations.",
    default_steps=1000,
    handles_zero=True,
    stochastic=True,
))
register(SamplerSpec(
    name="annealed_langevin",
    fn=_annealed_langevin,
    options={"n_steps_each": 100, "step_lr": 2e-5},
    description="Annealed Langevin dynamics (Algorithm 2, NCSN): every grid time is a noise level.",
    default_steps=9,
    default_grid="logsnr_uniform",
    handles_zero=False,
    stochastic=True,
    min_points=1,
))
register(SamplerSpec(
    name="pc",
    fn=_pc,
    options={"snr": 0.16, "n_corrector": 1, "noise_removal": True},
    description="Predictor–corrector: reverse-diffusion predictor + Langevin corrector at a target SNR.",
    default_steps=1000,
    handles_zero=False,
    stochastic=True,
))
