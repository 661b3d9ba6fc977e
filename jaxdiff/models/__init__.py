"""Flax score networks. A network maps ``(x, noise_in)`` to an output of ``x``'s shape; the
parameterization (``jaxdiff.Direct``, ``jaxdiff.EDMPreconditioning``) gives that output its meaning."""

from jaxdiff.models.networks import DDPM, NCSNpp, ScoreMLP

__all__ = ["DDPM", "NCSNpp", "ScoreMLP"]
