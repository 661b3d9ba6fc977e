"""Shared start of the 2-D flow and bridge configs: the toy MLP job (``toy.py``) with a flow objective,
torchcfm's 2-D conventions (batch 256, lr 1e-3, no warm-up) and the exact-W2 evaluation of ``eval.json``."""

from experiments.configs import toy


def base(target: str, *, objective: str = "flow_matching", source: str = ""):
    """A flow job from ``source`` ('' = N(0, I)) to the 2-D dataset ``target``."""
    config = toy.get_config(target)
    t = config.training
    t.objective = objective
    t.batch_size = 256
    t.n_iters = 20000
    t.snapshot_freq = 5000
    t.num_grid_samples = 2000
    config.data.source = source
    config.flow.path = "linear"
    config.flow.sigma = 0.0
    config.sampling.sampler = "ode_adaptive"
    config.eval.batch_size = 2000
    config.eval.num_samples = 2000
    config.optim.warmup = 0
    return config
