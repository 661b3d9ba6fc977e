"""jaxdiff's FID Inception pipeline against pytorch-fid (and torch-fidelity's IS / KID) on the same weights and images.

Both sides load the same seeded stand-in weights (``jaxdiff.inception.random_state_dict``: pytorch-fid's keys,
random values — the real file cannot be downloaded here) and see the same uint8 images: pool3 features at input
sizes 8, 32, 64 and 512 (→ 299), FID of two sets of ``--num`` 32 × 32 images, Inception Score and KID; and the
throughput of feature extraction on 32 × 32 images, one after the other on this machine.

The peer runs in a separate Python that has torch, pytorch-fid and torch-fidelity (``--peer-python``, e.g. a
scratch venv; jaxdiff does not depend on them). Without it only jaxdiff's side is measured.

    python -m benchmarks.inception_exactness --peer-python /path/to/venv/bin/python      # 2,000 + 2,000 images
    python -m benchmarks.inception_exactness --num 200 --no-write
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import tempfile
import time

import numpy as np

from benchmarks._common import machine_description, publish

SIZES = (8, 32, 64, 512)

# Runs in the peer's Python: pytorch-fid's InceptionV3 with the stand-in weights (its download monkeypatched to return
# them), features and IS logits (pool3 · Wᵀ, torch-fidelity's "logits_unbiased"), pytorch-fid's FID, torch-fidelity's
# IS and KID, and throughput.
PEER = r'''
import json, sys, time, numpy as np, torch
import pytorch_fid, pytorch_fid.inception as pfi
from pytorch_fid.fid_score import calculate_frechet_distance
import torch_fidelity
from torch_fidelity.metric_isc import isc_features_to_metric
from torch_fidelity.metric_kid import kid_features_to_metric
work = sys.argv[1]
state = {k: torch.from_numpy(v) for k, v in np.load(f"{work}/weights.npz").items()}
captured = {}
original = pfi.fid_inception_v3
def build():
    net = original(); captured["net"] = net; return net
pfi.load_state_dict_from_url = lambda *a, **k: dict(state)
pfi.fid_inception_v3 = build
model = pfi.InceptionV3([3], resize_input=True, normalize_input=True, use_fid_inception=True).eval()
fc = captured["net"].fc
@torch.no_grad()
def features(images, batch):
    pools = []
    for s in range(0, len(images), batch):
        x = torch.from_numpy(images[s:s + batch]).permute(0, 3, 1, 2).float().div(255)
        pools.append(model(x)[0].squeeze(3).squeeze(2))
    pool = torch.cat(pools)
    return pool.double().numpy(), (pool @ fc.weight.T).double().numpy()
data = np.load(f"{work}/images.npz")
out, timing = {}, {}
for s in (8, 32, 64, 512):
    out[f"pool3_{s}"], out[f"logits_{s}"] = features(data[f"size_{s}"], 50)
features(data["set_a"][:50], 50)  # warm-up
t0 = time.perf_counter(); out["pool3_a"], out["logits_a"] = features(data["set_a"], 50)
timing["images_per_s"] = len(data["set_a"]) / (time.perf_counter() - t0)
out["pool3_b"], out["logits_b"] = features(data["set_b"], 50)
stats = lambda f: (f.mean(0), np.cov(f, rowvar=False))
fid = calculate_frechet_distance(*stats(out["pool3_a"]), *stats(out["pool3_b"]))
isc = isc_features_to_metric(torch.from_numpy(out["logits_a"].astype(np.float32)), splits=10, shuffle=False)
isc_tf = isc_features_to_metric(torch.from_numpy(out["logits_a"].astype(np.float32)))
m = min(1000, len(out["pool3_a"]))
kid = kid_features_to_metric(torch.from_numpy(out["pool3_a"]), torch.from_numpy(out["pool3_b"]), kid_subset_size=m,
                             verbose=False)
np.savez(f"{work}/peer.npz", **out)
json.dump({"fid": float(fid), "is": [float(v) for v in isc.values()], "is_shuffled": [float(v) for v in isc_tf.values()],
           "kid": [float(v) for v in kid.values()], "kid_subset_size": m, "timing": timing, "threads": torch.get_num_threads(),
           "versions": {"torch": torch.__version__, "pytorch_fid": pytorch_fid.__version__,
                        "torch_fidelity": torch_fidelity.__version__}}, open(f"{work}/peer.json", "w"))
'''


def blocky_images(n: int, size: int, seed: int, colour_shift=(0, 0, 0)) -> np.ndarray:
    """``n`` uint8 images ``[n, size, size, 3]``: a random coarse grid (2–16 cells a side) repeated up to ``size``, plus
    pixel noise and a colour shift."""
    rng = np.random.default_rng([seed, size])
    out = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        cells = [c for c in (2, 4, 8, 16) if size % c == 0]
        g = int(rng.choice(cells))
        low = rng.integers(0, 256, (g, g, 3))
        img = np.repeat(np.repeat(low, size // g, axis=0), size // g, axis=1)
        out[i] = np.clip(img + rng.integers(-12, 13, img.shape) + np.asarray(colour_shift), 0, 255)
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num", type=int, default=2000, help="images per set for FID / IS / KID (≥ 2,000 in the issue)")
    parser.add_argument("--batch", type=int, default=50, help="images per compiled batch (pytorch-fid's default 50)")
    parser.add_argument("--peer-python", default=None, help="a Python with torch, pytorch-fid and torch-fidelity")
    parser.add_argument("--no-write", action="store_true", help="print only; do not append to RESULTS.md")
    args = parser.parse_args(argv)

    import jax

    from jaxdiff import inception, metrics

    work = tempfile.mkdtemp(prefix="inception_exactness_")
    state = inception.random_state_dict()
    np.savez(os.path.join(work, "weights.npz"), **state)
    images = {f"size_{s}": blocky_images(6, s, seed=s) for s in SIZES}
    images["set_a"] = blocky_images(args.num, 32, seed=1)
    images["set_b"] = blocky_images(args.num, 32, seed=2, colour_shift=(12, -6, 20))
    np.savez(os.path.join(work, "images.npz"), **images)

    weights = os.path.join(work, "weights.npz")
    ours: dict = {}
    for s in SIZES:
        ours[f"pool3_{s}"], ours[f"logits_{s}"] = metrics.inception_features_and_logits(images[f"size_{s}"], weights,
                                                                                       batch_size=6)
    metrics.inception_features(images["set_a"][: args.batch], weights, batch_size=args.batch)  # compile
    started = time.perf_counter()
    ours["pool3_a"], ours["logits_a"] = metrics.inception_features_and_logits(images["set_a"], weights,
                                                                             batch_size=args.batch)
    ours_rate = args.num / (time.perf_counter() - started)
    ours["pool3_b"], ours["logits_b"] = metrics.inception_features_and_logits(images["set_b"], weights,
                                                                             batch_size=args.batch)
    subset = min(1000, args.num)
    figures = {"fid": metrics.fid(ours["pool3_a"], ours["pool3_b"]),
               "is": metrics.inception_score(ours["logits_a"]),
               "is_shuffled": metrics.inception_score(ours["logits_a"], shuffle_seed=2020),
               "kid": metrics.kernel_inception_distance(ours["pool3_a"], ours["pool3_b"], subset_size=subset)}

    peer = None
    if args.peer_python:
        script = os.path.join(work, "peer.py")
        with open(script, "w") as fh:
            fh.write(PEER)
        done = subprocess.run([args.peer_python, script, work], capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"the peer script failed:\n{done.stderr[-3000:]}")
        with open(os.path.join(work, "peer.json")) as fh:
            peer = json.load(fh)
        theirs = dict(np.load(os.path.join(work, "peer.npz")))

    lines = [f"\n## inception_exactness — {datetime.date.today()}\n",
             f"Machine: {machine_description()}. Stand-in weights `jaxdiff.inception.random_state_dict()` (pytorch-fid's "
             f"keys, seeded values), blocky uint8 images; sets of {args.num} 32 × 32 images; batch {args.batch}; "
             "`python -m benchmarks.inception_exactness"
             + (" --peer-python <venv with torch, pytorch-fid, torch-fidelity>`" if peer else "`") + ".\n"]
    if peer:
        v = peer["versions"]
        lines.append(f"Peer: torch {v['torch']}, pytorch-fid {v['pytorch_fid']}, torch-fidelity {v['torch_fidelity']} "
                     f"({peer['threads']} threads), run after jaxdiff in the same command.\n")
        lines.append("| quantity | jaxdiff | peer | difference |\n|---|---|---|---|")
        for s in SIZES:
            scale = np.abs(theirs[f"pool3_{s}"]).max()
            lines.append(f"| pool3 features, {s}×{s} → 299 (6 images; largest feature {scale:.1f}) | | pytorch-fid | "
                         f"max abs {np.abs(ours[f'pool3_{s}'] - theirs[f'pool3_{s}']).max():.2e} |")
            lines.append(f"| IS logits (pool3·Wᵀ), {s}×{s} | | pytorch-fid's fc | "
                         f"max abs {np.abs(ours[f'logits_{s}'] - theirs[f'logits_{s}']).max():.2e} |")
        lines.append(f"| pool3 features, set A ({args.num} images) | | pytorch-fid | "
                     f"max abs {np.abs(ours['pool3_a'] - theirs['pool3_a']).max():.2e} |")
        rel = abs(figures["fid"] - peer["fid"]) / peer["fid"]
        lines.append(f"| FID(A, B) | {figures['fid']:.6f} | {peer['fid']:.6f} (pytorch-fid, scipy sqrtm) | "
                     f"relative {rel:.1e} |")
        for name, key, ref in (("IS (10 splits, unshuffled)", "is", "is"),
                               ("IS (torch-fidelity default: shuffled, seed 2020)", "is_shuffled", "is_shuffled")):
            ours_v, peer_v = figures[key], peer[ref]
            lines.append(f"| {name} | {ours_v[0]:.6f} ± {ours_v[1]:.6f} | {peer_v[0]:.6f} ± {peer_v[1]:.6f} "
                         f"(torch-fidelity) | {abs(ours_v[0] - peer_v[0]) / peer_v[0]:.1e} |")
        lines.append(f"| KID (100 subsets of {subset}) | {figures['kid'][0]:.6f} ± {figures['kid'][1]:.6f} | "
                     f"{peer['kid'][0]:.6f} ± {peer['kid'][1]:.6f} (torch-fidelity) | "
                     f"{abs(figures['kid'][0] - peer['kid'][0]) / abs(peer['kid'][0]):.1e} |")
        rate = peer["timing"]["images_per_s"]
        lines.append(f"| feature extraction, 32 × 32 → 299, images/s | {ours_rate:.2f} | {rate:.2f} (pytorch-fid) | "
                     f"{ours_rate / rate:.2f}× |")
    else:
        lines.append("| quantity | jaxdiff |\n|---|---|")
        lines.append(f"| FID(A, B) | {figures['fid']:.6f} |")
        lines.append(f"| IS | {figures['is'][0]:.6f} ± {figures['is'][1]:.6f} |")
        lines.append(f"| KID | {figures['kid'][0]:.6f} ± {figures['kid'][1]:.6f} |")
        lines.append(f"| feature extraction, 32 × 32 → 299, images/s | {ours_rate:.2f} |")
    lines.append(f"\n(jax devices: {jax.devices()[0].platform}; work files in {work}.)\n")
    publish("\n".join(lines) + "\n", not args.no_write)


if __name__ == "__main__":
    main()
