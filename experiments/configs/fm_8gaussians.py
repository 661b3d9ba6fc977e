"""OT-CFM (Tong et al.): minibatch exact-OT coupling on the global batch, linear path, N(0, I) → torchcfm's
8 Gaussians, with the toy MLP; eval.json: exact W2 to held-out points, bits/dim through the flow's ODE."""

from experiments.configs._two_d import base


def get_config():
    config = base("8gaussians")
    config.flow.coupling = "exact"
    return config
