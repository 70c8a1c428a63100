"""The ``--int8`` step of fa-export: the shipped INT8 file of the default model, or a calibration of yours.

* The default model (no checkpoint, no ``--calib``; or ``--from-onnx`` of a file identical to the shipped
  ``model.onnx``): its INT8 Q/DQ ONNX ships in the package, calibrated and gated at development time on
  labelled faces (``python -m tools.ship_int8``). It is *verified*, not remade: the SHA-256 of the
  FP32 ONNX in its sidecar must match, and the Q/DQ lint must pass. No face image ships and no torch is needed.
* Any other model: calibration data from the user (``--calib``: a fa-calib set, images or a video) is
  required, and the gate runs on ``--val`` (labelled: accuracy loss) or on held-out calibration faces
  (unlabelled: deviation from FP32), see :mod:`fa3d.calibration.gate`.
* A ``model.int8.onnx`` already beside an FP32 ONNX (``--from-onnx``) whose sidecar names that FP32
  file's hash is verified and reused unless ``--calib`` asks for a new calibration.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from fa3d.runtime.atomic import atomic_path
from fa3d.runtime.default_model import asset_path
from fa3d.runtime.metadata import MetadataError, read_sidecar, sha256_file, sidecar_path

from .defaults import INT8_ONNX_NAME, INT8_REPORT_NAME, ONNX_NAME


class Int8StepError(RuntimeError):
    """The INT8 step failed; ``kind`` is "usage", "check" or "gate" (the pipeline maps it to an exit code)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def shipped_files() -> tuple[Path, Path]:
    """(the shipped FP32 ONNX, the shipped INT8 Q/DQ ONNX) of the default model (they may not exist)."""
    d = asset_path("default")
    return d / ONNX_NAME, d / INT8_ONNX_NAME


def copy_model(src: Path, dst: Path) -> None:
    """Copy a model and its sidecar (atomically each), unless ``dst`` is ``src``."""
    if dst.exists() and dst.resolve() == src.resolve():
        return
    for a, b in ((src, dst), (sidecar_path(src), sidecar_path(dst))):
        with atomic_path(b) as tmp:
            shutil.copyfile(a, tmp)


def verify_int8(int8_onnx: Path, fp32_onnx: Path) -> dict:
    """Check that ``int8_onnx`` was made from ``fp32_onnx`` (hash) and passes the Q/DQ lint; its ``int8`` block.

    The INT8 file's own hash, recorded when it was made, linted and gated (``int8_sha256``), is checked
    always: a weight changed after gating passes the lint but was never gated. Without the onnx package (the
    base install), that hash stands in for the lint: an unchanged file passed the lint then.
    """
    try:
        meta = read_sidecar(int8_onnx)
    except MetadataError as e:
        raise Int8StepError("check", str(e)) from None
    if meta.precision != "int8":
        raise Int8StepError("check", f"{int8_onnx}: its sidecar says precision {meta.precision!r}, not int8")
    fp32_hash = sha256_file(fp32_onnx)
    if meta.source_sha256 != fp32_hash:
        raise Int8StepError("check", f"{int8_onnx} was made from another FP32 model (SHA-256 {meta.source_sha256} "
                            f"in its sidecar, {fp32_hash} for {fp32_onnx}); recalibrate: fa-export --int8 --calib "
                            "YOUR_FACES (maintainers: python -m tools.ship_int8)")
    from fa3d.calibration.lint import QdqLintError, lint_qdq

    block = dict(meta.model.get("int8") or {})
    recorded = block.get("int8_sha256")
    if recorded is not None and recorded != sha256_file(int8_onnx):  # checked always, onnx installed or not
        raise Int8StepError("check", f"{int8_onnx} changed since it was made, linted and gated (its SHA-256 is not "
                            f"the int8_sha256 {recorded} in its sidecar): a changed weight passes the Q/DQ lint "
                            "but not the accuracy gate; recalibrate: fa-export --int8 --calib YOUR_FACES "
                            "(maintainers: python -m tools.ship_int8)")
    block["checked"] = "Q/DQ lint passed" + (", unchanged since it was gated (SHA-256)" if recorded else "")
    try:
        lint_qdq(int8_onnx)
    except QdqLintError as e:
        raise Int8StepError("check", f"{int8_onnx}: Q/DQ lint failed: {e}") from None
    except ImportError:
        if recorded is None:
            raise Int8StepError("usage", f"{int8_onnx} records no SHA-256 of its own; checking it needs the onnx "
                                "package: pip install 'fa3d[export]'") from None
        block["checked"] = "unchanged since its Q/DQ lint (SHA-256; no onnx package here to re-run the lint)"
    return block


def _describe(block: dict, what: str) -> str:
    from fa3d.calibration.int8 import gate_summary

    lines = [what]
    if block.get("gate"):
        lines.append(gate_summary(block["gate"]))
        rec = block.get("recipe", {})
        lines.append(f"calibrated on {rec.get('calibration', {}).get('count')} faces "
                     f"({rec.get('calibration', {}).get('source')}), gated on "
                     f"{rec.get('validation', {}).get('count')} faces ({rec.get('validation', {}).get('source')}); "
                     f"layers kept in float: {rec.get('excluded_layers') or 'none'}")
    return "\n".join(lines)


def use_shipped(out_dir: Path) -> tuple[Path, str]:
    """Copy the default model's shipped FP32 and INT8 ONNX into ``out_dir`` after verifying them."""
    fp32, int8 = shipped_files()
    if not fp32.is_file() or not int8.is_file():
        raise Int8StepError("usage", f"this installation has no shipped INT8 model ({int8} is missing); give your "
                            "calibration faces: fa-export --int8 --calib FRAMES (a fa-calib .npz, images or a video)")
    block = verify_int8(int8, fp32)
    copy_model(fp32, out_dir / ONNX_NAME)
    copy_model(int8, out_dir / INT8_ONNX_NAME)
    return out_dir / ONNX_NAME, _describe(block, f"the default model's shipped INT8 Q/DQ ONNX, verified (made from "
                                          f"this FP32 ONNX, {block['checked']}), copied to {out_dir / INT8_ONNX_NAME}")


def is_shipped_fp32(onnx_path: Path) -> bool:
    fp32, int8 = shipped_files()
    return fp32.is_file() and int8.is_file() and sha256_file(onnx_path) == sha256_file(fp32)


def int8_for(onnx_path: Path, *, calib: Path | None, val: Path | None, method: str, force: bool,
             progress: bool = True, log: Callable[[str], None] = print) -> tuple[str, bool]:
    """Make or verify ``model.int8.onnx`` beside the FP32 ``onnx_path``: (message, gate passed)."""
    out = onnx_path.parent / INT8_ONNX_NAME
    if calib is None:
        if out.is_file():
            block = verify_int8(out, onnx_path)
            return _describe(block, f"reusing {out}: made from this FP32 ONNX, {block['checked']}"), True
        if is_shipped_fp32(onnx_path):
            block = verify_int8(shipped_files()[1], onnx_path)  # verified before it is copied
            copy_model(shipped_files()[1], out)
            return _describe(block, f"the default model's shipped INT8 Q/DQ ONNX, verified (made from this FP32 ONNX, "
                                    f"{block['checked']}), copied to {out}"), True
    from fa3d.calibration.calibset import CalibrationSetError
    from fa3d.calibration.int8 import CalibrationRequired, make_int8, make_int8_cli_summary

    try:
        res = make_int8(onnx_path, out, calib=calib, val=val, method=method, force=force,
                        report_path=onnx_path.parent / INT8_REPORT_NAME, progress=progress)
    except CalibrationRequired as e:
        raise Int8StepError("usage", f"{e}. This model ({onnx_path}) is not the shipped default model") from None
    except (CalibrationSetError, ValueError, FileNotFoundError, RuntimeError) as e:
        raise Int8StepError("usage", f"INT8 calibration: {e}") from None
    except ImportError as e:  # the base install: no onnx (ONNX Runtime's quantization tools need it)
        raise Int8StepError("usage", f"INT8 calibration needs the [export] extra ({e}): pip install "
                            "'fa3d[export]'") from None
    if not res.passed and not force:
        raise Int8StepError("gate", make_int8_cli_summary(res) + f"\nINT8 accuracy gate failed (report "
                            f"{onnx_path.parent / INT8_REPORT_NAME}); no engine built; --force builds it anyway")
    return make_int8_cli_summary(res), res.passed
