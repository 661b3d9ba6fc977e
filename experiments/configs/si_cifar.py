"""A stochastic interpolant on CIFAR-10 (Albergo & Vanden-Eijnden): x_t = (1 − t) z + t x + √(2t(1−t)) ε,
velocity and noise heads from one DDPM++ U-Net (score_sde's, with a 6-channel last layer: 61,807,878
parameters, vp_cifar.py's + 3,459), so the model has the ODE and the SDE family
dX = (v + ε_t s) dt + √(2ε_t) dW with s = −η/γ(t)."""

import math

from experiments.configs.fm_cifar import flow_cifar


def get_config():
    config = flow_cifar("interpolant", coupling="independent", path="brownian_bridge", sigma=math.sqrt(2.0))
    config.flow.t_eps = 1e-3
    return config
