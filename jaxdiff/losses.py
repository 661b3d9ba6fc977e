r"""Score-matching losses as pure functions ``loss(params, key, x0) -> scalar``.

Each builder takes a process, a network ``apply_fn(params, x_in, noise_in)`` and a
:class:`~jaxdiff.parameterization.Parameterization`, and returns a function that draws ``t`` (per
example), ``x_t = α x_0 + σ ε``, and regresses. All are ``jit``/``vmap``/``grad``-able; with
``per_example=True`` they return ``[batch]`` values for the caller to reduce.

* :func:`dsm_loss` — denoising score matching, ``E_t λ(t) E‖s_θ(x_t,t) − ∇log p(x_t|x_0)‖²`` with
  ``λ = σ²`` (score_sde's default), ``g²`` (likelihood weighting) or ``1``; computed in ε-space as
  ``(λ/σ²) ‖σ s_θ + ε‖²`` for stability at small σ.
* :func:`denoising_loss` (and :func:`eps_loss`, :func:`x0_loss`, :func:`v_loss`) — regression on the
  ``objective``'s own target (ε: DDPM's ``L_simple``; ``x_0``; ``v = αε − σx_0``; ``velocity``),
  weight 1 in that space unless ``weighting`` says otherwise.
* :func:`ncsn_loss` — NCSN's multi-level loss (Eq. 9) with ``σ_i²`` weights, on the VE process.
* :func:`ddpm_loss` — ``L_simple`` on the discrete DDPM chain.
* :func:`sliced_score_matching_loss` — ``E[vᵀ ∇s v + ½ (vᵀ s)²]`` (or ``½‖s‖²``, variance-reduced),
  Hutchinson projections ``v`` Gaussian or Rademacher; on data or on ``x_t`` of a process.

``reduce`` sums (``"sum"``, the ‖·‖² of the formulas; score_sde's ``reduce_mean=False``) or averages
(``"mean"``) over the data axes.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff import _validation as V
from jaxdiff.discrete import DDPMSchedule, NCSNSchedule
from jaxdiff.parameterization import (
    PREDICTION_KINDS,
    Direct,
    Parameterization,
    from_x0_eps,
)
from jaxdiff.processes import LinearProcess
from jaxdiff.time_sampling import TimeSampler, discrete_time_sampler, resolve_time_sampler

Array = jax.Array
LossFn = Callable[[Any, Array, Array], Array]

DSM_WEIGHTINGS = ("sigma2", "likelihood", "uniform")
REDUCTIONS = ("sum", "mean")
PROJECTIONS = ("gaussian", "rademacher")


def _reduce_data_axes(values: Array, reduce: str) -> Array:
    """``[batch, *data] -> [batch]`` by sum or mean over the data axes."""
    flat = values.reshape(values.shape[0], -1)
    return flat.sum(axis=-1) if reduce == "sum" else flat.mean(axis=-1)


def _check_data(x0: Array) -> None:
    V.check_floating("x0", x0)
    if np.ndim(x0) < 2:
        raise ValueError(f"x0 must have shape (batch, *data) with at least one data axis, got x0.shape={np.shape(x0)}.")


def _model_kwargs(key: Array, model_key: bool, cond: Array | None = None) -> dict:
    kw = {"key": key} if model_key else {}
    if cond is not None:
        kw["cond"] = cond
    return kw


def split_condition(batch: Any) -> tuple[Array, Array | None]:
    """``(x0, cond)`` of a data batch: an array (no condition) or ``{"x0": x0, "cond": labels}`` (``labels`` an
    int array ``[batch]`` that the network receives as ``cond=``; the class-conditional batches of the job)."""
    if isinstance(batch, dict):
        if "x0" not in batch:
            raise ValueError(f"a conditional data batch is {{'x0': x0, 'cond': labels}}; got keys {sorted(batch)}.")
        unknown = sorted(set(batch) - {"x0", "cond"})
        if unknown:
            raise ValueError(f"unknown key(s) {unknown} in a data batch; allowed are 'x0' and 'cond'.")
        return batch["x0"], batch.get("cond")
    return batch, None


def dsm_weight_in_eps_space(sde: LinearProcess, weighting: str | Callable[[Array], Array]) -> Callable[[Array], Array]:
    """``w(t) = λ(t)/σ(t)²``: the ε-space weight of a score-space weighting ``λ``.

    ``"sigma2"``: ``λ = σ²`` → 1; ``"likelihood"``: ``λ = g²`` → ``g²/σ²``; ``"uniform"``: ``λ = 1``
    → ``1/σ²``; a callable ``λ(t)`` → ``λ(t)/σ(t)²``.
    """
    if callable(weighting):
        return lambda t: weighting(t) / sde._sigma(t) ** 2
    V.check_choice("weighting", weighting, DSM_WEIGHTINGS)
    if weighting == "sigma2":
        return lambda t: jnp.ones_like(t)
    if weighting == "likelihood":
        return lambda t: sde._diffusion_sq(t) / sde._sigma(t) ** 2
    return lambda t: 1.0 / sde._sigma(t) ** 2


def _denoising_core(
    sde: LinearProcess,
    apply_fn: Callable[..., Array],
    parameterization: Parameterization,
    objective: str,
    weight_fn: Callable[[Array], Array] | None,
    time_sampler: TimeSampler,
    reduce: str,
    per_example: bool,
    model_key: bool,
) -> LossFn:
    """``w(t) · ω_IS(t) · ‖pred_objective − target_objective‖²`` per example."""

    def loss(params, key, batch):
        x0, cond = split_condition(batch)
        _check_data(x0)
        k_t, k_eps, k_model = jax.random.split(key, 3)
        t, is_weight = time_sampler(k_t, x0.shape[0])
        x_t, eps = sde.marginal_sample(k_eps, x0, t)
        pred = parameterization.predict(
            apply_fn, params, sde, x_t, t, objective, **_model_kwargs(k_model, model_key, cond)
        )
        target = from_x0_eps(sde, x_t, t, x0, eps, objective)
        per = _reduce_data_axes((pred - target) ** 2, reduce)
        weight = is_weight if weight_fn is None else weight_fn(t) * is_weight
        per = weight.astype(per.dtype) * per
        return per if per_example else per.mean()

    return loss


def denoising_loss(
    sde: LinearProcess,
    apply_fn: Callable[..., Array],
    *,
    objective: str = "eps",
    parameterization: Parameterization | None = None,
    weighting: Callable[[Array], Array] | None = None,
    time_sampling: str | TimeSampler = "uniform",
    reduce: str = "sum",
    per_example: bool = False,
    model_key: bool = False,
) -> LossFn:
    r"""``E_{t,x_0,ε} w(t) ‖ŷ_θ(x_t, t) − y(x_0, ε)‖²`` with ``y`` the ``objective``'s target.

    Args:
      sde: the forward process.
      apply_fn: the network, ``apply_fn(params, x_in, noise_in[, key=...]) -> [batch, *data]``.
      objective: ``"eps"`` (DDPM's ``L_simple``), ``"x0"``, ``"v"``, ``"score"`` or ``"velocity"``.
      parameterization: what the network predicts (default: ``Direct(objective)``); any other
        kind is converted exactly to the objective's space.
      weighting: ``w(t)`` in the objective's space (default 1).
      time_sampling: a name of :mod:`jaxdiff.time_sampling` or a sampler ``(key, n) -> (t, w)``.
      reduce: ``"sum"`` or ``"mean"`` over the data axes.
      per_example: return ``[batch]`` instead of the batch mean.
      model_key: pass a PRNG ``key=`` to ``apply_fn`` (dropout).
    Returns:
      ``loss(params, key, x0)``.
    """
    V.check_choice("objective", objective, PREDICTION_KINDS)
    V.check_choice("reduce", reduce, REDUCTIONS)
    if weighting is not None and not callable(weighting):
        raise ValueError(f"weighting must be None or a callable w(t), got weighting={weighting!r}.")
    parameterization = Direct(objective) if parameterization is None else parameterization
    sampler = resolve_time_sampler(sde, time_sampling)
    return _denoising_core(sde, apply_fn, parameterization, objective, weighting, sampler, reduce, per_example, model_key)


def eps_loss(sde: LinearProcess, apply_fn: Callable[..., Array], **kwargs) -> LossFn:
    """DDPM's ``L_simple`` in continuous time: ``E ‖ε_θ(x_t, t) − ε‖²``. See :func:`denoising_loss`."""
    return denoising_loss(sde, apply_fn, objective="eps", **kwargs)


def x0_loss(sde: LinearProcess, apply_fn: Callable[..., Array], **kwargs) -> LossFn:
    """``E ‖x̂_θ(x_t, t) − x_0‖²``. See :func:`denoising_loss`."""
    return denoising_loss(sde, apply_fn, objective="x0", **kwargs)


def v_loss(sde: LinearProcess, apply_fn: Callable[..., Array], **kwargs) -> LossFn:
    """``E ‖v̂_θ(x_t, t) − (α ε − σ x_0)‖²`` (Salimans & Ho 2022). See :func:`denoising_loss`."""
    return denoising_loss(sde, apply_fn, objective="v", **kwargs)


def dsm_loss(
    sde: LinearProcess,
    apply_fn: Callable[..., Array],
    *,
    parameterization: Parameterization | None = None,
    weighting: str | Callable[[Array], Array] = "sigma2",
    time_sampling: str | TimeSampler = "uniform",
    reduce: str = "sum",
    per_example: bool = False,
    model_key: bool = False,
) -> LossFn:
    r"""Denoising score matching: ``E_t λ(t) E ‖s_θ(x_t, t) − ∇ log p(x_t | x_0)‖²``, ``t ~ U[t_min, t_max]``.

    Args:
      weighting: ``λ(t)``: ``"sigma2"`` (``σ²``, score_sde's default), ``"likelihood"`` (``g²``; with
        ``time_sampling="importance"`` its variance is smallest), ``"uniform"`` (1), or a callable.
      parameterization: default ``Direct("score")``; any kind is converted to a score.
      Other arguments as :func:`denoising_loss`.
    """
    V.check_choice("reduce", reduce, REDUCTIONS)
    parameterization = Direct("score") if parameterization is None else parameterization
    weight_fn = dsm_weight_in_eps_space(sde, weighting)
    sampler = resolve_time_sampler(sde, time_sampling)
    # λ ‖s_θ + ε/σ‖² = (λ/σ²) ‖σ s_θ + ε‖² = (λ/σ²) ‖ε̂_θ − ε‖² with ε̂_θ = −σ s_θ.
    return _denoising_core(sde, apply_fn, parameterization, "eps", weight_fn, sampler, reduce, per_example, model_key)


def ncsn_loss(
    schedule: NCSNSchedule,
    apply_fn: Callable[..., Array],
    *,
    parameterization: Parameterization | None = None,
    reduce: str = "sum",
    per_example: bool = False,
    model_key: bool = False,
) -> LossFn:
    r"""NCSN's multi-level loss (Eq. 9): ``(1/L) Σ_i σ_i² E ‖s_θ(x_0 + σ_i ε, σ_i) + ε/σ_i‖²``.

    One level per example, uniform over the ``L`` levels; the network sees the level through the
    VE process time ``t_i`` (``σ(t_i) = σ_i``), mapped by the parameterization's ``noise_input``
    (``Direct("score", noise_input="sigma")`` feeds ``σ_i`` itself, as NCSN does).
    """
    sde = schedule.to_vesde()
    return dsm_loss(
        sde,
        apply_fn,
        parameterization=parameterization,
        weighting="sigma2",
        time_sampling=discrete_time_sampler(schedule.continuous_times()),
        reduce=reduce,
        per_example=per_example,
        model_key=model_key,
    )


def ddpm_loss(
    schedule: DDPMSchedule,
    apply_fn: Callable[..., Array],
    *,
    reduce: str = "mean",
    per_example: bool = False,
    model_key: bool = False,
) -> LossFn:
    r"""DDPM's ``L_simple = E_{i, x_0, ε} ‖ε − ε_θ(√ᾱ_i x_0 + √(1−ᾱ_i) ε, t_i)‖²`` on the discrete chain.

    ``i`` is uniform on ``0 … N−1``; the network gets the continuous time ``t_i = (i+1)/N``.
    """
    V.check_choice("reduce", reduce, REDUCTIONS)

    def loss(params, key, x0):
        _check_data(x0)
        k_i, k_eps, k_model = jax.random.split(key, 3)
        i = jax.random.randint(k_i, (x0.shape[0],), 0, schedule.num_steps)
        x_t, eps = schedule.marginal_sample(k_eps, x0, i)
        t_i = schedule.continuous_time(i).astype(x0.dtype)
        pred = apply_fn(params, x_t, t_i, **_model_kwargs(k_model, model_key))
        per = _reduce_data_axes((pred - eps) ** 2, reduce)
        return per if per_example else per.mean()

    return loss


def _projections(key: Array, shape: tuple[int, ...], kind: str, dtype: Any) -> Array:
    """Hutchinson probes with ``E[v vᵀ] = I``: Gaussian or Rademacher (±1)."""
    if kind == "gaussian":
        return jax.random.normal(key, shape, dtype)
    return jax.random.rademacher(key, shape, dtype)


def sliced_score_matching_loss(
    apply_fn: Callable[..., Array],
    *,
    sde: LinearProcess | None = None,
    parameterization: Parameterization | None = None,
    num_projections: int = 1,
    projection: str = "gaussian",
    variance_reduced: bool = False,
    weighting: str | Callable[[Array], Array] = "sigma2",
    time_sampling: str | TimeSampler = "uniform",
    reduce: str = "sum",
    per_example: bool = False,
    model_key: bool = False,
) -> LossFn:
    r"""Sliced score matching (Song et al. 2019): ``E_x E_v [vᵀ ∇_x s_θ(x) v + ½ (vᵀ s_θ(x))²]``.

    Equal to ``½ E‖s_θ − ∇ log p‖²`` up to a constant, so its minimizer is the true score with no
    access to it. ``variance_reduced=True`` replaces ``½(vᵀs)²`` by its expectation ``½‖s‖²`` (SSM-VR,
    the lecture notes' form). ``vᵀ ∇s v`` is one forward-mode JVP per projection.

    Without ``sde``: ``apply_fn(params, x)`` is the score of the data itself. With ``sde``: the score
    of the perturbed law at ``x_t`` (``t`` drawn as in :func:`dsm_loss`), through the
    parameterization, weighted by ``λ(t)`` (``"sigma2"``, ``"likelihood"``, ``"uniform"`` or callable).
    """
    V.check_int_at_least("num_projections", num_projections, 1)
    V.check_choice("projection", projection, PROJECTIONS)
    V.check_choice("reduce", reduce, REDUCTIONS)
    if sde is not None:
        parameterization = Direct("score") if parameterization is None else parameterization
        sampler = resolve_time_sampler(sde, time_sampling)
        if callable(weighting):
            lam = weighting
        else:
            V.check_choice("weighting", weighting, DSM_WEIGHTINGS)
            lam = {
                "sigma2": lambda t: sde._sigma(t) ** 2,
                "likelihood": lambda t: sde._diffusion_sq(t),
                "uniform": lambda t: jnp.ones_like(t),
            }[weighting]

    def loss(params, key, x0):
        _check_data(x0)
        k_t, k_eps, k_v, k_model = jax.random.split(key, 4)
        kw = _model_kwargs(k_model, model_key)
        if sde is None:
            x = x0
            weight = jnp.ones((x0.shape[0],), x0.dtype)

            def score(y):
                return apply_fn(params, y, **kw)

        else:
            t, is_weight = sampler(k_t, x0.shape[0])
            x, _ = sde.marginal_sample(k_eps, x0, t)
            weight = lam(t) * is_weight

            def score(y):
                return parameterization.predict(apply_fn, params, sde, y, t, "score", **kw)

        probes = _projections(k_v, (num_projections,) + x.shape, projection, x.dtype)

        def one_projection(v):
            s, jv = jax.jvp(score, (x,), (v,))
            trace_term = _reduce_data_axes(v * jv, reduce)
            if variance_reduced:
                square_term = 0.5 * _reduce_data_axes(s**2, reduce)
            else:
                vs = _reduce_data_axes(v * s, "sum")
                square_term = 0.5 * vs**2
                if reduce == "mean":
                    square_term = square_term / (s[0].size)
            return trace_term + square_term

        per = jax.vmap(one_projection)(probes).mean(axis=0)
        per = weight.astype(per.dtype) * per
        return per if per_example else per.mean()

    return loss


__all__ = [
    "denoising_loss",
    "dsm_loss",
    "eps_loss",
    "x0_loss",
    "v_loss",
    "ncsn_loss",
    "ddpm_loss",
    "sliced_score_matching_loss",
    "dsm_weight_in_eps_space",
]
