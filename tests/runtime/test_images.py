"""fa3d.runtime.images: image sizes from headers (every format the package reads, by content, not suffix)."""

from __future__ import annotations

import struct

import cv2
import numpy as np
import pytest

from fa3d.runtime.images import ImageError, image_size, read_image

IMG = np.random.default_rng(0).integers(0, 255, (37, 53, 3), dtype=np.uint8)


@pytest.mark.parametrize("ext, params", [
    (".jpg", []), (".jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]), (".png", []), (".bmp", []), (".ppm", []),
    (".pgm", []), (".pbm", []), (".tif", []), (".tiff", [cv2.IMWRITE_TIFF_COMPRESSION, 1]),
    (".webp", [cv2.IMWRITE_WEBP_QUALITY, 80]), (".webp", [cv2.IMWRITE_WEBP_QUALITY, 101])])
def test_sizes_from_headers_of_files_opencv_writes(tmp_path, ext, params):
    p = tmp_path / f"x{ext}"
    assert cv2.imwrite(str(p), IMG if ext not in (".pgm", ".pbm") else IMG[..., 0], params)
    assert image_size(p) == (53, 37)
    assert read_image(p).shape == (37, 53, 3)
    wrong = tmp_path / "named.gif"  # the content decides, not the suffix
    wrong.write_bytes(p.read_bytes())
    assert image_size(wrong) == (53, 37)


def test_jpeg_with_a_large_exif_segment_and_alpha_webp(tmp_path):
    jpg = cv2.imencode(".jpg", IMG)[1].tobytes()
    app1 = b"\xff\xe1" + (2 + 60000).to_bytes(2, "big") + b"Exif\0\0" + b"\0" * (60000 - 6)
    p = tmp_path / "exif.jpg"
    p.write_bytes(jpg[:2] + app1 + jpg[2:])
    assert image_size(p) == (53, 37)
    q = tmp_path / "alpha.webp"
    cv2.imwrite(str(q), np.zeros((41, 61, 4), np.uint8))
    assert image_size(q) == (61, 41)


def test_big_endian_tiff_and_bigtiff_headers(tmp_path):
    be = (b"MM\x00\x2a" + struct.pack(">I", 8) + struct.pack(">H", 2) + struct.pack(">HHI", 256, 3, 1)
          + struct.pack(">H", 300) + b"\0\0" + struct.pack(">HHII", 257, 4, 1, 200))
    (tmp_path / "be.tif").write_bytes(be)
    assert image_size(tmp_path / "be.tif") == (300, 200)
    big = (b"II\x2b\x00" + struct.pack("<HHQ", 8, 0, 16) + struct.pack("<Q", 2)
           + struct.pack("<HHQQ", 256, 16, 1, 70000) + struct.pack("<HHQQ", 257, 3, 1, 90))
    (tmp_path / "big.tif").write_bytes(big)
    assert image_size(tmp_path / "big.tif") == (70000, 90)


@pytest.mark.parametrize("content", [b"", b"\x89PNG\r\n\x1a\n", b"GIF89a" + b"\0" * 20, b"\xff\xd8\xff\xe0\x00",
                                     b"P6\n# no size\n", b"BM" + b"\0" * 10])
def test_unreadable_headers_are_refused(tmp_path, content):
    p = tmp_path / "bad.png"
    p.write_bytes(content)
    with pytest.raises(ImageError, match="cannot decode"):
        image_size(p)
    with pytest.raises(FileNotFoundError):
        read_image(tmp_path / "missing.png")
