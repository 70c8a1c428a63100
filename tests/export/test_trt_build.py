"""TensorRT build logic against a STAND-IN tensorrt module (tests/export/trt_standin.py).

Nothing here runs TensorRT: the stand-in records which calls fa3d makes for each TensorRT version.
Real builds are the gpu-marked tests in test_gpu.py.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from trt_standin import make_standin

from fa3d.export import trt_build
from fa3d.export.trt_build import BatchProfile, BuildOptions, EngineBuildError, build_engine, plan_build
from fa3d.runtime.metadata import read_sidecar, sha256_file


@pytest.fixture(autouse=True)
def _no_gpu_probe(monkeypatch):
    # gpu_info must not need TensorRT; here it finds no pycuda
    monkeypatch.setitem(sys.modules, "pycuda", None)
    monkeypatch.setitem(sys.modules, "pycuda.driver", None)


# ---------------------------------------------------------------- the pure version dispatch

@pytest.mark.parametrize("version, precision, onnx_p, explicit, strong, flags", [
    ("8.5.2.2", "fp32", "fp32", True, False, ()),
    ("8.5.2.2", "fp16", "fp32", True, False, ("FP16",)),
    ("8.5.2.2", "int8", "int8", True, False, ("INT8", "FP16")),
    ("8.6.1", "fp16", "fp32", True, False, ("FP16",)),
    ("8.6.1", "int8", "int8", True, False, ("INT8", "FP16")),
    ("10.3.0", "fp32", "fp32", False, False, ()),
    ("10.3.0", "fp16", "fp32", False, False, ("FP16",)),
    ("10.3.0", "int8", "int8", False, False, ("INT8", "FP16")),
    ("10.11.0", "fp16", "fp32", False, False, ("FP16",)),
    ("10.12.0", "fp32", "fp32", False, True, ()),
    ("10.12.0", "fp16", "fp16", False, True, ()),
    ("10.16.1", "int8", "int8", False, True, ()),
    ("11.0", "fp32", "fp32", False, True, ()),
    ("11.0", "fp16", "fp16", False, True, ()),
    ("11.0", "int8", "int8", False, True, ()),
])
def test_plan_build_dispatch(version, precision, onnx_p, explicit, strong, flags):
    plan = plan_build(version, precision, onnx_p)
    assert (plan.explicit_batch_flag, plan.strongly_typed, plan.builder_flags) == (explicit, strong, flags)


@pytest.mark.parametrize("version, precision, onnx_p, dla, match", [
    ("11.0", "fp16", "fp32", None, "no FP16 builder flag"),
    ("10.12.0", "fp16", "fp32", None, "strongly typed networks"),
    ("11.1", "fp16", "fp16", 0, r"no DLA support \(TensorRT 11.0 to 11.3\)"),
    ("11.3.1", "int8", "int8", 0, "no DLA support"),
    ("10.3.0", "int8", "fp32", None, "Q/DQ ONNX"),
    ("10.3.0", "fp16", "int8", None, "Q/DQ nodes"),
    ("10.3.0", "fp32", "fp32", 0, "DLA runs FP16 or INT8"),
    ("8.4.3", "fp32", "fp32", None, "older than 8.5"),
    ("8.6.1", "fp32", "fp16", None, "FP32 engine needs the FP32"),
])
def test_plan_build_refuses_with_a_reason(version, precision, onnx_p, dla, match):
    with pytest.raises(EngineBuildError, match=match):
        plan_build(version, precision, onnx_p, dla)


def test_dla_adds_gpu_fallback():
    assert plan_build("8.5.2", "fp16", "fp32", 1).builder_flags == ("FP16", "GPU_FALLBACK")
    assert plan_build("11.4", "int8", "int8", 0).builder_flags == ("GPU_FALLBACK",)


def test_implicit_int8_only_before_strong_typing():
    p = plan_build("10.3.0", "int8", "fp32", implicit_int8=True)
    assert p.implicit_int8 and p.builder_flags == ("INT8", "FP16")
    for v in ("10.12.0", "11.0"):
        with pytest.raises(EngineBuildError, match="strongly typed.*Q/DQ ONNX"):
            plan_build(v, "int8", "fp32", implicit_int8=True)


def test_batch_profile_parse():
    assert BatchProfile.parse("1:4:16") == BatchProfile(1, 4, 16)
    assert BatchProfile.parse("8") == BatchProfile(8, 8, 8)
    assert BatchProfile(1, 2, 3).shapes(128) == ((1, 3, 128, 128), (2, 3, 128, 128), (3, 3, 128, 128))
    for bad in ("4:2:8", "0:1:2", "1:2", "a:b:c"):
        with pytest.raises(ValueError):
            BatchProfile.parse(bad)


# ---------------------------------------------------------------- builds against the stand-in

@pytest.fixture
def calib_npz(tmp_path):
    import numpy as np

    from fa3d.calibration.calibset import CalibrationSet, save_calibration_set
    from fa3d.runtime.preprocess import PreprocessConfig

    cs = CalibrationSet(inputs=np.zeros((10, 3, 32, 32), np.float32), names=tuple(f"f{i}" for i in range(10)),
                        preprocess=PreprocessConfig(input_size=32), source="zeros")
    return save_calibration_set(cs, tmp_path / "calib.npz")


def _build(monkeypatch, tmp_path, onnx_path, version, **opts):
    fake = make_standin(version, **{k: opts.pop(k) for k in ("parse_ok", "build_ok", "dla_cores") if k in opts})
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    options = BuildOptions(timing_cache=tmp_path / "timing.cache", **opts)
    return fake, build_engine(onnx_path, tmp_path / "model.plan", options)


@pytest.mark.parametrize("version, net_flags", [("8.5.2.2", 1 << 0), ("8.6.1", 1 << 0), ("10.3.0", 0),
                                               ("10.12.0", 1 << 1), ("11.0", 1 << 0)])
def test_build_fp32_per_version(monkeypatch, tmp_path, tiny_onnx, version, net_flags):
    fake, res = _build(monkeypatch, tmp_path, tiny_onnx, version, batch=BatchProfile(1, 2, 8), workspace_mb=256)
    rec = fake.record
    assert rec.values("create_network") == [net_flags]
    assert rec.values("set_flag") == []
    assert rec.values("set_memory_pool_limit") == [("WORKSPACE", 256 << 20)]
    assert rec.values("profile.set_shape") == [("input", (1, 3, 32, 32), (2, 3, 32, 32), (8, 3, 32, 32))]
    assert rec.values("default_device_type") == [] and rec.values("DLA_core") == []
    assert res.path.read_bytes().startswith(b"STAND-IN ENGINE")
    meta = read_sidecar(res.path)
    assert meta.format == "tensorrt" and meta.precision == "fp32"
    assert meta.source_sha256 == sha256_file(tiny_onnx)
    eng = meta.engine
    assert eng["tensorrt_version"] == version and eng["workspace_mb"] == 256 and eng["dla_core"] is None
    assert eng["profile"] == {"input": "input", "min": [1, 3, 32, 32], "opt": [2, 3, 32, 32], "max": [8, 3, 32, 32]}
    assert eng["strongly_typed"] is (version in ("10.12.0", "11.0"))
    assert fake.loggers == 1
    assert {"gpu_name", "compute_capability"} <= set(eng)


def test_build_fp16_flag_before_11(monkeypatch, tmp_path, tiny_onnx):
    fake, res = _build(monkeypatch, tmp_path, tiny_onnx, "10.3.0", precision="fp16")
    assert fake.record.values("set_flag") == ["FP16"]
    assert read_sidecar(res.path).precision == "fp16"


def test_build_fp16_on_11_needs_the_fp16_onnx(monkeypatch, tmp_path, tiny_onnx):
    with pytest.raises(EngineBuildError, match="model.fp16.onnx"):
        _build(monkeypatch, tmp_path, tiny_onnx, "11.0", precision="fp16")
    assert not (tmp_path / "model.plan").exists()
    from fa3d.export.fp16 import make_fp16

    half = make_fp16(tiny_onnx, tiny_onnx.parent / "model.fp16.onnx").path
    fake, res = _build(monkeypatch, tmp_path, half, "11.0", precision="fp16")
    assert fake.record.values("set_flag") == []  # BuilderFlag.FP16 does not exist in 11: nothing set
    assert read_sidecar(res.path).precision == "fp16"


def test_build_dla(monkeypatch, tmp_path, tiny_onnx):
    """Defect 2: a DLA build with the dynamic profile 1:4:16 fails (or never uses the DLA): static OPT:OPT:OPT."""
    fake, res = _build(monkeypatch, tmp_path, tiny_onnx, "8.5.2.2", precision="fp16", dla_core=1, dla_cores=2)
    rec = fake.record
    assert rec.values("set_flag") == ["FP16", "GPU_FALLBACK"]
    assert rec.values("default_device_type") == ["DLA"] and rec.values("DLA_core") == [1]
    assert rec.values("profile.set_shape") == [("input", (4, 3, 32, 32), (4, 3, 32, 32), (4, 3, 32, 32))]
    assert rec.values("build_serialized_network") == [None]
    eng = read_sidecar(res.path).engine
    assert eng["dla_core"] == 1 and eng["profile"]["min"] == eng["profile"]["max"] == [4, 3, 32, 32]


def test_strong_typing_from_10_12(monkeypatch, tmp_path, tiny_onnx):
    """Defect 6: BuilderFlag.FP16/INT8 are deprecated from 10.12: a strongly typed network, no flags."""
    from fa3d.export.fp16 import make_fp16

    half = make_fp16(tiny_onnx, tiny_onnx.parent / "model.fp16.onnx").path
    fake, res = _build(monkeypatch, tmp_path, half, "10.12.0", precision="fp16")
    assert fake.record.values("set_flag") == [] and fake.record.values("deprecated") == []
    assert fake.record.values("create_network") == [1 << 1]  # STRONGLY_TYPED
    assert res.plan.strongly_typed


def test_dla_refused_on_tensorrt_11_0_to_11_3(monkeypatch, tmp_path, tiny_onnx):
    """Defect 7: say that TensorRT 11.0-11.3 has no DLA, not "this device has 0 DLA core(s)"."""
    from fa3d.export.fp16 import make_fp16

    half = make_fp16(tiny_onnx, tiny_onnx.parent / "model.fp16.onnx").path
    with pytest.raises(EngineBuildError, match="no DLA support"):
        _build(monkeypatch, tmp_path, half, "11.2.0", precision="fp16", dla_core=0, dla_cores=2)


def test_gpu_name_from_cuda_device_properties(monkeypatch, tmp_path, tiny_onnx):
    """Defect 1: the sidecar's GPU name is CUDA's (as the runtime compares it), never nvidia-smi's."""
    import types

    drv = types.ModuleType("pycuda.driver")
    drv.init = lambda: None

    class Device:
        def __init__(self, i):
            self.i = i

        def name(self):
            return f"Orin #{self.i}"

        def compute_capability(self):
            return (8, 7)

    drv.Device = Device
    pkg = types.ModuleType("pycuda")
    pkg.driver = drv
    monkeypatch.setitem(sys.modules, "pycuda", pkg)
    monkeypatch.setitem(sys.modules, "pycuda.driver", drv)
    monkeypatch.setattr(trt_build, "subprocess", None, raising=False)  # nvidia-smi is never asked
    fake, res = _build(monkeypatch, tmp_path, tiny_onnx, "10.3.0", device_id=1)
    eng = read_sidecar(res.path).engine
    assert (eng["gpu_name"], eng["compute_capability"]) == ("Orin #1", "8.7")


def test_implicit_calibration_uses_a_calibration_profile_and_opt_batch(monkeypatch, tmp_path, tiny_onnx,
                                                                         calib_npz):
    """Defect 8: with dynamic shapes the calibrator needs a calibration profile, and its batch is OPT."""
    import types

    log = []
    drv = types.ModuleType("pycuda.driver")
    drv.init = lambda: None

    class Mem:
        def free(self):
            log.append("free")

    class Ctx:
        def detach(self):
            log.append("detach")

    class Device:
        def __init__(self, i):
            pass

        def make_context(self):
            log.append("make_context")
            return Ctx()

        def name(self):
            return "GPU"

        def compute_capability(self):
            return (8, 9)

    drv.Device, drv.mem_alloc, drv.memcpy_htod = Device, lambda n: Mem(), lambda d, a: None
    pkg = types.ModuleType("pycuda")
    pkg.driver = drv
    monkeypatch.setitem(sys.modules, "pycuda", pkg)
    monkeypatch.setitem(sys.modules, "pycuda.driver", drv)
    fake, res = _build(monkeypatch, tmp_path, tiny_onnx, "8.6.1", precision="int8", calibration=calib_npz,
                       batch=BatchProfile(1, 2, 8))
    assert fake.record.values("set_calibration_profile") == [((1, 3, 32, 32), (2, 3, 32, 32), (8, 3, 32, 32))]
    assert fake.record.values("build_serialized_network") == [None]  # the stand-in's checks passed
    assert fake.record.values("set_flag") == ["INT8", "FP16"]
    assert log == ["make_context", "free", "detach"] and res.plan.implicit_int8


def test_build_dla_core_out_of_range(monkeypatch, tmp_path, tiny_onnx):
    with pytest.raises(EngineBuildError, match="has 1 DLA core"):
        _build(monkeypatch, tmp_path, tiny_onnx, "10.3.0", precision="fp16", dla_core=1, dla_cores=1)


def test_timing_cache_created_saved_and_reused(monkeypatch, tmp_path, tiny_onnx):
    cache = tmp_path / "timing.cache"
    fake, res = _build(monkeypatch, tmp_path, tiny_onnx, "10.3.0")
    assert not res.timing_cache_reused and cache.read_bytes().startswith(b"timing-cache:10.3.0:")
    first = cache.read_bytes()
    fake, res = _build(monkeypatch, tmp_path, tiny_onnx, "10.3.0")
    assert res.timing_cache_reused
    assert fake.record.values("create_timing_cache")[0] == first  # the saved cache was loaded
    # a cache from another TensorRT version is rejected by set_timing_cache and replaced by a fresh one
    fake, res = _build(monkeypatch, tmp_path, tiny_onnx, "11.0")
    assert not res.timing_cache_reused
    assert [ok for _, _, ok in fake.record.values("set_timing_cache")] == [False, True]
    assert cache.read_bytes().startswith(b"timing-cache:11.0:")


def test_parse_failure_names_the_node(monkeypatch, tmp_path, tiny_onnx):
    with pytest.raises(EngineBuildError, match=r"could not parse .*node 7 '/head/Einsum' \(Einsum\): No importer"):
        _build(monkeypatch, tmp_path, tiny_onnx, "10.3.0", parse_ok=False)
    assert not (tmp_path / "model.plan").exists()
    # 8.5 and 8.6 parser errors have node() only
    with pytest.raises(EngineBuildError, match=r"could not parse .*node 7: No importer"):
        _build(monkeypatch, tmp_path, tiny_onnx, "8.6.1", parse_ok=False)


def test_build_failure_leaves_nothing(monkeypatch, tmp_path, tiny_onnx):
    with pytest.raises(EngineBuildError, match="failed to build an engine.*--workspace"):
        _build(monkeypatch, tmp_path, tiny_onnx, "10.3.0", build_ok=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "model.onnx.json"]


def test_input_size_mismatch_is_refused(monkeypatch, tmp_path, tiny_onnx):
    side = Path(str(tiny_onnx) + ".json")
    d = json.loads(side.read_text())
    d["input"]["preprocess"]["input_size"] = 64
    side.write_text(json.dumps(d))
    with pytest.raises(EngineBuildError, match=r"input shape \(-1, 3, 32, 32\) is not \(-1, 3, 64, 64\)"):
        _build(monkeypatch, tmp_path, tiny_onnx, "10.3.0")


def test_import_failure_becomes_tensorrt_unavailable(monkeypatch, tmp_path, tiny_onnx):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import raises ImportError
    with pytest.raises(trt_build.TensorRTUnavailable, match="cannot be imported"):
        build_engine(tiny_onnx, tmp_path / "model.plan", BuildOptions())


def test_no_tensorrt_import_at_package_import():
    import subprocess

    code = ("import sys, fa3d.export, fa3d.export.cli, fa3d.export.trt_build, fa3d.export.steps; "
            "fa3d.export.trt_build.gpu_info(); "
            "bad = [m for m in ('tensorrt', 'pycuda', 'torch') if m in sys.modules]; print(bad); "
            "sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
