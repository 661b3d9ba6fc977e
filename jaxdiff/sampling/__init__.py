"""Samplers and the ``sample`` front door. Importing this package registers every sampler."""

from jaxdiff.sampling import _diffrax, _langevin, _stepping  # noqa: F401  (registration)
from jaxdiff.sampling._core import samplers
from jaxdiff.sampling._grid import alpha_sigma, karras_sigmas, sigma_tilde, time_grid, time_of_sigma_tilde
from jaxdiff.sampling.api import calibrated_grid, resolve_model, sample, sample_flow, translate

__all__ = ["sample", "calibrated_grid", "sample_flow", "translate", "resolve_model", "samplers", "time_grid", "karras_sigmas", "sigma_tilde", "time_of_sigma_tilde", "alpha_sigma"]
