r"""What a network predicts, and how its prediction becomes a score.

For ``x_t = α x_0 + σ ε`` every prediction is an affine function of the pair ``(x_0, ε)`` given
``x_t``, so each converts to every other exactly (``α' = dα/dt``, ``σ' = dσ/dt``):

* ``"score"``     ``s = ∇ log p_t(x_t) = −ε̂/σ``                           (Tweedie: ``x̂_0 = (x_t + σ² s)/α``)
* ``"eps"``       ``ε̂``
* ``"x0"``        ``x̂_0 = (x_t − σ ε̂)/α``
* ``"v"``         ``v = α ε̂ − σ x̂_0`` (Salimans & Ho); ``x̂_0 = (α x_t − σ v)/(α²+σ²)``
* ``"velocity"``  ``u = α' x̂_0 + σ' ε̂``, the probability-flow velocity ``f x − ½ g² s`` (``dx/dt`` in process time)
* ``"flow_velocity"`` ``−u``: the same velocity in the generative ("flow") time ``t_max − t`` — what flow
  matching, rectified flow and stochastic interpolants regress (``dx/dt`` with source at 0, data at 1)

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

PREDICTION_KINDS = ("score", "eps", "x0", "v", "velocity", "flow_velocity")
VELOCITY_KINDS = ("velocity", "flow_velocity")
NOISE_INPUTS = ("t", "t_scaled", "sigma", "log_sigma", "flow_time", "flow_time_scaled")


def _coefficients(sde: LinearProcess, x: Array, t: Any) -> tuple[Array, Array]:
    t = sde._time_for(t, x)
    return broadcast_time(sde._alpha(t), x), broadcast_time(sde._sigma(t), x)


def _coefficient_rates(sde: LinearProcess, x: Array, t: Any) -> tuple[Array, Array, Array, Array]:
    """``α, σ, dα/dt, dσ/dt`` (the process's :meth:`~jaxdiff.LinearProcess._rates`), broadcast against ``x``."""
    t = sde._time_for(t, x)
    return tuple(broadcast_time(c, x) for c in sde._rates(t))


def to_x0_eps(sde: LinearProcess, x_t: Array, t: Any, value: Array, kind: str) -> tuple[Array, Array]:
    """The pair ``(x̂_0, ε̂)`` that a prediction of ``kind`` stands for, given ``x_t = α x̂_0 + σ ε̂``."""
    V.check_choice("kind", kind, PREDICTION_KINDS)
    V.check_same_shape("x_t", x_t, "value", value)
    if kind == "flow_velocity":
        value, kind = -value, "velocity"
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
    if kind in VELOCITY_KINDS:
        _, _, d_alpha, d_sigma = _coefficient_rates(sde, x_t, t)
        velocity = d_alpha * x0 + d_sigma * eps
        return velocity if kind == "velocity" else -velocity
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
    ``"score", "eps", "x0", "v", "velocity", "flow_velocity"``)."""
    V.check_choice("source", source, PREDICTION_KINDS)
    V.check_choice("target", target, PREDICTION_KINDS)
    if source == target:
        return value
    if {source, target} == set(VELOCITY_KINDS):  # the same velocity in the two time directions
        return -value
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
    _, _, d_alpha, d_sigma = sde._rates(t)
    det = alpha * d_sigma - sigma * d_alpha
    return alpha / (sigma * jnp.abs(det))


# =============================================================================================
# Network parameterizations
# =============================================================================================

ApplyFn = Callable[..., Array]


def noise_input(sde: LinearProcess, t: Array, kind: str) -> Array:
    """What the network receives as its noise conditioning, from the process time ``t``:

    ``"t"`` the time itself; ``"t_scaled"`` ``999 t`` (score_sde's DDPM++ labels);
    ``"sigma"`` ``σ(t)`` (score_sde's NCSN++ labels); ``"log_sigma"`` ``¼ log(σ/α)`` (EDM's ``c_noise``);
    ``"flow_time"`` the generative time ``t_max − t`` (flow matching's ``t``: source 0, data 1) and
    ``"flow_time_scaled"`` ``999 (t_max − t)`` (the same range as ``"t_scaled"``, for the U-Nets' embeddings).
    """
    V.check_choice("noise_input", kind, NOISE_INPUTS)
    t = sde._time(t)
    if kind == "t":
        return t
    if kind == "t_scaled":
        return 999.0 * t
    if kind == "sigma":
        return sde._sigma(t)
    if kind == "flow_time":
        return sde.flow_time(t)
    if kind == "flow_time_scaled":
        return 999.0 * sde.flow_time(t)
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
    """The network output is the prediction itself (``prediction`` in ``PREDICTION_KINDS``).

    ``noise_head=True``: the network emits two stacked outputs on the channel axis (``out_heads=2``): the
    prediction and the stochastic interpolant's noise ``η(x, t) ≈ E[z | x_t = x]``, whose score is
    ``−η/c(t)`` on any interpolant path (:class:`ScoreModel` splits them).

    ``scale_by_sigma=True`` (score only) divides the output by ``σ(t)``: score_sde's NCSN++ output
    scaling. ``noise_input`` chooses the conditioning passed to the network (see :func:`noise_input`).
    """

    prediction: str = eqx.field(static=True)
    scale_by_sigma: bool = eqx.field(static=True)
    noise_input: str = eqx.field(static=True)
    noise_head: bool = eqx.field(static=True)

    def __init__(self, prediction: str = "eps", *, scale_by_sigma: bool = False, noise_input: str = "t",
                 noise_head: bool = False):
        V.check_choice("prediction", prediction, PREDICTION_KINDS)
        V.check_choice("noise_input", noise_input, NOISE_INPUTS)
        if scale_by_sigma and prediction != "score":
            raise ValueError(
                f"scale_by_sigma applies to prediction='score' only, got prediction={prediction!r}."
            )
        self.prediction = prediction
        self.scale_by_sigma = scale_by_sigma
        self.noise_input = noise_input
        self.noise_head = bool(noise_head)

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


# =============================================================================================
# The model wrapper: a network plus what it predicts
# =============================================================================================


def _batch_time(t: Any, x: Array) -> Array:
    """``t`` (scalar or ``[batch]``) as a ``[batch]`` array of ``x``'s dtype."""
    return jnp.broadcast_to(jnp.asarray(t, jnp.result_type(x)), (x.shape[0],))


class ModelWrapper(eqx.Module):
    r"""The one model concept of jaxdiff: a network (static) and its parameters (leaves), plus what the
    network predicts (:attr:`prediction`, one of ``PREDICTION_KINDS``). Every other quantity is derived
    through the process: ``predict(sde, x, t, kind)`` at process time ``t`` (``[batch]`` or scalar).

    Samplers, likelihoods and losses talk to this interface only, so a diffusion score network, a
    flow-matching velocity network and a bridge's pair of drifts serve the same samplers. Conversions
    are exact where they are defined and singular where the process is: ``score``, ``eps`` and ``x0``
    from a velocity need ``α σ' − σ α' ≠ 0`` (true on ``[0, t_max]`` for every process of jaxdiff); a
    score at ``σ = 0`` (the data end, ``t = 0``) is infinite, so samplers never ask for one there:
    they stop at ``sampling_eps`` and take a Tweedie step, or, with a velocity prediction, land on 0
    directly. A Gaussian conversion on a :class:`jaxdiff.paths.FlowProcess` whose source is a data law is
    refused with a message naming the samplers that apply.

    Subclasses: :class:`ScoreModel` (a network under a :class:`Parameterization`: score / ε / x₀ / v /
    velocity / flow velocity), :class:`FlowModel` (velocity head in flow time, optional noise head),
    :class:`BridgeModel` (forward and backward drifts), :class:`FunctionModel` (an analytic function).
    """

    @property
    @abc.abstractmethod
    def prediction(self) -> str:
        """The kind of the network's own output."""

    @abc.abstractmethod
    def _native(self, sde: LinearProcess, x: Array, t: Array) -> Array:
        """The network's output (kind :attr:`prediction`) at process time ``t: [batch]``."""

    def _direct(self, sde: LinearProcess, x: Array, t: Array, kind: str) -> Array | None:
        """A prediction of ``kind`` the model gives without conversion (e.g. a second head), else None."""
        return None

    def predict(self, sde: LinearProcess, x: Array, t: Any, kind: str | tuple[str, ...]) -> Array | tuple:
        """The model's estimate of ``kind`` at ``(x, t)`` (process time), converted through ``sde``; with a
        tuple of kinds, a tuple of estimates from one network evaluation (plus a second head if one is used)."""
        t = _batch_time(t, x)
        kinds = (kind,) if isinstance(kind, str) else tuple(kind)
        native = None
        out = []
        for k in kinds:
            direct = self._direct(sde, x, t, k)
            if direct is not None:
                out.append(direct.astype(x.dtype))
                continue
            if native is None:
                native = self._native(sde, x, t).astype(x.dtype)
            out.append(convert(sde, x, t, native, source=self.prediction, target=k))
        return out[0] if isinstance(kind, str) else tuple(out)

    def score(self, sde: LinearProcess, x: Array, t: Any) -> Array:
        """``∇ log p_t(x)`` as the model estimates it (process time ``t``)."""
        return self.predict(sde, x, t, "score")

    def reverse_noise_sq(self, sde: LinearProcess, t: Array) -> Array | None:
        """The noise level ``g_rev²`` this model's SDE must use, or None for the process's default
        (:meth:`jaxdiff.LinearProcess.reverse_noise_sq`). A bridge fixes it to its ``σ²``."""
        return None

    # --- conditioning (class labels; see jaxdiff.guidance) ---------------------------------------
    @property
    def num_classes(self) -> int | None:
        """Classes the model is conditioned on: ``K > 0`` (labels ``0..K−1``, the null class ``K`` = the
        unconditional branch), 0 for an unconditional model, None when it cannot tell (a user's function)."""
        return 0

    @property
    def conditional(self) -> bool:
        """Whether the model takes a condition (``with_cond``)."""
        return self.num_classes != 0

    def with_cond(self, cond: Array | None) -> "ModelWrapper":
        """The same model evaluated with class labels ``cond`` (``[batch]`` ints), or its unconditional branch
        (``cond=None``: the null class). Leaves only: rebuilding with new labels reuses compiled samplers."""
        raise ValueError(f"this {type(self).__name__} is unconditional (it takes no cond); train it with "
                         "model.num_classes=K, or pass score_fn/velocity_fn f(params, x, t, cond).")


def _with_cond_leaf(model: "ModelWrapper", cond: Any) -> "ModelWrapper":
    """``model`` with its ``cond`` leaf replaced (no constructor: safe inside a trace, where leaves are tracers)."""
    return eqx.tree_at(lambda m: m.cond, model, cond, is_leaf=lambda v: v is None)


def _cond_kw(cond: Any) -> dict:
    return {} if cond is None else {"cond": cond}


def _apply_num_classes(apply_fn: Any) -> int | None:
    """The class count a network's ``apply_fn`` reports (the job's ``NetworkApply``: 0 = unconditional), else None
    (a plain function: unknown; a condition is then passed to it as ``cond=`` and it must accept one)."""
    value = getattr(apply_fn, "num_classes", None)
    return None if value is None else int(value)


class _NetworkModel(ModelWrapper):
    """A wrapper around a network ``apply_fn`` with a ``cond`` leaf: its class count is the network's (the job's
    ``NetworkApply`` reports it; a plain function: unknown, and a condition is passed to it as ``cond=``)."""

    @property
    def num_classes(self) -> int | None:
        return _apply_num_classes(self.apply_fn)

    def with_cond(self, cond):
        if self.num_classes == 0:
            return super().with_cond(cond)
        return _with_cond_leaf(self, cond)


class ScoreModel(_NetworkModel):
    """A network with its parameters and parameterization.

    ``ScoreModel(apply_fn, params, parameterization).score(sde, x, t) = ∇ log p_t(x)`` as the network
    estimates it; ``predict(sde, x, t, kind)`` any other kind. ``params`` are the pytree leaves;
    ``apply_fn`` is static. With ``Direct("flow_velocity", noise_input="flow_time_scaled")`` it is a
    flow-matching model on a :class:`jaxdiff.paths.FlowProcess` (what the training job builds for flows).
    """

    params: Any
    parameterization: Parameterization
    apply_fn: ApplyFn = eqx.field(static=True)
    cond: Any = None

    def __init__(self, apply_fn: ApplyFn, params: Any, parameterization: Parameterization, *, cond: Any = None):
        if not callable(apply_fn):
            raise TypeError(f"apply_fn must be callable, got {type(apply_fn).__name__}.")
        if not isinstance(parameterization, Parameterization):
            raise TypeError(
                f"parameterization must be a jaxdiff Parameterization, got {type(parameterization).__name__}."
            )
        self.apply_fn = apply_fn
        self.params = params
        self.parameterization = parameterization
        self.cond = cond

    @property
    def prediction(self) -> str:
        return self.parameterization.prediction

    def _native(self, sde, x, t):
        return self.parameterization(self.apply_fn, self.params, sde, x, t, **_cond_kw(self.cond))

    def score(self, sde: LinearProcess, x: Array, t: Any, **kw) -> Array:
        if kw:
            return self.parameterization.predict(self.apply_fn, self.params, sde, x, t, "score", **kw)
        return self.predict(sde, x, t, "score")

    def predict(self, sde, x, t, kind):
        if not getattr(self.parameterization, "noise_head", False):
            return super().predict(sde, x, t, kind)
        t = _batch_time(t, x)
        out = self.parameterization(self.apply_fn, self.params, sde, x, t, **_cond_kw(self.cond)).astype(x.dtype)
        channels = x.shape[-1]
        native, eta = out[..., :channels], out[..., channels:]
        kinds = (kind,) if isinstance(kind, str) else tuple(kind)
        values = []
        for k in kinds:
            if k == "noise":
                values.append(eta)
            elif k == "score":
                values.append(interpolant_noise_score(sde, x, t, eta))
            else:
                values.append(convert(sde, x, t, native, source=self.prediction, target=k))
        return values[0] if isinstance(kind, str) else tuple(values)


def interpolant_noise_score(sde: LinearProcess, x: Array, t: Array, eta: Array) -> Array:
    """``∇ log p_t(x) = −η/c`` from the interpolant's noise estimate ``η ≈ E[z | x_t = x]`` (``c`` the path's noise
    std at flow time ``t_max − t``; ``sde`` a :class:`jaxdiff.paths.FlowProcess`). Where ``c = 0`` (no noise, the
    score is not defined by ``η``) the result is ``−η``, which every SDE drift multiplies by ``g_rev² ∝ c``."""
    path = getattr(sde, "path", None)
    if path is None:
        raise ValueError(f"a noise head gives a score only on an interpolant path, got {type(sde).__name__}.")
    c = broadcast_time(path._coefficients(sde.flow_time(t))[2], x)
    return -eta / jnp.where(c > 0, c, 1.0)


class FunctionModel(ModelWrapper):
    """An analytic (or user-written) ``fn(params, x, t) -> prediction`` of kind ``kind``, with ``t: [batch]`` in
    process time, or in flow time (``t_max − t``) with ``flow_time=True`` (how ``jaxdiff.sample``'s
    ``velocity_fn=`` and, on an interpolant, ``score_fn=`` are read). An optional ``score_fn`` (flow time with
    ``score_flow_time``) supplies the score directly (the SDE samplers of a velocity model). Functions are
    static: the same function objects hit the compiled code."""

    params: Any
    fn: Callable = eqx.field(static=True)
    kind: str = eqx.field(static=True)
    flow_time: bool = eqx.field(static=True)
    score_fn: Callable | None = eqx.field(static=True)
    score_flow_time: bool = eqx.field(static=True)
    takes_cond: bool = eqx.field(static=True)
    cond: Any = None

    def __init__(self, fn: Callable, params: Any = None, *, kind: str = "score", flow_time: bool = False,
                 score_fn: Callable | None = None, score_flow_time: bool = False, takes_cond: bool = False,
                 cond: Any = None):
        if not callable(fn):
            raise TypeError(f"fn must be callable fn(params, x, t), got {type(fn).__name__}.")
        if score_fn is not None and not callable(score_fn):
            raise TypeError(f"score_fn must be callable score_fn(params, x, t), got {type(score_fn).__name__}.")
        V.check_choice("kind", kind, PREDICTION_KINDS)
        self.fn, self.params, self.kind, self.flow_time = fn, params, kind, bool(flow_time)
        self.score_fn, self.score_flow_time = score_fn, bool(score_flow_time) and score_fn is not None
        self.takes_cond, self.cond = bool(takes_cond), cond

    @property
    def prediction(self) -> str:
        return self.kind

    @property
    def num_classes(self) -> int | None:
        return None if self.takes_cond else 0  # a conditional function does not say how many classes

    def with_cond(self, cond):
        if not self.takes_cond:
            return super().with_cond(cond)
        return _with_cond_leaf(self, cond)

    def _call(self, fn, x, t):
        return fn(self.params, x, t, self.cond) if self.takes_cond else fn(self.params, x, t)

    def _native(self, sde, x, t):
        return self._call(self.fn, x, sde.flow_time(t) if self.flow_time else t)

    def _direct(self, sde, x, t, kind):
        if kind == "score" and self.score_fn is not None:
            return self._call(self.score_fn, x, sde.flow_time(t) if self.score_flow_time else t)
        return None


class ScoreMethodModel(ModelWrapper):
    """Any object (a pytree) with a method ``score(sde, x, t)`` in process time, used as a score model."""

    model: Any

    @property
    def prediction(self) -> str:
        return "score"

    def _native(self, sde, x, t):
        return self.model.score(sde, x, t)


class FlowModel(_NetworkModel):
    r"""A velocity network (head ``"velocity"``) and optionally a noise network (head ``"noise"``), both
    ``apply_fn(head_params, x, t) -> [batch, *data]`` in flow time ``t`` (source 0, target 1).

    Prediction: ``"flow_velocity"``. The noise head ``η(x, t) ≈ E[z | x_t = x]`` gives the score
    ``s = −η/c(t)`` of the interpolant directly (any source); without it, a Gaussian-source path converts
    the velocity to a score through ``(α, σ)``. ``velocity(x, t)`` and ``score(path, x, t)`` keep their flow-
    time meaning.
    """

    params: dict
    apply_fn: Callable = eqx.field(static=True)
    cond: Any = None

    def __init__(self, apply_fn: Callable, params: dict, *, cond: Any = None):
        if not callable(apply_fn):
            raise TypeError(f"apply_fn must be callable apply_fn(params, x, t), got {type(apply_fn).__name__}.")
        if not isinstance(params, dict) or "velocity" not in params:
            raise ValueError("params must be a dict with a 'velocity' head (and optionally a 'noise' head).")
        unknown = sorted(set(params) - {"velocity", "noise"})
        if unknown:
            raise ValueError(f"unknown head(s) {unknown} in params; allowed heads are 'velocity' and 'noise'.")
        self.apply_fn = apply_fn
        self.params = params
        self.cond = cond

    @property
    def prediction(self) -> str:
        return "flow_velocity"

    @property
    def has_score(self) -> bool:
        return "noise" in self.params

    def _native(self, sde, x, t):
        return self.velocity(x, sde.flow_time(t))

    def _direct(self, sde, x, t, kind):
        if kind == "score" and self.has_score:
            return interpolant_noise_score(sde, x, t, self.noise(x, sde.flow_time(t)))
        return None

    def _noise_score(self, path, x, t_flow):
        if path is None:
            raise ValueError("a FlowModel's noise head gives a score only on an interpolant path (c(t) is its std).")
        c = broadcast_time(path._coefficients(t_flow)[2], x)
        return -self.noise(x, t_flow) / jnp.where(c > 0, c, 1.0)

    def velocity(self, x: Array, t: Array) -> Array:
        """The velocity ``dx/dt`` at flow time ``t``."""
        return self.apply_fn(self.params["velocity"], x, _batch_time(t, x), **_cond_kw(self.cond)).astype(x.dtype)

    def noise(self, x: Array, t: Array) -> Array:
        """The noise head ``η(x, t)`` at flow time ``t``."""
        if "noise" not in self.params:
            raise ValueError("this FlowModel has no 'noise' head, so no score: train it with the interpolant "
                             "noise objective (jaxdiff.flows.interpolant_noise_loss) or sample with the ODE.")
        return self.apply_fn(self.params["noise"], x, _batch_time(t, x), **_cond_kw(self.cond)).astype(x.dtype)

    def score(self, path: Any, x: Array, t: Any) -> Array:  # noqa: D102  (flow-time signature, kept)
        if isinstance(path, LinearProcess):
            return self.predict(path, x, t, "score")
        return self._noise_score(path, x, _batch_time(t, x))


class BridgeModel(_NetworkModel):
    r"""Forward and backward drifts of a diffusion bridge with noise ``σ`` (``ε = σ²``), as DSBM trains.

    ``forward_drift(x, t)``: ``dX = f dt + σ dW`` from ``t = 0`` to 1. ``backward_drift(x, t)``: the
    reversed SDE's drift, ``dX = b (−dt) + σ dW`` from 1 to 0 (flow time). Prediction
    ``"flow_velocity" = ½(f − b)`` (Nelson's relation), score ``(f + b)/σ²``, SDE noise ``σ²``: the generic
    reverse drift ``u − ½ σ² s`` is then exactly ``−f`` (and ``−b`` for the reversed path).
    """

    params: dict
    sigma: float
    apply_fn: Callable = eqx.field(static=True)
    cond: Any = None

    def __init__(self, apply_fn: Callable, params: dict, sigma: float, *, cond: Any = None):
        if not isinstance(params, dict) or not {"forward", "backward"} >= set(params) or not params:
            raise ValueError("params must be a dict with 'forward' and/or 'backward' drift heads.")
        if not float(sigma) > 0:
            raise ValueError(f"sigma must be > 0 (the bridge's noise), got sigma={sigma!r}.")
        self.apply_fn = apply_fn
        self.params = params
        self.sigma = float(sigma)
        self.cond = cond

    @property
    def prediction(self) -> str:
        return "flow_velocity"

    def _head(self, name: str, x: Array, t: Array) -> Array:
        if name not in self.params:
            raise ValueError(f"this BridgeModel has no {name!r} drift; it has {sorted(self.params)}.")
        return self.apply_fn(self.params[name], x, _batch_time(t, x), **_cond_kw(self.cond)).astype(x.dtype)

    def forward_drift(self, x: Array, t: Array) -> Array:
        return self._head("forward", x, t)

    def backward_drift(self, x: Array, t: Array) -> Array:
        return self._head("backward", x, t)

    def velocity(self, x: Array, t: Array) -> Array:
        return 0.5 * (self.forward_drift(x, t) - self.backward_drift(x, t))

    def _native(self, sde, x, t):
        return self.velocity(x, sde.flow_time(t))

    def _direct(self, sde, x, t, kind):
        if kind == "score":
            t_flow = sde.flow_time(t)
            return (self.forward_drift(x, t_flow) + self.backward_drift(x, t_flow)) / self.sigma**2
        return None

    def reverse_noise_sq(self, sde, t):
        return jnp.full_like(jnp.asarray(t), self.sigma**2)

    def score(self, path: Any, x: Array, t: Any) -> Array:  # noqa: D102  (flow-time signature, kept)
        if isinstance(path, LinearProcess):
            return self.predict(path, x, t, "score")
        return (self.forward_drift(x, t) + self.backward_drift(x, t)) / self.sigma**2


class TimeReversed(ModelWrapper):
    """``model`` (trained on ``inner_sde``) read on the reversed path: at process time ``s`` of the
    reversed process the inner model is asked at ``t_max − s``; velocities change sign, scores and the
    SDE noise do not. ``jaxdiff.translate(..., direction="backward")`` uses it."""

    model: ModelWrapper
    inner_sde: LinearProcess

    @property
    def prediction(self) -> str:
        return "flow_velocity"

    @property
    def num_classes(self) -> int | None:
        return self.model.num_classes

    def with_cond(self, cond):
        return TimeReversed(self.model.with_cond(cond), self.inner_sde)

    def _inner_time(self, t):
        return self.inner_sde.t_max - t

    def _native(self, sde, x, t):
        return -self.model.predict(self.inner_sde, x, self._inner_time(t), "flow_velocity")

    def _direct(self, sde, x, t, kind):
        if kind == "score":
            return self.model.predict(self.inner_sde, x, self._inner_time(t), "score")
        if kind == "velocity":
            return self.model.predict(self.inner_sde, x, self._inner_time(t), "flow_velocity")
        return None

    def reverse_noise_sq(self, sde, t):
        inner = self.model.reverse_noise_sq(self.inner_sde, self._inner_time(t))
        return self.inner_sde.reverse_noise_sq(self._inner_time(t)) if inner is None else inner
