"""fa3d.calibration: calibration sets, Q/DQ INT8 quantization, a Q/DQ lint and the accuracy gate.

Heavy dependencies (onnx, onnxruntime.quantization, tensorrt, pycuda) are imported inside the functions
that need them; importing this package imports none of them.

Main entry point: :func:`fa3d.calibration.int8.make_int8` (what ``fa-export --int8`` calls).
"""
