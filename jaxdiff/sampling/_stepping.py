r"""Samplers that step between grid points with closed-form updates (one ``lax.scan`` each).

DDPM ancestral and DDIM step in the process's own variables; EDM's Heun and DPM-Solver++ step in
the scaled state ``x̃ = x/α`` and noise level ``σ̃ = σ/α`` (see :mod:`._grid`), where they compute
exactly what k-diffusion computes for the same ``σ̃`` grid. None of these are Runge–Kutta methods
of a fixed ODE in the sense of diffrax (exponential integrators with multistep history, and
posterior-sampling updates), so they are written as scans: one network evaluation per step (two
for Heun), no Python per step.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff.sampling._core import Model, SamplerSpec, register, scan_steps
from jaxdiff.sampling._grid import alpha_sigma, time_of_sigma_tilde

Array = jax.Array


def _pairs(ts: Array) -> tuple[Array, Array]:
    return ts[:-1], ts[1:]


# --- DDIM and DDPM ancestral ---------------------------------------------------------------------


def _ddim(key, x, ts, model: Model, options, trajectory):
    r"""DDIM (Song et al. 2021) on any linear process, ``t → s``:

    ``x̂_0 = D(x_t)``, ``ε̂ = (x_t − α_t x̂_0)/σ_t``, ``c = η σ_s √(1 − (α_t σ_s/(α_s σ_t))²)``,
    ``x_s = α_s x̂_0 + √(σ_s² − c²) ε̂ + c z``. With ``α² + σ² = 1`` this is diffusers' DDIMScheduler
    (``ᾱ = α²``); ``η = 1`` is DDPM's ancestral step with the posterior variance. ``clip_x0=c`` clips
    ``x̂_0`` to ``[−c, c]`` after ``ε̂`` is formed (diffusers' ``clip_sample``; off by default here).
    """
    eta = options["eta"]
    clip = options["clip_x0"]
    t_now, t_next = _pairs(ts)
    keys = jax.random.split(key, t_now.shape[0])

    def step(x, inputs):
        k, t, s = inputs
        a_t, s_t = alpha_sigma(model.sde, t)
        a_s, s_s = alpha_sigma(model.sde, s)
        x0 = model.denoise(x, t)
        eps = (x - a_t * x0) / s_t  # from the unclipped x̂_0, as diffusers does
        if clip is not None:
            x0 = jnp.clip(x0, -clip, clip)
        if eta == 0:  # deterministic (and differentiable in the grid down to σ_s = 0)
            return a_s * x0 + s_s * eps
        c = eta * s_s * jnp.sqrt(jnp.clip(1.0 - (a_t * s_s / (a_s * s_t)) ** 2, 0.0, None))
        noise = jax.random.normal(k, x.shape, x.dtype)
        return a_s * x0 + jnp.sqrt(jnp.clip(s_s**2 - c**2, 0.0, None)) * eps + c * noise

    x, traj = scan_steps(step, x, (keys, t_now, t_next), trajectory, lambda c: c)
    return x, t_now.shape[0], traj


def _ddpm(key, x, ts, model: Model, options, trajectory):
    r"""DDPM ancestral sampling: ``x_s ~ q(x_s | x_t, x̂_0)`` with ``x̂_0 = D(x_t)``.

    With ``α_{t|s} = α_t/α_s`` and ``σ²_{t|s} = σ_t² − α_{t|s}² σ_s²``: mean
    ``(α_s σ²_{t|s}/σ_t²) x̂_0 + (α_{t|s} σ_s²/σ_t²) x_t`` (= DDPM's ``μ_θ`` with ``x̂_0`` from ``ε_θ``),
    variance ``σ²_{t|s} σ_s²/σ_t²`` (``variance="posterior"``, DDPM's β̃) or ``σ²_{t|s}``
    (``variance="beta"``, DDPM's β). The last step to ``t = 0`` returns the mean ``x̂_0``. ``clip_x0=c``
    clips ``x̂_0`` to ``[−c, c]`` (diffusers' ``clip_sample``; off by default here).
    """
    large = options["variance"] == "beta"
    clip = options["clip_x0"]
    t_now, t_next = _pairs(ts)
    keys = jax.random.split(key, t_now.shape[0])

    def step(x, inputs):
        k, t, s = inputs
        a_t, s_t = alpha_sigma(model.sde, t)
        a_s, s_s = alpha_sigma(model.sde, s)
        x0 = model.denoise(x, t)
        if clip is not None:
            x0 = jnp.clip(x0, -clip, clip)
        a_ts = a_t / a_s
        var_ts = s_t**2 - a_ts**2 * s_s**2
        mean = (a_s * var_ts / s_t**2) * x0 + (a_ts * s_s**2 / s_t**2) * x
        var = var_ts if large else var_ts * s_s**2 / s_t**2
        var = jnp.where(s == 0, 0.0, var)
        return mean + jnp.sqrt(var) * jax.random.normal(k, x.shape, x.dtype)

    x, traj = scan_steps(step, x, (keys, t_now, t_next), trajectory, lambda c: c)
    return x, t_now.shape[0], traj


# --- DPM-Solver++ (multistep, data prediction, in λ = −log σ̃) -------------------------------------


def _scaled_grid(model: Model, ts: Array) -> tuple[Array, Array]:
    """``(α_i, σ̃_i)`` on the grid."""
    alpha, sigma = alpha_sigma(model.sde, ts)
    return alpha, sigma / alpha


def _dpmpp_2m(key, x, ts, model: Model, options, trajectory):
    r"""DPM-Solver++(2M) (Lu et al. 2022), as k-diffusion's ``sample_dpmpp_2m``.

    In ``x̃ = x/α``, ``λ = −log σ̃``, ``h = λ_{i+1} − λ_i``: ``x̃ ← (σ̃_{i+1}/σ̃_i) x̃ − (e^{−h} − 1) D̂``,
    ``D̂ = (1 + 1/(2r)) D_i − 1/(2r) D_{i−1}``, ``r = h_{i−1}/h`` (first order on the first step and on
    a last step to ``σ̃ = 0``, which returns ``D``).
    """
    alpha, sig = _scaled_grid(model, ts)
    n = ts.shape[0] - 1
    idx = jnp.arange(n)

    def step(carry, inputs):
        xs, d_old, h_last = carry
        i, t, s_now, s_next = inputs
        d = model.denoise(xs * alpha_sigma(model.sde, t)[0], t)
        last = s_next == 0
        lam, lam_next = -jnp.log(s_now), -jnp.log(jnp.where(last, 1.0, s_next))
        h = jnp.where(last, 1.0, lam_next - lam)
        use_second = (i > 0) & ~last
        r = jnp.where(use_second, h_last / h, 1.0)
        d_hat = jnp.where(use_second, (1 + 1 / (2 * r)) * d - (1 / (2 * r)) * d_old, d)
        ratio = jnp.where(last, 0.0, s_next / s_now)
        xs = ratio * xs + (1.0 - ratio) * d_hat
        return xs, d, h

    init = (x / alpha[0], jnp.zeros_like(x), jnp.asarray(1.0, x.dtype))
    inputs = (idx, ts[:-1], sig[:-1], sig[1:])
    carry, traj = scan_steps(step, init, inputs, trajectory, lambda c: c[0])
    if trajectory:
        traj = traj * alpha.reshape((-1,) + (1,) * x.ndim)
    return carry[0] * alpha[-1], n, traj


def _dpmpp_3m(key, x, ts, model: Model, options, trajectory):
    r"""DPM-Solver++(3M), as k-diffusion's ``sample_dpmpp_3m_sde`` with ``eta = 0`` (deterministic):
    ``x̃ ← e^{−h} x̃ + (1 − e^{−h}) D + φ₂ d₁ − φ₃ d₂`` with divided differences of the last three
    denoised values (second order on step 2, first on step 1; ``D`` itself on a last step to 0).
    """
    alpha, sig = _scaled_grid(model, ts)
    n = ts.shape[0] - 1

    def step(carry, inputs):
        xs, d1, d2, h1, h2 = carry
        i, t, s_now, s_next = inputs
        d = model.denoise(xs * alpha_sigma(model.sde, t)[0], t)
        last = s_next == 0
        h = jnp.where(last, 1.0, -jnp.log(jnp.where(last, 1.0, s_next)) + jnp.log(s_now))
        ratio = jnp.exp(-h)
        phi2 = jnp.expm1(-h) / h + 1.0
        phi3 = phi2 / h - 0.5
        base = ratio * xs + (1.0 - ratio) * d
        # third order (i >= 2)
        r0, r1 = h1 / h, h2 / h
        d1_0 = (d - d1) / r0
        d1_1 = (d1 - d2) / r1
        dd1 = d1_0 + (d1_0 - d1_1) * r0 / (r0 + r1)
        dd2 = (d1_0 - d1_1) / (r0 + r1)
        third = base + phi2 * dd1 - phi3 * dd2
        # second order (i == 1)
        second = base + phi2 * (d - d1) / r0
        xs_new = jnp.where(i >= 2, third, jnp.where(i == 1, second, base))
        xs_new = jnp.where(last, d, xs_new)
        return xs_new, d, d1, h, h1

    one = jnp.asarray(1.0, x.dtype)
    init = (x / alpha[0], jnp.zeros_like(x), jnp.zeros_like(x), one, one)
    inputs = (jnp.arange(n), ts[:-1], sig[:-1], sig[1:])
    carry, traj = scan_steps(step, init, inputs, trajectory, lambda c: c[0])
    if trajectory:
        traj = traj * alpha.reshape((-1,) + (1,) * x.ndim)
    return carry[0] * alpha[-1], n, traj


# --- EDM (Karras et al. 2022, Algorithm 2) ---------------------------------------------------------


def _edm_heun(key, x, ts, model: Model, options, trajectory):
    r"""EDM's stochastic Heun sampler (Algorithm 2), as k-diffusion's ``sample_heun``.

    Per step: ``γ = min(S_churn/N, √2 − 1)`` if ``S_tmin ≤ σ̃_i ≤ S_tmax``; ``σ̂ = σ̃_i (1 + γ)``,
    ``x̃ ← x̃ + √(σ̂² − σ̃_i²) S_noise z``; Euler ``x̃' = x̃ + (σ̃_{i+1} − σ̂) d(x̃, σ̂)`` with
    ``d = (x̃ − D)/σ̃``, then the trapezoidal correction with ``d(x̃', σ̃_{i+1})`` unless ``σ̃_{i+1} = 0``.
    ``S_churn = 0`` (default) is the deterministic Heun ODE solver (2 NFE per step, 1 for a last step
    to 0). ``σ̂`` is capped at the grid's first ``σ̃`` (the process has no noise level above ``t_max``).
    """
    alpha, sig = _scaled_grid(model, ts)
    n = ts.shape[0] - 1
    s_churn, s_tmin, s_tmax, s_noise = (options[k] for k in ("s_churn", "s_tmin", "s_tmax", "s_noise"))
    gamma_max = min(s_churn / n, 2**0.5 - 1)
    ends_at_zero = bool(options["_ends_at_zero"])
    keys = jax.random.split(key, n)
    sde = model.sde

    def denoiser(xs, t):
        return model.denoise(xs * alpha_sigma(sde, t)[0], t)

    def churn(xs, k, t, s_now):
        if gamma_max <= 0:
            return xs, s_now, t
        gamma = jnp.where((s_now >= s_tmin) & (s_now <= s_tmax), gamma_max, 0.0)
        s_hat = jnp.minimum(s_now * (1.0 + gamma), sig[0])  # not above the process's own top noise level
        xs = xs + jnp.sqrt(jnp.maximum(s_hat**2 - s_now**2, 0.0)) * s_noise * jax.random.normal(k, xs.shape, xs.dtype)
        t_hat = jnp.where(gamma > 0, time_of_sigma_tilde(sde, s_hat), t)
        return xs, s_hat, t_hat

    def heun_step(xs, inputs):
        k, t, t_next, s_now, s_next = inputs
        xs, s_hat, t_hat = churn(xs, k, t, s_now)
        d = (xs - denoiser(xs, t_hat)) / s_hat
        x_euler = xs + (s_next - s_hat) * d
        d_next = (x_euler - denoiser(x_euler, t_next)) / s_next
        return xs + (s_next - s_hat) * 0.5 * (d + d_next)

    def euler_step(xs, inputs):
        k, t, t_next, s_now, s_next = inputs
        xs, s_hat, t_hat = churn(xs, k, t, s_now)
        d = (xs - denoiser(xs, t_hat)) / s_hat
        return xs + (s_next - s_hat) * d

    inputs = (keys, ts[:-1], ts[1:], sig[:-1], sig[1:])
    n_heun = n - 1 if ends_at_zero else n
    heun_inputs = jax.tree_util.tree_map(lambda a: a[:n_heun], inputs)
    xs, traj = scan_steps(heun_step, x / alpha[0], heun_inputs, trajectory, lambda c: c)
    nfe = 2 * n_heun
    if ends_at_zero:
        last = jax.tree_util.tree_map(lambda a: a[n_heun], inputs)
        xs = euler_step(xs, last)
        nfe += 1
        if trajectory:
            traj = jnp.concatenate([traj, xs[None]], axis=0)
    if trajectory:
        traj = traj * alpha.reshape((-1,) + (1,) * x.ndim)
    return xs * alpha[-1], nfe, traj


# --- exponential Adams–Bashforth–Moulton in λ (jaxdiff's low-NFE solver) --------------------------------


def _lagrange_basis(nodes: np.ndarray, at: np.ndarray) -> np.ndarray:
    """``ℓ_j(at)`` for the Lagrange basis on ``nodes``: ``[len(nodes), *at.shape]``."""
    out = []
    for j, node in enumerate(nodes):
        basis = np.ones_like(at)
        for k, other in enumerate(nodes):
            if k != j:
                basis = basis * (at - other) / (node - other)
        out.append(basis)
    return np.stack(out)


def _interp_variable(lam: np.ndarray, sigma_data: float | None) -> np.ndarray:
    """The variable ``D`` is interpolated in: ``λ`` itself (``sigma_data=None``), or
    ``κ = σ_d/√(σ_d² + σ̃²)`` with ``σ̃ = e^{−λ}`` (along the probability-flow ODE of Gaussian data with
    std ``σ_d`` the denoiser is exactly linear in κ: ``D = μ + s u κ``)."""
    if sigma_data is None:
        return lam
    return sigma_data / np.sqrt(sigma_data**2 + np.exp(-2.0 * lam))


def abm_coefficients(log_sigmas: np.ndarray, order: int, sigma_data: float) -> dict:
    r"""Per-step coefficients of the exponential ABM solver on the noisy grid ``λ_i = −log σ̃_i``.

    ``D`` is interpolated as a polynomial in ``κ(λ)`` (see :func:`_interp_variable`) and the weights
    ``w_j = ∫_{λ_i}^{λ_{i+1}} e^{−(λ_{i+1} − λ)} ℓ_j(κ(λ)) dλ`` are integrated by 24-point Gauss–Legendre
    quadrature in float64. Step ``i``: predictor ``x̃' = e^{−h} x̃ + Σ_j P_{ij} D_{i−j}`` (order
    ``p = min(order, i+1)``), corrector ``x̃ = e^{−h} x̃ + C_{i0} D_{i+1} + Σ_j C_{i,j+1} D_{i−j}``
    (order ``p + 1``); ``final`` extrapolates the last ``order`` values of ``D`` to ``σ̃ = 0`` (κ = 1).
    """
    lam = -np.asarray(log_sigmas, np.float64)
    kappa = _interp_variable(lam, sigma_data)
    gx, gw = np.polynomial.legendre.leggauss(24)
    steps = len(lam) - 1
    pred = np.zeros((steps, order))
    corr = np.zeros((steps, order + 1))
    for i in range(steps):
        lam_q = 0.5 * (lam[i + 1] - lam[i]) * gx + 0.5 * (lam[i + 1] + lam[i])
        kernel = np.exp(-(lam[i + 1] - lam_q)) * gw * 0.5 * (lam[i + 1] - lam[i])
        k_q = _interp_variable(lam_q, sigma_data)
        p = min(order, i + 1)
        past = kappa[i - np.arange(p)]
        pred[i, :p] = _lagrange_basis(past, k_q) @ kernel
        corr[i, : p + 1] = _lagrange_basis(np.concatenate([[kappa[i + 1]], past]), k_q) @ kernel
    final = np.zeros(order)
    if sigma_data is not None:  # polynomial in κ evaluated at κ = 1 (σ̃ = 0)
        p = min(order, len(lam))
        final[:p] = _lagrange_basis(kappa[len(lam) - 1 - np.arange(p)], np.array(1.0))
    elif len(lam) >= 2 and order >= 2:  # D = x(0) + c σ̃² + O(σ̃⁴) along the ODE: Richardson in σ̃²
        s1, s2 = np.exp(-lam[-1]), np.exp(-lam[-2])
        final[0], final[1] = s2**2 / (s2**2 - s1**2), -(s1**2) / (s2**2 - s1**2)
    else:
        final[0] = 1.0
    return {"decay": np.exp(-(lam[1:] - lam[:-1])), "pred": pred, "corr": corr, "final": final}


def _exp_abm(key, x, ts, model: Model, options, trajectory):
    r"""Exponential Adams–Bashforth–Moulton in log-SNR (jaxdiff's own low-NFE ODE solver).

    The probability-flow ODE in ``x̃ = x/α`` and ``λ = −log σ̃`` is ``dx̃/dλ = D(x̃, λ) − x̃``, so
    ``x̃(λ_{i+1}) = e^{−h} x̃(λ_i) + ∫ e^{−(λ_{i+1} − λ)} D(λ) dλ`` exactly. Along the trajectory ``D`` is
    replaced by its interpolating polynomial in ``κ = σ_d/√(σ_d² + σ̃²)`` — the variable in which ``D`` is
    exactly linear for Gaussian data of scale ``sigma_data``, and smooth at both ends (κ → 0 at high
    noise, κ → 1 at the data) — through the last ``order`` evaluations (predictor, explicit), then,
    once ``D_{i+1}`` has been evaluated at the predicted point (as the next step needs anyway), through
    those and ``D_{i+1}`` (corrector, one order higher): UniPC's predictor–corrector idea. The weights of
    the exponential kernel are integrated in float64 once per grid, outside the compiled loop. One
    network evaluation per step. A last step to ``σ̃ = 0`` (``final="extrapolate"``) evaluates the
    polynomial at κ = 1 — the ODE's limit ``x(0) = lim D`` — at no extra cost, shifted by the
    corrector's update of the last point; ``final="denoise"`` returns ``D`` at the last noisy point.

    Defaults (measured on four Gaussian mixtures against the exact ODE solution, see
    ``benchmarks/sampler_nfe.py``): ``D`` interpolated in λ (``sigma_data=None``), order 2 up to 12 steps
    and 3 beyond, a log-SNR-uniform grid whose last nonzero ``σ̃`` is ``0.2 (10/steps)^{3/4}`` when the
    grid ends at 0 — the last step then extrapolates ``D = x(0) + c σ̃² + O(σ̃⁴)`` in ``σ̃²`` (Richardson
    on the last two values), so no evaluations are spent where ``D`` hardly moves.
    """
    ends_at_zero = bool(options["_ends_at_zero"])
    noisy = ts[:-1] if ends_at_zero else ts
    order = options["order"] if options["order"] is not None else (2 if noisy.shape[0] <= 12 else 3)
    alpha_all, _ = _scaled_grid(model, ts)
    m = noisy.shape[0]
    log_sigmas = np.asarray(options["_log_sigma_tilde"], np.float64)[:m]  # the concrete grid, from sample()
    coeff = abm_coefficients(log_sigmas, order, options["sigma_data"])
    dtype = x.dtype
    decay = jnp.asarray(coeff["decay"], dtype)
    pred_w = jnp.asarray(coeff["pred"], dtype)
    corr_w = jnp.asarray(coeff["corr"], dtype)
    alpha = alpha_all[:m]

    def denoise(xs, t, a):
        return model.denoise(xs * a, t)

    xs0 = x / alpha[0]
    d0 = denoise(xs0, noisy[0], alpha[0])
    history = jnp.zeros((order,) + x.shape, dtype).at[0].set(d0)  # D_i, D_{i−1}, …

    def step(carry, inputs):
        xs, hist, _ = carry
        dec, pw, cw, t_next, a_next = inputs
        x_pred = dec * xs + jnp.tensordot(pw, hist, axes=1)
        d_next = denoise(x_pred, t_next, a_next)
        x_corr = dec * xs + cw[0] * d_next + jnp.tensordot(cw[1:], hist, axes=1)
        if not options["corrector"]:
            x_corr = x_pred
        hist = jnp.concatenate([d_next[None], hist[:-1]], axis=0)
        return x_corr, hist, x_corr - x_pred

    inputs = (decay, pred_w, corr_w, noisy[1:], alpha[1:])
    carry = (xs0, history, jnp.zeros_like(x))
    (xs, hist, shift), traj = scan_steps(step, carry, inputs, trajectory, lambda c: c[0])
    if trajectory:
        traj = traj * alpha.reshape((-1,) + (1,) * x.ndim)
    if ends_at_zero:
        if options["final"] == "extrapolate":
            out = jnp.tensordot(jnp.asarray(coeff["final"], dtype), hist, axes=1) + shift
        else:
            out = hist[0] + shift
        if trajectory:
            traj = jnp.concatenate([traj, out[None]], axis=0)
        return out, m, traj
    return xs * alpha[-1], m, traj


register(SamplerSpec(
    name="exp_abm",
    fn=_exp_abm,
    options={"order": None, "corrector": True, "final": "extrapolate", "sigma_data": None, "_ends_at_zero": False,
             "_log_sigma_tilde": ()},
    description="jaxdiff's low-NFE ODE solver: exponential Adams–Bashforth–Moulton in log-SNR (1 NFE per step).",
    default_steps=10,
    default_grid="logsnr_uniform",
    default_sigma_min=lambda steps: 0.2 * (10.0 / steps) ** 0.75,
    sigma_tilde_steps=True,
))
register(SamplerSpec(
    name="ddim",
    fn=_ddim,
    options={"eta": 0.0, "clip_x0": None},
    description="DDIM (η = 0: deterministic, the PF-ODE's first-order exponential integrator; η = 1: DDPM).",
    default_steps=50,
))
register(SamplerSpec(
    name="ddpm",
    fn=_ddpm,
    options={"variance": "posterior", "clip_x0": None},
    description="DDPM ancestral sampling with μ_θ; variance 'posterior' (β̃) or 'beta' (β).",
    default_steps=1000,
    stochastic=True,
))
register(SamplerSpec(
    name="dpmpp_2m",
    fn=_dpmpp_2m,
    options={},
    description="DPM-Solver++(2M), k-diffusion's sample_dpmpp_2m in σ̃ = σ/α.",
    default_steps=20,
    default_grid="logsnr_uniform",
    sigma_tilde_steps=True,
))
register(SamplerSpec(
    name="dpmpp_3m",
    fn=_dpmpp_3m,
    options={},
    description="DPM-Solver++(3M), k-diffusion's sample_dpmpp_3m_sde with eta = 0.",
    default_steps=20,
    default_grid="logsnr_uniform",
    sigma_tilde_steps=True,
))
register(SamplerSpec(
    name="edm_heun",
    fn=_edm_heun,
    options={"s_churn": 0.0, "s_tmin": 0.0, "s_tmax": float("inf"), "s_noise": 1.0, "_ends_at_zero": False},
    description="EDM's Heun sampler (Karras σ̃ grid, ρ = 7) with optional stochastic churn.",
    default_steps=18,
    default_grid="karras",
    sigma_tilde_steps=True,
))
