"""What every fa3d console script does at its edge: exit codes, one-line errors, signals, safe outputs.

The principle: validate at the edge; fail with one line that names the problem and the fix, with a
documented exit code; never overwrite an input; SIGTERM and SIGHUP finalise outputs exactly like Ctrl-C; a
bad item in a folder or batch is skipped and counted; memory stays bounded for any input size.

* Exit codes shared by every CLI: :data:`EXIT_OK`, :data:`EXIT_USAGE` (argparse's own), :data:`EXIT_INTERRUPTED`
  (Ctrl-C, 128 + SIGINT), :data:`EXIT_TERMINATED` (SIGTERM, 128 + SIGTERM, what ``docker stop`` and
  systemd send) and :data:`EXIT_HANGUP` (SIGHUP, 128 + 1: the terminal or SSH session closed). The
  CLI-specific codes (3, 4, 5, 6) are in each CLI's docstring and the exit-code table of the docs.
* :func:`graceful_signals`: while active, SIGTERM and SIGHUP raise :class:`Terminated` (a
  ``KeyboardInterrupt``), so the ``except KeyboardInterrupt`` paths that finalise outputs on Ctrl-C run for
  them as well; its :attr:`SignalGuard.exit_code` says which of 130, 143 and 129 to return.
* :func:`stops_cleanly`: the same as a decorator of a CLI's ``main``.
* :func:`check_outputs_not_inputs`: every output checked before any work (:mod:`fa3d.runtime.output_check`):
  its kind (a file where a file is wanted), clashes with each other and with the inputs (also through a
  symlink, a relative path or a hard link; a model's sidecar is an input).
* :func:`os_error_text`: an ``OSError`` of a write in words a user acts on ("disk full").
* ``argparse`` types that reject a bad number at parse time (exit 2 with a usage line):
  :func:`int_at_least`, :func:`float_in`.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import functools
import math
import os
import signal
import sys
import threading
from collections.abc import Iterable, Iterator, Mapping

from .output_check import Output, artifact_files, output_clash

EXIT_OK = 0
EXIT_USAGE = 2
#: an output cannot be written (disk full, permission, read-only file system): the CLIs that write files
EXIT_OUTPUT = 5
EXIT_INTERRUPTED = 128 + signal.SIGINT  # 130
EXIT_TERMINATED = 128 + signal.SIGTERM  # 143
EXIT_HANGUP = 128 + 1  # 129, SIGHUP (signal.SIGHUP does not exist on Windows)
EXIT_BROKEN_PIPE = 128 + 13  # 141, as a program killed by SIGPIPE (signal.SIGPIPE does not exist on Windows)

#: the stop signals handled like Ctrl-C (outputs finalised): SIGTERM (docker stop, systemd) and SIGHUP (the
#: terminal or SSH session closed); each reported with its own exit code, 128 + its number
STOP_SIGNALS: dict[int, str] = {int(signal.SIGTERM): "terminated (SIGTERM)"}
if hasattr(signal, "SIGHUP"):
    STOP_SIGNALS[int(signal.SIGHUP)] = "hung up (SIGHUP: the terminal or session closed)"


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP arrived; handled like Ctrl-C (outputs finalised), reported with 128 + the signal."""

    def __init__(self, signum: int = int(signal.SIGTERM)) -> None:
        super().__init__(signum)
        self.signum = signum


class SignalGuard:
    """Which stop signal arrived (None while none did) and the exit code that reports it."""

    def __init__(self) -> None:
        self.signum: int | None = None

    @property
    def exit_code(self) -> int:
        return 128 + self.signum if self.signum in STOP_SIGNALS else EXIT_INTERRUPTED

    def _on_term(self, signum, frame) -> None:  # noqa: ARG002 - signal handler signature
        if self.signum is not None:
            return  # a second signal while outputs are finalised: let the finalisation finish
        self.signum = signum
        raise Terminated(signum)

    def interrupted(self, exc: BaseException | None = None) -> int:
        """The exit code for a caught ``KeyboardInterrupt`` (records Ctrl-C when no stop signal came)."""
        if self.signum is None:
            self.signum = exc.signum if isinstance(exc, Terminated) else int(signal.SIGINT)
        return self.exit_code

    @property
    def name(self) -> str:
        return STOP_SIGNALS.get(self.signum, "interrupted")


@contextlib.contextmanager
def graceful_signals() -> Iterator[SignalGuard]:
    """Turn SIGTERM and SIGHUP into :class:`Terminated` while the block runs (main thread only; elsewhere a
    no-op)."""
    guard = SignalGuard()
    if threading.current_thread() is not threading.main_thread():
        yield guard
        return
    previous = {signum: signal.signal(signum, guard._on_term) for signum in STOP_SIGNALS}
    try:
        yield guard
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextlib.contextmanager
def deferred_signals() -> Iterator[None]:
    """Hold Ctrl-C, SIGTERM and SIGHUP while the block runs, then deliver them: for the few lines that must not be
    cut in half (a record appended to a container file, its closing index). Main thread only (elsewhere a
    no-op); the handlers in force before the block (e.g. :func:`graceful_signals`') get the signals after it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    stops = (signal.SIGINT, *STOP_SIGNALS)
    previous = {s: signal.signal(s, lambda signum, frame: held.append(signum)) for s in stops}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        for s in dict.fromkeys(held):
            signal.raise_signal(s)


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's final flush cannot fail again."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def stops_cleanly(prog: str, *, return_usage_errors: bool = True):
    """Decorate a CLI ``main``: SIGTERM and SIGHUP stop it like Ctrl-C; an interrupt it does not catch itself
    prints one line (no traceback) and exits 130 (Ctrl-C), 143 (SIGTERM) or 129 (SIGHUP); its own 130 becomes
    143 or 129 for those signals;
    argparse's usage errors are returned (2) rather than raised as SystemExit (unless
    ``return_usage_errors=False``); a closed stdout (``| head``)
    ends it quietly with 141, as SIGPIPE would."""
    def decorate(main):
        @functools.wraps(main)
        def wrapper(*args, **kwargs) -> int:
            with graceful_signals() as guard:
                try:
                    code = main(*args, **kwargs)
                except SystemExit as e:  # argparse's usage error: its code, returned (--help still exits)
                    if not e.code or not return_usage_errors:
                        raise
                    return e.code if isinstance(e.code, int) else EXIT_USAGE
                except KeyboardInterrupt as e:
                    print(f"{prog}: {guard.name}", file=sys.stderr)
                    return guard.interrupted(e)
                except BrokenPipeError:  # stdout closed early (`fa-run | head`): stop quietly, no traceback
                    _silence_stdout()
                    return EXIT_BROKEN_PIPE
            if code == EXIT_INTERRUPTED and guard.signum in STOP_SIGNALS:
                return guard.exit_code
            return code
        return wrapper
    return decorate


def exit_codes_help(doc: str | None) -> str:
    """The "Exit codes: ..." paragraph of a CLI module's docstring, on one line, for its ``--help`` epilog."""
    for para in (doc or "").split("\n\n"):
        if para.strip().startswith("Exit codes"):
            return " ".join(para.split())
    return ""


def error(prog: str, message: str) -> None:
    """Print the one-line error every CLI prints: ``prog: error: message``."""
    print(f"{prog}: error: {' '.join(str(message).split())}", file=sys.stderr)


_OS_ERRORS = {errno.ENOSPC: "disk full (no space left on device)", errno.EDQUOT: "disk quota exceeded",
              errno.EROFS: "read-only file system", errno.EACCES: "permission denied",
              errno.EPERM: "operation not permitted", errno.EISDIR: "is a folder, not a file",
              errno.ENOTDIR: "a part of the path is a file, not a folder", errno.EPIPE: "the reader went away"}


def os_error_text(e: OSError) -> str:
    """``path: what happened`` for an OSError (``/dev/full: disk full (no space left on device)``)."""
    what = _OS_ERRORS.get(e.errno) or e.strerror or str(e)
    return f"{e.filename}: {what}" if e.filename else what


def check_outputs_not_inputs(prog: str, outputs: Mapping[str, Output | str | os.PathLike | None],
                             inputs: Iterable[str | os.PathLike | int | None]) -> bool:
    """Print the error and return False when :func:`~fa3d.runtime.output_check.output_clash` finds a problem
    with the outputs (kind, a clash with each other or with an input); True when all is well."""
    problem = output_clash(outputs, inputs)
    if problem is not None:
        error(prog, problem)
        return False
    return True


def int_at_least(minimum: int, maximum: int | None = None):
    """An argparse ``type``: an integer in ``[minimum, maximum]``."""
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if v < minimum or (maximum is not None and v > maximum):
            rng = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
            raise argparse.ArgumentTypeError(f"must be an integer {rng}, got {v}")
        return v
    parse.__name__ = "int"
    return parse


def float_in(low: float, high: float, *, low_open: bool = False, high_open: bool = False):
    """An argparse ``type``: a finite number between ``low`` and ``high`` (each bound open or closed)."""
    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        bad = (not math.isfinite(v) or v < low or v > high or (low_open and v == low) or (high_open and v == high))
        if bad:
            rng = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
            raise argparse.ArgumentTypeError(f"must be a number in {rng}, got {text}")
        return v
    parse.__name__ = "float"
    return parse


__all__ = ["EXIT_BROKEN_PIPE", "EXIT_HANGUP", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_OUTPUT", "EXIT_TERMINATED",
           "EXIT_USAGE", "Output", "STOP_SIGNALS", "SignalGuard", "Terminated", "artifact_files",
           "check_outputs_not_inputs", "deferred_signals", "error", "float_in", "graceful_signals", "int_at_least", "os_error_text",
           "output_clash", "exit_codes_help", "stops_cleanly"]
