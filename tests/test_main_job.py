"""The main job end to end: digits run (checkpoint, samples, eval.json), load_run + jaxdiff.sample,
the sample CLI, resume exactness through the data stream, a kill during training, non-finite loss,
incompatible workdirs, and 2 processes with jax.distributed equal to 1 process.

Runs that must be bit-comparable run in subprocesses (the test process has float64 enabled)."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff.training.run import IncompatibleWorkdirError, NonFiniteLossError, load_run, train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOY = os.path.join(ROOT, "experiments", "configs", "toy_ring.py")


def tiny_digits(n_iters=4, resolutions=1):
    """The digits job with a tiny DDPM++: one resolution (8 x 8, attention there) by default, which compiles in about
    half the time (the digits-run fixture: 27 s instead of 42 s); ``resolutions=2`` adds the 4 x 4 level (down- and
    upsampling, attention at 4), as the conditional job's end-to-end test runs it."""
    from experiments.configs.vp_digits import get_config

    config = get_config()
    config.model.nf = 8
    config.model.ch_mult = (1,) if resolutions == 1 else (1, 2)
    config.model.num_res_blocks = 1
    config.model.attn_resolutions = (8,) if resolutions == 1 else (4,)
    config.training.batch_size = 16
    config.training.n_iters = n_iters
    config.training.snapshot_freq = 2
    config.training.log_freq = 1
    config.training.num_grid_samples = 16
    config.sampling.steps = 4
    config.eval.num_samples = 40
    config.eval.batch_size = 20
    config.eval.bpd_num_examples = 6
    config.eval.bpd_rtol = 1e-2
    config.eval.bpd_atol = 1e-2
    return config


def toy_args(workdir, n_iters, *extra):
    return [sys.executable, "-m", "experiments.train", f"--config={TOY}", f"--workdir={workdir}", "--progress=false",
            f"--config.training.n_iters={n_iters}", "--config.training.snapshot_freq=5",
            "--config.training.log_freq=5", "--config.training.batch_size=64", "--config.training.sample_freq=0",
            "--config.training.snapshot_sampling=false", "--config.eval.at_end=false",
            "--config.model.hidden=(32,32)", "--config.model.embedding_dim=16", *extra]


FM_TOY = os.path.join(ROOT, "experiments", "configs", "fm_8gaussians.py")


def flow_args(workdir, n_iters, *extra):
    """OT-CFM on torchcfm's 8 Gaussians (fm_8gaussians.py: exact OT on the global batch) with a small MLP, no
    evaluation: exact restarts and the 2-process plan are properties of the loop and the coupling, not of the network
    (OT-CFM with a U-Net on digits runs end to end in test_conditional_job.py)."""
    return [sys.executable, "-m", "experiments.train", f"--config={FM_TOY}", f"--workdir={workdir}",
            "--progress=false", f"--config.training.n_iters={n_iters}", "--config.training.snapshot_freq=4",
            "--config.training.log_freq=4", "--config.training.batch_size=64", "--config.training.sample_freq=0",
            "--config.training.snapshot_sampling=false", "--config.eval.at_end=false", "--config.model.hidden=(32,32)",
            "--config.model.embedding_dim=16", *extra]


def train_in_process(args):
    """The run of the CLI arguments ``args`` (``toy_args`` / ``flow_args``: a config file and ``--config.*``
    overrides) through the same ``train`` in this process, in float32 as the CLI runs it: the reference that runs
    in subprocesses (resumed, killed, several processes) must equal, without paying another start and compile."""
    import ast

    from experiments._cli import load_config_file
    from jaxdiff.training.run import train

    options = dict(a[2:].split("=", 1) for a in args if a.startswith("--") and "=" in a)
    config = load_config_file(options.pop("config"))
    workdir = options.pop("workdir")
    assert options.pop("progress") == "false"
    for name, text in options.items():
        *parents, field = name.split(".")[1:]
        node = config
        for parent in parents:
            node = node[parent]
        try:
            value = {"true": True, "false": False}.get(text.lower(), None)
            value = ast.literal_eval(text) if value is None else value
        except (ValueError, SyntaxError):
            value = text
        node[field] = value
    with jax.enable_x64(False):
        train(config, workdir, progress=False, log=lambda m: None)


def final_params(workdir):
    """Params and EMA params of the latest checkpoint, restored in a subprocess-free way."""
    run = load_run(workdir)
    return jax.tree_util.tree_leaves((run.state.params, run.state.ema_params, run.state.opt_state))


def assert_same_leaves(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("digits"))
    run = train(tiny_digits(), workdir, progress=False, log=lambda m: None)
    return workdir, run


def test_digits_run_writes_checkpoints_samples_metrics_and_eval(digits_run):
    workdir, run = digits_run
    assert run.step == 4
    assert sorted(int(s) for s in os.listdir(os.path.join(workdir, "checkpoints")) if s.isdigit()) == [2, 4]
    assert sorted(os.listdir(os.path.join(workdir, "samples"))) == ["step_0000002.png", "step_0000004.png"]
    with open(os.path.join(workdir, "samples", "step_0000004.png"), "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
    lines = [json.loads(x) for x in open(os.path.join(workdir, "metrics.jsonl"))]
    assert [x["step"] for x in lines] == [1, 2, 3, 4] and all(np.isfinite(x["loss"]) for x in lines)
    ev = json.load(open(os.path.join(workdir, "eval.json")))
    assert 0.5 < ev["bits_per_dim"] < 12 and ev["fd_digits"] > 0 and ev["num_samples"] == 40


def test_load_run_gives_what_sample_needs(digits_run):
    import jaxdiff

    workdir, trained = digits_run
    run = jaxdiff.load_run(workdir)
    assert run.step == 4 and run.shape == (8, 8, 1)
    assert_same_leaves(jax.tree_util.tree_leaves(run.params.params), jax.tree_util.tree_leaves(trained.state.ema_params))
    x = jaxdiff.sample(jax.random.key(0), run.params, run.sde, shape=(5, 8, 8, 1), steps=3)
    assert x.shape == (5, 8, 8, 1) and np.all(np.isfinite(np.asarray(x)))
    levels = run.dataset.to_data_units(np.asarray(x))
    assert levels.dtype == np.uint8 and levels.max() <= 16


def test_a_reloaded_run_reuses_the_compiled_sampler_and_likelihood(digits_run):
    """Compile once: two load_runs of the same workdir build two wrappers of equal networks; the second sample and
    log_likelihood hit the first's compiled programs (a trace counter in their Python bodies)."""
    import jaxdiff
    from jaxdiff.sampling.api import TRACES

    workdir, _ = digits_run
    x = np.zeros((3, 8, 8, 1), np.float32)
    counts = []
    for _ in range(2):
        run = jaxdiff.load_run(workdir)
        jaxdiff.sample(jax.random.key(1), run.params, run.path, shape=(3, 8, 8, 1), sampler="ode_euler", steps=2)
        jaxdiff.log_likelihood(jax.random.key(2), run.params, run.path, jnp.asarray(x), rtol=1e-2, atol=1e-2)
        counts.append((TRACES["sample"], TRACES["log_likelihood"]))
    assert counts[1] == counts[0], counts


def test_calibrated_grid_is_saved_with_the_run_and_reused(digits_run, monkeypatch):
    """Run.calibrated_grid fits once per (step, sampler, steps, ...), saves the grid in the workdir, and a later
    load_run (and run.sample(grid="calibrated")) reads it back instead of fitting again."""
    import jaxdiff
    from jaxdiff.sampling import _calibrate

    workdir, _ = digits_run
    path = os.path.join(workdir, "calibrated_grids.json")
    if os.path.exists(path):
        os.remove(path)
    ts = jaxdiff.load_run(workdir).calibrated_grid("dpmpp_2m", 3, rows=8, iterations=3)
    saved = json.load(open(path))
    assert list(saved) == ["step=4|sampler=dpmpp_2m|steps=3|t_end=None|"]
    np.testing.assert_array_equal(saved["step=4|sampler=dpmpp_2m|steps=3|t_end=None|"]["ts"], ts)
    assert ts.shape == (4,) and np.all(np.diff(ts) < 0)

    def no_fitting(*args, **kw):
        raise AssertionError("the saved grid should have been reused")

    monkeypatch.setattr(_calibrate, "calibrate", no_fitting)
    run = jaxdiff.load_run(workdir)
    np.testing.assert_array_equal(run.calibrated_grid("dpmpp_2m", 3), ts)
    x = run.sample(jax.random.key(0), 4, batch_size=4, sampler="dpmpp_2m", steps=3, grid="calibrated")
    y = run.sample(jax.random.key(0), 4, batch_size=4, sampler="dpmpp_2m", ts=ts)
    np.testing.assert_array_equal(x, y)


def test_sample_cli_writes_npz_in_data_units(digits_run, tmp_path):
    """(on the run's saved calibrated grid: --grid=calibrated reads WORKDIR/calibrated_grids.json)"""
    import jaxdiff

    workdir, _ = digits_run
    out = str(tmp_path / "s.npz")
    jaxdiff.load_run(workdir).calibrated_grid("dpmpp_2m", 3, rows=8, iterations=2)  # fitted here unless saved
    before = open(os.path.join(workdir, "calibrated_grids.json")).read()
    proc = subprocess.run([sys.executable, "-m", "experiments.sample", f"--workdir={workdir}", "--num=10",
                           f"--out={out}", "--sampler=dpmpp_2m", "--steps=3", "--grid=calibrated"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert open(os.path.join(workdir, "calibrated_grids.json")).read() == before  # reused, not fitted again
    samples = np.load(out)["samples"]
    assert samples.shape == (10, 8, 8, 1) and samples.dtype == np.uint8 and samples.max() <= 16
    assert os.path.exists(str(tmp_path / "s.png"))


def test_evaluate_cli_rewrites_eval_json_with_fid_is_kid(digits_run, inception_weights, tmp_path):
    # Reference statistics of 24 training digits (rescaled to 0..255, grey → RGB), then the evaluate CLI on the run:
    # bits/dim, FD_digits and FID / IS / KID of 12 samples, eval.json rewritten and printed.
    workdir, _ = digits_run
    stats = tmp_path / "digits_stats.npz"
    proc = subprocess.run([sys.executable, "-m", "experiments.fid_stats", "--config=experiments/configs/vp_digits.py",
                           f"--inception={inception_weights}", f"--out={stats}", "--num=24", "--batch_size=12"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    with np.load(stats) as data:
        assert data["mu"].shape == (2048,) and data["sigma"].shape == (2048, 2048) and data["pool_3"].shape == (24, 2048)
    base = [sys.executable, "-m", "experiments.evaluate", f"--workdir={workdir}", "--num_samples=12"]
    proc = subprocess.run(base + ["--bpd_num_examples=3", f"--inception_path={inception_weights}", f"--fid_stats={stats}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    ev = json.load(open(os.path.join(workdir, "eval.json")))
    assert ev["num_samples"] == 12 and ev["step"] == 4 and np.isfinite(ev["bits_per_dim"])
    assert json.loads(proc.stdout)["fd_digits"] == ev["fd_digits"]
    assert ev["fid"] > 0 and ev["inception_score"] >= 1.0 and np.isfinite(ev["kid"])
    assert ev["sampler"] and ev["fid_stats"] == str(stats)
    base.append("--noenable_bpd")
    # wrong files are refused (exit 2, naming the field and the file) before sampling
    for flag, bad, says in (("--fid_stats", tmp_path / "missing.npz", "missing.npz"),
                            ("--inception_path", stats, "digits_stats.npz")):
        args = base + [f"--inception_path={inception_weights}", f"--fid_stats={stats}", f"{flag}={bad}"]
        proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 2 and says in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-2000:]


SHARDED_DRAW = """
import sys, jax, numpy as np
from jaxdiff.training.run import load_run
assert len(jax.local_devices()) == int(sys.argv[3])
run = load_run(sys.argv[1])
np.save(sys.argv[2], run.sample(jax.random.key(3), 10, batch_size=4, sampler="ddim", steps=4))
"""


def test_samples_sharded_over_two_devices_equal_one_device(digits_run, tmp_path):
    # The same key gives the same samples whether each batch runs on one device or is split over two (simulated)
    # devices: the prior noise comes from the same key, the model is replicated.
    workdir, run = digits_run
    draws = []
    for devices in (1, 2):
        out = tmp_path / f"devices_{devices}.npy"
        env = dict(os.environ, JAX_PLATFORMS="cpu",
                   XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={devices}")
        proc = subprocess.run([sys.executable, "-c", SHARDED_DRAW, workdir, str(out), str(devices)], cwd=ROOT,
                              env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        draws.append(np.load(out))
    one, two = draws
    assert two.shape == one.shape == (10, 8, 8, 1) and np.abs(one).max() > 0.1
    np.testing.assert_allclose(two, one, rtol=1e-4, atol=1e-4 * np.abs(one).max())


def test_incompatible_workdir_is_refused_with_the_differing_fields(digits_run):
    workdir, _ = digits_run
    config = tiny_digits(n_iters=6)
    config.model.nf = 16
    config.training.sde = "subvpsde"
    with pytest.raises(IncompatibleWorkdirError, match=r"(?s)model\.nf: checkpoint has 8, config has 16.*training\.sde"):
        train(config, workdir, progress=False, log=lambda m: None)


def test_non_finite_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    from experiments.configs.toy_ring import get_config

    config = get_config()  # (the loop's handling, whatever the network: the toy job's MLP, small)
    config.model.hidden, config.model.embedding_dim = (32, 32), 16
    config.training.n_iters, config.training.batch_size, config.training.log_freq = 6, 64, 1
    config.training.snapshot_freq, config.training.sample_freq = 1, 0
    config.training.snapshot_sampling = False
    config.optim.lr = 1e30
    config.optim.warmup = 0
    config.optim.grad_clip = 0.0
    config.eval.at_end = False
    workdir = str(tmp_path / "nan")
    with pytest.raises(NonFiniteLossError, match=r"non-finite .* at step (\d+).*last good checkpoint is step") as err:
        train(config, workdir, progress=False, log=lambda m: None)
    bad_step = int(str(err.value).split("at step ")[1].split(" ")[0])
    steps = sorted(int(s) for s in os.listdir(os.path.join(workdir, "checkpoints")) if s.isdigit())
    assert steps and steps[-1] == bad_step - 1


def _run(args, **kw):
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300, **kw)


def kill_after_checkpoint(args, ckpts, reached):
    """Start ``args``, SIGKILL it as soon as the checkpoint steps in ``ckpts`` satisfy ``reached(steps)`` (possibly
    in the middle of a save); fails if the run ends first."""
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        steps = [int(s) for s in os.listdir(ckpts) if s.isdigit()] if os.path.isdir(ckpts) else []
        if reached(steps):
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL


@pytest.fixture(scope="module")
def toy_reference(tmp_path_factory):
    """An uninterrupted 20-step toy run (in this process: runs in subprocesses must equal it bit for bit)."""
    workdir = str(tmp_path_factory.mktemp("toy_ref"))
    train_in_process(toy_args(workdir, 20))
    return workdir


def test_stop_and_resume_equals_uninterrupted(toy_reference, tmp_path):
    workdir = str(tmp_path / "resumed")
    first = _run(toy_args(workdir, 10))
    assert first.returncode == 0, first.stderr[-3000:]
    second = _run(toy_args(workdir, 20))
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resumed" in second.stderr
    assert_same_leaves(final_params(workdir), final_params(toy_reference))


def test_kill_during_training_then_restart_resumes_exactly(toy_reference, tmp_path):
    workdir = str(tmp_path / "killed")
    ckpts = os.path.join(workdir, "checkpoints")
    kill_after_checkpoint(toy_args(workdir, 20, "--config.training.snapshot_freq=1"), ckpts, lambda s: len(s) >= 2)
    restart = _run(toy_args(workdir, 20))
    assert restart.returncode == 0, restart.stderr[-3000:]
    assert_same_leaves(final_params(workdir), final_params(toy_reference))


@pytest.fixture(scope="module")
def flow_reference(tmp_path_factory):
    """An uninterrupted 12-step OT-CFM run (in this process)."""
    workdir = str(tmp_path_factory.mktemp("flow_ref"))
    train_in_process(flow_args(workdir, 12))
    return workdir


def test_flow_job_killed_mid_run_restarts_to_the_same_parameters(flow_reference, tmp_path):
    workdir = str(tmp_path / "flow_killed")
    ckpts = os.path.join(workdir, "checkpoints")
    kill_after_checkpoint(flow_args(workdir, 12, "--config.training.snapshot_freq=1"), ckpts, lambda s: len(s) >= 2)
    restart = _run(flow_args(workdir, 12))
    assert restart.returncode == 0 and "resumed" in restart.stderr, restart.stderr[-3000:]
    assert "flow_matching on LinearInterpolant, coupling exact" in restart.stderr
    assert_same_leaves(final_params(workdir), final_params(flow_reference))
    run = load_run(workdir)  # the same kind of run as diffusion: EMA wrapper, its path, shape, step
    assert run.step == 12 and run.shape == (2,) and run.path is run.sde
    assert type(run.path).__name__ == "FlowProcess" and run.params.prediction == "flow_velocity"


RF_STAGES = ("--config.training.objective=flow_matching", "--config.flow.reflow_rounds=2", "--config.flow.distill=true",
             "--config.flow.reflow_pairs=256", "--config.flow.reflow_sampler=ode_euler", "--config.flow.reflow_steps=4",
             "--config.eval.batch_size=256")


def test_rectified_flow_stages_killed_mid_reflow_restart_to_the_same_parameters(tmp_path):
    """k-rectified flow as stages of the one job (flow → reflow → distill, 8 steps each on the toy ring): a kill
    inside the reflow stage, whose teacher is in the checkpoint and whose pairs are rebuilt from it, resumes
    to the uninterrupted run's parameters bit for bit."""
    reference = str(tmp_path / "rf_ref")
    train_in_process(toy_args(reference, 8, *RF_STAGES))
    workdir = str(tmp_path / "rf_killed")
    ckpts = os.path.join(workdir, "checkpoints")
    kill_after_checkpoint(toy_args(workdir, 8, *RF_STAGES, "--config.training.snapshot_freq=1"), ckpts,
                          lambda s: bool(s) and max(s) >= 11)  # inside the reflow stage (steps 9..16)
    restart = _run(toy_args(workdir, 8, *RF_STAGES))
    assert restart.returncode == 0 and "resumed" in restart.stderr, restart.stderr[-3000:]
    assert "stages flow → reflow → distill" in restart.stderr and "stage 2/3 (reflow)" in restart.stderr
    assert_same_leaves(final_params(workdir), final_params(reference))
    run = load_run(workdir)
    assert run.step == 24 and run.config.flow.distill


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def assert_two_processes_equal_one(make_args, workdir, reference):
    """Run ``make_args(*distributed_flags)`` as 2 local processes with jax.distributed; the result equals the
    1-process ``reference`` (to float tolerance: a cross-process all-reduce may sum in another order)."""
    port = _free_port()
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    procs = [subprocess.Popen(make_args(f"--coordinator=127.0.0.1:{port}", "--num_processes=2", f"--process_id={i}"),
                              cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    assert "2 process(es)" in outs[0][1]
    for x, y in zip(final_params(workdir), final_params(reference)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-4, atol=1e-5)


def test_two_processes_with_jax_distributed_equal_one_process(toy_reference, tmp_path):
    workdir = str(tmp_path / "two")
    assert_two_processes_equal_one(lambda *flags: toy_args(workdir, 20, *flags), workdir, toy_reference)


def test_two_process_evaluation_equals_one_process(tmp_path):
    """The end-of-training evaluation spread over 2 processes (each its share of the bits/dim and sampling batches,
    all-gathered) writes the eval.json of 1 process: the same batches, each drawn with its own key."""
    evaluation = ("--config.eval.at_end=true", "--config.eval.num_samples=48", "--config.eval.batch_size=16",
                  "--config.eval.bpd_num_examples=32", "--config.eval.bpd_rtol=1e-3", "--config.eval.bpd_atol=1e-3")
    one = str(tmp_path / "one")
    train_in_process(toy_args(one, 5, *evaluation))
    two = str(tmp_path / "two")
    assert_two_processes_equal_one(lambda *flags: toy_args(two, 5, *evaluation, *flags), two, one)
    a, b = (json.load(open(os.path.join(w, "eval.json"))) for w in (one, two))
    assert a["num_samples"] == b["num_samples"] == 48
    for key in ("log_likelihood", "sliced_wasserstein", "w2"):
        assert b[key] == pytest.approx(a[key], rel=1e-3), key


def test_two_process_ot_cfm_equals_one_process(flow_reference, tmp_path):
    """Exact OT on the global batch: both processes compute the same plan and keep their rows."""
    workdir = str(tmp_path / "flow_two")
    assert_two_processes_equal_one(lambda *flags: flow_args(workdir, 12, *flags), workdir, flow_reference)


def test_bad_config_is_refused_before_compiling(tmp_path):
    proc = _run([sys.executable, "-m", "experiments.train", f"--config={TOY}", f"--workdir={tmp_path / 'bad'}",
                 "--config.optim.lr=-1.0"])
    assert proc.returncode == 2 and "optim.lr=-1.0" in proc.stderr
    assert not os.path.exists(tmp_path / "bad" / "checkpoints")


def test_n_jitted_steps_runs_several_steps_per_call_with_every_step_logged(tmp_path):
    """``training.n_jitted_steps``: 5 steps per dispatch (a lax.scan) train the same parameters as 1 and log the
    same per-step losses; a call stops at each log boundary (here every 10 steps: two calls of 5)."""
    from experiments.configs.toy_ring import get_config

    results = {}
    for k in (1, 5):
        config = get_config()
        config.training.n_iters, config.training.snapshot_freq, config.training.log_freq = 30, 15, 10
        config.training.batch_size = 64
        config.model.hidden, config.model.embedding_dim = (32, 32), 16
        config.training.snapshot_sampling, config.eval.at_end = False, False
        config.training.n_jitted_steps = k
        workdir = str(tmp_path / f"k{k}")
        run = train(config, workdir, progress=False, log=lambda m: None)
        with open(os.path.join(workdir, "metrics.jsonl")) as fh:
            logged = [(r["step"], r["loss"]) for r in map(json.loads, fh)]
        results[k] = (jax.tree_util.tree_leaves(run.state.params), logged)
    assert [s for s, _ in results[5][1]] == [10, 15, 20, 30]  # log and snapshot boundaries (15 cuts a call)
    assert results[1][1] == results[5][1]
    for a, b in zip(results[1][0], results[5][0]):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)
