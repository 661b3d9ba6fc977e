"""Flax score networks. A network maps ``(x, noise_in)`` to an output of ``x``'s shape; the
parameterization (``jaxdiff.Direct``, ``jaxdiff.EDMPreconditioning``) gives that output its meaning."""

from jaxdiff.models.networks import DDPM, NCSNpp, ScoreMLP
from jaxdiff.models.score_sde_import import CheckpointImportError, import_score_sde, load_score_sde_params

__all__ = ["CheckpointImportError", "DDPM", "NCSNpp", "ScoreMLP", "import_score_sde", "load_score_sde_params"]
