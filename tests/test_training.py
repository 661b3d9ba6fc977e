"""The train step: loss decreases on a toy set, EMA and warm-up follow their formulas, and a run on 4
simulated devices equals the run on 1 device."""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdiff
from jaxdiff.models import ScoreMLP
from jaxdiff.training import create_train_state, make_optimizer, make_train_step


def _setup(warmup=10, ema_rate=0.99):
    sde = jaxdiff.VPSDE()
    net = ScoreMLP(hidden=(64, 64))
    data = jaxdiff.GaussianMixture.ring(4, radius=2.0, std=0.3).sample(jax.random.PRNGKey(0), 512)
    params = net.init(jax.random.PRNGKey(1), data[:2], jnp.ones((2,)))["params"]
    apply = lambda p, x, t: net.apply({"params": p}, x, t)  # noqa: E731
    loss = jaxdiff.dsm_loss(sde, apply, parameterization=jaxdiff.Direct("eps", noise_input="t_scaled"), reduce="mean")
    opt = make_optimizer(2e-3, warmup=warmup, grad_clip=1.0)
    return data, params, loss, opt, make_train_step(loss, opt, ema_rate=ema_rate, donate=False)


def test_loss_decreases_and_ema_follows():
    data, params, loss, opt, step = _setup()
    state = create_train_state(params, opt, jax.random.PRNGKey(2))
    first_losses, last_losses = [], []
    for i in range(300):
        batch = data[(i * 64) % 512:(i * 64) % 512 + 64]
        prev = state
        state, metrics = step(state, batch)
        (first_losses if i < 20 else last_losses).append(float(metrics["loss"]))
    assert np.mean(last_losses[-50:]) < 0.7 * np.mean(first_losses)
    assert int(state.step) == 300
    # EMA: ema_t = r ema_{t-1} + (1 − r) params_t
    expected = jax.tree_util.tree_map(lambda e, p: 0.99 * e + 0.01 * p, prev.ema_params, state.params)
    for a, b in zip(jax.tree_util.tree_leaves(expected), jax.tree_util.tree_leaves(state.ema_params)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-8)  # float32 parameters


def test_warmup_schedule():
    opt = make_optimizer(1.0, warmup=4, grad_clip=0.0)
    params = {"w": jnp.zeros(())}
    state = opt.init(params)
    sizes = []
    for _ in range(6):
        updates, state = opt.update({"w": jnp.ones(())}, state, params)
        sizes.append(-float(updates["w"]))
    # Adam's first steps have |update| ≈ lr(t); lr(t) = min(t/4, 1)
    np.testing.assert_allclose(sizes, [0.0, 0.25, 0.5, 0.75, 1.0, 1.0], atol=1e-6)


def test_ema_warmup_forgets_the_initialization():
    data, params, loss, opt, _ = _setup()
    step = make_train_step(loss, opt, ema_rate=0.999, ema_warmup=True, donate=False)
    state = create_train_state(params, opt, jax.random.PRNGKey(2))
    for k in range(3):
        prev = state
        state, _ = step(state, data[:64])
        rate = min(0.999, (1 + k) / (10 + k))  # r_k = min(r, (1 + k)/(10 + k)) at step k
        expected = jax.tree_util.tree_map(lambda e, p: rate * e + (1 - rate) * p, prev.ema_params, state.params)
        for a, b in zip(jax.tree_util.tree_leaves(expected), jax.tree_util.tree_leaves(state.ema_params)):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_adamw_never_decays_the_fixed_fourier_buffer():
    params = {"GaussianFourierProjection_0": {"W": jnp.ones(3)}, "Dense_0": {"kernel": jnp.ones(2)}}
    opt = make_optimizer(0.1, warmup=0, optimizer="adamw", weight_decay=0.5)
    zero = jax.tree_util.tree_map(jnp.zeros_like, params)
    updates, _ = opt.update(zero, opt.init(params), params)
    np.testing.assert_array_equal(updates["GaussianFourierProjection_0"]["W"], 0.0)
    np.testing.assert_allclose(updates["Dense_0"]["kernel"], -0.1 * 0.5)  # −lr · wd · param


@pytest.mark.parametrize("kwargs, fragment", [
    (dict(lr=-1.0), "lr must be finite and > 0"),
    (dict(optimizer="sgd"), "optimizer must be one of"),
])
def test_bad_optimizer_config(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        make_optimizer(**kwargs)


def test_four_devices_equal_one_device():
    """In a subprocess with 4 simulated CPU devices: the same steps on a 4-device mesh and on a 1-device
    mesh give the same loss and parameters (float32, to float tolerance) — for DSM and for an OT-CFM step
    whose exact OT coupling runs inside the step on the global (sharded) batch."""
    script = textwrap.dedent("""
        import os
        os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
        import jax, jax.numpy as jnp, numpy as np
        from jax.sharding import Mesh
        import jaxdiff
        from jaxdiff.models import ScoreMLP
        from jaxdiff.training import create_train_state, make_optimizer, make_train_step
        assert jax.device_count() == 4, jax.devices()
        sde = jaxdiff.VPSDE()
        net = ScoreMLP(hidden=(32, 32))
        data = jaxdiff.GaussianMixture.ring(4, 2.0, 0.3).sample(jax.random.PRNGKey(0), 256).astype(jnp.float32)
        params = net.init(jax.random.PRNGKey(1), data[:2], jnp.ones((2,)))["params"]
        loss = jaxdiff.dsm_loss(sde, lambda p, x, t: net.apply({"params": p}, x, t),
                                parameterization=jaxdiff.Direct("eps", noise_input="t_scaled"), reduce="mean")
        opt = make_optimizer(1e-3, warmup=5)
        results = []
        for devices in (jax.devices()[:1], jax.devices()):
            mesh = Mesh(np.array(devices), ("data",))
            step = make_train_step(loss, opt, ema_rate=0.9, mesh=mesh)
            state = create_train_state(params, opt, jax.random.PRNGKey(2))
            losses = []
            for i in range(10):
                state, m = step(state, data[(i % 4) * 64:(i % 4) * 64 + 64])
                losses.append(float(m["loss"]))
            results.append((losses, jax.tree_util.tree_map(np.asarray, state.params)))
        np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-5)
        for a, b in zip(jax.tree_util.tree_leaves(results[0][1]), jax.tree_util.tree_leaves(results[1][1])):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
        # OT-CFM: exact OT inside the step (pure_callback on the global batch) on 4 devices = 1 device
        from jaxdiff.flows import flow_matching_loss
        noise = jax.random.normal(jax.random.PRNGKey(5), data.shape, jnp.float32)
        ot_loss = flow_matching_loss(jaxdiff.LinearInterpolant(0.0),
                                     lambda p, x, t: net.apply({"params": p}, x, 999.0 * t), coupling="exact")
        flow_results = []
        for devices in (jax.devices()[:1], jax.devices()):
            mesh = Mesh(np.array(devices), ("data",))
            step = make_train_step(ot_loss, opt, ema_rate=0.9, mesh=mesh)
            state = create_train_state(params, opt, jax.random.PRNGKey(2))
            for i in range(6):
                rows = slice((i % 4) * 64, (i % 4) * 64 + 64)
                state, m = step(state, (noise[rows], data[rows]))
            flow_results.append((float(m["loss"]), jax.tree_util.tree_map(np.asarray, state.params)))
        np.testing.assert_allclose(flow_results[0][0], flow_results[1][0], rtol=1e-5)
        for a, b in zip(jax.tree_util.tree_leaves(flow_results[0][1]), jax.tree_util.tree_leaves(flow_results[1][1])):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
        print("OK", results[1][0][-1])
    """)
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS" or "device_count" not in v}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0 and "OK" in proc.stdout, proc.stdout + proc.stderr


def test_resume_is_exact(tmp_path):
    """2N steps in one go equal N steps, a save, a restore into a fresh process state, and N more."""
    from jaxdiff.training import Checkpointer

    data, params, loss, opt, step = _setup()
    batches = [data[(i * 64) % 512:(i * 64) % 512 + 64] for i in range(20)]
    straight = create_train_state(params, opt, jax.random.PRNGKey(3))
    for b in batches:
        straight, _ = step(straight, b)

    state = create_train_state(params, opt, jax.random.PRNGKey(3))
    for b in batches[:10]:
        state, _ = step(state, b)
    ckpt = Checkpointer(str(tmp_path / "ckpt"), max_to_keep=2)
    ckpt.save(int(state.step), state, {"data_position": 10})
    ckpt.wait()
    assert ckpt.restore(state, step=10)[1] == {"data_position": 10}
    ckpt.save(int(state.step) + 1, state)  # keep-last-K: older ones are dropped
    ckpt.save(int(state.step) + 2, state)
    ckpt.wait()
    assert ckpt.all_steps() == [11, 12]
    fresh = create_train_state(params, opt, jax.random.PRNGKey(99))  # the structure to restore into
    resumed, meta = Checkpointer(str(tmp_path / "ckpt")).restore(fresh, step=None)
    assert int(resumed.step) == 10
    resumed, meta = ckpt.restore(fresh, step=12)
    for b in batches[10:]:
        resumed, _ = step(resumed, b)
    for a, b in zip(jax.tree_util.tree_leaves(straight), jax.tree_util.tree_leaves(resumed)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    ckpt.close()


def test_cpu_compile_options_respect_xla_flags_and_compile_once(monkeypatch):
    # jaxdiff's big programs compile at LLVM level 1 on CPU (0 for one-off initialisation) unless XLA_FLAGS sets a
    # level; a jaxdiff jit traces once per shape (and options) like jax.jit and passes `lower` through.
    from jaxdiff import _xla

    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=1")
    assert _xla.compiler_options() == {"xla_backend_optimization_level": 1}
    assert _xla.compiler_options(once=True) == {"xla_backend_optimization_level": 0}
    monkeypatch.setenv("XLA_FLAGS", "--xla_backend_optimization_level=3")
    assert _xla.compiler_options() is None and _xla.compiler_options(once=True) is None
    traces = []

    def f(x):
        traces.append(1)
        return jnp.sin(x) * 2.0

    fast = _xla.jit(f)
    x = jnp.linspace(0.0, 1.0, 5)
    np.testing.assert_allclose(fast(x), jnp.sin(x) * 2.0, rtol=1e-6)
    fast(x + 1.0)
    assert len(traces) == 1  # equal shapes do not retrace
    assert fast.lower(x).compile()(x).shape == (5,) and fast.__name__ == "f"
    # cpu_options: added inside the block (winning over XLA_FLAGS), a compiled program of its own (the trace is
    # shared), the old options and program after it
    from jax._src import monitoring

    compiles = []
    listener = lambda event, duration, **kw: compiles.append(event) if event.endswith("backend_compile_duration") else None  # noqa: E731
    monitoring.register_event_duration_secs_listener(listener)
    try:
        with _xla.cpu_options(xla_cpu_use_fusion_emitters=True):
            assert _xla.compiler_options() == {"xla_cpu_use_fusion_emitters": True}
            with _xla.cpu_options(xla_cpu_enable_fast_min_max=False):
                assert _xla.compiler_options(once=True) == {"xla_cpu_use_fusion_emitters": True,
                                                            "xla_cpu_enable_fast_min_max": False}
            np.testing.assert_allclose(fast(x), jnp.sin(x) * 2.0, rtol=1e-6)
            assert len(compiles) == 1
        assert _xla.compiler_options() is None
        fast(x)
        assert len(compiles) == 1 and len(traces) == 1  # the program compiled before the block is still there
    finally:
        monitoring.unregister_event_duration_listener(listener)


def test_one_off_init_at_level_0_gives_the_same_parameters():
    # The state initialisation compiled at level 0 (jaxdiff on CPU) gives bit-identical parameters to XLA's default.
    net = ScoreMLP(hidden=(32, 32))

    def init(key):
        return net.init(key, jnp.zeros((1, 3)), jnp.ones((1,)))

    key = jax.random.PRNGKey(3)
    a = jax.jit(init, compiler_options={"xla_backend_optimization_level": 0})(key)
    b = jax.jit(init, compiler_options={"xla_backend_optimization_level": 3})(key)
    for u, v in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_array_equal(u, v)
