"""fa3d.export: checkpoint -> ONNX (opset 17) -> FP16 / INT8 ONNX -> TensorRT engine, and ``fa-export``.

Modules (each imports its heavy dependencies lazily; importing the package imports neither torch nor
tensorrt): ``onnx_export`` (export, sanitise, check), ``onnx_check`` (TensorRT-safe operators),
``parity`` (PyTorch / ONNX Runtime / TensorRT comparisons on real face crops), ``fp16`` (FP16 ONNX with
FP32 I/O), ``trt_build`` (the engine builder and its version dispatch), ``target_commands`` (what to run
on the device), ``triton`` (model repository), ``steps`` (the steps of fa-export), ``cli``, ``defaults``
(file names and the shipped checkpoint in ``assets/default/``), and two maintainers' tools: ``ship_default``
(make a checkpoint the shipped default model) and ``sample_clip`` (make the bundled sample clip).
"""
