"""fa3d.export: checkpoint -> ONNX (opset 17) -> FP16 / INT8 ONNX -> TensorRT engine, and ``fa-export``.

Modules (each imports its heavy dependencies lazily; importing the package imports neither torch nor
tensorrt): ``onnx_export`` (export, sanitise, check), ``onnx_check`` (TensorRT-safe operators),
``parity`` (PyTorch / ONNX Runtime / TensorRT comparisons on real face crops), ``fp16`` (FP16 ONNX with
FP32 I/O), ``trt_build`` (the engine builder and its version dispatch), ``target_commands`` (what to run
on the device), ``triton`` (model repository), ``onnx_io`` (an ONNX file against its sidecar),
``int8_step`` (the shipped INT8 file or a calibration), ``ship_int8`` / ``ship_default`` (maintainers:
the shipped model files), ``verify`` (``fa-verify``, the GPU self-check), ``pipeline`` (the steps of
fa-export), ``cli``.
"""
