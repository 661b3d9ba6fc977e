"""Schrödinger bridge by DSBM (iterative Markovian fitting), ε = 1: 8 Gaussians ↔ moons."""

from experiments.configs._flow import base


def get_config():
    c = base()
    c.flow.method = "dsbm"
    c.flow.epsilon = 1.0
    c.flow.dsbm_iterations = 4
    c.data.source, c.data.target = "8gaussians", "moons"
    c.training.n_iters = 20000  # split over the 4 iterations' forward and backward fits
    c.sampling.sampler = "euler_maruyama"
    return c
