r"""The flow job behind ``python -m experiments.train --config=experiments/configs/{fm,rf,sb}_*.py``:
a generic ``x₀ ~ p, x₁ ~ q`` training entry point for flow matching (every path and coupling),
stochastic interpolants, k-rectified flow (+ one-step distillation), DSBM and paired bridge matching.

Workdir: ``config.json``, ``checkpoints/`` (orbax; one checkpoint per finished phase — a rectified
flow's rounds, the distilled model — so a restarted job resumes after the last finished phase),
``metrics.jsonl``, ``samples.npz`` and ``eval.json`` (2-D: exact W2 of generated/translated samples to
fresh target samples, adaptive NFE; digits domains: FD_digits after undoing the domain transform and
the fraction of translated digits whose class is preserved).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxdiff.flows import laws as L
from jaxdiff.flows.couplings import COUPLINGS, exact_w2
from jaxdiff.flows.losses import bridge_matching_loss, flow_matching_loss, interpolant_loss
from jaxdiff.flows.models import BridgeModel, FlowModel, init_mlp, mlp_apply
from jaxdiff.flows.training import distillation_loss, fit, pair_sampler, pool_sampler, reflow_pairs, train_dsbm
from jaxdiff.paths import PATHS, BrownianBridge, Interpolant, LinearInterpolant
from jaxdiff.sampling import sample_flow, samplers, translate
from jaxdiff.training.checkpoint import Checkpointer
from jaxdiff.training.config import ConfigError, IncompatibleWorkdirError

METHODS = ("cfm", "rectified_flow", "dsbm", "bridge_matching")


def default_flow_config() -> ml_collections.ConfigDict:
    """The schema of a flow job (defaults: OT-CFM from N(0, I) to torchcfm's 8 Gaussians)."""
    c = ml_collections.ConfigDict()
    c.kind = "flow"
    c.seed = 0
    c.flow = f = ml_collections.ConfigDict()
    f.method = "cfm"  # cfm | rectified_flow | dsbm | bridge_matching (paired, I2SB-style)
    f.path = "linear"  # a name of jaxdiff.flows.PATHS
    f.sigma = 0.0  # path noise σ (linear: constant σ; brownian_bridge: σ√(t(1−t)); dsbm / bridge matching: √ε)
    f.sigma_min = 1e-4  # the "ot" path's σ_min
    f.coupling = "independent"  # independent | exact | sinkhorn | paired
    f.epsilon = None  # Sinkhorn ε (POT convention on the raw squared cost); dsbm: the bridge's ε (= σ²)
    f.with_score = False  # also train the interpolant's noise head (the SDE family)
    f.reflow_rounds = 2  # rectified flow: 1 = plain RF, 2 = one reflow, ...
    f.reflow_pairs = 20000
    f.distill = False  # rectified flow: add a one-step distilled model
    f.dsbm_iterations = 4
    f.sde_steps = 100
    c.data = d = ml_collections.ConfigDict()
    d.source = "gaussian"  # a name of jaxdiff.flows.laws.LAWS
    d.target = "8gaussians"
    d.paired = False  # digits domains: rows correspond (same digit), for bridge_matching
    d.test_fraction = 0.2  # digits domains: stratified held-out fraction (evaluation)
    c.model = m = ml_collections.ConfigDict()
    m.hidden = (256, 256, 256)
    m.activation = "selu"
    c.training = t = ml_collections.ConfigDict()
    t.n_iters = 20000  # per phase (per round of rectified flow; split over DSBM's iterations)
    t.batch_size = 256
    t.lr = 1e-3
    t.ema_rate = 0.0  # 0: no EMA (torchcfm's 2-D runs)
    c.sampling = s = ml_collections.ConfigDict()
    s.sampler = "ode_adaptive"  # bridges: euler_maruyama
    s.steps = 100
    c.eval = e = ml_collections.ConfigDict()
    e.num_samples = 2000
    return c


def validate_flow_config(config: ml_collections.ConfigDict) -> None:
    """Every bad field named with its value and what is allowed, before anything is compiled."""
    errors = []

    def check(cond, field, value, allowed):
        if not cond:
            errors.append(f"{field}={value!r}: {allowed}")

    f, d, t = config.flow, config.data, config.training
    check(f.method in METHODS, "flow.method", f.method, f"one of {METHODS}")
    check(f.path in PATHS, "flow.path", f.path, f"one of {tuple(PATHS)}")
    check(f.coupling in COUPLINGS, "flow.coupling", f.coupling, f"one of {COUPLINGS}")
    check(isinstance(f.sigma, (int, float)) and f.sigma >= 0, "flow.sigma", f.sigma, "a number >= 0")
    check(f.epsilon is None or (isinstance(f.epsilon, (int, float)) and f.epsilon > 0), "flow.epsilon", f.epsilon,
          "None or a number > 0")
    if f.coupling == "sinkhorn":
        check(f.epsilon is not None, "flow.epsilon", f.epsilon, "a number > 0 with flow.coupling='sinkhorn'")
    if f.method == "dsbm":
        check(f.epsilon is not None or f.sigma > 0, "flow.epsilon", f.epsilon, "> 0 (or flow.sigma > 0) for dsbm")
    if f.method == "bridge_matching":
        check(f.sigma > 0, "flow.sigma", f.sigma, "> 0 for bridge_matching (the bridge noise)")
    check(isinstance(f.reflow_rounds, int) and f.reflow_rounds >= 1, "flow.reflow_rounds", f.reflow_rounds, "an int >= 1")
    check(isinstance(f.dsbm_iterations, int) and f.dsbm_iterations >= 1, "flow.dsbm_iterations", f.dsbm_iterations,
          "an int >= 1")
    check(d.source in L.LAWS, "data.source", d.source, f"one of {L.LAWS}")
    check(d.target in L.LAWS, "data.target", d.target, f"one of {L.LAWS}")
    if d.source in L.LAWS and d.target in L.LAWS:
        check((d.source in L.IMAGE_LAWS) == (d.target in L.IMAGE_LAWS), "data.target", d.target,
              "a law of the same space as data.source (2-D with 2-D, digits domains with digits domains)")
    if d.paired or f.coupling == "paired":
        check(d.source in L.IMAGE_LAWS, "data.paired", d.paired, "paired data exists for digits domains only")
    check(0.0 < d.test_fraction < 1.0, "data.test_fraction", d.test_fraction, "a number in (0, 1)")
    check(isinstance(t.n_iters, int) and t.n_iters >= 1, "training.n_iters", t.n_iters, "an int >= 1")
    check(isinstance(t.batch_size, int) and t.batch_size >= 2, "training.batch_size", t.batch_size, "an int >= 2")
    check(t.lr > 0, "training.lr", t.lr, "a number > 0")
    check(0.0 <= t.ema_rate < 1.0, "training.ema_rate", t.ema_rate, "a number in [0, 1)")
    check(config.sampling.sampler in samplers(), "sampling.sampler", config.sampling.sampler, f"one of {sorted(samplers())}")
    check(isinstance(config.eval.num_samples, int) and config.eval.num_samples >= 2, "eval.num_samples",
          config.eval.num_samples, "an int >= 2")
    if errors:
        raise ConfigError("invalid flow config:\n  " + "\n  ".join(errors))


def build_path(config) -> Interpolant:
    f = config.flow
    if f.method in ("dsbm", "bridge_matching"):
        return LinearInterpolant(0.0)  # bridges are integrated by their own drifts; the path names the time axis
    if f.path == "linear":
        return LinearInterpolant(f.sigma)
    if f.path == "brownian_bridge":
        return BrownianBridge(f.sigma)
    if f.path == "ot":
        return PATHS["ot"](f.sigma_min)
    return PATHS[f.path]()


def _bridge_epsilon(config) -> float:
    f = config.flow
    return float(f.epsilon) if f.epsilon is not None else float(f.sigma) ** 2


@dataclasses.dataclass
class FlowRun:
    """A trained flow job: ``model`` (``FlowModel`` / ``BridgeModel``), ``path`` and the config;
    ``jaxdiff.sample(key, run.model, run.path, shape=...)`` / ``jaxdiff.translate(key, run.model, run.path, x)``."""

    config: Any
    workdir: str
    model: Any
    path: Interpolant
    models: dict

    @property
    def params(self):
        """The model wrapper (``FlowModel`` / ``BridgeModel``), as ``jaxdiff.load_run`` gives for every family."""
        return self.model

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of one example."""
        if self.config.data.source in L.IMAGE_LAWS:
            return (8, 8, 1)
        return (2,)

    @property
    def step(self) -> int:
        """The number of trained phases (this job checkpoints once per phase)."""
        return len(self.models)


def _splits(config):
    """Digits: (train indices, held-out indices) of a stratified split; 2-D: (None, None)."""
    if config.data.source not in L.IMAGE_LAWS:
        return None, None
    from jaxdiff.training.data import load_digits_arrays, stratified_split

    _, labels = load_digits_arrays()
    return stratified_split(labels, config.data.test_fraction, seed=0)


def _laws(config, indices):
    d = config.data
    if d.paired:
        x0, x1 = L.paired_digits(d.source, d.target, indices)
        return x0, x1
    return L.get_law(d.source, indices=indices), L.get_law(d.target, indices=indices)


def _train_phases(config, key, log):
    """Yield ``(name, model)`` for every phase of the configured method, in order."""
    f, t = config.flow, config.training
    module, apply_fn = mlp_apply(tuple(config.model.hidden), config.model.activation)
    train_idx, _ = _splits(config)
    laws = _laws(config, train_idx)
    paired = config.data.paired
    if paired:
        x0_pool, x1_pool = laws
        shape = x0_pool.shape[1:]
        draw = pool_sampler(x0_pool, x1_pool, t.batch_size)
        source_law = L.pool_law(x0_pool)
    else:
        source_law, target_law = laws
        shape = tuple(jax.eval_shape(lambda k: source_law(k, 1), jax.random.PRNGKey(0)).shape[1:])
        draw = pair_sampler(source_law, target_law, t.batch_size)
    ema = t.ema_rate if t.ema_rate > 0 else None
    path = build_path(config)
    k_init, k_noise, k_fit = jax.random.split(key, 3)
    coupling = "paired" if paired else f.coupling
    if f.method == "cfm":
        if f.with_score:
            params = {"velocity": init_mlp(k_init, module, shape), "noise": init_mlp(k_noise, module, shape)}
            params = fit(k_fit, interpolant_loss(path, apply_fn, coupling=coupling, epsilon=f.epsilon), params, draw,
                         steps=t.n_iters, lr=t.lr, ema_rate=ema)
        else:
            v = fit(k_fit, flow_matching_loss(path, apply_fn, coupling=coupling, epsilon=f.epsilon),
                    init_mlp(k_init, module, shape), draw, steps=t.n_iters, lr=t.lr, ema_rate=ema)
            params = {"velocity": v}
        yield "cfm", FlowModel(apply_fn, params)
    elif f.method == "rectified_flow":
        v = fit(k_fit, flow_matching_loss(path, apply_fn, coupling=coupling), init_mlp(k_init, module, shape), draw,
                steps=t.n_iters, lr=t.lr, ema_rate=ema)
        model = FlowModel(apply_fn, {"velocity": v})
        yield "rf1", model
        for r in range(2, f.reflow_rounds + 1):
            key, k_src, k_ode, k_fit = jax.random.split(key, 4)
            x0, x1 = reflow_pairs(k_ode, model, path, source_law(k_src, f.reflow_pairs))
            v = fit(k_fit, flow_matching_loss(path, apply_fn, coupling="paired"), model.params["velocity"],
                    pool_sampler(x0, x1, t.batch_size), steps=t.n_iters, lr=t.lr, ema_rate=ema)
            model = FlowModel(apply_fn, {"velocity": v})
            yield f"rf{r}", model
        if f.distill:
            key, k_src, k_ode, k_fit = jax.random.split(key, 4)
            x0, x1 = reflow_pairs(k_ode, model, path, source_law(k_src, f.reflow_pairs))
            v = fit(k_fit, distillation_loss(apply_fn), model.params["velocity"], pool_sampler(x0, x1, t.batch_size),
                    steps=t.n_iters, lr=t.lr)
            yield "distilled", FlowModel(apply_fn, {"velocity": v})
    elif f.method == "dsbm":
        if paired:
            raise ConfigError("flow.method='dsbm' learns the coupling; for paired data use 'bridge_matching'.")
        eps = _bridge_epsilon(config)
        steps = max(1, t.n_iters // (2 * f.dsbm_iterations))
        yield "dsbm", train_dsbm(key, source_law, target_law, epsilon=eps, iterations=f.dsbm_iterations,
                                 steps_per_iteration=steps, batch_size=t.batch_size, lr=t.lr,
                                 hidden=tuple(config.model.hidden), sde_steps=f.sde_steps,
                                 first_coupling="independent" if f.coupling in ("independent", "paired") else f.coupling)
    else:  # bridge_matching: forward and backward drifts of the Brownian bridge over the given coupling
        sigma = float(f.sigma)
        params = {}
        for i, direction in enumerate(("forward", "backward")):
            loss = bridge_matching_loss(sigma, apply_fn, direction=direction,
                                        coupling="paired" if coupling == "paired" else coupling, epsilon=f.epsilon)
            params[direction] = fit(jax.random.fold_in(k_fit, i), loss, init_mlp(jax.random.fold_in(k_init, i), module,
                                    shape), draw, steps=t.n_iters, lr=t.lr, ema_rate=ema)
        yield "bridge", BridgeModel(apply_fn, params, sigma)


def _phase_names(config) -> list[str]:
    f = config.flow
    if f.method == "cfm":
        return ["cfm"]
    if f.method == "rectified_flow":
        return [f"rf{r}" for r in range(1, f.reflow_rounds + 1)] + (["distilled"] if f.distill else [])
    return ["dsbm"] if f.method == "dsbm" else ["bridge"]


def _config_json(config) -> str:
    return json.dumps(config.to_dict(), indent=2, sort_keys=True, default=list)


def train_flow_run(config: ml_collections.ConfigDict, workdir: str, *, progress: bool = True) -> FlowRun:
    """Train (or resume, or just reload) the configured flow job in ``workdir`` and evaluate it."""
    log = (lambda msg: print(msg, file=sys.stderr, flush=True)) if progress else (lambda msg: None)
    base = default_flow_config()
    unknown = _unknown_fields(config, base)
    if unknown:
        raise ConfigError(f"unknown flow config field(s) {unknown}; see jaxdiff.flows.run.default_flow_config().")
    validate_flow_config(config)
    os.makedirs(workdir, exist_ok=True)
    config_path = os.path.join(workdir, "config.json")
    text = _config_json(config)
    if os.path.exists(config_path):
        with open(config_path) as fh:
            saved = fh.read()
        if json.loads(saved)["flow"] != json.loads(text)["flow"] or json.loads(saved)["data"] != json.loads(text)["data"] \
                or json.loads(saved)["model"] != json.loads(text)["model"]:
            raise IncompatibleWorkdirError(f"{workdir!r} holds a different flow run (flow/data/model fields differ); "
                                           "use a new --workdir.")
    else:
        with open(config_path + ".tmp", "w") as fh:
            fh.write(text)
        os.replace(config_path + ".tmp", config_path)
    names = _phase_names(config)
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), max_to_keep=len(names) + 1)
    done = ckpt.latest_step()
    ckpt.close()
    if done is None or done < len(names):
        if done is not None:
            log(f"phases {names[:done]} are saved; resuming at phase {names[done]} (earlier phases are recomputed "
                "with the same seed, not re-saved)")
        key = jax.random.PRNGKey(config.seed)
        ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), max_to_keep=len(names) + 1)
        try:
            started = time.perf_counter()
            for i, (name, model) in enumerate(_train_phases(config, key, log)):
                seconds = time.perf_counter() - started
                if done is None or i + 1 > done:
                    ckpt.save(i + 1, {"params": model.params}, {"phase": name})
                    ckpt.wait()
                with open(os.path.join(workdir, "metrics.jsonl"), "a") as fh:
                    fh.write(json.dumps({"phase": name, "seconds": round(seconds, 2)}) + "\n")
                log(f"phase {name} done ({seconds:.1f} s)")
        finally:
            ckpt.close()
    run = load_flow_run(workdir)
    evaluate_flow_run(run, log=log)
    return run


def _unknown_fields(config, base, prefix="") -> list[str]:
    out = []
    for k in config.keys():
        if k not in base:
            out.append(prefix + k)
        elif isinstance(config[k], ml_collections.ConfigDict) and isinstance(base[k], ml_collections.ConfigDict):
            out.extend(_unknown_fields(config[k], base[k], prefix + k + "."))
    return out


def load_flow_run(workdir: str, *, phase: str | None = None) -> FlowRun:
    """Restore a flow run: its config and every trained phase; ``run.model`` is the last phase's model."""
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{workdir!r} is not a jaxdiff run: {path} is missing.")
    with open(path) as fh:
        config = ml_collections.ConfigDict(json.load(fh))
    if isinstance(config.model.hidden, list):
        config.model.hidden = tuple(config.model.hidden)
    module, apply_fn = mlp_apply(tuple(config.model.hidden), config.model.activation)
    names = _phase_names(config)
    train_idx, _ = _splits(config)
    if config.data.paired:
        shape = L.paired_digits(config.data.source, config.data.target, train_idx)[0].shape[1:]
    else:
        law = L.get_law(config.data.source, indices=train_idx)
        shape = tuple(jax.eval_shape(lambda k: law(k, 1), jax.random.PRNGKey(0)).shape[1:])
    one = init_mlp(jax.random.PRNGKey(0), module, shape)
    if config.flow.method in ("cfm", "rectified_flow"):
        heads = ["velocity", "noise"] if config.flow.with_score and config.flow.method == "cfm" else ["velocity"]
    else:
        heads = ["forward", "backward"]
    like = {"params": {h: one for h in heads}}
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), max_to_keep=len(names) + 1)
    models = {}
    try:
        for step in ckpt.all_steps():
            state, meta = ckpt.restore(jax.eval_shape(lambda: like), step)
            params = state["params"]
            if config.flow.method in ("dsbm", "bridge_matching"):
                sigma = np.sqrt(_bridge_epsilon(config)) if config.flow.method == "dsbm" else config.flow.sigma
                models[meta["phase"]] = BridgeModel(apply_fn, params, float(sigma))
            else:
                models[meta["phase"]] = FlowModel(apply_fn, params)
    finally:
        ckpt.close()
    if not models:
        raise FileNotFoundError(f"no trained phase in {os.path.join(workdir, 'checkpoints')}.")
    chosen = phase or [n for n in names if n in models][-1]
    if chosen not in models:
        raise ValueError(f"phase={phase!r} is not among the trained phases {sorted(models)}.")
    return FlowRun(config=config, workdir=workdir, model=models[chosen], path=build_path(config), models=models)


def _undo_domain(domain: str, x: np.ndarray) -> np.ndarray:
    if domain == "digits_inverted":
        return -x
    if domain == "digits_rotated":
        return np.rot90(x, k=-1, axes=(1, 2))
    return x


def evaluate_flow_run(run: FlowRun, *, log=None, write: bool = True) -> dict:
    """eval.json: per trained phase, the target-side quality of generated / translated held-out samples."""
    log = log or (lambda msg: None)
    config = run.config
    n = int(config.eval.num_samples)
    key = jax.random.PRNGKey(config.seed + 1)
    out: dict[str, Any] = {"source": config.data.source, "target": config.data.target, "method": config.flow.method}
    sampler = config.sampling.sampler
    if config.data.source in L.TWO_D_LAWS:
        k_src, k_tgt = jax.random.split(key)
        x0 = L.get_law(config.data.source)(k_src, n)
        ref = np.asarray(L.get_law(config.data.target)(k_tgt, n))
        for name, model in run.models.items():
            use = "euler_maruyama" if isinstance(model, BridgeModel) else sampler
            steps = 1 if name == "distilled" else config.sampling.steps
            use = "ode_euler" if name == "distilled" else use
            x1, info = sample_flow(jax.random.PRNGKey(0), model, run.path, x_init=x0, sampler=use, steps=steps,
                                   return_info=True)
            out[name] = {"w2": exact_w2(np.asarray(x1), ref), "nfe": int(info["nfe"]), "sampler": use}
            log(f"eval {name}: W2 {out[name]['w2']:.4f} ({use}, nfe {out[name]['nfe']})")
            np.savez(os.path.join(run.workdir, f"samples_{name}.npz"), source=np.asarray(x0), samples=np.asarray(x1))
    else:
        from jaxdiff.metrics import digits_classifier, digits_frechet_distance
        from jaxdiff.training.data import load_digits_arrays

        _, held = _splits(config)
        _, labels = load_digits_arrays()
        x0 = L.digit_images(config.data.source, held)
        ref = L.digit_images(config.data.target, held)
        clf = digits_classifier(0)
        for name, model in run.models.items():
            use = "euler_maruyama" if isinstance(model, BridgeModel) else sampler
            x1 = np.asarray(translate(jax.random.PRNGKey(0), model, run.path, jnp.asarray(x0), sampler=use,
                                      steps=config.sampling.steps))
            upright = _undo_domain(config.data.target, x1)
            levels = np.clip((upright + 1.0) * 8.0, 0.0, 16.0)
            ref_levels = np.clip((_undo_domain(config.data.target, ref) + 1.0) * 8.0, 0.0, 16.0)
            predicted = np.asarray(clf.predict(levels))
            out[name] = {
                "fd_digits": digits_frechet_distance(levels, ref_levels),
                "mse_to_paired_target": float(np.mean((x1 - ref) ** 2)),
                "sampler": use,
            }
            out[name]["class_preserved"] = float(np.mean(predicted == labels[held]))
            log(f"eval {name}: {out[name]}")
    if write:
        with open(os.path.join(run.workdir, "eval.json"), "w") as fh:
            json.dump(out, fh, indent=2)
    return out
