"""Unpaired translation digits → inverted digits by DSBM, bridge noise σ = √0.5 (ε = 0.5), with an MLP on the
64 pixels: 2 iterations, each a forward and a backward stage of training.n_iters steps."""

from experiments.configs._digits_domains import SQRT_HALF, base


def get_config():
    config = base("digits", "digits_inverted", objective="dsbm", sigma=SQRT_HALF)
    config.training.n_iters = 2000  # per stage: 4 stages
    config.flow.dsbm_iterations = 2
    config.flow.reflow_pairs = 5000
    return config
