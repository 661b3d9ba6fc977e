"""A stochastic interpolant on digits: x_t = (1 − t) z + t x + √(2t(1−t)) ε with velocity and noise heads from
one U-Net (vp_digits.py's, with a two-head last layer); the main job's data and training fields. Sampled
with the probability-flow ODE (Heun, 50 steps); the SDE family works from the same model
(``sampling.sampler=euler_maruyama``, option ``diffusion``)."""

import math

from experiments.configs import fm_digits


def get_config():
    config = fm_digits.get_config()
    config.training.objective = "interpolant"
    config.flow.path = "brownian_bridge"
    config.flow.sigma = math.sqrt(2.0)
    config.flow.coupling = "independent"
    config.flow.t_eps = 1e-3
    return config
