"""Make a trained checkpoint the package's shipped default model (a maintainers' tool).

``python -m tools.ship_default runs/default/best.pt`` writes:

* into ``fa3d/export/assets/default/``: ``model.pt``, the weights-only checkpoint, weights stored as float16
  (the model computes in float32); only fa-export reads it, so the runtime package does not carry it;
* into ``fa3d/runtime/assets/default/``: ``model.onnx`` + ``model.onnx.json``, its ONNX export, made by the
  fa-export pipeline from that very ``model.pt`` (opset 17, checked, parity-tested against PyTorch), so the
  two files agree; and ``model.int8.onnx`` + ``model.int8.onnx.json``, its INT8 Q/DQ ONNX, calibrated and
  gated on labelled aflw19k faces by :mod:`.ship_int8` (``--data``; about 1.5 min). Without the data (or
  with ``--no-int8``) the stale INT8 file of the previous model is removed: ``fa-export --int8`` then asks
  for ``--calib``.

Everything is first built in a temporary folder beside the destination and moved in at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

from fa3d.runtime.default_model import asset_path

from fa3d.export.defaults import INT8_ONNX_NAME, ONNX_NAME, export_asset_path
from fa3d.export.steps import ExportFailure, ExportRequest, run_export

CHECKPOINT = "model.pt"
SHIPPED = (CHECKPOINT, ONNX_NAME, ONNX_NAME + ".json")


def ship_default(checkpoint: str | os.PathLike, dest: str | os.PathLike | None = None) -> dict[str, int]:
    """Ship ``checkpoint`` as the default model; file sizes by name.

    ``dest``: one folder for all three files; default: the ONNX files into the runtime's assets and
    ``model.pt`` into fa-export's (:func:`fa3d.export.defaults.default_checkpoint_path`).
    """
    from fa3d.training.checkpoint import export_weights_only

    onnx_dest = Path(dest) if dest is not None else asset_path("default")
    ckpt_dest = Path(dest) if dest is not None else export_asset_path("default")
    targets = {name: (ckpt_dest if name == CHECKPOINT else onnx_dest) / name for name in SHIPPED}
    for folder in {onnx_dest, ckpt_dest}:
        folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".ship-", dir=onnx_dest) as tmp:
        tmp = Path(tmp)
        export_weights_only(checkpoint, tmp / CHECKPOINT, half=True)
        run_export(ExportRequest(out_dir=tmp, checkpoint=tmp / CHECKPOINT, onnx_only=True),
                   report=lambda step: print(f"[{step.name}] {step.message}"))
        for name, target in targets.items():
            shutil.move(tmp / name, target)  # os.replace within one file system, a copy + rename across
    return {name: target.stat().st_size for name, target in targets.items()}


def refresh_int8(dest: str | os.PathLike | None, data: str | os.PathLike | None, skip: bool) -> str:
    """Remake the INT8 file of the (new) default model, or remove the stale one; a line to print."""
    from tools.ship_int8 import ship_int8

    dest = Path(dest) if dest is not None else asset_path("default")
    stale = [dest / INT8_ONNX_NAME, dest / (INT8_ONNX_NAME + ".json")]
    why = "--no-int8"
    if not skip:
        try:
            res = ship_int8(data, dest)
        except FileNotFoundError as e:
            why = str(e)
        else:
            if res.passed:
                return f"{INT8_ONNX_NAME}: {res.path.stat().st_size / 1e6:.2f} MB (gate passed)"
            why = "the INT8 gate failed"
    for p in stale:
        p.unlink(missing_ok=True)
    return f"{INT8_ONNX_NAME}: not shipped ({why}); the old one was removed"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.ship_default", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", help="the trained checkpoint to ship (e.g. runs/default/best.pt)")
    ap.add_argument("--dest", help="one destination folder for all three files (default: the ONNX into "
                                   "fa3d/runtime/assets/default, model.pt into fa3d/export/assets/default)")
    ap.add_argument("--data", help="the aflw19k folder for the INT8 calibration and gate (default ../shared/data/aflw19k)")
    ap.add_argument("--no-int8", action="store_true", help="do not make the INT8 file (the stale one is removed)")
    args = ap.parse_args(argv)
    from fa3d.training.checkpoint import CheckpointError

    try:
        sizes = ship_default(args.checkpoint, args.dest)
    except (ExportFailure, CheckpointError, FileNotFoundError, ValueError) as e:
        print(f"ship_default: error: {e}", file=sys.stderr)
        return getattr(e, "status", 2)
    for name, size in sizes.items():
        print(f"{name}: {size / 1e6:.2f} MB")
    print(f"total: {sum(sizes.values()) / 1e6:.2f} MB")
    print(refresh_int8(args.dest, args.data, args.no_int8))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
