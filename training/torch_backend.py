"""A checkpoint (.pt) behind the runtime's backend interface, so ``fa-eval model.pt`` runs the deployed
pipeline (preprocessing, batching, output checks of :class:`fa3d.runtime.backends.BackendBase`) with
PyTorch eager on CPU instead of ONNX Runtime. It lives in the training layer: it needs torch and
:mod:`fa3d.training.checkpoint`, which the runtime never imports.
"""

from __future__ import annotations

import os

import numpy as np

from fa3d.runtime.aligner import FaceAligner, FaceAlignerOptions
from fa3d.runtime.backends import OUTPUT_NAMES, BackendBase, BackendError
from fa3d.runtime.lazy import lazy_import

torch = lazy_import("torch", extra="train")

CHECKPOINT_SUFFIXES = (".pt", ".pth")


class TorchBackend(BackendBase):
    """PyTorch eager inference of a checkpoint's model (eval mode, CPU, no gradients)."""

    name = "pytorch"

    def __init__(self, path: str | os.PathLike, *, max_batch: int = 32, num_threads: int | None = None) -> None:
        from .checkpoint import CheckpointError, load_checkpoint  # imports torch: fa-eval on ONNX files needs none

        if num_threads:
            torch.set_num_threads(int(num_threads))
        try:
            loaded = load_checkpoint(path)
        except CheckpointError as e:
            raise BackendError(str(e)) from None
        self._model = loaded.model.eval()
        self.metadata = loaded.metadata
        self.max_batch = int(max_batch)

    @property
    def model(self):
        """The checkpoint's network (eval mode), e.g. for forward hooks that look inside it."""
        return self._model

    def _infer_batch(self, x: np.ndarray) -> dict[str, np.ndarray]:
        with torch.inference_mode():
            out = self._model(torch.from_numpy(x))
        return {k: out[k].detach().float().numpy() for k in OUTPUT_NAMES}

    def close(self) -> None:
        self._model = None


def is_checkpoint(path: str | os.PathLike) -> bool:
    return str(path).lower().endswith(CHECKPOINT_SUFFIXES)


def open_aligner(path: str | os.PathLike, pose_source: str = "predicted"):
    """A :class:`fa3d.runtime.FaceAligner` over a checkpoint (image mode; ``pose_source`` as in fa-eval)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: checkpoint not found")
    options = FaceAlignerOptions() if pose_source == "predicted" else FaceAlignerOptions(pose_source=pose_source)
    return FaceAligner(TorchBackend(path), options)
