"""Speed of the jitted train step for score_sde's CIFAR-10 models (DDPM++ and NCSN++ continuous).

    python -m benchmarks.train_step              # full run (long on 2 CPU cores: compiles take minutes)
    python -m benchmarks.train_step --quick      # tiny networks, batches 2 and 4 (~1 min); writes nothing
    python -m benchmarks.train_step --models ddpmpp --batches 32 --steps 5

One step is score_sde's: DSM loss (σ² weighting) → value_and_grad → clip by global norm 1 → Adam
(lr 2e-4, warm-up 5000) → EMA (0.9999), jitted with the state donated (``jaxdiff.training``).
DDPM++: ``NCSNpp()`` on the VP-SDE, ε-prediction, noise input ``999 t``, loss mean over pixels.
NCSN++: ``NCSNpp(fourier, residual input pyramid, FIR, uncentered)`` on the VE-SDE (0.01 → 50),
score·(1/σ) output, noise input ``σ``, loss summed over pixels. Data: random normal (VP) or uniform
[0, 1] (VE) 32×32×3 images, a fresh array per step.

For every (model, batch): compile time (lower + compile), the median wall time of the timed steps
(after the warm-up steps, outputs blocked on), images/s, the step's FLOPs from XLA's cost analysis,
the FLOP/s they imply, and that as a fraction of a large float32 matmul's FLOP/s measured in the
same run. The score_sde_pytorch figures are quoted references, not measured here.
Prints the table and appends it, with the machine and the date, to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import subprocess
import sys
import time

import jax
import jax.numpy as jnp

import jaxdiff
from benchmarks._common import machine_description, publish
from jaxdiff.training import create_train_state, make_optimizer, make_train_step

IMAGE_SHAPE = (32, 32, 3)

# score_sde_pytorch's own train step (incl. EMA), torch 2.13 CPU with 2 threads, on this machine
# type: quoted reference figures, not re-measured by this script. name -> (batch, seconds/step).
TORCH_REFERENCE = {"ddpmpp": (32, 7.58), "ncsnpp": (32, 14.07)}
TARGET_RATIO = 1.5
LABELS = {"ddpmpp": "DDPM++", "ncsnpp": "NCSN++"}
QUICK_SIZE = {"nf": 16, "num_res_blocks": 1}


def build(name: str, quick: bool):
    """``(model, sde, parameterization, reduce, data_kind)`` for ``"ddpmpp"`` or ``"ncsnpp"``;
    ``quick`` shrinks the network (``nf=16``, one res block per level) and keeps the rest."""
    size = QUICK_SIZE if quick else {}
    if name == "ddpmpp":
        model = jaxdiff.models.NCSNpp(**size)
        return model, jaxdiff.VPSDE(), jaxdiff.Direct("eps", noise_input="t_scaled"), "mean", "normal"
    if name == "ncsnpp":
        model = jaxdiff.models.NCSNpp(
            embedding_type="fourier", progressive_input="residual", fir=True, centered=False, **size
        )
        param = jaxdiff.Direct("score", scale_by_sigma=True, noise_input="sigma")
        return model, jaxdiff.VESDE(0.01, 50.0), param, "sum", "uniform"
    raise ValueError(f"unknown model {name!r}; expected one of {sorted(LABELS)}.")


def init_params(model, key):
    """The network's ``params`` collection, initialised under ``jit`` on a batch of one."""
    x = jnp.zeros((1,) + IMAGE_SHAPE, jnp.float32)
    noise = jnp.ones((1,), jnp.float32)
    init = jax.jit(lambda k: model.init({"params": k, "dropout": k}, x, noise)["params"])
    return init(key)


def count_params(params) -> int:
    """The number of scalars in a pytree."""
    return sum(leaf.size for leaf in jax.tree_util.tree_leaves(params))


def make_loss(model, sde, parameterization, reduce: str):
    """score_sde's DSM loss ``loss(params, key, x0)`` for a Flax network in train mode (dropout on)."""

    def apply_fn(params, x, noise_in, key=None):
        return model.apply({"params": params}, x, noise_in, train=True, rngs={"dropout": key})

    return jaxdiff.dsm_loss(
        sde, apply_fn, parameterization=parameterization, weighting="sigma2", reduce=reduce, model_key=True
    )


def make_batches(key, n: int, batch: int, kind: str):
    """``n`` distinct random image batches: standard normal or uniform on [0, 1]."""
    keys = jax.random.split(key, n)
    shape = (batch,) + IMAGE_SHAPE
    draw = jax.random.normal if kind == "normal" else jax.random.uniform
    return [jax.block_until_ready(draw(k, shape, jnp.float32)) for k in keys]


def compiled_flops(compiled) -> float | None:
    """FLOPs of a compiled computation from XLA's cost analysis (a dict, or a list of per-module
    dicts, depending on the JAX version); ``None`` when the backend does not report them."""
    try:
        analysis = compiled.cost_analysis()
    except Exception:  # some backends raise instead of returning nothing
        return None
    if analysis is None:
        return None
    if isinstance(analysis, dict):
        analysis = [analysis]
    flops = [a.get("flops") for a in analysis if isinstance(a, dict)]
    flops = [f for f in flops if f is not None and f > 0]
    return float(sum(flops)) if flops else None


def matmul_flop_rate(n: int, reps: int) -> float:
    """FLOP/s of a jitted float32 ``[n, n] @ [n, n]`` (default precision), median of ``reps`` calls."""
    ka, kb = jax.random.split(jax.random.key(123))
    a = jax.random.normal(ka, (n, n), jnp.float32)
    b = jax.random.normal(kb, (n, n), jnp.float32)
    matmul = jax.jit(jnp.matmul)
    jax.block_until_ready(matmul(a, b))
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        jax.block_until_ready(matmul(a, b))
        times.append(time.perf_counter() - t0)
    return 2.0 * n**3 / statistics.median(times)


def bench_one(name: str, batch: int, steps: int, warmup: int, quick: bool) -> dict:
    """Compile and time the train step of one model at one batch size."""
    model, sde, parameterization, reduce, data_kind = build(name, quick)
    params = init_params(model, jax.random.key(0))
    n_params = count_params(params)
    loss_fn = make_loss(model, sde, parameterization, reduce)
    optimizer = make_optimizer(2e-4, warmup=5000, grad_clip=1.0)
    state = create_train_state(params, optimizer, jax.random.key(0))
    del params
    step = make_train_step(loss_fn, optimizer, ema_rate=0.9999)
    batches = make_batches(jax.random.key(1), warmup + steps, batch, data_kind)

    t0 = time.perf_counter()
    lowered = step.lower(state, batches[0])
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()

    times = []
    for i, x in enumerate(batches):
        t_start = time.perf_counter()
        state, metrics = compiled(state, x)
        jax.block_until_ready((state, metrics))
        if i >= warmup:
            times.append(time.perf_counter() - t_start)
    seconds = statistics.median(times)
    return {
        "model": name,
        "batch": batch,
        "params": n_params,
        "lower_s": t1 - t0,
        "compile_s": t2 - t0,
        "step_s": seconds,
        "step_min_s": min(times),
        "step_max_s": max(times),
        "images_per_s": batch / seconds,
        "flops": compiled_flops(compiled),
        "loss": float(metrics["loss"]),
        "grad_norm": float(metrics["grad_norm"]),
    }


def bench_isolated(name: str, batch: int, steps: int, warmup: int, quick: bool) -> dict:
    """:func:`bench_one` in a child process, so that a measurement the machine's memory cannot hold
    (e.g. a 62M-parameter U-Net at batch 128 in 24 GiB) is killed alone and recorded as such."""
    cmd = [sys.executable, "-m", "benchmarks.train_step", "--_one", f"{name}:{batch}", "--steps", str(steps),
           "--warmup", str(warmup)] + (["--quick"] if quick else [])
    proc = subprocess.run(cmd, capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    killed = proc.returncode in (-9, 137)
    reason = "killed (out of memory)" if killed else f"failed (exit {proc.returncode}): {proc.stderr.strip()[-300:]}"
    return {"model": name, "batch": batch, "failed": reason}


def torch_ratio(row: dict, quick: bool) -> float | None:
    """Our images/s over score_sde_pytorch's quoted images/s, for the full model at the quoted batch."""
    ref_batch, ref_seconds = TORCH_REFERENCE[row["model"]]
    if quick or row["batch"] != ref_batch or "failed" in row:
        return None
    return row["images_per_s"] / (ref_batch / ref_seconds)


def table_lines(rows: list[dict], matmul_rate: float, quick: bool) -> list[str]:
    """The Markdown table of the results."""
    lines = [
        "| model | batch | params | compile s | s/step | img/s | GFLOP/step | GFLOP/s | % of matmul | vs torch ref at b=32 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        if "failed" in row:
            label = LABELS[row["model"]] + (" (tiny)" if quick else "")
            lines.append(f"| {label} | {row['batch']} | — | — | {row['failed']} | — | — | — | — | — |")
            continue
        flops = row["flops"]
        gflop = f"{flops / 1e9:.1f}" if flops else "n/a"
        rate = flops / row["step_s"] if flops else None
        gflops = f"{rate / 1e9:.1f}" if rate else "n/a"
        share = f"{100 * rate / matmul_rate:.1f}%" if rate else "n/a"
        ratio = torch_ratio(row, quick)
        vs_torch = f"{ratio:.2f}×" if ratio is not None else "—"
        label = LABELS[row["model"]] + (" (tiny)" if quick else "")
        lines.append(
            f"| {label} | {row['batch']} | {row['params']:,} | {row['compile_s']:.1f} | {row['step_s']:.3f} | "
            f"{row['images_per_s']:.2f} | {gflop} | {gflops} | {share} | {vs_torch} |"
        )
    return lines


def torch_lines(rows: list[dict], quick: bool) -> list[str]:
    """The quoted score_sde_pytorch figures and, where measured, our ratio to them."""
    refs = "; ".join(
        f"{LABELS[m]} {s:.2f} s/step at batch {b} ({b / s:.2f} img/s)" for m, (b, s) in TORCH_REFERENCE.items()
    )
    lines = [
        f"score_sde_pytorch reference (torch 2.13 CPU, 2 threads, train step incl. EMA): {refs}. These are "
        "quoted figures measured earlier on this machine type, not re-measured in this run."
    ]
    for row in rows:
        ratio = torch_ratio(row, quick)
        if ratio is not None:
            verdict = "met" if ratio >= TARGET_RATIO else "not met"
            lines.append(
                f"- {LABELS[row['model']]} at batch {row['batch']}: {row['images_per_s']:.2f} img/s = "
                f"{ratio:.2f}× score_sde_pytorch (target ≥ {TARGET_RATIO}×: {verdict})."
            )
    if quick:
        lines.append("- (quick run: tiny networks, no comparison with the reference.)")
    elif not any(torch_ratio(row, quick) is not None for row in rows):
        lines.append("- (batch 32 not measured: no comparison with the reference.)")
    if jax.default_backend() != "cpu":
        lines.append(
            f"- (this run used {jax.default_backend()}; the reference is CPU, so the ratio compares different hardware.)"
        )
    return lines


def parse_ints(text: str) -> list[int]:
    """``"8,32,128"`` → ``[8, 32, 128]``."""
    return [int(v) for v in text.split(",") if v.strip()]


def main(argv=None):
    parser = argparse.ArgumentParser(description="Speed of the jitted DDPM++/NCSN++ train step.")
    parser.add_argument(
        "--quick", action="store_true", help="tiny networks at batches 2,4; writes nothing unless --write"
    )
    parser.add_argument("--no-write", action="store_true", help="do not append to RESULTS.md")
    parser.add_argument("--write", action="store_true", help="append to RESULTS.md even with --quick")
    parser.add_argument("--models", default="ddpmpp,ncsnpp", help="comma-separated: ddpmpp, ncsnpp")
    parser.add_argument("--batches", default=None, help="comma-separated batch sizes (default 8,32,128; quick 2,4)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per measurement (median reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps after compiling")
    parser.add_argument(
        "--matmul-n", type=int, default=None, help="size of the reference matmul (default 4096; quick 2048)"
    )
    parser.add_argument("--_one", default=None, help=argparse.SUPPRESS)  # child process: MODEL:BATCH
    args = parser.parse_args(argv)
    if args._one:
        name, batch = args._one.split(":")
        print("RESULT " + json.dumps(bench_one(name, int(batch), args.steps, args.warmup, args.quick)), flush=True)
        return
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    for m in models:
        if m not in LABELS:
            parser.error(f"unknown model {m!r}; expected one of {sorted(LABELS)}")
    batches = parse_ints(args.batches or ("2,4" if args.quick else "8,32,128"))
    if args.steps < 1 or args.warmup < 0:
        parser.error("--steps must be >= 1 and --warmup >= 0")
    matmul_n = args.matmul_n or (2048 if args.quick else 4096)
    write = not args.no_write and (args.write or not args.quick)

    machine = machine_description()
    print(f"machine: {machine}; devices: {jax.devices()}", flush=True)
    matmul_rate = matmul_flop_rate(matmul_n, reps=5)
    print(
        f"float32 matmul {matmul_n}×{matmul_n} @ {matmul_n}×{matmul_n}: {matmul_rate / 1e9:.1f} GFLOP/s (median of 5)",
        flush=True,
    )

    rows = []
    for name in models:
        for batch in batches:
            row = bench_isolated(name, batch, args.steps, args.warmup, args.quick)
            rows.append(row)
            if "failed" in row:
                print(f"{LABELS[name]} batch {batch}: {row['failed']}", flush=True)
                continue
            print(
                f"{LABELS[name]} batch {batch}: {row['params']:,} params, lower {row['lower_s']:.1f} s, "
                f"lower+compile {row['compile_s']:.1f} s, step median {row['step_s']:.3f} s "
                f"(min {row['step_min_s']:.3f}, max {row['step_max_s']:.3f}), loss {row['loss']:.4g}, "
                f"grad norm {row['grad_norm']:.4g}",
                flush=True,
            )

    stamp = datetime.date.today().isoformat()
    flops_note = (
        ""
        if all(r.get("flops") or "failed" in r for r in rows)
        else " XLA's cost analysis gave no FLOP count on this backend for some rows (n/a)."
    )
    lines = [
        f"\n## train_step — {stamp} — {machine}{' (quick: tiny networks nf=16, 1 res block)' if args.quick else ''}\n",
        f"Jitted score_sde train step (DSM loss, clip 1, Adam 2e-4 with warm-up, EMA 0.9999, state donated) on "
        f"random 32×32×3 float32 images; compile = lower + compile; s/step = median of {args.steps} steps after "
        f"{args.warmup} warm-up step(s); GFLOP/step from XLA's cost analysis of the compiled step; % of matmul = "
        f"GFLOP/s over a jitted float32 {matmul_n}² matmul's {matmul_rate / 1e9:.1f} GFLOP/s (default precision) "
        f"in the same run.{flops_note} Devices: {jax.devices()}.\n",
    ]
    lines += table_lines(rows, matmul_rate, args.quick)
    lines += [""] + torch_lines(rows, args.quick)
    publish("\n".join(lines) + "\n", write=write)


if __name__ == "__main__":
    main()
