"""fa-verify, the GPU self-check: its no-GPU path here (exit 3, a report saying why), its whole GPU path against
THE STAND-IN (tests/helpers/trt_standin.py: its "engines" run their ONNX with ONNX Runtime, so this checks fa-verify's
own logic, never TensorRT), and the real run on a GPU (gpu-marked)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from tests.helpers.trt_standin import Gpu

from fa3d.export import verify
from fa3d.export.int8_step import shipped_files
from fa3d.export.verify import EXIT_NO_GPU, main

needs_shipped = pytest.mark.skipif(not shipped_files()[1].is_file(), reason="no shipped INT8 model")


def test_without_a_gpu_it_says_so_and_exits_3(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(verify, "gpu_probe", lambda: "TensorRT is not installed (test)")
    assert main(["--out", str(tmp_path / "v")]) == EXIT_NO_GPU == 3
    rep = json.loads((tmp_path / "v" / "verify.json").read_text())
    assert rep["status"] == 3 and "no GPU check possible here: TensorRT is not installed" in rep["reason"]
    assert rep["checks"] == [] and rep["environment"]["python"]
    md = (tmp_path / "v" / "verify.md").read_text()
    assert md.startswith("# fa-verify report") and "TensorRT is not installed" in md
    assert "no GPU check possible" in capsys.readouterr().err
    assert not list((tmp_path / "v").glob("*.plan"))


def test_help_documents_the_exit_codes_and_bad_arguments_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert out.rstrip().endswith("nothing was built") and "0  every check passed" in out and "--dla-core" in out
    assert main(["--out", str(tmp_path), "--every", "0"]) == 2


def _run(tmp_path, monkeypatch, gpu: Gpu, *args: str) -> tuple[int, dict]:
    gpu.install(monkeypatch)
    monkeypatch.setattr(verify, "gpu_probe", lambda: None)
    rc = main(["--out", str(tmp_path / "v"), "--json", "--every", "45", "--timing-calls", "2", *args])
    return rc, json.loads((tmp_path / "v" / "verify.json").read_text())


@needs_shipped
def test_gpu_path_with_the_stand_in_passes_every_check(tmp_path, monkeypatch):
    rc, rep = _run(tmp_path, monkeypatch, Gpu("10.3.0", dla_cores=2), "--dla-core", "0")
    checks = {c["name"]: c for c in rep["checks"]}
    assert rc == 0 and not rep["reason"], [c for c in rep["checks"] if not c["passed"]]
    labels = ("fp32", "fp16", "int8", "fp16 dla0", "int8 dla0")
    assert {f"build {x}" for x in labels} | {f"layers per precision {x}" for x in labels} <= set(checks)
    assert checks["build int8"]["details"]["builder_flags"] == ["INT8", "FP16"]
    assert checks["layers per precision int8"]["details"]["layers"]["int8"] > 0
    assert set(checks["layers per precision fp32"]["details"]["layers"]) == {"fp32"}
    same = checks["accuracy int8 vs ONNX Runtime on the same Q/DQ model"]["details"]
    assert same["batches"] == [1, 4, 16] and same["faces"] > 1 and "astronaut.mp4" in same["source"]
    assert max(same["max_abs"].values()) < 1e-5  # the stand-in runs that very model
    gate = checks["accuracy int8 vs ONNX Runtime FP32: INT8 gate"]["details"]["gate"]
    assert 0 < gate["NME %"]["value"] < gate["NME %"]["max"] == 1.0
    assert checks["accuracy int8 dla0 vs ONNX Runtime FP32: INT8 gate"]["details"]["batches"] == [4]
    assert set(checks["timing (median ms per call, host to host)"]["details"]) == {
        f"{x} batch {b}" for x in labels for b in (1, 4)}
    assert checks["backend used and closed from a second thread"]["passed"]
    det = checks["detector engine vs its ONNX"]["details"]
    assert det["batches"] == [1, 16, 32] and det["faces"] == 2 and det["build"] == "FP16 builder flag"


@needs_shipped
def test_gpu_path_with_the_stand_in_catches_a_wrong_engine(tmp_path, monkeypatch):
    """An engine whose landmarks are 2 crop pixels off fails its tolerance and the gate: exit 1."""
    gpu = Gpu("10.3.0")
    real_run = None

    def off(self, x):
        out = real_run(self, x)
        return {k: (v + 2.0 if k == "landmarks" else v) for k, v in out.items()}

    context_cls = type(gpu.trt.Runtime(gpu.trt.Logger()).deserialize_cuda_engine(
        b"FA3D-STANDIN-PLAN " + json.dumps({"version": "10.3.0", "onnx": None, "input": "input", "size": 8,
                                           "num_dense": 1, "profile": [1, 1, 1], "precision": "fp32",
                                           "dla_core": None, "detailed": True, "layers": []}).encode()
    ).create_execution_context())
    real_run = context_cls._run
    monkeypatch.setattr(context_cls, "_run", off)
    rc, rep = _run(tmp_path, monkeypatch, gpu)
    failed = {c["name"] for c in rep["checks"] if not c["passed"]}
    assert rc == 1 and {"accuracy fp32 vs ONNX Runtime FP32", "accuracy fp16 vs ONNX Runtime FP32",
                        "accuracy int8 vs ONNX Runtime on the same Q/DQ model"} <= failed
    assert "detector engine vs its ONNX" not in failed  # no 'landmarks' output: the detector engine is right
    assert not any(n.startswith(("build", "layers")) for n in failed)


@needs_shipped
def test_an_int8_engine_without_int8_layers_fails_its_layer_check(tmp_path, monkeypatch):
    """TensorRT may fall back to FP16/FP32 kernels: the inspector's counts show it and the check fails."""
    gpu = Gpu("10.3.0")
    plan = b"FA3D-STANDIN-PLAN " + json.dumps({"version": "10.3.0", "onnx": None, "input": "input", "size": 8,
                                              "num_dense": 1, "profile": [1, 1, 1], "precision": "fp32",
                                              "dla_core": None, "detailed": True, "layers": []}).encode()
    inspector_cls = type(gpu.trt.Runtime(gpu.trt.Logger()).deserialize_cuda_engine(plan).create_engine_inspector())
    real = inspector_cls.get_layer_information

    def no_int8(self, i, fmt):
        self.engine.h["layers"][i]["dtype"] = "Half" if self.engine.h["layers"][i]["dtype"] == "Int8" else \
            self.engine.h["layers"][i]["dtype"]
        return real(self, i, fmt)
    monkeypatch.setattr(inspector_cls, "get_layer_information", no_int8)
    rc, rep = _run(tmp_path, monkeypatch, gpu)
    checks = {c["name"]: c for c in rep["checks"]}
    assert rc == 1 and not checks["layers per precision int8"]["passed"]
    assert "int8" not in checks["layers per precision int8"]["details"]["layers"]
    assert checks["layers per precision fp16"]["passed"] and checks["layers per precision fp32"]["passed"]


@needs_shipped
def test_gpu_path_on_tensorrt_11_and_without_dla(tmp_path, monkeypatch):
    """11.x: strongly typed, FP16 from the converted FP16 ONNX, the inspector's 11.x schema; 11.2 has no DLA."""
    rc, rep = _run(tmp_path, monkeypatch, Gpu("11.2.0", dla_cores=2), "--dla-core", "0")
    checks = {c["name"]: c for c in rep["checks"]}
    assert checks["build fp16"]["passed"] and checks["build fp16"]["details"]["source"] == "model.fp16.onnx"
    assert checks["build fp16"]["details"]["strongly_typed"]
    assert checks["layers per precision fp16"]["details"]["layers"].get("fp16", 0) > 0
    assert checks["layers per precision int8"]["details"]["layers"]["int8"] > 0
    assert checks["detector engine vs its ONNX"]["details"]["build"] == "from its FP16 ONNX (strongly typed)"
    assert checks["detector engine vs its ONNX"]["passed"]
    assert "no DLA support" in checks["build fp16 dla0"]["details"]["error"]
    assert rc == 1 and {n for n, c in checks.items() if not c["passed"]} == {"build fp16 dla0", "build int8 dla0"}


@pytest.mark.gpu
def test_real_self_check_passes(tmp_path):
    """On a Jetson or desktop GPU: every build, layer count, accuracy, timing and second-thread check passes."""
    rc = main(["--out", str(tmp_path / "v"), "--json"])
    rep = json.loads((tmp_path / "v" / "verify.json").read_text())
    assert rc == 0, [c for c in rep["checks"] if not c["passed"]] or rep["reason"]
    names = [c["name"] for c in rep["checks"]]
    assert {"build fp32", "build fp16", "build int8", "layers per precision int8",
            "accuracy int8 vs ONNX Runtime on the same Q/DQ model",
            "backend used and closed from a second thread"} <= set(names)
