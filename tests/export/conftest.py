"""Fixtures of the export tests (the TinyAligner test model lives in tests/helpers/tiny_aligner.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("onnx_graphsurgeon")

from fa3d.runtime.metadata import ArtifactMetadata  # noqa: E402

from tests.helpers.tiny_aligner import TINY_SIZE, TinyAligner, tiny_metadata  # noqa: E402,F401


@pytest.fixture
def tiny_model() -> TinyAligner:
    torch.manual_seed(0)
    m = TinyAligner()
    # non-trivial BatchNorm statistics so that folding them is exercised
    with torch.no_grad():
        m.stem[1].running_mean.uniform_(-0.5, 0.5)
        m.stem[1].running_var.uniform_(0.5, 2.0)
    return m.eval()


@pytest.fixture
def tiny_meta() -> ArtifactMetadata:
    return tiny_metadata()


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def tiny_onnx(tmp_path: Path, tiny_model, tiny_meta) -> Path:
    from fa3d.export.onnx_export import export_onnx

    out = tmp_path / "model.onnx"
    export_onnx(tiny_model, out, tiny_meta)
    return out


@pytest.fixture
def tiny_int8_onnx(tiny_onnx: Path) -> Path:
    """The Q/DQ INT8 model of ``tiny_onnx`` (minmax on 8 random inputs) beside it, with its sidecar."""
    from fa3d.calibration.qdq import QdqOptions, quantize_qdq
    from fa3d.runtime.metadata import read_sidecar, sha256_file, sidecar_path, write_metadata

    out = tiny_onnx.parent / "model.int8.onnx"
    x = np.random.default_rng(0).uniform(-1, 1, (8, 3, TINY_SIZE, TINY_SIZE)).astype(np.float32)
    quantize_qdq(tiny_onnx, out, x, QdqOptions(method="minmax"))
    write_metadata(sidecar_path(out), read_sidecar(tiny_onnx).with_(precision="int8",
                                                                    source_sha256=sha256_file(tiny_onnx)))
    return out
