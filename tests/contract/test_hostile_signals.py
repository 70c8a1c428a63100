"""Signals: SIGTERM (docker stop, systemd) finalises outputs exactly like Ctrl-C, in every CLI; a second
SIGTERM during finalisation does not break it; handlers are restored afterwards. Subprocesses have timeouts."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time

import cv2
import numpy as np
import pytest

from hostile_helpers import no_partials, one_line_error
from tests.helpers.plumbing import count_video_frames
from tests.helpers.slow_fa_run import slow_fa_run
from fa3d.runtime import cli_errors

def _run_and_signal(argv, sig, after_frames=5, timeout=60):
    p = subprocess.Popen(slow_fa_run(argv, blob_detector=True),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(ln) for ln in p.stderr], daemon=True)
    reader.start()
    seen, rest, deadline = 0, [], time.monotonic() + timeout
    try:
        while seen < after_frames:
            ln = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            seen += ln.strip() == "frame"
            rest.append(ln)
        p.send_signal(sig)
        p.wait(timeout=timeout)  # stdout (a short table) fits in the pipe
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    reader.join(timeout=10)
    while not lines.empty():
        rest.append(lines.get())
    return p.returncode, p.stdout.read(), "".join(ln for ln in rest if ln.strip() != "frame")



@pytest.mark.parametrize("sig,code,word", [(signal.SIGTERM, 143, "terminated"), (signal.SIGINT, 130, "interrupted"),
                                           (signal.SIGHUP, 129, "hung up")])  # SIGHUP: the SSH session closed
def test_fa_run_finalises_outputs_on_sigterm_like_on_ctrl_c(tmp_path, plumbing_model, blob_video, sig, code, word):
    out, js = tmp_path / "out.avi", tmp_path / "out.jsonl"
    rc, stdout, err = _run_and_signal(["--model", str(plumbing_model), "--source", str(blob_video), "--output",
                                       str(out), "--json", str(js), "--headless"], sig)
    assert rc == code, err
    assert "Traceback" not in err and word in err
    recs = [json.loads(line) for line in js.read_text().splitlines()]
    assert 4 <= len(recs) < 30 and [r["frame"] for r in recs] == list(range(len(recs)))
    assert count_video_frames(out) == len(recs), "the video holds every frame the JSON lines describe"
    assert no_partials(tmp_path) == []
    assert "[interrupted]" in stdout  # the timing table is printed as on Ctrl-C


def test_graceful_signals_restores_the_previous_handler():
    before = signal.getsignal(signal.SIGTERM)
    with cli_errors.graceful_signals() as guard:
        assert signal.getsignal(signal.SIGTERM) is not before
        with pytest.raises(cli_errors.Terminated):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)  # the handler raises in the main thread right away
        assert guard.exit_code == 143
        os.kill(os.getpid(), signal.SIGTERM)  # a second SIGTERM while finalising: ignored
        time.sleep(0.01)
    assert signal.getsignal(signal.SIGTERM) is before


def test_graceful_signals_turns_sighup_into_exit_129_and_restores_it():
    before = signal.getsignal(signal.SIGHUP)
    with cli_errors.graceful_signals() as guard:
        with pytest.raises(cli_errors.Terminated):
            os.kill(os.getpid(), signal.SIGHUP)
            time.sleep(1)
        assert guard.exit_code == 129 and "SIGHUP" in guard.name
    assert signal.getsignal(signal.SIGHUP) is before


def _kill_self(*a, **k):
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(5)  # never reached: the handler raises
    raise AssertionError("SIGTERM was not turned into an interrupt")


def _ctrl_c(*a, **k):
    raise KeyboardInterrupt


def _hang_up_self(*a, **k):
    os.kill(os.getpid(), signal.SIGHUP)
    time.sleep(5)  # never reached: the handler raises
    raise AssertionError("SIGHUP was not turned into an interrupt")


@pytest.mark.parametrize("stop,code,word", [(_kill_self, 143, "terminated"), (_ctrl_c, 130, "interrupted"),
                                            (_hang_up_self, 129, "hung up")])
def test_fa_calib_stops_cleanly_and_writes_nothing(tmp_path, plumbing_model, monkeypatch, capsys, stop, code, word):
    import fa3d.calibration.calibset as calibset
    from fa3d.calibration.cli import main as calib_main

    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((64, 64, 3), np.uint8))
    monkeypatch.setattr(calibset, "build_calibration_set", stop)
    out = tmp_path / "calib.npz"
    assert calib_main([str(tmp_path / "a.png"), "--model", str(plumbing_model), "--out", str(out)]) == code
    line = one_line_error(capsys.readouterr().err, "fa-calib")
    assert word in line and "no calibration set written" in line
    assert not out.exists() and no_partials(tmp_path) == []


@pytest.mark.parametrize("stop,code", [(_kill_self, 143), (_ctrl_c, 130), (_hang_up_self, 129)])
def test_fa_export_stops_cleanly(tmp_path, monkeypatch, capsys, stop, code):
    import fa3d.export.cli as export_cli

    monkeypatch.setattr(export_cli, "run_export", stop)
    assert export_cli.main(["--out", str(tmp_path / "o"), "--onnx-only"]) == code
    assert "no partial files" in one_line_error(capsys.readouterr().err, "fa-export")


@pytest.mark.parametrize("stop,code", [(_kill_self, 143), (_ctrl_c, 130), (_hang_up_self, 129)])
def test_fa_bench_stops_cleanly(plumbing_model, monkeypatch, capsys, stop, code):
    import fa3d.runtime.bench as bench

    monkeypatch.setattr(bench, "bench_backend", stop)
    assert bench.main(["--model", str(plumbing_model), "--no-pipeline"]) == code
    one_line_error(capsys.readouterr().err, "fa-bench")


def test_fa_eval_and_fa_train_stop_cleanly_on_sigterm(tmp_path, monkeypatch, capsys):
    pytest.importorskip("torch")
    import fa3d.data.evaluation.protocols as protocols
    import fa3d.training.train as train_mod
    from fa3d.training.cli_eval import main as eval_main
    from fa3d.training.cli_train import main as train_main

    from hostile_helpers import REPO

    monkeypatch.setattr(protocols, "load_ground_truth", _kill_self)
    assert eval_main(["x.onnx", "--dataset", "aflw", "--data", str(tmp_path)]) == 143
    assert "fa-eval: interrupted" in capsys.readouterr().err  # its own message, the SIGTERM exit code
    monkeypatch.setattr(train_mod, "train", _kill_self)  # cli_train imports it when it runs
    assert train_main(["--config", str(REPO / "training" / "configs" / "smoke.toml"), "--out-dir",
                       str(tmp_path / "run")]) == 143
    assert "terminated (SIGTERM); resume with --resume" in one_line_error(capsys.readouterr().err, "fa-train")


def test_a_closed_stdout_ends_a_cli_quietly(plumbing_model, blob_video):
    """`fa-run ... | head -1`: the reader goes away; no BrokenPipeError traceback, exit 141 as with SIGPIPE."""
    from hostile_helpers import REPO

    cmd = [sys.executable, "-c", "import sys; from fa3d.runtime.cli_run import main; sys.exit(main(sys.argv[1:]))",
           "--model", str(plumbing_model), "--source", str(blob_video), "--headless", "--max-frames", "3"]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
    p.stdout.close()  # nobody reads the timing table
    _, err = p.communicate(timeout=60)
    assert p.returncode == 141 and b"Traceback" not in err and b"BrokenPipe" not in err, err.decode()


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_between_two_outputs_of_a_frame_waits_until_the_frame_is_in_both(tmp_path, plumbing_model, blob_video,
                                                                                     blob_detector, monkeypatch, capsys,
                                                                                     sig, code):
    """The race CI once hit: the stop signal landed after a frame's JSON line and before its video frame. Here it
    lands there on purpose (frame 3); the frame must still reach the video, and the run stops after it."""
    from fa3d.runtime import cli_run, outputs

    real = outputs.JsonLinesWriter.write

    def write_then_signal(self, rec):
        real(self, rec)
        if rec["frame"] == 3:
            os.kill(os.getpid(), sig)  # Python runs the handler at the next bytecode: before the video write

    monkeypatch.setattr(outputs.JsonLinesWriter, "write", write_then_signal)
    out, js = tmp_path / "out.avi", tmp_path / "out.jsonl"
    rc = cli_run.main(["--model", str(plumbing_model), "--source", str(blob_video), "--output", str(out),
                       "--json", str(js), "--headless"])
    assert rc == code
    recs = [json.loads(line) for line in js.read_text().splitlines()]
    assert [r["frame"] for r in recs] == [0, 1, 2, 3]
    assert count_video_frames(out) == 4, "the video holds every frame the JSON lines describe"
    assert no_partials(tmp_path) == []
    assert "after 4 frames" in capsys.readouterr().err, "the frame count says what the outputs hold"
