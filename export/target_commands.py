"""The commands to run on the target machine (a Jetson or GPU server) when this one has no TensorRT.

Engines are not portable across GPUs and TensorRT versions: export on a workstation, copy the folder,
build on the device. Both the ``fa-export --from-onnx`` line (which does the version dispatch itself)
and the equivalent ``trtexec`` lines (one per TensorRT family: 8.5 to 10.11 build weakly typed with
``--fp16``/``--int8``; 10.12 to 11.x build strongly typed, ``--stronglyTyped``, from the FP16 or Q/DQ
ONNX, since 10.12 deprecated and 11 removed ``--fp16`` and ``--int8``; 11.x accepts ``--stronglyTyped``
as a no-op) are printed by ``fa-export``.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from .defaults import ENGINE_NAME, FP16_ONNX_NAME, INT8_ONNX_NAME, ONNX_NAME, TIMING_CACHE_NAME
from .trt_build import BatchProfile


@dataclass(frozen=True)
class TargetCommand:
    label: str
    command: str


def _q(p: Path | str) -> str:
    return shlex.quote(str(p))


def from_onnx_command(src: Path, precision: str, batch: BatchProfile, workspace_mb: int,
                      dla_core: int | None) -> str:
    """``fa-export --from-onnx SRC``: it picks flags or the FP16/Q-DQ ONNX for the installed TensorRT."""
    parts = ["fa-export", "--from-onnx", _q(src)]
    if precision == "fp16":
        parts.append("--fp16")
    elif precision == "int8":
        parts.append("--int8")
    parts += ["--batch", str(batch), "--workspace", str(workspace_mb)]
    if dla_core is not None:
        parts += ["--dla-core", str(dla_core)]
    return " ".join(parts)


def trtexec_commands(out_dir: Path, input_size: int, precision: str, batch: BatchProfile, workspace_mb: int,
                     dla_core: int | None, fp16_only: bool = False) -> list[TargetCommand]:
    """Equivalent trtexec lines: one for TensorRT 8.5 to 10.x, one for 11.x (where they differ).

    ``fp16_only``: the folder holds only the FP16 ONNX (a build from ``model.fp16.onnx``).
    """
    mn, opt, mx = (f"input:{b}x3x{input_size}x{input_size}" for b in (batch.min, batch.opt, batch.max))
    common = [f"--saveEngine={_q(out_dir / ENGINE_NAME)}", f"--minShapes={mn}", f"--optShapes={opt}",
              f"--maxShapes={mx}", f"--memPoolSize=workspace:{workspace_mb}",
              f"--timingCacheFile={_q(out_dir / TIMING_CACHE_NAME)}"]
    if dla_core is not None:
        common += [f"--useDLACore={dla_core}", "--allowGPUFallback"]

    def line(onnx_name: str, flags: list[str]) -> str:
        return " ".join(["trtexec", f"--onnx={_q(out_dir / onnx_name)}", *flags, *common])

    if precision == "fp32":
        return [TargetCommand("TensorRT 8.5 to 11.x", line(ONNX_NAME, []))]
    if precision == "fp16":
        return [TargetCommand("TensorRT 8.5 to 10.11", line(FP16_ONNX_NAME if fp16_only else ONNX_NAME, ["--fp16"])),
                TargetCommand("TensorRT 10.12 to 11.x (strongly typed: the FP16 ONNX)",
                              line(FP16_ONNX_NAME, ["--stronglyTyped"]))]
    return [TargetCommand("TensorRT 8.5 to 10.11", line(INT8_ONNX_NAME, ["--int8", "--fp16"])),
            TargetCommand("TensorRT 10.12 to 11.x (strongly typed: the Q/DQ ONNX)",
                          line(INT8_ONNX_NAME, ["--stronglyTyped"]))]
