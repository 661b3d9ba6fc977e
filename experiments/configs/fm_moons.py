"""OT-CFM between two empirical laws: torchcfm's 8 Gaussians → moons (unpaired translation)."""

from experiments.configs._flow import base


def get_config():
    c = base()
    c.flow.method = "cfm"
    c.flow.coupling = "exact"
    c.data.source, c.data.target = "8gaussians", "moons"
    c.training.n_iters = 20000
    return c
