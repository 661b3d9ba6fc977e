"""Unpaired translation digits → inverted digits by DSBM (ε = 0.5) with an MLP on the 64 pixels."""

from experiments.configs._flow import base


def get_config():
    c = base()
    c.flow.method = "dsbm"
    c.flow.epsilon = 0.5
    c.flow.dsbm_iterations = 2
    c.data.source, c.data.target = "digits", "digits_inverted"
    c.model.hidden = (512, 512, 512)
    c.training.n_iters = 8000
    c.training.batch_size = 128
    c.sampling.sampler = "euler_maruyama"
    c.eval.num_samples = 359
    return c
