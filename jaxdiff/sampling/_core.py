"""What every sampler shares: the score/denoiser wrapper and the registry of samplers."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp

from jaxdiff.processes import LinearProcess, broadcast_time
from jaxdiff.sampling._grid import alpha_sigma

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class Model:
    """The score of one (process, network) pair at a process time ``t`` (scalar), for a batch ``x``.

    ``score(x, t)`` evaluates ``score_fn(params, x, t·1_batch)`` (or ``params.score(sde, x, t·1_batch)``
    when ``score_fn`` is None); ``denoise(x, t)`` is Tweedie's
    ``E[x_0 | x_t] = (x + σ² s)/α``. Both cost one network evaluation (NFE).
    """

    sde: LinearProcess
    score_fn: Callable[[Any, Array, Array], Array] | None
    params: Any

    def score(self, x: Array, t: Array) -> Array:
        t_batch = jnp.broadcast_to(jnp.asarray(t, x.dtype), (x.shape[0],))
        if self.score_fn is None:  # params carry their network (jaxdiff.ScoreModel)
            return self.params.score(self.sde, x, t_batch).astype(x.dtype)
        return self.score_fn(self.params, x, t_batch).astype(x.dtype)

    def denoise(self, x: Array, t: Array) -> Array:
        alpha, sigma = alpha_sigma(self.sde, jnp.asarray(t, x.dtype))
        return (x + sigma**2 * self.score(x, t)) / alpha

    def drift_coeffs(self, t: Array, x: Array) -> tuple[Array, Array]:
        """``(f(t), g(t)²)`` broadcast against ``x``."""
        return broadcast_time(self.sde._drift_coeff(t), x), broadcast_time(self.sde._diffusion_sq(t), x)

    def probability_flow(self, x: Array, t: Array) -> Array:
        f, g2 = self.drift_coeffs(t, x)
        return f * x - 0.5 * g2 * self.score(x, t)

    def reverse_drift(self, x: Array, t: Array) -> Array:
        f, g2 = self.drift_coeffs(t, x)
        return f * x - g2 * self.score(x, t)


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
