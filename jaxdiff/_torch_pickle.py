"""Read files written by ``torch.save`` without PyTorch: tensors come back as NumPy arrays.

Both of torch's formats are read: the zip archive (default since PyTorch 1.6: ``<name>/data.pkl`` plus one
``<name>/data/<key>`` file of raw little-endian bytes per storage) and the legacy stream (a pickled magic number,
protocol and system info, the pickled object, the pickled list of storage keys, then each storage as an
int64 element count followed by its bytes). Only the classes a state dict, an optimizer state or score_sde's
checkpoint dictionary holds can be unpickled (tensors, parameters, ordered dicts, plain Python values): any
other global in the pickle is refused, as ``torch.load(weights_only=True)`` does, so loading a file never runs
code from it.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import zipfile
from typing import Any

import numpy as np

_STORAGE_DTYPES = {
    "DoubleStorage": np.float64, "FloatStorage": np.float32, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16, "CharStorage": np.int8,
    "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


class _StorageType:
    """Stands for a ``torch.*Storage`` class in the pickle: only its element dtype matters."""

    def __init__(self, name: str):
        self.dtype = np.dtype(_STORAGE_DTYPES[name])


class _Storage:
    """A flat array of a storage's elements (filled when the bytes are read)."""

    def __init__(self, dtype: np.dtype, numel: int):
        self.dtype, self.numel, self.array = dtype, numel, None


class _LazyTensor:
    """A tensor view ``(storage, offset, size, stride)``; materialized once its storage's bytes are known."""

    def __init__(self, storage: _Storage, offset: int, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, int(offset), tuple(size), tuple(stride)

    def to_numpy(self) -> np.ndarray:
        flat = self.storage.array
        if not self.size:
            return np.array(flat[self.offset])
        itemsize = flat.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(
            flat[self.offset:], shape=self.size, strides=tuple(s * itemsize for s in self.stride), writeable=False
        )
        return np.array(view)


def _rebuild_tensor(storage, storage_offset, size, stride, *unused):
    return _LazyTensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, *unused):
    return data


def _rebuild_from_type(func, new_type, args, state):
    return func(*args)


class _Marker:
    """Stands for a class the pickle names but that needs no behaviour here (``torch.nn.Parameter``, ...)."""

    def __init__(self, *args, **kwargs):
        pass


_ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type,
    ("torch.nn.parameter", "Parameter"): _Marker,
    ("torch", "Tensor"): _Marker,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "slice"): slice,
    ("builtins", "complex"): complex,
}


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, load_storage, path: str):
        super().__init__(file)
        self._load_storage, self._path = load_storage, path

    def find_class(self, module: str, name: str):
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        raise pickle.UnpicklingError(
            f"{self._path}: refusing to load global {module}.{name} (only tensors, parameters, ordered dicts and plain "
            "Python values are read from torch files; nothing in the file is executed)."
        )

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"{self._path}: unknown persistent id {pid!r} (not a torch storage).")
        storage_type, key, numel = pid[1], str(pid[2]), pid[4]
        if not isinstance(storage_type, _StorageType):
            raise pickle.UnpicklingError(f"{self._path}: storage of unsupported type {storage_type!r}.")
        return self._load_storage(key, storage_type.dtype, numel)


def _materialize(obj):
    """Replace every tensor view in a nested container by its NumPy array."""
    if isinstance(obj, _LazyTensor):
        return obj.to_numpy()
    if isinstance(obj, collections.OrderedDict):
        return collections.OrderedDict((k, _materialize(v)) for k, v in obj.items())
    if isinstance(obj, dict):
        return {k: _materialize(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_materialize(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_materialize(v) for v in obj)
    return obj


def _load_zip(path: str) -> Any:
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pickles = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
        if not pickles:
            raise ValueError(f"{path}: a zip file but not a torch.save archive (no data.pkl inside).")
        prefix = pickles[0][: -len("data.pkl")]
        byteorder = "little"
        if prefix + "byteorder" in names:
            byteorder = archive.read(prefix + "byteorder").decode().strip()
        storages: dict[str, _Storage] = {}

        def load_storage(key, dtype, numel):
            if key not in storages:
                raw = archive.read(f"{prefix}data/{key}")
                array = np.frombuffer(raw, dtype=dtype.newbyteorder("<" if byteorder == "little" else ">"))
                storage = _Storage(dtype, numel)
                storage.array = array.astype(dtype, copy=False)
                storages[key] = storage
            return storages[key]

        obj = _Unpickler(io.BytesIO(archive.read(pickles[0])), load_storage, path).load()
    return _materialize(obj)


def _load_legacy(path: str) -> Any:
    with open(path, "rb") as f:
        def plain(what):
            try:
                return _Unpickler(f, _no_storage, path).load()
            except Exception as err:  # noqa: BLE001 — any failure here means "not a torch file"
                raise ValueError(f"{path}: not a file written by torch.save ({what} unreadable: {err}).") from err

        if plain("magic number") != _LEGACY_MAGIC:
            raise ValueError(f"{path}: not a file written by torch.save (wrong magic number).")
        plain("protocol version")
        plain("system info")
        storages: dict[str, _Storage] = {}

        def load_storage(key, dtype, numel):
            if key not in storages:
                storages[key] = _Storage(dtype, numel)
            return storages[key]

        obj = _Unpickler(f, load_storage, path).load()
        keys = pickle.load(f)
        for key in keys:
            storage = storages[str(key)]
            (count,) = struct.unpack("<q", f.read(8))
            nbytes = count * storage.dtype.itemsize
            raw = f.read(nbytes)
            if len(raw) != nbytes:
                raise ValueError(f"{path}: truncated (storage {key} needs {nbytes} bytes, {len(raw)} left).")
            storage.array = np.frombuffer(raw, dtype=storage.dtype.newbyteorder("<"))
    return _materialize(obj)


def _no_storage(key, dtype, numel):
    raise pickle.UnpicklingError("storage outside the object pickle")


def load_torch_file(path) -> Any:
    """The object a ``torch.save`` file holds, with every tensor as a NumPy array (C-contiguous, its dtype).

    Raises FileNotFoundError for a missing path and ValueError naming the path for a file that is not a
    ``torch.save`` file (or holds classes other than tensors and plain containers).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file.")
    if zipfile.is_zipfile(path):
        return _load_zip(path)
    return _load_legacy(path)
