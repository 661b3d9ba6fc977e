"""score_sde's configs/vp/ddpm/cifar10_continuous.py: the DDPM U-Net (35,218,947 parameters) trained
with the continuous VP objective on CIFAR-10. Values equal score_sde's."""

from experiments.configs.default_cifar10_configs import get_default_configs


def get_config():
    config = get_default_configs()
    config.training.sde = "vpsde"
    config.training.continuous = True
    config.training.reduce_mean = True
    config.sampling.method = "pc"
    config.sampling.predictor = "euler_maruyama"
    config.sampling.corrector = "none"
    config.data.centered = True
    m = config.model
    m.name = "ddpm"
    m.scale_by_sigma = False
    m.ema_rate = 0.9999
    m.nf = 128
    m.ch_mult = (1, 2, 2, 2)
    m.num_res_blocks = 2
    m.attn_resolutions = (16,)
    m.resamp_with_conv = True
    m.conditional = True
    return config
