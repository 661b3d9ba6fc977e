"""Train step of score_sde's DDPM++ (vp_cifar.py's network, 61.8M parameters) with float32, bfloat16 compute
(``training.precision``) and rematerialized residual blocks (``model.remat``): the activations kept for the
backward pass (JAX's saved residuals: what an accelerator must hold, whatever the backend), XLA's compiled
temporary buffer size on this backend, and the step time where it fits the time budget.

On XLA:CPU the compiled step's temporary memory does not drop with remat (in a toy check the compiled CPU program had
dropped the recomputation the lowered one asked for) — the saved-residual column is the figure that carries to
GPU/TPU. Batches not in ``--time-batches`` are compiled, not run (batch 128 in float32 does not fit 24 GiB on CPU).

    python -m benchmarks.precision_memory                       # batches 8, 32, 128; timed at 8 and 32
    python -m benchmarks.precision_memory --batches 8 --time-batches 8 --no-write
"""

from __future__ import annotations

import argparse
import datetime
import time

import numpy as np

from benchmarks._common import machine_description, publish

MODES = {"float32": ("float32", False), "bfloat16": ("bfloat16", False), "float32 + remat": ("float32", True)}


def measure(mode: str, batch: int, timed: bool) -> dict:
    import jax
    import jax.numpy as jnp
    from jax._src.ad_checkpoint import saved_residuals

    from experiments.configs.vp_cifar import get_config
    from jaxdiff.training import config as C
    from jaxdiff.training.data import Dataset
    from jaxdiff.training.run import init_model_params, make_loss_fn
    from jaxdiff.training.step import create_train_state, make_train_step

    precision, remat = MODES[mode]
    config = get_config()
    config.training.precision, config.model.remat = precision, remat
    sde, parameterization = C.build_path(config), C.build_parameterization(config)
    network = C.build_network(config)
    images = np.zeros((4, 32, 32, 3), np.uint8)
    dataset = Dataset("cifar10", images, images, num_levels=256, centered=False, random_flip=True)
    loss_fn = make_loss_fn(config, dataset, sde, network, parameterization)
    x = jnp.asarray(np.random.default_rng(0).integers(0, 256, (batch, 32, 32, 3)).astype(np.float32))
    abstract = jax.eval_shape(lambda: init_model_params(config, network, (32, 32, 3), jax.random.key(0)))
    residuals = saved_residuals(loss_fn, abstract, jax.random.key(1), x)
    out = {"mode": mode, "batch": batch,
           "saved_mib": sum(int(np.prod(a.shape)) * a.dtype.itemsize for a, _ in residuals) / 2**20}
    optimizer = C.build_optimizer(config)
    step = make_train_step(loss_fn, optimizer, ema_rate=0.9999, donate=False)
    params = init_model_params(config, network, (32, 32, 3), jax.random.key(0))
    state = create_train_state(params, optimizer, jax.random.key(2))
    started = time.time()
    compiled = step.lower(state, x).compile()
    out["compile_s"] = time.time() - started
    out["temp_mib"] = compiled.memory_analysis().temp_size_in_bytes / 2**20
    if timed:
        state, _ = compiled(state, x)
        jax.block_until_ready(state)
        started, reps = time.time(), 3
        for _ in range(reps):
            state, metrics = compiled(state, x)
        jax.block_until_ready(state)
        out["step_s"] = (time.time() - started) / reps
        out["loss"] = float(metrics["loss"])
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description="DDPM++ train step: float32, bfloat16, remat.")
    parser.add_argument("--batches", default="8,32,128")
    parser.add_argument("--time-batches", default="8,32")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    timed = {int(b) for b in args.time_batches.split(",") if b}
    rows = []
    for batch in [int(b) for b in args.batches.split(",")]:
        for mode in MODES:
            rows.append(measure(mode, batch, batch in timed))
            print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in rows[-1].items()}, flush=True)
    lines = [f"\n## precision_memory — {datetime.date.today()} — {machine_description()}\n",
             "score_sde's DDPM++ continuous (vp_cifar.py), one train step (DSM loss, Adam, EMA) per call. Saved "
             "residuals: bytes of the forward activations JAX keeps for the backward pass (what an accelerator holds; "
             "backend-independent). XLA temp: the compiled step's temporary buffers on this backend (XLA:CPU removes "
             "the recomputation remat asks for, so remat does not lower it here). Step: mean of 3 after a warm-up.\n",
             "| batch | mode | saved residuals MiB | XLA temp MiB | compile s | step s |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        step = f"{r['step_s']:.2f}" if "step_s" in r else "not timed"
        lines.append(f"| {r['batch']} | {r['mode']} | {r['saved_mib']:.0f} | {r['temp_mib']:.0f} | "
                     f"{r['compile_s']:.0f} | {step} |")
    publish("\n".join(lines) + "\n", not args.no_write)


if __name__ == "__main__":
    main()
