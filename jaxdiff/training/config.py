r"""Run configs: score_sde's field names, one schema, validation before anything compiles, and the
builders that turn a config into a process, a network, a parameterization, a loss and an optimizer.

:func:`default_config` is the schema: every key a config may have, with score_sde's CIFAR-10
defaults (``configs/default_cifar10_configs.py``) plus a few jaxdiff fields (marked *jaxdiff* below).
A config with a key outside it, a value of the wrong type or out of range, or a name jaxdiff does
not know is refused by :func:`validate_config` with the field, the value and what is allowed.
"""

from __future__ import annotations

import math
from typing import Any

import ml_collections
import numpy as np

from jaxdiff.training.data import DATASETS, DIGIT_DOMAINS, LABELLED_DATASETS, POINT_DATASETS

SDES = ("vpsde", "subvpsde", "vesde", "cosine_vpsde")
OBJECTIVES = ("dsm", "flow_matching", "interpolant", "bridge_matching", "dsbm")
BRIDGE_OBJECTIVES = ("bridge_matching", "dsbm")
FLOW_PATHS = ("linear", "brownian_bridge", "trig", "ot", "vp")
FLOW_COUPLINGS = ("independent", "exact", "sinkhorn", "paired")
MODELS = ("ncsnpp", "ddpm", "mlp")
TIME_SAMPLING = ("uniform", "stratified", "low_discrepancy", "antithetic", "importance")
OPTIMIZERS = ("adam", "adamw")
PRECISIONS = ("float32", "bfloat16")
# Fields score_sde has and jaxdiff accepts for compatibility but does not use (documented no-ops).
IGNORED = (
    "training.eval_freq",
    "training.snapshot_freq_for_preemption",
    "eval.begin_ckpt",
    "eval.end_ckpt",
    "eval.enable_loss",
)


def default_config() -> ml_collections.ConfigDict:
    """The schema with score_sde's CIFAR-10 defaults. Fields marked *jaxdiff* are not score_sde's."""
    config = ml_collections.ConfigDict()
    config.seed = 42

    config.training = training = ml_collections.ConfigDict()
    training.sde = "vpsde"
    training.continuous = True
    training.reduce_mean = False
    training.likelihood_weighting = False
    training.batch_size = 128
    training.n_iters = 1300001
    training.snapshot_freq = 50000
    training.log_freq = 50
    training.eval_freq = 100  # score_sde: eval-loss frequency; ignored (jaxdiff logs the train loss)
    training.snapshot_freq_for_preemption = 10000  # ignored: every snapshot is a resumable checkpoint
    training.snapshot_sampling = True
    # jaxdiff: optimizer steps per dispatch (a lax.scan; every step's loss is still logged and checked); a call never
    # crosses a log, snapshot, sample or stage boundary. Default 1, not score_sde's 5: on XLA:CPU a scan of U-Net
    # steps ran ~7× slower per step than single steps (measured on the digits U-Net); for small MLPs it helps
    training.n_jitted_steps = 1
    training.time_sampling = "uniform"  # jaxdiff: t ~ U[t_eps, T] or variance-reduced schemes
    training.t_eps = 1e-5  # score_sde's hard-coded eps of the continuous losses
    training.max_to_keep = 3  # jaxdiff: checkpoints kept
    training.sample_freq = 0  # jaxdiff: PNG grid every K steps (0: at each snapshot if snapshot_sampling)
    training.num_grid_samples = 64  # jaxdiff: images in a PNG grid
    # jaxdiff: "dsm" (score_sde), "flow_matching", "interpolant" (velocity + noise), "bridge_matching" (forward and
    # backward drifts of the Brownian bridge σW over the coupling; I²SB with paired data) or "dsbm" (Shi et al.'s
    # iterative Markovian fitting: stages alternating the forward and backward drift)
    training.objective = "dsm"
    # jaxdiff: class-conditional runs (model.num_classes > 0): each example's label is replaced by the null class
    # with this probability, independently (classifier-free guidance's unconditional branch)
    training.label_dropout = 0.1
    # jaxdiff: the networks' compute dtype: "float32", or "bfloat16" (mixed precision: parameters, optimizer state,
    # EMA, losses and every process coefficient, σ and time stay float32; the network's layers compute in bfloat16)
    training.precision = "float32"

    # jaxdiff: the interpolant path of the flow objectives, from N(0, I) (t = 0) to the data (t = 1)
    config.flow = flow = ml_collections.ConfigDict()
    flow.path = "linear"  # linear (I-CFM / rectified flow), brownian_bridge, trig, ot (Lipman), vp
    flow.sigma = 0.0  # the path's noise: linear σ, brownian_bridge σ√(t(1−t)) (√2: Albergo's γ = √(2t(1−t)))
    flow.sigma_min = 1e-4  # the "ot" path's σ_min
    # independent, exact (OT-CFM), sinkhorn (with flow.epsilon): on the global batch; paired: rows as the data gives
    # them (data.paired)
    flow.coupling = "independent"
    flow.epsilon = 0.0  # Sinkhorn's ε (POT convention on the squared cost)
    flow.t_eps = 0.0  # t ~ U[t_eps, 1 − t_eps] (the interpolant objective needs > 0: its score divides by c(t))
    # k-rectified flow as stages of the same job (training.n_iters steps each): stage 1 flow matching on (noise,
    # data); each reflow stage trains, warm-started, on reflow_pairs pairs (z, Z₁(z)) of the previous stage's EMA
    # model's ODE (flow.reflow_sampler, reflow_steps); distill adds a stage fitting one Euler step to those pairs.
    flow.reflow_rounds = 1
    flow.reflow_pairs = 10000
    flow.reflow_sampler = "ode_adaptive"
    flow.reflow_steps = 16
    flow.distill = False
    flow.dsbm_iterations = 4  # dsbm: iterations, each a forward and a backward stage of training.n_iters steps;
    # stage pairs: flow.reflow_pairs simulated with euler_maruyama, flow.reflow_steps steps (flow.sigma: bridge noise)

    config.sampling = sampling = ml_collections.ConfigDict()
    sampling.method = "pc"
    sampling.predictor = "euler_maruyama"
    sampling.corrector = "none"
    sampling.n_steps_each = 1
    sampling.noise_removal = True
    sampling.probability_flow = False
    sampling.snr = 0.16
    sampling.eps = 1e-3  # score_sde's sampling_eps: 1e-3 (VP, sub-VP), 1e-5 (VE)
    sampling.sampler = ""  # jaxdiff: any name in jaxdiff.samplers(); overrides method/predictor/corrector
    sampling.steps = 0  # jaxdiff: solver steps (0: model.num_scales, as score_sde)
    sampling.guidance = 0.0  # jaxdiff: classifier-free guidance weight w of sample grids, (1 + w)·cond − w·uncond
    # jaxdiff: the sampler's time grid: '' (its default), a fixed rule ('time_uniform', 'logsnr_uniform', 'karras',
    # 'time_quadratic'), or 'calibrated' (fitted to the trained model for this sampler and step count by
    # jaxdiff.calibrated_grid; a loaded run saves it in WORKDIR/calibrated_grids.json and reuses it)
    sampling.grid = ""

    config.eval = evaluate = ml_collections.ConfigDict()
    evaluate.begin_ckpt = 9
    evaluate.end_ckpt = 26
    evaluate.batch_size = 1024
    evaluate.enable_sampling = False
    evaluate.num_samples = 50000
    evaluate.enable_loss = True
    evaluate.enable_bpd = False
    evaluate.bpd_dataset = "test"
    evaluate.bpd_num_examples = 0  # jaxdiff: 0 = the whole held-out set
    evaluate.bpd_rtol = 1e-5  # jaxdiff: PF-ODE tolerances of the likelihood
    evaluate.bpd_atol = 1e-5
    # jaxdiff: step cap of the PF-ODE solve per batch; a model whose ODE needs more (early in training) gets
    # bits_per_dim null and a note instead of minutes of solving
    evaluate.bpd_max_steps = 4096
    # jaxdiff: FID / Inception Score / KID of the evaluation samples (image datasets): pytorch-fid's Inception weights
    # (pt_inception-2015-12-05-6726825d.pth, or its .npz) and the reference statistics of python -m
    # experiments.fid_stats (or any .npz with mu/sigma or pool_3 activations; KID needs the activations)
    evaluate.inception_path = ""
    evaluate.fid_stats = ""
    evaluate.inception_mode = "pytorch_fid"  # or "tf_legacy" (TF1's resize and (x − 128)/128)
    evaluate.inception_batch_size = 100
    evaluate.kid_subset_size = 1000  # torch-fidelity's; capped at the number of samples
    evaluate.at_end = True  # jaxdiff: write workdir/eval.json when training ends
    # jaxdiff: conditional runs: guidance weights at which eval.json reports class accuracy and sample quality
    evaluate.guidance = (0.0, 1.0)

    config.data = data = ml_collections.ConfigDict()
    data.dataset = "cifar10"
    data.path = ""  # jaxdiff: CIFAR-10 python archive or folder
    data.image_size = 32
    data.random_flip = True
    data.centered = False
    data.uniform_dequantization = False
    data.num_channels = 3
    data.test_fraction = 0.2  # jaxdiff: held-out stratified split of datasets without one (digits)
    data.split_seed = 0  # jaxdiff
    data.num_examples = 0  # jaxdiff: size of generated toy sets
    data.source = ""  # jaxdiff: flows' source law: "" = N(0, I), or a dataset name (translation data.source → dataset)
    data.paired = False  # jaxdiff: source and target rows correspond (digit domains: the same digit in both)

    config.model = model = ml_collections.ConfigDict()
    model.name = "ncsnpp"
    model.sigma_min = 0.01
    model.sigma_max = 50.0
    model.num_scales = 1000
    model.beta_min = 0.1
    model.beta_max = 20.0
    model.dropout = 0.1
    model.embedding_type = "fourier"
    model.ema_rate = 0.9999
    model.ema_warmup = False  # jaxdiff: EMA decay min(ema_rate, (1+k)/(10+k)) at step k (short runs)
    model.scale_by_sigma = False
    model.normalization = "GroupNorm"
    model.nonlinearity = "swish"
    model.nf = 128
    model.ch_mult = (1, 2, 2, 2)
    model.num_res_blocks = 4
    model.attn_resolutions = (16,)
    model.resamp_with_conv = True
    model.conditional = True
    model.fir = False
    model.fir_kernel = [1, 3, 3, 1]
    model.skip_rescale = True
    model.resblock_type = "biggan"
    model.progressive = "none"
    model.progressive_input = "none"
    model.progressive_combine = "sum"
    model.attention_type = "ddpm"
    model.init_scale = 0.0
    model.fourier_scale = 16.0
    model.conv_size = 3
    model.hidden = (256, 256, 256)  # jaxdiff: MLP widths (model.name = "mlp")
    model.embedding_dim = 128  # jaxdiff: MLP time-embedding width
    # jaxdiff: K > 0: a class-conditional network (label embedding added to the time embedding, row K = null class)
    model.num_classes = 0
    model.norm_groups = 0  # jaxdiff: DDPM's GroupNorm groups; 0: min(C // 4, 32) (= score_sde's 32 at nf = 128)
    model.remat = False  # jaxdiff: rematerialize the U-Nets' residual blocks (less activation memory, ~⅓ more compute)

    config.optim = optim = ml_collections.ConfigDict()
    optim.weight_decay = 0.0
    optim.optimizer = "Adam"
    optim.lr = 2e-4
    optim.beta1 = 0.9
    optim.beta2 = 0.999  # jaxdiff (score_sde uses flax's default 0.999)
    optim.eps = 1e-8
    optim.warmup = 5000
    optim.grad_clip = 1.0
    return config


# --------------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------------


class ConfigError(ValueError):
    """A config refused before anything compiles; the message names every bad field."""


class IncompatibleWorkdirError(ConfigError):
    """The workdir holds a run whose config differs in a field that fixes the saved state."""


class NonFiniteLossError(FloatingPointError):
    """Training stopped because the loss became NaN or infinite."""


def _flatten(config: Any, prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, (ml_collections.ConfigDict, dict)):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def flatten_config(config: Any) -> dict[str, Any]:
    """``{"training.batch_size": 128, ...}`` with tuples as lists (JSON-ready)."""
    flat = _flatten(config)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in flat.items()}


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def validate_config(config: Any, *, device_count: int | None = None) -> ml_collections.ConfigDict:
    """Check every field against :func:`default_config`; raise :class:`ConfigError` listing each bad
    field with its value and what is allowed. ``device_count``: the global batch must divide by it."""
    schema = _flatten(default_config())
    flat = _flatten(config)
    problems: list[str] = []
    for key in sorted(set(flat) - set(schema)):
        section = key.rsplit(".", 1)[0] if "." in key else ""
        known = sorted(k.rsplit(".", 1)[-1] for k in schema if (k.rsplit(".", 1)[0] if "." in k else "") == section)
        problems.append(f"unknown key {key!r} (known keys in {section or 'the top level'!r}: {', '.join(known)})")
    for key in sorted(set(schema) - set(flat)):
        problems.append(f"missing key {key!r} (default {schema[key]!r})")

    def get(key):
        return flat.get(key, schema[key])

    def need(cond: bool, key: str, allowed: str) -> None:
        if not cond:
            problems.append(f"{key}={get(key)!r} is not allowed: {allowed}")

    def choice(key: str, options, lower: bool = False) -> None:
        value = get(key)
        v = value.lower() if (lower and isinstance(value, str)) else value
        need(v in options, key, f"must be one of {list(options)}")

    def integer(key: str, lo: int) -> None:
        need(_is_int(get(key)) and get(key) >= lo, key, f"must be an integer ≥ {lo}")

    def positive(key: str) -> None:
        v = get(key)
        need(_is_number(v) and math.isfinite(v) and v > 0, key, "must be a finite number > 0")

    def nonnegative(key: str) -> None:
        v = get(key)
        need(_is_number(v) and math.isfinite(v) and v >= 0, key, "must be a finite number ≥ 0")

    def boolean(key: str) -> None:
        need(isinstance(get(key), (bool, np.bool_)), key, "must be True or False")

    for key, default in schema.items():
        if key in flat and isinstance(default, bool):
            boolean(key)
    integer("seed", 0)
    choice("training.sde", SDES)
    need(get("training.continuous") is True, "training.continuous",
         "jaxdiff trains the continuous-time objectives only (discrete DDPM/SMLD chains: jaxdiff.ddpm_loss, ncsn_loss)")
    integer("training.batch_size", 1)
    integer("training.n_jitted_steps", 1)
    integer("training.n_iters", 0)
    integer("training.snapshot_freq", 1)
    integer("training.log_freq", 1)
    integer("training.max_to_keep", 1)
    integer("training.sample_freq", 0)
    integer("training.num_grid_samples", 1)
    choice("training.time_sampling", TIME_SAMPLING)
    positive("training.t_eps")
    need(_is_number(get("training.t_eps")) and get("training.t_eps") < 1, "training.t_eps", "must lie in (0, 1)")

    objective = get("training.objective")
    choice("training.objective", OBJECTIVES)
    if objective in OBJECTIVES[1:]:  # every flow objective (bridges included)
        choice("flow.path", FLOW_PATHS)
        nonnegative("flow.sigma")
        v = get("flow.sigma_min")
        need(_is_number(v) and 0 <= v < 1, "flow.sigma_min", "must lie in [0, 1)")
        choice("flow.coupling", FLOW_COUPLINGS)
        nonnegative("flow.epsilon")
        if get("flow.coupling") == "sinkhorn":
            positive("flow.epsilon")
        need((get("flow.coupling") == "paired") == bool(get("data.paired")), "flow.coupling",
             "must be 'paired' exactly when data.paired=True (rows that correspond are not re-coupled)")
        v = get("flow.t_eps")
        need(_is_number(v) and 0 <= v < 0.5, "flow.t_eps", "must lie in [0, 0.5)")
        if objective == "interpolant":
            need(get("flow.path") in ("linear", "brownian_bridge") and _is_number(get("flow.sigma"))
                 and get("flow.sigma") > 0, "flow.sigma",
                 "the interpolant objective needs a path with noise: flow.path 'linear' or 'brownian_bridge' with "
                 "flow.sigma > 0")
            need(_is_number(v) and v > 0, "flow.t_eps", "must be > 0 for the interpolant objective (score = −η/c(t))")
        integer("flow.reflow_rounds", 1)
        integer("flow.reflow_pairs", 1)
        integer("flow.reflow_steps", 1)
        choice("flow.reflow_sampler", ("ode_euler", "ode_heun", "ode_midpoint", "ode_adaptive"))
        if objective in BRIDGE_OBJECTIVES:
            positive("flow.sigma")  # the bridge's noise σ (ε = σ²)
            need(not get("optim.weight_decay"), "optim.weight_decay",
                 "must be 0 for bridges: the drift a stage does not train must stay fixed")
            integer("flow.dsbm_iterations", 1)
        if objective == "dsbm":
            need(get("flow.coupling") != "paired", "flow.coupling",
                 "dsbm learns the coupling; for paired data use training.objective='bridge_matching'")
        if get("flow.reflow_rounds") != 1 or get("flow.distill"):
            need(objective == "flow_matching" and get("flow.path") == "linear" and get("flow.sigma") == 0,
                 "flow.reflow_rounds", "reflow and distillation are rectified flow's: training.objective="
                 "'flow_matching', flow.path='linear', flow.sigma=0")
        need(get("model.embedding_type") == "positional", "model.embedding_type",
             "flow objectives condition on the flow time (0 at the source end): use 'positional' ('fourier' embeds log)")
        need(not get("model.scale_by_sigma"), "model.scale_by_sigma", "is a VE score scaling; flows predict a velocity")

    choice("sampling.method", ("pc", "ode"))
    choice("sampling.predictor", ("euler_maruyama", "reverse_diffusion", "none"))
    choice("sampling.corrector", ("none", "langevin"))
    integer("sampling.n_steps_each", 1)
    positive("sampling.snr")
    positive("sampling.eps")
    integer("sampling.steps", 0)
    sampler = get("sampling.sampler")
    if sampler:
        from jaxdiff.sampling import samplers

        need(sampler in samplers(), "sampling.sampler", f"must be '' or one of {sorted(samplers())}")
    if not sampler and get("sampling.method") == "pc":
        pred, corr = get("sampling.predictor"), get("sampling.corrector")
        if corr == "langevin" and pred == "euler_maruyama":
            problems.append("sampling.predictor='euler_maruyama' with sampling.corrector='langevin' is not "
                            "available: use predictor='reverse_diffusion' (jaxdiff's 'pc' sampler)")
        if corr == "none" and pred == "none":
            problems.append("sampling.predictor='none' with sampling.corrector='none' samples nothing")

    from jaxdiff.sampling._calibrate import CALIBRATABLE
    from jaxdiff.sampling._grid import GRIDS

    grid = get("sampling.grid")
    need(grid in ("",) + GRIDS + ("calibrated",), "sampling.grid",
         f"must be '' (the sampler's default), one of {list(GRIDS)}, or 'calibrated'")
    if grid == "calibrated":
        need(sampler in CALIBRATABLE, "sampling.grid",
             f"'calibrated' fits the grid of a deterministic fixed-grid sampler: set sampling.sampler to one of "
             f"{list(CALIBRATABLE)} (got sampling.sampler={sampler!r})")
        need(not get("data.source"), "sampling.grid",
             "'calibrated' needs a Gaussian source (sampling from noise); a translation run (data.source) has none")

    integer("eval.batch_size", 1)
    integer("eval.num_samples", 1)
    integer("eval.bpd_num_examples", 0)
    choice("eval.bpd_dataset", ("test", "train"))
    for key in ("eval.inception_path", "eval.fid_stats"):
        value = get(key)
        need(isinstance(value, str), key, "must be a path string ('' to skip)")
    need(not get("eval.fid_stats") or bool(get("eval.inception_path")), "eval.fid_stats",
         "needs eval.inception_path (the Inception weights that compute the samples' features)")
    choice("eval.inception_mode", ("pytorch_fid", "tf_legacy"))
    integer("eval.inception_batch_size", 1)
    integer("eval.kid_subset_size", 2)
    positive("eval.bpd_rtol")
    positive("eval.bpd_atol")
    integer("eval.bpd_max_steps", 1)

    choice("data.dataset", DATASETS, lower=True)
    integer("data.image_size", 1)
    integer("data.num_channels", 1)
    integer("data.split_seed", 0)
    integer("data.num_examples", 0)
    v = get("data.test_fraction")
    need(_is_number(v) and 0 < v < 1, "data.test_fraction", "must lie in (0, 1)")
    dataset = str(get("data.dataset")).lower()
    need(not get("eval.inception_path") or dataset not in POINT_DATASETS, "eval.inception_path",
         f"applies to image datasets (cifar10, {', '.join(DIGIT_DOMAINS)}), not data.dataset={dataset!r}")
    source = get("data.source")
    need(source == "" or source in DATASETS, "data.source", f"must be '' (N(0, I)) or one of {list(DATASETS)}")
    if source:
        need(get("training.objective") != "dsm", "data.source",
             "a data source needs a flow objective (training.objective other than 'dsm'); diffusions start from N(0, I)")
        same_space = ((source in DIGIT_DOMAINS and dataset in DIGIT_DOMAINS)
                      or (source in POINT_DATASETS and dataset in POINT_DATASETS) or (source == dataset == "cifar10"))
        need(same_space, "data.source", f"must live in the space of data.dataset={dataset!r} (2-D with 2-D, digit "
             f"domains {list(DIGIT_DOMAINS)} with each other)")
    if get("data.paired"):
        need(source in DIGIT_DOMAINS and dataset in DIGIT_DOMAINS, "data.paired",
             f"paired rows exist for the digit domains {list(DIGIT_DOMAINS)} (data.source and data.dataset)")
        need(not get("data.random_flip"), "data.random_flip", "must be False with data.paired (flips break the pairs)")
    if dataset in DIGIT_DOMAINS:
        need(get("data.image_size") == 8, "data.image_size", "digits are 8×8")
        need(get("data.num_channels") == 1, "data.num_channels", "digits have 1 channel")
    if dataset == "cifar10":
        need(get("data.image_size") == 32, "data.image_size", "CIFAR-10 images are 32×32")
        need(get("data.num_channels") == 3, "data.num_channels", "CIFAR-10 images have 3 channels")
    if dataset in POINT_DATASETS:
        integer("data.num_examples", 1)
        need(get("model.name") == "mlp", "model.name", "toy 2-D data needs model.name='mlp'")

    name = get("model.name")
    choice("model.name", MODELS)
    positive("model.sigma_min")
    positive("model.sigma_max")
    if _is_number(get("model.sigma_min")) and _is_number(get("model.sigma_max")):
        need(get("model.sigma_min") < get("model.sigma_max"), "model.sigma_min", "must be < model.sigma_max")
    nonnegative("model.beta_min")
    positive("model.beta_max")
    integer("model.num_scales", 1)
    v = get("model.dropout")
    need(_is_number(v) and 0 <= v < 1, "model.dropout", "must lie in [0, 1)")
    v = get("model.ema_rate")
    need(_is_number(v) and 0 <= v < 1, "model.ema_rate", "must lie in [0, 1)")
    choice("model.embedding_type", ("positional", "fourier"))
    integer("model.nf", 1)
    integer("model.num_res_blocks", 1)
    positive("model.fourier_scale")
    nonnegative("model.init_scale")
    choice("model.normalization", ("GroupNorm",))
    choice("model.nonlinearity", ("swish",))
    choice("model.resblock_type", ("biggan",) if name == "ncsnpp" else ("biggan", "ddpm"))
    choice("model.progressive", ("none",))
    choice("model.progressive_input", ("none", "residual"))
    choice("model.progressive_combine", ("sum",))
    choice("model.attention_type", ("ddpm",))
    need(list(get("model.fir_kernel")) == [1, 3, 3, 1], "model.fir_kernel", "jaxdiff implements [1, 3, 3, 1]")
    need(get("model.conv_size") == 3, "model.conv_size", "jaxdiff implements 3")
    need(get("model.conditional") is True, "model.conditional", "unconditional networks are not implemented")
    ch_mult = get("model.ch_mult")
    need(isinstance(ch_mult, (tuple, list)) and len(ch_mult) >= 1 and all(_is_int(m) and m >= 1 for m in ch_mult),
         "model.ch_mult", "must be a non-empty tuple of positive integers")
    attn = get("model.attn_resolutions")
    need(isinstance(attn, (tuple, list)) and all(_is_int(r) for r in attn), "model.attn_resolutions",
         "must be a tuple of integer resolutions")
    hidden = get("model.hidden")
    need(isinstance(hidden, (tuple, list)) and len(hidden) >= 1 and all(_is_int(h) and h >= 1 for h in hidden),
         "model.hidden", "must be a non-empty tuple of positive integers")
    integer("model.embedding_dim", 2)
    integer("model.num_classes", 0)
    integer("model.norm_groups", 0)
    groups = get("model.norm_groups")
    if isinstance(groups, int) and groups:
        need(get("model.name") == "ddpm", "model.norm_groups", "applies to model.name='ddpm' only (leave it 0)")
        widths = [get("model.nf") * m for m in get("model.ch_mult")] if isinstance(get("model.nf"), int) else []
        need(all(w % groups == 0 for w in widths), "model.norm_groups",
             f"must divide every channel width (model.nf × model.ch_mult = {widths})")
    choice("training.precision", PRECISIONS)
    v = get("training.label_dropout")
    need(_is_number(v) and 0 <= v < 1, "training.label_dropout", "must lie in [0, 1)")
    v = get("sampling.guidance")
    need(_is_number(v) and math.isfinite(v), "sampling.guidance", "must be a finite number (the weight w)")
    weights = get("eval.guidance")
    need(isinstance(weights, (tuple, list)) and all(_is_number(w) and math.isfinite(w) for w in weights),
         "eval.guidance", "must be a tuple of finite guidance weights")
    classes = get("model.num_classes")
    if _is_int(classes) and classes > 0:
        labelled = LABELLED_DATASETS.get(dataset)
        need(labelled is not None, "model.num_classes",
             f"a conditional run needs labelled data: data.dataset one of {sorted(LABELLED_DATASETS)}, got {dataset!r}")
        need(labelled is None or classes == labelled, "model.num_classes",
             f"must equal the number of classes of data.dataset={dataset!r} ({labelled})")
        need(get("training.objective") in ("dsm", "flow_matching", "interpolant"), "model.num_classes",
             "conditional training covers dsm, flow_matching and interpolant (bridges: unconditional)")
        need(not source, "model.num_classes", "conditional translation (with data.source) is not supported")
        need(get("flow.reflow_rounds") == 1 and not get("flow.distill"), "model.num_classes",
             "reflow and distillation stages are unconditional (their pairs carry no labels)")
    if name in ("ncsnpp", "ddpm") and isinstance(ch_mult, (tuple, list)) and _is_int(get("data.image_size")):
        size, factor = get("data.image_size"), 2 ** (len(ch_mult) - 1)
        need(size % factor == 0, "data.image_size", f"must be divisible by 2^(len(model.ch_mult)−1) = {factor}")
        if isinstance(attn, (tuple, list)):
            resolutions = [size // 2**i for i in range(len(ch_mult))]
            need(all(r in resolutions for r in attn), "model.attn_resolutions",
                 f"must be among the U-Net's resolutions {resolutions}")
    if get("training.objective") != "dsm":
        pass
    elif get("training.sde") == "vesde":
        need(get("model.embedding_type") == "fourier" or name != "ncsnpp", "model.embedding_type",
             "score_sde's VE NCSN++ embeds log σ with 'fourier' (σ spans 1e-2..50)")
    else:
        need(not get("model.scale_by_sigma"), "model.scale_by_sigma",
             "is score_sde's VE output scaling; VP/sub-VP networks predict ε (score = −out/σ)")

    choice("optim.optimizer", OPTIMIZERS, lower=True)
    positive("optim.lr")
    nonnegative("optim.weight_decay")
    for key in ("optim.beta1", "optim.beta2"):
        v = get(key)
        need(_is_number(v) and 0 <= v < 1, key, "must lie in [0, 1)")
    positive("optim.eps")
    integer("optim.warmup", 0)
    nonnegative("optim.grad_clip")
    if get("optim.weight_decay") and str(get("optim.optimizer")).lower() == "adam":
        problems.append(f"optim.weight_decay={get('optim.weight_decay')!r} needs optim.optimizer='AdamW' "
                        "(score_sde's Adam has no weight decay)")

    if device_count is not None and _is_int(get("training.batch_size")) and get("training.batch_size") % device_count:
        problems.append(f"training.batch_size={get('training.batch_size')} is not divisible by the "
                        f"{device_count} devices: use a multiple of {device_count}")
    if problems:
        raise ConfigError("invalid config:\n  - " + "\n  - ".join(problems))
    return config


# --------------------------------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------------------------------


def build_sde(config: Any):
    """The forward process named by ``training.sde`` with ``model.beta_*``/``sigma_*``, ``training.t_eps``
    and ``sampling.eps``."""
    from jaxdiff.processes import VESDE, VPSDE, CosineVPSDE, SubVPSDE

    m, kw = config.model, {"t_min": config.training.t_eps, "sampling_eps": config.sampling.eps}
    sde = config.training.sde
    if sde == "vpsde":
        return VPSDE(m.beta_min, m.beta_max, **kw)
    if sde == "subvpsde":
        return SubVPSDE(m.beta_min, m.beta_max, **kw)
    if sde == "cosine_vpsde":
        return CosineVPSDE(**kw)
    return VESDE(m.sigma_min, m.sigma_max, **kw)


def is_flow(config: Any) -> bool:
    """Whether the config trains a flow objective (``training.objective`` other than ``"dsm"``)."""
    return config.training.get("objective", "dsm") != "dsm"


def is_bridge(config: Any) -> bool:
    """Whether the config trains a bridge's forward and backward drifts (``bridge_matching``, ``dsbm``)."""
    return config.training.get("objective", "dsm") in BRIDGE_OBJECTIVES


def has_data_source(config: Any) -> bool:
    """Whether the flow starts from a dataset (``data.source``) rather than ``N(0, I)``."""
    return bool(config.data.get("source", ""))


def build_interpolant(config: Any):
    """The interpolant ``flow.*`` names (source ``N(0, I)`` at ``t = 0``, data at ``t = 1``)."""
    from jaxdiff.paths import PATHS

    f = config.flow
    if is_bridge(config):  # bridges move by their drifts; the path only names the time axis (flow time)
        return PATHS["linear"](0.0)
    if f.path in ("linear", "brownian_bridge"):
        return PATHS[f.path](f.sigma)
    if f.path == "ot":
        return PATHS["ot"](f.sigma_min)
    return PATHS[f.path]()


def build_path(config: Any):
    """What the run's model moves along, as a process: the SDE of ``training.sde`` for ``dsm``, else the
    interpolant read as a :class:`jaxdiff.paths.FlowProcess` (process time ``1 − t``; the one time edge)."""
    if not is_flow(config):
        return build_sde(config)
    gaussian = not (has_data_source(config) or is_bridge(config))
    return build_interpolant(config).as_process(sampling_eps=config.sampling.eps, gaussian_source=gaussian)


def build_parameterization(config: Any):
    """score_sde's continuous conventions: VP/sub-VP networks see ``999 t`` and predict ε
    (``score = −out/σ``); VE networks see ``σ(t)`` and predict the score, divided by ``σ`` if
    ``model.scale_by_sigma``. Flow objectives: the network sees ``999 t_flow`` and predicts the flow velocity
    (and, for ``interpolant``, the noise as a second output head)."""
    from jaxdiff.parameterization import Direct

    if is_flow(config):  # (bridges: the raw output is a drift, read by BridgeModel)
        return Direct("flow_velocity", noise_input="flow_time_scaled",
                      noise_head=config.training.objective == "interpolant")
    if config.training.sde == "vesde":
        return Direct("score", scale_by_sigma=bool(config.model.scale_by_sigma), noise_input="sigma")
    return Direct("eps", noise_input="t_scaled")


def build_network(config: Any):
    """The Flax network ``model.name`` names, with the config's hyper-parameters."""
    from jaxdiff.models import DDPM, NCSNpp, ScoreMLP

    m = config.model
    heads = 2 if config.training.get("objective", "dsm") == "interpolant" else 1
    classes = int(m.get("num_classes", 0))
    import jax.numpy as jnp

    dtype = jnp.bfloat16 if config.training.get("precision", "float32") == "bfloat16" else None
    remat = bool(m.get("remat", False))
    if m.name == "ncsnpp":
        return NCSNpp(out_heads=heads, num_classes=classes, dtype=dtype, remat=remat, nf=m.nf, ch_mult=tuple(m.ch_mult), num_res_blocks=m.num_res_blocks,
                      attn_resolutions=tuple(m.attn_resolutions), dropout=m.dropout, embedding_type=m.embedding_type,
                      fourier_scale=m.fourier_scale, progressive_input=m.progressive_input, fir=m.fir,
                      skip_rescale=m.skip_rescale, init_scale=m.init_scale, centered=config.data.centered)
    if m.name == "ddpm":
        return DDPM(out_heads=heads, num_classes=classes, dtype=dtype, remat=remat, norm_groups=int(m.get("norm_groups", 0)), nf=m.nf, ch_mult=tuple(m.ch_mult), num_res_blocks=m.num_res_blocks,
                    attn_resolutions=tuple(m.attn_resolutions), dropout=m.dropout, resamp_with_conv=m.resamp_with_conv)
    return ScoreMLP(out_heads=heads, num_classes=classes, dtype=dtype, hidden=tuple(m.hidden), embedding_dim=m.embedding_dim, embedding_type=m.embedding_type,
                    fourier_scale=m.fourier_scale, init_scale=m.init_scale)


def data_shape(config: Any) -> tuple[int, ...]:
    """The shape of one example in model space."""
    if config.model.name == "mlp" and config.data.dataset in POINT_DATASETS:
        return (2,)
    return (config.data.image_size, config.data.image_size, config.data.num_channels)


def build_optimizer(config: Any):
    from jaxdiff.training.step import make_optimizer

    o = config.optim
    return make_optimizer(o.lr, warmup=o.warmup, grad_clip=o.grad_clip, beta1=o.beta1, beta2=o.beta2, eps=o.eps,
                          weight_decay=o.weight_decay, optimizer=o.optimizer.lower())


def num_classes(config: Any) -> int:
    """``model.num_classes``: 0 for an unconditional run."""
    return int(config.model.get("num_classes", 0))


def stages(config: Any) -> list[str]:
    """The stages of the run, ``training.n_iters`` steps each: ``["dsm"]``, ``["flow"]``, or rectified flow's
    ``["flow", "reflow", ..., ("distill")]``."""
    if not is_flow(config):
        return ["dsm"]
    f = config.flow
    if config.training.objective == "bridge_matching":
        return ["bridge"]
    if config.training.objective == "dsbm":
        return ["bridge_forward", "bridge_backward"] * f.dsbm_iterations
    return ["flow"] + ["reflow"] * (f.reflow_rounds - 1) + (["distill"] if f.distill else [])


def sampler_settings(config: Any) -> tuple[str, dict]:
    """``(sampler, options)`` for :func:`jaxdiff.sample` from ``sampling.*``: ``method='ode'`` →
    ``ode_adaptive``; ``pc`` with Euler–Maruyama and no corrector → ``euler_maruyama``; reverse diffusion
    (+ Langevin, ``snr``, ``n_steps_each``) → ``pc``. ``sampling.sampler`` overrides. A distilled rectified flow
    samples with its one Euler step."""
    if is_flow(config) and config.flow.get("distill", False):
        return "ode_euler", {"steps": 1}
    s = config.sampling
    if is_bridge(config) and not s.sampler:  # a bridge's own SDE dX = f dt + σ dW
        return "euler_maruyama", {"steps": s.steps or 100}
    steps = s.steps or config.model.num_scales
    options: dict = {"steps": steps}
    if s.get("grid", ""):
        options["grid"] = s.grid
    if s.sampler:
        name = s.sampler
    elif s.method == "ode":
        name, options = "ode_adaptive", {}
    elif s.corrector == "none" and s.predictor == "euler_maruyama":
        name = "euler_maruyama"
    else:
        name = "pc"
        options.update(snr=s.snr, n_corrector=s.n_steps_each if s.corrector == "langevin" else 0,
                       noise_removal=s.noise_removal)
    return name, options


# Fields that fix the shapes of the saved state or what the checkpoint means: resuming a workdir
# with any of them changed is refused.
STATE_FIELDS = ("training.sde", "training.objective", "flow.", "data.dataset", "data.source", "data.paired", "data.image_size", "data.num_channels", "data.centered",
                "data.uniform_dequantization", "model.")


def incompatible_fields(saved: dict, current: dict) -> list[str]:
    """Keys (of :func:`flatten_config` dicts) whose values differ and which :data:`STATE_FIELDS` cover,
    except ``model.ema_rate``, ``model.ema_warmup``, ``model.dropout``, ``model.remat`` (training-only: the saved
    parameters are the same; so is ``training.precision``, whose parameters are float32 either way)."""
    keys = sorted(set(saved) | set(current))
    defaults = flatten_config(default_config())  # a key a run saved before the schema had it: its default
    flow_run = current.get("training.objective", "dsm") != "dsm"
    out = []
    for key in keys:
        if not any(key == f or (f.endswith(".") and key.startswith(f)) for f in STATE_FIELDS):
            continue
        if key in ("model.ema_rate", "model.ema_warmup", "model.dropout", "model.remat"):
            continue
        if key.startswith("flow.") and not flow_run:
            continue
        a, b = saved.get(key, defaults.get(key, "<absent>")), current.get(key, defaults.get(key, "<absent>"))
        if a != b:
            out.append(f"{key}: checkpoint has {a!r}, config has {b!r}")
    return out


__all__ = [
    "ConfigError",
    "build_network",
    "build_optimizer",
    "build_interpolant",
    "build_parameterization",
    "build_path",
    "build_sde",
    "has_data_source",
    "is_bridge",
    "is_flow",
    "num_classes",
    "stages",
    "data_shape",
    "default_config",
    "flatten_config",
    "incompatible_fields",
    "sampler_settings",
    "validate_config",
]
