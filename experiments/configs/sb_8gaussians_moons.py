"""Schrödinger bridge by DSBM (Shi et al.'s iterative Markovian fitting), σ = 1 (ε = 1): 8 Gaussians ↔ moons.
4 iterations, each a forward and a backward stage of training.n_iters steps on pairs the other drift simulated."""

from experiments.configs._two_d import base


def get_config():
    config = base("moons_torchcfm", objective="dsbm", source="8gaussians")
    config.training.n_iters = 2500  # per stage: 8 stages
    config.training.snapshot_freq = 2500
    f = config.flow
    f.sigma = 1.0
    f.dsbm_iterations = 4
    f.reflow_pairs = 20000
    f.reflow_steps = 100
    config.sampling.sampler = "euler_maruyama"
    config.sampling.steps = 100
    config.eval.enable_bpd = False
    return config
