"""fa3d.data.evaluation: the literature's metrics and evaluation protocols (numpy/OpenCV; no torch).

:mod:`.metrics` (NME, pose MAE, CED, paired bootstrap) and :mod:`.protocols` (ground truth of each benchmark,
prediction files, running a model through the runtime). Training (fa-eval, per-epoch validation) and
calibration (the INT8 accuracy gate) both use them; the runtime never imports them (the import contract in
pyproject.toml enforces it).
"""
