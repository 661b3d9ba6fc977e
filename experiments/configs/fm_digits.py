"""OT-CFM on digits: the main job's data, U-Net and training fields (``vp_digits.py``), with conditional flow
matching from N(0, I) along the linear path and minibatch exact OT on the global batch (Tong et al.'s OT-CFM).
Sampled with Heun's method (50 steps, 100 NFE); held-out bits/dim through the same probability-flow
likelihood as the diffusion job (the flow's ODE is exact: no prior mismatch at t = 0)."""

from experiments.configs import vp_digits


def get_config():
    config = vp_digits.digits_config()
    config.training.objective = "flow_matching"
    config.flow.path = "linear"
    config.flow.sigma = 0.0
    config.flow.coupling = "exact"
    config.sampling.sampler = "ode_heun"
    config.sampling.steps = 50
    return config
