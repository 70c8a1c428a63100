"""Parity: PyTorch vs ONNX Runtime on real and synthetic face crops; a perturbed ONNX is caught; FP16 ONNX."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from fa3d.runtime.default_model import asset_path
from fa3d.export.fp16 import is_fp16_model, make_fp16
from fa3d.export.parity import (FP16_TOLERANCE, FP32_TOLERANCE, ParityError, onnx_vs_onnx, parity_crops,
                                synthetic_crops, torch_vs_onnx)
from fa3d.runtime.metadata import read_sidecar, sha256_file
from fa3d.runtime.preprocess import PreprocessConfig

CONFIG = PreprocessConfig(input_size=32)


def test_parity_passes_on_synthetic_faces(tiny_model, tiny_onnx):
    crops = synthetic_crops(CONFIG, n_faces=2)
    assert crops.inputs.shape == (8, 3, 32, 32) and "synthetic" in crops.source
    rep = torch_vs_onnx(tiny_model, tiny_onnx, crops)
    assert rep.passed, rep.summary()
    assert rep.faces == 8 and rep.batches == (1, 8) and set(rep.max_abs) == {"landmarks", "rotation", "dense", "confidence"}
    assert max(rep.max_abs.values()) < 1e-3
    rep.raise_if_failed()


def test_parity_on_the_bundled_real_face(tiny_model, tiny_onnx):
    if not asset_path("samples/astronaut.png").is_file():
        pytest.skip(f"bundled sample {asset_path('samples/astronaut.png')} not installed")
    crops = parity_crops(CONFIG)
    assert crops.source == "images: astronaut.png"
    # the crops are cut around a detected face: the centre of the crop is not background
    assert crops.inputs.shape[0] == 4 and float(np.std(crops.inputs)) > 0.2
    assert torch_vs_onnx(tiny_model, tiny_onnx, crops).passed


def test_parity_failure_is_caught(tiny_model, tiny_onnx, tmp_path):
    model = onnx.load(str(tiny_onnx))
    gemms = {n.input[1] for n in model.graph.node if n.op_type == "Gemm"}
    for init in model.graph.initializer:  # perturb the weights of the dense head's Gemm slightly
        if init.name in gemms and numpy_helper.to_array(init).shape[0] == 30:
            w = numpy_helper.to_array(init).copy()
            w[0, 0] += 0.5
            init.CopyFrom(numpy_helper.from_array(w, init.name))
            break
    else:
        pytest.fail("no Gemm weight of the dense head found to perturb")
    bad = tmp_path / "perturbed.onnx"
    onnx.save(model, str(bad))
    rep = torch_vs_onnx(tiny_model, bad, synthetic_crops(CONFIG, n_faces=1))
    assert not rep.passed and set(rep.failures) == {"dense"}
    with pytest.raises(ParityError, match=r"dense .* > 0\.01"):
        rep.raise_if_failed()


def test_parity_crops_need_a_real_image_unless_synthetic_allowed(tmp_path):
    with pytest.raises(FileNotFoundError, match="no real face image"):
        parity_crops(CONFIG, bundled=False)
    assert "synthetic" in parity_crops(CONFIG, bundled=False, synthetic_fallback=True).source
    with pytest.raises(FileNotFoundError, match="not a readable image"):
        parity_crops(CONFIG, [tmp_path / "missing.png"], bundled=False)


def test_fp16_variant(tiny_onnx, tmp_path):
    out = tmp_path / "model.fp16.onnx"
    res = make_fp16(tiny_onnx, out)
    model = onnx.load(str(out))
    assert is_fp16_model(model) and not is_fp16_model(onnx.load(str(tiny_onnx)))
    for vi in (*model.graph.input, *model.graph.output):  # float32 I/O behind casts
        assert vi.type.tensor_type.elem_type == onnx.TensorProto.FLOAT, vi.name
    assert res.casts >= 5 and res.fp16_initializers > 0
    meta = read_sidecar(out)
    assert meta.precision == "fp16" and meta.source_sha256 == sha256_file(tiny_onnx)
    rep = onnx_vs_onnx(tiny_onnx, out, synthetic_crops(CONFIG, n_faces=2), FP16_TOLERANCE)
    assert rep.passed, rep.summary()
    assert rep.max_abs["landmarks"] > 0  # it really computes in half precision
    # ...and the FP32 tolerance would be too tight for it, which is why FP16 has its own
    assert FP16_TOLERANCE.landmarks > FP32_TOLERANCE.landmarks


def test_fp16_refuses_a_non_fp32_source(tiny_onnx, tmp_path):
    half = make_fp16(tiny_onnx, tmp_path / "model.fp16.onnx").path
    from fa3d.export.onnx_export import OnnxExportError

    with pytest.raises(OnnxExportError, match="needs the FP32 ONNX"):
        make_fp16(half, tmp_path / "again.onnx")
