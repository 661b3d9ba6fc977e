"""score_sde checkpoints in jaxdiff: outputs equal score_sde_pytorch's on its own checkpoints.

``fixtures/score_sde_<name>.pth`` are checkpoints written by score_sde_pytorch (commit cb1f359, PyTorch 2.14.1) for
reduced-size DDPM++ (VP), NCSN++ (VE: Fourier embedding, FIR resampling, residual input pyramid) and DDPM networks
with seeded random weights (every parameter non-zero; EMA weights ≠ model weights for the first two; the DDPM file
holds the EMA weights for both, stored once, in torch's legacy format); ``..._reference.npz`` holds the inputs and
score_sde's outputs: ``get_score_fn(sde, model, train=False, continuous=True)(x, t)`` with the EMA weights (and with
the model weights), and the raw network output on the labels it feeds the network.
"""

from __future__ import annotations

import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdiff
from experiments.configs import ve_cifar, vp_cifar, vp_ddpm_cifar
from jaxdiff.models import CheckpointImportError, import_score_sde, load_score_sde_params
from jaxdiff.models.score_sde_import import score_sde_config
from jaxdiff.training import config as C

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
CASES = {"vp_ddpmpp": vp_cifar, "ve_ncsnpp": ve_cifar, "vp_ddpm": vp_ddpm_cifar}


def small_config(name: str, image_size: int = 16):
    config = CASES[name].get_config()
    config.data.image_size = image_size
    config.model.nf = 32 if name == "vp_ddpm" else 8
    config.model.ch_mult = (1, 1) if name == "vp_ddpm" else (1, 2)
    config.model.num_res_blocks = 1
    config.model.attn_resolutions = (image_size // 2,)
    return config


def checkpoint(name: str) -> str:
    return os.path.join(FIXTURES, f"score_sde_{name}.pth")


def reference(name: str) -> dict:
    with np.load(os.path.join(FIXTURES, f"score_sde_{name}_reference.npz")) as data:
        return {k: data[k] for k in data.files}


def torch_float32_std_ratio(sde_kind: str, t: np.ndarray) -> np.ndarray:
    """score_sde_pytorch's float32 marginal std over the exact one: its ``sqrt(1 − exp(2 log α))`` in float32 loses
    ~1e-4 relative at t = 1e-3 (jaxdiff uses expm1), so its score there is off by that factor."""
    t32, b0, b1 = t.astype(np.float32), np.float32(0.1), np.float32(20.0)
    log_alpha32 = np.float32(-0.25) * t32 * t32 * (b1 - b0) - np.float32(0.5) * t32 * b0
    t64 = t.astype(np.float64)
    log_alpha = -0.25 * t64**2 * (20.0 - 0.1) - 0.5 * t64 * 0.1
    if sde_kind == "vp":
        return np.sqrt(np.float32(1) - np.exp(np.float32(2) * log_alpha32)) / np.sqrt(-np.expm1(2 * log_alpha))
    return np.ones_like(t64)


def relative_error(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.mark.parametrize("name", sorted(CASES))
def test_network_and_score_equal_score_sde_pytorch(name):
    config = small_config(name)
    ref = reference(name)
    params, info = load_score_sde_params(checkpoint(name), config)
    assert info == {"step": 7, "format": "pytorch", "ema": True}
    network = C.build_network(score_sde_config(config))
    x = jnp.asarray(ref["x_nhwc"])
    if name != "ve_ncsnpp":  # (VE: score_sde divides by σ inside the network; jaxdiff's parameterization does)
        raw = jax.jit(network.apply)({"params": params}, x, jnp.asarray(ref["labels"]))
        assert relative_error(raw, ref["raw_nhwc"]) < 1e-4
    model = import_score_sde(checkpoint(name), config)
    sde = C.build_path(score_sde_config(config))
    score = np.asarray(jax.jit(lambda y, t: model.score(sde, y, t))(x, jnp.asarray(ref["t"])))  # (compiled: 5x faster
    # here than op by op)
    expected = ref["score_nhwc"] * torch_float32_std_ratio("ve" if name == "ve_ncsnpp" else "vp", ref["t"])[:, None,
                                                                                                            None, None]
    for i in range(len(ref["t"])):
        assert relative_error(score[i], expected[i]) < 1e-4, (name, float(ref["t"][i]))
    assert relative_error(score[1:], ref["score_nhwc"][1:]) < 1e-4  # t ≥ 0.25: no correction needed


@pytest.mark.parametrize("name", ["vp_ddpmpp", "ve_ncsnpp"])
def test_model_weights_instead_of_ema(name):
    config = small_config(name)
    ref = reference(name)
    model = import_score_sde(checkpoint(name), config, ema=False)
    sde = C.build_path(config)
    score = np.asarray(jax.jit(lambda y, t: model.score(sde, y, t))(jnp.asarray(ref["x_nhwc"]), jnp.asarray(ref["t"])))
    assert relative_error(score[1:], ref["score_model_nhwc"][1:]) < 1e-4
    assert relative_error(ref["score_model_nhwc"][1:], ref["score_nhwc"][1:]) > 0.1  # the two weight sets differ


def test_sampling_from_an_imported_model():
    config = small_config("vp_ddpmpp")
    model = import_score_sde(checkpoint("vp_ddpmpp"), config)
    sde = C.build_path(config)
    x = jaxdiff.sample(jax.random.key(0), model, sde, shape=(2, 16, 16, 3), sampler="ddim", steps=4)
    assert x.shape == (2, 16, 16, 3) and bool(jnp.all(jnp.isfinite(x)))


def to_score_sde_jax_names(tree: dict, ncsnpp: bool) -> dict:
    """jaxdiff's parameter tree → score_sde (JAX)'s names (the inverse of the importer's renaming)."""
    out: dict = {}
    for k, v in tree.items():
        if k == "_TimeEmbedding_0":
            out.update(v)
            continue
        m = re.fullmatch(r"(\w+?)_(\d+)", k)
        if ncsnpp and m and m.group(1) in ("ResnetBlockBigGAN", "AttnBlock"):
            k = f"{m.group(1)}pp_{m.group(2)}"
        if m and m.group(1) == "FIRConvDownsample":
            k, v = f"Downsample_{m.group(2)}", {"Conv2d_0": {"weight": v["Conv_0"]["kernel"], "bias": v["Conv_0"]["bias"]}}
        out[k] = v
    return out


@pytest.mark.parametrize("name", ["ve_ncsnpp", "vp_ddpm"])
def test_score_sde_jax_checkpoint_format(name, tmp_path):
    # score_sde (JAX) writes flax msgpack of its State: {'step', 'optimizer': {'state', 'target'}, 'lr',
    # 'model_state', 'ema_rate', 'params_ema', 'rng'} with its own layer names. (That score_sde's JAX networks with
    # these names give score_sde_pytorch's outputs was checked in a scratch environment: see benchmarks/RESULTS.md.)
    from flax import serialization

    config = small_config(name)
    ema, _ = load_score_sde_params(checkpoint(name), config)
    raw = jax.tree_util.tree_map(lambda a: a + 1.0, ema)
    ncsnpp = name != "vp_ddpm"
    state = {"step": np.array(5, np.int32), "lr": 2e-4, "model_state": {}, "ema_rate": 0.999,
             "optimizer": {"state": {"step": np.array(5, np.int32), "param_states": {}},
                           "target": to_score_sde_jax_names(raw, ncsnpp)},
             "params_ema": to_score_sde_jax_names(ema, ncsnpp), "rng": np.array([0, 1], np.uint32)}
    path = tmp_path / "checkpoint_5"
    path.write_bytes(serialization.msgpack_serialize(state))
    imported, info = load_score_sde_params(path, config)
    assert info["format"] == "jax"
    jax.tree_util.tree_map(np.testing.assert_array_equal, imported, ema)
    imported_raw, _ = load_score_sde_params(path, config, ema=False)
    jax.tree_util.tree_map(np.testing.assert_array_equal, imported_raw, raw)


def test_a_config_that_does_not_fit_is_refused(tmp_path):
    config = small_config("vp_ddpmpp")
    config.model.nf = 16
    with pytest.raises(CheckpointImportError, match=r"shape .* in the checkpoint"):
        load_score_sde_params(checkpoint("vp_ddpmpp"), config)
    config = small_config("vp_ddpmpp")
    config.model.num_res_blocks = 2
    with pytest.raises(CheckpointImportError, match="parameterized layers"):
        load_score_sde_params(checkpoint("vp_ddpmpp"), config)
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_score_sde_params(tmp_path / "nope.pth", small_config("vp_ddpmpp"))
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"\x80\x02junk")
    with pytest.raises(CheckpointImportError, match="junk.pth"):
        load_score_sde_params(junk, small_config("vp_ddpmpp"))
    other = tmp_path / "other"
    other.write_bytes(b"not msgpack at all")
    with pytest.raises(CheckpointImportError, match="other"):
        load_score_sde_params(other, small_config("vp_ddpmpp"))


def test_import_checkpoint_cli_writes_a_run(tmp_path):
    # The fixture's network at CIFAR-10's 32 × 32 (attention at 16 = the same layers): a normal workdir whose run
    # samples and scores like the imported model.
    import subprocess
    import sys

    from jaxdiff.training.run import load_run

    workdir = tmp_path / "imported"
    args = [sys.executable, "-m", "experiments.import_checkpoint", "--config=experiments/configs/vp_cifar.py",
            "--config.model.nf=8", "--config.model.ch_mult=(1, 2)", "--config.model.num_res_blocks=1",
            f"--checkpoint={checkpoint('vp_ddpmpp')}", f"--workdir={workdir}"]
    root = os.path.dirname(os.path.dirname(__file__))
    done = subprocess.run(args, cwd=root, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "step 7" in done.stdout
    run = load_run(str(workdir))
    assert run.step == 7
    config = small_config("vp_ddpmpp", image_size=32)
    model = import_score_sde(checkpoint("vp_ddpmpp"), config)
    x = jax.random.normal(jax.random.key(1), (2, 32, 32, 3))
    t = jnp.array([0.3, 0.8])
    imported_score, score = (jax.jit(lambda y, s, m=m: m.score(run.sde, y, s))(x, t) for m in (run.params, model))
    np.testing.assert_allclose(imported_score, score, rtol=1e-6, atol=1e-6)
    # an existing run is never overwritten; a wrong config is refused with exit status 2
    again = subprocess.run(args, cwd=root, capture_output=True, text=True, timeout=600)
    assert again.returncode == 2 and "already holds a run" in again.stderr
    wrong = [a.replace("nf=8", "nf=16") for a in args[:-1]] + [f"--workdir={tmp_path / 'w2'}"]
    refused = subprocess.run(wrong, cwd=root, capture_output=True, text=True, timeout=600)
    assert refused.returncode == 2 and "all_modules" in refused.stderr
    assert not (tmp_path / "w2" / "checkpoints").exists()
