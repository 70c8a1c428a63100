"""Maintainer and experiment tools, run from a checkout (never installed): ``python -m tools.NAME --help``.

* :mod:`.ship_default`: ship a trained checkpoint as the default model (checkpoint, FP32 ONNX, INT8 ONNX).
* :mod:`.ship_int8`: remake the default model's INT8 Q/DQ ONNX from the aflw19k faces.
* :mod:`.sample_clip`: make the bundled sample clip from the bundled portrait.
* :mod:`.detector_convert`: convert MediaPipe's BlazeFace to the bundled ONNX detector (its own venv).
* :mod:`.detector_fit`, :mod:`.detector_eval`: fit the detector's box mapping and measure detection by yaw.
* :mod:`.face_clips`: acceptance clips of real faces pasted on backgrounds, and their scoring.
* :mod:`.face_paste`: the face pasting the detector and clip tools share.
* :mod:`.cpu_int8`: CPU INT8 experiments (ONNX Runtime's U8S8 QOperator format).

They import the installed ``fa3d`` (``pip install -e .[train,export]``) and may use the research data in
``../shared/data``; ``fa-*`` commands never import them.
"""
