r"""What a network predicts, and how its prediction becomes a score.

For ``x_t = α x_0 + σ ε`` every prediction is an affine function of the pair ``(x_0, ε)`` given
``x_t``, so each converts to every other exactly (``α' = dα/dt``, ``σ' = dσ/dt``):

* ``"score"``     ``s = ∇ log p_t(x_t) = −ε̂/σ``                           (Tweedie: ``x̂_0 = (x_t + σ² s)/α``)
* ``"eps"``       ``ε̂``
* ``"x0"``        ``x̂_0 = (x_t − σ ε̂)/α``
* ``"v"``         ``v = α ε̂ − σ x̂_0`` (Salimans & Ho); ``x̂_0 = (α x_t − σ v)/(α²+σ²)``
* ``"velocity"``  ``u = α' x̂_0 + σ' ε̂``, the probability-flow velocity ``f x − ½ g² s``

A :class:`Parameterization` wraps a network ``apply_fn(params, x_in, noise_in)`` into one of these
predictions, with its input/output preconditioning (score_sde's ``1/σ`` output scaling, EDM's
``c_skip, c_out, c_in, c_noise``). Networks know nothing of processes; this module does.
"""

from __future__ import annotations

import abc
from typing import Any, Callable

import equinox as eqx
import jax
import jax.numpy as jnp

from jaxdiff import _validation as V
from jaxdiff.processes import LinearProcess, broadcast_time

Array = jax.Array

PREDICTION_KINDS = ("score", "eps", "x0", "v", "velocity")
NOISE_INPUTS = ("t", "t_scaled", "sigma", "log_sigma")


def _coefficients(sde: LinearProcess, x: Array, t: Any) -> tuple[Array, Array]:
    t = sde._time_for(t, x)
    return broadcast_time(sde._alpha(t), x), broadcast_time(sde._sigma(t), x)


def _coefficient_rates(sde: LinearProcess, x: Array, t: Any) -> tuple[Array, Array, Array, Array]:
    """``α, σ, dα/dt = f α, dσ/dt = (½ g² + f σ²)/σ``, broadcast against ``x``."""
    t = sde._time_for(t, x)
    alpha, sigma = sde._alpha(t), sde._sigma(t)
    f, g2 = sde._drift_coeff(t), sde._diffusion_sq(t)
    d_alpha = f * alpha
    d_sigma = (0.5 * g2 + f * sigma**2) / sigma
    return tuple(broadcast_time(c, x) for c in (alpha, sigma, d_alpha, d_sigma))


def to_x0_eps(sde: LinearProcess, x_t: Array, t: Any, value: Array, kind: str) -> tuple[Array, Array]:
    """The pair ``(x̂_0, ε̂)`` that a prediction of ``kind`` stands for, given ``x_t = α x̂_0 + σ ε̂``."""
    V.check_choice("kind", kind, PREDICTION_KINDS)
    V.check_same_shape("x_t", x_t, "value", value)
    if kind == "velocity":
        alpha, sigma, d_alpha, d_sigma = _coefficient_rates(sde, x_t, t)
        det = alpha * d_sigma - sigma * d_alpha
        return (d_sigma * x_t - sigma * value) / det, (alpha * value - d_alpha * x_t) / det
    alpha, sigma = _coefficients(sde, x_t, t)
    if kind == "score":
        eps = -sigma * value
        return (x_t - sigma * eps) / alpha, eps
    if kind == "eps":
        return (x_t - sigma * value) / alpha, value
    if kind == "x0":
        return value, (x_t - alpha * value) / sigma
    # kind == "v"
    norm = alpha**2 + sigma**2
    return (alpha * x_t - sigma * value) / norm, (sigma * x_t + alpha * value) / norm


def from_x0_eps(sde: LinearProcess, x_t: Array, t: Any, x0: Array, eps: Array, kind: str) -> Array:
    """The prediction of ``kind`` that the pair ``(x_0, ε)`` gives at ``(x_t, t)``."""
    V.check_choice("kind", kind, PREDICTION_KINDS)
    if kind == "velocity":
        _, _, d_alpha, d_sigma = _coefficient_rates(sde, x_t, t)
        return d_alpha * x0 + d_sigma * eps
    alpha, sigma = _coefficients(sde, x_t, t)
    if kind == "score":
        return -eps / sigma
    if kind == "eps":
        return eps
    if kind == "x0":
        return x0
    return alpha * eps - sigma * x0  # "v"


def convert(sde: LinearProcess, x_t: Array, t: Any, value: Array, *, source: str, target: str) -> Array:
    """Convert a prediction at ``(x_t, t)`` from kind ``source`` to kind ``target`` (both in
    ``"score", "eps", "x0", "v", "velocity"``)."""
    V.check_choice("source", source, PREDICTION_KINDS)
    V.check_choice("target", target, PREDICTION_KINDS)
    if source == target:
        return value
    if source == "score" and target == "eps":  # the common case, without the x0 detour
        _, sigma = _coefficients(sde, x_t, t)
        return -sigma * value
    if source == "eps" and target == "score":
        _, sigma = _coefficients(sde, x_t, t)
        return -value / sigma
    x0, eps = to_x0_eps(sde, x_t, t, value, source)
    return from_x0_eps(sde, x_t, t, x0, eps, target)


def tweedie_denoise(sde: LinearProcess, x_t: Array, t: Any, score: Array) -> Array:
    r"""Tweedie's formula: ``E[x_0 | x_t] = (x_t + σ(t)² ∇ log p_t(x_t)) / α(t)``."""
    return convert(sde, x_t, t, score, source="score", target="x0")


def error_scale_to_score(sde: LinearProcess, t: Any, kind: str) -> Array:
    r"""``c(t)`` with ``‖Δ score‖ = c(t) ‖Δ prediction‖`` for a prediction of ``kind`` (all maps are
    linear in the prediction at fixed ``x_t``): score 1, eps ``1/σ``, x0 ``α/σ²``,
    v ``α/(σ(α²+σ²))``, velocity ``α/(σ |α σ' − σ α'|)``. Shape of ``t``."""
    V.check_choice("kind", kind, PREDICTION_KINDS)
    t = sde._time(t)
    alpha, sigma = sde._alpha(t), sde._sigma(t)
    if kind == "score":
        return jnp.ones_like(sigma)
    if kind == "eps":
        return 1.0 / sigma
    if kind == "x0":
        return alpha / sigma**2
    if kind == "v":
        return alpha / (sigma * (alpha**2 + sigma**2))
    f, g2 = sde._drift_coeff(t), sde._diffusion_sq(t)
    det = alpha * (0.5 * g2 + f * sigma**2) / sigma - sigma * f * alpha
    return alpha / (sigma * jnp.abs(det))


# =============================================================================================
# Network parameterizations
# =============================================================================================

ApplyFn = Callable[..., Array]


def noise_input(sde: LinearProcess, t: Array, kind: str) -> Array:
    """What the network receives as its noise conditioning, from the process time ``t``:

    ``"t"`` the time itself; ``"t_scaled"`` ``999 t`` (score_sde's DDPM++ labels);
    ``"sigma"`` ``σ(t)`` (score_sde's NCSN++ labels); ``"log_sigma"`` ``¼ log(σ/α)`` (EDM's ``c_noise``).
    """
    V.check_choice("noise_input", kind, NOISE_INPUTS)
    t = sde._time(t)
    if kind == "t":
        return t
    if kind == "t_scaled":
        return 999.0 * t
    if kind == "sigma":
        return sde._sigma(t)
    return 0.25 * (jnp.log(sde._sigma(t)) - sde._log_alpha(t))


class Parameterization(eqx.Module):
    """Turns a network ``apply_fn(params, x_in, noise_in, **kw)`` into a prediction of ``prediction``.

    Call as ``param(apply_fn, params, sde, x, t, **kw) -> [batch, *data]``; ``score_fn`` and
    ``predict`` give the same prediction as any other kind.
    """

    prediction: eqx.AbstractVar[str]

    @abc.abstractmethod
    def __call__(self, apply_fn: ApplyFn, params: Any, sde: LinearProcess, x: Array, t: Any, **kw) -> Array:
        """The network's prediction, of kind ``self.prediction``, at ``(x, t)``."""

    def predict(self, apply_fn: ApplyFn, params: Any, sde: LinearProcess, x: Array, t: Any, kind: str, **kw) -> Array:
        """The prediction converted to ``kind``."""
        return convert(sde, x, t, self(apply_fn, params, sde, x, t, **kw), source=self.prediction, target=kind)

    def score_fn(self, apply_fn: ApplyFn, sde: LinearProcess) -> Callable[[Any, Array, Any], Array]:
        """``score_fn(params, x, t) = ∇ log p_t(x)`` as the network estimates it (for samplers)."""

        def score(params, x, t, **kw):
            return self.predict(apply_fn, params, sde, x, t, "score", **kw)

        return score


class Direct(Parameterization):
    """The network output is the prediction itself (``prediction`` in ``score, eps, x0, v, velocity``).

    ``scale_by_sigma=True`` (score only) divides the output by ``σ(t)``: score_sde's NCSN++ output
    scaling. ``noise_input`` chooses the conditioning passed to the network (see :func:`noise_input`).
    """

    prediction: str = eqx.field(static=True)
    scale_by_sigma: bool = eqx.field(static=True)
    noise_input: str = eqx.field(static=True)

    def __init__(self, prediction: str = "eps", *, scale_by_sigma: bool = False, noise_input: str = "t"):
        V.check_choice("prediction", prediction, PREDICTION_KINDS)
        V.check_choice("noise_input", noise_input, NOISE_INPUTS)
        if scale_by_sigma and prediction != "score":
            raise ValueError(
                f"scale_by_sigma applies to prediction='score' only, got prediction={prediction!r}."
            )
        self.prediction = prediction
        self.scale_by_sigma = scale_by_sigma
        self.noise_input = noise_input

    def __call__(self, apply_fn, params, sde, x, t, **kw):
        t = sde._time_for(t, x)
        noise = noise_input(sde, t, self.noise_input).astype(jnp.result_type(x))
        out = apply_fn(params, x, noise, **kw)
        if self.scale_by_sigma:
            out = out / broadcast_time(sde._sigma(t), x)
        return out


class EDMPreconditioning(Parameterization):
    r"""EDM's denoiser (Karras et al. 2022, Table 1), for any linear process.

    With ``x̃ = x_t/α`` and ``σ̃ = σ/α`` (EDM's scaled state and noise level):
    ``D(x_t) = c_skip x̃ + c_out F(c_in x̃, c_noise)``, ``c_skip = σ_d²/(σ̃²+σ_d²)``,
    ``c_out = σ̃ σ_d/√(σ̃²+σ_d²)``, ``c_in = 1/√(σ̃²+σ_d²)``, ``c_noise = ¼ log σ̃``. Predicts ``x0``.
    """

    sigma_data: Any
    prediction: str = eqx.field(static=True, default="x0")

    def __init__(self, sigma_data: float = 0.5):
        V.check_positive("sigma_data", sigma_data)
        self.sigma_data = sigma_data
        self.prediction = "x0"

    def coefficients(self, sigma_tilde: Array) -> tuple[Array, Array, Array, Array]:
        """``(c_skip, c_out, c_in, c_noise)`` at EDM noise level ``σ̃``."""
        sd2 = self.sigma_data**2
        total = sigma_tilde**2 + sd2
        return sd2 / total, sigma_tilde * self.sigma_data / jnp.sqrt(total), 1.0 / jnp.sqrt(total), 0.25 * jnp.log(sigma_tilde)

    def __call__(self, apply_fn, params, sde, x, t, **kw):
        t = sde._time_for(t, x)
        alpha, sigma = sde._alpha(t), sde._sigma(t)
        c_skip, c_out, c_in, c_noise = self.coefficients(sigma / alpha)
        x_tilde = x / broadcast_time(alpha, x)
        out = apply_fn(params, broadcast_time(c_in, x) * x_tilde, c_noise.astype(jnp.result_type(x)), **kw)
        return broadcast_time(c_skip, x) * x_tilde + broadcast_time(c_out, x) * out


class ScoreModel(eqx.Module):
    """A network with its parameters and parameterization: what ``jaxdiff.sample`` needs and no more.

    ``ScoreModel(apply_fn, params, parameterization).score(sde, x, t) = ∇ log p_t(x)`` as the network
    estimates it. ``params`` are the pytree leaves; ``apply_fn`` is static.
    """

    params: Any
    parameterization: Parameterization
    apply_fn: ApplyFn = eqx.field(static=True)

    def __init__(self, apply_fn: ApplyFn, params: Any, parameterization: Parameterization):
        if not callable(apply_fn):
            raise TypeError(f"apply_fn must be callable, got {type(apply_fn).__name__}.")
        if not isinstance(parameterization, Parameterization):
            raise TypeError(
                f"parameterization must be a jaxdiff Parameterization, got {type(parameterization).__name__}."
            )
        self.apply_fn = apply_fn
        self.params = params
        self.parameterization = parameterization

    def score(self, sde: LinearProcess, x: Array, t: Any, **kw) -> Array:
        return self.parameterization.predict(self.apply_fn, self.params, sde, x, t, "score", **kw)
