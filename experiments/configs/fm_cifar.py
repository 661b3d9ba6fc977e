"""OT-CFM on CIFAR-10 with score_sde's DDPM++ U-Net (``vp_cifar.py``'s network, optimizer and training fields,
61,804,419 parameters): conditional flow matching from N(0, I) along the linear path, minibatch exact OT
on the global batch of 128. The network sees 999·t (flow time) in DDPM++'s positional embedding and
predicts the velocity. Sampled with adaptive Dopri5 (as Tong et al. and Lipman et al. do).

Point data.path at the CIFAR-10 python archive: --config.data.path=/path/to/cifar-10-python.tar.gz.
"""

from experiments.configs import vp_cifar


def flow_cifar(objective: str = "flow_matching", coupling: str = "exact", path: str = "linear", sigma: float = 0.0):
    """vp_cifar.py's network and training fields with a flow objective (shared by fm/rf/si_cifar)."""
    config = vp_cifar.get_config()
    config.training.objective = objective
    config.flow.path = path
    config.flow.sigma = sigma
    config.flow.coupling = coupling
    config.sampling.sampler = "ode_adaptive"
    config.sampling.steps = 16  # first step of the adaptive solver: 1/16 of the path
    return config


def get_config():
    return flow_cifar("flow_matching", coupling="exact")
