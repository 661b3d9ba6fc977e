"""Rectified flow (1-RF, Liu et al.) on CIFAR-10 with score_sde's DDPM++ U-Net: flow matching on the linear
path x_t = (1 − t) z + t x with independent pairs (noise, image); vp_cifar.py's network and training fields."""

from experiments.configs.fm_cifar import flow_cifar


def get_config():
    return flow_cifar("flow_matching", coupling="independent")
