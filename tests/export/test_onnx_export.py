"""ONNX export: opset 17, dynamic batch, sanitising, checker, the TensorRT-safe check, atomic output, sidecar."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from tests.helpers.tiny_aligner import TINY_SIZE, TinyAligner

from fa3d.export.onnx_export import OUTPUT_NAMES, OnnxExportError, check_onnx, export_onnx, sanitize, torch_to_onnx
from fa3d.export.parity import run_onnx, run_torch
from fa3d.runtime.metadata import read_sidecar, sha256_file


def test_export_writes_checked_onnx_and_sidecar(tmp_path, tiny_model, tiny_meta):
    res = export_onnx(tiny_model, tmp_path / "model.onnx", tiny_meta.with_(source_sha256="ab" * 32))
    model = onnx.load(str(res.path))
    assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [17]
    assert [i.name for i in model.graph.input] == ["input"]
    assert [o.name for o in model.graph.output] == list(OUTPUT_NAMES)
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # symbolic batch
    assert res.nodes < res.nodes_exported  # folding and cleanup removed nodes
    assert not {"Constant", "Identity", "Shape"} & set(res.ops)
    meta = read_sidecar(res.path)
    assert (meta.format, meta.precision, meta.source_sha256) == ("onnx", "fp32", "ab" * 32)
    assert meta.preprocess.input_size == TINY_SIZE and "onnx" in meta.producer
    assert res.sha256 == sha256_file(res.path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "model.onnx.json"]


@pytest.mark.parametrize("batch", [1, 3])
def test_dynamic_batch_matches_torch(tiny_onnx, tiny_model, rng, batch):
    x = rng.standard_normal((batch, 3, TINY_SIZE, TINY_SIZE)).astype(np.float32)
    ort_out, ref = run_onnx(tiny_onnx, x), run_torch(tiny_model, x)
    for k in OUTPUT_NAMES:
        assert ort_out[k].shape == ref[k].shape and ort_out[k].shape[0] == batch
        np.testing.assert_allclose(ort_out[k], ref[k], atol=1e-4)


def test_sanitize_folds_constants(tiny_model):
    raw = torch_to_onnx(tiny_model, TINY_SIZE)
    # add a constant subgraph that only folding removes: Add(c1, c2) feeding nothing but a dead Identity
    c1 = onnx.helper.make_tensor("c1", onnx.TensorProto.FLOAT, [1], [1.0])
    raw.graph.initializer.append(c1)
    raw.graph.node.append(onnx.helper.make_node("Add", ["c1", "c1"], ["dead"], name="dead_add"))
    clean, info = sanitize(raw)
    assert info.nodes_after < info.nodes_before
    assert "dead_add" not in {n.name for n in clean.graph.node}
    check_onnx(clean)


class _Einsum(TinyAligner):
    def forward(self, x):
        out = super().forward(x)
        out["landmarks"] = torch.einsum("bij,jk->bik", out["landmarks"], torch.eye(3))
        return out


def test_unsafe_operator_is_named_and_nothing_written(tmp_path, tiny_meta):
    out = tmp_path / "model.onnx"
    with pytest.raises(OnnxExportError, match=r"not TensorRT-safe: node '.*Einsum.*' \(Einsum\)"):
        export_onnx(_Einsum().eval(), out, tiny_meta)
    assert list(tmp_path.iterdir()) == []  # no partial file, no sidecar


def test_wrong_output_contract_is_refused(tmp_path, tiny_meta):
    class Bad(TinyAligner):
        def forward(self, x):
            out = super().forward(x)
            out.pop("dense")
            return out

    with pytest.raises(OnnxExportError, match="exactly"):
        export_onnx(Bad().eval(), tmp_path / "m.onnx", tiny_meta)


def test_checker_rejects_a_broken_graph(tiny_onnx):
    model = onnx.load(str(tiny_onnx))
    model.graph.node[3].input[0] = "no_such_tensor"
    with pytest.raises(OnnxExportError, match="onnx.checker"):
        check_onnx(model)


def test_interrupted_write_leaves_no_file(tmp_path, tiny_model, tiny_meta, monkeypatch):
    import fa3d.export.onnx_export as ox

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(ox, "write_metadata", boom)  # fails after the model file was written
    with pytest.raises(KeyboardInterrupt):
        export_onnx(tiny_model, tmp_path / "model.onnx", tiny_meta)
    assert list(tmp_path.iterdir()) == []  # neither the model, nor a sidecar, nor a temporary file
