"""Import score_sde's released checkpoints (PyTorch and JAX) into jaxdiff's NCSN++ / DDPM++ / DDPM networks.

score_sde_pytorch saves ``{"model", "ema", "optimizer", "step"}`` with ``torch.save``: ``model`` is the state dict
of the ``DataParallel``-wrapped network (keys ``module.all_modules.<i>.<layer>.<weight|bias|W|b>`` plus the buffer
``module.sigmas``), ``ema`` is ``{"decay", "num_updates", "shadow_params"}`` with the EMA weights as a *list* in the
order of the trainable parameters (the state dict's order without buffers and without the fixed Fourier
projection ``W``). score_sde (JAX) saves a flax msgpack file ``checkpoint_<n>`` whose ``params_ema`` /
``optimizer.target`` trees are named like jaxdiff's (``Conv_0``, ``ResnetBlockBigGANpp_3``, ...).

The match between a checkpoint's layers and jaxdiff's is by order, with every shape checked: score_sde builds its
layers in the order its forward pass uses them, and jaxdiff's Flax modules are created in call order, so the
i-th parameterized layer of one is the i-th of the other. PyTorch layouts are converted (``Conv2d`` OIHW → HWIO,
``Linear`` ``[out, in]`` → ``[in, out]``, GroupNorm ``weight`` → ``scale``).
"""

from __future__ import annotations

import os
import re

import jax
import jax.numpy as jnp
import numpy as np


class CheckpointImportError(ValueError):
    """A checkpoint that does not fit the config's network (names the file, the layer and the shapes)."""


def _flax_layers(network, shape: tuple[int, ...]) -> list[tuple[tuple[str, ...], dict[str, tuple[int, ...]]]]:
    """The network's parameterized layers in creation (= call) order: ``[(path, {param: shape})]``."""
    import flax.linen as nn

    order: list[tuple[str, ...]] = []

    def record(next_fun, args, kwargs, context):
        path = tuple(context.module.scope.path) if context.module.scope is not None else ()
        if path not in order:
            order.append(path)
        return next_fun(*args, **kwargs)

    x = jnp.zeros((1, *shape), jnp.float32)
    with nn.intercept_methods(record):
        variables = jax.eval_shape(lambda: network.init(jax.random.key(0), x, jnp.ones((1,), jnp.float32)))
    params = variables["params"]

    def node(path):
        tree = params
        for name in path:
            tree = tree[name]
        return tree

    layers = []
    for path in order:
        try:
            tree = node(path)
        except (KeyError, TypeError):
            continue
        leaves = {k: tuple(v.shape) for k, v in tree.items() if not isinstance(v, dict)}
        if leaves:
            layers.append((path, leaves))
    return layers


def _torch_layers(state: dict[str, np.ndarray]) -> list[tuple[str, dict[str, np.ndarray]]]:
    """A torch state dict grouped by layer (key prefix), in the dict's order; buffers (``sigmas``) dropped."""
    groups: dict[str, dict[str, np.ndarray]] = {}
    for key, value in state.items():
        key = key[len("module."):] if key.startswith("module.") else key
        if key == "sigmas" or key.endswith("num_batches_tracked"):
            continue
        prefix, _, leaf = key.rpartition(".")
        groups.setdefault(prefix, {})[leaf] = np.asarray(value)
    return list(groups.items())


def _convert_torch_layer(tensors: dict[str, np.ndarray], expected: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    """One torch layer's tensors → the Flax layer's parameters (by the Flax layer's parameter names)."""
    names = set(expected)
    if names == {"kernel", "bias"} and "weight" in tensors:
        w = tensors["weight"]
        kernel = w.transpose(2, 3, 1, 0) if w.ndim == 4 else w.T
        return {"kernel": kernel, "bias": tensors["bias"]}
    if names == {"scale", "bias"} and "weight" in tensors:
        return {"scale": tensors["weight"], "bias": tensors["bias"]}
    if names == {"W", "b"} and {"W", "b"} <= set(tensors):
        return {"W": tensors["W"], "b": tensors["b"]}
    if names == {"W"} and set(tensors) == {"W"}:
        return {"W": tensors["W"]}
    if names == {"embedding"} and "weight" in tensors:
        return {"embedding": tensors["weight"]}
    raise KeyError(f"torch tensors {sorted(tensors)} do not make a layer with parameters {sorted(names)}")


def _set(tree: dict, path: tuple[str, ...], value: dict) -> None:
    for name in path[:-1]:
        tree = tree.setdefault(name, {})
    tree[path[-1]] = value


def params_from_torch_state(state: dict[str, np.ndarray], network, shape: tuple[int, ...], *,
                            source: str = "checkpoint") -> dict:
    """A score_sde_pytorch network state dict → jaxdiff's Flax ``params`` for ``network`` (layer by layer, in
    order, every shape checked; float32)."""
    flax_layers = _flax_layers(network, shape)
    torch_layers = _torch_layers(state)
    if len(flax_layers) != len(torch_layers):
        raise CheckpointImportError(
            f"{source}: the checkpoint has {len(torch_layers)} parameterized layers, the config's network "
            f"{type(network).__name__} has {len(flax_layers)}: the config does not describe this checkpoint (check "
            "model.name, nf, ch_mult, num_res_blocks, attn_resolutions, embedding_type, progressive_input, fir).")
    params: dict = {}
    for (path, expected), (prefix, tensors) in zip(flax_layers, torch_layers):
        where = f"{source}: layer {prefix!r} → {'/'.join(path)}"
        try:
            converted = _convert_torch_layer(tensors, expected)
        except KeyError as err:
            raise CheckpointImportError(f"{where}: {err.args[0]}") from None
        for name, value in converted.items():
            if tuple(value.shape) != expected[name]:
                raise CheckpointImportError(f"{where}: {name} has shape {tuple(value.shape)} in the checkpoint, "
                                            f"{expected[name]} in the config's network.")
        _set(params, path, {k: np.asarray(v, np.float32) for k, v in converted.items()})
    return params


def _ema_state(ckpt: dict, model_state: dict, source: str) -> dict:
    """score_sde_pytorch's EMA ``shadow_params`` list → a state dict keyed like the model's (trainable parameters
    in order; the buffer ``sigmas`` and the fixed Fourier ``W`` keep the model's values)."""
    shadow = ckpt["ema"]["shadow_params"] if isinstance(ckpt.get("ema"), dict) else None
    if not isinstance(shadow, list):
        raise CheckpointImportError(f"{source}: no EMA weights ('ema' with 'shadow_params'); pass ema=False to "
                                    "import the raw model weights.")
    trainable = [k for k in model_state if not (k.endswith("sigmas") or k.endswith("all_modules.0.W"))]
    if len(trainable) != len(shadow):
        raise CheckpointImportError(f"{source}: {len(shadow)} EMA tensors for {len(trainable)} trainable model "
                                    "parameters.")
    out = dict(model_state)
    for key, value in zip(trainable, shadow):
        if tuple(np.shape(value)) != tuple(np.shape(model_state[key])):
            raise CheckpointImportError(f"{source}: EMA tensor for {key} has shape {np.shape(value)}, the model's "
                                        f"{np.shape(model_state[key])}.")
        out[key] = value
    return out


# --- score_sde (JAX, flax msgpack) -------------------------------------------------------------------------------

_JAX_CLASS_NAMES = {"ResnetBlockBigGANpp": "ResnetBlockBigGAN", "AttnBlockpp": "AttnBlock"}
_TIME_EMBEDDING = ("Dense_0", "Dense_1", "GaussianFourierProjection_0")


def _rename_jax_tree(tree: dict, network_name: str) -> dict:
    """score_sde (JAX) parameter names → jaxdiff's: the time embedding's ``Dense_0``, ``Dense_1`` and
    ``GaussianFourierProjection_0`` move under ``_TimeEmbedding_0``; ``ResnetBlockBigGANpp_k`` → ``ResnetBlockBigGAN_k``,
    ``AttnBlockpp_k`` → ``AttnBlock_k``; NCSN++'s FIR input-pyramid ``Downsample_k/Conv2d_0/weight`` →
    ``FIRConvDownsample_k/Conv_0/kernel`` (both HWIO). Arrays become float32 copies."""

    def arrays(node):
        return {k: arrays(v) if isinstance(v, dict) else np.array(v, np.float32) for k, v in node.items()}

    out: dict = {}
    for name, value in tree.items():
        value = arrays(value) if isinstance(value, dict) else np.array(value, np.float32)
        if name in _TIME_EMBEDDING:
            out.setdefault("_TimeEmbedding_0", {})[name] = value
            continue
        m = re.fullmatch(r"([A-Za-z0-9]+?)_(\d+)", name)
        if m and m.group(1) in _JAX_CLASS_NAMES:
            name = f"{_JAX_CLASS_NAMES[m.group(1)]}_{m.group(2)}"
        elif m and m.group(1) == "Downsample" and network_name == "NCSNpp" and "Conv2d_0" in value:
            conv = value["Conv2d_0"]
            name, value = f"FIRConvDownsample_{m.group(2)}", {"Conv_0": {"kernel": conv["weight"], "bias": conv["bias"]}}
        out[name] = value
    return out


def params_from_jax_checkpoint(path: str, network, shape: tuple[int, ...], *, ema: bool = True) -> dict:
    """score_sde (JAX) ``checkpoint_<n>`` (flax msgpack of its ``State``) → jaxdiff params: ``params_ema`` (or
    ``optimizer.target``), names mapped (``ResnetBlockBigGANpp_k`` → ``ResnetBlockBigGAN_k``, ...) and every shape
    checked against the config's network."""
    from flax import serialization

    with open(path, "rb") as f:
        try:
            state = serialization.msgpack_restore(f.read())
        except Exception as err:  # noqa: BLE001
            raise CheckpointImportError(f"{path}: not a flax msgpack checkpoint ({err}).") from None
    if not isinstance(state, dict) or "params_ema" not in state:
        raise CheckpointImportError(f"{path}: a msgpack file without score_sde's 'params_ema' (keys: "
                                    f"{sorted(state) if isinstance(state, dict) else type(state).__name__}).")
    tree = state["params_ema"] if ema else state["optimizer"]["target"]
    params = _rename_jax_tree(tree, type(network).__name__)
    expected = jax.eval_shape(lambda: network.init(jax.random.key(0), jnp.zeros((1, *shape)), jnp.ones((1,))))
    want = jax.tree_util.tree_map(lambda a: tuple(a.shape), expected["params"])
    got = jax.tree_util.tree_map(lambda a: tuple(a.shape), params)
    if want != got:
        flat_w = dict(jax.tree_util.tree_leaves_with_path(want, is_leaf=lambda x: isinstance(x, tuple)))
        flat_g = dict(jax.tree_util.tree_leaves_with_path(got, is_leaf=lambda x: isinstance(x, tuple)))
        diff = sorted({jax.tree_util.keystr(k) for k in set(flat_w) ^ set(flat_g)})[:5]
        raise CheckpointImportError(f"{path}: parameters do not fit the config's network (differing: {diff}).")
    return params


# --- the public entry point ---------------------------------------------------------------------------------------


def score_sde_config(config):
    """A copy of ``config`` whose network is exactly score_sde's: its DDPM normalizes with 32 groups at any width
    (``model.norm_groups = 32``; jaxdiff's default rule agrees at score_sde's CIFAR-10 width ``nf = 128``)."""
    config = config.copy_and_resolve_references() if hasattr(config, "copy_and_resolve_references") else config
    if config.model.name == "ddpm":
        with config.unlocked() if hasattr(config, "unlocked") else _nullcontext():
            config.model.norm_groups = 32
    return config


class _nullcontext:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def load_score_sde_params(checkpoint_path, config, *, ema: bool = True) -> tuple[dict, dict]:
    """``(params, info)`` of a score_sde checkpoint for the config's network; ``info``: ``step``, ``format``
    ("pytorch" | "jax"), ``ema``. Raises FileNotFoundError / CheckpointImportError naming the file."""
    from jaxdiff.training import config as C

    path = os.fspath(checkpoint_path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint: no such file {path!r}.")
    if config.model.name not in ("ncsnpp", "ddpm"):
        raise CheckpointImportError(f"config: model.name={config.model.name!r}; score_sde checkpoints hold 'ncsnpp' "
                                    "(NCSN++ / DDPM++) or 'ddpm' networks.")
    if int(config.model.get("num_classes", 0)):
        raise CheckpointImportError("config: model.num_classes must be 0 (score_sde's networks are unconditional).")
    config = score_sde_config(config)
    network = C.build_network(config)
    shape = C.data_shape(config)
    import zipfile

    with open(path, "rb") as f:
        head = f.read(2)
    if zipfile.is_zipfile(path) or head == b"\x80\x02":  # torch.save (zip archive or legacy pickle stream)
        from jaxdiff._torch_pickle import load_torch_file

        try:
            ckpt = load_torch_file(path)
        except ValueError as err:
            raise CheckpointImportError(f"{path}: {err}") from None
        if not isinstance(ckpt, dict) or "model" not in ckpt:
            raise CheckpointImportError(f"{path}: a torch file without score_sde's 'model' entry (keys: "
                                        f"{sorted(ckpt) if isinstance(ckpt, dict) else type(ckpt).__name__}).")
        state = ckpt["model"]
        if ema:
            state = _ema_state(ckpt, state, path)
        params = params_from_torch_state(state, network, shape, source=path)
        step = ckpt.get("step")
        fmt = "pytorch"
    else:
        params = params_from_jax_checkpoint(path, network, shape, ema=ema)
        step, fmt = None, "jax"
    return params, {"step": None if step is None else int(np.asarray(step)), "format": fmt, "ema": bool(ema)}


def import_score_sde(checkpoint_path, config, *, ema: bool = True):
    """A score_sde checkpoint as a jaxdiff model wrapper for ``config`` (a score_sde-style config of
    ``experiments/configs/``: ``vp_cifar.py``, ``ve_cifar.py``, ``vp_ddpm_cifar.py``, ...).

    ``m.score(sde, x, t)`` equals score_sde_pytorch's ``get_score_fn(sde, model, train=False, continuous=True)``
    with the EMA weights (``ema=False``: the raw model weights), ``x`` in NHWC; ``jaxdiff.sample(key, m, sde,
    shape=...)`` draws from it with any sampler. The matching process is ``jaxdiff.training.config.build_path(config)``.
    """
    from jaxdiff.training import config as C
    from jaxdiff.training.run import _model_wrapper

    params, _ = load_score_sde_params(checkpoint_path, config, ema=ema)
    params = jax.tree_util.tree_map(jnp.asarray, params)
    config = score_sde_config(config)
    return _model_wrapper(config, C.build_network(config), C.build_parameterization(config), C.build_path(config),
                          params)


__all__ = ["CheckpointImportError", "import_score_sde", "load_score_sde_params", "params_from_torch_state"]
