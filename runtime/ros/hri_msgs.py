"""The ROS4HRI messages fa3d publishes (REP-155, hri_msgs as in ROS 2 Humble), as .msg text for rosbags.

No ROS install is needed: :func:`typestore` is rosbags' Humble typestore (sensor_msgs, geometry_msgs,
tf2_msgs, visualization_msgs, ...) with these definitions registered, so bags can be written and read, and
messages serialised to CDR, on any machine. A ROS 2 machine that subscribes needs the ``hri_msgs``
package itself (``ros-<distro>-hri-msgs``); the wire format is the same.
"""

from __future__ import annotations

from functools import lru_cache

from ..lazy import lazy_import

typesys = lazy_import("rosbags.typesys", extra="ros")

IDS_LIST = "hri_msgs/msg/IdsList"
POINT_2D = "hri_msgs/msg/NormalizedPointOfInterest2D"
ROI_2D = "hri_msgs/msg/NormalizedRegionOfInterest2D"
FACIAL_LANDMARKS = "hri_msgs/msg/FacialLandmarks"

#: FacialLandmarks' codes: the 68 iBUG points (OpenPose face order) and the two pupils
LANDMARK_CODES: tuple[tuple[str, int], ...] = (
    ("RIGHT_EAR", 0), *((f"RIGHT_PROFILE_{i}", i) for i in range(1, 8)), ("MENTON", 8),
    ("LEFT_EAR", 16), *((f"LEFT_PROFILE_{i}", 16 - i) for i in range(1, 8)),
    ("RIGHT_EYEBROW_OUTSIDE", 17), ("RIGHT_EYEBROW_1", 18), ("RIGHT_EYEBROW_2", 19), ("RIGHT_EYEBROW_3", 20),
    ("RIGHT_EYEBROW_INSIDE", 21),
    ("RIGHT_EYE_OUTSIDE", 36), ("RIGHT_EYE_TOP_1", 37), ("RIGHT_EYE_TOP_2", 38), ("RIGHT_EYE_INSIDE", 39),
    ("RIGHT_EYE_BOTTOM_1", 41), ("RIGHT_EYE_BOTTOM_2", 40), ("RIGHT_PUPIL", 68),
    ("LEFT_EYEBROW_OUTSIDE", 26), ("LEFT_EYEBROW_1", 25), ("LEFT_EYEBROW_2", 24), ("LEFT_EYEBROW_3", 23),
    ("LEFT_EYEBROW_INSIDE", 22),
    ("LEFT_EYE_OUTSIDE", 45), ("LEFT_EYE_TOP_1", 44), ("LEFT_EYE_TOP_2", 43), ("LEFT_EYE_INSIDE", 42),
    ("LEFT_EYE_BOTTOM_1", 46), ("LEFT_EYE_BOTTOM_2", 47), ("LEFT_PUPIL", 69),
    ("SELLION", 27), ("NOSE_1", 28), ("NOSE_2", 29), ("NOSE", 30),
    *((f"NOSTRIL_{i}", 30 + i) for i in range(1, 6)),
    ("MOUTH_OUTER_RIGHT", 48), *((f"MOUTH_OUTER_TOP_{i}", 48 + i) for i in range(1, 6)), ("MOUTH_OUTER_LEFT", 54),
    *((f"MOUTH_OUTER_BOTTOM_{i}", 60 - i) for i in range(1, 6)),
    ("MOUTH_INNER_RIGHT", 60), *((f"MOUTH_INNER_TOP_{i}", 60 + i) for i in range(1, 4)), ("MOUTH_INNER_LEFT", 64),
    *((f"MOUTH_INNER_BOTTOM_{i}", 68 - i) for i in range(1, 4)),
)
NUM_HRI_LANDMARKS = 70
RIGHT_PUPIL, LEFT_PUPIL = 68, 69

_CONSTANTS = "\n".join(f"uint8 {name}={code}" for name, code in LANDMARK_CODES)

#: .msg text by type name (field lists of hri_msgs, ROS 2 Humble)
DEFINITIONS: dict[str, str] = {
    IDS_LIST: "std_msgs/Header header\nstring[] ids\n",
    POINT_2D: "float32 x\nfloat32 y\nfloat32 c\n",
    ROI_2D: "std_msgs/Header header\nfloat32 xmin\nfloat32 ymin\nfloat32 xmax\nfloat32 ymax\nfloat32 c\n",
    FACIAL_LANDMARKS: (f"std_msgs/Header header\n{_CONSTANTS}\n"
                       f"NormalizedPointOfInterest2D[{NUM_HRI_LANDMARKS}] landmarks\n"
                       "uint32 height\nuint32 width\n"),
}


@lru_cache(maxsize=1)
def typestore():
    """rosbags' ROS 2 Humble typestore with the hri_msgs above registered (built once)."""
    store = typesys.get_typestore(typesys.Stores.ROS2_HUMBLE)
    types = {}
    for name, text in DEFINITIONS.items():
        types.update(typesys.get_types_from_msg(text, name))
    store.register(types)
    return store
