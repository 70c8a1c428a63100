"""fa3d.training: the pose-fused alignment network, its losses and the training loop (needs torch)."""

from __future__ import annotations


def build_model(preset: str, fuse_pose: bool = True, num_dense: int | None = None, dense_template=None,
                **overrides):
    """See :func:`fa3d.training.model.build_model` (imported lazily: importing the package needs no torch)."""
    from .model import build_model as _build

    return _build(preset, fuse_pose=fuse_pose, num_dense=num_dense, dense_template=dense_template, **overrides)


__all__ = ["build_model"]
