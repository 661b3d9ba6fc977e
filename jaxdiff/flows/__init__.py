"""Beyond diffusion: interpolant paths between two laws, couplings (independent, minibatch exact and
entropic OT, paired), flow-matching / stochastic-interpolant / bridge objectives, rectified flow with
reflow and distillation, Schrödinger bridges (DSBM), and their closed forms between Gaussians."""

from jaxdiff.flows.couplings import COUPLINGS, couple, exact_w2, ot_plan, sample_plan, sinkhorn_plan
from jaxdiff.flows.gaussian import (
    bures_wasserstein_squared,
    gaussian_bridge_conditional,
    gaussian_bridge_marginal,
    gaussian_entropic_ot,
    gaussian_monge_map,
    gaussian_w2_squared,
)
from jaxdiff.flows.losses import (
    bridge_matching_loss,
    distillation_loss,
    flow_matching_loss,
    interpolant_loss,
    interpolant_noise_loss,
)
from jaxdiff.flows.models import BridgeModel, FlowMLP, FlowModel, init_mlp, mlp_apply
from jaxdiff.flows.neural_ot import (
    EntropicNeuralOTMap,
    NeuralOTMap,
    train_entropic_neural_ot,
    train_neural_ot,
)
from jaxdiff.flows.training import (
    distill_one_step,
    fit,
    pair_sampler,
    path_energy,
    pool_sampler,
    reflow_pairs,
    straightness,
    train_dsbm,
    train_flow_matching,
    train_rectified_flow,
)
from jaxdiff.likelihood import flow_log_likelihood
from jaxdiff.paths import (
    PATHS,
    BrownianBridge,
    Interpolant,
    LinearInterpolant,
    OTPath,
    StochasticInterpolant,
    TrigInterpolant,
    VPInterpolant,
)
from jaxdiff.sampling import sample_flow, translate

# The samplers the pre-unification flow module had (every name of jaxdiff.samplers() now runs on a flow).
FLOW_SAMPLERS = ("ode_euler", "ode_heun", "ode_midpoint", "ode_adaptive", "euler_maruyama")

__all__ = [
    "COUPLINGS", "FLOW_SAMPLERS", "PATHS", "EntropicNeuralOTMap", "NeuralOTMap", "train_entropic_neural_ot",
    "train_neural_ot",
    "BridgeModel", "BrownianBridge", "FlowMLP", "FlowModel", "Interpolant", "LinearInterpolant", "OTPath",
    "StochasticInterpolant", "TrigInterpolant", "VPInterpolant",
    "bridge_matching_loss", "bures_wasserstein_squared", "couple", "distill_one_step", "distillation_loss", "exact_w2",
    "fit", "flow_log_likelihood", "flow_matching_loss", "gaussian_bridge_conditional", "gaussian_bridge_marginal",
    "gaussian_entropic_ot", "gaussian_monge_map", "gaussian_w2_squared", "init_mlp", "interpolant_loss",
    "interpolant_noise_loss", "mlp_apply", "ot_plan", "pair_sampler", "path_energy", "pool_sampler", "reflow_pairs",
    "sample_flow", "sample_plan", "sinkhorn_plan", "straightness", "train_dsbm", "train_flow_matching",
    "train_rectified_flow", "translate",
]
