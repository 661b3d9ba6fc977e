r"""Class conditions and classifier-free guidance, as a transform of the model.

**Convention** (one, everywhere in jaxdiff): with guidance weight ``w`` the guided prediction is

    ``D_w(x, t | c) = (1 + w) · D(x, t | c) − w · D(x, t | ∅)``,

so ``w = 0`` is the purely conditional model and ``w > 0`` extrapolates away from the unconditional branch
``∅`` (Ho & Salimans' ``w``; diffusers' ``guidance_scale`` is ``1 + w``; EDM/k-diffusion's ``cond_scale``
is ``1 + w``). In score terms ``s_w = (1 + w) ∇log p_t(x|c) − w ∇log p_t(x)``.

Every conversion between predictions (ε, x₀, v, score, velocity, flow velocity: :mod:`jaxdiff.parameterization`)
is affine in the prediction at a fixed ``(x_t, t)`` with weights that sum to one across the two branches, so
guiding any one of them and converting equals converting and then guiding: :class:`Guided` combines the
branches in whatever kind a sampler asks for, and every sampler — diffusion, flow, bridge; fixed-step,
multistep, adaptive, stochastic — runs guided without change. A network model evaluates both branches in
one batched call (labels ``c`` and the null class stacked on the batch axis). Autoguidance (Karras et al.
2024) is the same transform with the unconditional branch replaced by a second, weaker model of the same
family (``guide=``), evaluated on the same labels when it is conditional.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff.parameterization import ModelWrapper, _batch_time
from jaxdiff.processes import LinearProcess

Array = jax.Array


def guided_combination(conditional: Array, unconditional: Array, weight: Any) -> Array:
    """``(1 + w) · conditional − w · unconditional`` (any prediction kind; same shapes)."""
    weight = jnp.asarray(weight, conditional.dtype)
    return (1.0 + weight) * conditional - weight * unconditional


def drop_labels(key: Array, labels: Array, rate: float, null_label: int) -> Array:
    """Classifier-free guidance's label dropout, **per example**: each label is replaced by ``null_label``
    independently with probability ``rate``. ``[batch] -> [batch]``."""
    labels = jnp.asarray(labels)
    if not 0.0 <= float(rate) < 1.0:
        raise ValueError(f"label dropout rate must lie in [0, 1), got rate={rate!r}.")
    drop = jax.random.bernoulli(key, rate, labels.shape)
    return jnp.where(drop, jnp.asarray(null_label, labels.dtype), labels)


class Guided(ModelWrapper):
    r"""``model`` conditioned on ``cond`` and guided with weight ``weight``: every prediction is
    ``(1 + w)·model(·|cond) − w·ref(·)`` where ``ref`` is the model's own unconditional branch (null class) or,
    with ``guide``, a second model (autoguidance; conditioned on the same labels if it is conditional).

    ``cond`` (int ``[batch]``) and ``weight`` are leaves: new labels or a new weight reuse compiled samplers.
    A network model whose class count is known evaluates both branches in one call of batch ``2B``.
    """

    model: ModelWrapper
    cond: Any
    weight: Any
    guide: ModelWrapper | None = None

    @property
    def prediction(self) -> str:
        return self.model.prediction

    @property
    def num_classes(self) -> int | None:
        return self.model.num_classes

    def with_cond(self, cond):
        return Guided(self.model, cond, self.weight, self.guide)

    def reverse_noise_sq(self, sde, t):
        return self.model.reverse_noise_sq(sde, t)

    def _native(self, sde, x, t):
        return self.predict(sde, x, t, self.prediction)

    def _branches(self, sde: LinearProcess, x: Array, t: Array, kinds: tuple[str, ...]):
        """``(conditional outputs, reference outputs)``, each a tuple over ``kinds``."""
        classes = self.model.num_classes
        if self.guide is None and classes:  # one batched call: labels, then the null class
            batch = x.shape[0]
            labels = jnp.concatenate([jnp.broadcast_to(jnp.asarray(self.cond, jnp.int32), (batch,)),
                                      jnp.full((batch,), classes, jnp.int32)])
            both = self.model.with_cond(labels).predict(sde, jnp.concatenate([x, x]), jnp.concatenate([t, t]), kinds)
            return tuple(o[:batch] for o in both), tuple(o[batch:] for o in both)
        conditional = self.model.with_cond(self.cond).predict(sde, x, t, kinds)
        if self.guide is None:
            reference = self.model.with_cond(None).predict(sde, x, t, kinds)
        else:
            guide = self.guide.with_cond(self.cond) if self.guide.conditional else self.guide
            reference = guide.predict(sde, x, t, kinds)
        return conditional, reference

    def predict(self, sde, x, t, kind):
        t = _batch_time(t, x)
        kinds = (kind,) if isinstance(kind, str) else tuple(kind)
        conditional, reference = self._branches(sde, x, t, kinds)
        out = tuple(guided_combination(c.astype(x.dtype), r.astype(x.dtype), self.weight)
                    for c, r in zip(conditional, reference))
        return out[0] if isinstance(kind, str) else out


def condition_model(model: ModelWrapper, cond: Any, guidance: Any = None, guide: ModelWrapper | None = None, *,
                    batch: int) -> ModelWrapper:
    """The model the samplers run: unchanged without ``cond``; ``model.with_cond(labels)`` for ``guidance`` 0
    or None (purely conditional: one branch, no extra evaluations); :class:`Guided` otherwise. ``cond``: an int,
    or ints ``[batch]`` in ``[0, num_classes)``. Checks the arguments (names, values, what is allowed) before any
    compile."""
    if cond is None:
        if guidance is not None or guide is not None:
            raise ValueError("guidance and guide_model need class labels: pass cond=labels (ints [batch]) too.")
        return model
    labels = np.asarray(cond)
    if labels.dtype.kind not in "iu":
        raise TypeError(f"cond must be integer class labels (an int or ints [batch]), got dtype {labels.dtype}.")
    if labels.ndim == 0:
        labels = np.full((batch,), int(labels))
    if labels.shape != (batch,):
        raise ValueError(f"cond must be an int or ints of shape [batch] = ({batch},), got cond.shape={labels.shape}.")
    classes = model.num_classes
    if classes == 0:
        raise ValueError(f"cond was given but the model is unconditional ({type(model).__name__} with num_classes=0): "
                         "train with model.num_classes=K, or pass score_fn/velocity_fn f(params, x, t, cond).")
    if labels.size and (labels.min() < 0 or (classes is not None and labels.max() >= classes)):
        allowed = f"[0, {classes})" if classes is not None else "≥ 0"
        raise ValueError(f"cond holds labels outside {allowed}: min {labels.min()}, max {labels.max()} "
                         f"(the null class is cond=None / guidance's unconditional branch).")
    labels = jnp.asarray(labels, jnp.int32)
    if guide is not None and not isinstance(guide, ModelWrapper):
        raise TypeError(f"guide_model must be a jaxdiff model wrapper (e.g. a ScoreModel, as load_run gives), got "
                        f"{type(guide).__name__}.")
    if guidance is None or (guide is None and _is_zero(guidance)):
        if guide is not None:
            raise ValueError("guide_model needs guidance=w (the autoguidance weight).")
        return model.with_cond(labels)
    weight = _weight(guidance)
    return Guided(model, labels, weight, guide)


def _is_zero(value: Any) -> bool:
    try:
        return float(value) == 0.0
    except (TypeError, jax.errors.ConcretizationTypeError):
        return False


def _weight(guidance: Any) -> Array:
    try:
        value = float(guidance)
    except TypeError:
        raise TypeError(f"guidance must be a number (the weight w), got {type(guidance).__name__}.") from None
    except jax.errors.ConcretizationTypeError:  # a traced weight: trusted as is
        return jnp.asarray(guidance, jnp.float32)
    if not np.isfinite(value):
        raise ValueError(f"guidance must be a finite number (w: (1 + w)·cond − w·uncond), got guidance={guidance!r}.")
    return jnp.asarray(value, jnp.float32)


__all__ = ["Guided", "condition_model", "drop_labels", "guided_combination"]
