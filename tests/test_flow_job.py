"""The flow job from the CLI: `python -m experiments.train --config=experiments/configs/{fm,rf,sb}_*.py`."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

import jaxdiff

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(ROOT, "experiments", "configs")


def _train(config: str, workdir: str, *overrides: str, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "experiments.train", f"--config={os.path.join(CONFIGS, config)}",
           f"--workdir={workdir}", "--progress=false", *overrides]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def rf_run(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("rf"))
    _train("rf_8gaussians.py", workdir, "--config.training.n_iters=60", "--config.flow.reflow_pairs=500",
           "--config.eval.num_samples=200")
    return workdir


def test_flow_job_writes_checkpoints_and_eval_and_loads(rf_run):
    ev = json.load(open(os.path.join(rf_run, "eval.json")))
    assert set(ev) >= {"rf1", "rf2", "distilled"} and ev["distilled"]["nfe"] == 1
    assert all(np.isfinite(ev[k]["w2"]) for k in ("rf1", "rf2", "distilled"))
    run = jaxdiff.load_run(rf_run)
    assert list(run.models) == ["rf1", "rf2", "distilled"]
    x = jaxdiff.sample(jax.random.PRNGKey(0), run.model, run.path, shape=(16, 2), sampler="ode_euler", steps=1)
    assert x.shape == (16, 2) and np.isfinite(np.asarray(x)).all()
    # the distilled model's single Euler step is what eval.json measured on its own samples
    saved = np.load(os.path.join(rf_run, "samples_distilled.npz"))
    again = jaxdiff.translate(jax.random.PRNGKey(0), run.models["distilled"], run.path, saved["source"],
                              sampler="ode_euler", steps=1)
    np.testing.assert_allclose(np.asarray(again), saved["samples"], rtol=1e-4, atol=1e-4)


def test_flow_job_rerun_reloads_and_refuses_a_different_run(rf_run):
    before = os.path.getmtime(os.path.join(rf_run, "checkpoints"))
    proc = _train("rf_8gaussians.py", rf_run, "--config.training.n_iters=60", "--config.flow.reflow_pairs=500",
                  "--config.eval.num_samples=200")
    assert "phase" not in proc.stderr  # nothing retrained
    assert os.path.getmtime(os.path.join(rf_run, "checkpoints")) == before
    proc = _train("fm_8gaussians.py", rf_run, "--config.training.n_iters=10", check=False)
    assert proc.returncode == 2 and "different flow run" in proc.stderr


def test_bridge_job_on_paired_digits(tmp_path):
    workdir = str(tmp_path / "paired")
    _train("sb_digits_paired.py", workdir, "--config.training.n_iters=30", "--config.model.hidden=(64,)",
           "--config.sampling.steps=10")
    ev = json.load(open(os.path.join(workdir, "eval.json")))
    assert {"fd_digits", "class_preserved", "mse_to_paired_target"} <= set(ev["bridge"])
    run = jaxdiff.load_run(workdir)
    x = jaxdiff.translate(jax.random.PRNGKey(0), run.model, run.path, np.zeros((3, 8, 8, 1), np.float32), steps=5)
    assert x.shape == (3, 8, 8, 1)


def test_bad_flow_config_exits_2_naming_the_field(tmp_path):
    proc = _train("fm_8gaussians.py", str(tmp_path / "bad"), "--config.flow.coupling=greedy",
                  "--config.data.target=mnist", check=False)
    assert proc.returncode == 2
    assert "flow.coupling='greedy'" in proc.stderr and "data.target='mnist'" in proc.stderr
    proc = _train("fm_8gaussians.py", str(tmp_path / "bad2"), "--config.data.target=digits", check=False)
    assert proc.returncode == 2 and "same space" in proc.stderr
