"""fa3d.calibration: calibration sets, Q/DQ INT8 quantization, a Q/DQ lint and the accuracy gate.

Heavy dependencies (onnx, onnxruntime.quantization, tensorrt, pycuda) are imported inside the functions
that need them; importing this package imports none of them.

Main entry point: :func:`fa3d.calibration.int8.make_int8` (what ``fa-export --int8`` calls for a model
other than the shipped one). Modules: ``calibset`` (sets), ``qdq`` (TensorRT-style Q/DQ), ``lint``, ``gate``
(metrics, the gate, the greedy fallback), ``ranking`` (one-pass layer ranking), ``int8`` (the whole
step), ``cpu_int8`` (U8S8 QOperator for ONNX Runtime's CPU kernels), ``trt_calibrator`` (TensorRT's
implicit calibrator, 8.5 to 10.11).
"""
