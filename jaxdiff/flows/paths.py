"""Moved to :mod:`jaxdiff.paths` (interpolant paths serve every model family); re-exported here."""

from jaxdiff.paths import *  # noqa: F401,F403
from jaxdiff.paths import __all__  # noqa: F401
