"""The LIVE_STREAM worker of a FaceAligner: one thread, the latest frame wins, results to a callback.

The contract, in every order of calls: :meth:`LatestFrameWorker.close` returns only when the thread has
ended; waiting for the worker from the worker's own thread (``wait_idle()`` or ``close()`` inside the
result callback) raises :class:`RuntimeError` at once instead of waiting for itself forever.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np

#: ``result_callback(faces, frame_bgr, timestamp_ms)``, called on the worker thread
ResultCallback = Callable[[list, np.ndarray, float], None]


class LatestFrameWorker:
    """Runs ``process(frame, timestamp_ms)`` on one thread and passes each result to ``callback``.

    Drop policy: at most one frame waits; a frame submitted while another waits replaces it (counted in
    ``dropped``). An exception raised by ``process`` or ``callback`` is kept and raised by the next
    :meth:`submit` (or :meth:`close`), so the caller's thread sees it.
    """

    def __init__(self, process: Callable[[np.ndarray, float], list], callback: ResultCallback) -> None:
        self._process, self._callback = process, callback
        self._cond = threading.Condition()
        self._pending: tuple[np.ndarray, float] | None = None
        self._busy = False
        self._stopping = False
        self._error: BaseException | None = None
        self.dropped = 0
        self._thread = threading.Thread(target=self._loop, name="fa3d-live-stream", daemon=True)
        self._thread.start()

    def submit(self, frame: np.ndarray, timestamp_ms: float) -> None:
        with self._cond:
            self._raise_error()
            if self._stopping:
                raise RuntimeError("this FaceAligner is closed")
            if self._pending is not None:
                self.dropped += 1
            self._pending = (frame, timestamp_ms)
            self._cond.notify_all()

    def on_worker_thread(self) -> bool:
        """True when called from the worker's own thread (inside the result callback)."""
        return threading.current_thread() is self._thread

    def refuse_waiting_here(self, call: str) -> None:
        """Raise if ``call`` (which waits for the worker) is made from the worker's thread: it would wait for
        itself forever."""
        if self.on_worker_thread():
            raise RuntimeError(f"{call} was called inside result_callback, on the live-stream worker thread: it "
                               "would wait for that callback to end, i.e. for itself; call it from another "
                               "thread (e.g. the camera loop)")

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no frame waits or runs (True), or ``timeout`` seconds pass (False)."""
        self.refuse_waiting_here("wait_idle()")
        with self._cond:
            return self._cond.wait_for(lambda: self._pending is None and not self._busy, timeout)

    def close(self) -> None:
        """Finish the frame that runs and the one that waits, then stop the thread; raise a kept error."""
        self.refuse_waiting_here("close()")
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join()
        with self._cond:
            self._raise_error()

    def _raise_error(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def _loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending is not None or self._stopping)
                if self._pending is None:
                    return
                (frame, ts), self._pending = self._pending, None
                self._busy = True
            try:
                self._callback(self._process(frame, ts), frame, ts)
            except BaseException as e:  # noqa: BLE001 - handed to the caller's thread by submit()/close()
                with self._cond:
                    self._error = e
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
