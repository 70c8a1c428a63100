"""fa3d.data: torch-free dataset readers and evaluation protocols, between the runtime and training/calibration.

Training (fa-train, fa-eval, fa-label) and calibration (fa-calib, the INT8 gate) both need them, and
calibration may not import training, so they sit below both; they build on :mod:`fa3d.runtime` (schema, pose,
preprocessing), which never imports them: ``fa-run`` and ``FaceAligner`` load none of this. The import
contract in pyproject.toml enforces both directions.

:mod:`.datasets` (readers yielding ``FaceSample``, synthetic faces, verified video writing) and
:mod:`.evaluation` (NME, pose MAE, CED, bootstrap; the benchmarks' protocols).
"""
