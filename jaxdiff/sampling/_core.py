"""What every sampler shares: the score/denoiser wrapper and the registry of samplers."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp

from jaxdiff.parameterization import VELOCITY_KINDS
from jaxdiff.processes import LinearProcess, broadcast_time
from jaxdiff.sampling._grid import alpha_sigma

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class Model:
    """What a sampler integrates: a model wrapper on a process, at a process time ``t`` (scalar) for a batch ``x``.

    ``wrapper`` is any :class:`jaxdiff.parameterization.ModelWrapper` (a ``ScoreModel``, ``FlowModel``,
    ``BridgeModel``, or an analytic ``FunctionModel``); every quantity below is derived from its one
    prediction through the process, whatever the model family:

    * ``score(x, t)``, ``denoise(x, t) = E[x_0 | x_t]`` (Tweedie for score/ε models);
    * ``probability_flow(x, t)``: the velocity ``dx/dt`` in process time (``f x − ½ g² s`` for a score
      model, the network itself for a velocity model, which stays finite where ``f`` is not);
    * ``reverse_drift(x, t) = u − ½ g_rev² s`` with ``g_rev² = diffusion · noise level`` (``noise_sq``):
      the process's default (``g²`` for a diffusion: the reverse-time SDE) or the model's own (a bridge's σ²).

    Each call costs one network evaluation (NFE), ``reverse_drift`` included.
    """

    sde: LinearProcess
    wrapper: Any
    diffusion: float = 1.0

    @property
    def kind(self) -> str:
        return self.wrapper.prediction

    def predict(self, x: Array, t: Array, kind):
        t_batch = jnp.broadcast_to(jnp.asarray(t, x.dtype), (x.shape[0],))
        out = self.wrapper.predict(self.sde, x, t_batch, kind)
        return out.astype(x.dtype) if isinstance(kind, str) else tuple(o.astype(x.dtype) for o in out)

    def score(self, x: Array, t: Array) -> Array:
        return self.predict(x, t, "score")

    def denoise(self, x: Array, t: Array) -> Array:
        if self.kind in ("score", "eps"):  # Tweedie, with the clean-data convention at t = 0
            alpha, sigma = alpha_sigma(self.sde, jnp.asarray(t, x.dtype))
            return (x + sigma**2 * self.score(x, t)) / alpha
        return self.predict(x, t, "x0")

    def drift_coeffs(self, t: Array, x: Array) -> tuple[Array, Array]:
        """``(f(t), g(t)²)`` broadcast against ``x``."""
        return broadcast_time(self.sde._drift_coeff(t), x), broadcast_time(self.sde._diffusion_sq(t), x)

    def noise_sq(self, t: Array) -> Array:
        """``g_rev(t)²`` of the SDE samplers: ``diffusion`` × (the model's own level, else the process's)."""
        own = self.wrapper.reverse_noise_sq(self.sde, t)
        level = self.sde.reverse_noise_sq(t) if own is None else own
        return self.diffusion * level

    def probability_flow(self, x: Array, t: Array) -> Array:
        if self.kind in VELOCITY_KINDS:
            return self.predict(x, t, "velocity")
        f, g2 = self.drift_coeffs(t, x)
        return f * x - 0.5 * g2 * self.score(x, t)

    def reverse_drift(self, x: Array, t: Array) -> Array:
        g_rev2 = broadcast_time(self.noise_sq(t), x)
        if self.kind in VELOCITY_KINDS:
            velocity, score = self.predict(x, t, ("velocity", "score"))
            return velocity - 0.5 * g_rev2 * score
        f, g2 = self.drift_coeffs(t, x)
        return f * x - 0.5 * (g2 + g_rev2) * self.score(x, t)


@dataclasses.dataclass(frozen=True)
class SamplerSpec:
    """A registered sampler.

    ``fn(key, x, ts, model, options, trajectory) -> (x_final, nfe, trajectory_or_None)`` runs on a
    fixed decreasing grid ``ts`` (its last entry may be 0: the sampler returns the denoised
    estimate there, natively or through a final Tweedie step added by ``sample``).
    ``options`` maps option names to defaults; ``default_steps`` and ``default_grid`` apply when the
    caller gives neither ``steps`` nor ``ts``. ``handles_zero``: the update itself lands on ``σ = 0``.
    ``default_sigma_min(steps)``: the smallest nonzero ``σ̃`` of its default grid when that ends at 0.
    ``adaptive``: the sampler picks its own steps, so a grid ending at 0 is integrated on to
    ``sde.sampling_eps`` before the final Tweedie step. ``min_points``: the fewest grid points it runs on.
    ``lands_with_velocity``: with a velocity-predicting model the solver never needs a score at its last
    grid point, so a grid ending at 0 is integrated to 0 itself (a flow reaches its target, no Tweedie step).
    ``sigma_tilde_steps``: the update is written in ``σ̃ = σ/α`` and cannot start where ``α = 0`` (a flow's
    source end); ``sample`` then takes the first interval as one exact-in-the-limit DDIM step.
    """

    name: str
    fn: Callable
    options: dict
    description: str
    default_steps: int
    default_grid: str = "time_uniform"
    handles_zero: bool = True
    stochastic: bool = False
    default_sigma_min: Callable[[int], float] | None = None
    adaptive: bool = False
    min_points: int = 2
    lands_with_velocity: bool = False
    sigma_tilde_steps: bool = False


_REGISTRY: dict[str, SamplerSpec] = {}


def register(spec: SamplerSpec) -> SamplerSpec:
    """Add a sampler to the registry (a name can be registered once)."""
    if spec.name in _REGISTRY:
        raise ValueError(f"a sampler named {spec.name!r} is already registered.")
    _REGISTRY[spec.name] = spec
    return spec


def get_spec(name: str) -> SamplerSpec:
    if name not in _REGISTRY:
        raise ValueError(f"sampler must be one of {sorted(_REGISTRY)}, got sampler={name!r}.")
    return _REGISTRY[name]


def samplers() -> dict[str, dict]:
    """The registered samplers: ``{name: {"description", "options", "default_steps", "default_grid",
    "stochastic"}}``."""
    return {
        name: {
            "description": spec.description,
            "options": {k: v for k, v in spec.options.items() if not k.startswith("_")},
            "default_steps": spec.default_steps,
            "default_grid": spec.default_grid,
            "stochastic": spec.stochastic,
        }
        for name, spec in sorted(_REGISTRY.items())
    }


def scan_steps(step: Callable, carry: Any, xs: Any, trajectory: bool, x_of: Callable[[Any], Array]):
    """``lax.scan`` over grid intervals; returns the final carry and, if asked, the stack of states
    after each step (with the initial state first)."""

    def body(c, inp):
        c = step(c, inp)
        return c, (x_of(c) if trajectory else None)

    x0 = x_of(carry)
    carry, stacked = jax.lax.scan(body, carry, xs)
    if trajectory:
        stacked = jnp.concatenate([x0[None], stacked], axis=0)
    return carry, stacked
