"""Check an existing ONNX file against its sidecar with ONNX Runtime (always installed): it loads, and its
inputs and outputs are the ones the sidecar promises. Used by ``fa-export --from-onnx`` before anything
else touches the file, so that a corrupt or mismatched file fails here with a one-line message instead of
a protobuf traceback here or a shape error later in ``fa-run``."""

from __future__ import annotations

from pathlib import Path

from fa3d.runtime.backends.onnxrt import cpu_session
from fa3d.runtime.metadata import ArtifactMetadata
from fa3d.runtime.schema import NUM_LANDMARKS


class OnnxFileError(ValueError):
    """The ONNX file cannot be loaded, or does not match its sidecar."""


def expected_outputs(meta: ArtifactMetadata) -> dict[str, tuple]:
    """Output name -> shape after the batch axis, as the sidecar describes them."""
    shapes = {"landmarks": (NUM_LANDMARKS, 3), "rotation": (3, 3), "dense": (meta.num_dense, 3), "confidence": (1,)}
    return {name: shapes[name] for name in meta.outputs}


def _dims_match(got: list, want: tuple) -> bool:
    if len(got) != len(want) + 1:
        return False
    return all(not isinstance(g, int) or g == w for g, w in zip(got[1:], want))  # symbolic dims: unknown


def check_onnx_file(path: str | Path, meta: ArtifactMetadata) -> None:
    """Raise :class:`OnnxFileError` when ``path`` is unreadable or does not match ``meta``."""
    path = Path(path)
    try:
        sess = cpu_session(path, 1)
    except Exception as e:  # noqa: BLE001 - ORT raises its own exception types for corrupt files
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise OnnxFileError(f"{path}: not a readable ONNX model ({first}); re-export it with fa-export") from None
    inputs = [i.name for i in sess.get_inputs()]
    if inputs != [meta.input_name]:
        raise OnnxFileError(f"{path}: its inputs are {inputs}, its sidecar promises [{meta.input_name!r}]; the "
                            "sidecar belongs to another file: re-export with fa-export")
    got = {o.name: list(o.shape) for o in sess.get_outputs()}
    want = expected_outputs(meta)
    missing = [n for n in want if n not in got]
    if missing:
        raise OnnxFileError(f"{path}: lacks the outputs {missing} that its sidecar promises (it has "
                            f"{sorted(got)}); re-export with fa-export")
    bad = [f"{n} {got[n]} (sidecar: (B, {', '.join(map(str, want[n]))}))" for n in want
           if not _dims_match(got[n], want[n])]
    if bad:
        raise OnnxFileError(f"{path}: output shapes do not match its sidecar: {'; '.join(bad)}; re-export "
                            "with fa-export")
