"""Artifact metadata: write, read, validate, and clear errors on mismatch."""

import json

import pytest

from fa3d.runtime import metadata as md
from fa3d.runtime.preprocess import PreprocessConfig


def _meta(**kw):
    base = dict(format="onnx", preprocess=PreprocessConfig(input_size=128), num_dense=468,
                model={"preset": "edge"}, producer={"fa3d": "0.1.0"})
    base.update(kw)
    return md.ArtifactMetadata(**base)


def test_round_trip_through_a_sidecar(tmp_path):
    art = tmp_path / "model.onnx"
    path = md.write_metadata(md.sidecar_path(art), _meta(source_sha256="ab" * 32))
    assert path.name == "model.onnx.json"
    back = md.read_sidecar(art)
    assert back == _meta(source_sha256="ab" * 32)
    d = json.loads(path.read_text())
    assert d["schema"] == "fa3d.artifact" and d["input"]["preprocess"]["input_size"] == 128
    assert [o["name"] for o in d["outputs"]] == ["landmarks", "rotation", "dense", "confidence"]


@pytest.mark.parametrize("change, message", [
    ({"format": "tflite"}, "format"),
    ({"precision": "int4"}, "precision"),
    ({"num_dense": -1}, "num_dense"),
    ({"pose_convention": "euler_xyz"}, "pose convention"),
    ({"outputs": ("landmarks",)}, "outputs lack"),
])
def test_invalid_fields_are_rejected(change, message):
    with pytest.raises(md.MetadataError, match=message):
        _meta(**change)


def test_read_errors_say_what_is_wrong(tmp_path):
    with pytest.raises(md.MetadataError, match="not found"):
        md.read_sidecar(tmp_path / "missing.onnx")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(md.MetadataError, match="unreadable"):
        md.read_metadata(bad)
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"schema": "something-else"}))
    with pytest.raises(md.MetadataError, match="not fa3d artifact metadata"):
        md.read_metadata(other)
    d = _meta().to_dict()
    d["schema_version"] = 99
    newer = tmp_path / "newer.json"
    newer.write_text(json.dumps(d))
    with pytest.raises(md.MetadataError, match="re-export"):
        md.read_metadata(newer)
    d = _meta().to_dict()
    del d["num_dense"]
    missing = tmp_path / "missing_key.json"
    missing.write_text(json.dumps(d))
    with pytest.raises(md.MetadataError, match="num_dense"):
        md.read_metadata(missing)


def test_compatibility_check():
    a = _meta()
    a.check_compatible(_meta(format="tensorrt", precision="fp16"))
    with pytest.raises(md.MetadataError, match="input"):
        a.check_compatible(_meta(preprocess=PreprocessConfig(input_size=256)))
    with pytest.raises(md.MetadataError, match="num_dense"):
        a.check_compatible(_meta(num_dense=100))


def test_sha256_of_a_file(tmp_path):
    p = tmp_path / "x.bin"
    p.write_bytes(b"abc")
    assert md.sha256_file(p) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
