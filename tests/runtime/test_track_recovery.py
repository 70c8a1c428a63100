"""Tracking that recovers: a face that is gone is dropped on the frame it goes, a new person gets a new ID.

Synthetic cuts and faces entering and leaving, first with a scripted detector (exact logic), then with the
shipped BlazeFace detector on the bundled portrait.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from fa3d.runtime.blazeface_detector import BlazeFaceDetector
from fa3d.runtime.default_model import sample_path
from fa3d.runtime.detect import Detections
from fa3d.runtime.track import FaceTracker, TrackerOptions, iou_matrix

IMG = np.zeros((720, 1280, 3), np.uint8)


class Scripted:
    """Sees exactly the faces in ``self.faces`` (tight boxes): full detection and the region check."""

    def __init__(self, faces):
        self.faces = np.asarray(faces, float).reshape(-1, 4)
        self.detect_calls = self.check_calls = 0

    def detect(self, image):
        self.detect_calls += 1
        return Detections(self.faces.copy(), np.ones(len(self.faces)))

    def check_regions(self, image, boxes, context=2.2):
        self.check_calls += 1
        out_b, out_s = np.full((len(boxes), 4), np.nan), np.zeros(len(boxes))
        for i, b in enumerate(boxes):
            c, half = (b[:2] + b[2:]) / 2, context * max(b[2] - b[0], b[3] - b[1]) / 2
            inside = [f for f in self.faces if (np.abs((f[:2] + f[2:]) / 2 - c) < half).all()]
            if inside:
                out_b[i] = max(inside, key=lambda f: iou_matrix(b, f)[0, 0])
                out_s[i] = 0.9
        return Detections(out_b, out_s)


def feed(tr, boxes, conf=None):
    """The aligner's part: landmarks whose tight box is the box (a perfect model)."""
    lm = np.stack([[[b[0], b[1], 0.0], [b[2], b[3], 0.0]] for b in boxes]) if len(boxes) else np.zeros((0, 2, 3))
    tr.update(lm, np.ones(len(boxes)) if conf is None else np.asarray(conf, float))


def step(tr, det, faces):
    det.faces = np.asarray(faces, float).reshape(-1, 4)
    boxes, ids, detected = tr.boxes_for_frame(IMG)
    feed(tr, boxes)
    return boxes, ids, detected


A, B, C = np.array([100, 100, 200, 220.0]), np.array([800, 300, 900, 420.0]), np.array([500, 50, 580, 150.0])


def test_cut_to_another_person_elsewhere_is_a_new_track_on_the_same_frame():
    det = Scripted([A])
    tr = FaceTracker(det, TrackerOptions(det_every_n=10))
    assert step(tr, det, [A])[1] == [0]
    boxes, ids, detected = step(tr, det, [A + 3])
    assert ids == [0] and not detected and det.check_calls == 1, "a face still there: region check only"
    boxes, ids, detected = step(tr, det, [B])  # the cut
    assert detected and ids == [1], "the old track is dropped and the new face found on the cut frame"
    np.testing.assert_allclose(boxes[0], B)
    assert tr.dropped == 1


def test_face_leaving_is_dropped_at_once_and_an_entering_face_gets_a_new_id():
    det = Scripted([A])
    tr = FaceTracker(det, TrackerOptions(det_every_n=3))
    step(tr, det, [A])
    ids_seen = []
    for k in range(4):  # C enters: found at the next periodic detection (within det_every_n frames)
        ids_seen.append(step(tr, det, [A, C])[1])
    assert ids_seen[-1] == [0, 1] and ids_seen[0] == [0]
    boxes, ids, _ = step(tr, det, [C])  # A leaves
    assert ids == [1]
    boxes, ids, _ = step(tr, det, [])  # everybody leaves
    assert ids == [] and len(boxes) == 0


def test_another_face_taking_the_place_gets_a_new_id():
    det = Scripted([A])
    tr = FaceTracker(det, TrackerOptions(det_every_n=10))
    step(tr, det, [A])
    shifted = A + [60, 40, 60, 40]  # overlaps the old box by less than switch_iou, inside its region
    assert iou_matrix(A, shifted)[0, 0] < 0.3
    boxes, ids, _ = step(tr, det, [shifted])
    assert ids == [1]
    np.testing.assert_allclose(boxes[0], shifted)


def test_without_region_check_disagreeing_landmarks_trigger_detection_next_frame():
    class DetectOnly:
        def __init__(self):
            self.calls = 0

        def detect(self, image):
            self.calls += 1
            return Detections(A[None].copy(), np.ones(1))

    det = DetectOnly()
    tr = FaceTracker(det, TrackerOptions(det_every_n=50))
    tr.boxes_for_frame(IMG)
    feed(tr, [A])  # confirmed
    tr.boxes_for_frame(IMG)
    feed(tr, [A + [70, 70, 70, 70]])  # landmarks far from the box they were looked for in: a miss
    boxes, ids, detected = tr.boxes_for_frame(IMG)
    assert detected and det.calls == 2 and ids == [0]
    np.testing.assert_allclose(boxes[0], A), "the track restarts from the detector's box"
    feed(tr, [A], conf=[0.1])  # low confidence: a miss too
    assert tr.needs_detection()


def test_a_false_detection_the_model_rejects_is_dropped_without_a_redetection():
    det = Scripted([A, B])
    tr = FaceTracker(det, TrackerOptions(det_every_n=10))
    boxes, ids, _ = tr.boxes_for_frame(IMG)
    assert ids == [0, 1]
    lm = np.stack([[[b[0], b[1], 0.0], [b[2], b[3], 0.0]] for b in boxes])
    tr.update(lm, np.array([0.9, 0.1]))  # the model does not take B for a face
    assert tr.track_ids == [0] and not tr.needs_detection()


@pytest.fixture(scope="module")
def portrait_patch():
    img = cv2.imread(str(sample_path("astronaut.png")))
    return cv2.resize(img[30:260, 130:330], None, fx=0.6, fy=0.6, interpolation=cv2.INTER_AREA)


def frame_with(patch, at):
    f = np.full((480, 640, 3), 110, np.uint8)
    if at is not None:
        h, w = patch.shape[:2]
        f[at[1]:at[1] + h, at[0]:at[0] + w] = patch
    return f


def test_real_detector_cut_and_leave(portrait_patch):
    tr = FaceTracker(BlazeFaceDetector(), TrackerOptions(det_every_n=10))
    log = []
    for at in [(40, 60)] * 3 + [(420, 250)] * 3 + [None] * 2 + [(200, 100)]:
        boxes, ids, _ = tr.boxes_for_frame(frame_with(portrait_patch, at))
        feed(tr, boxes)
        log.append(ids)
    assert log[:3] == [[0]] * 3
    assert log[3:6] == [[1]] * 3, "the cut: a new track on the cut frame itself"
    assert log[6:8] == [[], []], "no face: no track from the first empty frame"
    assert log[8] == [2]


def test_when_full_a_clearer_face_replaces_the_least_certain_track():
    class Scored(Scripted):
        def detect(self, image):
            self.detect_calls += 1
            return Detections(self.faces.copy(), self.scores.copy())

    det = Scored([A, B])
    det.scores = np.array([0.9, 0.62])
    tr = FaceTracker(det, TrackerOptions(det_every_n=1, max_faces=2, verify_every=0))
    boxes, ids, _ = tr.boxes_for_frame(IMG)
    feed(tr, boxes)
    det.faces, det.scores = np.stack([A, B, C]), np.array([0.9, 0.62, 0.95])
    boxes, ids, _ = tr.boxes_for_frame(IMG)
    assert ids == [0, 2], "C (0.95) takes the place of B (0.62)"


def test_region_check_holds_the_box_between_landmarks_and_detector():
    det = Scripted([A])
    tr = FaceTracker(det, TrackerOptions(det_every_n=10))
    step(tr, det, [A])
    det.faces = (A + [8, 0, 8, 0])[None]  # the detector sees the face 8 px to the right
    boxes, ids, detected = tr.boxes_for_frame(IMG)
    assert ids == [0] and not detected
    np.testing.assert_allclose(boxes[0], A + [4, 0, 4, 0])  # the mean of the two boxes (anchor_weight 0.5)


def test_a_face_the_model_no_longer_confirms_is_dropped_at_once_even_if_the_detector_still_fires():
    """A detector false positive that keeps firing (a shirt collar, a flag) or a face painted over: the model's
    confidence drops below min_confidence, and the track goes on that frame; the detector looks again next
    frame, and a place it still reports starts a new track only when the model confirms it."""
    det = Scripted([A, B])
    tr = FaceTracker(det, TrackerOptions(min_confidence=0.5, det_every_n=1000))
    boxes, ids, _ = tr.boxes_for_frame(IMG)
    feed(tr, boxes)
    first_ids = list(ids)
    for _ in range(3):
        step(tr, det, [A, B])
    assert tr.track_ids == first_ids  # both confirmed and kept
    boxes, ids, _ = tr.boxes_for_frame(IMG)
    conf = [0.9 if np.allclose(b, A) else 0.1 for b in boxes]  # the model no longer takes B for a face
    feed(tr, boxes, conf)
    assert tr.track_ids == [first_ids[0]]  # dropped on this frame, though the detector still sees B
    calls = det.detect_calls
    boxes, ids, detected = tr.boxes_for_frame(IMG)
    assert detected and det.detect_calls == calls + 1  # the detector looks again on the next frame
    feed(tr, boxes, [0.9 if np.allclose(b, A) else 0.1 for b in boxes])
    assert tr.track_ids == [first_ids[0]]  # B starts no track the model does not confirm
