"""Shared start of the digits translation configs: the main job's digits data (``vp_digits.py``: split, levels,
evaluation) with score_sde's MLP on the 64 pixels, from one digit domain to another (``data.source`` →
``data.dataset``); eval.json: FD_digits of the upright translated held-out digits, the fraction whose class
survives (by the project's digits classifier), and with paired data the error to the paired target."""

import math

from experiments.configs import vp_digits


def base(source: str, target: str, *, objective: str, sigma: float):
    config = vp_digits.digits_config()
    t = config.training
    t.objective = objective
    t.batch_size = 128
    t.snapshot_freq = 1000
    d = config.data
    d.source, d.dataset = source, target
    d.uniform_dequantization = False  # levels k/16 centred: x = k/8 − 1 (a translation has no likelihood)
    f = config.flow
    f.sigma = float(sigma)
    f.reflow_steps = 100
    m = config.model
    m.name = "mlp"
    m.hidden = (512, 512, 512)
    m.embedding_dim = 128
    m.dropout = 0.0
    m.ema_rate = 0.999
    m.ema_warmup = True
    config.optim.lr = 1e-3
    config.optim.warmup = 100
    config.sampling.sampler = "euler_maruyama"
    config.sampling.steps = 100
    config.eval.enable_bpd = False
    config.eval.num_samples = 359  # every held-out source digit once
    return config


SQRT_HALF = math.sqrt(0.5)
