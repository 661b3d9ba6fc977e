"""Reliability: damaged checkpoints fall back to the newest readable one (renamed aside, never deleted), one
training process per workdir, and bad input — through the public API and the command lines — ends in a clear
error naming the argument, with no JAX/XLA internals and nothing written first."""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxdiff
from jaxdiff import flows, metrics
from jaxdiff.training import config as C
from jaxdiff.training.checkpoint import Checkpointer, NoReadableCheckpointError
from jaxdiff.training.data import DataError, load_cifar10_arrays
from jaxdiff.training.lock import WorkdirLock, WorkdirLockedError
from jaxdiff.training.run import load_run, train
from tests.test_main_job import tiny_digits

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INTERNALS = ("Traceback", "jaxlib", "XlaRuntimeError", "tensorstore", "TensorStore", "site-packages")

# --------------------------------------------------------------------------------------------------
# Damaged checkpoints
# --------------------------------------------------------------------------------------------------


def _biggest_state_file(step_dir: str) -> str:
    files = [f for f in glob.glob(os.path.join(step_dir, "state", "**"), recursive=True) if os.path.isfile(f)]
    return max(files, key=os.path.getsize)


def _damage(step_dir: str, how: str) -> None:
    if how == "truncate":
        f = _biggest_state_file(step_dir)
        with open(f, "r+b") as fh:
            fh.truncate(os.path.getsize(f) // 2)
    elif how == "delete":
        os.remove(_biggest_state_file(step_dir))
    elif how == "garble":
        f = _biggest_state_file(step_dir)
        data = bytearray(open(f, "rb").read())
        for i in range(64, len(data), 5):
            data[i] ^= 0x5A
        open(f, "wb").write(bytes(data))
    elif how == "metadata":
        with open(os.path.join(step_dir, "meta", "metadata"), "w") as fh:
            fh.write('{"data_iterator": ')
    elif how == "iterator":
        path = os.path.join(step_dir, "meta", "metadata")
        meta = json.load(open(path))
        meta.pop("data_iterator")
        json.dump(meta, open(path, "w"))


@pytest.mark.parametrize("how", ["truncate", "delete", "garble", "metadata"])
def test_checkpointer_falls_back_to_the_newest_readable_step(tmp_path, how):
    state = {"w": jnp.arange(20000.0), "b": {"c": jnp.ones((40, 40))}}
    ckpt = Checkpointer(str(tmp_path), max_to_keep=5)
    ckpt.save(20, state, {"step": 20})
    ckpt.save(40, jax.tree_util.tree_map(lambda a: a + 1, state), {"step": 40})
    ckpt.close()
    _damage(str(tmp_path / "40"), how)
    messages: list[str] = []
    ckpt = Checkpointer(str(tmp_path))
    restored, meta, step = ckpt.restore_readable(jax.eval_shape(lambda: state), log=messages.append)
    ckpt.close()
    assert step == 20 and meta == {"step": 20}
    np.testing.assert_array_equal(np.asarray(restored["w"]), np.asarray(state["w"]))
    assert len(messages) == 1 and "\n" not in messages[0] and "step 40" in messages[0]
    assert "moved aside" in messages[0] and not any(s in messages[0] for s in ("Traceback", "bound method"))
    assert sorted(os.listdir(tmp_path)) == ["20", "40.damaged"]  # renamed aside, nothing deleted


def test_no_readable_checkpoint_names_the_folder_and_moves_nothing(tmp_path):
    state = {"w": jnp.arange(5000.0)}
    ckpt = Checkpointer(str(tmp_path))
    ckpt.save(5, state, {})
    ckpt.close()
    _damage(str(tmp_path / "5"), "truncate")
    ckpt = Checkpointer(str(tmp_path))
    with pytest.raises(NoReadableCheckpointError, match=rf"no checkpoint in {tmp_path} can be read \(step 5: "):
        ckpt.restore_readable(jax.eval_shape(lambda: state))
    ckpt.close()
    assert os.listdir(tmp_path) == ["5"]


@pytest.fixture(scope="module")
def damaged_run(tmp_path_factory):
    """A tiny digits run with checkpoints at steps 2 and 4 (in memory: its final state), then step 4 damaged."""
    workdir = str(tmp_path_factory.mktemp("damaged"))
    config = tiny_digits(n_iters=4)
    config.training.snapshot_freq = 2
    config.training.snapshot_sampling = False
    config.eval.at_end = False
    run = train(config, workdir, progress=False, log=lambda m: None)
    final = jax.tree_util.tree_leaves((run.state.params, run.state.opt_state))
    _damage(os.path.join(workdir, "checkpoints", "4"), "truncate")
    return workdir, config, final


def test_load_run_then_resume_skip_a_damaged_newest_checkpoint(damaged_run):
    workdir, config, final = damaged_run
    messages: list[str] = []
    run = load_run(workdir, log=messages.append)
    assert run.step == 2 and len(messages) == 1 and "step 4" in messages[0] and "using step 2" in messages[0]
    assert os.path.isdir(os.path.join(workdir, "checkpoints", "4.damaged"))
    messages.clear()
    resumed = train(config, workdir, progress=False, log=messages.append)  # redoes steps 3, 4 from step 2
    assert any("resumed" in m and "step 2" in m for m in messages)
    for a, b in zip(jax.tree_util.tree_leaves((resumed.state.params, resumed.state.opt_state)), final):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["2", "4", "4.damaged"]


# --------------------------------------------------------------------------------------------------
# One training process per workdir
# --------------------------------------------------------------------------------------------------


def test_a_second_training_process_is_refused_naming_the_holder(tmp_path):
    workdir = str(tmp_path / "busy")
    os.makedirs(workdir)
    with WorkdirLock(workdir):
        with pytest.raises(WorkdirLockedError, match=rf"in use by another training process \(pid {os.getpid()} on host"):
            train(tiny_digits(n_iters=1), workdir, progress=False, log=lambda m: None)
        proc = subprocess.run([sys.executable, "-m", "experiments.train", f"--workdir={workdir}", "--progress=false",
                               "--config.training.n_iters=1"], cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 2 and f"pid {os.getpid()}" in proc.stderr, proc.stderr[-2000:]
        assert not any(s in proc.stderr for s in INTERNALS)
    assert sorted(os.listdir(workdir)) == [".lock"]  # nothing else was written


def test_a_lock_left_by_a_dead_run_is_taken_over(tmp_path):
    with open(tmp_path / ".lock", "w") as fh:  # what a SIGKILLed run leaves: the record, no flock
        json.dump({"pid": 999999, "host": "gone", "started": "2026-01-01T00:00:00"}, fh)
    messages: list[str] = []
    with WorkdirLock(str(tmp_path), log=messages.append):
        assert json.load(open(tmp_path / ".lock"))["pid"] == os.getpid()
    assert messages and "pid 999999" in messages[0] and "no longer running" in messages[0]


# --------------------------------------------------------------------------------------------------
# Bad input through the API
# --------------------------------------------------------------------------------------------------

KEY = jax.random.PRNGKey(0)
X = jnp.ones((4, 2))


def _score(p, x, t):
    return -x


def _config(**fields):
    config = C.default_config()
    for name, value in fields.items():
        section, field = name.split("__")
        config[section][field] = value
    return config


def _unknown_key():
    config = C.default_config()
    config.training.foo = 1
    return C.validate_config(config)


API_CASES = [
    # processes and mixtures
    ("VPSDE beta_min", lambda: jaxdiff.VPSDE(beta_min=-0.1), ValueError, "beta_min"),
    ("VESDE sigma order", lambda: jaxdiff.VESDE(sigma_min=10.0, sigma_max=1.0), ValueError, "sigma_min"),
    ("OU beta", lambda: jaxdiff.OUProcess(beta=-1.0), ValueError, "beta"),
    ("marginal_std t", lambda: jaxdiff.VPSDE().marginal_std(1.5), ValueError, "t must lie"),
    ("mixture weights", lambda: jaxdiff.GaussianMixture(jnp.array([0.5, 0.6]), jnp.zeros((2, 2)), jnp.ones((2, 2))),
     ValueError, "weights"),
    ("mixture shapes", lambda: jaxdiff.GaussianMixture(jnp.array([0.5, 0.5]), jnp.zeros((3, 2)), jnp.ones((2, 2))),
     ValueError, "weights"),
    ("mixture stds", lambda: jaxdiff.GaussianMixture(jnp.array([0.5, 0.5]), jnp.zeros((2, 2)), -jnp.ones((2, 2))),
     ValueError, "stds"),
    # paths
    ("linear sigma", lambda: jaxdiff.LinearInterpolant(-1.0), ValueError, "sigma"),
    ("bridge sigma", lambda: jaxdiff.BrownianBridge(float("nan")), ValueError, "sigma"),
    # samplers
    ("sampler name", lambda: jaxdiff.sample(KEY, None, jaxdiff.VPSDE(), shape=(4, 2), sampler="nope", score_fn=_score),
     ValueError, "sampler"),
    ("steps", lambda: jaxdiff.sample(KEY, None, jaxdiff.VPSDE(), shape=(4, 2), sampler="euler_maruyama", steps=0,
                                     score_fn=_score), ValueError, "steps"),
    ("shape", lambda: jaxdiff.sample(KEY, None, jaxdiff.VPSDE(), sampler="euler_maruyama", score_fn=_score),
     ValueError, "shape"),
    ("no model", lambda: jaxdiff.sample(KEY, None, jaxdiff.VPSDE(), shape=(4, 2)), ValueError, "score_fn"),
    ("score_fn type", lambda: jaxdiff.sample(KEY, None, jaxdiff.VPSDE(), shape=(4, 2), score_fn=3), TypeError,
     "score_fn"),
    ("grid", lambda: jaxdiff.sample(KEY, None, jaxdiff.VPSDE(), shape=(4, 2), sampler="ddim", grid="weird",
                                    score_fn=_score), ValueError, "grid"),
    ("ts order", lambda: jaxdiff.sample(KEY, None, jaxdiff.VPSDE(), shape=(4, 2), sampler="ddim", ts=[0.5, 0.7],
                                        score_fn=_score), ValueError, "ts"),
    ("sampler option", lambda: jaxdiff.sample(KEY, None, jaxdiff.VPSDE(), shape=(4, 2), sampler="ddim", foo=1,
                                              score_fn=_score), ValueError, "foo"),
    ("gaussian sampler on translation", lambda: jaxdiff.translate(KEY, None, jaxdiff.LinearInterpolant(0.0), X,
                                                                  sampler="dpmpp_2m", velocity_fn=_score),
     ValueError, "source is a data law"),
    ("translate direction", lambda: jaxdiff.translate(KEY, None, jaxdiff.LinearInterpolant(0.0), X,
                                                      direction="sideways", velocity_fn=_score), ValueError, "direction"),
    ("translate dtype", lambda: jaxdiff.translate(KEY, None, jaxdiff.LinearInterpolant(0.0),
                                                  jnp.ones((4, 2), jnp.int32), velocity_fn=_score), TypeError, "x_source"),
    ("log_likelihood model", lambda: jaxdiff.log_likelihood(KEY, None, jaxdiff.VPSDE(), X), ValueError, "score_fn"),
    ("log_likelihood on_max_steps", lambda: jaxdiff.log_likelihood(KEY, None, jaxdiff.VPSDE(), X, score_fn=_score,
                                                                   on_max_steps="skip"), ValueError, "on_max_steps"),
    # losses
    ("dsm weighting", lambda: jaxdiff.dsm_loss(jaxdiff.VPSDE(), _score, weighting="nope"), ValueError, "weighting"),
    ("dsm time_sampling", lambda: jaxdiff.dsm_loss(jaxdiff.VPSDE(), _score, time_sampling="nope"), ValueError,
     "time_sampling"),
    ("fm path", lambda: flows.flow_matching_loss(jaxdiff.VPSDE(), _score), TypeError, "path"),
    ("fm t_eps", lambda: flows.flow_matching_loss(jaxdiff.LinearInterpolant(0.0), _score, t_eps=0.7), ValueError,
     "t_eps"),
    ("bridge direction", lambda: flows.bridge_matching_loss(1.0, _score, direction="up"), ValueError, "direction"),
    ("bridge sigma", lambda: flows.bridge_matching_loss(0.0, _score), ValueError, "sigma"),
    ("interpolant heads", lambda: flows.interpolant_loss(jaxdiff.LinearInterpolant(0.5), _score, heads="three"),
     ValueError, "heads"),
    ("batch keys", lambda: flows.losses.split_batch({"source": X}), ValueError, "target"),
    # couplings
    ("coupling name", lambda: flows.flow_matching_loss(jaxdiff.LinearInterpolant(0.0), _score, coupling="greedy"),
     ValueError, "coupling"),
    ("sinkhorn epsilon", lambda: flows.flow_matching_loss(jaxdiff.LinearInterpolant(0.0), _score, coupling="sinkhorn"),
     ValueError, "epsilon"),
    ("couple sizes", lambda: flows.couple(KEY, X, jnp.ones((5, 2)), "paired"), ValueError, "x1 with 5"),
    ("couple shapes", lambda: flows.couple(KEY, X, jnp.ones((4, 3)), "exact"), ValueError, "x1.shape"),
    ("ot_plan epsilon", lambda: flows.ot_plan(X, X, epsilon=-1.0), ValueError, "epsilon"),
    # training pieces
    ("fit steps", lambda: flows.fit(KEY, lambda p, k, b: 0.0, {}, lambda k: None, steps=0), ValueError, "steps"),
    ("ema_rate", lambda: jaxdiff.training.make_train_step(lambda p, k, b: 0.0, optax.adam(1e-3), ema_rate=1.5),
     ValueError, "ema_rate"),
    ("optimizer lr", lambda: jaxdiff.training.make_optimizer(-1.0), ValueError, "lr"),
    ("max_to_keep", lambda: Checkpointer("/tmp/unused_ckpt", max_to_keep=0), ValueError, "max_to_keep"),
    # configs
    ("config sde", lambda: C.validate_config(_config(training__sde="vp")), C.ConfigError, "training.sde='vp'"),
    ("config objective", lambda: C.validate_config(_config(training__objective="gan")), C.ConfigError,
     "training.objective='gan'"),
    ("config lr", lambda: C.validate_config(_config(optim__lr=-1.0)), C.ConfigError, "optim.lr=-1.0"),
    ("config devices", lambda: C.validate_config(_config(training__batch_size=6), device_count=4), C.ConfigError,
     "training.batch_size=6"),
    ("config source", lambda: C.validate_config(_config(training__objective="flow_matching", data__source="mnist",
                                                         model__embedding_type="positional")),
     C.ConfigError, "data.source='mnist'"),
    ("config sampler", lambda: C.validate_config(_config(sampling__sampler="magic")), C.ConfigError,
     "sampling.sampler='magic'"),
    ("config unknown key", _unknown_key, C.ConfigError, "unknown key 'training.foo'"),
    ("config dsbm paired", lambda: C.validate_config(_config(training__objective="dsbm", flow__sigma=1.0,
                                                             flow__coupling="paired", data__paired=True,
                                                             model__embedding_type="positional")),
     C.ConfigError, "flow.coupling='paired'"),
    # files
    ("run folder", lambda: load_run("/nonexistent/run"), FileNotFoundError, "/nonexistent/run"),
    ("cifar path", lambda: load_cifar10_arrays("/nonexistent.tar.gz"), FileNotFoundError, "data.path"),
    ("frechet shapes", lambda: metrics.frechet_distance(np.ones((10, 3)), np.ones((10, 4))), ValueError, "features"),
]


@pytest.mark.parametrize("make, error, names", [c[1:] for c in API_CASES], ids=[c[0] for c in API_CASES])
def test_bad_api_input_is_refused_naming_the_argument(make, error, names):
    with pytest.raises(error) as info:
        make()
    message = str(info.value)
    assert names in message, message
    assert not any(s in message for s in INTERNALS), message


def test_a_capped_likelihood_solve_reports_instead_of_running_on():
    """eval.bpd_max_steps: reaching the cap gives NaN and converged=False with on_max_steps="nan" (the job then
    writes bits_per_dim null with a note), and diffrax's error by default."""
    log_p, info = jaxdiff.log_likelihood(KEY, None, jaxdiff.VPSDE(), X, score_fn=_score, max_steps=2, rtol=1e-9,
                                         atol=1e-9, on_max_steps="nan", return_info=True)
    assert np.isnan(np.asarray(log_p)).all() and not bool(info["converged"])
    log_p, info = jaxdiff.log_likelihood(KEY, None, jaxdiff.VPSDE(), X, score_fn=_score, on_max_steps="nan",
                                         return_info=True)
    assert np.isfinite(np.asarray(log_p)).all() and bool(info["converged"])
    with pytest.raises(Exception, match="max_steps"):
        jaxdiff.log_likelihood(KEY, None, jaxdiff.VPSDE(), X, score_fn=_score, max_steps=2, rtol=1e-9, atol=1e-9)


def test_the_bad_input_suite_covers_at_least_40_cases():
    assert len(API_CASES) + len(CLI_CASES) + len(FILE_CASES) >= 40


# --------------------------------------------------------------------------------------------------
# Bad input through the command lines and data files
# --------------------------------------------------------------------------------------------------


def _cli(module: str, *args: str, cwd=ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


CLI_CASES = [
    ("unknown key", "experiments.train", ("--config.training.nonexistent=1",), "did you mean"),
    ("misspelt section", "experiments.train", ("--config.trainng.n_iters=1",), "training.n_iters"),
    ("missing config file", "experiments.train", ("--config=experiments/configs/nope.py",), "no such file"),
    ("value type", "experiments.train", ("--config.training.n_iters=abc",), "training.n_iters"),
    ("bad value", "experiments.train", ("--config.optim.lr=-1",), "optim.lr=-1"),
    ("sample without workdir", "experiments.sample", ("--num=3",), "--workdir"),
    ("evaluate a folder that is no run", "experiments.evaluate", ("--workdir=/tmp",), "config.json is missing"),
]


@pytest.mark.parametrize("module, args, names", [c[1:] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES])
def test_cli_mistakes_exit_2_with_one_message_and_write_nothing(tmp_path, module, args, names):
    workdir = tmp_path / "run"
    extra = (f"--workdir={workdir}",) if module == "experiments.train" else ()
    proc = _cli(module, *args, *extra)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert names in proc.stderr and "error:" in proc.stderr, proc.stderr[-2000:]
    assert not any(s in proc.stderr for s in INTERNALS), proc.stderr[-2000:]
    assert not workdir.exists()


def test_a_workdir_that_is_a_file_exits_2(tmp_path):
    path = tmp_path / "a_file"
    path.write_text("mine")
    proc = _cli("experiments.train", f"--workdir={path}", "--config.training.n_iters=1")
    assert proc.returncode == 2 and "is a file, not a folder" in proc.stderr, proc.stderr[-2000:]
    assert path.read_text() == "mine"


def _truncated_archive(tmp_path):
    import io
    import pickle
    import tarfile

    path = tmp_path / "cifar.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            raw = pickle.dumps({b"data": np.zeros((10, 3072), np.uint8), b"labels": [0] * 10})
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return str(path)


def _not_an_archive(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("not CIFAR")
    return str(path)


def _wrong_shapes(tmp_path):
    import pickle

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (folder / name).write_bytes(pickle.dumps({b"data": np.zeros((10, 100), np.uint8), b"labels": [0] * 10}))
    return str(folder)


FILE_CASES = [("truncated archive", _truncated_archive), ("not an archive", _not_an_archive),
              ("wrong shapes", _wrong_shapes)]


@pytest.mark.parametrize("make", [c[1] for c in FILE_CASES], ids=[c[0] for c in FILE_CASES])
def test_damaged_data_files_are_refused_naming_the_file(tmp_path, make):
    path = make(tmp_path)
    with pytest.raises(DataError) as info:
        load_cifar10_arrays(path)
    assert "data.path" in str(info.value) and path in str(info.value)
    assert not any(s in str(info.value) for s in INTERNALS)
