"""OT-CFM (Tong et al.): minibatch exact-OT coupling, linear path, N(0, I) → torchcfm's 8 Gaussians."""

from experiments.configs._flow import base


def get_config():
    c = base()
    c.flow.method = "cfm"
    c.flow.path = "linear"
    c.flow.sigma = 0.0
    c.flow.coupling = "exact"
    c.data.source, c.data.target = "gaussian", "8gaussians"
    c.training.n_iters = 20000
    return c
