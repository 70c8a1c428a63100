"""atomic_dir (a folder complete or absent) and deferred_signals (Ctrl-C/SIGTERM held for a few lines)."""

from __future__ import annotations

import os
import signal

import pytest

from fa3d.runtime import cli_errors
from fa3d.runtime.atomic import atomic_dir


def test_atomic_dir_renames_on_success_and_keeps_inner_names(tmp_path):
    target = tmp_path / "bag"
    with atomic_dir(target) as tmp:
        assert not tmp.exists() and tmp.name == "bag" and tmp.parent.name.startswith(".bag.partial-")
        tmp.mkdir()
        (tmp / "bag.mcap").write_text("data")
    assert (target / "bag.mcap").read_text() == "data"
    assert [p.name for p in tmp_path.iterdir()] == ["bag"]


def test_atomic_dir_removes_everything_on_error_and_never_replaces(tmp_path):
    target = tmp_path / "bag"
    with pytest.raises(KeyboardInterrupt):
        with atomic_dir(target) as tmp:
            tmp.mkdir()
            (tmp / "half").write_text("x")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []
    target.mkdir()
    with pytest.raises(FileExistsError, match="exists already"):
        with atomic_dir(target):
            pass
    assert [p.name for p in tmp_path.iterdir()] == ["bag"]


def test_deferred_signals_hold_ctrl_c_until_the_block_ends():
    done = []
    with pytest.raises(KeyboardInterrupt):
        with cli_errors.deferred_signals():
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(1000):  # the interpreter would deliver it here without the deferral
                pass
            done.append("block finished")
    assert done == ["block finished"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_deferred_sigterm_reaches_the_graceful_handler():
    with cli_errors.graceful_signals() as guard:
        with pytest.raises(cli_errors.Terminated):
            with cli_errors.deferred_signals():
                os.kill(os.getpid(), signal.SIGTERM)
                for _ in range(1000):
                    pass
        assert guard.exit_code == cli_errors.EXIT_TERMINATED
