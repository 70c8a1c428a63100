"""The version policy and the shared defaults: the one place that states them.

Everything else imports these names; change a value here and every layer follows. Versions are
:class:`packaging.version.Version` objects and are compared as such, never as strings.

The TensorRT facts behind the values, each checked against NVIDIA's own pages (sources and the facts we could
not confirm: docs/deploying.md, "Versions and their sources"): weak typing (the FP16/INT8 builder flags) is deprecated from
TensorRT 10.12 and removed in 11, where INT8 comes from explicit Q/DQ nodes; the implicit INT8 calibrator is
deprecated from 10.1 and removed in 11; the DLA is supported up to 10.7, missing from 10.8 to 11.4.0 on Linux,
back in 11.4.1 on Jetson AGX Orin with JetPack 7.2.2 or later, and missing again from 11.5.0 (no JetPack
support). ONNX opset 17 is the highest every supported TensorRT parses, and the operators safe from 8.5 to 11
are listed in :data:`fa3d.export.onnx_check.TRT_SAFE_OPS`.
"""

from __future__ import annotations

from packaging.version import Version

#: The highest ONNX opset that TensorRT 8.5 to 11 all parse; the exporter emits it and the checks enforce it.
OPSET = 17
#: The oldest TensorRT fa3d builds engines for and runs them with (JetPack 5).
MIN_TENSORRT = Version("8.5")
#: From here weak typing (BuilderFlag.FP16/INT8) is deprecated: fa3d builds strongly typed networks (FP16 from an
#: FP16 ONNX, INT8 from the Q/DQ ONNX); TensorRT 11 has no other kind.
TRT_STRONGLY_TYPED = Version("10.12")
#: TensorRT versions [first, end) whose Linux/JetPack builds have no DLA, each with NVIDIA's reason.
TRT_NO_DLA: tuple[tuple[Version, Version, str], ...] = (
    (Version("10.8"), Version("11.4.1"), "TensorRT 10.7 was the last 10.x release with DLA support; 11.0 to 11.3 "
                                         "have none and 11.4.0 has it only on Windows on ARM"),
    (Version("11.5"), Version("11.6"), "TensorRT 11.5 does not support JetPack: Jetson stays on 11.4.1"),
)


def trt_dla_unsupported(version: Version) -> str | None:
    """Why TensorRT ``version`` has no DLA on Linux/JetPack, or None where it may have one (8.5 to 10.7: JetPack
    5 and 6; 11.4.x from 11.4.1: Jetson AGX Orin with JetPack 7.2.2 or later). Jetson Thor and desktop GPUs
    have no DLA at all: the builder's DLA core count says so on the device."""
    for first, end, why in TRT_NO_DLA:
        if first <= version < end:
            return why
    return None


#: The face detector used when none is named: the shipped BlazeFace CNN (every name: fa3d.runtime.detectors.registry).
DEFAULT_DETECTOR = "blazeface"
#: Video and live modes: a sweep of the frame for new faces at least every N frames (tracking fills the frames between).
DEFAULT_DET_EVERY = 10
#: Video and live modes: track at most this many faces.
DEFAULT_MAX_FACES = 4
#: Faces below this model confidence are not reported; in video mode their track is dropped and a search runs.
#: Chosen by measurement with the v4 models, whose confidence was trained on face-free crops (0.5 before): the
#: sample clip's 90 frames each with exactly one face, a face-free clip with a face in 0.7 % of frames, the
#: acceptance clips' faces found as often as with v3 (docs/detection-tracking.md, "Face or not"); the shipped v6h
#: checked at it: 90 / 90, 0.89 %, as many faces found (v6s: 90 / 90, 0.71 %).
DEFAULT_MIN_CONFIDENCE = 0.9
#: The most faces one call aligns (``FaceAligner.process(boxes=...)``, ``max_faces``, ``fa-run --max-faces``):
#: memory and time per call stay bounded (10,000 boxes took 4.3 GB and minutes before this cap).
MAX_FACES_PER_CALL = 256
#: Where the reported head pose comes from (``FaceAlignerOptions.pose_source``, the INT8 gate, ``fa-eval``): the
#: network's pose head, the rotation fitted to its 68 3D landmarks, or the chordal mean of the two.
POSE_SOURCES = ("head", "landmarks", "blend")
#: The fit: better than the head on every angle on aflw19k val (README, "The default model").
DEFAULT_POSE_SOURCE = "landmarks"
#: The largest image file fa3d decodes, in pixels (2**27, e.g. 16384 x 8192; a 12000 x 9000 photo passes): the size
#: is read from the file's header and a larger image is refused before decoding (fa3d.runtime.images), so memory
#: stays bounded whatever the file declares. A decoded image takes 3 bytes a pixel (403 MB at the limit).
MAX_IMAGE_PIXELS = 2**27
