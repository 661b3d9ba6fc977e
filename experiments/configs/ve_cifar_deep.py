"""score_sde's configs/ve/cifar10_ncsnpp_deep_continuous.py: NCSN++ (deep) continuous on CIFAR-10 with the VE SDE.

Point data.path at the CIFAR-10 python archive: --config.data.path=/path/to/cifar-10-python.tar.gz.
Deviation from score_sde: none in the values; data.dataset is spelled 'cifar10'.
"""

from experiments.configs.default_cifar10_configs import get_default_configs, ncsnpp_ve


def get_config():
    return ncsnpp_ve(get_default_configs(), deep=True)
