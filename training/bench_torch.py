"""fa-bench-torch: fa-bench with PyTorch rows for ``--checkpoint`` files (needs fa3d[train]).

Every option of ``fa-bench`` (:mod:`fa3d.runtime.bench`) works the same; ``--checkpoint model.pt`` adds rows
timed by PyTorch eager on CPU, in the same run as the ONNX Runtime rows, so their ratios are comparable::

    fa-bench-torch --checkpoint model.pt --model model.onnx --batch 1,4,8

It lives in the training layer because loading a checkpoint needs torch and :mod:`fa3d.training.checkpoint`,
which the runtime never imports. Exit codes: those of fa-bench (4 also when the checkpoint cannot be loaded).
"""

from __future__ import annotations

from fa3d.runtime.bench import main as bench_main
from fa3d.runtime.bench import row
from fa3d.runtime.lazy import lazy_import
from fa3d.runtime.timing import time_calls

torch = lazy_import("torch", extra="train")


def bench_torch(checkpoint: str, batches: list[int], warmup: int, iters: int, threads: int | None) -> list[dict]:
    """PyTorch eager on CPU: one row per batch size (``fa3d.runtime.bench.row``); RuntimeError if unloadable."""
    from .checkpoint import CheckpointError, load_checkpoint  # imports torch: only when a checkpoint is timed

    if threads:
        torch.set_num_threads(threads)
    try:
        loaded = load_checkpoint(checkpoint)
    except CheckpointError as e:
        raise RuntimeError(str(e)) from None
    model = loaded.model.eval()
    s = loaded.metadata.preprocess.input_size
    rows = []
    with torch.inference_mode():
        for b in batches:
            x = torch.randn(b, 3, s, s)
            rows.append(row("pytorch", "fp32", b, time_calls(lambda: model(x), warmup, iters)))
    return rows


def main(argv: list[str] | None = None) -> int:
    return bench_main(argv, checkpoint_timer=bench_torch, prog="fa-bench-torch")


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
