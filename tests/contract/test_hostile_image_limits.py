"""Images too large to decode (issue 24): the size is read from the header and the image refused before any
decoding, alone (exit 3, one line) or inside a folder (skipped and counted); OpenCV raising while decoding is
handled the same way. No test here allocates more than a few megabytes."""

from __future__ import annotations

import json
import struct
import zlib

import cv2
import numpy as np
import pytest

from fa3d.runtime.cli_run import main
from hostile_helpers import one_line_error
from tests.helpers.plumbing import blob_frame


def declared_png(path, width: int, height: int) -> None:
    """A small PNG whose header declares ``width`` x ``height`` pixels (its data covers a sliver of that)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                     + chunk(b"IDAT", zlib.compress(b"\0" * 2_000_000, 9)) + chunk(b"IEND", b""))


@pytest.fixture
def no_decoding(monkeypatch):
    """cv2.imread fails the test if it is called on a file named ``declares*``: such files must not be decoded."""
    real = cv2.imread

    def guarded(path, *args):
        assert "declares" not in str(path), f"{path} was decoded"
        return real(path, *args)

    monkeypatch.setattr(cv2, "imread", guarded)


@pytest.mark.parametrize("side", [20000, 60000])
def test_an_image_declaring_too_many_pixels_is_refused_without_decoding(tmp_path, plumbing_model, no_decoding,
                                                                         blob_detector, capsys, side):
    p = tmp_path / f"declares{side}.png"
    declared_png(p, side, side)
    assert p.stat().st_size < 60_000
    assert main(["--model", str(plumbing_model), "--source", str(p), "--headless"]) == 3
    line = one_line_error(capsys.readouterr().err, "fa-run")
    assert f"{side}x{side}" in line and "megapixels" in line


def test_a_folder_skips_and_counts_a_too_large_image(tmp_path, plumbing_model, no_decoding, blob_detector, capsys):
    folder = tmp_path / "imgs"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), blob_frame((320, 240), (160, 120), (40, 55)))
    declared_png(folder / "b_declares.png", 60000, 60000)
    cv2.imwrite(str(folder / "c.png"), blob_frame((320, 240), (150, 120), (40, 55)))
    js = tmp_path / "out.jsonl"
    assert main(["--model", str(plumbing_model), "--source", str(folder), "--json", str(js), "--headless"]) == 0
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    assert [json.loads(line)["file"] for line in js.read_text().splitlines()] == ["a.png", "c.png"]
    assert "decode failures 1" in captured.out and "60000x60000" in captured.out


def test_opencv_raising_while_decoding_is_a_skipped_image(tmp_path, plumbing_model, blob_detector, monkeypatch,
                                                          capsys):
    """cv2.imread raises cv2.error (CV_IO_MAX_IMAGE_PIXELS, a decoder's own failure): skipped and counted."""
    folder = tmp_path / "imgs"
    folder.mkdir()
    for name in ("a.png", "b_raises.png", "c.png"):
        cv2.imwrite(str(folder / name), blob_frame((320, 240), (160, 120), (40, 55)))
    real = cv2.imread

    def raising(path, *args):
        if "raises" in str(path):
            raise cv2.error("OpenCV(4.x) loadsave.cpp: (-215:Assertion failed) pixels <= CV_IO_MAX_IMAGE_PIXELS")
        return real(path, *args)

    monkeypatch.setattr(cv2, "imread", raising)
    from fa3d.runtime.images import ImageError, read_image

    js = tmp_path / "out.jsonl"
    assert main(["--model", str(plumbing_model), "--source", str(folder), "--json", str(js), "--headless"]) == 0
    assert "decode failures 1" in capsys.readouterr().out
    assert len(js.read_text().splitlines()) == 2
    with pytest.raises(ImageError, match="CV_IO_MAX_IMAGE_PIXELS"):
        read_image(folder / "b_raises.png")


def test_the_limit_is_applied_to_real_images_from_their_header(tmp_path):
    """A real (small) JPEG over a given limit is refused, under it decoded: the header's size is the one used."""
    from fa3d.runtime.images import ImageError, read_image

    p = tmp_path / "x.jpg"
    cv2.imwrite(str(p), np.zeros((30, 50, 3), np.uint8))
    assert read_image(p, max_pixels=1500).shape == (30, 50, 3)
    with pytest.raises(ImageError, match="50x30"):
        read_image(p, max_pixels=1499)


def test_a_video_with_frames_over_the_limit_is_refused_when_opened(blob_video, monkeypatch):
    import fa3d.runtime.sources as sources

    monkeypatch.setattr(sources, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(sources.SourceError, match="over the limit"):
        sources.VideoFileSource(blob_video)
