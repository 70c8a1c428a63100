"""Optional implicit INT8 calibration for TensorRT 8.5 to 10.x: an entropy calibrator over a calibration ``.npz``.

Q/DQ ONNX (:mod:`.qdq`) is the default everywhere and the only INT8 path on TensorRT 11, which removed
``IInt8Calibrator``; this is for users of 8.5-10.x who prefer TensorRT's own calibration. It reads the
same framework-neutral file as everything else and keeps a calibration cache file, so a rebuild on the
same machine skips calibration. ``tensorrt`` and ``pycuda`` are imported only when a calibrator is
made; a CUDA context must already be current (create it explicitly; never ``pycuda.autoinit``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from packaging.version import Version

from fa3d.runtime.atomic import atomic_write_bytes
from fa3d.runtime.policy import MIN_TENSORRT, TRT_STRONGLY_TYPED_ONLY
from fa3d.runtime.preprocess import PreprocessConfig

from .calibset import load_calibration_set


class CalibratorUnavailable(RuntimeError):
    """Implicit calibration is impossible with this TensorRT (11 and later) or without TensorRT."""


def check_trt_version(version: str) -> None:
    v = Version(version)
    if v >= TRT_STRONGLY_TYPED_ONLY:
        raise CalibratorUnavailable(
            f"TensorRT {version} has no INT8 calibrator (IInt8Calibrator was removed in TensorRT 11); use the "
            "Q/DQ ONNX from `fa-export --int8`, which needs no calibrator")
    if v < MIN_TENSORRT:
        raise CalibratorUnavailable(f"TensorRT {version} is older than {MIN_TENSORRT}, the oldest fa3d supports")


def make_entropy_calibrator(calib_npz: str | os.PathLike, expected: PreprocessConfig,
                            cache_file: str | os.PathLike, *, batch_size: int = 8, trt=None, cuda=None):
    """An ``IInt8EntropyCalibrator2`` feeding the set's inputs in batches of ``batch_size``.

    ``trt``/``cuda`` default to the ``tensorrt`` and ``pycuda.driver`` modules (parameters for tests
    with stand-in modules). Set it on the builder config with ``config.int8_calibrator = calibrator``
    together with ``BuilderFlag.INT8`` and ``config.set_calibration_profile(profile)`` (dynamic shapes
    need a calibration profile, and ``batch_size`` must be that profile's OPT batch; fa-export's builder
    does both, see :func:`fa3d.export.trt_build.build_engine`). TensorRT 8.5 to 10.11 (weakly typed).
    Call ``release()`` with the CUDA context current before the context goes.
    """
    if trt is None:
        try:
            import tensorrt as trt
        except Exception as e:  # noqa: BLE001 - tensorrt can fail with errors other than ImportError
            raise CalibratorUnavailable(f"TensorRT cannot be imported ({e}); implicit calibration needs it") from None
    check_trt_version(str(trt.__version__))
    if cuda is None:
        try:
            import pycuda.driver as cuda
        except Exception as e:  # noqa: BLE001
            raise CalibratorUnavailable(f"pycuda cannot be imported ({e}); implicit calibration needs it") from None
    cs = load_calibration_set(calib_npz, expected)
    data = np.ascontiguousarray(cs.inputs, dtype=np.float32)
    cache_path = Path(cache_file)
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        """Reads the calibration set; the cache file makes later builds skip calibration."""

        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.data = data
            self.batch = batch_size
            self.index = 0
            self.device = cuda.mem_alloc(int(batch_size * data[0].nbytes))

        def get_batch_size(self) -> int:
            return self.batch

        def get_batch(self, names, p_str=None):  # noqa: ARG002 - TensorRT's signature
            if self.index + self.batch > len(self.data):
                return None  # TensorRT ends calibration on None; a last partial batch is dropped
            chunk = np.ascontiguousarray(self.data[self.index:self.index + self.batch])
            cuda.memcpy_htod(self.device, chunk)
            self.index += self.batch
            return [int(self.device)]

        def read_calibration_cache(self):
            return cache_path.read_bytes() if cache_path.is_file() else None

        def write_calibration_cache(self, cache) -> None:
            atomic_write_bytes(cache_path, bytes(cache))

        def release(self) -> None:
            """Free the device buffer (with the CUDA context current)."""
            if self.device is not None:
                self.device.free()
                self.device = None

    if len(data) < batch_size:
        raise ValueError(f"{calib_npz}: {len(data)} calibration inputs are fewer than one batch of {batch_size}")
    return EntropyCalibrator()
