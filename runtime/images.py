"""Reading one image file in bounded memory: the one place the package decodes an image file.

:func:`read_image` reads the image's size from its header first (:func:`image_size`: JPEG, PNG, BMP,
PPM/PGM/PBM, TIFF and BigTIFF, WebP, by their leading bytes, whatever the file's suffix) and refuses, before
anything is decoded, an image over :data:`fa3d.runtime.policy.MAX_IMAGE_PIXELS` pixels or whose header
cannot be read: a small file that declares 20000x20000 pixels is never decoded. What OpenCV raises while
decoding (``cv2.error``, e.g. its own ``CV_IO_MAX_IMAGE_PIXELS`` limit, or running out of memory) becomes
an :class:`ImageError` with the file's name, as does a file OpenCV cannot decode.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np

from .policy import MAX_IMAGE_PIXELS

#: the most JPEG segments read while looking for the frame header (a real file has a few dozen)
_MAX_JPEG_SEGMENTS = 4096


class ImageError(ValueError):
    """An image file that is refused (too large, unknown or broken header) or cannot be decoded."""


def _jpeg_size(f: BinaryIO) -> tuple[int, int] | None:
    f.seek(2)
    for _ in range(_MAX_JPEG_SEGMENTS):
        b = f.read(1)
        while b == b"\xff":  # fill bytes before a marker
            b = f.read(1)
        if not b:
            return None
        marker = b[0]
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # markers without a length
            continue
        if marker in (0xD9, 0xDA):  # end of image, or scan data before any frame header
            return None
        head = f.read(2)
        if len(head) < 2:
            return None
        length = struct.unpack(">H", head)[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # SOFn: precision, height, width
            sof = f.read(5)
            if len(sof) < 5:
                return None
            h, w = struct.unpack(">HH", sof[1:5])
            return w, h
        if length < 2:
            return None
        f.seek(length - 2, os.SEEK_CUR)
        if (b := f.read(1)) != b"\xff":
            return None
        f.seek(-1, os.SEEK_CUR)
    return None


def _tiff_size(f: BinaryIO, head: bytes) -> tuple[int, int] | None:
    endian = "<" if head[:2] == b"II" else ">"
    big = struct.unpack(endian + "H", head[2:4])[0] == 43
    f.seek(8 if big else 4)
    raw = f.read(8 if big else 4)
    if len(raw) < (8 if big else 4):
        return None
    offset = struct.unpack(endian + ("Q" if big else "I"), raw)[0]
    f.seek(offset)
    raw = f.read(8 if big else 2)
    if len(raw) < (8 if big else 2):
        return None
    count = struct.unpack(endian + ("Q" if big else "H"), raw)[0]
    size, found = (20 if big else 12), {}
    for _ in range(min(count, 4096)):
        e = f.read(size)
        if len(e) < size:
            break
        tag, typ = struct.unpack(endian + "HH", e[:4])
        if tag in (256, 257):
            value = e[12:20] if big else e[8:12]
            fmt = {3: "H", 4: "I", 16: "Q"}.get(typ)
            if fmt is None:
                return None
            found[tag] = struct.unpack(endian + fmt, value[:struct.calcsize(fmt)])[0]
    if 256 in found and 257 in found:
        return found[256], found[257]
    return None


def _pnm_size(f: BinaryIO) -> tuple[int, int] | None:
    f.seek(2)
    tokens: list[int] = []
    text = f.read(4096)
    for line in text.split(b"\n"):
        for tok in line.split(b"#")[0].split():
            if not tok.isdigit():
                return None
            tokens.append(int(tok))
            if len(tokens) == 2:
                return tokens[0], tokens[1]
    return None


def _webp_size(head: bytes) -> tuple[int, int] | None:
    kind = head[12:16]
    if kind == b"VP8X" and len(head) >= 30:
        return int.from_bytes(head[24:27], "little") + 1, int.from_bytes(head[27:30], "little") + 1
    if kind == b"VP8 " and len(head) >= 30 and head[23:26] == b"\x9d\x01\x2a":
        w, h = struct.unpack("<HH", head[26:30])
        return w & 0x3FFF, h & 0x3FFF
    if kind == b"VP8L" and len(head) >= 25 and head[20] == 0x2F:
        bits = int.from_bytes(head[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    return None


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) of an image file, from its header only; :class:`ImageError` when the header is not
    one this function reads (JPEG, PNG, BMP, PPM/PGM/PBM, TIFF, WebP) or is broken."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(64)
            size = None
            if head[:3] == b"\xff\xd8\xff":
                size = _jpeg_size(f)
            elif head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
                size = struct.unpack(">II", head[16:24])
            elif head[:2] == b"BM" and len(head) >= 26:
                if struct.unpack("<I", head[14:18])[0] == 12:  # OS/2 BITMAPCOREHEADER: 16-bit sizes
                    size = struct.unpack("<HH", head[18:22])
                else:
                    w, h = struct.unpack("<ii", head[18:26])
                    size = (abs(w), abs(h))
            elif head[:1] == b"P" and head[1:2] in b"123456" and len(head) > 2 and head[2:3].isspace():
                size = _pnm_size(f)
            elif head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
                size = _tiff_size(f, head)
            elif head[:4] == b"RIFF" and head[8:12] == b"WEBP":
                size = _webp_size(head)
    except OSError as e:
        raise ImageError(f"{path}: cannot read the file ({e.strerror or e})") from None
    except struct.error:
        size = None
    if size is None or min(size) <= 0:
        raise ImageError(f"{path}: cannot decode this image: no JPEG, PNG, BMP, PPM/PGM, TIFF or WebP header "
                         "with its size (another format, or a broken file)")
    return int(size[0]), int(size[1])


def check_image_size(path: str | os.PathLike, max_pixels: int = MAX_IMAGE_PIXELS) -> tuple[int, int]:
    """:func:`image_size`, refusing an image over ``max_pixels`` pixels with a one-line :class:`ImageError`."""
    w, h = image_size(path)
    if w * h > max_pixels:
        raise ImageError(f"{path}: the image is {w}x{h} pixels ({w * h / 1e6:.0f} megapixels), over the limit of "
                         f"{max_pixels / 1e6:.0f} megapixels (fa3d.runtime.policy.MAX_IMAGE_PIXELS); "
                         "downscale it first")
    return w, h


def read_image(path: str | os.PathLike, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """A BGR uint8 image (H, W, 3) (grey and alpha images converted), read in bounded memory (module doc).
    Raises :class:`ImageError` naming the file (FileNotFoundError when there is none)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: image not found")
    check_image_size(path, max_pixels)
    try:
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    except (cv2.error, MemoryError) as e:
        raise ImageError(f"{path}: OpenCV cannot decode this image ({' '.join(str(e).split())[:200]})") from None
    if img is None:
        raise ImageError(f"{path}: OpenCV cannot decode this image (corrupt or unsupported format)")
    return img
