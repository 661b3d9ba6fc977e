"""2-D flows, translation between two data laws, DSBM and paired bridge matching through the one job:
`python -m experiments.train --config=experiments/configs/{fm,rf,sb}_*.py` runs `jaxdiff.training.train`
(the same train step, stream, checkpoints, stages and eval.json as the diffusion main job)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

import jaxdiff
from jaxdiff.parameterization import BridgeModel
from jaxdiff.training.checkpoint import Checkpointer
from jaxdiff.training.data import digits_upright, load_dataset, make_stream
from tests.test_main_job import assert_same_leaves, final_params, kill_after_checkpoint, train_in_process

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(ROOT, "experiments", "configs")


def _args(config: str, workdir: str, *overrides: str) -> list[str]:
    return [sys.executable, "-m", "experiments.train", f"--config={os.path.join(CONFIGS, config)}",
            f"--workdir={workdir}", "--progress=false", *overrides]


def _train(config: str, workdir: str, *overrides: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(_args(config, workdir, *overrides), cwd=ROOT, capture_output=True, text=True, timeout=600)
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


RF_SMALL = ("--config.training.n_iters=10", "--config.flow.reflow_pairs=256", "--config.flow.reflow_sampler=ode_euler",
            "--config.flow.reflow_steps=4", "--config.eval.num_samples=200", "--config.eval.bpd_num_examples=50",
            "--config.eval.batch_size=256", "--config.training.num_grid_samples=100")


@pytest.fixture(scope="module")
def rf_run(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("rf"))
    proc = _train("rf_8gaussians.py", workdir, *RF_SMALL)
    assert "stages flow → reflow → distill" in proc.stderr
    return workdir


def test_rectified_flow_job_writes_eval_and_loads_as_every_run(rf_run):
    ev = json.load(open(os.path.join(rf_run, "eval.json")))
    assert ev["step"] == 30 and ev["sampler"] == "ode_euler" and ev["sampler_nfe"] == 1.0  # the distilled step
    assert np.isfinite(ev["w2"]) and np.isfinite(ev["log_likelihood"])
    assert os.path.exists(os.path.join(rf_run, "samples", "step_0000030.png"))
    run = jaxdiff.load_run(rf_run)
    assert run.step == 30 and run.shape == (2,) and run.model is run.params
    assert type(run.path).__name__ == "FlowProcess"
    x = jaxdiff.sample(jax.random.PRNGKey(0), run.params, run.path, shape=(16, 2), sampler="ode_euler", steps=1)
    y = jaxdiff.sample(jax.random.PRNGKey(0), run.params, run.path, shape=(16, 2), sampler="dpmpp_2m", steps=4)
    assert x.shape == y.shape == (16, 2) and np.isfinite(np.asarray(y)).all()


def test_rerun_reloads_and_a_different_run_is_refused(rf_run):
    proc = _train("rf_8gaussians.py", rf_run, *RF_SMALL)
    assert "steps 30 → 30" in proc.stderr and "stage 2/3" not in proc.stderr  # nothing retrained
    proc = _train("fm_8gaussians.py", rf_run, "--config.training.n_iters=10", check=False)
    assert proc.returncode == 2 and "incompatible config" in proc.stderr and "flow.reflow_rounds" in proc.stderr


def test_paired_bridge_job_on_digit_domains(tmp_path):
    workdir = str(tmp_path / "paired")
    proc = _train("sb_digits_paired.py", workdir, "--config.training.n_iters=8", "--config.model.hidden=(64,)",
                  "--config.sampling.steps=10", "--config.training.num_grid_samples=16")
    assert "digits → digits_rotated (paired)" in proc.stderr
    ev = json.load(open(os.path.join(workdir, "eval.json")))
    assert {"fd_digits", "class_preserved", "mse_to_paired_target"} <= set(ev) and ev["num_samples"] == 359
    assert "bits_per_dim" not in ev and ev["source"] == "digits"
    run = jaxdiff.load_run(workdir)
    assert isinstance(run.params, BridgeModel) and run.params.sigma == 0.5
    x = jaxdiff.translate(jax.random.PRNGKey(0), run.params, run.path, np.zeros((3, 8, 8, 1), np.float32), steps=5)
    back = jaxdiff.translate(jax.random.PRNGKey(0), run.params, run.path, np.asarray(x), steps=5, direction="backward")
    assert x.shape == back.shape == (3, 8, 8, 1)


DSBM_SMALL = ("--config.training.n_iters=6", "--config.flow.dsbm_iterations=1", "--config.flow.reflow_pairs=256",
              "--config.flow.reflow_steps=5", "--config.sampling.steps=5", "--config.eval.num_samples=100",
              "--config.eval.batch_size=256", "--config.training.num_grid_samples=50", "--config.training.max_to_keep=20",
              "--config.training.snapshot_freq=3", "--config.training.snapshot_sampling=false",
              "--config.eval.at_end=false")  # (restart exactness is about the stages' state; eval runs elsewhere)


def test_dsbm_stages_killed_mid_backward_stage_restart_to_the_same_parameters(tmp_path):
    """DSBM's forward and backward drifts as alternating stages: a kill inside the backward stage (whose pairs are
    re-simulated from the teacher in the checkpoint) resumes bit for bit; the drift a stage does not train stays
    exactly fixed (a fresh Adam per stage)."""
    reference = str(tmp_path / "dsbm_ref")
    train_in_process(_args("sb_8gaussians_moons.py", reference, *DSBM_SMALL))
    workdir = str(tmp_path / "dsbm_killed")
    ckpts = os.path.join(workdir, "checkpoints")
    kill_after_checkpoint(_args("sb_8gaussians_moons.py", workdir, *DSBM_SMALL, "--config.training.snapshot_freq=1"),
                          ckpts, lambda s: bool(s) and max(s) >= 8)  # inside the backward stage (steps 7..12)
    restart = _train("sb_8gaussians_moons.py", workdir, *DSBM_SMALL)
    assert "resumed" in restart.stderr and "stage 2/2 (bridge_backward)" in restart.stderr
    assert_same_leaves(final_params(workdir), final_params(reference))
    run = jaxdiff.load_run(reference)
    ckpt = Checkpointer(ckpts, max_to_keep=20)
    try:
        abstract = jax.eval_shape(lambda: {"train": run.state, "teacher": run.state.params})
        after_forward, _ = ckpt.restore(abstract, 6)
    finally:
        ckpt.close()
    for a, b in zip(jax.tree_util.tree_leaves(after_forward["train"].params["forward"]),
                    jax.tree_util.tree_leaves(run.state.params["forward"])):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert isinstance(run.params, BridgeModel)


def test_translation_stream_pairs_rows_and_domains_invert():
    from ml_collections import ConfigDict

    data = ConfigDict({"dataset": "digits_rotated", "test_fraction": 0.2, "split_seed": 0, "centered": True,
                       "uniform_dequantization": False, "random_flip": False, "path": "", "num_examples": 0})
    target, source = load_dataset(data), load_dataset(data, "digits")
    np.testing.assert_array_equal(digits_upright("digits_rotated", target.train), source.train)
    inverted = load_dataset(data, "digits_inverted")
    np.testing.assert_allclose(inverted.to_model(inverted.test), -source.to_model(source.test), atol=1e-6)
    paired = make_stream(target, global_batch=8, seed=3, source=source, paired=True)
    x1, x0 = paired[5]
    np.testing.assert_array_equal(digits_upright("digits_rotated", x1), x0)
    unpaired = make_stream(target, global_batch=8, seed=3, source=source)
    y1, y0 = unpaired[5]
    np.testing.assert_array_equal(y1, x1)  # the target rows do not depend on the source
    assert not np.array_equal(digits_upright("digits_rotated", y1), y0)


@pytest.mark.parametrize("overrides, expected", [
    (("--config.data.source=mnist",), "data.source='mnist'"),
    (("--config.data.source=digits",), "must live in the space"),
    (("--config.data.paired=true", "--config.flow.coupling=paired"), "data.paired=True"),
    (("--config.flow.coupling=greedy",), "flow.coupling='greedy'"),
])
def test_bad_flow_config_exits_2_naming_the_field(tmp_path, overrides, expected):
    proc = _train("fm_moons.py", str(tmp_path / "bad"), *overrides, check=False)
    assert proc.returncode == 2 and expected in proc.stderr, proc.stderr[-2000:]
    assert not os.path.exists(str(tmp_path / "bad" / "checkpoints"))
