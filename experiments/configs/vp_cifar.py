"""score_sde's configs/vp/cifar10_ddpmpp_continuous.py: DDPM++ continuous on CIFAR-10 with the VP SDE.

Point data.path at the CIFAR-10 python archive: --config.data.path=/path/to/cifar-10-python.tar.gz.
Deviation from score_sde: none in the values; data.dataset is spelled 'cifar10'.
"""

from experiments.configs.default_cifar10_configs import ddpmpp, get_default_configs


def get_config():
    return ddpmpp(get_default_configs(), sde="vpsde", deep=False)
