"""Rectified flow with one reflow (2-RF) and a one-step distilled model, N(0, I) → 8 Gaussians: three stages
of the same job (flow → reflow → distill, training.n_iters steps each); samples with the distilled Euler step."""

from experiments.configs._two_d import base


def get_config():
    config = base("8gaussians")
    config.training.n_iters = 10000
    f = config.flow
    f.reflow_rounds = 2
    f.reflow_pairs = 20000
    f.reflow_sampler = "ode_adaptive"
    f.distill = True
    return config
