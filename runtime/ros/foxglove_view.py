"""A live Foxglove view of fa3d's results (foxglove-sdk's WebSocket server) and an MCAP recording of it.

Channels (Foxglove's own schemas, protobuf-encoded by the SDK), each message stamped with the frame's
header stamp:

* ``/fa3d/image`` (foxglove.CompressedImage, JPEG): the frame as processed.
* ``/fa3d/annotations`` (foxglove.ImageAnnotations): per face the 68 landmarks (points), the face box
  (a line loop) and its id and confidence (text), in the image's pixels.
* ``/fa3d/calibration`` (foxglove.CameraCalibration), when the intrinsics are known: lets the Image panel
  overlay 3D data.
* ``/tf`` (foxglove.FrameTransforms), when a face has a head pose in metres: ``face_<id>`` and
  ``gaze_<id>`` under the image's frame_id (the head's axes; REP-155, see :mod:`.frames`).
* ``/fa3d/landmarks_3d`` (foxglove.SceneUpdate), with the head pose: the 68 landmarks in metres as spheres,
  one entity per face, the previous frame's entities deleted.

:class:`FoxgloveView` is a context manager. The server listens on ``host:port`` (127.0.0.1 by default:
reach it from another machine through an SSH tunnel, or bind 0.0.0.0 on a trusted network); open
Foxglove, "Open connection", ``ws://HOST:PORT``. The recording is written under a temporary name and
renamed at the end (a crash leaves no half file; Ctrl-C a complete, shorter one). A private
``foxglove.Context`` keeps the channels off the SDK's global one.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from ..atomic import atomic_path
from ..camera import DEFAULT_EYE_SPAN_M, CameraIntrinsics
from ..cli_errors import deferred_signals
from ..lazy import lazy_import
from ..results import FaceResult
from .frames import face_frames, landmarks_in_metres, quaternion_xyzw
from .messages import Header, face_id

foxglove = lazy_import("foxglove", extra="ros")
fm = lazy_import("foxglove.messages", extra="ros")
fc = lazy_import("foxglove.channels", extra="ros")

IMAGE = "/fa3d/image"
ANNOTATIONS = "/fa3d/annotations"
CALIBRATION = "/fa3d/calibration"
TF = "/tf"
SCENE = "/fa3d/landmarks_3d"
DEFAULT_PORT = 8765
JPEG_QUALITY = 90


def _stamp(header: Header):
    sec, nsec = divmod(int(header.stamp_ns), 1_000_000_000)
    return fm.Timestamp(sec, nsec)


def _colour(r: float, g: float, b: float, a: float = 1.0):
    return fm.Color(r=r, g=g, b=b, a=a)


class FoxgloveView:
    """``with FoxgloveView(serve=True, port=8765, record="run.mcap") as view: view.log(faces, header, image,
    intrinsics)``."""

    def __init__(self, *, serve: bool = True, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
                 record: str | os.PathLike | None = None, eye_span_m: float = DEFAULT_EYE_SPAN_M) -> None:
        if not serve and record is None:
            raise ValueError("FoxgloveView needs serve=True or a record path")
        self.serve, self.host, self.requested_port = serve, host, port
        self.record = Path(record) if record is not None else None
        self.eye_span_m = eye_span_m
        self.server = None
        self._stack: contextlib.ExitStack | None = None
        self._channels: dict[str, object] = {}
        self._context = None

    @property
    def port(self) -> int | None:
        """The port the server listens on (the one asked for, or the one chosen for port 0)."""
        return self.server.port if self.server is not None else None

    def __enter__(self) -> "FoxgloveView":
        with contextlib.ExitStack() as stack:
            ctx = self._context = foxglove.Context()  # kept: a dropped context detaches its channels
            if self.record is not None:
                tmp = stack.enter_context(atomic_path(self.record))
                writer = foxglove.open_mcap(tmp, allow_overwrite=True, context=ctx)
                stack.callback(writer.close)  # before the rename (LIFO)
            if self.serve:
                self.server = foxglove.start_server(name="fa3d", host=self.host, port=self.requested_port,
                                                    context=ctx)
                stack.callback(self.server.stop)
            self._channels = {IMAGE: fc.CompressedImageChannel(IMAGE, context=ctx),
                              ANNOTATIONS: fc.ImageAnnotationsChannel(ANNOTATIONS, context=ctx),
                              CALIBRATION: fc.CameraCalibrationChannel(CALIBRATION, context=ctx),
                              TF: fc.FrameTransformsChannel(TF, context=ctx),
                              SCENE: fc.SceneUpdateChannel(SCENE, context=ctx)}
            for channel in self._channels.values():
                stack.callback(channel.close)
            self._stack = stack.pop_all()
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        stack, self._stack = self._stack, None
        if stack is None:
            return False
        with deferred_signals():  # a second Ctrl-C while the recording is closed and renamed waits
            return bool(stack.__exit__(exc_type, exc, tb))

    def log(self, faces: Sequence[FaceResult], header: Header, image: np.ndarray,
            intrinsics: CameraIntrinsics | None) -> None:
        """Send one frame's image and results to every sink (the server's clients, the recording)."""
        if self._stack is None:
            raise RuntimeError("FoxgloveView.log() outside its with-block")
        t, ns = _stamp(header), int(header.stamp_ns)
        ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise ValueError("OpenCV cannot encode this frame as JPEG")
        ch = self._channels
        ch[IMAGE].log(fm.CompressedImage(timestamp=t, frame_id=header.frame_id, data=jpeg.tobytes(), format="jpeg"),
                      log_time=ns)
        ch[ANNOTATIONS].log(_annotations(faces, t), log_time=ns)
        if intrinsics is None:
            return
        h, w = image.shape[:2]
        ch[CALIBRATION].log(_calibration(intrinsics, header, t, w, h), log_time=ns)
        posed = [(face_id(f, i), f) for i, f in enumerate(faces) if f.head_pose_cam is not None]
        if posed:
            ch[TF].log(fm.FrameTransforms(transforms=[tr for fid, f in posed
                                                      for tr in self._transforms(fid, f, header, t)]), log_time=ns)
        entities = [self._entity(fid, f, header, t, intrinsics) for fid, f in posed]
        ch[SCENE].log(fm.SceneUpdate(deletions=[fm.SceneEntityDeletion(timestamp=t, type=fm.SceneEntityDeletionType.All)],
                                     entities=entities), log_time=ns)

    def _transforms(self, fid: str, face: FaceResult, header: Header, t) -> list:
        origin, face_rot, gaze_rot = face_frames(face.head_pose_cam, self.eye_span_m)
        out = []
        for child, rot in ((f"face_{fid}", face_rot), (f"gaze_{fid}", gaze_rot)):
            q = quaternion_xyzw(rot)
            out.append(fm.FrameTransform(timestamp=t, parent_frame_id=header.frame_id, child_frame_id=child,
                                         translation=fm.Vector3(x=float(origin[0]), y=float(origin[1]),
                                                                z=float(origin[2])),
                                         rotation=fm.Quaternion(x=float(q[0]), y=float(q[1]), z=float(q[2]),
                                                                w=float(q[3]))))
        return out

    def _entity(self, fid: str, face: FaceResult, header: Header, t, intrinsics: CameraIntrinsics):
        pts = landmarks_in_metres(face.landmarks, face.head_pose_cam, intrinsics, self.eye_span_m)
        size, colour = fm.Vector3(x=0.006, y=0.006, z=0.006), _colour(0.0, 1.0, 1.0)
        identity = fm.Quaternion(x=0.0, y=0.0, z=0.0, w=1.0)
        spheres = [fm.SpherePrimitive(pose=fm.Pose(position=fm.Vector3(x=float(x), y=float(y), z=float(z)),
                                                   orientation=identity), size=size, color=colour)
                   for x, y, z in pts]
        return fm.SceneEntity(timestamp=t, frame_id=header.frame_id, id=fid, spheres=spheres)


def _annotations(faces: Sequence[FaceResult], t):
    points, texts = [], []
    for i, f in enumerate(faces):
        lm = np.asarray(f.landmarks, np.float64)[:, :2] + 0.5  # Foxglove: pixel corners at integers
        points.append(fm.PointsAnnotation(timestamp=t, type=fm.PointsAnnotationType.Points, thickness=3.0,
                                          points=[fm.Point2(x=float(x), y=float(y)) for x, y in lm],
                                          outline_color=_colour(0.0, 1.0, 1.0)))
        x1, y1, x2, y2 = (float(v) + 0.5 for v in f.box)
        points.append(fm.PointsAnnotation(timestamp=t, type=fm.PointsAnnotationType.LineLoop, thickness=1.0,
                                          points=[fm.Point2(x=x1, y=y1), fm.Point2(x=x2, y=y1),
                                                  fm.Point2(x=x2, y=y2), fm.Point2(x=x1, y=y2)],
                                          outline_color=_colour(0.5, 0.5, 0.5)))
        texts.append(fm.TextAnnotation(timestamp=t, position=fm.Point2(x=x1, y=max(0.0, y1 - 4)),
                                       text=f"{face_id(f, i)} {f.confidence:.2f}", font_size=14.0,
                                       text_color=_colour(0.0, 1.0, 1.0), background_color=_colour(0, 0, 0, 0.5)))
    return fm.ImageAnnotations(timestamp=t, points=points, texts=texts)


def _calibration(k: CameraIntrinsics, header: Header, t, width: int, height: int):
    kk = [k.fx, 0.0, k.cx, 0.0, k.fy, k.cy, 0.0, 0.0, 1.0]
    p = [k.fx, 0.0, k.cx, 0.0, 0.0, k.fy, k.cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    d = [float(v) for v in k.dist]
    return fm.CameraCalibration(timestamp=t, frame_id=header.frame_id, width=width, height=height,
                                distortion_model="rational_polynomial" if len(d) > 5 else "plumb_bob",
                                D=d, K=kk, R=[1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0], P=p)
