"""Rectified flow with one reflow (2-RF) and a one-step distilled model, N(0, I) → 8 Gaussians."""

from experiments.configs._flow import base


def get_config():
    c = base()
    c.flow.method = "rectified_flow"
    c.flow.reflow_rounds = 2
    c.flow.reflow_pairs = 20000
    c.flow.distill = True
    c.data.source, c.data.target = "gaussian", "8gaussians"
    c.training.n_iters = 10000
    return c
