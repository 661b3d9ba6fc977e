"""Rectified flow (1-RF) on digits: the main job's data, U-Net and training fields (``vp_digits.py``) with
flow matching on the linear path from N(0, I) and independent pairs. Heun sampler, 50 steps (100 NFE)."""

from experiments.configs import fm_digits


def get_config():
    config = fm_digits.get_config()
    config.flow.coupling = "independent"
    return config
