"""A rosbag2 folder in MCAP storage (what ``ros2 bag record -s mcap`` makes) of fa3d's ROS messages.

:class:`HriBagWriter` is a context manager: the bag is written under a temporary name beside the target
(:func:`fa3d.runtime.atomic.atomic_dir`) and renamed when the block ends normally, so the target is either a
complete, readable bag or absent. An error inside the block removes it; Ctrl-C and SIGTERM, which fa-run's
frame loop turns into a normal end, leave a complete, shorter bag. Topics are added as they first appear
(per-face topics when a face first shows up), each with the definitions rosbags generates from
:func:`~.hri_msgs.typestore`, so any MCAP reader decodes the bag without ROS. A frame's messages and the
closing index are written with Ctrl-C and SIGTERM held (:func:`~fa3d.runtime.cli_errors.deferred_signals`),
so a stop never leaves half a record.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from pathlib import Path

from ..atomic import atomic_dir
from ..cli_errors import deferred_signals
from ..lazy import lazy_import
from . import hri_msgs
from .messages import Message

rosbag2 = lazy_import("rosbags.rosbag2", extra="ros")


class HriBagWriter:
    """``with HriBagWriter(path) as bag: bag.write(frame_messages(...), log_time_ns)``."""

    def __init__(self, path: str | os.PathLike, store=None) -> None:
        self.path = Path(path)
        self.store = store if store is not None else hri_msgs.typestore()
        self.counts: dict[str, int] = {}
        self._writer = None
        self._connections: dict[tuple[str, str], object] = {}
        self._stack: contextlib.ExitStack | None = None

    def __enter__(self) -> "HriBagWriter":
        with contextlib.ExitStack() as stack:
            tmp = stack.enter_context(atomic_dir(self.path))
            writer = rosbag2.Writer(tmp, version=9, storage_plugin=rosbag2.StoragePlugin.MCAP)
            writer.open()
            self._writer = writer
            stack.push(self._finish)
            self._stack = stack.pop_all()
        return self

    def _finish(self, exc_type, exc, tb) -> bool:
        writer, self._writer = self._writer, None
        if exc_type is None:
            writer.close()  # an error here reaches atomic_dir, which removes the bag
        else:
            with contextlib.suppress(Exception):
                writer.abort()
        return False

    def __exit__(self, exc_type, exc, tb) -> bool:
        stack, self._stack = self._stack, None
        if stack is None:
            return False
        with deferred_signals():  # a second Ctrl-C while the index is written and the bag renamed waits
            return bool(stack.__exit__(exc_type, exc, tb))

    def write(self, messages: Iterable[Message], log_time_ns: int) -> None:
        """Serialise and write ``messages`` (from :func:`~.messages.frame_messages`) at ``log_time_ns``."""
        if self._writer is None:
            raise RuntimeError("HriBagWriter.write() outside its with-block")
        data = [(m, self.store.serialize_cdr(m.msg, m.msgtype)) for m in messages]
        with deferred_signals():  # a frame's messages go in whole: Ctrl-C never cuts a record in half
            try:
                for m, raw in data:
                    key = (m.topic, m.msgtype)
                    conn = self._connections.get(key)
                    if conn is None:
                        conn = self._writer.add_connection(m.topic, m.msgtype, typestore=self.store)
                        self._connections[key] = conn
                    self._writer.write(conn, int(log_time_ns), raw)
                    self.counts[m.topic] = self.counts.get(m.topic, 0) + 1
            except rosbag2.WriterError as e:
                raise OSError(f"{self.path}: {e}") from None
