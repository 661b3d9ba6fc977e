"""score_sde's ``configs/default_cifar10_configs.py``: the shared CIFAR-10 defaults.

Every value equals score_sde's (checked against yang-song/score_sde, configs/default_cifar10_configs.py);
jaxdiff-only fields keep the defaults of :func:`jaxdiff.training.config.default_config`.
"""

from jaxdiff.training.config import default_config


def get_default_configs():
    config = default_config()
    config.training.batch_size = 128
    config.training.n_iters = 1300001
    config.training.snapshot_freq = 50000
    config.training.log_freq = 50
    config.training.snapshot_sampling = True
    config.training.likelihood_weighting = False
    config.training.continuous = True
    config.training.reduce_mean = False
    config.sampling.n_steps_each = 1
    config.sampling.noise_removal = True
    config.sampling.probability_flow = False
    config.sampling.snr = 0.16
    config.eval.batch_size = 1024
    config.eval.num_samples = 50000
    config.eval.enable_bpd = False
    config.eval.bpd_dataset = "test"
    config.data.dataset = "cifar10"  # score_sde spells it 'CIFAR10'
    config.data.image_size = 32
    config.data.random_flip = True
    config.data.centered = False
    config.data.uniform_dequantization = False
    config.data.num_channels = 3
    config.model.sigma_min = 0.01
    config.model.sigma_max = 50.0
    config.model.num_scales = 1000
    config.model.beta_min = 0.1
    config.model.beta_max = 20.0
    config.model.dropout = 0.1
    config.model.embedding_type = "fourier"
    config.optim.weight_decay = 0.0
    config.optim.optimizer = "Adam"
    config.optim.lr = 2e-4
    config.optim.beta1 = 0.9
    config.optim.eps = 1e-8
    config.optim.warmup = 5000
    config.optim.grad_clip = 1.0
    config.seed = 42
    return config


def _unet_fields(m, deep: bool) -> None:
    """The U-Net shape both score_sde families share (CIFAR-10)."""
    m.normalization = "GroupNorm"
    m.nonlinearity = "swish"
    m.nf = 128
    m.ch_mult = (1, 2, 2, 2)
    m.num_res_blocks = 8 if deep else 4
    m.attn_resolutions = (16,)
    m.resamp_with_conv = True
    m.conditional = True


def _block_fields(m) -> None:
    """Block settings both score_sde NCSN++-family configs share."""
    m.fir_kernel = [1, 3, 3, 1]
    m.skip_rescale = True
    m.resblock_type = "biggan"
    m.progressive = "none"
    m.progressive_combine = "sum"
    m.attention_type = "ddpm"
    m.init_scale = 0.0
    m.fourier_scale = 16
    m.conv_size = 3


def ddpmpp(config, *, sde: str, deep: bool):
    """score_sde's ``configs/{vp,subvp}/cifar10_ddpmpp[_deep]_continuous.py`` on top of the defaults."""
    config.training.sde = sde
    config.training.continuous = True
    config.training.reduce_mean = True
    if deep:
        config.training.n_iters = 950001
    config.sampling.method = "pc"
    config.sampling.predictor = "euler_maruyama"
    config.sampling.corrector = "none"
    config.sampling.eps = 1e-3  # score_sde's run_lib: sampling_eps = 1e-3 for VP and sub-VP
    config.data.centered = True
    m = config.model
    m.name = "ncsnpp"
    m.scale_by_sigma = False
    m.ema_rate = 0.9999
    _unet_fields(m, deep)
    m.fir = False
    m.progressive_input = "none"
    m.embedding_type = "positional"
    _block_fields(m)
    return config


def ncsnpp_ve(config, *, deep: bool):
    """score_sde's ``configs/ve/cifar10_ncsnpp[_deep]_continuous.py`` on top of the defaults."""
    config.training.sde = "vesde"
    config.training.continuous = True
    if deep:
        config.training.n_iters = 950001
    config.sampling.method = "pc"
    config.sampling.predictor = "reverse_diffusion"
    config.sampling.corrector = "langevin"
    config.sampling.eps = 1e-5  # score_sde's run_lib: sampling_eps = 1e-5 for VE
    m = config.model
    m.name = "ncsnpp"
    m.scale_by_sigma = True
    m.ema_rate = 0.999
    _unet_fields(m, deep)
    m.fir = True
    m.progressive_input = "residual"
    _block_fields(m)
    return config
