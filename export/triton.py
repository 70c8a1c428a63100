"""A Triton Inference Server model repository for the exported model (``--triton DIR``).

Layout (``DIR/<name>/``)::

    config.pbtxt          platform tensorrt_plan or onnxruntime_onnx, max_batch_size, dynamic batching,
                          the input and output tensors (dims without the batch axis)
    1/model.plan          or 1/model.onnx (Triton's default file names), with the fa3d sidecar beside it

The model folder is assembled in a temporary folder and moved into place, so a failure leaves no
half-written repository entry.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from fa3d.runtime.metadata import read_sidecar, sidecar_path
from fa3d.runtime.schema import NUM_LANDMARKS

DEFAULT_MODEL_NAME = "fa3d"


@dataclass(frozen=True)
class TritonResult:
    model_dir: Path
    config: Path
    artifact: Path
    platform: str


def output_dims(num_dense: int) -> dict[str, tuple[int, ...]]:
    return {"landmarks": (NUM_LANDMARKS, 3), "rotation": (3, 3), "dense": (num_dense, 3), "confidence": (1,)}


def config_pbtxt(name: str, platform: str, input_size: int, num_dense: int, max_batch: int,
                 preferred: tuple[int, ...], queue_delay_us: int = 2000) -> str:
    def tensor(n: str, dims: tuple[int, ...]) -> str:
        return f'  {{\n    name: "{n}"\n    data_type: TYPE_FP32\n    dims: [ {", ".join(map(str, dims))} ]\n  }}'

    outs = ",\n".join(tensor(n, d) for n, d in output_dims(num_dense).items())
    pref = ", ".join(str(b) for b in sorted({b for b in preferred if 1 <= b <= max_batch}))
    lines = [f'name: "{name}"', f'platform: "{platform}"', f"max_batch_size: {max_batch}",
             "input [", tensor("input", (3, input_size, input_size)), "]",
             "output [", outs, "]",
             "dynamic_batching {"]
    if pref:
        lines.append(f"  preferred_batch_size: [ {pref} ]")
    lines += [f"  max_queue_delay_microseconds: {queue_delay_us}", "}"]
    if platform == "tensorrt_plan":
        lines += ["instance_group [", "  {", "    kind: KIND_GPU", "    count: 1", "  }", "]"]
    return "\n".join(lines) + "\n"


def write_triton_repo(repo: Path, artifact: Path, *, max_batch: int, preferred: tuple[int, ...] = (),
                      name: str = DEFAULT_MODEL_NAME, replace: bool = True) -> TritonResult:
    """Write ``repo/name`` for ``artifact`` (a ``.plan`` or ``.onnx`` with its fa3d sidecar)."""
    artifact, repo = Path(artifact), Path(repo)
    meta = read_sidecar(artifact)
    if meta.format == "tensorrt":
        platform, file_name = "tensorrt_plan", "model.plan"
        prof_max = int((meta.engine or {}).get("profile", {}).get("max", [max_batch])[0])
        if max_batch > prof_max:
            raise ValueError(f"Triton max_batch_size {max_batch} exceeds the engine profile's max batch {prof_max}; "
                             "rebuild with a larger --batch MAX")
    elif meta.format == "onnx":
        platform, file_name = "onnxruntime_onnx", "model.onnx"
    else:
        raise ValueError(f"{artifact}: a Triton repository needs a .plan or .onnx export, not a {meta.format}")
    if max_batch < 1:
        raise ValueError(f"max_batch_size must be >= 1, got {max_batch}")
    final = repo / name
    if final.exists() and not replace:
        raise FileExistsError(f"{final} exists")
    repo.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.partial.", dir=repo))
    try:
        tmp.chmod(0o755)  # mkdtemp makes it private; a model repository is read by the server's user
        (tmp / "1").mkdir()
        shutil.copyfile(artifact, tmp / "1" / file_name)
        shutil.copyfile(sidecar_path(artifact), tmp / "1" / (file_name + ".json"))
        (tmp / "config.pbtxt").write_text(config_pbtxt(name, platform, meta.preprocess.input_size, meta.num_dense,
                                                       max_batch, preferred), encoding="utf-8")
        if final.exists():
            old = final.with_name(f".{name}.old.{os.getpid()}")
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return TritonResult(model_dir=final, config=final / "config.pbtxt", artifact=final / "1" / file_name,
                        platform=platform)
