"""A STAND-IN for rclpy and the ROS 2 message packages, for testing fa-ros-node's own logic here (no ROS 2
install): it records subscriptions, publishers and what is published. It is not ROS: nothing goes over DDS,
QoS is only recorded, and the message classes are empty placeholders (the node publishes serialised CDR)."""

from __future__ import annotations

import types
from dataclasses import dataclass, field

SENSOR_DATA = "qos_profile_sensor_data"
MESSAGE_PACKAGES = {
    "sensor_msgs": ("Image", "CompressedImage", "CameraInfo"),
    "hri_msgs": ("IdsList", "NormalizedRegionOfInterest2D", "FacialLandmarks"),
    "tf2_msgs": ("TFMessage",),
    "visualization_msgs": ("MarkerArray",),
}


def message_modules(skip: tuple[str, ...] = ()) -> dict[str, types.ModuleType]:
    """``{"sensor_msgs": module, "sensor_msgs.msg": module, ...}`` with a placeholder class per message."""
    out = {}
    for pkg, names in MESSAGE_PACKAGES.items():
        if pkg in skip:
            continue
        msg = types.ModuleType(f"{pkg}.msg")
        for n in names:
            setattr(msg, n, type(n, (), {"__module__": f"{pkg}.msg"}))
        root = types.ModuleType(pkg)
        root.msg = msg
        out[pkg], out[f"{pkg}.msg"] = root, msg
    return out


@dataclass
class Publisher:
    msg_type: type
    topic: str
    qos: object
    sent: list = field(default_factory=list)
    destroyed: bool = False

    def publish(self, data) -> None:
        assert not self.destroyed, f"publish on destroyed publisher {self.topic}"
        assert isinstance(data, bytes), "the node publishes serialised messages (bytes)"
        self.sent.append(data)


@dataclass
class Subscription:
    msg_type: type
    topic: str
    callback: object
    qos: object
    raw: bool


class Logger:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def info(self, text: str) -> None:
        self.lines.append(("info", text))

    def warning(self, text: str) -> None:
        self.lines.append(("warning", text))


class Node:
    def __init__(self, name: str, overrides: dict | None = None) -> None:
        self.name, self.overrides = name, dict(overrides or {})
        self.params: dict[str, object] = {}
        self.subscriptions: list[Subscription] = []
        self.publishers: dict[str, Publisher] = {}
        self.all_publishers: list[Publisher] = []
        self.logger = Logger()
        self.destroyed = False

    def declare_parameter(self, name, default):
        self.params[name] = self.overrides.get(name, default)

    def get_parameter(self, name):
        return types.SimpleNamespace(value=self.params[name])

    def create_subscription(self, msg_type, topic, callback, qos, raw=False):
        sub = Subscription(msg_type, topic, callback, qos, raw)
        self.subscriptions.append(sub)
        return sub

    def create_publisher(self, msg_type, topic, qos):
        pub = Publisher(msg_type, topic, qos)
        self.publishers[topic] = pub
        self.all_publishers.append(pub)
        return pub

    def destroy_publisher(self, pub) -> None:
        pub.destroyed = True
        if self.publishers.get(pub.topic) is pub:
            del self.publishers[pub.topic]

    def get_logger(self):
        return self.logger

    def destroy_node(self) -> None:
        self.destroyed = True


def make_rclpy(overrides: dict | None = None, spin=None) -> types.ModuleType:
    """A stand-in ``rclpy`` module; ``spin(node)`` runs the given function (the test's frames) and returns."""
    mod = types.ModuleType("rclpy")
    state = {"ok": False, "nodes": []}

    def init(args=None):
        state["ok"], state["args"] = True, args

    def create_node(name):
        node = Node(name, overrides)
        state["nodes"].append(node)
        return node

    mod.init, mod.create_node, mod.state = init, create_node, state
    mod.spin = (lambda node: spin(node)) if spin else (lambda node: None)
    mod.ok = lambda: state["ok"]
    mod.shutdown = lambda: state.update(ok=False)
    qos = types.ModuleType("rclpy.qos")
    qos.qos_profile_sensor_data = SENSOR_DATA
    mod.qos = qos
    return mod
