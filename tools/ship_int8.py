"""Make the shipped default model's INT8 Q/DQ ONNX (a maintainers' tool; the faces it uses are not shipped).

``python -m tools.ship_int8`` (also run by :mod:`.ship_default` after a new default model) writes
``fa3d/runtime/assets/default/model.int8.onnx`` + ``model.int8.onnx.json`` from the shipped
``model.onnx``:

* calibration: every 37th face of the aflw19k **train** split, 256 faces (percentile 99.99);
* gate: every 3rd face of the aflw19k **val** split, 600 faces, against their 3DDFA_V2 teacher labels
  (68 points and pose): the accuracy loss of INT8 over FP32, NME at most 0.1 points and yaw/pitch/roll MAE
  at most 0.3 deg (:class:`fa3d.calibration.gate.Gate`);
* the sidecar keeps the gate figures, the recipe and the SHA-256 of the FP32 ONNX it was made from, which
  ``fa-export --int8`` checks before it uses the file.

aflw19k is research-only data: only the model made with it is shipped, never a face. Exit codes: 0 written;
2 bad arguments or the data set is missing; 5 the gate failed (nothing written).
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from fa3d.export.defaults import INT8_ONNX_NAME, ONNX_NAME
from fa3d.runtime.default_model import asset_path

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "aflw19k"  # ../shared beside the checkout


@dataclass(frozen=True)
class ShipInt8Recipe:
    calib_stride: int = 37
    calib_max: int = 256
    val_stride: int = 3
    val_max: int = 600
    method: str = "percentile"


def _aflw_set(data: Path, split: str, stride: int, max_faces: int, config):
    from fa3d.calibration.calibset import build_from_samples
    from fa3d.data.datasets.mix import load_aflw19k

    samples = load_aflw19k(data, split, teacher=True, box="teacher")
    picked = (samples[i] for i in range(0, len(samples), stride))
    return build_from_samples(picked, config, max_faces=max_faces,
                              source=f"aflw19k {split} split (1 face in {stride}), 3DDFA_V2 teacher labels")


def ship_int8(data: str | os.PathLike | None = None, dest: str | os.PathLike | None = None,
              recipe: ShipInt8Recipe = ShipInt8Recipe(), progress: bool = True):
    """Calibrate and gate the INT8 model of ``dest/model.onnx``; returns the :class:`Int8Result`."""
    from fa3d.calibration.gate import ValidationData
    from fa3d.calibration.int8 import make_int8
    from fa3d.runtime.metadata import read_sidecar

    dest = Path(dest) if dest is not None else asset_path("default")
    data = Path(data) if data is not None else DEFAULT_DATA
    if not (data / "labels.npz").is_file():
        raise FileNotFoundError(f"{data}: no aflw19k data set there (labels.npz); give --data")
    fp32 = dest / ONNX_NAME
    config = read_sidecar(fp32).preprocess
    calib = _aflw_set(data, "train", recipe.calib_stride, recipe.calib_max, config)
    val = ValidationData.from_set(_aflw_set(data, "val", recipe.val_stride, recipe.val_max, config))
    return make_int8(fp32, dest / INT8_ONNX_NAME, calib=calib, val=val, method=recipe.method, progress=progress)


def main(argv: list[str] | None = None) -> int:
    from fa3d.calibration.int8 import make_int8_cli_summary

    ap = argparse.ArgumentParser(prog="python -m tools.ship_int8", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", help=f"the aflw19k folder (default {DEFAULT_DATA})")
    ap.add_argument("--dest", help="folder holding model.onnx (default: the installed package's assets/default)")
    args = ap.parse_args(argv)
    try:
        res = ship_int8(args.data, args.dest)
    except (FileNotFoundError, ValueError) as e:
        print(f"ship_int8: error: {e}", file=sys.stderr)
        return 2
    print(make_int8_cli_summary(res))
    if not res.passed:
        return 5
    print(f"wrote {res.path} ({res.path.stat().st_size / 1e6:.2f} MB) in {res.report['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
