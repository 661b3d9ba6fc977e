"""Dependency-free image output: PNG encoding and 2-D point-cloud histograms.

Used by the demo and, later, for sample grids; numpy and the standard library only.
"""

from __future__ import annotations

import os
import struct
import zlib

import numpy as np


def encode_png(image: np.ndarray) -> bytes:
    """PNG bytes of an 8-bit image ``[H, W]`` (grey) or ``[H, W, 3]`` (RGB)."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise TypeError(f"image must have dtype uint8, got image.dtype={image.dtype}.")
    if image.ndim == 2:
        colour_type, channels = 0, 1
    elif image.ndim == 3 and image.shape[2] == 3:
        colour_type, channels = 2, 3
    else:
        raise ValueError(f"image must have shape (H, W) or (H, W, 3), got image.shape={image.shape}.")
    height, width = image.shape[:2]
    rows = image.reshape(height, width * channels)
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)  # filter type 0 on every row

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def write_png(path: str, image: np.ndarray) -> str:
    """Write ``image`` (see :func:`encode_png`) to ``path``, creating its folder; returns ``path``.

    Written to a temporary name first and renamed, so a reader never sees half a file."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "wb") as fh:
        fh.write(encode_png(image))
    os.replace(tmp, path)
    return path


def density_image(values: np.ndarray) -> np.ndarray:
    """Map non-negative values ``[H, W]`` to a grey image, dark = high (``1 − v/max``), uint8."""
    values = np.asarray(values, dtype=np.float64)
    top = values.max()
    scaled = values / top if top > 0 else values
    return np.round(255 * (1.0 - np.clip(scaled, 0.0, 1.0))).astype(np.uint8)


def histogram_2d(points: np.ndarray, extent: float, size: int) -> np.ndarray:
    """Counts of 2-D ``points [n, 2]`` on a ``size × size`` grid over ``[-extent, extent]²``,
    rows from top (``y = +extent``) to bottom."""
    points = np.asarray(points, dtype=np.float64)
    counts, _, _ = np.histogram2d(
        points[:, 1], points[:, 0], bins=size, range=[[-extent, extent], [-extent, extent]]
    )
    return counts[::-1]
