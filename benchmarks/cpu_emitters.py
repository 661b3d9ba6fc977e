"""XLA's two CPU code generators for jaxdiff-sized programs: the fusion emitters (XLA's default) against the classic
elemental emitter (``xla_cpu_use_fusion_emitters=False``), which the test suite compiles with (``tests/conftest.py``).

    python -m benchmarks.cpu_emitters              # about 2 minutes on a slow 2-core machine
    python -m benchmarks.cpu_emitters --no-write   # print only

Both settings at LLVM level 1 (jaxdiff's CPU level), in one process: each program is lowered once and compiled once
per setting (``compiler_options``); CPU seconds (``time.process_time``: the suite keeps both cores busy, so CPU time,
not wall time, is what a setting costs it) of the compile, and the median of 5 runs after a warm-up call, of
- the gradient of a 2-level NCSN++ (nf = 16, 8 x 8 x 3, batch 4: the tests' small U-Net),
- 1,000 Adam steps of a 2-64-64-2 SiLU MLP at batch 256 under ``lax.scan`` (a toy flow's training chunk),
- ten layers of ``tanh(x W + i) * silu(x) + exp(-x^2)`` on rows x 64 arrays (the element-wise work of sampling
  an MLP model on many rows), for 256, 4,096 and 20,000 rows.
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import time

import jax
import jax.numpy as jnp
import optax

from benchmarks._common import machine_description, publish

SETTINGS = {"fusion emitters (XLA default)": True, "classic emitter": False}


def _cpu_seconds(fn) -> float:
    started = time.process_time()
    jax.block_until_ready(fn())
    return time.process_time() - started


def _compile_and_run(fun, *args) -> dict[str, tuple[float, float]]:
    """``{setting: (compile CPU s, median run CPU s)}`` of ``fun(*args)``, lowered once."""
    out = {}
    for name, fusion in SETTINGS.items():
        jitted = jax.jit(fun, compiler_options={"xla_cpu_use_fusion_emitters": fusion,
                                                "xla_backend_optimization_level": 1})
        lowered = jitted.lower(*args)
        started = time.process_time()
        compiled = lowered.compile()
        compile_s = time.process_time() - started
        jax.block_until_ready(compiled(*args))
        out[name] = (compile_s, statistics.median(_cpu_seconds(lambda: compiled(*args)) for _ in range(5)))
    return out


def _unet_gradient():
    from jaxdiff.models import NCSNpp

    net = NCSNpp(nf=16, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,), init_scale=1.0, dropout=0.0)
    x = jax.random.normal(jax.random.key(0), (4, 8, 8, 3))
    noise = jnp.linspace(0.1, 0.9, 4)
    params = jax.jit(net.init)(jax.random.key(1), x, noise)["params"]
    return _compile_and_run(jax.grad(lambda p: jnp.sum(net.apply({"params": p}, x, noise) ** 2)), params)


def _mlp_adam_chunk():
    sizes = (2, 64, 64, 2)
    keys = jax.random.split(jax.random.key(2), len(sizes))
    params = [(jax.random.normal(k, (a, b)) / jnp.sqrt(a), jnp.zeros(b)) for k, a, b in zip(keys, sizes, sizes[1:])]
    optimizer = optax.adam(1e-3)

    def loss(params, x):
        h = x
        for i, (w, b) in enumerate(params):
            h = h @ w + b
            h = jax.nn.silu(h) if i < len(params) - 1 else h
        return jnp.mean((h - 0.5 * x) ** 2)

    def chunk(params, opt_state, key):
        def step(carry, k):
            p, s = carry
            grads = jax.grad(loss)(p, jax.random.normal(k, (256, 2)))
            updates, s = optimizer.update(grads, s)
            return (optax.apply_updates(p, updates), s), None

        return jax.lax.scan(step, (params, opt_state), jax.random.split(key, 1000))[0]

    return _compile_and_run(chunk, params, optimizer.init(params), jax.random.key(3))


def _elementwise(rows: int):
    def layers(x, w):
        for i in range(10):
            x = jnp.tanh(x @ w + i) * jax.nn.silu(x) + jnp.exp(-x * x)
        return x

    return _compile_and_run(layers, jnp.ones((rows, 64)), jnp.full((64, 64), 0.01))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="XLA CPU fusion emitters vs the classic emitter: compile and run.")
    parser.add_argument("--no-write", action="store_true", help="do not append to RESULTS.md")
    args = parser.parse_args(argv)
    rows = [("NCSN++ gradient (2 levels, nf 16)", _unet_gradient()),
            ("MLP, 1,000 Adam steps at batch 256", _mlp_adam_chunk())]
    rows += [(f"element-wise layers, {n:,} x 64", _elementwise(n)) for n in (256, 4096, 20_000)]
    names = list(SETTINGS)
    lines = [f"\n## cpu_emitters ({datetime.date.today().isoformat()}; {machine_description()})\n",
             "`python -m benchmarks.cpu_emitters`: CPU seconds to compile (level 1) and median CPU seconds per run, "
             "each program lowered once and compiled with each emitter in one process.\n",
             f"| program | {names[0]}: compile / run | {names[1]}: compile / run | classic / fusion: compile, run |",
             "|---|---|---|---|"]
    for label, result in rows:
        (c0, r0), (c1, r1) = result[names[0]], result[names[1]]
        lines.append(f"| {label} | {c0:.2f} s / {r0 * 1e3:.2f} ms | {c1:.2f} s / {r1 * 1e3:.2f} ms | "
                     f"{c1 / c0:.2f}x, {r1 / r0:.2f}x |")
    publish("\n".join(lines) + "\n", write=not args.no_write)


if __name__ == "__main__":
    main()
