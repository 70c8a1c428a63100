"""The Foxglove view: a WebSocket client on 127.0.0.1 receives image, annotation and transform messages of real
faces (bounded in time); fa-run --record writes the same to an MCAP file; a taken port is exit 5."""

from __future__ import annotations

import base64
import json
import socket
import struct
import time

import pytest

pytest.importorskip("foxglove", reason="foxglove-sdk (the fa3d[ros] extra) is not installed")
pytest.importorskip("websockets", reason="websockets (the dev extra) is not installed")

from ros_helpers import sample_frames  # noqa: E402

from fa3d.runtime.camera import CameraIntrinsics  # noqa: E402
from fa3d.runtime.cli_run import main  # noqa: E402
from fa3d.runtime.ros.foxglove_view import FoxgloveView  # noqa: E402
from fa3d.runtime.ros.messages import Header  # noqa: E402

INTRINSICS = CameraIntrinsics(500.0, 500.0, 319.5, 239.5)
DEADLINE_S = 15.0


@pytest.fixture(scope="module")
def faces_and_frames():
    from fa3d.runtime import FaceAligner, FaceAlignerOptions, RunningMode
    from fa3d.runtime.default_model import DefaultModelMissing

    try:
        frames = sample_frames(3)
    except DefaultModelMissing:
        pytest.skip("the bundled sample clip is not installed")
    with FaceAligner.from_artifact(None, FaceAlignerOptions(mode=RunningMode.VIDEO, intrinsics=INTRINSICS)) as al:
        return [(al.process_video(f, i * 33.0), f) for i, f in enumerate(frames)]


def _decoder(channel: dict):
    """A protobuf class for an advertised channel (its schema is a base64 FileDescriptorSet)."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    fds = descriptor_pb2.FileDescriptorSet.FromString(base64.b64decode(channel["schema"]))
    pool = descriptor_pool.DescriptorPool()
    for fd in fds.file:
        pool.Add(fd)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(channel["schemaName"]))


def test_websocket_client_receives_image_annotations_and_transforms(faces_and_frames):
    pytest.importorskip("google.protobuf", reason="protobuf is not installed")
    from websockets.sync.client import connect

    deadline = time.monotonic() + DEADLINE_S
    with FoxgloveView(serve=True, host="127.0.0.1", port=0) as view:
        with connect(f"ws://127.0.0.1:{view.port}", subprotocols=["foxglove.sdk.v1"], open_timeout=5) as ws:
            channels = {}
            while not channels and time.monotonic() < deadline:
                msg = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
                if msg["op"] == "advertise":
                    channels = {c["id"]: c for c in msg["channels"]}
            by_topic = {c["topic"]: c for c in channels.values()}
            assert by_topic["/fa3d/image"]["schemaName"] == "foxglove.CompressedImage"
            assert by_topic["/tf"]["schemaName"] == "foxglove.FrameTransforms"
            subs = {k: cid for k, cid in enumerate(channels)}
            ws.send(json.dumps({"op": "subscribe", "subscriptions": [{"id": k, "channelId": c} for k, c in subs.items()]}))
            received: dict[str, list] = {}
            frame = 0
            while time.monotonic() < deadline and not {"/fa3d/image", "/fa3d/annotations", "/tf"} <= set(received):
                faces, image = faces_and_frames[frame % len(faces_and_frames)]
                view.log(faces, Header(1_000_000_000 + frame * 33_000_000, "cam"), image, INTRINSICS)
                frame += 1
                try:
                    while True:
                        data = ws.recv(timeout=0.2)
                        if isinstance(data, bytes) and data[0] == 1:  # MessageData: op, subscription, log time
                            _, sub, log_time = struct.unpack_from("<BIQ", data)
                            channel = channels[subs[sub]]
                            received.setdefault(channel["topic"], []).append((log_time, channel, data[13:]))
                except TimeoutError:
                    pass
    assert {"/fa3d/image", "/fa3d/annotations", "/tf"} <= set(received), f"got only {sorted(received)}"
    log_time, ch, payload = received["/tf"][0]
    tf = _decoder(ch).FromString(payload)
    assert [t.child_frame_id for t in tf.transforms] == ["face_f0000", "gaze_f0000"]
    assert tf.transforms[0].parent_frame_id == "cam" and 0.2 < tf.transforms[0].translation.z < 3.0
    _, ch, payload = received["/fa3d/annotations"][0]
    ann = _decoder(ch).FromString(payload)
    assert len(ann.points[0].points) == 68 and ann.texts[0].text.startswith("f0000")
    _, ch, payload = received["/fa3d/image"][0]
    img = _decoder(ch).FromString(payload)
    assert img.format == "jpeg" and img.frame_id == "cam" and img.data[:2] == b"\xff\xd8"
    assert log_time >= 1_000_000_000, "messages are logged at the frames' stamps"


def _read_mcap(path):
    from mcap.reader import make_reader

    with open(path, "rb") as f:
        reader = make_reader(f)
        return [(ch.topic, schema.name, msg.log_time) for schema, ch, msg in reader.iter_messages()]


def test_fa_run_serves_and_records_the_view(tmp_path, capsys):
    from fa3d.runtime.default_model import DefaultModelMissing, sample_clip_path

    try:
        clip = sample_clip_path()
    except DefaultModelMissing:
        pytest.skip("the bundled sample clip is not installed")
    rec = tmp_path / "view.mcap"
    assert main(["--source", str(clip), "--max-frames", "3", "--fov", "60", "--foxglove", "--port", "0",
                 "--record", str(rec), "--headless"]) == 0
    assert "Foxglove view on ws://127.0.0.1:" in capsys.readouterr().err
    msgs = _read_mcap(rec)
    count = {}
    for topic, schema, _ in msgs:
        count[(topic, schema)] = count.get((topic, schema), 0) + 1
    assert count[("/fa3d/image", "foxglove.CompressedImage")] == 3
    assert count[("/fa3d/annotations", "foxglove.ImageAnnotations")] == 3
    assert count[("/tf", "foxglove.FrameTransforms")] == 3
    assert count[("/fa3d/landmarks_3d", "foxglove.SceneUpdate")] == 3
    assert sorted({t for _, _, t in msgs}) == [round(i * 1e9 / 30) for i in range(3)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["view.mcap"], "no temporary file left"
    rec2 = tmp_path / "only.mcap"
    assert main(["--source", str(clip), "--max-frames", "2", "--record", str(rec2), "--headless"]) == 0
    topics = {t for t, _, _ in _read_mcap(rec2)}
    assert topics == {"/fa3d/image", "/fa3d/annotations"}, "no intrinsics: no calibration, /tf or scene"


def test_a_taken_port_is_an_output_error(tmp_path, capsys):
    from fa3d.runtime.default_model import DefaultModelMissing, sample_clip_path

    try:
        clip = sample_clip_path()
    except DefaultModelMissing:
        pytest.skip("the bundled sample clip is not installed")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        rec = tmp_path / "r.mcap"
        assert main(["--source", str(clip), "--max-frames", "2", "--foxglove", "--port", str(port),
                     "--record", str(rec), "--headless"]) == 5
    err = capsys.readouterr().err
    assert f"127.0.0.1:{port}" in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == [], "the recording is removed when the run fails"
