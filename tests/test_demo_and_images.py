"""The README's demo runs end to end and writes a valid PNG; the PNG encoder round-trips."""

import struct
import zlib

import numpy as np
import pytest

from experiments import demo
from jaxdiff.images import encode_png, histogram_2d


def _decode(png: bytes) -> tuple[int, int, int, bytes]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", None
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos:pos + 4])
        tag, data = png[pos + 4:pos + 8], png[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", png[pos + 8 + length:pos + 12 + length])
        assert crc == zlib.crc32(tag + data) & 0xFFFFFFFF
        if tag == b"IHDR":
            header = struct.unpack(">IIBBBBB", data)
        elif tag == b"IDAT":
            idat += data
        pos += 12 + length
    width, height, _, colour, *_ = header
    return width, height, colour, zlib.decompress(idat)


@pytest.mark.parametrize("shape", [(5, 7), (4, 3, 3)])
def test_png_round_trip(shape):
    image = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    width, height, colour, raw = _decode(encode_png(image))
    channels = 1 if len(shape) == 2 else 3
    assert (width, height, colour) == (shape[1], shape[0], 0 if channels == 1 else 2)
    rows = np.frombuffer(raw, np.uint8).reshape(height, 1 + width * channels)
    assert np.all(rows[:, 0] == 0)
    np.testing.assert_array_equal(rows[:, 1:].reshape(shape), image)


def test_histogram_orientation():
    counts = histogram_2d(np.array([[0.9, 0.9]]), extent=1.0, size=2)
    np.testing.assert_array_equal(counts, [[0, 1], [0, 0]])  # top-right cell


def test_demo_writes_png(tmp_path, capsys):
    out = tmp_path / "ring.png"
    demo.main(["--out", str(out), "--num", "4000", "--steps", "200"])
    width, height, colour, _ = _decode(out.read_bytes())
    assert (width, height, colour) == (520, 256, 0)
    printed = capsys.readouterr().out
    weights = [float(w) for w in printed.split("mode weights (exact 0.125 each):")[1].split("\n")[0].split()]
    assert len(weights) == 8 and max(abs(w - 0.125) for w in weights) < 0.03
