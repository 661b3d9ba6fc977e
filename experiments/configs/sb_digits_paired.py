"""Paired translation digits → rotated digits in the style of I²SB: bridge matching (σ = 0.5) of the forward and
backward drifts over the given pairs (the same digit in both domains, row for row)."""

from experiments.configs._digits_domains import base


def get_config():
    config = base("digits", "digits_rotated", objective="bridge_matching", sigma=0.5)
    config.data.paired = True
    config.flow.coupling = "paired"
    config.training.n_iters = 6000
    return config
