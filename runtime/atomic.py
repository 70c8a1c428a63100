"""Atomic file writes: a file is either complete or absent, even after a crash or Ctrl-C."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on error it is removed.

    Use it for writers that want a file name (``np.savez``, ``torch.save``, ``onnx.save``, TensorRT).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # keep the real suffix last: some writers (np.savez) append theirs otherwise
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".partial{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates 0600 files: keep an existing file's mode, else the usual 0644
        mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
        os.chmod(tmp_path, mode)
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a not-yet-existing folder path to fill; on success it is renamed to ``path``, on error removed.

    For writers that make a folder (a rosbag2 bag). The temporary folder is ``path``'s own name inside a
    hidden ``.NAME.partial-XXXX`` folder beside it, so files named after the folder keep their final names.
    ``path`` must not exist (a folder is never replaced): FileExistsError, before anything is written.
    """
    path = Path(path)
    if path.exists() or path.is_symlink():
        raise FileExistsError(f"{path} exists already; give a new name")
    path.parent.mkdir(parents=True, exist_ok=True)
    holder = Path(tempfile.mkdtemp(prefix=f".{path.name}.partial-", dir=path.parent))
    try:
        yield holder / path.name
        os.rename(holder / path.name, path)  # never replaces a folder with contents that appeared meanwhile
    finally:
        shutil.rmtree(holder, ignore_errors=True)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))
