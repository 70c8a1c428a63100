"""The frame loop shared by fa-run and fa-bench: source -> detect/track -> crop -> infer -> results, timed.

Stages (seconds per frame): ``decode`` (getting the frame from the source), ``detect`` (detector or
tracker), ``preprocess``, ``infer``, ``postprocess`` (as :attr:`FaceAligner.last_timings`), and
``output`` (the caller's sink: drawing, writing, display). ``fps`` is frames / wall time of the loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np

from .aligner import STAGES, FaceAligner
from .cli_errors import deferred_signals
from .results import FaceResult
from .sources import Frame, FrameSource, SourceError
from .timing import summarize_ms

ALL_STAGES = ("decode",) + STAGES + ("output",)

Sink = Callable[[Frame, list[FaceResult]], bool | None]  # return False to stop


@dataclass
class PipelineReport:
    frames: int = 0
    faces: int = 0
    frames_with_face: int = 0
    wall_s: float = 0.0
    interrupted: bool = False
    stopped: bool = False
    times: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in ALL_STAGES})
    decode_failures: int = 0
    reconnects: int = 0
    skipped: int = 0  # frames read but not processed: too small, or refused by the aligner (see first_skip)
    first_skip: str = ""
    first_failure: str = ""  # why the first image of a folder that was not read was refused or did not decode

    @property
    def fps(self) -> float:
        return self.frames / self.wall_s if self.wall_s > 0 else 0.0

    def summary(self) -> dict:
        """Per stage median/p10/p90/mean in milliseconds, plus counts and fps (JSON-ready)."""
        stages = {}
        for s, v in self.times.items():
            stats = summarize_ms(np.asarray(v, np.float64) * 1000.0) if len(v) else None
            stages[s] = {k: x for k, x in stats.items() if k != "runs"} if stats else None
        return {"frames": self.frames, "faces": self.faces, "frames_with_face": self.frames_with_face,
                "decode_failures": self.decode_failures, "first_failure": self.first_failure,
                "skipped": self.skipped, "reconnects": self.reconnects,
                "wall_s": round(self.wall_s, 4), "fps": round(self.fps, 2), "interrupted": self.interrupted,
                "stages_ms": stages}

    def format_table(self, labels: dict[str, str] | None = None) -> str:
        """The stage table; ``labels`` renames stages (e.g. ``{"detect": "detect (tensorrt)"}``)."""
        s = self.summary()
        labels = labels or {}
        w = max([12] + [len(v) + 2 for v in labels.values()])
        lines = [f"frames {s['frames']} (with a face {s['frames_with_face']}, faces {s['faces']}, "
                 f"decode failures {s['decode_failures']}, skipped {s['skipped']}, reconnects {s['reconnects']}), "
                 f"wall {s['wall_s']:.2f} s, {s['fps']:.1f} fps" + (" [interrupted]" if s["interrupted"] else ""),
                 *([f"first image not read: {s['first_failure']}"] if s["first_failure"] else []),
                 f"{'stage':<{w}}{'median ms':>10}{'p10':>9}{'p90':>9}{'mean':>9}"]
        for name, st in s["stages_ms"].items():
            if st is not None:
                lines.append(f"{labels.get(name, name):<{w}}{st['median_ms']:>10.2f}{st['p10_ms']:>9.2f}{st['p90_ms']:>9.2f}"
                             f"{st['mean_ms']:>9.2f}")
        return "\n".join(lines)


def run_pipeline(aligner: FaceAligner, source: FrameSource, *, track: bool = True,
                 max_frames: int | None = None, sink: Sink | None = None) -> PipelineReport:
    """Run ``aligner`` over ``source``. Ctrl-C ends the loop and sets ``report.interrupted`` (no exception);
    the caller finalises its outputs. Ctrl-C, SIGTERM and SIGHUP wait while ``sink`` writes a frame (main thread),
    so every output holds the same frames and ``report.frames`` counts them. Raises :class:`SourceError` if no
    frame at all could be read."""
    rep = PipelineReport()
    it = iter(source)
    t_start = time.perf_counter()
    try:
        while max_frames is None or rep.frames < max_frames:
            t0 = time.perf_counter()
            frame = next(it, None)
            t1 = time.perf_counter()
            if frame is None:
                break
            try:
                faces = (aligner.process_video(frame.image, frame.timestamp_ms) if track
                         else aligner.process(frame.image))
            except (ValueError, cv2.error) as e:  # one bad frame (odd size, bad timestamp): skip and count it
                rep.skipped += 1
                rep.first_skip = rep.first_skip or f"frame {frame.index}: {' '.join(str(e).split())}"
                continue
            t2 = time.perf_counter()
            with deferred_signals():  # a frame reaches every output and the count, or none: a stop signal waits
                keep_going = sink(frame, faces) if sink is not None else None
                t3 = time.perf_counter()
                rep.frames += 1
                rep.faces += len(faces)
                rep.frames_with_face += bool(faces)
                rep.times["decode"].append(t1 - t0)
                for s in STAGES:
                    rep.times[s].append(aligner.last_timings[s])
                rep.times["output"].append(t3 - t2)
            if keep_going is False:
                rep.stopped = True
                break
    except KeyboardInterrupt:
        rep.interrupted = True
    rep.wall_s = time.perf_counter() - t_start
    rep.decode_failures = source.stats.decode_failures
    rep.first_failure = source.stats.first_failure
    rep.reconnects = source.stats.reconnects
    rep.skipped += source.stats.skipped
    if rep.frames == 0 and not rep.interrupted:
        first = f", {rep.first_failure}" if rep.first_failure else ""
        why = [f"{rep.decode_failures} failed to decode{first}"] if rep.decode_failures else []
        why += [f"{rep.skipped} skipped" + (f", {rep.first_skip}" if rep.first_skip else "")] if rep.skipped else []
        raise SourceError(f"{source.description}: no frame could be read" + (f" ({'; '.join(why)})" if why else ""))
    return rep
