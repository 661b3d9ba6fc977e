"""SB-CFM with a score head (stochastic interpolant): Brownian bridge σ = 1, Sinkhorn coupling with
ε = 2σ² (POT convention), N(0, I) → moons; sample with the ODE or the SDE family."""

from experiments.configs._flow import base


def get_config():
    c = base()
    c.flow.method = "cfm"
    c.flow.path = "brownian_bridge"
    c.flow.sigma = 1.0
    c.flow.coupling = "sinkhorn"
    c.flow.epsilon = 2.0
    c.flow.with_score = True
    c.data.source, c.data.target = "gaussian", "moons"
    c.training.n_iters = 20000
    return c
