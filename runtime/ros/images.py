"""ROS image messages <-> OpenCV BGR uint8 images, without cv_bridge.

Decoded: ``sensor_msgs/Image`` in :data:`RAW_ENCODINGS` (8 bits per channel; the row stride ``step`` is
honoured) and ``sensor_msgs/CompressedImage`` in JPEG or PNG. Any other encoding raises
:class:`UnsupportedEncoding`, which names the encodings we take; a message whose data is too short for its
size raises :class:`BadImage`. ``yuv422`` is ROS's name for UYVY byte order (image_transport and
usb_cam agree), ``yuv422_yuy2`` / ``yuyv`` for YUYV.
"""

from __future__ import annotations

import cv2
import numpy as np

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
IMAGE_TYPES = (IMAGE, COMPRESSED)

#: encoding -> (channels, OpenCV conversion to BGR or None)
RAW_ENCODINGS: dict[str, tuple[int, int | None]] = {
    "bgr8": (3, None),
    "rgb8": (3, cv2.COLOR_RGB2BGR),
    "mono8": (1, cv2.COLOR_GRAY2BGR),
    "8uc1": (1, cv2.COLOR_GRAY2BGR),
    "8uc3": (3, None),
    "bgra8": (4, cv2.COLOR_BGRA2BGR),
    "rgba8": (4, cv2.COLOR_RGBA2BGR),
    "yuv422": (2, cv2.COLOR_YUV2BGR_UYVY),
    "uyvy": (2, cv2.COLOR_YUV2BGR_UYVY),
    "yuv422_yuy2": (2, cv2.COLOR_YUV2BGR_YUY2),
    "yuyv": (2, cv2.COLOR_YUV2BGR_YUY2),
}
COMPRESSED_FORMATS = ("jpeg", "jpg", "png")


class BadImage(ValueError):
    """An image message that cannot be decoded (truncated data, impossible size, undecodable bytes)."""


class UnsupportedEncoding(BadImage):
    """An encoding fa3d does not read; every message of the topic will have it, so the run must stop."""


def _raw_to_bgr(msg) -> np.ndarray:
    encoding = str(msg.encoding).lower()
    if encoding not in RAW_ENCODINGS:
        raise UnsupportedEncoding(f"image encoding {msg.encoding!r} is not supported; fa3d reads "
                                  f"{', '.join(k for k in RAW_ENCODINGS if not k[0].isdigit())} "
                                  "and CompressedImage jpeg/png")
    channels, conversion = RAW_ENCODINGS[encoding]
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    data = np.asarray(msg.data, dtype=np.uint8).reshape(-1)
    if h <= 0 or w <= 0 or step < w * channels:
        raise BadImage(f"impossible image size {w}x{h} with step {step} for {msg.encoding}")
    if data.size < step * (h - 1) + w * channels:
        raise BadImage(f"image data holds {data.size} bytes, {w}x{h} {msg.encoding} needs {step * h}")
    rows = np.lib.stride_tricks.as_strided(data, shape=(h, w * channels), strides=(step, 1))
    image = np.ascontiguousarray(rows).reshape(h, w, channels)
    if conversion is None:
        return image
    return cv2.cvtColor(image if channels > 1 else image[..., 0], conversion)


def _compressed_to_bgr(msg) -> np.ndarray:
    fmt = str(msg.format).lower()
    if not any(f in fmt for f in COMPRESSED_FORMATS):
        raise UnsupportedEncoding(f"compressed image format {msg.format!r} is not supported; fa3d reads "
                                  "jpeg and png (and raw Image messages)")
    image = cv2.imdecode(np.asarray(msg.data, dtype=np.uint8).reshape(-1), cv2.IMREAD_COLOR)
    if image is None:
        raise BadImage(f"the {msg.format} data of this CompressedImage does not decode")
    return image


def to_bgr(msg, msgtype: str) -> np.ndarray:
    """An OpenCV BGR uint8 (H, W, 3) image from a decoded Image or CompressedImage message."""
    if msgtype == COMPRESSED:
        return _compressed_to_bgr(msg)
    if msgtype == IMAGE:
        return _raw_to_bgr(msg)
    raise UnsupportedEncoding(f"{msgtype} is not an image type ({', '.join(IMAGE_TYPES)})")


def image_message(store, header, image_bgr: np.ndarray):
    """A ``sensor_msgs/Image`` (bgr8) of ``image_bgr`` (H, W, 3) uint8 with ``header``."""
    image = np.ascontiguousarray(image_bgr, dtype=np.uint8)
    h, w = image.shape[:2]
    return store.types[IMAGE](header=header, height=h, width=w, encoding="bgr8", is_bigendian=0, step=w * 3,
                              data=image.reshape(-1))
