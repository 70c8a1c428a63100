"""fa-export end to end on CPU with the real edge network (random weights): files, sidecars, exit codes,
the printed target-machine commands, --from-onnx, --triton, --int8 wiring. TensorRT is either absent
(forced with sys.modules['tensorrt'] = None) or the recording STAND-IN of tests/helpers/trt_standin.py."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from tests.helpers.trt_standin import Gpu

from fa3d.export import steps
from fa3d.export.cli import main
from fa3d.runtime.metadata import read_sidecar, sha256_file, sidecar_path, write_metadata

pytest.importorskip("fa3d.training.model")


@pytest.fixture(scope="module")
def edge_checkpoint(tmp_path_factory) -> Path:
    import torch

    import fa3d.training.checkpoint as ck
    from fa3d.training import build_model

    torch.manual_seed(0)
    model = build_model("edge", num_dense=32).eval()
    path = tmp_path_factory.mktemp("ckpt") / "edge.pt"
    ck.save_checkpoint(path, model)
    ck.load_checkpoint(path)  # loadable with weights_only=True
    return path


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """The network's "tiny" preset: same architecture and export path, a fraction of the export time."""
    import torch

    import fa3d.training.checkpoint as ck
    from fa3d.training import build_model

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    ck.save_checkpoint(path, build_model("tiny", num_dense=16).eval())
    return path


@pytest.fixture(scope="module")
def fp16_export(edge_checkpoint, tmp_path_factory):
    """One fa-export --fp16 --triton run without TensorRT, shared by the tests that inspect it."""
    out = tmp_path_factory.mktemp("out") / "export"
    triton = out.parent / "triton"
    mp = pytest.MonkeyPatch()
    mp.setitem(sys.modules, "tensorrt", None)  # TensorRT cannot be imported, even on a GPU machine
    import io
    from contextlib import redirect_stderr, redirect_stdout

    so, se = io.StringIO(), io.StringIO()
    try:
        with redirect_stdout(so), redirect_stderr(se):
            rc = main([str(edge_checkpoint), "--out", str(out), "--fp16", "--batch", "1:2:8", "--workspace", "512",
                       "--triton", str(triton)])
    finally:
        mp.undo()
    return {"rc": rc, "out": out, "triton": triton, "stdout": so.getvalue(), "stderr": se.getvalue()}


def test_no_tensorrt_exit_status_and_files(fp16_export, edge_checkpoint):
    assert fp16_export["rc"] == steps.EXIT_NO_TENSORRT == 3
    out = fp16_export["out"]
    assert sorted(p.name for p in out.iterdir()) == [
        "blazeface_short_range.LICENSE", "blazeface_short_range.NOTICE", "blazeface_short_range.onnx",
        "blazeface_short_range.onnx.json", "model.fp16.onnx", "model.fp16.onnx.json", "model.onnx",
        "model.onnx.json"]
    fp32, fp16 = read_sidecar(out / "model.onnx"), read_sidecar(out / "model.fp16.onnx")
    assert (fp32.format, fp32.precision, fp32.source_sha256) == ("onnx", "fp32", sha256_file(edge_checkpoint))
    assert (fp16.precision, fp16.source_sha256) == ("fp16", sha256_file(out / "model.onnx"))
    assert fp32.model.get("preset") == "edge" and fp32.num_dense == 32


def test_each_step_is_reported(fp16_export):
    lines = fp16_export["stdout"]
    for step in ("[onnx] wrote", "[parity] passed", "[fp16] wrote", "[engine] not built", "[triton] wrote"):
        assert step in lines
    assert "images: astronaut.png" in lines or "synthetic faces" in lines


def test_prints_the_target_commands(fp16_export):
    out, text = fp16_export["out"], fp16_export["stdout"]
    s = read_sidecar(out / "model.onnx").preprocess.input_size  # the edge preset's input size
    assert f"fa-export --from-onnx {out}/model.onnx --fp16 --batch 1:2:8 --workspace 512" in text
    shapes = (f"--minShapes=input:1x3x{s}x{s} --optShapes=input:2x3x{s}x{s} --maxShapes=input:8x3x{s}x{s} "
              f"--memPoolSize=workspace:512 --timingCacheFile={out}/timing.cache")
    assert f"trtexec --onnx={out}/model.onnx --fp16 --saveEngine={out}/model.plan {shapes}" in text
    assert f"trtexec --onnx={out}/model.fp16.onnx --stronglyTyped --saveEngine={out}/model.plan {shapes}" in text  # 10.12+
    assert "exit 3" in fp16_export["stderr"]


def test_triton_repository(fp16_export):
    repo = fp16_export["triton"] / "fa3d"
    assert sorted(str(p.relative_to(repo)) for p in repo.rglob("*")) == [
        "1", "1/model.onnx", "1/model.onnx.json", "config.pbtxt"]
    cfg = (repo / "config.pbtxt").read_text()
    s = read_sidecar(repo / "1" / "model.onnx").preprocess.input_size  # the edge preset's input size
    for line in ('platform: "onnxruntime_onnx"', "max_batch_size: 8", "preferred_batch_size: [ 2 ]",
                 f"dims: [ 3, {s}, {s} ]", "dims: [ 68, 3 ]", "dims: [ 32, 3 ]", "dims: [ 3, 3 ]", "dims: [ 1 ]",
                 "dynamic_batching {"):
        assert line in cfg
    assert read_sidecar(repo / "1" / "model.onnx").precision == "fp16"  # the requested precision's ONNX


def _copy_export(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_from_onnx_without_tensorrt(fp16_export, tmp_path, monkeypatch, capsys):
    d = _copy_export(fp16_export["out"], tmp_path / "e")
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    rc = main(["--from-onnx", str(d / "model.onnx"), "--json"])
    assert rc == 3
    res = json.loads(capsys.readouterr().out)
    assert res["status"] == 3 and res["steps"][0]["name"] == "check"
    assert res["target_commands"][0]["command"] == (f"fa-export --from-onnx {d}/model.onnx --batch 1:4:16 "
                                                    "--workspace 1024")


def test_from_fp16_onnx_without_tensorrt(fp16_export, tmp_path, monkeypatch, capsys):
    d = tmp_path / "e"
    d.mkdir()
    for name in ("model.fp16.onnx", "model.fp16.onnx.json"):  # only the FP16 ONNX was copied
        shutil.copyfile(fp16_export["out"] / name, d / name)
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    assert main(["--from-onnx", str(d / "model.fp16.onnx")]) == 3
    out = capsys.readouterr().out
    assert f"fa-export --from-onnx {d}/model.fp16.onnx --fp16" in out
    assert f"trtexec --onnx={d}/model.fp16.onnx --fp16 " in out and f"--onnx={d}/model.onnx" not in out


@pytest.mark.parametrize("version, source, flags", [("10.3.0", "model.onnx", ["FP16"]),
                                                     ("10.11.1", "model.onnx", ["FP16"]),
                                                     ("10.12.0", "model.fp16.onnx", []),
                                                     ("11.0", "model.fp16.onnx", [])])
def test_from_onnx_fp16_with_standin(fp16_export, tmp_path, monkeypatch, capsys, version, source, flags):
    d = _copy_export(fp16_export["out"], tmp_path / "e")
    fake = Gpu(version).install(monkeypatch, pycuda=False)
    rc = main(["--from-onnx", str(d / "model.onnx"), "--fp16", "--batch", "1:2:8", "--triton", str(tmp_path / "t")])
    assert rc == 0, capsys.readouterr()
    meta = read_sidecar(d / "model.plan")
    assert meta.precision == "fp16" and meta.engine["source_onnx"] == source
    assert meta.source_sha256 == sha256_file(d / source)
    first_build = fake.log[:fake.log.index(("build_serialized_network", None)) + 1]  # the model's; then the detector's
    assert [e[1] for e in first_build if e[0] == "set_flag" and e[1] != "TF32"] == flags
    det = json.loads((d / "blazeface_short_range.plan.json").read_text())
    assert det["format"] == "tensorrt" and det["precision"] == "fp16" and det["engine"]["tensorrt_version"] == version
    assert fake.values("build_serialized_network") == [None, None]
    assert (d / "timing.cache").is_file()
    cfg = (tmp_path / "t" / "fa3d" / "config.pbtxt").read_text()
    assert 'platform: "tensorrt_plan"' in cfg and (tmp_path / "t" / "fa3d" / "1" / "model.plan").is_file()


def test_from_onnx_fp16_on_11_converts_when_the_fp16_onnx_is_missing(fp16_export, tmp_path, monkeypatch, capsys):
    d = _copy_export(fp16_export["out"], tmp_path / "e")
    (d / "model.fp16.onnx").unlink()
    (d / "model.fp16.onnx.json").unlink()
    Gpu("11.0").install(monkeypatch, pycuda=False)
    assert main(["--from-onnx", str(d / "model.onnx"), "--fp16"]) == 0
    out = capsys.readouterr().out
    assert "needs an FP16 ONNX: wrote" in out and "parity passed: model.fp16.onnx vs model.onnx" in out
    assert read_sidecar(d / "model.fp16.onnx").precision == "fp16"


def test_from_onnx_fp16_on_10_12_parity_failure_builds_nothing(fp16_export, tmp_path, monkeypatch, capsys):
    """The FP16 ONNX converted for a strongly typed build gets the parity check fa-export --fp16 runs."""
    from fa3d.export import parity

    d = _copy_export(fp16_export["out"], tmp_path / "e")
    for name in ("model.fp16.onnx", "model.fp16.onnx.json"):
        (d / name).unlink()
    monkeypatch.setattr(parity, "FP16_TOLERANCE", parity.Tolerance(1e-9, 1e-9, 1e-9, 1e-9))
    Gpu("10.12.0").install(monkeypatch, pycuda=False)
    assert main(["--from-onnx", str(d / "model.onnx"), "--fp16"]) == steps.EXIT_CHECK_FAILED
    assert "FP16 ONNX outside tolerance" in capsys.readouterr().err
    assert not (d / "model.plan").exists()


def test_parse_failure_exit_status(fp16_export, tmp_path, monkeypatch, capsys):
    d = _copy_export(fp16_export["out"], tmp_path / "e")
    Gpu("8.6.1", parse_ok=False).install(monkeypatch, pycuda=False)
    assert main(["--from-onnx", str(d / "model.onnx")]) == steps.EXIT_BUILD_FAILED
    assert "could not parse" in capsys.readouterr().err
    assert not (d / "model.plan").exists()


def test_onnx_only_and_json(tiny_checkpoint, tmp_path, capsys):
    rc = main([str(tiny_checkpoint), "--out", str(tmp_path / "o"), "--onnx-only", "--json"])
    assert rc == 0
    res = json.loads(capsys.readouterr().out)
    assert [s["name"] for s in res["steps"]] == ["onnx", "parity", "detector", "engine"]
    assert res["steps"][1]["details"]["passed"] is True
    assert res["files"]["onnx"] == str(tmp_path / "o" / "model.onnx")


def test_usage_errors(tmp_path, monkeypatch, capsys):
    assert main([str(tmp_path / "missing.pt"), "--out", str(tmp_path / "o")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    monkeypatch.setattr("fa3d.export.defaults.export_asset_path", lambda relative: tmp_path / "nope" / relative)
    assert main(["--out", str(tmp_path / "o")]) == 2
    assert "shipped default model is not in this installation" in capsys.readouterr().err
    assert main(["--dla-core", "0", "--out", str(tmp_path / "o")]) == 2
    assert main(["--from-onnx", str(tmp_path / "none.onnx")]) == 2
    with pytest.raises(SystemExit) as e:
        main(["--fp16", "--int8"])
    assert e.value.code == 2


# ---------------------------------------------------------------- --int8 wiring (calibration stand-in)

class _Int8StandIn:
    """STAND-IN for fa3d.calibration.int8.make_int8 (the real one calibrates for minutes): records its
    arguments and writes a copy of the FP32 ONNX labelled int8 when it "passes" or is forced. What it writes
    is its own doing: the tests below check what the CLI asks of it and what the CLI does with its verdict
    (that the real make_int8 writes nothing when the gate fails is tested in tests/calibration/test_gate.py)."""

    def __init__(self, passed: bool) -> None:
        self.passed, self.calls = passed, []

    def __call__(self, fp32_onnx, out_onnx, *, calib=None, val=None, method="percentile", force=False,
                 report_path=None, **kw):
        from fa3d.calibration.int8 import Int8Result

        self.calls.append({"out": Path(out_onnx), "calib": calib, "val": val, "method": method, "force": force,
                           "report_path": report_path})
        written = self.passed or force
        if written:
            shutil.copyfile(fp32_onnx, out_onnx)
            write_metadata(sidecar_path(out_onnx), read_sidecar(fp32_onnx).with_(precision="int8"))
        report = {"passed": self.passed, "written": written}
        Path(report_path).write_text(json.dumps(report))
        return Int8Result(passed=self.passed, path=Path(out_onnx), report=report)


@pytest.mark.parametrize("passed, force, rc", [(False, False, 5), (False, True, 3), (True, False, 3)])
def test_int8_gate_decides_the_engine(tiny_checkpoint, tmp_path, monkeypatch, capsys, passed, force, rc):
    import fa3d.calibration.int8 as int8

    stand_in = _Int8StandIn(passed)
    monkeypatch.setattr(int8, "make_int8", stand_in)
    monkeypatch.setattr(int8, "make_int8_cli_summary", lambda r: f"stand-in gate passed={r.passed}")
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    calib, val = tmp_path / "frames.npz", tmp_path / "labelled_val.npz"
    argv = [str(tiny_checkpoint), "--out", str(tmp_path / "o"), "--int8", "--calib", str(calib),
            "--val", str(val), "--calib-method", "entropy"] + (["--force"] if force else [])
    assert main(argv) == rc
    assert stand_in.calls == [{"out": tmp_path / "o" / "model.int8.onnx", "calib": calib, "val": val,
                               "method": "entropy", "force": force,
                               "report_path": tmp_path / "o" / "int8_report.json"}]
    text = capsys.readouterr()
    if rc == 5:  # the CLI stops at the failed gate: no engine step, no command that would build one
        assert "accuracy gate failed" in text.err and str(tmp_path / "o" / "int8_report.json") in text.err
        assert "[engine]" not in text.out and "trtexec" not in text.out and "--force" in text.err
    else:
        assert f"fa-export --from-onnx {tmp_path}/o/model.int8.onnx --int8" in text.out
        assert f"trtexec --onnx={tmp_path}/o/model.int8.onnx --int8 --fp16" in text.out


def test_detector_engine_beside_the_model_engine_is_what_fa_run_and_fa_bench_use(fp16_export, tmp_path, monkeypatch,
                                                                                capsys):
    """fa-export builds the detector's FP16 engine beside the model's; fa-run --engine finds it and says so; fa-bench's
    stage table names where the detector ran. THE STAND-IN runs both "engines" with ONNX Runtime: not TensorRT."""
    from fa3d.runtime import bench, cli_run

    d = _copy_export(fp16_export["out"], tmp_path / "e")
    Gpu("10.3.0").install(monkeypatch)
    assert main(["--from-onnx", str(d / "model.onnx"), "--batch", "1:2:8"]) == 0
    assert (d / "blazeface_short_range.plan").is_file()
    capsys.readouterr()
    assert cli_run.main(["--engine", str(d / "model.plan"), "--max-frames", "3", "--headless"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith(f"fa-run: model {d / 'model.plan'} (tensorrt fp32), detector blazeface (tensorrt ")
    assert first.endswith("blazeface_short_range.plan)")
    (d / "blazeface_short_range.plan").unlink()
    assert cli_run.main(["--engine", str(d / "model.plan"), "--max-frames", "2", "--headless"]) == 0
    assert "detector blazeface (onnxruntime cpu)" in capsys.readouterr().out.splitlines()[0]
    assert cli_run.main(["--engine", str(d / "model.plan"), "--max-frames", "2", "--headless",
                         "--detector-engine", str(d / "missing.plan")]) == cli_run.EXIT_MODEL
    assert "missing.plan: detector engine not found" in capsys.readouterr().err
    assert main(["--from-onnx", str(d / "model.onnx"), "--batch", "1:2:8"]) == 0
    capsys.readouterr()
    assert bench.main(["--engine", str(d / "model.plan"), "--batch", "1", "--iters", "1", "--warmup", "0",
                       "--max-frames", "2"]) == 0
    out = capsys.readouterr().out
    assert "detect (tensorrt)" in out and "detector blazeface (tensorrt" in out
