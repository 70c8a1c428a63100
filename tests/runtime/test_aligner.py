"""FaceAligner on the plumbing fixture model (a plumbing check, not face accuracy) and the tracker."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from fa3d.runtime import FaceAligner, FaceAlignerOptions, FaceResult
from fa3d.runtime.backends import open_backend
from fa3d.runtime.default_model import DefaultModelMissing
from fa3d.runtime.preprocess import landmark_box
from fa3d.runtime.smoothing import OneEuroFilter, OneEuroOptions
from fa3d.runtime.boxes import iou_matrix
from fa3d.runtime.detectors import DetectorBase, Detections
from fa3d.runtime.track import FaceTracker, TrackerOptions
from tests.helpers.plumbing import BlobDetector, blob_centres, blob_frame


class CountingBackend:
    def __init__(self, inner):
        self.inner, self.calls, self.batches = inner, 0, []
        self.metadata, self.max_batch, self.name = inner.metadata, inner.max_batch, inner.name

    def infer(self, x):
        self.calls += 1
        self.batches.append(len(x))
        return self.inner.infer(x)

    def close(self):
        self.inner.close()


def _aligner(model, detector=None, **opts):
    return FaceAligner(CountingBackend(open_backend(model)), FaceAlignerOptions(**opts), detector=detector)


def test_import_is_cheap():
    code = ("import sys, fa3d.runtime as r; r.FaceAligner; "
            "bad = [m for m in ('torch', 'onnxruntime', 'tensorrt', 'pycuda', 'onnx') if m in sys.modules]; "
            "print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_process_with_boxes_one_batched_inference(plumbing_model):
    frame = blob_frame(centre=(200, 240))
    frame[:, 400:] = blob_frame(centre=(520, 200))[:, 400:]
    boxes = np.array([[140, 160, 260, 320], [460, 120, 580, 280]], float)
    with _aligner(plumbing_model) as al:
        faces = al.process(frame, boxes=boxes)
        assert al.backend.calls == 1 and al.backend.batches == [2], "all faces of a frame in one inference"
    assert len(faces) == 2 and all(isinstance(f, FaceResult) for f in faces)
    for f, b, c in zip(faces, boxes, [(200, 240), (520, 200)]):
        np.testing.assert_array_equal(f.box, b.astype(np.float32))  # caller's boxes used as they are
        assert f.landmarks.shape == (68, 3) and f.dense.shape[1] == 3
        lb = landmark_box(f.landmarks)[0]
        # the fixture places the landmarks' tight box on the face box's size, around the blob
        assert abs((lb[2] - lb[0]) - 160) < 2 and lb[0] < c[0] < lb[2] and lb[1] < c[1] < lb[3]
        np.testing.assert_allclose(f.yaw_pitch_roll, 0, atol=1e-4)
        np.testing.assert_allclose(f.rotation, np.eye(3), atol=1e-6)
        assert f.track_id is None and 0 <= f.confidence <= 1
    with pytest.raises(ValueError, match="BGR frame"):
        _aligner(plumbing_model).process(frame[..., 0], boxes=boxes)


def test_process_detects_and_filters_confidence(plumbing_model):
    det = BlobDetector()
    with _aligner(plumbing_model, det, max_faces=1) as al:
        faces = al.process(blob_frame(centre=(300, 200)))
        assert det.calls == 1 and len(faces) == 1
        assert al.process(np.full((480, 640, 3), 20, np.uint8)) == []
        assert al.last_timings["detect"] > 0


def test_video_tracking_keeps_id_of_moving_face_without_detector(plumbing_model):
    det = BlobDetector()
    n = 25
    with _aligner(plumbing_model, det, mode="video", det_every_n=100) as al:
        ids, errs = [], []
        for i, c in enumerate(blob_centres(n, start=(150, 200), velocity=(8, 3))):
            faces = al.process_video(blob_frame(centre=c), i * 33.3)
            assert len(faces) == 1
            ids.append(faces[0].track_id)
            lb = landmark_box(faces[0].landmarks)[0]
            errs.append(np.hypot((lb[0] + lb[2]) / 2 - c[0], (lb[1] + lb[3]) / 2 - c[1]))
        assert set(ids) == {0}
        assert det.calls == 1, "between frames the box comes from the previous landmarks"
        assert max(errs) < 20, errs  # the box follows a face moving 200 px
        with pytest.raises(ValueError, match="timestamps must not go back"):
            al.process_video(blob_frame(), 0.0)
        # a repeated timestamp is accepted: the frame is aligned and tracked like any other
        last = (n - 1) * 33.3
        faces = al.process_video(blob_frame(centre=(150 + 8 * n, 200 + 3 * n)), last)
        assert len(faces) == 1 and faces[0].track_id == 0


def test_video_redetects_every_n_and_on_low_confidence(plumbing_model):
    det = BlobDetector()
    with _aligner(plumbing_model, det, mode="video", det_every_n=5) as al:
        for i in range(10):
            al.process_video(blob_frame(centre=(300, 240)), i * 33.0)
        assert det.calls == 2
        # the face vanishes: low confidence -> detector on the next frame, then the track is dropped
        dark = np.full((480, 640, 3), 20, np.uint8)
        assert al.process_video(dark, 400.0) == []
        calls = det.calls
        assert al.process_video(dark, 433.0) == [] and det.calls == calls + 1
        faces = al.process_video(blob_frame(centre=(400, 240)), 466.0)
        assert len(faces) == 1 and faces[0].track_id == 1, "a new face gets a new ID"


def test_tracker_several_faces_stable_ids():
    class Fixed(DetectorBase):
        def __init__(self):
            self.boxes = np.array([[0, 0, 50, 50], [200, 0, 250, 50]], float)

        def detect(self, image):
            return Detections(self.boxes, np.ones(len(self.boxes)))

    det = Fixed()
    tr = FaceTracker(det, TrackerOptions(det_every_n=2, max_faces=3))
    img = np.zeros((10, 10, 3), np.uint8)
    for step in range(6):
        boxes, ids, _ = tr.boxes_for_frame(img)
        assert ids == [0, 1]
        shift = np.array([3.0, 1.0])
        lm = np.stack([np.array([[b[0], b[1]], [b[2], b[3]]]) + shift for b in boxes])
        lm = np.concatenate([lm, np.zeros((2, 2, 1))], axis=2)
        tr.update(lm, np.ones(2))
        det.boxes = det.boxes + np.r_[shift, shift]  # the detector sees the faces move too
    det.boxes = np.vstack([det.boxes, [[400, 0, 450, 50]]])
    tr.boxes_for_frame(img)
    assert tr.track_ids == [0, 1, 2]
    assert iou_matrix([[0, 0, 10, 10]], [[5, 0, 15, 10]])[0, 0] == pytest.approx(1 / 3)


def test_tracker_reanchors_a_drifted_track_instead_of_starting_a_second_one():
    class Fixed(DetectorBase):
        boxes = np.array([[100, 100, 200, 200]], float)

        def detect(self, image):
            return Detections(self.boxes, np.ones(1))

    tr = FaceTracker(Fixed(), TrackerOptions(det_every_n=2))
    img = np.zeros((10, 10, 3), np.uint8)
    boxes, ids, detected = tr.boxes_for_frame(img)
    assert ids == [0] and detected
    # the landmarks slide up and right, off the face, confidence staying high
    for k in range(1, 3):
        drifted = np.array([[[100 + 20 * k, 100 - 20 * k, 0], [200 + 20 * k, 200 - 20 * k, 0]]], float)
        tr.update(drifted, np.ones(1))
        boxes, ids, detected = tr.boxes_for_frame(img)
    assert detected and ids == [0], "the drifted track keeps its ID and no second track starts"
    np.testing.assert_allclose(boxes[0], [100, 100, 200, 200])


def test_one_euro_filter_reduces_jitter_and_follows_motion():
    rng = np.random.default_rng(0)
    f = OneEuroFilter(OneEuroOptions(enabled=True, min_cutoff=1.0, beta=0.0))
    t = np.arange(200) / 30.0
    noisy = 100 + rng.normal(0, 2, 200)
    out = np.array([f(np.array([v]), ti)[0] for v, ti in zip(noisy, t)])
    assert out[50:].std() < 0.5 * noisy[50:].std()
    fast = OneEuroFilter(OneEuroOptions(enabled=True, min_cutoff=1.0, beta=1.0))
    slow = OneEuroFilter(OneEuroOptions(enabled=True, min_cutoff=1.0, beta=0.0))
    ramp = 10 * np.arange(30, dtype=float)
    lag = lambda flt: ramp[-1] - [flt(np.array([v]), i / 30)[0] for i, v in enumerate(ramp)][-1]  # noqa: E731
    assert lag(fast) < lag(slow)
    with pytest.raises(ValueError):
        OneEuroOptions(min_cutoff=0)


def test_smoothing_in_video_mode(plumbing_model):
    det = BlobDetector()
    sm = OneEuroOptions(enabled=True, min_cutoff=0.5, beta=0.0)
    raw, smooth = _aligner(plumbing_model, det, mode="video"), _aligner(plumbing_model, BlobDetector(),
                                                                          mode="video", smoothing=sm)
    rng = np.random.default_rng(3)
    a, b = [], []
    for i in range(20):
        c = (300 + rng.normal(0, 3), 240 + rng.normal(0, 3))
        a.append(raw.process_video(blob_frame(centre=c), i * 33.0)[0].landmarks[30, 0])
        b.append(smooth.process_video(blob_frame(centre=c), i * 33.0)[0].landmarks[30, 0])
    assert np.std(np.diff(b)) < 0.6 * np.std(np.diff(a))


class OverlapWatch(CountingBackend):
    """Counts how many calls are inside ``infer`` at once; each call lingers so that unserialised callers overlap."""

    def __init__(self, inner):
        super().__init__(inner)
        self.inside, self.most_inside, self._count = 0, 0, threading.Lock()

    def infer(self, x):
        with self._count:
            self.inside += 1
            self.most_inside = max(self.most_inside, self.inside)
        try:
            time.sleep(0.02)  # lets another thread in, if nothing keeps it out
            return super().infer(x)
        finally:
            with self._count:
                self.inside -= 1


def test_thread_safety_serialises_calls(plumbing_model):
    backend = OverlapWatch(open_backend(plumbing_model))
    al = FaceAligner(backend, FaceAlignerOptions())
    frame = blob_frame()
    boxes = np.array([[240, 160, 400, 320]], float)
    expected = al.process(frame, boxes)[0].landmarks
    errors = []
    start = threading.Barrier(4)

    def work():
        try:
            start.wait(timeout=10)
            for _ in range(5):
                np.testing.assert_allclose(al.process(frame, boxes)[0].landmarks, expected, atol=1e-4)
        except Exception as e:  # noqa: BLE001 - collected for the assertion below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert backend.calls == 1 + 4 * 5
    assert backend.most_inside == 1, "two calls were inside the model at once: the aligner's lock did not hold"
    assert not errors
    al.close()
    with pytest.raises(RuntimeError, match="closed"):
        al.process(frame, boxes)


def test_default_model_absent_is_a_clear_error(monkeypatch, tmp_path):
    import fa3d.runtime.default_model as dm

    monkeypatch.setattr(dm, "asset_path", lambda rel: tmp_path / rel)
    with pytest.raises(DefaultModelMissing, match="--model"):
        FaceAligner.from_artifact(None)


def test_options_validation():
    with pytest.raises(ValueError, match="mode"):
        FaceAlignerOptions(mode="stream")
    with pytest.raises(ValueError, match="process_video"):
        FaceAligner(CountingBackend.__new__(CountingBackend)).process_video(blob_frame(), 0.0)


class HeadTurned(CountingBackend):
    """The plumbing model with its pose head saying yaw 30, pitch -10 deg while its landmarks stay frontal: the
    head and the fit to the landmarks disagree by ~30 deg, so each pose source is told apart."""

    def __init__(self, inner):
        from fa3d.runtime import pose

        super().__init__(inner)
        self.head = pose.euler_to_matrix(np.array([30.0, -10.0, 0.0])).astype(np.float32)

    def infer(self, x):
        out = dict(self.inner.infer(x))
        out["rotation"] = np.repeat(self.head[None], len(x), axis=0)
        return out


def test_pose_source_head_landmarks_blend_and_the_default(plumbing_model):
    from fa3d.runtime import pose
    from fa3d.runtime.policy import DEFAULT_POSE_SOURCE

    frame = blob_frame(centre=(200, 240))
    box = np.array([[140, 160, 260, 320]], float)
    faces = {}
    for src in ("head", "landmarks", "blend", None):  # None: the default options
        opts = FaceAlignerOptions() if src is None else FaceAlignerOptions(pose_source=src)
        with FaceAligner(HeadTurned(open_backend(plumbing_model)), opts) as a:
            faces[src] = a.process(frame, boxes=box)[0]
    head = HeadTurned(open_backend(plumbing_model)).head.astype(np.float64)
    np.testing.assert_array_equal(faces["head"].landmarks, faces["landmarks"].landmarks)
    np.testing.assert_allclose(faces["head"].rotation, head, atol=1e-5)  # an axis-aligned crop: no in-plane turn
    fitted = pose.rotation_from_landmarks(faces["head"].landmarks.astype(np.float64))
    assert pose.geodesic_deg(head, fitted) > 25, "the fixture must tell the head from the fit"
    np.testing.assert_allclose(faces["landmarks"].rotation, fitted, atol=1e-5)
    np.testing.assert_allclose(faces["landmarks"].yaw_pitch_roll, pose.matrix_to_euler(fitted), atol=1e-3)
    mid = pose.blend_rotations(head, fitted)
    np.testing.assert_allclose(faces["blend"].rotation, mid, atol=1e-5)
    assert min(pose.geodesic_deg(mid, head), pose.geodesic_deg(mid, fitted)) > 10
    assert DEFAULT_POSE_SOURCE == "landmarks"  # the figures in the docs are for the fit
    np.testing.assert_allclose(faces[None].rotation, faces[DEFAULT_POSE_SOURCE].rotation, atol=1e-6)
    with pytest.raises(ValueError, match="pose_source"):
        FaceAlignerOptions(pose_source="nose")
