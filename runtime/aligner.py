"""``FaceAligner``: the Python API for applications (in the spirit of MediaPipe's FaceLandmarker).

.. code-block:: python

    from fa3d.runtime import FaceAligner, FaceAlignerOptions, RunningMode

    with FaceAligner.from_artifact("model.onnx", FaceAlignerOptions(mode=RunningMode.VIDEO)) as aligner:
        for t_ms, frame in frames:                       # OpenCV BGR uint8 images
            for face in aligner.process_video(frame, t_ms):
                print(face.track_id, face.yaw_pitch_roll, face.landmarks[30])

Running modes (:class:`~fa3d.runtime.running_mode.RunningMode`, enforced as in MediaPipe: each mode has
its one call, the others are refused with a clear error):

* ``IMAGE``: :meth:`FaceAligner.process`: every call independent; the detector runs unless boxes are given.
* ``VIDEO``: :meth:`FaceAligner.process_video`: frames with increasing timestamps; faces are tracked with
  stable IDs, boxes come from the previous landmarks, optional One Euro smoothing.
* ``LIVE_STREAM``: :meth:`FaceAligner.process_async`: returns at once; a worker thread tracks as in VIDEO and
  calls ``options.result_callback(faces, frame, timestamp_ms)``; a frame that arrives while another waits
  replaces it (``dropped_frames``).

The model is named in one place: the ``path`` of :meth:`FaceAligner.from_artifact` (or the open backend
given to the constructor); the options say how to run it.

All faces of a frame go through the model in ONE batched inference.

Thread safety: an aligner holds one backend (one ONNX Runtime session or one TensorRT execution context)
and, in video mode, one tracker. Its methods may be called from any thread, but calls are serialised by
an internal lock; for parallel throughput create one aligner per thread (or per camera).
"""

from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .backends import Backend, open_backend
from .camera import DEFAULT_EYE_SPAN_M, CameraIntrinsics, solve_head_pose
from .default_model import default_model_path
from .detectors import DETECTOR_HELP, FaceDetector, as_detector, make_detector
from .policy import (DEFAULT_DET_EVERY, DEFAULT_DETECTOR, DEFAULT_MAX_FACES, DEFAULT_MIN_CONFIDENCE,
                     DEFAULT_POSE_SOURCE, MAX_FACES_PER_CALL, POSE_SOURCES)
from .pose import matrix_to_6d, matrix_to_euler, reported_rotation, rotation_from_6d
from .preprocess import prepare, rotation_to_image, to_image
from .live_stream import LatestFrameWorker, ResultCallback
from .results import FaceResult
from .running_mode import RunningMode, wrong_mode
from .schema import mean_shape
from .smoothing import OneEuroFilter, OneEuroOptions
from .track import FaceTracker, TrackerOptions

STAGES = ("detect", "preprocess", "infer", "postprocess")
#: faces cropped and inferred together; larger calls run in chunks of this size (bounded memory)
ALIGN_CHUNK = 32
DEVICES = ("cpu", "cuda", "tensorrt", "auto")


def _is_real(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _check_option_values(o: "FaceAlignerOptions") -> None:
    """Types and ranges of every option (the one place options are validated), one clear ValueError naming
    the first bad one."""
    def bad(name: str, want: str) -> ValueError:
        return ValueError(f"FaceAlignerOptions.{name} must be {want}, got {getattr(o, name)!r}")

    if o.device not in DEVICES:
        raise bad("device", f"one of {DEVICES}")
    if o.num_threads is not None and not (_is_int(o.num_threads) and o.num_threads >= 1):
        raise bad("num_threads", "an integer >= 1 or None")
    if not isinstance(o.detector, (str, os.PathLike)) or not str(o.detector):
        raise bad("detector", f"a detector: {DETECTOR_HELP}")
    if not (_is_int(o.det_every_n) and o.det_every_n >= 1):
        raise bad("det_every_n", "an integer >= 1")
    if not (_is_int(o.max_faces) and 1 <= o.max_faces <= MAX_FACES_PER_CALL):
        raise bad("max_faces", f"an integer in [1, {MAX_FACES_PER_CALL}]")
    if not (_is_real(o.min_confidence) and 0.0 <= o.min_confidence <= 1.0):
        raise bad("min_confidence", "a number in [0, 1]")
    if not isinstance(o.smoothing, OneEuroOptions):
        raise bad("smoothing", "a OneEuroOptions")
    if o.intrinsics is not None and not isinstance(o.intrinsics, CameraIntrinsics):
        raise bad("intrinsics", "a CameraIntrinsics or None")
    if o.fov_deg is not None and not (_is_real(o.fov_deg) and 1.0 < o.fov_deg < 179.0):
        raise bad("fov_deg", "a number of degrees in (1, 179) or None")
    if o.result_callback is not None and not callable(o.result_callback):
        raise bad("result_callback", "a callable or None")
    if not (_is_real(o.eye_span_m) and math.isfinite(o.eye_span_m) and o.eye_span_m > 0):
        raise bad("eye_span_m", "a positive number of metres")
    if o.pose_source not in POSE_SOURCES:
        raise bad("pose_source", f"one of {POSE_SOURCES}")
    if (o.mode is RunningMode.LIVE_STREAM) != (o.result_callback is not None):
        raise ValueError("a result_callback is needed in RunningMode.LIVE_STREAM and only there")


def _scrub_nonfinite(out: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Faces (rows) whose outputs hold NaN or inf, and the outputs with those rows replaced by harmless values
    (the mean shape, the identity) so that post-processing cannot fail on them; the caller drops them."""
    bad = np.zeros(len(out["landmarks"]), bool)
    for a in out.values():
        bad |= ~np.isfinite(a.reshape(len(a), -1)).all(1)
    if not bad.any():
        return out, bad
    out = {k: v.copy() for k, v in out.items()}
    size = out["landmarks"].shape[1]
    template = np.asarray(mean_shape(), np.float32)[:size] * np.array([1.0, -1.0, 1.0], np.float32)
    out["landmarks"][bad] = template * 10.0 + 32.0
    out["rotation"][bad] = np.eye(3, dtype=np.float32)
    out["dense"][bad] = 0.0
    out["confidence"][bad] = 0.0
    return out, bad


def check_boxes(boxes) -> np.ndarray:
    """``boxes`` as a (B, 4) float64 array of finite x1, y1, x2, y2 with x2 > x1 and y2 > y1, at most
    :data:`~fa3d.runtime.policy.MAX_FACES_PER_CALL` of them; a ValueError that says what is wrong otherwise."""
    try:
        b = np.asarray(boxes, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError("boxes must be a (B, 4) array of numbers x1, y1, x2, y2") from None
    if b.ndim == 1 and b.shape[0] == 4:
        b = b[None]
    if b.ndim != 2 or b.shape[1] != 4:
        raise ValueError(f"boxes must have shape (B, 4) (x1, y1, x2, y2), got {b.shape}")
    if len(b) > MAX_FACES_PER_CALL:
        raise ValueError(f"{len(b)} boxes in one call; at most {MAX_FACES_PER_CALL} (split the call)")
    if not np.isfinite(b).all():
        raise ValueError("boxes hold NaN or infinite values")
    if len(b) and ((b[:, 2] <= b[:, 0]) | (b[:, 3] <= b[:, 1])).any():
        raise ValueError("every box needs x2 > x1 and y2 > y1 (x1, y1, x2, y2 order)")
    return b


def check_timestamp(timestamp_ms) -> float:
    """A finite, non-negative timestamp in milliseconds, or a ValueError (NaN would poison smoothing)."""
    if not _is_real(timestamp_ms) or not math.isfinite(timestamp_ms) or timestamp_ms < 0:
        raise ValueError(f"timestamp_ms must be a finite number >= 0 (milliseconds), got {timestamp_ms!r}")
    return float(timestamp_ms)


@dataclass(frozen=True)
class FaceAlignerOptions:
    """How a FaceAligner runs (the model itself is named by :meth:`FaceAligner.from_artifact`)."""

    device: str = "cpu"  # ONNX Runtime: cpu | cuda | tensorrt | auto; engines always run on the GPU
    num_threads: int | None = None  # ONNX Runtime intra-op threads (None = its default)
    mode: RunningMode = RunningMode.IMAGE  # a RunningMode or its value ("image", "video", "live_stream")
    detector: str = DEFAULT_DETECTOR  # a name or a detector file (fa3d.runtime.detectors.registry)
    det_every_n: int = DEFAULT_DET_EVERY  # video: a sweep of the frame for new faces at least every N frames
    min_confidence: float = DEFAULT_MIN_CONFIDENCE  # faces below it are not reported; video: they trigger detection
    max_faces: int = DEFAULT_MAX_FACES
    smoothing: OneEuroOptions = field(default_factory=OneEuroOptions)  # off by default
    intrinsics: CameraIntrinsics | None = None  # enables head_pose_cam (PnP)
    fov_deg: float | None = None  # horizontal FOV guess for intrinsics when none are given
    eye_span_m: float = DEFAULT_EYE_SPAN_M
    pose_source: str = DEFAULT_POSE_SOURCE  # head | landmarks | blend (see POSE_SOURCES)
    result_callback: ResultCallback | None = None  # LIVE_STREAM: called with (faces, frame_bgr, timestamp_ms)

    def __post_init__(self) -> None:
        object.__setattr__(self, "mode", RunningMode.coerce(self.mode))
        _check_option_values(self)


class _TrackSmoother:
    def __init__(self, options: OneEuroOptions) -> None:
        self.lm, self.dense, self.rot = (OneEuroFilter(options), OneEuroFilter(options), OneEuroFilter(options))

    def __call__(self, lm, dense, rot6, t_s):
        return self.lm(lm, t_s), self.dense(dense, t_s), self.rot(rot6, t_s)


class FaceAligner:
    def __init__(self, backend: Backend, options: FaceAlignerOptions = FaceAlignerOptions(),
                 detector: FaceDetector | None = None) -> None:
        """Wrap an open backend. ``detector`` overrides ``options.detector``: a
        :class:`~fa3d.runtime.detectors.FaceDetector`, or any object with ``detect(image) -> Detections``."""
        self.backend = backend
        self.options = options
        self._detector = None if detector is None else as_detector(detector)
        self._lock = threading.Lock()
        self._tracker: FaceTracker | None = None
        self._smoothers: dict[int, _TrackSmoother] = {}
        self._last_ts: float | None = None
        self._last_eff: float | None = None
        self.last_timings: dict[str, float] = dict.fromkeys(STAGES, 0.0)  # seconds, of the latest call
        self._closed = False
        self._closing = False  # close() has begun: no new call is accepted
        self._frame_shape: tuple[int, int] | None = None  # video: the size of the previous frame
        #: faces whose model outputs were NaN or infinite: dropped (never reported), counted here
        self.nonfinite_faces = 0
        self._worker: LatestFrameWorker | None = None

    @classmethod
    def from_artifact(cls, path: str | os.PathLike | None = None,
                      options: FaceAlignerOptions | None = None, detector: FaceDetector | None = None) -> "FaceAligner":
        """Open an ONNX file or TensorRT engine (its type picks the backend); None = the shipped default model.
        ``detector`` overrides ``options.detector`` as in the constructor."""
        options = options or FaceAlignerOptions()
        if path is None:
            path = default_model_path()
        backend = open_backend(Path(path), device=options.device, num_threads=options.num_threads)
        return cls(backend, options, detector)

    @property
    def detector(self) -> FaceDetector:
        if self._detector is None:
            self._detector = as_detector(make_detector(self.options.detector))
        return self._detector

    # ------------------------------------------------------------------ public calls
    def process(self, frame_bgr: np.ndarray, boxes: np.ndarray | None = None) -> list[FaceResult]:
        """Faces in one image. ``boxes`` (B, 4): TIGHT face boxes x1, y1, x2, y2 used as they are (no
        detection, no confidence filtering); without them the detector finds up to ``max_faces`` faces and
        those below ``min_confidence`` are dropped."""
        with self._lock:
            self._check_open()
            self._check_mode("process", RunningMode.IMAGE)
            self._check_frame(frame_bgr)
            timings = dict.fromkeys(STAGES, 0.0)
            if boxes is None:
                t0 = time.perf_counter()
                dets = self.detector.detect(frame_bgr)
                timings["detect"] = time.perf_counter() - t0
                b = np.asarray(dets.boxes, np.float64).reshape(-1, 4)[: self.options.max_faces]
                faces, _ = self._align(frame_bgr, b, [None] * len(b), timings)
                faces = [f for f in faces if f.confidence >= self.options.min_confidence]
            else:
                b = check_boxes(boxes)
                faces, _ = self._align(frame_bgr, b, [None] * len(b), timings)
                faces = [f for f in faces if np.isfinite(f.confidence)]  # the model gave NaN/inf for these
            self.last_timings = timings
            return faces

    def process_video(self, frame_bgr: np.ndarray, timestamp_ms: float) -> list[FaceResult]:
        """Faces in the next frame of a video, tracked (``track_id`` set).

        Timestamps must not go back. A timestamp equal to the previous one (a coarse camera clock) is
        accepted: the frame is aligned and tracked like any other, and smoothing treats it as 1 ms later
        (the smallest step a millisecond clock can hide). An earlier timestamp raises ValueError."""
        with self._lock:
            self._check_open()
            self._check_mode("process_video", RunningMode.VIDEO)
            self._check_frame(frame_bgr)
            t_eff = self._check_timestamp(timestamp_ms)
            return self._tracked(frame_bgr, t_eff)

    def process_async(self, frame_bgr: np.ndarray, timestamp_ms: float) -> float:
        """LIVE_STREAM: hand a frame to the worker and return the timestamp (ms) that ``options.result_callback``
        will get with its faces (``timestamp_ms``, or 1 ms after the previous frame's when it repeats it).

        The frame is COPIED before this returns: a camera loop may refill the same buffer at once (what
        OpenCV's ``read(image)`` and most capture APIs do), and the callback gets the faces of the frame that
        was submitted, with that frame. Timestamps as for :meth:`process_video`. A frame that arrives while
        another still waits replaces it (the drop policy; ``dropped_frames`` counts them). An exception of the
        worker (or of the callback) is raised by the next call. Inside ``result_callback``, calls that wait
        for the worker (:meth:`wait_idle`, :meth:`close`) raise RuntimeError: they would wait for themselves."""
        with self._lock:
            self._check_open()
            self._check_mode("process_async", RunningMode.LIVE_STREAM)
            self._check_frame(frame_bgr)
            t_eff = self._check_timestamp(timestamp_ms)
            if self._worker is None:
                self._worker = LatestFrameWorker(self._process_locked, self.options.result_callback)
            worker = self._worker
        worker.submit(np.array(frame_bgr, copy=True), t_eff)  # the worker's own copy: the caller owns its buffer
        return t_eff

    @property
    def dropped_frames(self) -> int:
        """LIVE_STREAM: frames replaced by a newer one before the worker got to them."""
        return self._worker.dropped if self._worker is not None else 0

    def wait_idle(self, timeout: float | None = None) -> bool:
        """LIVE_STREAM: block until every accepted frame is processed (True) or ``timeout`` s pass (False).
        Inside ``result_callback`` it raises RuntimeError (it would wait for itself)."""
        worker = self._worker
        return worker.wait_idle(timeout) if worker is not None else True

    def _process_locked(self, frame_bgr: np.ndarray, timestamp_ms: float) -> list[FaceResult]:
        with self._lock:
            if self._closed:  # frames accepted before close() are still processed while it waits for them
                raise RuntimeError("this FaceAligner is closed")
            return self._tracked(frame_bgr, timestamp_ms)

    def _tracked(self, frame_bgr: np.ndarray, timestamp_ms: float) -> list[FaceResult]:
        """Track and align one frame (the lock is held by the caller)."""
        if self._tracker is None:
            o = self.options
            self._tracker = FaceTracker(self.detector, TrackerOptions(
                det_every_n=o.det_every_n, min_confidence=o.min_confidence, max_faces=o.max_faces))
        shape = (int(frame_bgr.shape[0]), int(frame_bgr.shape[1]))
        if self._frame_shape is not None and shape != self._frame_shape:
            # another frame size: the tracks' boxes are scaled to it and confirmed by a detection on this frame;
            # smoothing restarts (it would blend pixel positions of two sizes)
            self._tracker.frame_resized(self._frame_shape, shape)
            self._smoothers.clear()
        self._frame_shape = shape
        timings = dict.fromkeys(STAGES, 0.0)
        t0 = time.perf_counter()
        boxes, ids, _ = self._tracker.boxes_for_frame(frame_bgr)
        timings["detect"] = time.perf_counter() - t0
        faces, raw_landmarks = self._align(frame_bgr, boxes, ids, timings, timestamp_s=timestamp_ms / 1000.0)
        # the next boxes come from the unsmoothed landmarks: smoothing must not make the crop lag
        self._tracker.update(raw_landmarks, np.array([f.confidence for f in faces]))
        live = set(self._tracker.track_ids)
        for tid in [k for k in self._smoothers if k not in live]:
            del self._smoothers[tid]
        self.last_timings = timings
        return [f for f in faces if f.confidence >= self.options.min_confidence]

    def reset(self) -> None:
        """Forget tracks, smoothing state and the last timestamp (e.g. when the video source changes)."""
        with self._lock:
            self._tracker = None
            self._smoothers.clear()
            self._last_ts = self._last_eff = None
            self._frame_shape = None

    def close(self) -> None:
        """Finish LIVE_STREAM work (frames already accepted), stop the worker thread (it has ended when this
        returns, whatever other thread was submitting a frame meanwhile), then release the backend. Inside
        ``result_callback`` it raises RuntimeError: it would wait for the callback that called it."""
        with self._lock:  # from here on no call starts a worker or hands it a frame
            if self._worker is not None:
                self._worker.refuse_waiting_here("close()")
            self._closing = True
            worker, self._worker = self._worker, None
        try:
            if worker is not None:
                worker.close()  # raises a kept worker error, after the backend is released below
        finally:
            with self._lock:
                if not self._closed:
                    self.backend.close()
                    self._closed = True

    def __enter__(self) -> "FaceAligner":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ internals
    def _check_open(self) -> None:
        if self._closed or self._closing:
            raise RuntimeError("this FaceAligner is closed")

    def _check_mode(self, call: str, mode: RunningMode) -> None:
        if self.options.mode is not mode:
            raise wrong_mode(call, self.options.mode)

    def _check_timestamp(self, timestamp_ms: float) -> float:
        """Refuse a bad timestamp (NaN / inf / negative) or one that goes back, before any state changes;
        return the strictly increasing time (ms) used for smoothing (a repeated timestamp counts 1 ms later)."""
        timestamp_ms = check_timestamp(timestamp_ms)
        if self._last_ts is not None and timestamp_ms < self._last_ts:
            raise ValueError(f"timestamps must not go back: got {timestamp_ms} ms after {self._last_ts} ms "
                             "(call reset() when the source restarts)")
        t_eff = float(timestamp_ms)
        if self._last_eff is not None and t_eff <= self._last_eff:
            t_eff = self._last_eff + 1.0
        self._last_ts, self._last_eff = float(timestamp_ms), t_eff
        return t_eff

    @staticmethod
    def _check_frame(frame: np.ndarray) -> None:
        if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            got = (f"{frame.dtype} array of shape {frame.shape}" if isinstance(frame, np.ndarray)
                   else type(frame).__name__)
            raise ValueError(f"expected an OpenCV BGR frame: a uint8 numpy array (H, W, 3), got {got} "
                             "(convert with cv2.cvtColor / astype(np.uint8))")
        if frame.shape[0] == 0 or frame.shape[1] == 0:
            raise ValueError(f"the frame is empty ({frame.shape[1]}x{frame.shape[0]} pixels)")

    def intrinsics_for(self, frame: np.ndarray) -> CameraIntrinsics | None:
        """The intrinsics head poses are solved with for ``frame``: the given ones, a guess from ``fov_deg``
        for this frame's size, or None."""
        return self._intrinsics(frame)

    def _intrinsics(self, frame: np.ndarray) -> CameraIntrinsics | None:
        o = self.options
        if o.intrinsics is not None:
            return o.intrinsics
        if o.fov_deg is not None:
            return CameraIntrinsics.from_fov(frame.shape[1], frame.shape[0], o.fov_deg)
        return None

    def _align(self, frame: np.ndarray, boxes: np.ndarray, ids: list, timings: dict,
               timestamp_s: float | None = None) -> tuple[list[FaceResult], np.ndarray]:
        """Results, and the raw (unsmoothed) image landmarks (B, 68, 3) for the tracker."""
        if len(boxes) == 0:
            return [], np.zeros((0, 68, 3))
        cfg = self.backend.metadata.preprocess
        t0 = time.perf_counter()
        t1 = t0
        parts, transforms = [], []
        for i in range(0, len(boxes), ALIGN_CHUNK):  # bounded memory: crops of ALIGN_CHUNK faces at a time
            ta = time.perf_counter()
            prep = prepare(frame, boxes[i:i + ALIGN_CHUNK], cfg)
            t1 += time.perf_counter() - ta
            parts.append(self.backend.infer(prep.inputs))
            transforms.append(prep.transforms)
        out = parts[0] if len(parts) == 1 else {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        m = transforms[0] if len(transforms) == 1 else np.concatenate(transforms)
        out, bad = _scrub_nonfinite(out)
        self.nonfinite_faces += int(bad.sum())
        t2 = time.perf_counter()
        lm = to_image(out["landmarks"], m)
        dense = to_image(out["dense"], m) if out["dense"].shape[1] else np.zeros((len(m), 0, 3))
        rot = reported_rotation(self.options.pose_source, rotation_to_image(out["rotation"], m), lm)
        conf = np.where(bad, np.nan, out["confidence"].reshape(-1))  # NaN: never reported, a miss for the tracker
        smooth = self.options.smoothing.enabled and timestamp_s is not None
        intr = self._intrinsics(frame)
        faces = []
        for i in range(len(boxes)):
            li, di, ri = lm[i], dense[i], rot[i]
            if smooth and ids[i] is not None and not bad[i]:
                sm = self._smoothers.setdefault(ids[i], _TrackSmoother(self.options.smoothing))
                li, di, r6 = sm(li, di, matrix_to_6d(ri), timestamp_s)
                ri = rotation_from_6d(r6)
            ypr = matrix_to_euler(ri)
            pose_cam = None
            if intr is not None:
                try:
                    pose_cam = solve_head_pose(li, intr, self.options.eye_span_m)
                except ValueError:
                    pose_cam = None
            faces.append(FaceResult(landmarks=li.astype(np.float32), dense=di.astype(np.float32),
                                    yaw_pitch_roll=ypr.astype(np.float32), rotation=ri.astype(np.float32),
                                    confidence=float(conf[i]), box=np.asarray(boxes[i], np.float32),
                                    track_id=ids[i], head_pose_cam=pose_cam))
        t3 = time.perf_counter()
        timings["preprocess"] += t1 - t0
        timings["infer"] += t2 - t1
        timings["postprocess"] += t3 - t2
        return faces, lm


__all__ = ["MAX_FACES_PER_CALL", "FaceAligner", "FaceAlignerOptions", "POSE_SOURCES", "RunningMode", "STAGES",
           "check_boxes", "check_timestamp"]
