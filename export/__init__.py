"""fa3d.export: checkpoint -> ONNX (opset 17) -> FP16 / INT8 ONNX -> TensorRT engine, and ``fa-export``.

Modules (each imports its heavy dependencies lazily; importing the package imports neither torch nor
tensorrt): ``onnx_export`` (export, sanitise, check), ``onnx_check`` (TensorRT-safe operators),
``parity`` (PyTorch / ONNX Runtime / TensorRT comparisons on real face crops), ``fp16`` (FP16 ONNX with
FP32 I/O), ``trt_build`` (the engine builder and its version dispatch), ``target_commands`` (what to run
on the device), ``triton`` (model repository), ``onnx_io`` (an ONNX file against its sidecar),
``int8_step`` (the shipped INT8 file or a calibration), ``verify`` (``fa-verify``, the GPU self-check),
``steps`` (the steps of fa-export), ``cli``, ``defaults`` (file names and the shipped checkpoint in
``assets/default/``), and maintainers' tools: ``ship_default`` (make a checkpoint the shipped default
model), ``ship_int8`` (its INT8 Q/DQ file) and ``sample_clip`` (make the bundled sample clip).
"""
