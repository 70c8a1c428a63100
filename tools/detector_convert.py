"""Development-time conversion of MediaPipe's BlazeFace short-range detector from .tflite to the shipped ONNX.

The runtime never imports this module; it only reads its output, ``fa3d/runtime/assets/detector/``.
It needs an environment of its own (MediaPipe pins numpy<2 and brings a second OpenCV)::

    python3 -m venv /work/venv-blaze
    /work/venv-blaze/bin/pip install mediapipe==0.10.21 tflite2onnx onnx onnxruntime ai-edge-litert
    /work/venv-blaze/bin/pip install --no-deps -e .
    /work/venv-blaze/bin/python -m tools.detector_convert --out runtime/assets/detector

Steps: read ``mediapipe/modules/face_detection/face_detection_short_range.tflite`` from the installed
``mediapipe==0.10.21`` wheel (newer wheels ship no .tflite files); convert it with ``tflite2onnx`` (opset 11,
NCHW input); make the batch dimension dynamic (the four output Reshapes get shape ``[0, -1, k]``) and check
the graph; verify (1) the raw outputs against the TFLite interpreter (``ai-edge-litert``) on random inputs and
the bundled sample portrait, and (2) the decoded detections (:mod:`fa3d.runtime.detectors.blazeface`, the whole
frame as one window) against MediaPipe's own FaceDetection solution on the portrait (box IoU >= 0.9, score
within 0.02: MediaPipe resizes bilinearly, fa3d with pixel-area averaging, so the boxes differ by a few
pixels); then write the ONNX, the Apache-2.0 licence text
from the wheel's dist-info, a NOTICE and ``conversion.json`` (the figures of the checks) atomically.
Exit codes: 0 written, 1 a check failed (nothing written), 2 usage / missing tools.

The full-range model (``face_detection_full_range_sparse.tflite``) is NOT converted: its weights are stored
sparse behind DENSIFY ops and need a TensorFlow Lite interpreter with XNNPACK off (which otherwise returns
wrong weights) to densify them, then tf2onnx with tensorflow-cpu (tflite2onnx lacks DEPTH_TO_SPACE).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import importlib.util
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

MEDIAPIPE_VERSION = "0.10.21"
TFLITE_REL = "modules/face_detection/face_detection_short_range.tflite"
ONNX_NAME = "blazeface_short_range.onnx"
NOTICE = """fa3d ships, in this folder, a converted copy of MediaPipe's BlazeFace short-range face detector:

  blazeface_short_range.onnx  <- mediapipe {version} (PyPI wheel), {rel}
                                 (sha256 of the .tflite: {sha})

MediaPipe is Copyright The MediaPipe Authors and licensed under the Apache License, Version 2.0 (the full
text is in LICENSE, copied from the wheel's dist-info). Model card: "BlazeFace (Short Range)", Google.
Modification: the TensorFlow Lite flatbuffer was converted to ONNX (tflite2onnx {t2o}, opset 11) and the
batch dimension made dynamic, by tools.detector_convert. The weights are unchanged.
"""


def find_tflite() -> tuple[Path, Path]:
    """The .tflite and the licence file of the installed mediapipe wheel (without importing mediapipe)."""
    try:
        version = importlib.metadata.version("mediapipe")
    except importlib.metadata.PackageNotFoundError:
        raise SystemExit(f"mediapipe is not installed here; pip install mediapipe=={MEDIAPIPE_VERSION}") from None
    if version != MEDIAPIPE_VERSION:
        raise SystemExit(f"mediapipe {version} found; this conversion needs {MEDIAPIPE_VERSION} "
                         "(newer wheels ship no .tflite files)")
    spec = importlib.util.find_spec("mediapipe")
    root = Path(next(iter(spec.submodule_search_locations)))
    dist = importlib.metadata.distribution("mediapipe")
    lic = [Path(dist.locate_file(f)) for f in dist.files or [] if Path(str(f)).name.upper().startswith("LICENSE")]
    if not lic:
        raise SystemExit("mediapipe's dist-info has no LICENSE file")
    return root / TFLITE_REL, lic[0]


def convert(tflite: Path, out: Path) -> None:
    """tflite2onnx, then a dynamic batch dimension."""
    import onnx
    import tflite2onnx

    tflite2onnx.convert(str(tflite), str(out))
    m = onnx.load(str(out))
    for init in m.graph.initializer:  # the output Reshapes: [1, -1, k] -> [0, -1, k] (0 = keep the batch)
        if init.name.startswith("TFLITE2ONNX_Vector_int64_[_1_-1_"):
            a = onnx.numpy_helper.to_array(init).copy()
            a[0] = 0
            init.CopyFrom(onnx.numpy_helper.from_array(a, init.name))
    del m.graph.value_info[:]  # intermediate shapes recorded with batch 1
    for v in list(m.graph.input) + list(m.graph.output):
        v.type.tensor_type.shape.dim[0].dim_param = "batch"
    m.producer_name = "tools.detector_convert"
    onnx.checker.check_model(m, full_check=True)
    opset = max(o.version for o in m.opset_import if o.domain in ("", "ai.onnx"))
    if opset > 17:
        raise SystemExit(f"converted opset {opset} > 17")
    onnx.save(m, str(out))


def test_inputs(portrait: Path) -> np.ndarray:
    """(N, 128, 128, 3) float32 NHWC RGB in [-1, 1]: the sample portrait and four random images."""
    import cv2

    img = cv2.imread(str(portrait))
    if img is None:
        raise SystemExit(f"{portrait}: cannot read the sample portrait")
    sq = cv2.resize(img, (128, 128), interpolation=cv2.INTER_AREA)[:, :, ::-1]
    rng = np.random.default_rng(0)
    x = [sq.astype(np.float32) / 127.5 - 1] + [rng.uniform(-1, 1, (128, 128, 3)).astype(np.float32)
                                               for _ in range(4)]
    return np.stack(x)


def tflite_outputs(tflite: Path, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(tflite))
    it.allocate_tensors()
    inp = it.get_input_details()[0]["index"]
    outs = {d["name"]: d["index"] for d in it.get_output_details()}
    reg, cls = [], []
    for xi in x:
        it.set_tensor(inp, xi[None])
        it.invoke()
        reg.append(it.get_tensor(outs["regressors"])[0])
        cls.append(it.get_tensor(outs["classificators"])[0])
    return np.stack(reg), np.stack(cls)


def mediapipe_reference(portrait: Path) -> dict:
    """MediaPipe's own decoding on the portrait (short range): box (x1, y1, x2, y2) and score in pixels."""
    import cv2
    import mediapipe as mp

    img = cv2.imread(str(portrait))
    with mp.solutions.face_detection.FaceDetection(model_selection=0, min_detection_confidence=0.5) as fd:
        res = fd.process(img[:, :, ::-1])
    if not res.detections:
        raise SystemExit("MediaPipe found no face on the sample portrait")
    d = res.detections[0]
    b = d.location_data.relative_bounding_box
    h, w = img.shape[:2]
    return {"box": [b.xmin * w, b.ymin * h, (b.xmin + b.width) * w, (b.ymin + b.height) * h],
            "score": float(d.score[0])}


def verify(onnx_path: Path, tflite: Path, portrait: Path) -> dict:
    import onnxruntime as ort

    from fa3d.runtime.detectors.blazeface_detector import BlazeFaceDetector

    x = test_inputs(portrait)
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    reg, cls = sess.run(["regressors", "classificators"], {"input": x.transpose(0, 3, 1, 2).copy()})
    t_reg, t_cls = tflite_outputs(tflite, x)
    report = {"max_abs_diff_regressors": float(np.abs(reg - t_reg).max()),
              "max_abs_diff_classificators": float(np.abs(cls - t_cls).max()),
              "inputs": "the sample portrait resized to 128x128 and 4 uniform-noise images, batch of 5"}
    import cv2

    from fa3d.runtime.boxes import box_iou

    img = cv2.imread(str(portrait))
    ref = mediapipe_reference(portrait)
    bf = BlazeFaceDetector(onnx_path, mapping=None)
    det = bf.detect_raw(img, bf.plan(img.shape[1], img.shape[0])[:1])  # the whole frame only, as MediaPipe
    report["mediapipe_box"] = [round(v, 2) for v in ref["box"]]
    report["mediapipe_score"] = round(ref["score"], 5)
    report["fa3d_box"] = [round(float(v), 2) for v in det.boxes[0]] if len(det) else None
    report["fa3d_score"] = round(float(det.scores[0]), 5) if len(det) else None
    report["box_iou"] = box_iou(np.array(ref["box"]), det.boxes[0]) if len(det) else 0.0
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.detector_convert", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="folder to write (runtime/assets/detector in the repository)")
    p.add_argument("--portrait", default=str(Path(__file__).resolve().parents[1] / "runtime/assets/samples/astronaut.png"),
                   help="a face image for the checks (default: the bundled sample portrait)")
    p.add_argument("--tol", type=float, default=1e-3, help="largest accepted raw-output difference to TFLite")
    args = p.parse_args(argv)
    tflite, licence = find_tflite()
    out_dir = Path(args.out)
    with tempfile.TemporaryDirectory(dir=out_dir.parent if out_dir.parent.is_dir() else None) as tmp:
        tmp_onnx = Path(tmp) / ONNX_NAME
        convert(tflite, tmp_onnx)
        report = verify(tmp_onnx, tflite, Path(args.portrait))
        print(json.dumps(report, indent=1))
        bad = (report["max_abs_diff_regressors"] > args.tol * 100 or report["max_abs_diff_classificators"] > args.tol
               or report["box_iou"] < 0.9 or abs(report["fa3d_score"] - report["mediapipe_score"]) > 0.02)
        if bad:
            print("detector_convert: a check failed; nothing written", file=sys.stderr)
            return 1
        sha = hashlib.sha256(tflite.read_bytes()).hexdigest()
        report.update({"source": f"mediapipe=={MEDIAPIPE_VERSION}:{TFLITE_REL}", "tflite_sha256": sha,
                       "onnx_sha256": hashlib.sha256(tmp_onnx.read_bytes()).hexdigest()})
        stage = Path(tmp) / "stage"
        stage.mkdir()
        shutil.move(str(tmp_onnx), stage / ONNX_NAME)
        shutil.copyfile(licence, stage / "LICENSE")
        (stage / "NOTICE").write_text(NOTICE.format(version=MEDIAPIPE_VERSION, rel=TFLITE_REL, sha=sha,
                                                    t2o=importlib.metadata.version("tflite2onnx")))
        (stage / "conversion.json").write_text(json.dumps(report, indent=1) + "\n")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        shutil.move(str(stage), out_dir)
    print(f"wrote {out_dir}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
