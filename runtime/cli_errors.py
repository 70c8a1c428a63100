"""What every fa3d console script does at its edge: exit codes, one-line errors, signals, safe outputs.

The principle: validate at the edge; fail with one line that names the problem and the fix, with a
documented exit code; never overwrite an input; SIGTERM finalises outputs exactly like Ctrl-C; a bad item
in a folder or batch is skipped and counted; memory stays bounded for any input size.

* Exit codes shared by every CLI: :data:`EXIT_OK`, :data:`EXIT_USAGE` (argparse's own), :data:`EXIT_INTERRUPTED`
  (Ctrl-C, 128 + SIGINT) and :data:`EXIT_TERMINATED` (SIGTERM, 128 + SIGTERM, what ``docker stop`` and
  systemd send). The CLI-specific codes (3, 4, 5, 6) are in each CLI's docstring and the README table.
* :func:`graceful_signals`: while active, SIGTERM raises :class:`Terminated` (a ``KeyboardInterrupt``), so
  the ``except KeyboardInterrupt`` paths that finalise outputs on Ctrl-C run for SIGTERM as well; its
  :attr:`SignalGuard.exit_code` says which of 130 and 143 to return.
* :func:`stops_cleanly`: the same as a decorator of a CLI's ``main``.
* :func:`check_outputs_not_inputs`: an output path that names an input file (also through a symlink, a
  relative path or a hard link) is refused before anything is written.
* ``argparse`` types that reject a bad number at parse time (exit 2 with a usage line):
  :func:`int_at_least`, :func:`float_in`.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import math
import os
import signal
import sys
import threading
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_INTERRUPTED = 128 + signal.SIGINT  # 130
EXIT_TERMINATED = 128 + signal.SIGTERM  # 143
EXIT_BROKEN_PIPE = 128 + 13  # 141, as a program killed by SIGPIPE (signal.SIGPIPE does not exist on Windows)


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived; handled like Ctrl-C (outputs finalised), reported with exit code 143."""


class SignalGuard:
    """Which stop signal arrived (None while none did) and the exit code that reports it."""

    def __init__(self) -> None:
        self.signum: int | None = None

    @property
    def exit_code(self) -> int:
        return EXIT_TERMINATED if self.signum == signal.SIGTERM else EXIT_INTERRUPTED

    def _on_term(self, signum, frame) -> None:  # noqa: ARG002 - signal handler signature
        if self.signum is not None:
            return  # a second SIGTERM while outputs are finalised: let the finalisation finish
        self.signum = signum
        raise Terminated()

    def interrupted(self, exc: BaseException | None = None) -> int:
        """The exit code for a caught ``KeyboardInterrupt`` (records Ctrl-C when no SIGTERM came)."""
        if self.signum is None:
            self.signum = signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT
        return self.exit_code

    @property
    def name(self) -> str:
        return "terminated (SIGTERM)" if self.signum == signal.SIGTERM else "interrupted"


@contextlib.contextmanager
def graceful_signals() -> Iterator[SignalGuard]:
    """Turn SIGTERM into :class:`Terminated` while the block runs (main thread only; elsewhere a no-op)."""
    guard = SignalGuard()
    if threading.current_thread() is not threading.main_thread():
        yield guard
        return
    previous = signal.signal(signal.SIGTERM, guard._on_term)
    try:
        yield guard
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def deferred_signals() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM while the block runs, then deliver them: for the few lines that must not be
    cut in half (a record appended to a container file, its closing index). Main thread only (elsewhere a
    no-op); the handlers in force before the block (e.g. :func:`graceful_signals`') get the signals after it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    stops = (signal.SIGINT, signal.SIGTERM)
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
    """Decorate a CLI ``main``: SIGTERM stops it like Ctrl-C; an interrupt it does not catch itself prints
    one line (no traceback) and exits 130 (Ctrl-C) or 143 (SIGTERM); its own 130 becomes 143 for SIGTERM;
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
            if code == EXIT_INTERRUPTED and guard.signum == signal.SIGTERM:
                return EXIT_TERMINATED
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


def _same_file(a: Path, b: Path) -> bool:
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)  # hard links
    except OSError:
        return False


def output_clash(outputs: Mapping[str, str | os.PathLike | None],
                 inputs: Iterable[str | os.PathLike | None]) -> str | None:
    """A one-line problem when an output names an input file (or another output), else None.

    ``outputs`` maps an option name (``"--output"``) to its path; ``None`` entries are ignored. Inputs
    that are not local files (camera indices, URLs) are ignored."""
    outs = [(k, Path(v)) for k, v in outputs.items() if v is not None]
    for i, (k, p) in enumerate(outs):
        for k2, p2 in outs[:i]:
            if _same_file(p, p2):
                return f"{k2} and {k} name the same file {str(p)!r}; give two different files"
    for src in inputs:
        if src is None or isinstance(src, int):
            continue
        s = Path(src)
        for k, p in outs:
            if _same_file(p, s):
                return (f"{k} {str(p)!r} is an input of this run and would be overwritten; "
                        "write the output to another file")
    return None


def check_outputs_not_inputs(prog: str, outputs: Mapping[str, str | os.PathLike | None],
                             inputs: Iterable[str | os.PathLike | None]) -> bool:
    """Print the error and return False when :func:`output_clash` finds a clash; True when all is well."""
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


__all__ = ["EXIT_BROKEN_PIPE", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_TERMINATED", "EXIT_USAGE", "SignalGuard", "Terminated",
           "check_outputs_not_inputs", "deferred_signals", "error", "float_in", "graceful_signals", "int_at_least", "output_clash",
           "exit_codes_help", "stops_cleanly"]
