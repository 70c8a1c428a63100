"""The running mode of a :class:`~fa3d.runtime.aligner.FaceAligner` (as MediaPipe's ``VisionTaskRunningMode``).

* ``IMAGE``: independent images, :meth:`FaceAligner.process` only.
* ``VIDEO``: the frames of one video or camera in order, :meth:`FaceAligner.process_video` only (timestamps
  must increase; faces are tracked); the caller waits for each result.
* ``LIVE_STREAM``: frames pushed by a camera callback, :meth:`FaceAligner.process_async` only: it returns at
  once; a worker thread tracks the faces and hands each result to ``result_callback``. Drop policy: while a
  frame is being processed, a newer frame replaces the one waiting (``dropped_frames`` counts them), so the
  results follow the camera instead of falling behind it.
"""

from __future__ import annotations

from enum import Enum


class RunningMode(str, Enum):
    IMAGE = "image"
    VIDEO = "video"
    LIVE_STREAM = "live_stream"

    @classmethod
    def coerce(cls, value: "RunningMode | str") -> "RunningMode":
        """A RunningMode from itself or its value (``"image"``, ``"video"``, ``"live_stream"``)."""
        if isinstance(value, cls):
            return value
        try:
            return cls(value)
        except ValueError:
            raise ValueError(f"mode must be one of {[m.value for m in cls]} (or a RunningMode), got {value!r}") \
                from None


#: the one public call of each mode, for the error messages
CALLS = {RunningMode.IMAGE: "process(frame, boxes=None)", RunningMode.VIDEO: "process_video(frame, timestamp_ms)",
         RunningMode.LIVE_STREAM: "process_async(frame, timestamp_ms)"}


def wrong_mode(call: str, mode: RunningMode) -> ValueError:
    """The error for calling ``call`` on an aligner in ``mode``."""
    return ValueError(f"{call}() is not for RunningMode.{mode.name}: this aligner was created with "
                      f"mode={mode.name}, whose call is {CALLS[mode]}; create it with the mode you need")
