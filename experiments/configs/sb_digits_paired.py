"""Paired translation digits → rotated digits in the style of I²SB: bridge matching (σ = 0.5) over
the given pairs (the same digit in both domains)."""

from experiments.configs._flow import base


def get_config():
    c = base()
    c.flow.method = "bridge_matching"
    c.flow.sigma = 0.5
    c.flow.coupling = "paired"
    c.data.source, c.data.target = "digits", "digits_rotated"
    c.data.paired = True
    c.model.hidden = (512, 512, 512)
    c.training.n_iters = 6000
    c.training.batch_size = 128
    c.sampling.sampler = "euler_maruyama"
    return c
