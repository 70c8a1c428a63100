"""The optional TensorRT entropy calibrator: logic against stand-in modules (not a TensorRT run), and a gpu test."""

from __future__ import annotations

import types

import numpy as np
import pytest

from fa3d.calibration.calibset import save_calibration_set
from fa3d.calibration.trt_calibrator import CalibratorUnavailable, check_trt_version, make_entropy_calibrator


class _FakeBase:
    def __init__(self) -> None:
        self.base_initialised = True


def _fake_trt(version):
    return types.SimpleNamespace(__version__=version, IInt8EntropyCalibrator2=_FakeBase)


class _FakeCuda:
    def __init__(self) -> None:
        self.copies = []

    def mem_alloc(self, nbytes):
        self.nbytes = nbytes
        return 0xBEEF

    def memcpy_htod(self, dst, array):
        assert dst == 0xBEEF and array.flags.c_contiguous and array.nbytes <= self.nbytes
        self.copies.append(array.copy())


@pytest.mark.parametrize("version", ["11.0.0", "11.2.1"])
def test_refused_on_trt11(version):
    with pytest.raises(CalibratorUnavailable, match="no INT8 calibrator.*Q/DQ"):
        check_trt_version(version)


def test_refused_on_old_trt():
    with pytest.raises(CalibratorUnavailable, match="older than 8.5"):
        check_trt_version("8.4.3")


def test_batches_and_cache(tmp_path, synthetic_set, preprocess_config):
    npz = save_calibration_set(synthetic_set.subset(range(20)), tmp_path / "c.npz")
    cuda = _FakeCuda()
    cache = tmp_path / "calib.cache"
    cal = make_entropy_calibrator(npz, preprocess_config, cache, batch_size=8, trt=_fake_trt("10.3.0"), cuda=cuda)
    assert isinstance(cal, _FakeBase) and cal.base_initialised and cal.get_batch_size() == 8
    assert cal.read_calibration_cache() is None
    ptrs = [cal.get_batch(["input"]), cal.get_batch(["input"]), cal.get_batch(["input"])]
    assert ptrs == [[0xBEEF], [0xBEEF], None]  # 20 inputs -> two full batches of 8
    np.testing.assert_array_equal(np.concatenate(cuda.copies), synthetic_set.inputs[:16])
    cal.write_calibration_cache(b"TRT-8601-EntropyCalibration2\n")
    assert cal.read_calibration_cache() == b"TRT-8601-EntropyCalibration2\n"
    with pytest.raises(CalibratorUnavailable, match="TensorRT 11"):
        make_entropy_calibrator(npz, preprocess_config, cache, trt=_fake_trt("11.0"), cuda=cuda)
    from fa3d.runtime.preprocess import PreprocessConfig
    with pytest.raises(ValueError, match="another preprocessing"):
        make_entropy_calibrator(npz, PreprocessConfig(input_size=64), cache, trt=_fake_trt("8.6.1"), cuda=cuda)


@pytest.mark.gpu
def test_real_tensorrt_calibrator(tmp_path, synthetic_set, preprocess_config):
    import tensorrt as trt
    if int(trt.__version__.split(".")[0]) >= 11:
        pytest.skip("TensorRT 11 has no calibrator (refusal is tested above)")
    import pycuda.driver as cuda
    cuda.init()
    ctx = cuda.Device(0).make_context()
    cal = None
    try:
        npz = save_calibration_set(synthetic_set, tmp_path / "c.npz")
        cal = make_entropy_calibrator(npz, preprocess_config, tmp_path / "cache", batch_size=8)
        assert isinstance(cal, trt.IInt8EntropyCalibrator2)
        assert cal.get_batch(["input"]) is not None
    finally:
        if cal is not None:
            cal.release()  # device memory freed while the context is current
        del cal
        ctx.detach()  # current here: destroyed and popped (a bare pop() would leak it)
