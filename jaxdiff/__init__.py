"""jaxdiff: generative models built on differential equations, in JAX.

The public API is re-exported here; implementation modules are ``jaxdiff.processes``,
``jaxdiff.discrete``, ``jaxdiff.distributions``, ``jaxdiff.parameterization``, ``jaxdiff.losses`` and
``jaxdiff.time_sampling``.
"""

from jaxdiff import (
    flows,  # noqa: E402  (flow matching, rectified flow, interpolants, Schrödinger bridges)
    guidance,  # noqa: E402  (classifier-free guidance: jaxdiff.guidance.Guided, condition_model)
    models,  # noqa: E402  (Flax score networks: jaxdiff.models.NCSNpp, DDPM, ScoreMLP)
    training,  # noqa: E402  (TrainState, make_optimizer, make_train_step)
)
from jaxdiff.discrete import DDPMSchedule, NCSNSchedule
from jaxdiff.distributions import GaussianMixture
from jaxdiff.flows import (
    gaussian_bridge_marginal,
    gaussian_entropic_ot,
    ot_plan,
)
from jaxdiff.guidance import Guided
from jaxdiff.likelihood import bits_per_dim, dequantize, log_likelihood
from jaxdiff.losses import (
    ddpm_loss,
    denoising_loss,
    dsm_loss,
    eps_loss,
    ncsn_loss,
    sliced_score_matching_loss,
    v_loss,
    x0_loss,
)
from jaxdiff.parameterization import (
    BridgeModel,
    Direct,
    EDMPreconditioning,
    FlowModel,
    FunctionModel,
    ModelWrapper,
    Parameterization,
    ScoreModel,
    convert,
    noise_input,
    tweedie_denoise,
)
from jaxdiff.paths import BrownianBridge, FlowProcess, Interpolant, LinearInterpolant, TrigInterpolant
from jaxdiff.processes import (
    VESDE,
    VPSDE,
    CosineVPSDE,
    LinearProcess,
    OUProcess,
    SubVPSDE,
    conditional_score,
    euler_maruyama_step,
    probability_flow_drift,
    reverse_sde_drift,
)
from jaxdiff.sampling import calibrated_grid, karras_sigmas, sample, samplers, time_grid, translate
from jaxdiff.time_sampling import (
    constant_time_sampler,
    discrete_time_sampler,
    make_time_sampler,
)
from jaxdiff.training.run import Run, load_run

__version__ = "0.1.0"

__all__ = [
    "flows",
    "guidance",
    "Guided",
    "BrownianBridge",
    "BridgeModel",
    "FlowModel",
    "FlowProcess",
    "FunctionModel",
    "Interpolant",
    "ModelWrapper",
    "LinearInterpolant",
    "TrigInterpolant",
    "gaussian_bridge_marginal",
    "gaussian_entropic_ot",
    "ot_plan",
    "translate",
    "models",
    "training",
    "Run",
    "load_run",
    "CosineVPSDE",
    "DDPMSchedule",
    "Direct",
    "EDMPreconditioning",
    "GaussianMixture",
    "LinearProcess",
    "NCSNSchedule",
    "OUProcess",
    "Parameterization",
    "ScoreModel",
    "SubVPSDE",
    "VESDE",
    "VPSDE",
    "bits_per_dim",
    "conditional_score",
    "dequantize",
    "log_likelihood",
    "constant_time_sampler",
    "convert",
    "ddpm_loss",
    "denoising_loss",
    "discrete_time_sampler",
    "dsm_loss",
    "eps_loss",
    "euler_maruyama_step",
    "make_time_sampler",
    "ncsn_loss",
    "noise_input",
    "probability_flow_drift",
    "reverse_sde_drift",
    "sample",
    "calibrated_grid",
    "samplers",
    "karras_sigmas",
    "time_grid",
    "sliced_score_matching_loss",
    "tweedie_denoise",
    "v_loss",
    "x0_loss",
]
