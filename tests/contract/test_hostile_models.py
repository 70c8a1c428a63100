"""Hostile models: output shapes the runtime cannot use, a num_dense that contradicts the sidecar, corrupt
files, missing or broken sidecars, unknown types; and fa-eval on a training checkpoint."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from hostile_helpers import SHIPPED_CHECKPOINT, one_line_error
from fa3d.runtime.backends import BackendError, open_backend
from fa3d.runtime.cli_run import main
from fa3d.runtime.metadata import write_metadata
from tests.helpers.plumbing import plumbing_metadata

SIZE = 32


def _shaped_model(path, landmarks=(68, 3), rotation=(3, 3), dense=(5, 3), confidence=(1,), declared=None,
                  sidecar_dense=5):
    """A tiny ONNX whose outputs are zeros of the given per-face shapes (the batch axis is added), declared as
    ``declared`` (name -> per-face dims, strings for symbolic ones) when given; sidecar with ``sidecar_dense``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    shapes = {"landmarks": landmarks, "rotation": rotation, "dense": dense, "confidence": confidence}
    inits = [numpy_helper.from_array(np.array([1, 2, 3], np.int64), "axes")]
    nodes = [helper.make_node("ReduceMean", ["input", "axes"], ["m"], keepdims=1)]  # (B, 1, 1, 1)
    outs = []
    for name, shp in shapes.items():
        inits.append(numpy_helper.from_array(np.zeros((1, *shp), np.float32), f"{name}_zeros"))
        inits.append(numpy_helper.from_array(np.array([-1] + [1] * len(shp), np.int64), f"{name}_shape"))
        nodes += [helper.make_node("Reshape", ["m", f"{name}_shape"], [f"{name}_m"]),
                  helper.make_node("Mul", [f"{name}_m", f"{name}_zeros"], [name])]
        dims = (declared or {}).get(name, shp)
        outs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, ["B", *dims]))
    graph = helper.make_graph(nodes, "shaped", [helper.make_tensor_value_info(
        "input", TensorProto.FLOAT, ["B", 3, SIZE, SIZE])], outs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.save(model, str(path))
    meta = plumbing_metadata(SIZE)
    write_metadata(str(path) + ".json", meta.with_(num_dense=sidecar_dense))
    return path


def test_the_shaped_fixture_itself_loads_when_right(tmp_path):
    with open_backend(_shaped_model(tmp_path / "ok.onnx")) as be:
        out = be.infer(np.zeros((2, 3, SIZE, SIZE), np.float32))
    assert out["dense"].shape == (2, 5, 3)


@pytest.mark.parametrize("kwargs,needle", [
    ({"landmarks": (67, 3)}, "'landmarks'"),
    ({"landmarks": (68, 2)}, "'landmarks'"),
    ({"rotation": (9,)}, "'rotation'"),
    ({"confidence": ()}, "'confidence'"),
    ({"dense": (7, 3)}, "num_dense=5"),
    ({"sidecar_dense": 468}, "num_dense=468"),
])
def test_wrong_output_shapes_are_refused_at_load_with_exit_4(tmp_path, capsys, kwargs, needle):
    model = _shaped_model(tmp_path / "bad.onnx", **kwargs)
    with pytest.raises(BackendError, match="re-export"):
        open_backend(model)
    assert main(["--model", str(model), "--source", str(tmp_path / "x.png"), "--headless"]) == 3  # source first
    img = tmp_path / "x.png"
    import cv2

    cv2.imwrite(str(img), np.zeros((64, 64, 3), np.uint8))
    capsys.readouterr()
    assert main(["--model", str(model), "--source", str(img), "--headless"]) == 4
    assert needle in one_line_error(capsys.readouterr().err, "fa-run")


def test_outputs_that_turn_out_wrong_at_run_time_stop_the_run_with_exit_4(tmp_path, plumbing_model, blob_video,
                                                                         blob_detector, monkeypatch, capsys):
    """Shapes ONNX Runtime cannot know before running (data-dependent): caught per batch, exit 4, no output."""
    from fa3d.runtime.backends.onnxrt import OrtBackend

    real = OrtBackend._infer_batch

    def wrong(self, x):
        out = real(self, x)
        return {**out, "landmarks": out["landmarks"][:, :67]}

    monkeypatch.setattr(OrtBackend, "_infer_batch", wrong)
    js = tmp_path / "out.jsonl"
    assert main(["--model", str(plumbing_model), "--source", str(blob_video), "--json", str(js), "--headless"]) == 4
    assert "'landmarks' has shape" in one_line_error(capsys.readouterr().err, "fa-run")
    assert not js.exists() and not list(tmp_path.glob(".*partial*"))


@pytest.mark.parametrize("damage", ["truncate", "garbage", "no_sidecar", "bad_sidecar", "other_format"])
def test_broken_model_files_give_exit_4(tmp_path, plumbing_model, blob_video, capsys, damage):
    model = tmp_path / "m.onnx"
    shutil.copy(plumbing_model, model)
    shutil.copy(str(plumbing_model) + ".json", str(model) + ".json")
    sidecar = tmp_path / "m.onnx.json"
    if damage == "truncate":
        model.write_bytes(model.read_bytes()[:100])
    elif damage == "garbage":
        model.write_bytes(b"\0\1\2" * 1000)
    elif damage == "no_sidecar":
        sidecar.unlink()
    elif damage == "bad_sidecar":
        sidecar.write_text("{not json")
    else:
        write_metadata(sidecar, plumbing_metadata(64, fmt="tensorrt", engine={}))
    assert main(["--model", str(model), "--source", str(blob_video), "--headless"]) == 4
    one_line_error(capsys.readouterr().err, "fa-run")


def test_unknown_model_type_and_a_folder_as_model(tmp_path, blob_video, capsys):
    (tmp_path / "model.bin").write_bytes(b"x")
    assert main(["--model", str(tmp_path / "model.bin"), "--source", str(blob_video), "--headless"]) == 4
    assert "unknown model type" in one_line_error(capsys.readouterr().err, "fa-run")
    (tmp_path / "dir.onnx").mkdir()
    assert main(["--model", str(tmp_path / "dir.onnx"), "--source", str(blob_video), "--headless"]) == 4
    one_line_error(capsys.readouterr().err, "fa-run")


def _aflw_folder(root):
    import cv2

    (root / "images").mkdir(parents=True)
    names = np.array(["c0.jpg", "c1.jpg"])
    for n in names:
        cv2.imwrite(str(root / "images" / n), np.zeros((120, 120, 3), np.uint8))
    pts = np.random.default_rng(0).uniform(30, 90, (2, 21, 2)).astype(np.float32)
    np.savez(root / "labels.npz", names=names, pts21_crop=pts, visible=np.ones((2, 21), bool),
             yaw_deg=np.array([10.0, -70.0], np.float32), roi_box=np.zeros((2, 4), np.float32), pts21_orig=pts,
             split=np.array(["val", "val"]))


def test_fa_eval_runs_a_checkpoint_as_its_help_says(tmp_path, capsys):
    pytest.importorskip("torch")
    from fa3d.training.cli_eval import main as eval_main

    _aflw_folder(tmp_path / "d")
    js = tmp_path / "r.json"
    assert eval_main([str(SHIPPED_CHECKPOINT), "--dataset", "aflw19k-val", "--data", str(tmp_path / "d"),
                      "--quiet", "--json", str(js)]) == 0
    assert "2 images, 0 failures" in capsys.readouterr().out and js.is_file()


@pytest.mark.parametrize("content", [b"", b"not a zip at all", None])
def test_fa_eval_refuses_a_bad_checkpoint_in_one_line(tmp_path, capsys, content):
    pytest.importorskip("torch")
    from fa3d.training.cli_eval import main as eval_main

    _aflw_folder(tmp_path / "d")
    ckpt = tmp_path / "bad.pt"
    if content is None:  # a malicious pickle: must be refused (weights_only) and never run
        import torch

        class Evil:
            def __reduce__(self):
                return (open, (str(tmp_path / "pwned"), "w"))

        torch.save({"state_dict": Evil()}, ckpt)
    else:
        ckpt.write_bytes(content)
    assert eval_main([str(ckpt), "--dataset", "aflw19k-val", "--data", str(tmp_path / "d"), "--quiet"]) == 2
    one_line_error(capsys.readouterr().err, "fa-eval")
    assert not (tmp_path / "pwned").exists()


def _nan_for(monkeypatch, backend, rows):
    real = backend.infer

    def infer(x):
        out = {k: v.copy() for k, v in real(x).items()}
        for r in rows:
            if r < len(x):
                out["landmarks"][r, 3] = np.nan
                out["confidence"][r] = np.inf
        return out

    monkeypatch.setattr(backend, "infer", infer)


def test_faces_with_nan_outputs_are_dropped_and_counted(plumbing_model, monkeypatch):
    from fa3d.runtime import FaceAligner
    from tests.helpers.plumbing import blob_frame

    with FaceAligner.from_artifact(plumbing_model) as al:
        _nan_for(monkeypatch, al.backend, [1])
        faces = al.process(blob_frame(), boxes=np.tile([[200.0, 160.0, 320.0, 320.0]], (3, 1)))
        assert len(faces) == 2 and al.nonfinite_faces == 1
        assert all(np.isfinite(f.landmarks).all() and np.isfinite(f.confidence) for f in faces)


def test_a_model_that_returns_nan_never_puts_nan_in_the_json_lines(tmp_path, plumbing_model, blob_video,
                                                                 blob_detector, monkeypatch):
    import json

    from fa3d.runtime.backends.onnxrt import OrtBackend

    real = OrtBackend._infer_batch
    monkeypatch.setattr(OrtBackend, "_infer_batch",
                        lambda self, x: {**real(self, x), "rotation": np.full((len(x), 3, 3), np.nan, np.float32)})
    js = tmp_path / "o.jsonl"
    assert main(["--model", str(plumbing_model), "--source", str(blob_video), "--json", str(js), "--headless",
                 "--smooth"]) == 0
    recs = [json.loads(line, parse_constant=lambda c: pytest.fail(f"{c} in the JSON lines")) for line in
            js.read_text().splitlines()]
    assert len(recs) == 30 and all(r["faces"] == [] for r in recs)


def test_an_engine_whose_outputs_contradict_its_sidecar_is_refused_at_load(tmp_path, monkeypatch, capsys):
    """The same load-time check for TensorRT engines, against the stand-in `tensorrt` module (not a TRT run)."""
    from tests.helpers.plumbing import NUM_DENSE
    from tests.helpers.trt_standin import Gpu, plumbing_plan

    world = Gpu("10.3.0").install(monkeypatch)
    plan = tmp_path / "model.plan"
    plan.write_bytes(plumbing_plan(SIZE, NUM_DENSE + 1, (1, 4, 16), "10.3.0"))
    write_metadata(str(plan) + ".json", plumbing_metadata(SIZE, fmt="tensorrt", engine={
        "tensorrt_version": "10.3.0", "gpu_name": "Fake GPU", "compute_capability": "8.7"}))
    with pytest.raises(BackendError, match=f"num_dense={NUM_DENSE}"):
        open_backend(plan)
    assert not any(e[0] == "set_tensor_address" for e in world.log), "refused before any buffer is bound"
