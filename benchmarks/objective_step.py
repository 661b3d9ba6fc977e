"""The objective costs nothing measurable: score_sde's DDPM++ (61.8M parameters) train step of ``vp_cifar.py``
(DSM) next to ``fm_cifar.py`` (OT-CFM), ``rf_cifar.py`` and ``si_cifar.py``, each built by the job's own
pieces (config → network, parameterization, ``make_loss_fn``, ``make_train_step``) and fed by the job's data
path (``load_dataset`` of a CIFAR-10 python archive → grain stream → for flows ``make_flow_pairs``, whose host
coupling is timed apart). The archive is a fake one the script writes (random pixels in the real format).
Measurements alternate between the configs so that machine load falls on all of them alike.

    python -m benchmarks.objective_step                  # batch 8, 4 timed steps each (~3 min on 2 cores)
"""

from __future__ import annotations

import argparse
import datetime
import io
import os
import pickle
import tarfile
import tempfile
import time

import jax
import numpy as np

from benchmarks._common import machine_description, publish

CONFIGS = ("vp_cifar", "fm_cifar", "rf_cifar", "si_cifar")


def write_fake_cifar(path: str, per_batch: int = 64, seed: int = 0) -> str:
    """A CIFAR-10 "python version" archive of random images (the real file layout and pickles)."""
    rng = np.random.default_rng(seed)
    with tarfile.open(path, "w:gz") as tar:
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            batch = {b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                     b"labels": list(rng.integers(0, 10, per_batch)), b"batch_label": name.encode()}
            raw = pickle.dumps(batch, protocol=2)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return path


def build(name: str, archive: str, batch: int):
    import importlib

    from jax.sharding import Mesh, NamedSharding
    from jax.sharding import PartitionSpec as P

    from jaxdiff.training import config as C
    from jaxdiff.training.data import DataIterator, load_dataset, make_stream
    from jaxdiff.training.run import init_params, make_flow_pairs, make_loss_fn
    from jaxdiff.training.step import create_train_state, make_train_step

    config = importlib.import_module(f"experiments.configs.{name}").get_config()
    config.data.path = archive
    config.training.batch_size = batch
    C.validate_config(config, device_count=jax.device_count())
    dataset = load_dataset(config.data)
    sde, network = C.build_path(config), C.build_network(config)
    parameterization, optimizer = C.build_parameterization(config), C.build_optimizer(config)
    loss = make_loss_fn(config, dataset, sde, network, parameterization)
    mesh = Mesh(np.asarray(jax.devices()), ("data",))
    step = make_train_step(loss, optimizer, ema_rate=config.model.ema_rate, mesh=mesh)
    params = init_params(network, C.data_shape(config), jax.random.key(0))
    # as the job does: the state lives replicated on the mesh from the start (else the first step's output
    # sharding differs from its input's and the second call compiles again)
    state = jax.device_put(create_train_state(params, optimizer, jax.random.key(1)), NamedSharding(mesh, P()))
    iterator = DataIterator(make_stream(dataset, global_batch=batch, seed=0))
    pairs = make_flow_pairs(config, dataset) if C.is_flow(config) else None
    n_params = sum(int(np.prod(a.shape)) for a in jax.tree_util.tree_leaves(params))
    return {"name": name, "state": state, "step": step, "iterator": iterator, "pairs": pairs, "params": n_params,
            "objective": config.training.objective, "coupling": config.flow.coupling if pairs else "—"}


def next_batch(run, index: int):
    raw = next(run["iterator"])
    if run["pairs"] is None:
        return raw, 0.0
    started = time.perf_counter()
    batch = run["pairs"](raw, index)
    return batch, time.perf_counter() - started


def main(argv=None):
    parser = argparse.ArgumentParser(description="Train-step time of the DSM and flow objectives on DDPM++.")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=4, help="timed steps per config (median reported)")
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    names = [n for n in args.configs.split(",") if n]
    with tempfile.TemporaryDirectory() as tmp:
        archive = write_fake_cifar(os.path.join(tmp, "cifar-10-python.tar.gz"))
        runs = [build(name, archive, args.batch) for name in names]
        for run in runs:  # compile + one warm-up step each
            started = time.perf_counter()
            batch, _ = next_batch(run, 0)
            run["state"], metrics = run["step"](run["state"], batch)
            jax.block_until_ready(metrics["loss"])
            run["compile_s"], run["times"], run["host"] = time.perf_counter() - started, [], []
        for i in range(1, args.steps + 1):  # interleaved: A B C D A B C D ...
            for run in runs:
                batch, host = next_batch(run, i)
                started = time.perf_counter()
                run["state"], metrics = run["step"](run["state"], batch)
                jax.block_until_ready(metrics["loss"])
                run["times"].append(time.perf_counter() - started)
                run["host"].append(host)
                run["loss"] = float(metrics["loss"])
    base = float(np.median(runs[0]["times"]))
    lines = [f"\n## objective_step — {datetime.date.today()} — {machine_description()}\n",
             f"score_sde's DDPM++ train step (Adam, EMA, state donated) at batch {args.batch}, built by the job's "
             "own pieces from each config and fed through its data path from a fake CIFAR-10 archive; s/step = "
             f"median of {args.steps} steps after compile + 1 warm-up, measured interleaved; host coupling = "
             "make_flow_pairs (source draw + exact OT on the global batch) per step.\n",
             "| config | objective | coupling | params | first step s (compile) | s/step | vs vp_cifar | host coupling ms |",
             "|---|---|---|---|---|---|---|---|"]
    for run in runs:
        median = float(np.median(run["times"]))
        lines.append(f"| {run['name']} | {run['objective']} | {run['coupling']} | {run['params']:,} | "
                     f"{run['compile_s']:.1f} | {median:.3f} | {median / base:.3f} | "
                     f"{1000 * float(np.median(run['host'])):.1f} |")
    publish("\n".join(lines) + "\n", not args.no_write)


if __name__ == "__main__":
    main()
