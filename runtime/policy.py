"""The version policy and the shared defaults: the one place that states them.

Everything else imports these names; change a value here and every layer follows. Versions are
:class:`packaging.version.Version` objects and are compared as such, never as strings.

The TensorRT facts behind the values (checked 2026-11): JetPack 5 ships TensorRT 8.5, JetPack 6 10.3,
JetPack 7.2+ 11; TensorRT 11 removed the implicit INT8 calibrator and the FP16/INT8 builder flags, so INT8
comes from explicit Q/DQ nodes. ONNX opset 17 is the highest every one of them parses, and the operators
safe from 8.5 to 11 are listed in :data:`fa3d.export.onnx_check.TRT_SAFE_OPS`.
"""

from __future__ import annotations

from packaging.version import Version

#: The highest ONNX opset that TensorRT 8.5 to 11 all parse; the exporter emits it and the checks enforce it.
OPSET = 17
#: The oldest TensorRT fa3d builds engines for and runs them with (JetPack 5).
MIN_TENSORRT = Version("8.5")
#: From here weak typing (BuilderFlag.FP16/INT8, the implicit calibrator) is deprecated: strongly typed builds.
TRT_STRONGLY_TYPED = Version("10.12")
#: From here there are no FP16/INT8 builder flags and no IInt8Calibrator: networks are always strongly typed.
TRT_STRONGLY_TYPED_ONLY = Version("11")
#: TensorRT [first, last) without DLA support: 11.0 to 11.3.
TRT_NO_DLA = (Version("11.0"), Version("11.4"))

#: The face detector used when none is named: the shipped BlazeFace CNN (every name: fa3d.runtime.detectors.registry).
DEFAULT_DETECTOR = "blazeface"
#: Video and live modes: a sweep of the frame for new faces at least every N frames (tracking fills the frames between).
DEFAULT_DET_EVERY = 10
#: Video and live modes: track at most this many faces.
DEFAULT_MAX_FACES = 4
#: Faces below this model confidence are not reported; in video mode they trigger detection.
DEFAULT_MIN_CONFIDENCE = 0.5
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
