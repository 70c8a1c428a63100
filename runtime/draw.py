"""Drawing results on frames: landmark contours (schema.CONTOURS), pose axes, track IDs, boxes."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from .results import FaceResult
from .schema import CONTOURS, GROUPS

AXIS_COLOURS = ((0, 0, 255), (0, 255, 0), (255, 0, 0))  # x red, y green, z blue (BGR)


def draw_face(image: np.ndarray, face: FaceResult, *, colour=(0, 255, 255), box: bool = True,
              axes: bool = True, dense: bool = False) -> None:
    """Draw one face on ``image`` in place."""
    lm = np.asarray(face.landmarks, np.float64)
    for group, closed in CONTOURS:
        pts = np.round(lm[list(GROUPS[group]), :2]).astype(np.int32)
        cv2.polylines(image, [pts], closed, colour, 1, cv2.LINE_AA)
    if dense and len(face.dense):
        for x, y in np.round(face.dense[:, :2]).astype(np.int32):
            cv2.circle(image, (int(x), int(y)), 1, (200, 200, 200), -1)
    x1, y1, x2, y2 = (int(round(v)) for v in face.box)
    if box:
        cv2.rectangle(image, (x1, y1), (x2, y2), (128, 128, 128), 1)
    if axes:
        # the rotation's axes in the view frame (y up) drawn from the nose tip, y flipped for the image
        origin = lm[30, :2]
        length = 0.5 * max(x2 - x1, y2 - y1)
        r = np.asarray(face.rotation, np.float64)
        for k in range(3):
            d = r[:, k] * np.array([1.0, -1.0, 1.0]) * length
            end = origin + d[:2]
            cv2.arrowedLine(image, tuple(int(round(v)) for v in origin), tuple(int(round(v)) for v in end),
                            AXIS_COLOURS[k], 2, cv2.LINE_AA, tipLength=0.15)
    label = f"id {face.track_id}" if face.track_id is not None else ""
    y, p, rl = face.yaw_pitch_roll
    label = f"{label} y{y:+.0f} p{p:+.0f} r{rl:+.0f} c{face.confidence:.2f}".strip()
    cv2.putText(image, label, (x1, max(12, y1 - 6)), cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, 1, cv2.LINE_AA)


def draw_results(image: np.ndarray, faces: Sequence[FaceResult], **kwargs) -> np.ndarray:
    """A copy of ``image`` with every face drawn."""
    out = image.copy()
    for f in faces:
        draw_face(out, f, **kwargs)
    return out
