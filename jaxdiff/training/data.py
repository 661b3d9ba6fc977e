r"""Datasets and the deterministic, resumable, per-process data stream of the main job.

Datasets are held in memory as arrays in *data units* (digit levels 0..16, CIFAR pixels 0..255,
toy coordinates) plus the map to model space:

    u = (k + U)/K  (dequantized) or  k/(K − 1)  (score_sde's ``x/255``),   y = 2u − 1  if centered,

and back (``to_data_units``). The stream is built with grain's ``MapDataset``: a seeded permutation
per epoch (``shuffle(seed).repeat()``), so batch ``i`` is a pure function of ``(seed, i)``. With
``P`` processes and a global batch ``B``, process ``p`` reads rows ``[p B/P, (p+1) B/P)`` of every
global batch — and only those — so the global batch equals the single-process one row for row, and
a run on 1 or many processes sees the same data. Dequantization noise and flips are drawn on device
from the train step's key (:func:`preprocess`). The iterator state (``{"next_index": i}``) goes
into each checkpoint and resumes the stream where it stopped.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import tarfile
import zlib
from typing import Any, Iterator

import grain
import numpy as np

Array = np.ndarray

TOY_DATASETS = ("ring", "moons", "checkerboard", "swissroll")
# 2-D laws in torchcfm's conventions (jaxdiff.flows.laws), for the flow configs: published W2 figures compare.
LAW_DATASETS = ("8gaussians", "moons_torchcfm", "gaussian")
# Digit domains for translation: the digits with the same split, row for row (so they can be paired).
DIGIT_DOMAINS = ("digits", "digits_inverted", "digits_rotated")
POINT_DATASETS = TOY_DATASETS + LAW_DATASETS
DATASETS = ("digits", "cifar10") + TOY_DATASETS + LAW_DATASETS + DIGIT_DOMAINS[1:]
# datasets whose examples carry class labels (a conditional run's model.num_classes must equal the count)
LABELLED_DATASETS = {"digits": 10, "digits_inverted": 10, "digits_rotated": 10, "cifar10": 10}

CIFAR_HELP = (
    "CIFAR-10 was not found at data.path={path!r}. jaxdiff never downloads data. Download the "
    "'CIFAR-10 python version' archive (cifar-10-python.tar.gz, 163 MB) from "
    "https://www.cs.toronto.edu/~kriz/cifar.html and pass its path, or the folder it extracts to "
    "(cifar-10-batches-py), as --config.data.path=/path/to/cifar-10-python.tar.gz."
)


class DataError(ValueError):
    """A data file that exists but is not what it should be (truncated, another format, wrong shapes); the
    message names the file and the config field that points to it."""


# --------------------------------------------------------------------------------------------------
# Datasets in data units
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Dataset:
    """In-memory train/held-out arrays in data units and the map to and from model space.

    ``num_levels``: K for discrete data (17 for digits, 256 for CIFAR), ``None`` for continuous toy data.
    ``dequantize``: train on ``(k + U)/K`` (a density whose bits/dim bound the discrete model's) instead
    of ``k/(K − 1)``. ``centered``: model space ``[−1, 1]`` instead of ``[0, 1]``.
    """

    name: str
    train: Array
    test: Array
    train_labels: Array | None = None
    test_labels: Array | None = None
    num_levels: int | None = None
    dequantize: bool = False
    centered: bool = True
    random_flip: bool = False

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.train.shape[1:])

    @property
    def is_image(self) -> bool:
        return self.train.ndim == 4

    @property
    def data_width(self) -> float:
        """Width of the model-space interval of the dequantized data (2 centered, 1 otherwise)."""
        return 2.0 if self.centered else 1.0

    def to_model(self, x: Array, noise: Array | None = None) -> Array:
        """Data units → model space; ``noise`` ~ U[0,1) of x's shape is the dequantization noise."""
        x = np.asarray(x, np.float32)
        if self.num_levels is None:
            return x
        if self.dequantize:
            u = (x + (0.5 if noise is None else noise)) / self.num_levels
        else:
            u = x / (self.num_levels - 1)
        return (2.0 * u - 1.0 if self.centered else u).astype(np.float32)

    def to_data_units(self, y: Array) -> Array:
        """Model space → data units: levels ``0..K−1`` (integers) for discrete data, else unchanged."""
        y = np.asarray(y, np.float64)
        if self.num_levels is None:
            return y.astype(np.float32)
        u = (y + 1.0) / 2.0 if self.centered else y
        if self.dequantize:
            k = np.floor(u * self.num_levels)
        else:
            k = np.round(u * (self.num_levels - 1))
        k = np.clip(k, 0, self.num_levels - 1)
        return k.astype(np.uint8 if self.num_levels <= 256 else np.int32)


def load_digits_arrays() -> tuple[Array, Array]:
    """scikit-learn's handwritten digits: images ``[1797, 8, 8, 1]`` with levels 0..16 (uint8), labels."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = bunch.images.astype(np.uint8)[..., None]
    return images, bunch.target.astype(np.int32)


def stratified_split(labels: Array, fraction: float, seed: int) -> tuple[Array, Array]:
    """Indices ``(keep, held_out)``: ``round(fraction · n_c)`` examples of every class ``c`` held out,
    chosen by a seeded permutation; both index arrays sorted."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must lie in (0, 1), got {fraction!r}.")
    rng = np.random.default_rng(seed)
    held = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        held.append(rng.permutation(idx)[: int(round(fraction * idx.size))])
    held = np.sort(np.concatenate(held))
    keep = np.setdiff1d(np.arange(labels.size), held)
    return keep, held


def _cifar_members(path: str) -> dict[str, bytes]:
    """The pickled batches of the CIFAR-10 python archive (``.tar.gz``) or its extracted folder."""
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    out = {}
    if os.path.isdir(path):
        folder = path
        if not os.path.exists(os.path.join(folder, "data_batch_1")) and os.path.isdir(
            os.path.join(folder, "cifar-10-batches-py")
        ):
            folder = os.path.join(folder, "cifar-10-batches-py")
        for name in names:
            file = os.path.join(folder, name)
            if not os.path.exists(file):
                raise FileNotFoundError(f"{file} is missing: data.path={path!r} is not a complete CIFAR-10 python folder.")
            with open(file, "rb") as f:
                out[name] = f.read()
        return out
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar.getmembers():
                base = os.path.basename(member.name)
                if base in names and member.isfile():
                    out[base] = tar.extractfile(member).read()
    except (tarfile.TarError, EOFError, OSError, zlib.error) as err:
        raise DataError(f"data.path={path!r} is not a readable CIFAR-10 python archive (cifar-10-python.tar.gz): "
                        f"{type(err).__name__}: {' '.join(str(err).split())}. It may be truncated or another "
                        "file.") from None
    missing = [n for n in names if n not in out]
    if missing:
        raise ValueError(f"data.path={path!r} is not the CIFAR-10 python archive: {missing} missing inside it.")
    return out


def load_cifar10_arrays(path: str) -> tuple[Array, Array, Array, Array]:
    """CIFAR-10 from the python-version archive or folder: ``(train [50000,32,32,3] uint8, train labels,
    test [10000,32,32,3], test labels)``. Raises ``FileNotFoundError`` with download instructions."""
    if not path or not os.path.exists(path):
        raise FileNotFoundError(CIFAR_HELP.format(path=path))
    members = _cifar_members(path)

    def decode(name: str) -> tuple[Array, Array]:
        try:
            batch = pickle.loads(members[name], encoding="bytes")
            data = np.asarray(batch[b"data"], np.uint8)
            labels = np.asarray(batch[b"labels"], np.int32)
            if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or labels.shape != (data.shape[0],):
                raise ValueError(f"arrays of shape {data.shape} and labels {labels.shape}, expected [n, 3072] and [n]")
        except Exception as err:  # noqa: BLE001  (any decoding failure: the file is not CIFAR-10's)
            raise DataError(f"data.path={path!r}: the member {name!r} is not a CIFAR-10 batch ({type(err).__name__}: "
                            f"{err}).") from None
        return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels

    train = [decode(f"data_batch_{i}") for i in range(1, 6)]
    test_x, test_y = decode("test_batch")
    return (np.concatenate([t[0] for t in train]), np.concatenate([t[1] for t in train]), test_x, test_y)


def toy_points(name: str, n: int, seed: int) -> Array:
    """``n`` points ``[n, 2]`` of a toy 2-D law: ``ring`` (8 equal Gaussians on a circle of radius 2,
    std 0.25), ``moons``, ``checkerboard`` (4×4 on [−2, 2]²), ``swissroll``."""
    rng = np.random.default_rng(seed)
    if name == "ring":
        k = rng.integers(0, 8, n)
        angle = 2 * np.pi * k / 8
        centre = 2.0 * np.stack([np.cos(angle), np.sin(angle)], -1)
        return (centre + 0.25 * rng.standard_normal((n, 2))).astype(np.float32)
    if name == "moons":
        upper = rng.random(n) < 0.5
        angle = np.pi * rng.random(n)
        x = np.where(upper, np.cos(angle), 1.0 - np.cos(angle))
        y = np.where(upper, np.sin(angle), 0.5 - np.sin(angle))
        pts = np.stack([x - 0.5, y - 0.25], -1) * 1.5 + 0.05 * rng.standard_normal((n, 2))
        return pts.astype(np.float32)
    if name == "checkerboard":
        cell = rng.integers(0, 8, n)  # 8 of the 16 cells of a 4×4 board (alternating colours)
        row = cell // 2
        col = 2 * (cell % 2) + (row % 2)
        pts = np.stack([col + rng.random(n), row + rng.random(n)], -1) - 2.0
        return pts.astype(np.float32)
    if name == "swissroll":
        s = 1.5 * np.pi * (1 + 2 * rng.random(n))
        pts = np.stack([s * np.cos(s), s * np.sin(s)], -1) / 5.0 + 0.1 * rng.standard_normal((n, 2))
        return pts.astype(np.float32)
    raise ValueError(f"toy dataset must be one of {TOY_DATASETS}, got {name!r}.")


def digits_domain(name: str, levels: Array) -> Array:
    """Digit levels ``[n, 8, 8, 1]`` (0..16) carried into a domain of :data:`DIGIT_DOMAINS`:
    ``digits_inverted`` ``16 − k`` (``−x`` in model space), ``digits_rotated`` a quarter turn counter-clockwise."""
    if name == "digits_inverted":
        return (16 - np.asarray(levels).astype(np.int16)).astype(np.uint8)
    if name == "digits_rotated":
        return np.ascontiguousarray(np.rot90(levels, k=1, axes=(1, 2)))
    if name != "digits":
        raise ValueError(f"digit domain must be one of {DIGIT_DOMAINS}, got {name!r}.")
    return np.asarray(levels)


def digits_upright(name: str, levels: Array) -> Array:
    """The inverse of :func:`digits_domain`: levels of domain ``name`` back to upright digits."""
    if name == "digits_inverted":
        return 16.0 - np.asarray(levels, np.float64)
    if name == "digits_rotated":
        return np.ascontiguousarray(np.rot90(levels, k=-1, axes=(1, 2)))
    return np.asarray(levels)


def law_points(name: str, n: int, seed: int) -> Array:
    """``n`` points ``[n, 2]`` of a 2-D law of :mod:`jaxdiff.flows.laws` (torchcfm's conventions) drawn with
    ``seed``; ``moons_torchcfm`` is its ``moons``, ``gaussian`` is ``N(0, I₂)``."""
    import jax

    from jaxdiff.flows.laws import get_law

    law = get_law("moons" if name == "moons_torchcfm" else name)
    return np.asarray(law(jax.random.PRNGKey(seed), n), np.float32)


def load_dataset(data_config: Any, name: str | None = None) -> Dataset:
    """The dataset a config's ``data`` section names (``dataset``, ``path``, ``centered``,
    ``uniform_dequantization``, ``random_flip``, ``test_fraction``, ``split_seed``, ``num_examples``);
    ``name`` overrides ``data.dataset`` with the same settings (a translation's source, ``data.source``)."""
    name = data_config.dataset if name is None else name
    if name in DIGIT_DOMAINS:
        images, labels = load_digits_arrays()
        keep, held = stratified_split(labels, data_config.test_fraction, data_config.split_seed)
        images = digits_domain(name, images)
        return Dataset(name, images[keep], images[held], labels[keep], labels[held], num_levels=17,
                       dequantize=data_config.uniform_dequantization, centered=data_config.centered,
                       random_flip=data_config.random_flip)
    if name == "cifar10":
        tr, trl, te, tel = load_cifar10_arrays(data_config.path)
        return Dataset("cifar10", tr, te, trl, tel, num_levels=256, dequantize=data_config.uniform_dequantization,
                       centered=data_config.centered, random_flip=data_config.random_flip)
    if name in TOY_DATASETS:
        n = int(data_config.num_examples)
        pts = toy_points(name, n + n // 4, data_config.split_seed)
        return Dataset(name, pts[:n], pts[n:], centered=data_config.centered)
    if name in LAW_DATASETS:
        n = int(data_config.num_examples)
        # a source law draws with another seed than a target law (independent pools for translation)
        pts = law_points(name, n + n // 4, data_config.split_seed + LAW_DATASETS.index(name) + 1)
        return Dataset(name, pts[:n], pts[n:], centered=data_config.centered)
    raise ValueError(f"data.dataset must be one of {DATASETS}, got {name!r}.")


# --------------------------------------------------------------------------------------------------
# The stream
# --------------------------------------------------------------------------------------------------


def _batch_rows(global_batch: int, process_index: int, process_count: int):
    if global_batch % process_count:
        raise ValueError(
            f"training.batch_size={global_batch} is not divisible by the number of processes {process_count}."
        )
    local = global_batch // process_count

    def position(j: int) -> int:
        """Position in the global shuffled stream of this process's j-th example."""
        return (j // local) * global_batch + process_index * local + (j % local)

    return local, position


def make_stream(
    dataset: Dataset,
    *,
    global_batch: int,
    seed: int,
    process_index: int = 0,
    process_count: int = 1,
    source: Dataset | None = None,
    paired: bool = False,
    labels: bool = False,
) -> grain.MapDataset:
    """A grain ``MapDataset`` whose item ``i`` is this process's rows of global batch ``i``, in data
    units (``[B/P, *shape]``): epoch-wise seeded permutations of the training set. Only the indices of
    the global batch are computed; each process gathers its own rows only. Dequantization noise and
    flips are drawn on device by :func:`preprocess` from the train step's key, so they too are the same
    on 1 or many processes.

    ``source`` (a flow's source dataset): items are ``(target rows, source rows)``; the source rows follow
    their own seeded permutation (seed + 1), or with ``paired`` the same indices as the target rows (datasets
    whose rows correspond, as the digit domains).

    ``labels`` (a class-conditional run): items are ``{"x0": rows, "cond": their labels}`` (int32 ``[B/P]``)."""
    n = dataset.train.shape[0]
    if global_batch < 1:
        raise ValueError(f"training.batch_size must be ≥ 1, got {global_batch}.")
    if process_count < 1 or not 0 <= process_index < process_count:
        raise ValueError(f"process_index={process_index} must lie in [0, process_count={process_count}).")
    if global_batch % process_count:
        raise ValueError(
            f"training.batch_size={global_batch} is not divisible by the number of processes {process_count}."
        )
    local = global_batch // process_count
    rows = slice(process_index * local, (process_index + 1) * local)
    train = dataset.train
    indices = grain.MapDataset.range(n).shuffle(seed=seed).repeat(None).batch(global_batch)
    if labels:
        if dataset.train_labels is None:
            raise ValueError(f"dataset {dataset.name!r} has no class labels; conditional runs need one of "
                             f"{sorted(LABELLED_DATASETS)}.")
        if source is not None:
            raise ValueError("class-conditional translation (labels with a data source) is not supported.")
        train_labels = np.asarray(dataset.train_labels, np.int32)
        return indices.map(lambda idx: {"x0": train[np.asarray(idx)[rows]],
                                        "cond": train_labels[np.asarray(idx)[rows]]})
    if source is None:
        return indices.map(lambda idx: train[np.asarray(idx)[rows]])
    source_train = source.train
    if paired:
        if source_train.shape[0] != n:
            raise ValueError(f"paired data needs row-for-row datasets: {dataset.name!r} has {n} training rows, "
                             f"{source.name!r} has {source_train.shape[0]}.")
        return indices.map(lambda idx: (train[np.asarray(idx)[rows]], source_train[np.asarray(idx)[rows]]))
    source_indices = grain.MapDataset.range(source_train.shape[0]).shuffle(seed=seed + 1).repeat(None).batch(
        global_batch)
    return indices.map_with_index(
        lambda i, idx: (train[np.asarray(idx)[rows]], source_train[np.asarray(source_indices[i])[rows]]))


def preprocess(dataset: Dataset, key, batch):
    """Data units → model space on device (jittable): ``y = 2 (k + U)/K − 1`` (dequantized, centered)
    etc. as :meth:`Dataset.to_model`, then a horizontal flip of each image with probability ½ if the
    dataset has ``random_flip``. ``key`` drives both draws over the whole (global) batch."""
    import jax
    import jax.numpy as jnp

    x = jnp.asarray(batch).astype(jnp.float32)
    k_noise, k_flip = jax.random.split(key)
    if dataset.num_levels is not None:
        if dataset.dequantize:
            u = (x + jax.random.uniform(k_noise, x.shape, jnp.float32)) / dataset.num_levels
        else:
            u = x / (dataset.num_levels - 1)
        x = 2.0 * u - 1.0 if dataset.centered else u
    if dataset.random_flip and dataset.is_image:
        flip = jax.random.bernoulli(k_flip, 0.5, (x.shape[0], 1, 1, 1))
        x = jnp.where(flip, x[:, :, ::-1], x)
    return x


class DataIterator:
    """An infinite, checkpointable iterator over a :func:`make_stream`: ``next(it)``, ``get_state()``
    (a JSON dict) and ``set_state(state)``."""

    def __init__(self, stream: grain.MapDataset):
        self._stream = stream
        self._iter = iter(stream.to_iter_dataset())

    def __iter__(self) -> Iterator[Array]:
        return self

    def __next__(self) -> Array:
        return next(self._iter)

    def get_state(self) -> dict:
        return dict(self._iter.get_state())

    def set_state(self, state: dict) -> None:
        self._iter.set_state(dict(state))


__all__ = [
    "CIFAR_HELP",
    "DataError",
    "DATASETS",
    "DIGIT_DOMAINS",
    "LAW_DATASETS",
    "POINT_DATASETS",
    "TOY_DATASETS",
    "DataIterator",
    "Dataset",
    "load_cifar10_arrays",
    "load_dataset",
    "load_digits_arrays",
    "digits_domain",
    "digits_upright",
    "law_points",
    "make_stream",
    "preprocess",
    "stratified_split",
    "toy_points",
]
