"""fa-export's detector step: the face detector's network beside the model, and its FP16 engine on a GPU machine.

Every export folder gets the shipped BlazeFace network (``blazeface_short_range.onnx``, with its licence and
notice) and a detector sidecar (:mod:`fa3d.runtime.detector_engine`). Where TensorRT is, its FP16 engine
``blazeface_short_range.plan`` is built beside the model's engine (profile :data:`DETECTOR_BATCH`: the pyramid
sends its windows in batches), with the same version dispatch as the model: the FP16 builder flag before
TensorRT 10.12, an FP16 ONNX of the detector (converted and compared with the FP32 one) from 10.12 on.
``fa-run --engine`` then finds it beside the model's engine.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fa3d.runtime.atomic import atomic_path
from fa3d.runtime.default_model import asset_path
from fa3d.runtime.detector_engine import (DETECTOR_ENGINE, DETECTOR_NAME, DETECTOR_ONNX, DetectorSidecar,
                                          read_detector_sidecar, write_detector_sidecar)
from fa3d.runtime.metadata import sha256_file

from .trt_build import BatchProfile, BuildOptions, build_serialized, engine_description

#: the detector engine's batch profile: BlazeFace's pyramid sends up to 24 windows per frame, 16 at a time
DETECTOR_BATCH = BatchProfile(1, 16, 32)
FP16_ONNX = DETECTOR_NAME + ".fp16.onnx"
#: FP32 vs FP16 detector ONNX (ONNX Runtime): box regressors in input pixels (of 128), scores as logits
FP16_TOLERANCE = {"regressors": 0.5, "classificators": 0.1}
_EXTRA_FILES = ("LICENSE", "NOTICE")


class DetectorStepError(RuntimeError):
    """The detector's files could not be written or checked."""


@dataclass(frozen=True)
class DetectorEngine:
    path: Path
    precision: str
    source: Path
    seconds: float
    note: str


def write_detector_onnx(out_dir: Path) -> Path:
    """Copy the shipped BlazeFace ONNX (+ its licence and notice, ``blazeface_short_range.LICENSE`` / ``.NOTICE``)
    into ``out_dir`` and write its sidecar."""
    src = asset_path(f"detector/{DETECTOR_ONNX}")
    if not src.is_file():
        raise DetectorStepError(f"{src}: the shipped detector network is not in this installation; reinstall fa3d")
    out = Path(out_dir) / DETECTOR_ONNX
    if not (out.exists() and out.resolve() == src.resolve()):
        copies = [(DETECTOR_ONNX, DETECTOR_ONNX)] + [(n, f"{DETECTOR_NAME}.{n}") for n in _EXTRA_FILES]
        for name, dest in copies:  # the licence and notice travel with the network, named after it
            if (src.parent / name).is_file():
                with atomic_path(Path(out_dir) / dest) as tmp:
                    shutil.copyfile(src.parent / name, tmp)
    write_detector_sidecar(out, DetectorSidecar(format="onnx", precision="fp32", source_sha256=sha256_file(src),
                                                producer={"fa3d": "fa-export (shipped BlazeFace, see NOTICE)"}))
    return out


def _fp16_onnx(onnx_path: Path) -> Path:
    """The detector's FP16 ONNX (float32 I/O) beside it, compared with the FP32 one through Polygraphy."""
    import onnx

    from .compare import batches_of, compare_runners, onnxrt_runner
    from .fp16 import convert_to_fp16
    from .onnx_export import sanitize

    out = onnx_path.parent / FP16_ONNX
    half, _ = sanitize(convert_to_fp16(onnx.load(str(onnx_path))))
    with atomic_path(out) as tmp:
        onnx.save(half, str(tmp))
    side = read_detector_sidecar(onnx_path)
    x = np.random.default_rng(0).uniform(-1, 1, (8, *side.input_chw)).astype(np.float32)
    res = compare_runners(onnxrt_runner(onnx_path), onnxrt_runner(out), batches_of(x, (1, 8), source="8 noise inputs"),
                          tolerance=FP16_TOLERANCE)
    if not res.passed:
        out.unlink(missing_ok=True)
        raise DetectorStepError(f"the detector's FP16 ONNX is outside tolerance: {res.summary()}")
    write_detector_sidecar(out, side.with_(precision="fp16", source_sha256=sha256_file(onnx_path)))
    return out


def build_detector_engine(onnx_path: Path, trt_version: str, *, workspace_mb: int,
                          timing_cache: Path | None = None) -> DetectorEngine:
    """The detector's FP16 engine (+ sidecar) beside ``onnx_path`` (its FP32 ONNX)."""
    from packaging.version import Version

    from .trt_build import FIRST_STRONGLY_TYPED

    onnx_path = Path(onnx_path)
    side = read_detector_sidecar(onnx_path)
    note = "FP16 builder flag"
    source = onnx_path
    if Version(str(trt_version)) >= FIRST_STRONGLY_TYPED:  # strongly typed: FP16 from an FP16 ONNX
        source, note = _fp16_onnx(onnx_path), "from its FP16 ONNX (strongly typed)"
    source_side = read_detector_sidecar(source)
    options = BuildOptions(precision="fp16", batch=DETECTOR_BATCH, workspace_mb=workspace_mb,
                           timing_cache=timing_cache)
    built = build_serialized(source, options, onnx_precision=source_side.precision,
                             input_name=side.input_name, input_chw=side.input_chw)
    engine_path = onnx_path.parent / DETECTOR_ENGINE
    sidecar = side.with_(format="tensorrt", precision="fp16", source_sha256=sha256_file(source),
                         engine=engine_description(built.plan, built.options, side.input_chw[-1], side.input_name,
                                                   source))
    with atomic_path(engine_path) as tmp:
        with open(tmp, "wb") as f:
            f.write(built.data)
        write_detector_sidecar(engine_path, sidecar)
    return DetectorEngine(engine_path, "fp16", source, built.seconds, note)

