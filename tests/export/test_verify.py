"""fa-verify, the GPU self-check: its no-GPU path here (exit 3, a report saying why), the real run on a GPU."""

from __future__ import annotations

import json
import sys

import pytest

from fa3d.export.verify import EXIT_NO_GPU, main


def test_without_a_gpu_it_says_so_and_exits_3(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    from fa3d.runtime.backends import trt

    monkeypatch.setattr(trt, "gpu_probe", lambda: "TensorRT is not installed (test)")
    assert main(["--out", str(tmp_path / "v")]) == EXIT_NO_GPU == 3
    rep = json.loads((tmp_path / "v" / "verify.json").read_text())
    assert rep["status"] == 3 and "no GPU check possible here: TensorRT is not installed" in rep["reason"]
    assert rep["checks"] == [] and rep["environment"]["python"]
    md = (tmp_path / "v" / "verify.md").read_text()
    assert md.startswith("# fa-verify report") and "TensorRT is not installed" in md
    assert "no GPU check possible" in capsys.readouterr().err
    assert not list((tmp_path / "v").glob("*.plan"))


def test_help_documents_the_exit_codes(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "exits 3" in out and "0 every check passed" in out


@pytest.mark.gpu
def test_real_self_check_passes(tmp_path):
    """On a Jetson or desktop GPU: every build, accuracy, timing and second-thread check passes."""
    rc = main(["--out", str(tmp_path / "v"), "--json"])
    rep = json.loads((tmp_path / "v" / "verify.json").read_text())
    assert rc == 0, rep
    names = [c["name"] for c in rep["checks"]]
    assert {"build fp32", "build fp16", "build int8", "backend used and closed from a second thread"} <= set(names)


def _damaged_copy(src, dst):
    """``src`` (an FP32 ONNX with its sidecar) with its first convolution's weights negated: a wrong model."""
    import shutil

    import onnx
    from onnx import numpy_helper

    from fa3d.runtime.metadata import sidecar_path

    m = onnx.load(str(src))
    conv_w = {n.input[1] for n in m.graph.node if n.op_type == "Conv"}
    init = next(i for i in m.graph.initializer if i.name in conv_w)
    init.CopyFrom(numpy_helper.from_array(-numpy_helper.to_array(init), init.name))
    onnx.save(m, str(dst))
    shutil.copyfile(sidecar_path(src), sidecar_path(dst))
    return dst


def test_check_logic_on_onnx_runtime_models(tmp_path):
    """The accuracy, timing and second-thread checks, fed ONNX files (ONNX Runtime backends) instead of
    engines: this exercises fa-verify's own logic only; it is not a TensorRT run. The accuracy checks pass for
    the right models and fail for wrong ones (the INT8 file in the FP32 slot, a damaged model in the INT8 slot)."""
    from fa3d.export.int8_step import shipped_files, use_shipped
    from fa3d.export.verify import VerifyReport, accuracy, second_thread, timing

    if not shipped_files()[1].is_file():
        pytest.skip("no shipped INT8 model")
    onnx_path, _ = use_shipped(tmp_path)
    int8_path = tmp_path / "model.int8.onnx"
    engines = {"fp32": onnx_path, "int8": int8_path}
    report = VerifyReport()
    accuracy(engines, tmp_path, report)
    timing(engines, report, calls=3, warmup=1)
    second_thread(engines, report)
    assert [c.name for c in report.checks] == ["accuracy fp32 vs ONNX Runtime", "accuracy int8 vs ONNX Runtime FP32",
                                               "timing (median ms per call, host to host)",
                                               "backend used and closed from a second thread"]
    assert all(c.passed for c in report.checks), report.to_dict()
    assert 0 < report.checks[1].details["nme_deviation"] < 1.0

    wrong = VerifyReport()
    damaged = _damaged_copy(onnx_path, tmp_path / "damaged.onnx")
    accuracy({"fp32": int8_path, "int8": damaged}, tmp_path, wrong)
    assert [c.passed for c in wrong.checks] == [False, False], wrong.to_dict()
    assert wrong.checks[1].details["nme_deviation"] > 1.0


def test_gpu_path_plumbing_with_stand_ins(tmp_path, monkeypatch):
    """fa-verify's GPU path end to end against the STAND-INS (the build stand-in of trt_standin.py merged with
    the runtime stand-in of tests/rt_fake_trt.py): builds, backends, timing, the second thread and
    the report run without error. The stand-in 'engine' computes nothing like the model, so its accuracy
    checks fail by design; this is not a TensorRT run."""

    from trt_standin import make_standin

    from fa3d.export.int8_step import shipped_files
    from fa3d.runtime.metadata import read_sidecar

    if not shipped_files()[1].is_file():
        pytest.skip("no shipped INT8 model")
    from rt_fake_trt import PLAN_BYTES, World

    meta = read_sidecar(shipped_files()[0])
    world = World(size=meta.preprocess.input_size, num_dense=meta.num_dense, profile=(1, 4, 16),
                  trt_version="10.3.0")
    mods = world.modules()
    trt = mods["tensorrt"]
    build = make_standin("10.3.0")
    for name in ("NetworkDefinitionCreationFlag", "BuilderFlag", "MemoryPoolType", "DeviceType", "OnnxParser"):
        setattr(trt, name, getattr(build, name))

    class Builder(build.Builder):
        def build_serialized_network(self, network, config):
            return PLAN_BYTES if super().build_serialized_network(network, config) else None

    trt.Builder = Builder
    for name, mod in mods.items():
        monkeypatch.setitem(sys.modules, name, mod)
    from fa3d.runtime.backends import trt as trt_backend

    monkeypatch.setattr(trt_backend, "gpu_probe", lambda: None)
    rc = main(["--out", str(tmp_path / "v"), "--json"])
    rep = json.loads((tmp_path / "v" / "verify.json").read_text())
    checks = {c["name"]: c for c in rep["checks"]}
    assert rc == 1 and not rep["reason"], rep
    for p in ("fp32", "fp16", "int8"):
        assert checks[f"build {p}"]["passed"], checks[f"build {p}"]
    assert checks["build int8"]["details"]["builder_flags"] == ["INT8", "FP16"]
    assert checks["backend used and closed from a second thread"]["passed"]
    assert set(checks["timing (median ms per call, host to host)"]["details"]) == {
        f"{p} batch {b}" for p in ("fp32", "fp16", "int8") for b in (1, 4)}
    assert ("detach", "leaked") not in world.log
    assert not checks["accuracy fp32 vs ONNX Runtime"]["passed"]  # the stand-in computes no face model
