"""Toy 2-D data with the MLP: ``get_config("ring")`` (also "moons", "checkerboard", "swissroll");
``toy_ring.py`` etc. select one. A few thousand steps take about a minute on 2 CPU cores."""

from jaxdiff.training.config import default_config


def get_config(dataset: str = "ring"):
    config = default_config()
    config.seed = 0
    t = config.training
    t.sde = "vpsde"
    t.reduce_mean = True
    t.batch_size = 512
    t.n_iters = 3000
    t.snapshot_freq = 1000
    t.log_freq = 100
    t.time_sampling = "stratified"
    t.num_grid_samples = 5000
    config.sampling.steps = 200
    config.eval.batch_size = 5000
    config.eval.num_samples = 5000
    config.eval.enable_bpd = True
    config.eval.bpd_num_examples = 2000
    d = config.data
    d.dataset = dataset
    d.num_examples = 20000
    d.random_flip = False
    d.centered = True
    m = config.model
    m.name = "mlp"
    m.hidden = (256, 256, 256)
    m.embedding_dim = 128
    m.embedding_type = "positional"
    m.dropout = 0.0
    m.ema_rate = 0.999
    m.ema_warmup = True
    o = config.optim
    o.lr = 1e-3
    o.warmup = 100
    return config
