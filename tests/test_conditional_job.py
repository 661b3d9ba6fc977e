"""The class-conditional job: labels through the stream and the couplings, label dropout in the loss, a tiny
conditional digits run end to end (per-class sample grid, guided eval.json, the sample CLI with --class and
--guidance), and config validation of the conditional fields."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

import jaxdiff
from jaxdiff.training import config as C
from jaxdiff.training import data as D
from jaxdiff.training.run import grid_labels, load_run, make_flow_pairs, train
from tests.test_main_job import tiny_digits


def indexed_dataset(n=96):
    """Rows whose every pixel is the row's index; labels ``index % 10``: a row tells which label it must carry."""
    train = np.broadcast_to(np.arange(n, dtype=np.float32)[:, None, None, None], (n, 8, 8, 1)).copy()
    labels = (np.arange(n) % 10).astype(np.int32)
    return D.Dataset("digits", train, train[:8], labels, labels[:8], num_levels=17)


def test_the_stream_carries_each_rows_label_on_every_process():
    dataset = indexed_dataset()
    stream = D.make_stream(dataset, global_batch=16, seed=1, labels=True)
    halves = [D.make_stream(dataset, global_batch=16, seed=1, labels=True, process_index=p, process_count=2)
              for p in (0, 1)]
    for i in (0, 5, 7):
        item = stream[i]
        np.testing.assert_array_equal(item["cond"], item["x0"][:, 0, 0, 0].astype(int) % 10)
        np.testing.assert_array_equal(np.concatenate([h[i]["cond"] for h in halves]), item["cond"])
    with pytest.raises(ValueError, match="no class labels"):
        D.make_stream(D.Dataset("ring", dataset.train, dataset.test), global_batch=16, seed=1, labels=True)


def test_labels_follow_their_targets_through_the_exact_ot_coupling():
    from experiments.configs.fm_digits_cond import get_config

    config = get_config()
    config.training.batch_size = 32
    dataset = indexed_dataset()
    pairs = make_flow_pairs(config, dataset)
    item = D.make_stream(dataset, global_batch=32, seed=0, labels=True)[3]
    out = pairs(item, step=3)
    assert set(out) == {"source", "target", "cond"}
    # the coupling permuted the targets (OT moved rows) and each label still belongs to its target row
    assert not np.array_equal(out["target"], item["x0"])
    np.testing.assert_array_equal(out["cond"], out["target"][:, 0, 0, 0].astype(int) % 10)
    # coupled within each class: a class's noise rows are exactly the batch's noise rows at that class's positions
    # (i.i.d. N(0, I) draws, so every class keeps an N(0, I) source), re-paired among themselves
    independent = get_config()
    independent.training.batch_size, independent.flow.coupling = 32, "independent"
    plain = make_flow_pairs(independent, dataset)(item, step=3)
    for c in range(10):
        rows = np.asarray(item["cond"]) == c
        got = np.sort(out["source"][out["cond"] == c].reshape(-1, 64), axis=0)
        np.testing.assert_array_equal(got, np.sort(plain["source"][rows].reshape(-1, 64), axis=0))


def test_grid_labels_make_one_row_per_class():
    labels, cols = grid_labels(10, 100)
    assert cols == 10 and labels.tolist() == np.repeat(np.arange(10), 10).tolist()
    assert grid_labels(0, 100) == (None, None)


def test_conditional_fields_are_validated():
    from experiments.configs.vp_digits_cond import get_config

    config = get_config()
    config.model.num_classes = 7
    config.training.label_dropout = 1.0
    config.eval.guidance = (0.0, float("inf"))
    with pytest.raises(C.ConfigError) as err:
        C.validate_config(config)
    text = str(err.value)
    assert "model.num_classes=7" in text and "(10)" in text
    assert "training.label_dropout=1.0" in text and "eval.guidance" in text
    config = get_config()
    config.training.objective = "dsbm"
    config.flow.sigma = 1.0
    with pytest.raises(C.ConfigError, match="bridges: unconditional"):
        C.validate_config(config)


def tiny_conditional():
    config = tiny_digits(n_iters=4, resolutions=2)  # (the job with down- and upsampling)
    config.model.num_classes = 10
    config.training.label_dropout = 0.25
    config.training.num_grid_samples = 20
    config.sampling.guidance = 1.0
    config.eval.guidance = (0.0, 1.0)  # the grid's weight 1.0 among them: eval reuses those samples
    config.eval.num_samples = 20
    config.eval.enable_bpd = False
    return config


@pytest.fixture(scope="module")
def conditional_run(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("digits_cond"))
    run = train(tiny_conditional(), workdir, progress=False, log=lambda m: None)
    return workdir, run


def test_a_conditional_digits_run_end_to_end(conditional_run):
    workdir, run = conditional_run
    ev = json.load(open(os.path.join(workdir, "eval.json")))
    assert [row["guidance"] for row in ev["guided"]] == [0.0, 1.0]
    for row in ev["guided"]:
        assert 0.0 <= row["class_accuracy"] <= 1.0 and row["fd_digits"] > 0 and row["nfe"] == 4
    assert ev["guidance"] == 1.0 and 0.0 <= ev["class_accuracy"] <= 1.0
    with open(os.path.join(workdir, "samples", "step_0000004.png"), "rb") as fh:
        header = fh.read(24)
    width, height = int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")  # PNG's IHDR
    # one row per class: 10 rows of 2 digits (9 px per tile + border, scaled by the same integer factor)
    assert height / width == pytest.approx((10 * 9 + 1) / (2 * 9 + 1))
    # the reloaded run draws guided samples of a chosen class through jaxdiff.sample
    loaded = load_run(workdir)
    assert loaded.num_classes == 10 and loaded.params.num_classes == 10
    x = jaxdiff.sample(jax.random.key(0), loaded.params, loaded.path, shape=(3, 8, 8, 1), steps=2, cond=4,
                       guidance=2.0)
    assert x.shape == (3, 8, 8, 1) and np.all(np.isfinite(np.asarray(x)))


def test_sample_cli_draws_a_chosen_class_with_guidance(conditional_run, tmp_path):
    workdir, _ = conditional_run
    out = str(tmp_path / "three.npz")
    args = [sys.executable, "-m", "experiments.sample", f"--workdir={workdir}", "--num=4", "--class=3",
            "--guidance=2.0", "--steps=2", f"--out={out}"]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = np.load(out)
    assert data["labels"].tolist() == [3, 3, 3, 3] and data["samples"].shape == (4, 8, 8, 1)
    bad = subprocess.run(args[:4] + ["--class=10"], capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and "--class=10 is not a class of this run: use 0..9" in bad.stderr
