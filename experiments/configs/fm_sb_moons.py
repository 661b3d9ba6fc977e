"""SB-CFM with a noise head (a stochastic interpolant): Brownian bridge σ = 1, Sinkhorn coupling with ε = 2σ²
(POT convention) on the global batch, N(0, I) → torchcfm's moons; sample with the ODE or the SDE family."""

from experiments.configs._two_d import base


def get_config():
    config = base("moons_torchcfm", objective="interpolant")
    config.flow.path = "brownian_bridge"
    config.flow.sigma = 1.0
    config.flow.coupling = "sinkhorn"
    config.flow.epsilon = 2.0
    config.flow.t_eps = 1e-3
    return config
