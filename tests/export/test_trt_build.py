"""TensorRT build logic against THE STAND-IN (tests/helpers/trt_standin.py), through Polygraphy's real loaders.

Nothing here runs TensorRT: the stand-in records which calls are made for each TensorRT version and refuses
what the real builder refuses. Real builds are the gpu-marked tests in test_gpu.py.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from tests.helpers.trt_standin import Gpu

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
    ("11.1", "fp16", "fp16", 0, r"no DLA support \(TensorRT 10.7 was the last 10.x release with DLA"),
    ("11.3.1", "int8", "int8", 0, "no DLA support"),
    ("10.8.0", "fp16", "fp32", 0, "no DLA support"),
    ("10.16.2", "int8", "int8", 0, "no DLA support"),
    ("11.4.0", "fp16", "fp16", 0, "11.4.0 has it only on Windows on ARM"),
    ("11.5.0", "fp16", "fp16", 0, "11.5 does not support JetPack"),
    ("10.3.0", "int8", "fp32", None, "Q/DQ ONNX"),
    ("10.3.0", "fp16", "int8", None, "Q/DQ nodes"),
    ("10.3.0", "fp32", "fp32", 0, "DLA runs FP16 or INT8"),
    ("8.4.3", "fp32", "fp32", None, "older than 8.5"),
    ("8.6.1", "fp32", "fp16", None, "FP32 engine needs the FP32"),
])
def test_plan_build_refuses_with_a_reason(version, precision, onnx_p, dla, match):
    with pytest.raises(EngineBuildError, match=match):
        plan_build(version, precision, onnx_p, dla)


def test_dla_adds_gpu_fallback_where_tensorrt_has_a_dla():
    assert plan_build("8.5.2", "fp16", "fp32", 1).builder_flags == ("FP16", "GPU_FALLBACK")
    assert plan_build("10.7.0", "fp16", "fp32", 0).builder_flags == ("FP16", "GPU_FALLBACK")
    assert plan_build("11.4.1", "int8", "int8", 0).builder_flags == ("GPU_FALLBACK",)  # strongly typed DLA


def test_batch_profile_parse():
    assert BatchProfile.parse("1:4:16") == BatchProfile(1, 4, 16)
    assert BatchProfile.parse("8") == BatchProfile(8, 8, 8)
    assert BatchProfile(1, 2, 3).shapes(128) == ((1, 3, 128, 128), (2, 3, 128, 128), (3, 3, 128, 128))
    for bad in ("4:2:8", "0:1:2", "1:2", "a:b:c"):
        with pytest.raises(ValueError):
            BatchProfile.parse(bad)


# ---------------------------------------------------------------- builds against the stand-in

def _build(monkeypatch, tmp_path, onnx_path, version, *, gpu: Gpu | None = None, **opts):
    gpu = gpu or Gpu(version)
    gpu.install(monkeypatch, pycuda=False)
    options = BuildOptions(timing_cache=tmp_path / "timing.cache", **opts)
    return gpu, build_engine(onnx_path, tmp_path / "model.plan", options)


@pytest.mark.parametrize("version, net_flags", [("8.5.2.2", 1 << 0), ("8.6.1", 1 << 0), ("10.3.0", 0),
                                               ("10.12.0", 1 << 1), ("11.0", 1 << 0)])
def test_build_fp32_per_version(monkeypatch, tmp_path, tiny_onnx, version, net_flags):
    gpu, res = _build(monkeypatch, tmp_path, tiny_onnx, version, batch=BatchProfile(1, 2, 8), workspace_mb=256)
    assert gpu.values("create_network") == [net_flags]
    assert gpu.values("build_serialized_network") == [None], "the stand-in's builder refused nothing"
    assert [f for f in gpu.values("set_flag") if f != "TF32"] == []
    assert ("WORKSPACE", 256 << 20) in gpu.values("set_memory_pool_limit")
    assert gpu.values("profile.set_shape") == [("input", (1, 3, 32, 32), (2, 3, 32, 32), (8, 3, 32, 32))]
    assert gpu.values("clear_flag") == [], "TF32 stays on"
    assert res.path.read_bytes().startswith(b"FA3D-STANDIN-PLAN")
    meta = read_sidecar(res.path)
    assert meta.format == "tensorrt" and meta.precision == "fp32"
    assert meta.source_sha256 == sha256_file(tiny_onnx)
    eng = meta.engine
    assert eng["tensorrt_version"] == version and eng["workspace_mb"] == 256 and eng["dla_core"] is None
    assert eng["profile"] == {"input": "input", "min": [1, 3, 32, 32], "opt": [2, 3, 32, 32], "max": [8, 3, 32, 32]}
    assert eng["strongly_typed"] is (version in ("10.12.0", "11.0"))
    assert gpu.loggers == 1, "one TensorRT logger, shared with Polygraphy"
    assert {"gpu_name", "compute_capability"} <= set(eng)
    header = json.loads(res.path.read_bytes()[len(b"FA3D-STANDIN-PLAN "):])
    assert header["detailed"], "built with DETAILED profiling verbosity (the inspector needs it)"


def test_build_fp16_flag_before_10_12(monkeypatch, tmp_path, tiny_onnx):
    gpu, res = _build(monkeypatch, tmp_path, tiny_onnx, "10.3.0", precision="fp16")
    assert "FP16" in gpu.values("set_flag")
    assert read_sidecar(res.path).precision == "fp16"


@pytest.mark.parametrize("version", ["10.12.0", "10.16.1", "11.0", "11.4.1"])
def test_build_fp16_when_strongly_typed_needs_the_fp16_onnx(monkeypatch, tmp_path, tiny_onnx, version):
    with pytest.raises(EngineBuildError, match="model.fp16.onnx"):
        _build(monkeypatch, tmp_path, tiny_onnx, version, precision="fp16")
    assert not (tmp_path / "model.plan").exists()
    from fa3d.export.fp16 import make_fp16

    half = make_fp16(tiny_onnx, tiny_onnx.parent / "model.fp16.onnx").path
    gpu, res = _build(monkeypatch, tmp_path, half, version, precision="fp16")
    assert {"FP16", "INT8"} & set(gpu.values("set_flag")) == set()  # weak typing flags: none
    assert gpu.values("build_serialized_network") == [None]
    assert read_sidecar(res.path).precision == "fp16" and res.plan.strongly_typed


def test_build_int8_from_the_qdq_onnx(monkeypatch, tmp_path, tiny_onnx, tiny_int8_onnx):
    gpu, res = _build(monkeypatch, tmp_path, tiny_int8_onnx, "8.6.1", precision="int8")
    assert {"INT8", "FP16"} <= set(gpu.values("set_flag"))
    gpu, res = _build(monkeypatch, tmp_path, tiny_int8_onnx, "11.0", precision="int8")
    assert res.plan.strongly_typed and read_sidecar(res.path).precision == "int8"


def test_build_dla(monkeypatch, tmp_path, tiny_onnx):
    """A DLA build with the dynamic profile 1:4:16 fails (or never uses the DLA): static OPT:OPT:OPT."""
    gpu = Gpu("8.5.2.2", dla_cores=2)
    gpu, res = _build(monkeypatch, tmp_path, tiny_onnx, "8.5.2.2", gpu=gpu, precision="fp16", dla_core=1)
    assert {"FP16", "GPU_FALLBACK"} <= set(gpu.values("set_flag"))
    assert gpu.values("profile.set_shape") == [("input", (4, 3, 32, 32), (4, 3, 32, 32), (4, 3, 32, 32))]
    assert gpu.values("build_serialized_network") == [None]
    eng = read_sidecar(res.path).engine
    assert eng["dla_core"] == 1 and eng["profile"]["min"] == eng["profile"]["max"] == [4, 3, 32, 32]
    header = json.loads(res.path.read_bytes()[len(b"FA3D-STANDIN-PLAN "):])
    assert header["dla_core"] == 1


@pytest.mark.parametrize("version", ["11.2.0", "10.8.0", "11.5.0"])
def test_dla_refused_where_tensorrt_has_none(monkeypatch, tmp_path, tiny_onnx, version):
    """Say that this TensorRT has no DLA, not "this device has 0 DLA core(s)"."""
    from fa3d.export.fp16 import make_fp16

    half = make_fp16(tiny_onnx, tiny_onnx.parent / "model.fp16.onnx").path
    with pytest.raises(EngineBuildError, match="no DLA support"):
        _build(monkeypatch, tmp_path, half, version, gpu=Gpu(version, dla_cores=2), precision="fp16", dla_core=0)


def test_dla_on_a_device_without_one_says_which_have_one(monkeypatch, tmp_path, tiny_onnx):
    with pytest.raises(EngineBuildError, match=r"has 1 DLA core.*Jetson Thor and desktop GPUs have no DLA"):
        _build(monkeypatch, tmp_path, tiny_onnx, "10.3.0", gpu=Gpu("10.3.0", dla_cores=1), precision="fp16",
               dla_core=1)


def test_strong_typing_from_10_12(monkeypatch, tmp_path, tiny_onnx):
    """BuilderFlag.FP16/INT8 are deprecated from 10.12 (and refused on a strongly typed network): no flags."""
    from fa3d.export.fp16 import make_fp16

    half = make_fp16(tiny_onnx, tiny_onnx.parent / "model.fp16.onnx").path
    gpu, res = _build(monkeypatch, tmp_path, half, "10.12.0", precision="fp16")
    assert gpu.values("create_network") == [1 << 1]  # STRONGLY_TYPED
    assert gpu.values("build_serialized_network") == [None] and res.plan.strongly_typed


def test_gpu_name_from_cuda_device_properties(monkeypatch, tmp_path, tiny_onnx):
    """The sidecar's GPU name is CUDA's (as the runtime compares it), never nvidia-smi's."""
    gpu = Gpu("10.3.0", gpu_name="Orin", cc=(8, 7))
    gpu.install(monkeypatch)
    monkeypatch.setattr(trt_build, "subprocess", None, raising=False)  # nvidia-smi is never asked
    res = build_engine(tiny_onnx, tmp_path / "model.plan", BuildOptions(device_id=1))
    eng = read_sidecar(res.path).engine
    assert (eng["gpu_name"], eng["compute_capability"]) == ("Orin", "8.7")
    assert ("Device", 1) in gpu.log


def test_timing_cache_created_saved_and_reused(monkeypatch, tmp_path, tiny_onnx):
    cache = tmp_path / "timing.cache"
    gpu, res = _build(monkeypatch, tmp_path, tiny_onnx, "10.3.0")
    assert not res.timing_cache_reused and cache.read_bytes().startswith(b"timing-cache:10.3.0:")
    first = cache.read_bytes()
    gpu, res = _build(monkeypatch, tmp_path, tiny_onnx, "10.3.0")
    assert res.timing_cache_reused
    assert first in gpu.values("create_timing_cache")  # the saved cache was loaded
    # a cache from another TensorRT version is rejected by set_timing_cache and replaced by a fresh one
    gpu, res = _build(monkeypatch, tmp_path, tiny_onnx, "11.0")
    assert not res.timing_cache_reused
    assert [ok for blob, _, ok in gpu.values("set_timing_cache") if blob] == [False]
    assert cache.read_bytes().startswith(b"timing-cache:11.0:")


def test_parse_failure_names_the_node(monkeypatch, tmp_path, tiny_onnx):
    with pytest.raises(EngineBuildError, match=r"could not parse .*node 7 '/head/Einsum' \(Einsum\): No importer"):
        _build(monkeypatch, tmp_path, tiny_onnx, "10.3.0", gpu=Gpu("10.3.0", parse_ok=False))
    assert not (tmp_path / "model.plan").exists()
    # 8.5 and 8.6 parser errors have node() only
    with pytest.raises(EngineBuildError, match=r"could not parse .*node 7: No importer"):
        _build(monkeypatch, tmp_path, tiny_onnx, "8.6.1", gpu=Gpu("8.6.1", parse_ok=False))


def test_build_failure_leaves_nothing(monkeypatch, tmp_path, tiny_onnx):
    with pytest.raises(EngineBuildError, match="failed to build an engine.*--workspace"):
        _build(monkeypatch, tmp_path, tiny_onnx, "10.3.0", gpu=Gpu("10.3.0", build_ok=False))
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
            "bad = [m for m in ('tensorrt', 'pycuda', 'torch', 'polygraphy') if m in sys.modules]; print(bad); "
            "sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
