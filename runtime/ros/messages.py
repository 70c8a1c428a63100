"""The one function that turns a frame's results and its header into ROS messages: :func:`frame_messages`.

The bag writer (:mod:`.bag_writer`) and the ROS 2 node (:mod:`.node`) both publish exactly what it returns.
Messages are rosbags dataclasses of :func:`~.hri_msgs.typestore` (serialise with
``store.serialize_cdr(msg, msgtype)``). Every message carries the input image's stamp and frame_id.

Topics (REP-155 / ROS4HRI, see docs/ros2.md):

* ``/humans/faces/tracked`` (hri_msgs/IdsList): the ids of the faces of this frame, once per frame, also
  when empty.
* ``/humans/faces/<id>/roi`` (hri_msgs/NormalizedRegionOfInterest2D): the face box, normalised to [0, 1];
  ``c`` the face confidence.
* ``/humans/faces/<id>/landmarks`` (hri_msgs/FacialLandmarks): 70 points, 0-67 the iBUG points, 68 the right
  pupil (mean of the person's right eye contour, 36-41), 69 the left pupil (42-47); x, y normalised as
  ``(px + 0.5) / width`` (fa3d pixels are 0-based pixel centres); ``c`` the face confidence, 0 for a point
  outside the image (clipped to the border).
* ``/humans/faces/<id>/cropped`` and ``/aligned`` (sensor_msgs/Image, bgr8, ``crop_size`` square): the face
  box's square crop, and the same crop rotated so that the eyes are level.
* ``/tf`` (tf2_msgs/TFMessage): ``face_<id>`` and ``gaze_<id>`` under the image's frame_id, for faces with a
  head pose in metres (intrinsics known); see :mod:`.frames`.
* ``/fa3d/landmarks_3d`` (visualization_msgs/MarkerArray, intrinsics known): a DELETEALL, then one
  SPHERE_LIST of the 68 landmarks in metres per face (namespace ``fa3d``, marker id = track id), for RViz.

Face ids: a tracked face's id is ``f`` + its track id in four digits (``f0000``, ``f0001``, ...): stable
while the tracker follows the face, never reused within a run. Untracked faces (images, ``--no-track``)
get ``n<k>`` by their order in the frame: not an identity across frames.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..camera import DEFAULT_EYE_SPAN_M, CameraIntrinsics
from ..preprocess import PreprocessConfig, crop_boxes, crop_transforms, warp_crops
from ..results import FaceResult
from . import hri_msgs
from .frames import face_frames, landmarks_in_metres, quaternion_xyzw
from .images import image_message

TRACKED = "/humans/faces/tracked"
TF = "/tf"
MARKERS = "/fa3d/landmarks_3d"
FACE_TOPIC = "/humans/faces/{id}/{what}"
TF_MESSAGE = "tf2_msgs/msg/TFMessage"
MARKER_ARRAY = "visualization_msgs/msg/MarkerArray"
IMAGE = "sensor_msgs/msg/Image"
#: the frame_id of frames that come without a header (camera, video, images)
DEFAULT_FRAME_ID = "camera_optical_frame"


@dataclass(frozen=True)
class Header:
    """The input image's header: stamp in nanoseconds since the epoch (or the source's start) and frame."""

    stamp_ns: int
    frame_id: str = DEFAULT_FRAME_ID


@dataclass(frozen=True)
class MessageOptions:
    crop_size: int = 128  # side of the cropped and aligned images, pixels
    cropped: bool = True  # publish /humans/faces/<id>/cropped
    aligned: bool = True  # publish /humans/faces/<id>/aligned
    markers: bool = True  # publish the MarkerArray (when intrinsics are known)
    eye_span_m: float = DEFAULT_EYE_SPAN_M  # the face model's size (as FaceAlignerOptions.eye_span_m)

    def __post_init__(self) -> None:
        if not (isinstance(self.crop_size, int) and 8 <= self.crop_size <= 4096):
            raise ValueError(f"crop_size must be an integer in [8, 4096], got {self.crop_size!r}")


@dataclass(frozen=True)
class Message:
    topic: str
    msgtype: str
    msg: object


def face_id(face: FaceResult, index: int) -> str:
    """The REP-155 id of a face: ``f<track id, 4 digits>``, or ``n<index in the frame>`` when untracked."""
    return f"f{face.track_id:04d}" if face.track_id is not None else f"n{index}"


def face_topic(fid: str, what: str) -> str:
    return FACE_TOPIC.format(id=fid, what=what)


def ros_header(store, header: Header):
    sec, nanosec = divmod(int(header.stamp_ns), 1_000_000_000)
    t = store.types
    return t["std_msgs/msg/Header"](stamp=t["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec),
                                    frame_id=header.frame_id)


def _normalised(xy: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Points (N, 2) in 0-based pixels -> normalised (N, 2) clipped to [0, 1], and whether each was inside."""
    n = (np.asarray(xy, np.float64) + 0.5) / np.array([width, height], np.float64)
    inside = ((n >= 0) & (n <= 1)).all(axis=1)
    return np.clip(n, 0.0, 1.0), inside


def _landmarks(store, hdr, face: FaceResult, width: int, height: int):
    lm = np.asarray(face.landmarks, np.float64)[:, :2]
    pupils = np.stack([lm[36:42].mean(0), lm[42:48].mean(0)])  # the person's right eye, then left
    points, inside = _normalised(np.concatenate([lm, pupils]), width, height)
    conf = float(np.clip(face.confidence, 0.0, 1.0))
    poi = store.types[hri_msgs.POINT_2D]
    pts = [poi(x=float(x), y=float(y), c=conf if ok else 0.0) for (x, y), ok in zip(points, inside)]
    return store.types[hri_msgs.FACIAL_LANDMARKS](header=hdr, landmarks=pts, height=height, width=width)


def _roi(store, hdr, face: FaceResult, width: int, height: int):
    (x1, y1), (x2, y2) = _normalised(np.asarray(face.box, np.float64).reshape(2, 2), width, height)[0]
    return store.types[hri_msgs.ROI_2D](header=hdr, xmin=float(x1), ymin=float(y1), xmax=float(x2),
                                        ymax=float(y2), c=float(np.clip(face.confidence, 0.0, 1.0)))


def face_crops(image: np.ndarray, face: FaceResult, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The face box's square crop and the same crop rotated so that the eyes are level, both (S, S, 3),
    cut by the package's one crop implementation (:mod:`fa3d.runtime.preprocess`)."""
    lm = np.asarray(face.landmarks, np.float64)
    a, b = lm[36:42, :2].mean(0), lm[42:48, :2].mean(0)
    roll = math.degrees(math.atan2(b[1] - a[1], b[0] - a[0]))
    box = crop_boxes(np.asarray(face.box, np.float64)[None], 1.0)
    cfg = PreprocessConfig(input_size=size, crop_scale=1.0)
    m = np.concatenate([crop_transforms(box, size, 0.0), crop_transforms(box, size, roll)])
    crops = warp_crops(image, m, cfg)
    return crops[0], crops[1]


def _transform(store, hdr, child: str, origin: np.ndarray, rotation: np.ndarray):
    t = store.types
    q = quaternion_xyzw(rotation)
    return t["geometry_msgs/msg/TransformStamped"](
        header=hdr, child_frame_id=child,
        transform=t["geometry_msgs/msg/Transform"](
            translation=t["geometry_msgs/msg/Vector3"](x=float(origin[0]), y=float(origin[1]), z=float(origin[2])),
            rotation=t["geometry_msgs/msg/Quaternion"](x=float(q[0]), y=float(q[1]), z=float(q[2]), w=float(q[3]))))


def _marker(store, hdr, marker_id: int, action: int, points: np.ndarray | None = None):
    t = store.types
    marker = t["visualization_msgs/msg/Marker"]
    vec3, point = t["geometry_msgs/msg/Vector3"], t["geometry_msgs/msg/Point"]
    pose = t["geometry_msgs/msg/Pose"](position=point(x=0.0, y=0.0, z=0.0),
                                       orientation=t["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0))
    pts = [point(x=float(x), y=float(y), z=float(z)) for x, y, z in (points if points is not None else [])]
    return marker(
        header=hdr, ns="fa3d", id=marker_id, type=marker.SPHERE_LIST, action=action, pose=pose,
        scale=vec3(x=0.006, y=0.006, z=0.006), color=t["std_msgs/msg/ColorRGBA"](r=0.0, g=1.0, b=1.0, a=1.0),
        lifetime=t["builtin_interfaces/msg/Duration"](sec=0, nanosec=0), frame_locked=False, points=pts, colors=[],
        texture_resource="", texture=t["sensor_msgs/msg/CompressedImage"](
            header=hdr, format="", data=np.zeros(0, np.uint8)),
        uv_coordinates=[], text="", mesh_resource="",
        mesh_file=t["visualization_msgs/msg/MeshFile"](filename="", data=np.zeros(0, np.uint8)),
        mesh_use_embedded_materials=False)


def frame_messages(faces: Sequence[FaceResult], header: Header, image: np.ndarray,
                   intrinsics: CameraIntrinsics | None, store=None,
                   options: MessageOptions = MessageOptions()) -> list[Message]:
    """Every message of one processed frame (the topics of the module doc), in publishing order.

    ``image`` is the frame that was processed (BGR, for its size and the crops); ``intrinsics`` those the
    head poses were solved with (None: no ``/tf``, no markers); ``store`` a typestore
    (default :func:`~.hri_msgs.typestore`)."""
    store = store if store is not None else hri_msgs.typestore()
    height, width = image.shape[:2]
    hdr = ros_header(store, header)
    ids = [face_id(f, i) for i, f in enumerate(faces)]
    out = [Message(TRACKED, hri_msgs.IDS_LIST, store.types[hri_msgs.IDS_LIST](header=hdr, ids=ids))]
    transforms, markers = [], []
    for fid, face in zip(ids, faces):
        out.append(Message(face_topic(fid, "roi"), hri_msgs.ROI_2D, _roi(store, hdr, face, width, height)))
        out.append(Message(face_topic(fid, "landmarks"), hri_msgs.FACIAL_LANDMARKS,
                           _landmarks(store, hdr, face, width, height)))
        if options.cropped or options.aligned:
            cropped, aligned = face_crops(image, face, options.crop_size)
            for what, crop, wanted in (("cropped", cropped, options.cropped), ("aligned", aligned, options.aligned)):
                if wanted:
                    out.append(Message(face_topic(fid, what), IMAGE, image_message(store, hdr, crop)))
        pose = face.head_pose_cam
        if pose is None or intrinsics is None:
            continue
        origin, face_rot, gaze_rot = face_frames(pose, options.eye_span_m)
        transforms += [_transform(store, hdr, f"face_{fid}", origin, face_rot),
                       _transform(store, hdr, f"gaze_{fid}", origin, gaze_rot)]
        if options.markers:
            pts = landmarks_in_metres(face.landmarks, pose, intrinsics, options.eye_span_m)
            marker_id = face.track_id if face.track_id is not None else len(markers)
            markers.append(_marker(store, hdr, marker_id, store.types["visualization_msgs/msg/Marker"].ADD, pts))
    if transforms:
        out.append(Message(TF, TF_MESSAGE, store.types[TF_MESSAGE](transforms=transforms)))
    if intrinsics is not None and options.markers:
        marker_cls = store.types["visualization_msgs/msg/Marker"]
        clear = _marker(store, hdr, 0, marker_cls.DELETEALL)
        out.append(Message(MARKERS, MARKER_ARRAY, store.types[MARKER_ARRAY](markers=[clear, *markers])))
    return out
