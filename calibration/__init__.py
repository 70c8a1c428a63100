"""fa3d.calibration: calibration sets, Q/DQ INT8 quantization, a Q/DQ lint and the accuracy gate.

Heavy dependencies (onnx, onnxruntime.quantization) are imported inside the functions that need them;
importing this package imports none of them.

Main entry point: :func:`fa3d.calibration.int8.make_int8` (what ``fa-export --int8`` calls for a model
other than the shipped one). Modules: ``calibset`` (sets), ``qdq`` (TensorRT-style Q/DQ), ``lint``, ``gate``
(metrics, the gate, the greedy fallback), ``ranking`` (one-pass layer ranking), ``int8`` (the whole
step), ``cpu_int8`` (U8S8 QOperator for ONNX Runtime's CPU kernels). TensorRT's implicit calibrator is not
used: the Q/DQ ONNX is the one INT8 path on every TensorRT (docs/deploying.md says why).
"""
