r"""The main job as a library: ``train(config, workdir)``, ``load_run(workdir)``, ``evaluate_run(run)``.

Workdir layout::

    config.json        the validated config (written once; a resume must be compatible with it)
    checkpoints/       orbax: TrainState + {"data_iterator", "step"} every training.snapshot_freq steps
    metrics.jsonl      one JSON object per log step: step, loss, grad_norm, steps_per_s, time
    samples/           PNG grids of EMA samples (step_0001000.png, ...)
    eval.json          the final evaluation (bits/dim, Fréchet distance, ...)

Data flow: config → validation (nothing compiled yet) → dataset → per-process grain stream →
jitted train step over a Mesh of all devices → checkpoints / metrics / samples → evaluation.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxdiff import _xla
from jaxdiff.training import config as C
from jaxdiff.training.checkpoint import Checkpointer
from jaxdiff.training.config import IncompatibleWorkdirError, NonFiniteLossError  # noqa: F401  (re-exported)
from jaxdiff.training.data import (
    DIGIT_DOMAINS,
    DataIterator,
    Dataset,
    digits_upright,
    load_dataset,
    make_stream,
    preprocess,
)
from jaxdiff.training.lock import WorkdirLock
from jaxdiff.training.step import TrainState, create_train_state, make_train_step

# --------------------------------------------------------------------------------------------------
# Pieces built from a config
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class NetworkApply:
    """``apply_fn(params, x, noise_in, key=None, cond=None)`` of a Flax network: dropout on (``train=True``) iff a
    key is given; ``cond`` the class labels ``[batch]`` of a conditional network (None: its null class). Equal (and equally hashed) for equal networks, so a model wrapper rebuilt from the same network — a
    sample grid, a second :func:`load_run` — reuses the compiled samplers and likelihood instead of tracing
    them again (the wrapper's ``apply_fn`` is a static part of every compiled program)."""

    network: Any

    @property
    def num_classes(self) -> int:
        """The network's number of classes (0: unconditional)."""
        return int(getattr(self.network, "num_classes", 0))

    def __call__(self, params, x, noise_in, key=None, cond=None):
        extra = {} if cond is None else {"cond": cond}
        if key is None:
            return self.network.apply({"params": params}, x, noise_in, train=False, **extra)
        return self.network.apply({"params": params}, x, noise_in, train=True, rngs={"dropout": key}, **extra)


def make_apply_fn(network) -> Callable:
    """``apply_fn(params, x, noise_in, key=None)`` (a :class:`NetworkApply`): dropout on iff a key is given."""
    return NetworkApply(network)


def init_params(network, shape: tuple[int, ...], key) -> Any:
    """Network parameters for examples of ``shape`` (float32)."""
    k_params, k_dropout = jax.random.split(key)
    x = jnp.zeros((1, *shape), jnp.float32)
    noise = jnp.ones((1,), jnp.float32)
    return network.init({"params": k_params, "dropout": k_dropout}, x, noise, train=False)["params"]


def init_model_params(config: Any, network, shape: tuple[int, ...], key) -> Any:
    """The run's parameters: one network's, or for a bridge ``{"forward", "backward"}`` — two networks of the
    same architecture (DSBM trains them in alternating stages)."""
    if C.is_bridge(config):
        return {"forward": init_params(network, shape, jax.random.fold_in(key, 0)),
                "backward": init_params(network, shape, jax.random.fold_in(key, 1))}
    return init_params(network, shape, key)


@dataclasses.dataclass(frozen=True)
class FlowTimeApply:
    """``apply_fn(params, x, t_flow, key=None)``: the network's raw output(s) at flow time ``t_flow`` read through
    the run's parameterization (the one time edge: ``sde.process_time``); equal for equal parts (see
    :class:`NetworkApply`)."""

    network: Any
    parameterization: Any
    sde: Any

    @property
    def num_classes(self) -> int:
        return int(getattr(self.network, "num_classes", 0))

    def __call__(self, params, x, t_flow, key=None, cond=None):
        return self.parameterization(NetworkApply(self.network), params, self.sde, x, self.sde.process_time(t_flow),
                                     key=key, cond=cond)


def _flow_apply_fn(network, parameterization, sde) -> Callable:
    return FlowTimeApply(network, parameterization, sde)


def _bridge_loss(config: Any, apply_fn: Callable, directions: tuple[str, ...], model_key: bool = False) -> Callable:
    """Bridge matching of the drifts ``directions`` on ``params[direction]`` (the sum over directions), on
    ``(x0, x1)`` pairs as given (model space)."""
    from jaxdiff.flows.losses import bridge_matching_loss

    t_eps = float(config.flow.t_eps) or 1e-3
    losses = {d: bridge_matching_loss(float(config.flow.sigma), apply_fn, direction=d, coupling="paired",
                                      t_eps=t_eps, model_key=model_key) for d in directions}

    def loss(params, key, batch):
        return sum(losses[d](params[d], jax.random.fold_in(key, i), batch) for i, d in enumerate(directions))

    return loss


def make_loss_fn(config: Any, dataset: Dataset, sde, network, parameterization,
                 source: Dataset | None = None) -> Callable:
    """``loss(params, key, batch)`` of the config's objective, mean over the batch.

    ``dsm``: ``batch`` is data (data units); :func:`preprocess` (dequantization, flips) then
    :func:`jaxdiff.dsm_loss` with score_sde's weighting (σ² or, with ``likelihood_weighting``, g²) and
    reduction (mean over dimensions if ``reduce_mean`` else sum).
    ``flow_matching`` / ``interpolant``: ``batch = (x0, x1)``, source noise and target data (data units),
    already coupled on the global batch (:func:`make_flow_pairs`); the target is preprocessed, then
    :func:`jaxdiff.flows.flow_matching_loss` / :func:`~jaxdiff.flows.interpolant_loss` (paired) on the
    path of ``sde`` (a :class:`jaxdiff.paths.FlowProcess`), with the network read through the run's
    parameterization — the same wrapper that samples. ``bridge_matching`` / ``dsbm`` (first stage): bridge
    matching of both drifts / the forward drift on the same pairs. With a data ``source`` (``data.source``) the
    source rows are preprocessed like the target's. A class-conditional run (``model.num_classes``) gets batches
    ``{"x0", "cond"}`` (dsm) or ``{"source", "target", "cond"}`` (flows), drops each label to the null class with
    probability ``training.label_dropout`` (:func:`jaxdiff.guidance.drop_labels`) and conditions the network on it.
    """
    t = config.training
    model_key = config.model.dropout > 0
    classes = C.num_classes(config)
    if classes:
        from jaxdiff.guidance import drop_labels

        def labels_of(key, batch):  # per-example label dropout (classifier-free guidance's null class)
            return drop_labels(key, batch["cond"], float(t.label_dropout), classes)
    if C.is_flow(config):
        from jaxdiff.flows.losses import flow_matching_loss, interpolant_loss

        apply_fn = _flow_apply_fn(network, parameterization, sde)
        if C.is_bridge(config):
            directions = ("forward", "backward") if t.objective == "bridge_matching" else ("forward",)
            core = _bridge_loss(config, apply_fn, directions, model_key)
        elif t.objective == "flow_matching":
            core = flow_matching_loss(sde.path, apply_fn, coupling="paired", t_eps=config.flow.t_eps,
                                      model_key=model_key)
        else:
            core = interpolant_loss(sde.path, apply_fn, coupling="paired", t_eps=config.flow.t_eps, heads="stacked",
                                    model_key=model_key)

        def flow_loss(params, key, batch):
            if classes:  # {"source", "target", "cond"} from make_flow_pairs (labels follow their targets)
                k_data, k_loss, k_drop = jax.random.split(key, 3)
                return core(params, k_loss, {"source": batch["source"],
                                             "target": preprocess(dataset, k_data, batch["target"]),
                                             "cond": labels_of(k_drop, batch)})
            k_data, k_loss, k_source = jax.random.split(key, 3)
            x0, x1 = batch
            if source is not None:
                x0 = preprocess(source, k_source, x0)
            return core(params, k_loss, (x0, preprocess(dataset, k_data, x1)))

        return flow_loss

    from jaxdiff.losses import dsm_loss

    dsm = dsm_loss(
        sde, make_apply_fn(network), parameterization=parameterization,
        weighting="likelihood" if t.likelihood_weighting else "sigma2",
        time_sampling=t.time_sampling, reduce="mean" if t.reduce_mean else "sum", model_key=model_key,
    )

    def loss(params, key, batch):
        if classes:  # {"x0": rows, "cond": labels} from the stream
            k_data, k_loss, k_drop = jax.random.split(key, 3)
            return dsm(params, k_loss, {"x0": preprocess(dataset, k_data, batch["x0"]), "cond": labels_of(k_drop, batch)})
        k_data, k_loss = jax.random.split(key)
        return dsm(params, k_loss, preprocess(dataset, k_data, batch))

    return loss


def make_flow_pairs(config: Any, dataset: Dataset, *, process_index: int = 0, process_count: int = 1,
                    source: Dataset | None = None) -> Callable:
    r"""``pairs(global_batch, step) -> (x0_rows, x1_rows)``: the source and target rows of this process for step
    ``step``, coupled on the **global** batch. ``global_batch`` is the target rows, or ``(target rows, source
    rows)`` when the run has a data ``source`` (the stream then carries both; ``data.paired``: not re-coupled).

    Every process receives the whole global batch of target rows (data units) and draws the same global
    source batch ``x0 ~ N(0, I)`` from ``(seed, step)`` on the host; ``flow.coupling`` ``exact`` (minibatch OT,
    scipy's assignment) or ``sinkhorn`` (ott-jax, ``flow.epsilon``) pairs them on the host — deterministic, so
    every process computes the same plan — on the target in model space before dequantization noise and
    flips (drawn on device afterwards). Each process then keeps rows ``[p B/P, (p+1) B/P)``: 1 process and N
    processes train on identical pairs. A conditional stream's ``{"x0", "cond"}`` gives
    ``{"source", "target", "cond"}``, each label kept with its target row, and the coupling is solved **within each
    class**: the noise rows at a class's positions (i.i.d. N(0, I), so still N(0, I)) are paired with that class's
    targets. One plan over the whole batch would instead hand each class the noise region OT sends to it, so the
    conditional model would never see N(0, I) noise with its label and fail when sampled from it (measured on
    digits: class accuracy 0.84 and FD_digits 6.8 at w = 0, against 0.98 / 1.6 for the VP-SDE).
    """
    from jaxdiff.flows.couplings import coupling_indices

    f, batch = config.flow, config.training.batch_size
    shape = C.data_shape(config)
    local = batch // process_count
    rows = slice(process_index * local, (process_index + 1) * local)
    base_key = jax.random.fold_in(jax.random.key(config.seed), 0x0C0)

    def pairs(rows_in, step: int):
        labels = None
        if isinstance(rows_in, dict):  # a class-conditional stream: the labels travel with their target rows
            rows_in, labels = rows_in["x0"], np.asarray(rows_in["cond"])
        if source is None:
            target = np.asarray(rows_in)
            x0 = np.random.default_rng([config.seed, int(step), 0x5EED]).standard_normal((batch, *shape),
                                                                                      dtype=np.float32)
            x0_model = x0
        else:
            target, x0 = (np.asarray(a) for a in rows_in)
            x0_model = source.to_model(x0)
        if f.coupling not in ("independent", "paired"):
            key = jax.random.fold_in(base_key, int(step)) if f.coupling == "sinkhorn" else base_key  # (exact: unused)
            target_model = dataset.to_model(target)
            if labels is None:
                i, j = coupling_indices(key, x0_model, target_model, f.coupling, epsilon=float(f.epsilon) or None)
            else:  # within each class: every class keeps an N(0, I) source (see below)
                i, j = np.arange(batch), np.arange(batch)
                for c in np.unique(labels):
                    rows_c = np.flatnonzero(labels == c)
                    ic, jc = coupling_indices(jax.random.fold_in(key, int(c)), x0_model[rows_c], target_model[rows_c],
                                              f.coupling, epsilon=float(f.epsilon) or None)
                    i[rows_c], j[rows_c] = rows_c[np.asarray(ic)], rows_c[np.asarray(jc)]
            x0, target = x0[np.asarray(i)], target[np.asarray(j)]
            labels = None if labels is None else labels[np.asarray(j)]
        if labels is not None:
            return {"source": x0[rows], "target": target[rows], "cond": labels[rows]}
        return x0[rows], target[rows]

    return pairs


def make_pair_loss_fn(config: Any, sde, network, parameterization, *, distill: bool = False,
                      kind: str | None = None) -> Callable:
    """The loss of a stage trained on a pool of pairs (model space): ``reflow`` (flow matching on the fixed pairs
    ``(z, Z₁(z))``), ``distill`` (``x₀ + v(x₀, 0) ≈ x₁``), ``bridge_forward`` / ``bridge_backward`` (DSBM: bridge
    matching of one drift on the coupling the other drift simulated), with the run's network read through its
    parameterization."""
    from jaxdiff.flows.losses import distillation_loss, flow_matching_loss

    kind = kind or ("distill" if distill else "reflow")
    apply_fn = _flow_apply_fn(network, parameterization, sde)
    if kind == "distill":
        return distillation_loss(apply_fn)
    if kind in ("bridge_forward", "bridge_backward"):
        return _bridge_loss(config, apply_fn, (kind.split("_")[1],))
    return flow_matching_loss(sde.path, apply_fn, coupling="paired", t_eps=config.flow.t_eps)


def _draw_rows(config: Any, dataset: Dataset | None, key, n: int) -> np.ndarray:
    """``n`` model-space rows of a dataset's training split drawn with replacement (seeded by ``key``), or ``N(0, I)``
    draws when ``dataset`` is None (a Gaussian source)."""
    shape = C.data_shape(config)
    if dataset is None:
        return np.asarray(jax.random.normal(key, (n, *shape), jnp.float32))
    idx = np.asarray(jax.random.randint(key, (n,), 0, dataset.train.shape[0]))
    return dataset.to_model(dataset.train[idx])


def _transport(config: Any, model, sde, x: np.ndarray, key, *, sampler: str, steps: int | None,
               direction: str = "forward") -> np.ndarray:
    """``x`` carried along the model's ODE/SDE (forward: source → target; backward: target → source) in chunks of
    ``eval.batch_size`` padded to one compiled shape."""
    from jaxdiff.sampling import translate

    batch = int(config.eval.batch_size)
    options = {} if steps is None else {"steps": int(steps)}
    out = []
    for i in range(0, len(x), batch):
        chunk = x[i: i + batch]
        padded = np.concatenate([chunk, np.zeros((batch - len(chunk), *chunk.shape[1:]), chunk.dtype)]) \
            if len(chunk) < batch else chunk  # one compiled program for every chunk
        y = translate(jax.random.fold_in(key, i), model, sde.path, jnp.asarray(padded), sampler=sampler,
                      direction=direction, **options)
        out.append(np.asarray(y)[: len(chunk)])
    return np.concatenate(out)


def stage_pool(config: Any, sde, teacher, stage: int, kind: str, dataset: Dataset,
               source: Dataset | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The pairs ``(x0, x1)`` a pool stage trains on, made from the stage's teacher (the EMA model at the stage's
    start), seeded by the stage — the same on every process and after every resume:

    * ``reflow`` / ``distill``: ``(z, Z₁(z))``, ``flow.reflow_pairs`` source draws carried to the target by the
      teacher's ODE (Liu et al.'s reflow coupling; ``flow.reflow_sampler``, ``reflow_steps``);
    * ``bridge_backward``: ``(x₀, X₁)``, source draws pushed through the forward SDE ``dX = f dt + σ dW``;
    * ``bridge_forward``: ``(X₀, x₁)``, target draws pulled back through the backward SDE (DSBM's alternating
      Markovian projections; ``euler_maruyama`` with ``flow.reflow_steps`` steps).
    """
    f = config.flow
    key = jax.random.fold_in(jax.random.key(config.seed), 1000 + stage)
    k_rows, k_sim = jax.random.split(key)
    if kind == "bridge_forward":
        x1 = _draw_rows(config, dataset, k_rows, f.reflow_pairs)
        x0 = _transport(config, teacher, sde, x1, k_sim, sampler="euler_maruyama", steps=f.reflow_steps,
                        direction="backward")
        return x0, x1
    x0 = _draw_rows(config, source, k_rows, f.reflow_pairs)
    if kind == "bridge_backward":
        return x0, _transport(config, teacher, sde, x0, k_sim, sampler="euler_maruyama", steps=f.reflow_steps)
    steps = None if f.reflow_sampler == "ode_adaptive" else f.reflow_steps
    return x0, _transport(config, teacher, sde, x0, k_sim, sampler=f.reflow_sampler, steps=steps)


def pool_batch(config: Any, pool, step: int, process_index: int, process_count: int):
    """This process's rows of the global batch of step ``step``: uniform draws (with replacement) from the
    pool, seeded by ``(seed, step)`` — identical on every process and on resume."""
    z, x1 = pool
    batch = config.training.batch_size
    idx = np.random.default_rng([config.seed, int(step), 0x7EF0]).integers(0, len(z), batch)
    local = batch // process_count
    rows = idx[process_index * local: (process_index + 1) * local]
    return z[rows], x1[rows]


@dataclasses.dataclass
class Run:
    """A trained run of any family: ``params`` is the EMA model wrapper (:class:`jaxdiff.ScoreModel`) that
    ``jaxdiff.sample(key, run.params, run.path, shape=(n, *run.shape))`` needs; ``path`` its process (a
    diffusion's SDE, or a flow's :class:`jaxdiff.paths.FlowProcess`; ``run.sde`` is the same object);
    ``state`` the full TrainState."""

    config: ml_collections.ConfigDict
    workdir: str
    sde: Any
    params: Any
    network: Any
    step: int
    state: TrainState | None = None
    _dataset: Dataset | None = None
    _source: Dataset | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        return C.data_shape(self.config)

    @property
    def model(self):
        """The EMA model wrapper (``run.params``), under the name the earlier flow job gave it."""
        return self.params

    @property
    def source(self) -> Dataset | None:
        """The source dataset of a translation run (``data.source``), else None (the source is ``N(0, I)``)."""
        if self._source is None and C.has_data_source(self.config):
            self._source = load_dataset(self.config.data, self.config.data.source)
        return self._source

    @property
    def path(self):
        """The process the model moves along (``run.sde`` under its family-neutral name)."""
        return self.sde

    @property
    def dataset(self) -> Dataset:
        if self._dataset is None:
            self._dataset = load_dataset(self.config.data)
        return self._dataset

    def source_rows(self, num: int) -> np.ndarray | None:
        """The first ``num`` held-out source rows in model space (repeated if the split is smaller), or None."""
        if self.source is None:
            return None
        rows = self.source.test[np.arange(num) % len(self.source.test)]
        return self.source.to_model(rows)

    @property
    def num_classes(self) -> int:
        """Classes of a conditional run (``model.num_classes``), 0 for an unconditional one."""
        return C.num_classes(self.config)

    def sample(self, key, num: int, *, batch_size: int | None = None, return_nfe: bool = False,
               cond: Any = None, guidance: float | None = None, distributed: bool = False, **overrides) -> np.ndarray:
        """``num`` samples in model space with the config's sampler (``overrides`` to ``jaxdiff.sample``); a
        translation run carries its first ``num`` held-out source rows to the target. A conditional run takes
        ``cond`` (an int, or ints ``[num]``) and a guidance weight ``guidance`` (default ``sampling.guidance``).
        ``distributed=True``: every process calls it and each draws its share of the batches (:func:`draw_samples`)."""
        if cond is not None and guidance is None:
            guidance = float(self.config.sampling.guidance)
        name, options = sampler_call(self.config, overrides)
        if options.get("grid") == "calibrated" and options.get("ts") is None:
            if self.source is not None:
                raise ValueError("grid='calibrated' needs a Gaussian source; this translation run (data.source) "
                                 "carries data rows instead.")
            sampler_options = {k: v for k, v in options.items() if k not in _NOT_SAMPLER_OPTIONS}
            overrides = {**overrides, "ts": self.calibrated_grid(name, options.get("steps"), t_end=options.get("t_end"),
                                                                 **sampler_options)}
        return draw_samples(self.config, self.params, self.sde, key, num, batch_size=batch_size,
                            return_nfe=return_nfe, x_source=self.source_rows(num), cond=cond, guidance=guidance,
                            distributed=distributed, **overrides)

    def calibrated_grid(self, sampler: str | None = None, steps: int | None = None, *, t_end: float | None = None,
                        rows: int = 256, iterations: int = 100, refresh: bool = False,
                        log: Callable[[str], None] | None = None, **options) -> np.ndarray:
        """The grid of ``sampler`` (default the config's) with ``steps`` intervals calibrated for this run's EMA model
        at this step (:func:`jaxdiff.calibrated_grid` on ``rows`` paths from a key of ``seed``, ``iterations`` Adam
        steps; process time).
        Saved in ``WORKDIR/calibrated_grids.json`` under the step, the sampler, the steps, ``t_end`` and the options,
        and read from there the next time (``refresh=True`` fits it again). A conditional run's grid is fitted to
        its unconditional branch. Every process computes the same grid; process 0 writes the file."""
        from jaxdiff.sampling import calibrated_grid

        name, config_options = C.sampler_settings(self.config)
        if sampler is None:
            sampler = name
            steps = config_options.get("steps") if steps is None else steps
        entry = (f"step={self.step}|sampler={sampler}|steps={steps}|t_end={t_end}|"
                 + "|".join(f"{k}={options[k]!r}" for k in sorted(options)))
        path = os.path.join(self.workdir, CALIBRATED_GRIDS)
        saved = _read_calibrated_grids(path)
        if entry in saved and not refresh:
            return np.asarray(saved[entry]["ts"], np.float64)
        key = jax.random.fold_in(jax.random.key(self.config.seed), 0xCA1)
        ts, info = calibrated_grid(key, self.params, self.sde, sampler=sampler, steps=steps, shape=(rows, *self.shape),
                                   t_end=t_end, iterations=iterations, return_info=True, log=log, **options)
        if jax.process_index() == 0:
            saved = _read_calibrated_grids(path)  # (again: another caller may have added entries meanwhile)
            saved[entry] = {"ts": [float(v) for v in ts], "loss": info["loss"], "rule_losses": info["rule_losses"],
                            "start": info["start"], "rows": rows, "iterations": info["iterations"]}
            _write_json(path, saved)
        return ts

    def sample_data_units(self, key, num: int, **kw) -> np.ndarray:
        """Samples in the data's own units (digit levels 0..16, CIFAR pixels 0..255, toy coordinates)."""
        return self.dataset.to_data_units(self.sample(key, num, **kw))


CALIBRATED_GRIDS = "calibrated_grids.json"
# sample() arguments that are not a sampler's own options (what Run.calibrated_grid must not pass on)
_NOT_SAMPLER_OPTIONS = ("steps", "grid", "ts", "t_end", "rho", "sigma_min", "denoise", "cond", "guidance",
                        "guide_model", "dtype", "return_info", "trajectory", "x_init", "shape", "score_fn",
                        "velocity_fn")


def _read_calibrated_grids(path: str) -> dict:
    """The saved calibrated grids of a workdir (``{}`` when there are none); a damaged file is refused by name."""
    if not os.path.exists(path):
        return {}
    try:
        with open(path) as fh:
            saved = json.load(fh)
    except (OSError, ValueError) as err:
        raise ValueError(f"{path} is not a readable calibrated-grids file ({err}); move it away to calibrate again.") from err
    if not isinstance(saved, dict):
        raise ValueError(f"{path} does not hold a JSON object of calibrated grids; move it away to calibrate again.")
    return saved


def grid_labels(num_classes: int, num: int) -> tuple[np.ndarray | None, int | None]:
    """A conditional run's sample grid: ``(labels, columns)`` with one row per class (``max(1, num // K)`` samples
    of each class); ``(None, None)`` for an unconditional run."""
    if not num_classes:
        return None, None
    per_class = max(1, num // num_classes)
    return np.repeat(np.arange(num_classes, dtype=np.int32), per_class), per_class


def process_batches(n_batches: int, compute: Callable[[int], tuple[np.ndarray, float]], rows: int,
                    row_shape: tuple[int, ...], *, distributed: bool = True) -> tuple[list[np.ndarray], list[float]]:
    """Every batch's ``compute(i) = (array [rows_i ≤ rows, *row_shape], scalar)`` for ``i < n_batches``, in order, on
    every process: with several processes (``distributed``), process ``p`` computes the batches ``i ≡ p (mod P)``
    and the results are all-gathered (arrays padded to ``rows``). A batch is computed by exactly one process with
    its own key, so the results do not depend on the process count. Every process must call it (a collective)."""
    count, me = jax.process_count(), jax.process_index()
    if not distributed or count == 1:
        outs = [compute(i) for i in range(n_batches)]
        return [o[0] for o in outs], [float(o[1]) for o in outs]
    from jax.experimental import multihost_utils

    per = math.ceil(n_batches / count)
    arrays = np.zeros((per, rows, *row_shape), np.float64)
    lengths = np.zeros((per,), np.int64)
    scalars = np.zeros((per,), np.float64)
    for slot, i in enumerate(range(me, n_batches, count)):
        array, scalar = compute(i)
        arrays[slot, : len(array)] = np.asarray(array, np.float64)
        lengths[slot], scalars[slot] = len(array), float(scalar)
    gathered = [np.asarray(g) for g in multihost_utils.process_allgather((arrays, lengths, scalars))]
    out_arrays, out_scalars = [], []
    for i in range(n_batches):
        p, slot = i % count, i // count
        out_arrays.append(gathered[0][p, slot, : int(gathered[1][p, slot])])
        out_scalars.append(float(gathered[2][p, slot]))
    return out_arrays, out_scalars


def _local_mesh(batch_size: int) -> Mesh | None:
    """A mesh of this process's devices along ``"data"`` when there are several and they divide the batch."""
    devices = jax.local_devices()
    if len(devices) < 2 or batch_size % len(devices):
        return None
    return Mesh(np.asarray(devices), ("data",))


def sampler_call(config, overrides: dict) -> tuple[str, dict]:
    """``(sampler, options for jaxdiff.sample)``: the config's (:func:`sampler_settings`), with ``overrides`` on top
    (another ``sampler`` drops the config's options, which were for its own)."""
    name, options = C.sampler_settings(config)
    if "sampler" in overrides:
        name, options = overrides["sampler"], {}
    options.update({k: v for k, v in overrides.items() if k != "sampler"})
    return name, options


def draw_samples(config, score_model, sde, key, num: int, *, batch_size: int | None = None, return_nfe: bool = False,
                 x_source: np.ndarray | None = None, cond: Any = None, guidance: float | None = None,
                 distributed: bool = False, **overrides):
    """``num`` samples (model space, numpy) in batches of ``batch_size`` (default ``eval.batch_size``); with
    ``return_nfe`` also the mean number of network evaluations per sample path. ``x_source`` (``[num, *shape]``,
    model space): start there instead of ``N(0, I)`` (a translation run's source rows). ``cond``: class labels
    (an int, or ints ``[num]``) of a conditional run, with classifier-free ``guidance`` weight ``w``.

    Batch ``i`` is drawn with the ``i``-th of ``jax.random.split(key, n_batches)`` whatever runs it: each batch is
    sharded over this process's devices (its prior noise drawn from the same key as on one device, the model
    replicated), and with ``distributed=True`` (every process calling) the batches are spread over the processes and
    gathered — the same samples for the same key on 1 device, N devices or N processes."""
    from jaxdiff.sampling import sample, translate

    name, options = sampler_call(config, overrides)
    shape = C.data_shape(config)
    batch_size = int(batch_size or config.eval.batch_size)
    if cond is not None:
        cond = np.broadcast_to(np.asarray(cond), (num,))
        options.update(guidance=guidance)
    mesh = _local_mesh(batch_size)
    if mesh is not None:
        score_model = jax.device_put(score_model, NamedSharding(mesh, P()))
    sharded = (lambda a: jax.device_put(a, NamedSharding(mesh, P("data")))) if mesh is not None else jnp.asarray
    keys = jax.random.split(key, math.ceil(num / batch_size))

    def draw(i: int):
        k = keys[i]
        n = min(batch_size, num - i * batch_size)
        call = dict(options)
        if cond is not None:  # padded like the states (label 0 for the padding rows)
            labels = np.zeros((batch_size,), np.int32)
            labels[:n] = cond[i * batch_size: i * batch_size + n]
            call["cond"] = sharded(labels)
        # one compiled program per distinct batch size: pad the last batch instead of recompiling
        if x_source is None:
            if mesh is None:
                x, info = sample(k, score_model, sde, shape=(batch_size, *shape), sampler=name, return_info=True,
                                 **call)
            else:  # the prior noise sample() would draw from this key, placed across the devices
                dtype = jnp.result_type(float)
                x_init = sde.prior_sample(jax.random.split(k)[0], (batch_size, *shape), dtype)
                x, info = sample(k, score_model, sde, x_init=sharded(x_init), sampler=name, return_info=True, **call)
        else:
            chunk = np.asarray(x_source[i * batch_size: i * batch_size + n], np.float32)
            chunk = np.concatenate([chunk, np.zeros((batch_size - n, *shape), np.float32)])
            x, info = translate(k, score_model, sde.path, sharded(chunk), sampler=name, return_info=True, **call)
        return np.asarray(x)[:n], float(info["nfe"])

    out, nfes = process_batches(len(keys), draw, batch_size, shape, distributed=distributed)
    samples = np.concatenate(out).astype(jnp.result_type(float))
    return (samples, float(np.mean(nfes))) if return_nfe else samples


# --------------------------------------------------------------------------------------------------
# Workdir helpers
# --------------------------------------------------------------------------------------------------


def _config_from_json(text: str) -> ml_collections.ConfigDict:
    def tuples(d):
        return {k: tuples(v) if isinstance(v, dict) else (tuple(v) if isinstance(v, list) and k != "fir_kernel" else v)
                for k, v in d.items()}

    return ml_collections.ConfigDict(tuples(json.loads(text)))


def _with_schema_defaults(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """A saved config completed with the schema's defaults for keys added since it was written."""
    full = C.default_config()
    full.update_from_flattened_dict({k: v for k, v in C._flatten(config).items() if k in C._flatten(full)})
    return full


def _write_json(path: str, obj: Any) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(obj, fh, indent=2, sort_keys=True, default=float)
    os.replace(tmp, path)


def check_workdir(config: Any, workdir: str) -> None:
    """Refuse a workdir whose saved config differs in a state-defining field (named in the error)."""
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        return
    with open(path) as fh:
        saved = C.flatten_config(_config_from_json(fh.read()))
    diffs = C.incompatible_fields(saved, C.flatten_config(config))
    if diffs:
        raise IncompatibleWorkdirError(
            f"workdir {workdir!r} holds a run with an incompatible config; refusing to resume it. Differing fields:\n  - "
            + "\n  - ".join(diffs) + "\nUse a new --workdir, or the original config."
        )


def image_grid(images: np.ndarray, *, num_levels: int | None = None, cols: int | None = None) -> np.ndarray:
    """Tile ``[N, H, W, C]`` data-unit images into one uint8 ``[rows·(H+1)+1, cols·(W+1)+1(, 3)]`` grid
    (``cols`` default ``⌈√N⌉``; a conditional run's grid has one row per class)."""
    images = np.asarray(images)
    n, h, w, c = images.shape
    if num_levels is not None and num_levels != 256:
        images = np.round(images.astype(np.float64) * 255.0 / (num_levels - 1))
    images = np.clip(images, 0, 255).astype(np.uint8)
    cols = int(math.ceil(math.sqrt(n))) if not cols else int(cols)
    rows = int(math.ceil(n / cols))
    grid = np.full((rows * (h + 1) + 1, cols * (w + 1) + 1, c), 255, np.uint8)
    for i in range(n):
        r, q = divmod(i, cols)
        grid[1 + r * (h + 1): 1 + r * (h + 1) + h, 1 + q * (w + 1): 1 + q * (w + 1) + w] = images[i]
    if c == 1:
        grid = grid[..., 0]
    scale = max(1, 512 // grid.shape[0])
    return np.repeat(np.repeat(grid, scale, axis=0), scale, axis=1)


def write_sample_grid(path: str, samples_data_units: np.ndarray, dataset: Dataset, *, cols: int | None = None) -> str:
    """A PNG grid of image samples (``cols`` per row), or a 2-D histogram of point samples."""
    from jaxdiff.images import density_image, histogram_2d, write_png

    if dataset.is_image:
        return write_png(path, image_grid(samples_data_units, num_levels=dataset.num_levels, cols=cols))
    extent = float(np.abs(dataset.train).max()) * 1.1
    return write_png(path, density_image(histogram_2d(samples_data_units, extent, 200)))


class _Progress:
    """A one-line progress bar on stderr: step, loss, steps/s, ETA."""

    def __init__(self, total: int, start: int, enabled: bool):
        self.total, self.start, self.enabled = total, start, enabled
        self.t0 = time.time()

    def update(self, step: int, loss: float) -> float:
        rate = (step - self.start) / max(time.time() - self.t0, 1e-9)
        if self.enabled:
            eta = (self.total - step) / rate if rate > 0 else float("inf")
            eta_s = time.strftime("%H:%M:%S", time.gmtime(eta)) if math.isfinite(eta) else "?"
            width = 24
            done = int(width * step / max(self.total, 1))
            bar = "#" * done + "-" * (width - done)
            sys.stderr.write(f"\r[{bar}] {step}/{self.total} | loss {loss:.4g} | {rate:.2f} steps/s | ETA {eta_s}  ")
            sys.stderr.flush()
        return rate

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")
            sys.stderr.flush()


# --------------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------------


def train(config: Any, workdir: str, *, progress: bool = True, log: Callable[[str], None] | None = None) -> Run:
    """Train (or resume) the run a config describes in ``workdir``; returns the final :class:`Run`.

    Everything that can be checked is checked before compiling: the config (against the schema and the
    device count), the data (a missing CIFAR-10 path says what to download), and the workdir (a saved
    run with an incompatible config is refused; a workdir that is a file or not writable too). One process
    trains into a workdir at a time (:class:`jaxdiff.training.lock.WorkdirLock`, held by process 0: a second
    launch raises :class:`~jaxdiff.training.lock.WorkdirLockedError` naming the holder). On resume the newest
    checkpoint that reads completely is used (:meth:`Checkpointer.restore_readable`: damaged newer steps are
    reported and renamed aside). A non-finite loss stops the run with :class:`NonFiniteLossError` naming the
    step; the last checkpoint saved is the last good state.
    """
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    C.validate_config(config, device_count=jax.device_count())
    check_inception_files(config)
    check_workdir_path(workdir)
    dataset = load_dataset(config.data)
    source = load_dataset(config.data, config.data.source) if C.has_data_source(config) else None
    os.makedirs(workdir, exist_ok=True)
    lock = WorkdirLock(workdir, log=log).acquire() if jax.process_index() == 0 else None
    try:
        return _train(config, workdir, dataset, source, progress=progress, log=log)
    finally:
        if lock is not None:
            lock.release()


def check_workdir_path(workdir: str) -> None:
    """Refuse (:class:`ConfigError`) a workdir that is a file, or a folder this process cannot write."""
    if not isinstance(workdir, str) or not workdir:
        raise C.ConfigError(f"workdir must be a folder path, got {workdir!r}.")
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise C.ConfigError(f"workdir {workdir!r} is a file, not a folder: use another --workdir.")
    if os.path.isdir(workdir):
        if not os.access(workdir, os.W_OK | os.X_OK):
            raise C.ConfigError(f"workdir {workdir!r} is not writable by this user: use another --workdir.")
        return
    parent = os.path.dirname(os.path.abspath(workdir))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent) or not os.access(parent, os.W_OK | os.X_OK):
        raise C.ConfigError(f"workdir {workdir!r} cannot be created: {parent!r} is "
                            f"{'not a folder' if not os.path.isdir(parent) else 'not writable'}.")


def _train(config: Any, workdir: str, dataset: Dataset, source: Dataset | None, *, progress: bool,
           log: Callable[[str], None]) -> Run:
    """:func:`train` once the config, data and workdir are checked and the workdir's lock is held."""
    check_workdir(config, workdir)
    is_main = jax.process_index() == 0
    had_eval = os.path.exists(os.path.join(workdir, "eval.json"))  # read by every process before anything is written
    if is_main and not os.path.exists(os.path.join(workdir, "config.json")):
        _write_json(os.path.join(workdir, "config.json"), config.to_dict())

    sde = C.build_path(config)
    network = C.build_network(config)
    parameterization = C.build_parameterization(config)
    optimizer = C.build_optimizer(config)
    shape = C.data_shape(config)
    t = config.training
    flow = C.is_flow(config)

    mesh = Mesh(np.asarray(jax.devices()), ("data",))
    replicated = NamedSharding(mesh, P())
    batch_sharding = NamedSharding(mesh, P("data"))
    key = jax.random.key(config.seed)
    k_init, k_train, k_sample = jax.random.split(key, 3)

    def fresh_state():
        return create_train_state(init_model_params(config, network, shape, k_init), optimizer, k_train)

    run_stages = C.stages(config)
    total = t.n_iters * len(run_stages)
    staged = len(run_stages) > 1  # the checkpoint then also holds the current stage's teacher

    def pack(state_, teacher_):
        return {"train": state_, "teacher": teacher_} if staged else state_

    abstract_state = jax.eval_shape(fresh_state)
    abstract = jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=replicated),
                                      pack(abstract_state, abstract_state.params))
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), max_to_keep=t.max_to_keep)
    # Flows couple source and target on the global batch: every process reads all its rows (make_flow_pairs).
    stream = make_stream(dataset, global_batch=t.batch_size, seed=config.seed,
                         process_index=0 if flow else jax.process_index(),
                         process_count=1 if flow else jax.process_count(), source=source,
                         paired=bool(config.data.paired), labels=C.num_classes(config) > 0)
    pairs = make_flow_pairs(config, dataset, process_index=jax.process_index(),
                            process_count=jax.process_count(), source=source) if flow else None
    iterator = DataIterator(stream)
    start = ckpt.latest_step()
    if start is not None:
        def readable(restored_, meta_):  # a step is trusted once its state and iterator position both read
            step_ = int(np.asarray((restored_["train"] if staged else restored_).step.addressable_data(0)))
            if meta_.get("step") != step_:
                raise ValueError(f"the metadata's step {meta_.get('step')!r} is not the state's step {step_}")
            if "data_iterator" in meta_:
                iterator.set_state(meta_["data_iterator"])
            else:  # an imported checkpoint (experiments.import_checkpoint): the data stream starts afresh
                log(f"checkpoint step {step_} records no data-stream position (imported weights): the data stream "
                    "starts from its beginning")

        restored, meta, start = ckpt.restore_readable(abstract, validate=readable, log=log, move_aside=is_main)
        state, teacher = (restored["train"], restored["teacher"]) if staged else (restored, None)
        log(f"resumed {workdir} from checkpoint step {start}")
    else:
        state = _xla.jit(fresh_state, once=True, out_shardings=replicated)()
        teacher = jax.tree_util.tree_map(jnp.copy, state.params) if staged else None  # (the step donates state)
        start = 0
    n_params = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(abstract_state.params))
    what = f"{t.objective} on {type(sde.path).__name__}, coupling {config.flow.coupling}" if flow else t.sde
    if C.is_bridge(config):
        what = f"{t.objective}, bridge σ = {config.flow.sigma:g}, coupling {config.flow.coupling}"
    if source is not None:
        what += f", {source.name} → {dataset.name}" + (" (paired)" if config.data.paired else "")
    log(f"{config.model.name} ({what}): {n_params:,} parameters; {jax.device_count()} device(s), {jax.process_count()} "
        f"process(es); batch {t.batch_size}; steps {start} → {total}"
        + (f" (stages {' → '.join(run_stages)}, {t.n_iters} steps each)" if staged else ""))

    step_fns: dict[tuple[str, int], Callable] = {}
    loss_fns: dict[str, Callable] = {}

    def stage_step(index: int, steps: int) -> Callable:
        """The compiled step of stage ``index`` running ``steps`` optimizer steps per call (``n_jitted_steps``)."""
        kind = "data" if index == 0 else run_stages[index]  # the first stage trains on the data stream
        if kind not in loss_fns:
            if kind == "data":
                loss_fns[kind] = make_loss_fn(config, dataset, sde, network, parameterization, source)
            else:
                loss_fns[kind] = make_pair_loss_fn(config, sde, network, parameterization, kind=kind)
        if (kind, steps) not in step_fns:
            step_fns[kind, steps] = make_train_step(loss_fns[kind], optimizer, ema_rate=config.model.ema_rate,
                                                    ema_warmup=config.model.ema_warmup, mesh=mesh,
                                                    steps_per_call=steps, per_step_metrics=True)
        return step_fns[kind, steps]

    pool, pool_stage = None, None
    stacked_sharding = NamedSharding(mesh, P(None, "data"))

    def global_batch(local, steps: int = 1):
        sharding = batch_sharding if steps == 1 else stacked_sharding
        return jax.tree_util.tree_map(
            lambda a: jax.make_array_from_process_local_data(sharding, np.asarray(a)), local)

    def save(step_now: int) -> None:
        ckpt.save(step_now, pack(state, teacher), {"data_iterator": iterator.get_state(), "step": step_now})

    def sample_grid(step_now: int) -> None:
        if not is_main:
            return
        model = _model_wrapper(config, network, parameterization, sde, _local_copy(state.ema_params))
        num = t.num_grid_samples
        x_source = None if source is None else source.to_model(source.test[np.arange(num) % len(source.test)])
        labels, cols = grid_labels(C.num_classes(config), num)
        if labels is not None:
            num = len(labels)
        samples = draw_samples(config, model, sde, jax.random.fold_in(k_sample, step_now), num, batch_size=num,
                               x_source=x_source, cond=labels,
                               guidance=None if labels is None else float(config.sampling.guidance))
        path = os.path.join(workdir, "samples", f"step_{step_now:07d}.png")
        write_sample_grid(path, dataset.to_data_units(samples), dataset, cols=cols)
        log(f"\nwrote {path}")

    metrics_path = os.path.join(workdir, "metrics.jsonl")
    bar = _Progress(total, start, progress and is_main)
    window: list[tuple[int, Any]] = []
    last_good = start
    step = start
    sample_every = t.sample_freq or (t.snapshot_freq if t.snapshot_sampling else 0)

    def check_window() -> dict:
        nonlocal window, last_good
        chunks = jax.device_get([m for _, m in window])
        steps_done, host = [], []
        for (first, _), m in zip(window, chunks):  # a call's metrics hold one value per step
            for j, (loss_j, norm_j) in enumerate(zip(np.atleast_1d(m["loss"]), np.atleast_1d(m["grad_norm"]))):
                steps_done.append(first + j)
                host.append({"loss": loss_j, "grad_norm": norm_j})
        for s, m in zip(steps_done, host):
            if not (math.isfinite(float(m["loss"])) and math.isfinite(float(m["grad_norm"]))):
                bar.close()
                ckpt.close()
                raise NonFiniteLossError(
                    f"the loss became non-finite ({float(m['loss'])}) at step {s} (grad norm {float(m['grad_norm'])}); "
                    f"training stopped. The last good checkpoint is step {ckpt.latest_step()} in "
                    f"{os.path.join(workdir, 'checkpoints')} (nothing after it was saved). Lower optim.lr, raise "
                    "optim.warmup or set optim.grad_clip, then resume from the same --workdir."
                )
        last = host[-1] if host else None
        window = []
        return {k: float(v) for k, v in last.items()} if last else {}

    per_call = int(t.n_jitted_steps)

    def call_size(step_now: int, index: int) -> int:
        """Steps of the next call: ``n_jitted_steps``, cut at the next log / snapshot / sample / stage boundary."""
        ends = [(index + 1) * t.n_iters, total]
        for every in (t.log_freq, t.snapshot_freq, sample_every):
            if every:
                ends.append((step_now // every + 1) * every)
        return max(1, min([per_call] + [e - step_now for e in ends if e > step_now]))

    try:
        while step < total:
            index = min(step // t.n_iters, len(run_stages) - 1)
            kind = run_stages[index]
            n = call_size(step, index)
            if index == 0:
                locals_ = [next(iterator) for _ in range(n)]
                if flow:
                    locals_ = [pairs(local, step + j) for j, local in enumerate(locals_)]
                batch = global_batch(locals_[0] if n == 1 else jax.tree_util.tree_map(
                    lambda *rows: np.stack(rows), *locals_), n)
            else:
                if step == index * t.n_iters:  # entering the stage: the teacher is the last stage's EMA model
                    teacher = jax.tree_util.tree_map(jnp.copy, state.ema_params)
                    if kind.startswith("bridge_"):  # a fresh Adam per DSBM stage: the other drift stays fixed
                        state = state.replace(opt_state=_xla.jit(optimizer.init, once=True, out_shardings=replicated)(state.params))
                if pool_stage != index:  # (re)made from the teacher, deterministically: a resume rebuilds it
                    how = "SDE" if kind.startswith("bridge_") else f"ODE ({config.flow.reflow_sampler})"
                    log(f"stage {index + 1}/{len(run_stages)} ({kind}): {config.flow.reflow_pairs} pairs from the "
                        f"previous stage's {how}")
                    teacher_model = _model_wrapper(config, network, parameterization, sde, _local_copy(teacher))
                    pool = stage_pool(config, sde, teacher_model, index, kind, dataset, source)
                    pool_stage = index
                locals_ = [pool_batch(config, pool, step + j, jax.process_index(), jax.process_count())
                           for j in range(n)]
                batch = global_batch(locals_[0] if n == 1 else jax.tree_util.tree_map(
                    lambda *rows: np.stack(rows), *locals_), n)
            state, metrics = stage_step(index, n)(state, batch)
            window.append((step + 1, metrics))
            step += n
            snapshot = step % t.snapshot_freq == 0 or step == total
            if step % t.log_freq == 0 or snapshot:
                last = check_window()
                rate = bar.update(step, last["loss"])
                if is_main:
                    with open(metrics_path, "a") as fh:
                        fh.write(json.dumps({"step": step, **last, "steps_per_s": rate, "time": time.time()}) + "\n")
            if snapshot:
                save(step)
                last_good = step
            if is_main and sample_every and (step % sample_every == 0 or step == total):
                sample_grid(step)
        if start == total and not ckpt.all_steps():
            save(step)
    finally:
        ckpt.close()
    bar.close()
    del last_good
    run = Run(config=config, workdir=workdir, sde=sde,
              params=_model_wrapper(config, network, parameterization, sde, _local_copy(state.ema_params)),
              network=network, step=step, state=state, _dataset=dataset, _source=source)
    if config.eval.at_end and (start < total or not had_eval):  # every process: evaluation is spread over them
        evaluate_run(run, log=log)
    return run


def _local_copy(tree):
    """A host copy of replicated global arrays, usable by one process alone (sampling, evaluation)."""
    return jax.tree_util.tree_map(lambda a: jnp.asarray(np.asarray(a.addressable_data(0))), tree)


def _model_wrapper(config, network, parameterization, sde, params):
    """The model wrapper of a run: a :class:`jaxdiff.ScoreModel` (network + parameterization), or for a bridge a
    :class:`jaxdiff.BridgeModel` of its two drift networks (flow time in, as the parameterization reads it)."""
    from jaxdiff.parameterization import BridgeModel, ScoreModel

    if C.is_bridge(config):
        return BridgeModel(_flow_apply_fn(network, parameterization, sde), params, float(config.flow.sigma))
    return ScoreModel(make_apply_fn(network), params, parameterization)


# --------------------------------------------------------------------------------------------------
# Reuse of a finished run
# --------------------------------------------------------------------------------------------------


def _warn(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def load_run(workdir: str, *, step: int | None = None, log: Callable[[str], None] | None = None) -> Run:
    """Restore a run from its workdir: the config it was trained with and its latest (or ``step``)
    checkpoint. ``run.params`` is the EMA score model; ``jaxdiff.sample(key, run.params, run.sde,
    shape=(n, *run.shape))`` draws from it with nothing else; every family gives this :class:`Run` (a bridge's
    ``run.params`` is a :class:`jaxdiff.BridgeModel`; ``jaxdiff.translate(key, run.params, run.path, x0)``).
    Without ``step``, the newest checkpoint that reads completely (damaged newer ones are reported through
    ``log``, default stderr, and renamed aside); with ``step``, that one or a clear error."""
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{workdir!r} is not a jaxdiff run: {path} is missing.")
    with open(path) as fh:
        text = fh.read()
    if json.loads(text).get("kind") == "flow":
        raise C.ConfigError(f"{workdir!r} was written by the earlier flow job (jaxdiff.flows.run), which the one "
                            "training job replaced; retrain it with python -m experiments.train and the same config "
                            "file (experiments/configs/{fm,rf,sb}_*.py).")
    config = _config_from_json(text)
    config = _with_schema_defaults(config)
    C.validate_config(config)
    sde = C.build_path(config)
    network = C.build_network(config)
    parameterization = C.build_parameterization(config)
    optimizer = C.build_optimizer(config)
    shape = C.data_shape(config)
    key = jax.random.key(config.seed)

    def fresh_state():
        return create_train_state(init_model_params(config, network, shape, key), optimizer, key)

    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), max_to_keep=config.training.max_to_keep)
    try:
        if ckpt.latest_step() is None:
            raise FileNotFoundError(f"no checkpoint in {os.path.join(workdir, 'checkpoints')}.")
        abstract = jax.eval_shape(fresh_state)
        staged = len(C.stages(config)) > 1  # a staged run's checkpoint also holds the stage's teacher
        like = {"train": abstract, "teacher": abstract.params} if staged else abstract
        if step is None:
            restored, meta, _ = ckpt.restore_readable(like, log=log or _warn, move_aside=jax.process_index() == 0)
        else:
            if int(step) not in ckpt.all_steps():
                raise FileNotFoundError(f"step={step} is not a checkpoint of {ckpt.directory}; it has "
                                        f"{ckpt.all_steps()}.")
            try:
                restored, meta = ckpt.restore(like, step)
            except Exception as err:  # noqa: BLE001
                from jaxdiff.training.checkpoint import NoReadableCheckpointError, _reason

                raise NoReadableCheckpointError(f"checkpoint step {step} in {ckpt.directory} cannot be read "
                                                f"({_reason(err)}).") from None
        state = restored["train"] if staged else restored
    finally:
        ckpt.close()
    return Run(config=config, workdir=workdir, sde=sde,
               params=_model_wrapper(config, network, parameterization, sde, state.ema_params),
               network=network, step=int(state.step), state=state)


def _evaluate_guidance(run: Run, key, labels: np.ndarray, log: Callable[[str], None], drawn: dict) -> dict:
    """A conditional digits run's figures at each weight of ``eval.guidance``: class accuracy of the samples (the
    project's digits classifier, the fraction classified as the label they were drawn for), FD_digits against the
    held-out digits, NFE. Labels are balanced over the classes (``labels``); ``drawn`` receives ``{w: (samples,
    nfe)}`` for reuse."""
    config, dataset = run.config, run.dataset
    if dataset.name not in DIGIT_DOMAINS:
        return {}
    from jaxdiff.metrics import digits_classifier, digits_frechet_distance

    classifier = digits_classifier(0)
    reference = digits_upright(dataset.name, dataset.test)
    rows = []
    for w in config.eval.guidance:
        t0 = time.time()
        x, nfe = run.sample(key, len(labels), return_nfe=True, cond=labels, guidance=float(w), distributed=True)
        drawn[float(w)] = (x, nfe)
        upright = digits_upright(dataset.name, dataset.to_data_units(x))
        rows.append({"guidance": float(w), "class_accuracy": float(np.mean(classifier.predict(upright) == labels)),
                     "fd_digits": float(digits_frechet_distance(upright, reference, seed=0)), "nfe": nfe,
                     "seconds": time.time() - t0})
        log(f"guidance w = {float(w):g}: class accuracy {rows[-1]['class_accuracy']:.3f}, FD_digits "
            f"{rows[-1]['fd_digits']:.3f} ({time.time() - t0:.1f} s)")
    return {"guided": rows, "guided_note": (
        f"{len(labels)} samples with labels balanced over the {run.num_classes} classes at each classifier-free "
        "guidance weight w ((1 + w)·cond − w·uncond; w = 0 is the conditional model); class_accuracy: the fraction "
        "the project's digits classifier assigns to the label drawn for; fd_digits against the held-out digits; nfe: "
        "guided model evaluations per sample (for w ≠ 0 each is one network call on the doubled batch: cond and null)")}


def images_uint8_rgb(dataset: Dataset, data_units: np.ndarray) -> np.ndarray:
    """Images in data units (levels ``0..K−1``) → uint8 RGB ``[N, H, W, 3]`` for the Inception network: levels
    rescaled to 0..255 (``round(k·255/(K − 1))``; CIFAR's are unchanged), a grey channel repeated three times."""
    levels = np.asarray(data_units, np.float64)
    if dataset.num_levels != 256:
        levels = np.round(levels * 255.0 / (dataset.num_levels - 1))
    images = np.clip(levels, 0, 255).astype(np.uint8)
    if images.shape[-1] == 1:
        images = np.repeat(images, 3, axis=-1)
    return images


def check_inception_files(config) -> None:
    """Read ``eval.inception_path`` (every key and shape) and ``eval.fid_stats`` (2048 features) now, so a wrong
    file is refused before training or sampling starts. Raises FileNotFoundError (missing) or ConfigError (not the
    right kind of file), naming the field and the path."""
    from jaxdiff import inception
    from jaxdiff.metrics import load_reference

    e = config.eval
    if e.inception_path:
        try:
            inception.load_params(e.inception_path)
        except FileNotFoundError as err:
            raise FileNotFoundError(f"eval.inception_path={e.inception_path!r}: {err}") from None
        except (OSError, ValueError) as err:
            raise C.ConfigError(f"eval.inception_path={e.inception_path!r}: {err}") from None
    if e.fid_stats:
        try:
            load_reference(e.fid_stats, expected_dim=inception.POOL3_FEATURES)
        except FileNotFoundError as err:
            raise FileNotFoundError(f"eval.fid_stats={e.fid_stats!r}: {err}") from None
        except (OSError, ValueError) as err:
            raise C.ConfigError(f"eval.fid_stats={e.fid_stats!r}: {err}") from None


def inception_metrics(config, dataset: Dataset, samples_data_units: np.ndarray, log: Callable[[str], None]) -> dict:
    """FID (against ``eval.fid_stats``), Inception Score and KID (when the reference file holds activations) of
    the samples, with pytorch-fid's Inception network (``eval.inception_path``, pipeline ``eval.inception_mode``)."""
    from jaxdiff.metrics import (
        fid,
        inception_features_and_logits,
        inception_score,
        kernel_inception_distance,
        load_reference,
    )

    e = config.eval
    t0 = time.time()
    images = images_uint8_rgb(dataset, samples_data_units)
    features, logits = inception_features_and_logits(images, e.inception_path, mode=e.inception_mode,
                                                     batch_size=int(e.inception_batch_size))
    n = len(images)
    splits = min(10, n)
    is_mean, is_std = inception_score(logits, splits=splits, shuffle_seed=2020)
    out: dict[str, Any] = {
        "inception_score": is_mean, "inception_score_std": is_std,
        "inception_note": (f"pytorch-fid's Inception network ({e.inception_mode} pipeline) on {n} samples rounded to "
                           f"uint8; Inception Score as torch-fidelity: {splits} splits after a RandomState(2020) shuffle, softmax of the "
                           "1008 logits without the fc bias"),
        "inception_path": str(e.inception_path),
    }
    if e.fid_stats:
        mu, sigma, activations = load_reference(e.fid_stats, expected_dim=features.shape[1])
        out["fid"] = fid(features, (mu, sigma))
        out["fid_stats"] = str(e.fid_stats)
        if activations is not None:
            subset = min(int(e.kid_subset_size), n, len(activations))
            out["kid"], out["kid_std"] = kernel_inception_distance(features, activations, subset_size=subset)
            out["kid_note"] = f"torch-fidelity's protocol: 100 subsets of {subset}, cubic polynomial kernel, seed 2020"
        else:
            out["kid"] = None
            out["kid_note"] = "not computed: eval.fid_stats holds mu/sigma only (KID needs the reference activations)"
    else:
        out["fid"] = None
        out["fid_note"] = "not computed: set eval.fid_stats (reference statistics: python -m experiments.fid_stats)"
    out["inception_seconds"] = time.time() - t0
    log(f"Inception metrics done in {out['inception_seconds']:.1f} s")
    return out


def evaluate_run(run: Run, *, log: Callable[[str], None] | None = None, write: bool = True) -> dict:
    """The final evaluation, written to ``workdir/eval.json``: bits/dim of held-out data through the
    PF-ODE (Hutchinson) and a sample-quality figure (digits: Fréchet distance in the project's digits
    classifier's features; 2-D data: exact W2 and sliced Wasserstein to held-out points).

    A translation run (``data.source``) carries the held-out source rows to the target and reports the same
    figures against the held-out target rows (digit domains: FD_digits of the upright translated digits, the
    fraction whose class the digits classifier still recognises, and with ``data.paired`` the mean squared
    error to the paired target); there is no likelihood (the source is a data law, not ``N(0, I)``).

    A class-conditional run samples with labels balanced over the classes at ``sampling.guidance`` (its
    ``fd_digits`` and ``class_accuracy``) and reports each weight of ``eval.guidance`` under ``"guided"``; its
    bits/dim is that of the unconditional (null-class) branch, ``p(x)``."""
    from jaxdiff.likelihood import bits_per_dim, log_likelihood

    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    config, dataset = run.config, run.dataset
    e = config.eval
    check_inception_files(config)  # a wrong weights or statistics file is refused before any solve
    out: dict[str, Any] = {"step": run.step, "dataset": dataset.name}
    key = jax.random.fold_in(jax.random.key(config.seed), 7)
    k_deq, k_ll, k_sample = jax.random.split(key, 3)
    t0 = time.time()

    held = dataset.test if e.bpd_dataset == "test" else dataset.train
    if e.bpd_num_examples:
        held = held[: e.bpd_num_examples]
    gaussian_source = bool(getattr(run.sde, "gaussian_source", True))
    if e.enable_bpd and not gaussian_source:
        out["bits_per_dim_note"] = ("not computed: the run's source is a data law or a bridge, so the flow has no "
                                    "closed-form prior density")
    elif e.enable_bpd:
        y = np.asarray(preprocess(dataset, k_deq, held))
        bs = int(e.batch_size)

        def batch_log_likelihood(i: int):  # batch i (rows i·bs ...) with its own key, on whichever process
            chunk = jnp.asarray(y[i * bs: (i + 1) * bs])
            logp_i, info = log_likelihood(jax.random.fold_in(k_ll, i * bs), run.params, run.sde, chunk,
                                          rtol=e.bpd_rtol, atol=e.bpd_atol, max_steps=int(e.bpd_max_steps),
                                          on_max_steps="nan", return_info=True)
            return np.asarray(logp_i), float(info["nfe"])

        logps, nfes = process_batches(math.ceil(len(y) / bs), batch_log_likelihood, bs, ())
        logp = np.concatenate(logps)
        out["bits_per_dim_nfe"] = float(np.max(nfes))
        dims = int(np.prod(dataset.shape))
        if not np.all(np.isfinite(logp)):
            out["bits_per_dim"] = None
            out["bits_per_dim_note"] = (f"not computed: the probability-flow ODE needed more than eval.bpd_max_steps="
                                        f"{e.bpd_max_steps} solver steps (an irregular model, e.g. early in training); "
                                        "raise the cap to compute it")
        elif dataset.num_levels is not None and dataset.dequantize:
            bpd = np.asarray(bits_per_dim(logp, dims, num_levels=dataset.num_levels, data_width=dataset.data_width))
            out["bits_per_dim"] = float(bpd.mean())
            out["bits_per_dim_stderr"] = float(bpd.std(ddof=1) / math.sqrt(len(bpd)))
            out["bits_per_dim_note"] = (f"held-out {dataset.name} ({len(bpd)} examples), uniform dequantization, "
                                        "PF-ODE log-likelihood with Hutchinson's estimator (Rademacher, one probe)")
        elif dataset.num_levels is not None:
            # score_sde's convention (trained on k/(K−1)): bpd of (k + U)/K-dequantized data
            bpd = np.asarray(bits_per_dim(logp, dims, num_levels=dataset.num_levels, data_width=dataset.data_width))
            out["bits_per_dim"] = float(bpd.mean())
            out["bits_per_dim_note"] = "score_sde's convention: trained on k/(K−1), evaluated on dequantized data"
        else:
            out["log_likelihood"] = float(logp.mean())
        log(f"bits/dim or log-likelihood done in {time.time() - t0:.1f} s")

    t1 = time.time()
    num = int(e.num_samples)
    source = run.source
    if source is not None:  # translation: each held-out source row once
        num = min(num, len(source.test))
        out["source"] = source.name
    classes = run.num_classes
    labels = None if not classes else np.arange(num, dtype=np.int32) % classes  # balanced over the classes
    drawn: dict = {}
    if classes:
        out.update(_evaluate_guidance(run, k_sample, labels, log, drawn))
        out["guidance"] = float(config.sampling.guidance)
    if float(config.sampling.guidance) in drawn:  # the same key, labels and weight: the same samples
        model_samples, nfe = drawn[float(config.sampling.guidance)]
    else:
        model_samples, nfe = run.sample(k_sample, num, return_nfe=True, cond=labels, distributed=True)
    samples = dataset.to_data_units(model_samples)
    out["num_samples"] = num
    out["sampler"] = C.sampler_settings(config)[0]
    out["sampler_nfe"] = nfe
    out["sampling_seconds"] = time.time() - t1
    if classes and dataset.name in DIGIT_DOMAINS:
        from jaxdiff.metrics import digits_classifier

        out["class_accuracy"] = float(np.mean(digits_classifier(0).predict(digits_upright(dataset.name, samples))
                                              == labels))
    if dataset.name in DIGIT_DOMAINS:
        from jaxdiff.metrics import digits_classifier, digits_frechet_distance

        upright = digits_upright(dataset.name, samples)
        out["fd_digits"] = float(digits_frechet_distance(upright, digits_upright(dataset.name, dataset.test), seed=0))
        out["fd_digits_note"] = ("Fréchet distance between generated and held-out images in the feature space "
                                 "of jaxdiff's deterministic digits classifier (jaxdiff.metrics.digits_classifier)"
                                 + (" after undoing the target domain's transform" if dataset.name != "digits" else ""))
        if source is not None:
            predicted = digits_classifier(0).predict(upright)
            out["class_preserved"] = float(np.mean(predicted == source.test_labels[:num]))
            if config.data.paired:
                out["mse_to_paired_target"] = float(np.mean((model_samples - dataset.to_model(dataset.test[:num])) ** 2))
    if dataset.is_image and e.inception_path:
        out.update(inception_metrics(config, dataset, samples, log))
    elif dataset.is_image and dataset.name not in DIGIT_DOMAINS:
        out["fid"] = None
        out["fid_note"] = ("not computed: set eval.inception_path (pytorch-fid's Inception weights file) and "
                           "eval.fid_stats (reference statistics: python -m experiments.fid_stats)")
    if not dataset.is_image:
        from jaxdiff.flows.couplings import exact_w2
        from jaxdiff.metrics import sliced_wasserstein

        ref = jnp.asarray(dataset.test)
        m = min(len(samples), len(ref))
        out["sliced_wasserstein"] = float(sliced_wasserstein(jax.random.key(0), jnp.asarray(samples[:m]), ref[:m]))
        m = min(m, 2000)
        out["w2"] = exact_w2(samples[:m], dataset.test[:m])
        out["w2_note"] = f"exact W2 between {m} samples and {m} held-out points (torchcfm's figure)"
    out["eval_seconds"] = time.time() - t0
    log(f"samples and quality figure done in {time.time() - t1:.1f} s")
    if write and jax.process_index() == 0:
        _write_json(os.path.join(run.workdir, "eval.json"), out)
    return out


__all__ = [
    "IncompatibleWorkdirError",
    "NonFiniteLossError",
    "Run",
    "check_workdir",
    "draw_samples",
    "evaluate_run",
    "check_inception_files",
    "grid_labels",
    "image_grid",
    "images_uint8_rgb",
    "inception_metrics",
    "init_params",
    "load_run",
    "make_apply_fn",
    "make_loss_fn",
    "train",
    "write_sample_grid",
]
