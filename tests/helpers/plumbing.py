"""Test helpers for the runtime area: a PLUMBING fixture model, blob videos, a blob detector.

Nothing here is a face model. The plumbing model is a tiny ONNX graph with the real I/O contract
(input (B,3,S,S); landmarks, rotation, dense, confidence) whose landmarks are the mean shape placed in
the crop as the preprocessing expects (tight box = the crop's face box), shifted to the centroid of the
bright pixels of the crop, so that a bright moving blob is "followed". Confidence is the bright fraction
of the crop (x5, clipped to [0, 1]); rotation is the identity.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from fa3d.runtime.detectors import DetectorBase, Detections
from fa3d.runtime.metadata import ArtifactMetadata, write_metadata
from fa3d.runtime.preprocess import PreprocessConfig
from fa3d.runtime.schema import mean_shape

NUM_DENSE = 67


def template_crop_landmarks(size: int, crop_scale: float = float(np.sqrt(2))) -> np.ndarray:
    """The mean shape (68, 3) in crop pixels with its tight box = the crop's face box, centred."""
    m = np.asarray(mean_shape(), np.float64) * np.array([1.0, -1.0, 1.0])
    extent = np.ptp(m[:, :2], axis=0).max()
    k = (size / crop_scale) / extent
    centre = (m[:, :2].min(0) + m[:, :2].max(0)) / 2
    out = np.empty_like(m)
    out[:, :2] = (m[:, :2] - centre) * k + (size - 1) / 2
    out[:, 2] = (m[:, 2] - m[:, 2].min()) * k
    return out


def make_plumbing_model(path: Path, size: int = 64, fixed_batch: int | None = None) -> Path:
    """Write the plumbing fixture ONNX (opset 17) and its sidecar; returns the ONNX path."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    tpl = template_crop_landmarks(size).astype(np.float32)
    dense = ((tpl[:-1] + tpl[1:]) / 2).astype(np.float32)
    ys, xs = np.mgrid[:size, :size].astype(np.float32)
    c0 = (size - 1) / 2
    eps = 1e-3
    inits = [
        numpy_helper.from_array(tpl[None], "tpl"),
        numpy_helper.from_array(dense[None], "tpl_dense"),
        numpy_helper.from_array(xs.reshape(-1, 1), "gx"),
        numpy_helper.from_array(ys.reshape(-1, 1), "gy"),
        numpy_helper.from_array(np.array([0, -1], np.int64), "flat_shape"),
        numpy_helper.from_array(np.array([1], np.int64), "ax1"),
        numpy_helper.from_array(np.array(eps, np.float32), "eps"),
        numpy_helper.from_array(np.array(c0 * eps, np.float32), "c0eps"),
        numpy_helper.from_array(np.array(c0, np.float32), "c0"),
        numpy_helper.from_array(np.array(5.0 / (size * size), np.float32), "conf_k"),
        numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
        numpy_helper.from_array(np.array(1.0, np.float32), "one"),
        numpy_helper.from_array(np.eye(3, dtype=np.float32)[None], "eye"),
    ]
    n = helper.make_node
    nodes = [
        n("ReduceMean", ["input"], ["g"], axes=[1], keepdims=0),
        n("Relu", ["g"], ["w"]),
        n("Reshape", ["w", "flat_shape"], ["wf"]),
        n("ReduceSum", ["wf", "ax1"], ["sumw"], keepdims=1),
        n("MatMul", ["wf", "gx"], ["sx"]),
        n("MatMul", ["wf", "gy"], ["sy"]),
        n("Add", ["sumw", "eps"], ["den"]),
        n("Add", ["sx", "c0eps"], ["sx2"]),
        n("Add", ["sy", "c0eps"], ["sy2"]),
        n("Div", ["sx2", "den"], ["cx"]),
        n("Div", ["sy2", "den"], ["cy"]),
        n("Sub", ["cx", "c0"], ["ox"]),
        n("Sub", ["cy", "c0"], ["oy"]),
        n("Mul", ["sumw", "zero"], ["oz"]),
        n("Concat", ["ox", "oy", "oz"], ["off2"], axis=1),
        n("Unsqueeze", ["off2", "ax1"], ["off"]),
        n("Add", ["tpl", "off"], ["landmarks"]),
        n("Add", ["tpl_dense", "off"], ["dense"]),
        n("Mul", ["sumw", "conf_k"], ["craw"]),
        n("Clip", ["craw", "zero", "one"], ["confidence"]),
        n("Unsqueeze", ["oz", "ax1"], ["oz3"]),
        n("Add", ["eye", "oz3"], ["rotation"]),
    ]
    b = fixed_batch if fixed_batch is not None else "B"
    graph = helper.make_graph(
        nodes, "fa3d_plumbing_fixture",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [b, 3, size, size])],
        [helper.make_tensor_value_info("landmarks", TensorProto.FLOAT, [b, 68, 3]),
         helper.make_tensor_value_info("rotation", TensorProto.FLOAT, [b, 3, 3]),
         helper.make_tensor_value_info("dense", TensorProto.FLOAT, [b, NUM_DENSE, 3]),
         helper.make_tensor_value_info("confidence", TensorProto.FLOAT, [b, 1])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    write_metadata(str(path) + ".json", plumbing_metadata(size))
    return path


def plumbing_metadata(size: int = 64, fmt: str = "onnx", engine: dict | None = None) -> ArtifactMetadata:
    return ArtifactMetadata(format=fmt, preprocess=PreprocessConfig(input_size=size), num_dense=NUM_DENSE,
                            model={"name": "plumbing-fixture (not a face model)"}, engine=engine)


def blob_frame(size=(640, 480), centre=(320, 240), axes=(60, 80)) -> np.ndarray:
    """A dark frame with a bright face-sized ellipse (and darker 'eyes' and 'mouth' for the eye)."""
    w, h = size
    img = np.full((h, w, 3), 20, np.uint8)
    cx, cy = int(round(centre[0])), int(round(centre[1]))
    cv2.ellipse(img, (cx, cy), axes, 0, 0, 360, (200, 220, 235), -1, cv2.LINE_AA)
    for dx in (-0.4, 0.4):
        cv2.circle(img, (int(cx + dx * axes[0]), int(cy - 0.2 * axes[1])), max(3, axes[0] // 8), (90, 90, 90), -1)
    cv2.ellipse(img, (cx, int(cy + 0.45 * axes[1])), (axes[0] // 3, axes[1] // 12), 0, 0, 360, (90, 90, 160), -1)
    return img


def blob_centres(n_frames: int, start=(200.0, 240.0), velocity=(4.0, 1.0)) -> list[tuple[float, float]]:
    return [(start[0] + velocity[0] * i, start[1] + velocity[1] * i) for i in range(n_frames)]


def write_blob_video(path: Path, n_frames: int = 30, size=(640, 480), fps: float = 30.0,
                     start=(200.0, 240.0), velocity=(4.0, 1.0)) -> Path:
    path = Path(path)
    fourcc = cv2.VideoWriter_fourcc(*("mp4v" if path.suffix == ".mp4" else "MJPG"))
    vw = cv2.VideoWriter(str(path), fourcc, fps, size)
    assert vw.isOpened(), f"cannot write {path}"
    for c in blob_centres(n_frames, start, velocity):
        vw.write(blob_frame(size, c))
    vw.release()
    return path


class BlobDetector(DetectorBase):
    """TEST-ONLY detector: bright connected components of face size -> boxes (not a face detector)."""

    def __init__(self) -> None:
        self.calls = 0

    def detect(self, image_bgr: np.ndarray) -> Detections:
        self.calls += 1
        g = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY)
        n, _, stats, _ = cv2.connectedComponentsWithStats((g > 150).astype(np.uint8))
        boxes = [[x, y, x + w - 1, y + h - 1] for x, y, w, h, a in stats[1:] if a > 400]
        b = np.asarray(boxes, np.float64).reshape(-1, 4)
        return Detections(b, np.ones(len(b)))


def count_video_frames(path: Path) -> int:
    """How many frames OpenCV decodes from the video at ``path``."""
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


def corrupt_avi_frame(path: Path, k: int) -> None:
    """Overwrite the JPEG data of frame ``k`` of an MJPG AVI with zeros (the container stays valid)."""
    b = bytearray(Path(path).read_bytes())
    i = b.index(b"movi") + 4
    n = 0
    while i < len(b) - 8:
        tag, size = bytes(b[i:i + 4]), int.from_bytes(b[i + 4:i + 8], "little")
        if tag == b"00dc":
            if n == k:
                b[i + 8:i + 8 + size] = bytes(size)
                Path(path).write_bytes(bytes(b))
                return
            n += 1
        i += 8 + size + (size & 1)
    raise ValueError(f"{path}: no frame {k}")
