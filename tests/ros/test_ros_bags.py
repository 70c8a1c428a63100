"""fa-run with ROS bags: real faces (the bundled sample clip) in a rosbag2, REP-155 topics out, read back by
mcap + mcap-ros2-support; other bag formats; bad bags; Ctrl-C and errors leave a valid bag or none."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("rosbags", reason="the fa3d[ros] extra is not installed")
pytest.importorskip("mcap_ros2", reason="mcap-ros2-support (the dev extra) is not installed")

from ros_helpers import FRAME_ID, K, read_bag, sample_frames, stamp_ns, stamp_of, write_image_bag  # noqa: E402

from fa3d.runtime.cli_run import main  # noqa: E402
from tests.helpers.slow_fa_run import slow_fa_run  # noqa: E402
from fa3d.runtime.ros import bag_source  # noqa: E402
from fa3d.runtime.ros.bag_source import BagSource  # noqa: E402

N_FRAMES = 12


@pytest.fixture(scope="module")
def frames():
    from fa3d.runtime.default_model import DefaultModelMissing

    try:
        return sample_frames(N_FRAMES)
    except DefaultModelMissing:
        pytest.skip("the bundled sample clip is not installed")


@pytest.fixture(scope="module")
def raw_bag(frames, tmp_path_factory):
    return write_image_bag(tmp_path_factory.mktemp("bags") / "raw", frames)


@pytest.fixture(scope="module")
def jpeg_bag(frames, tmp_path_factory):
    return write_image_bag(tmp_path_factory.mktemp("bags") / "jpeg", frames, compressed=True,
                           topic="/camera/image_raw/compressed")


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if "partial" in p.name)


def _reference(bag, topic):
    """FaceAligner (VIDEO, fa-run's defaults, the bag's intrinsics) on the frames BagSource reads from ``bag``."""
    from fa3d.runtime import FaceAligner, FaceAlignerOptions, RunningMode
    from fa3d.runtime.camera import CameraIntrinsics

    out = []
    with BagSource(bag, topic) as src, FaceAligner.from_artifact(None, FaceAlignerOptions(
            mode=RunningMode.VIDEO, intrinsics=CameraIntrinsics(*K, dist=(0.0,) * 5))) as aligner:
        for f in src:
            out.append((f.stamp_ns, aligner.process_video(f.image, f.timestamp_ms)))
    return out


@pytest.mark.parametrize("which", ["raw", "jpeg"])
def test_bag_to_bag_with_real_faces(which, raw_bag, jpeg_bag, tmp_path, capsys):
    bag, topic = (raw_bag, "/camera/image_raw") if which == "raw" else (jpeg_bag, "/camera/image_raw/compressed")
    out = tmp_path / "faces"
    assert main(["--source", str(bag), "--topic", topic, "--out-bag", str(out), "--headless"]) == 0
    assert _leftovers(tmp_path) == []
    msgs = read_bag(out)
    by_topic: dict[str, list] = {}
    for t, log_time, m in msgs:
        by_topic.setdefault(t, []).append((log_time, m))

    tracked = by_topic["/humans/faces/tracked"]
    assert [stamp_ns(m.header) for _, m in tracked] == [stamp_of(i) for i in range(N_FRAMES)], \
        "one IdsList per input frame, with the input's stamps"
    assert [lt for lt, _ in tracked] == [stamp_of(i) + 5_000_000 for i in range(N_FRAMES)], "the input's log times"
    assert all(m.header.frame_id == FRAME_ID for _, m in tracked)

    reference = _reference(bag, topic)
    assert sum(len(faces) for _, faces in reference) >= N_FRAMES - 1, "the sample clip shows a face in each frame"
    landmarks = {t: [m for _, m in v] for t, v in by_topic.items() if t.endswith("/landmarks")}
    seen = {}
    for (stamp, faces), (_, ids) in zip(reference, tracked):
        assert ids.ids == [f"f{f.track_id:04d}" for f in faces]
        for f in faces:
            topic_lm = f"/humans/faces/f{f.track_id:04d}/landmarks"
            k = seen.get(topic_lm, 0)
            seen[topic_lm] = k + 1
            msg = landmarks[topic_lm][k]
            assert stamp_ns(msg.header) == stamp and (msg.width, msg.height) == (640, 480)
            got = np.array([[p.x * msg.width - 0.5, p.y * msg.height - 0.5] for p in msg.landmarks[:68]])
            np.testing.assert_allclose(got, f.landmarks[:, :2], atol=0.01)  # agree with FaceAligner, pixels
            assert msg.landmarks[0].c == pytest.approx(f.confidence, abs=1e-6)

    transforms = [t for _, m in by_topic["/tf"] for t in m.transforms]
    assert {t.child_frame_id for t in transforms} == {"face_f0000", "gaze_f0000"}
    assert all(t.header.frame_id == FRAME_ID for t in transforms), "face frames hang under the image's frame"
    assert all(0.2 < t.transform.translation.z < 3.0 for t in transforms), "a head within reach of the camera (m)"
    assert len(by_topic["/fa3d/landmarks_3d"]) == N_FRAMES
    assert {"/humans/faces/f0000/roi", "/humans/faces/f0000/cropped", "/humans/faces/f0000/aligned"} <= set(by_topic)
    assert "wrote" in capsys.readouterr().err


def test_bag_source_reads_frames_and_headers_exactly(raw_bag, frames):
    with BagSource(raw_bag) as src:
        assert src.topic == "/camera/image_raw" and src.intrinsics.fx == K[0] and src.count == N_FRAMES
        assert src.fps == pytest.approx(30.0, rel=0.02)  # from the whole bag's span: approximate
        got = list(src)
    assert [f.stamp_ns for f in got] == [stamp_of(i) for i in range(N_FRAMES)]
    assert all(np.array_equal(f.image, img) for f, img in zip(got, frames))
    assert got[1].timestamp_ms == pytest.approx(stamp_of(1) / 1e6)


@pytest.mark.parametrize("encoding", ["rgb8", "mono8", "rgba8"])
def test_other_encodings_and_sqlite_storage(frames, tmp_path, encoding):
    bag = write_image_bag(tmp_path / "b", frames[:2], encoding=encoding, storage="sqlite3")
    with BagSource(bag) as src:
        got = [f.image for f in src]
    want = frames[:2] if encoding != "mono8" else [np.repeat(
        np.asarray(__import__("cv2").cvtColor(f, __import__("cv2").COLOR_BGR2GRAY))[..., None], 3, 2) for f in frames[:2]]
    assert len(got) == 2 and all(np.array_equal(a, b) for a, b in zip(got, want))
    single = next(bag.glob("*.db3"))
    with BagSource(single) as src:  # a bare .db3 file
        assert len(list(src)) == 2


def test_ros1_bag(frames, tmp_path):
    from rosbags.rosbag1 import Writer
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS1_NOETIC)
    t = store.types
    path = tmp_path / "old.bag"
    with Writer(path) as w:
        conn = w.add_connection("/usb_cam/image_raw", "sensor_msgs/msg/Image", typestore=store)
        for i, img in enumerate(frames[:3]):
            s = stamp_of(i)
            msg = t["sensor_msgs/msg/Image"](
                header=t["std_msgs/msg/Header"](seq=i, stamp=t["builtin_interfaces/msg/Time"](
                    sec=s // 10**9, nanosec=s % 10**9), frame_id="usb_cam"),
                height=480, width=640, encoding="bgr8", is_bigendian=0, step=1920, data=img.reshape(-1))
            w.write(conn, s, store.serialize_ros1(msg, "sensor_msgs/msg/Image"))
    with BagSource(path) as src:
        got = list(src)
    assert [f.stamp_ns for f in got] == [stamp_of(i) for i in range(3)] and got[0].frame_id == "usb_cam"
    assert all(np.array_equal(f.image, img) for f, img in zip(got, frames))


def test_no_camera_info_means_no_metres(frames, tmp_path, capsys):
    bag = write_image_bag(tmp_path / "nocal", frames[:3], camera_info=None)
    out = tmp_path / "out"
    assert main(["--source", str(bag), "--out-bag", str(out), "--headless"]) == 0
    assert "no head pose in metres" in capsys.readouterr().err
    topics = {t for t, _, _ in read_bag(out)}
    assert "/tf" not in topics and "/fa3d/landmarks_3d" not in topics and "/humans/faces/f0000/landmarks" in topics
    out2 = tmp_path / "out2"
    assert main(["--source", str(bag), "--camera-info", "/camera/camera_info", "--out-bag", str(out2),
                 "--headless"]) == 3, "head pose in metres asked for, and the bag has no CameraInfo"
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "/camera/camera_info has no sensor_msgs/CameraInfo" in err
    assert not out2.exists() and _leftovers(tmp_path) == []
    uncal = write_image_bag(tmp_path / "uncal", frames[:1], k=(0.0, 0.0, 0.0, 0.0))
    assert main(["--source", str(uncal), "--camera-info", "/camera/camera_info", "--headless"]) == 3
    assert "without calibration" in capsys.readouterr().err


def test_topic_choice_and_missing_topic(frames, tmp_path, capsys):
    bag = write_image_bag(tmp_path / "two", frames[:2], extra_topics=("/depth/image_raw",))
    assert main(["--source", str(bag), "--headless"]) == 2
    err = capsys.readouterr().err
    assert "2 image topics" in err and "/camera/image_raw" in err and "/depth/image_raw" in err
    assert main(["--source", str(bag), "--topic", "/nope", "--out-bag", str(tmp_path / "o"), "--headless"]) == 3
    assert "no topic '/nope'" in capsys.readouterr().err and not (tmp_path / "o").exists()
    assert main(["--source", str(bag), "--topic", "/camera/camera_info", "--headless"]) == 3
    assert "not sensor_msgs/Image" in capsys.readouterr().err
    out = tmp_path / "ok"
    assert main(["--source", str(bag), "--topic", "/camera/image_raw", "--out-bag", str(out), "--headless"]) == 0
    assert sum(t == "/humans/faces/tracked" for t, _, _ in read_bag(out)) == 2


def test_unknown_encoding_stops_with_no_output_bag(frames, tmp_path, capsys):
    bag = write_image_bag(tmp_path / "depth", frames[:2], encoding="16UC1")
    out = tmp_path / "out"
    assert main(["--source", str(bag), "--out-bag", str(out), "--headless"]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'16UC1' is not supported" in err
    assert not out.exists() and _leftovers(tmp_path) == []


def test_corrupt_truncated_and_missing_bags(raw_bag, tmp_path, capsys):
    mcap = next(raw_bag.glob("*.mcap"))
    data = mcap.read_bytes()
    cut = tmp_path / "cut.mcap"
    cut.write_bytes(data[: len(data) // 3])
    garbage = tmp_path / "garbage.db3"
    garbage.write_bytes(b"this is not sqlite" * 100)
    noise = tmp_path / "noise.bag"
    noise.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    for bad in (cut, garbage, noise, tmp_path / "absent.mcap"):
        out = tmp_path / f"out_{bad.stem}"
        assert main(["--source", str(bad), "--out-bag", str(out), "--headless"]) == 3, bad
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and str(bad) in err, err
        assert not out.exists()
    assert _leftovers(tmp_path) == []


def test_ctrl_c_keeps_a_valid_shorter_bag(raw_bag, tmp_path, monkeypatch, capsys):
    real_iter = BagSource.__iter__

    def interrupted(self):
        for i, frame in enumerate(real_iter(self)):
            if i == 4:
                raise KeyboardInterrupt
            yield frame

    monkeypatch.setattr(BagSource, "__iter__", interrupted)
    out = tmp_path / "short"
    assert main(["--source", str(raw_bag), "--out-bag", str(out), "--headless"]) == 130
    tracked = [m for t, _, m in read_bag(out) if t == "/humans/faces/tracked"]
    assert [stamp_ns(m.header) for m in tracked] == [stamp_of(i) for i in range(4)]
    assert "finalised" in capsys.readouterr().err and _leftovers(tmp_path) == []


def test_a_second_ctrl_c_while_the_bag_is_closed_does_not_lose_it(raw_bag, tmp_path, monkeypatch, capsys):
    import os
    import signal

    from rosbags.rosbag2 import Writer

    real_iter, real_close = BagSource.__iter__, Writer.close

    def interrupted(self):
        for i, frame in enumerate(real_iter(self)):
            if i == 2:
                raise KeyboardInterrupt
            yield frame

    def close_with_second_ctrl_c(self):
        os.kill(os.getpid(), signal.SIGINT)  # the user presses Ctrl-C again while the index is written
        for _ in range(1000):
            pass
        return real_close(self)

    monkeypatch.setattr(BagSource, "__iter__", interrupted)
    monkeypatch.setattr(Writer, "close", close_with_second_ctrl_c)
    out = tmp_path / "twice"
    assert main(["--source", str(raw_bag), "--out-bag", str(out), "--headless"]) == 130
    assert sum(t == "/humans/faces/tracked" for t, _, _ in read_bag(out)) == 2
    assert _leftovers(tmp_path) == []


def test_error_in_the_middle_removes_the_bag(raw_bag, tmp_path, monkeypatch, capsys):
    calls = {"n": 0}
    real = bag_source.to_bgr

    def failing(msg, msgtype):
        calls["n"] += 1
        if calls["n"] == 4:
            raise bag_source.UnsupportedEncoding("image encoding 'weird' is not supported")
        return real(msg, msgtype)

    monkeypatch.setattr(bag_source, "to_bgr", failing)
    out = tmp_path / "gone"
    assert main(["--source", str(raw_bag), "--out-bag", str(out), "--headless"]) == 3
    assert "'weird'" in capsys.readouterr().err
    assert not out.exists() and _leftovers(tmp_path) == []


def test_out_bag_from_a_video_stamps_from_frame_times(tmp_path, capsys):
    from fa3d.runtime.default_model import DefaultModelMissing, sample_clip_path

    try:
        clip = sample_clip_path()
    except DefaultModelMissing:
        pytest.skip("the bundled sample clip is not installed")
    out = tmp_path / "video_faces"
    assert main(["--source", str(clip), "--max-frames", "4", "--fov", "60", "--out-bag", str(out),
                 "--frame-id", "cam", "--headless"]) == 0
    msgs = read_bag(out)
    tracked = [m for t, _, m in msgs if t == "/humans/faces/tracked"]
    assert [stamp_ns(m.header) for m in tracked] == [round(i * 1e9 / 30) for i in range(4)]
    tf = [tr for t, _, m in msgs if t == "/tf" for tr in m.transforms]
    assert tf and all(tr.header.frame_id == "cam" for tr in tf)


def test_usage_errors(raw_bag, tmp_path, capsys):
    (tmp_path / "exists").mkdir()
    cases = [
        (["--out-bag", str(tmp_path / "exists")], "exists; give a new name"),
        (["--out-bag", str(tmp_path / "x.mcap")], "not a file"),
        (["--source", str(raw_bag), "--out-bag", str(raw_bag)], "exists"),
        (["--topic", "/camera/image_raw"], "give --source BAG"),
        (["--port", "9000"], "add --foxglove"),
        (["--record", str(tmp_path / "r.json")], ".mcap file"),
        (["--source", str(raw_bag), "--camera-info", "/c", "--fov", "60"], "not both"),
    ]
    for argv, text in cases:
        assert main([*argv, "--headless"]) == 2, argv
        err = capsys.readouterr().err
        assert text in err and err.count("\n") == 1, (argv, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exists"]


def test_open_source_refuses_a_bag_with_a_pointer(raw_bag):
    from fa3d.runtime.sources import SourceError, open_source

    with pytest.raises(SourceError, match="a ROS bag"):
        open_source(str(raw_bag))




@pytest.mark.slow
def test_sigterm_keeps_a_valid_shorter_bag(jpeg_bag, tmp_path):
    import signal
    import subprocess
    import time

    out = tmp_path / "sigterm"
    p = subprocess.Popen(slow_fa_run(["--source", str(jpeg_bag), "--out-bag", str(out),
                          "--headless"]), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline, seen = time.monotonic() + 60, 0
        while seen < 3 and time.monotonic() < deadline:
            seen += p.stderr.readline().strip() == "frame"
        p.send_signal(signal.SIGTERM)
        rest = p.communicate(timeout=60)[1]
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 143, rest
    assert "terminated (SIGTERM)" in rest and str(out) in rest
    tracked = [m for t, _, m in read_bag(out) if t == "/humans/faces/tracked"]
    assert 2 <= len(tracked) < N_FRAMES, "a shorter bag with every frame processed before the signal"
    assert [stamp_ns(m.header) for m in tracked] == [stamp_of(i) for i in range(len(tracked))]
    assert _leftovers(tmp_path) == []


def test_without_the_ros_extra_bag_options_say_how_to_install_it(raw_bag, tmp_path, monkeypatch, capsys):
    from fa3d.runtime.ros import fa_run

    monkeypatch.setattr(fa_run, "available", lambda name: False)
    for argv in (["--source", str(raw_bag)], ["--out-bag", str(tmp_path / "o")], ["--foxglove"]):
        assert main([*argv, "--headless"]) == 2
        assert "pip install 'fa3d[ros]'" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
