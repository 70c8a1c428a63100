"""Atomic file writes: a file is either complete or absent, even after a crash or Ctrl-C.

Only regular files (and names that do not exist yet) are written atomically, under a temporary name beside
them that replaces them at the end. Anything else that already exists and is not a folder (``/dev/null``,
``/dev/full``, a FIFO, a socket, a tape) is written IN PLACE and never removed, replaced or truncated by
the clean-up: a device node must survive a failed run, even one run as root. A symlink is written through:
the file it names is replaced, the link stays.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


def is_special_file(path: str | os.PathLike) -> bool:
    """True for an existing path that is neither a regular file nor a folder (a device, a FIFO, a socket)."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def _fsync(f) -> None:
    """fsync a regular file (devices such as /dev/null refuse it with EINVAL: nothing to make durable)."""
    with contextlib.suppress(OSError, ValueError):
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            return
    os.fsync(f.fileno())


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on error it is removed.

    Use it for writers that want a file name (``torch.save``, ``onnx.save``, OpenCV's ``VideoWriter``,
    TensorRT). A device or FIFO is yielded as it is (written in place, never removed); a folder raises
    :class:`IsADirectoryError` before anything is written.
    """
    path = Path(path)
    if is_special_file(path):
        yield path
        return
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a folder, not a file", str(path))
    if path.is_symlink():  # write through the link: the file it names is replaced, the link stays a link
        path = Path(os.path.realpath(path))
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


class _Stream(io.RawIOBase):
    """A device or FIFO as a write-only stream that cannot seek: ``/dev/null`` reports position 0 whatever was
    written, which misleads writers that seek back (``zipfile``, so ``np.savez``); told it cannot seek, they
    stream instead."""

    def __init__(self, f: BinaryIO) -> None:
        super().__init__()
        self._f = f

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def write(self, b) -> int:
        return self._f.write(b)

    def tell(self) -> int:
        raise io.UnsupportedOperation("a device or FIFO has no position")

    def seek(self, *args) -> int:
        raise io.UnsupportedOperation("a device or FIFO cannot seek")

    def flush(self) -> None:
        if not self._f.closed:
            self._f.flush()

    def fileno(self) -> int:
        return self._f.fileno()


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """A binary file object for ``path`` (see :func:`atomic_path`): flushed and fsynced before it replaces
    ``path``. Give it to writers that append a suffix to a name (``np.savez`` adds ``.npz``). A device or
    FIFO is a stream that cannot seek, written in place."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        yield _Stream(f) if is_special_file(tmp) else f
        f.flush()
        _fsync(f)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_open(path) as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))
