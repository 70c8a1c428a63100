"""A STAND-IN for the ``tensorrt`` module that records every call: it tests fa3d's own build logic only.

It is not TensorRT and builds nothing: ``build_serialized_network`` returns a placeholder blob. It
models what differs between versions, and refuses what the real bindings refuse, for everything
fa3d's builder calls:

* enums: TensorRT 11 has no ``BuilderFlag.FP16/INT8`` and no ``EXPLICIT_BATCH``; 10.x still lists
  ``EXPLICIT_BATCH`` (deprecated, ignored); ``STRONGLY_TYPED`` exists from 9.x; from 10.12 setting
  ``FP16``/``INT8`` is recorded as deprecated (weak typing);
* parser errors have ``node_name()``/``node_operator()`` only from 10.0 (8.5 and 8.6: ``node()`` only);
* a DLA build (``default_device_type = DLA``) with a dynamic profile fails (returns None): the DLA needs
  min = opt = max;
* ``IInt8EntropyCalibrator2``, ``config.int8_calibrator`` and ``set_calibration_profile`` exist before 11
  only; a calibrator whose batch differs from the calibration profile's OPT batch fails the build;
* ``Logger`` counts its instances (TensorRT warns about a second logger).

The parser reads the real ONNX file with ``onnx`` to report the network input it would create (a dynamic
batch becomes -1).
"""

from __future__ import annotations

import types
from dataclasses import dataclass, field
from typing import Any

from packaging.version import Version


def _enum(name: str, members: list[str]) -> type:
    return type(name, (), {m: _Member(name, m, i) for i, m in enumerate(members)})


@dataclass(frozen=True)
class _Member:
    enum: str
    name: str
    value: int

    def __int__(self) -> int:
        return self.value


@dataclass
class Record:
    calls: list[tuple[str, Any]] = field(default_factory=list)

    def add(self, what: str, value: Any = None) -> None:
        self.calls.append((what, value))

    def values(self, what: str) -> list[Any]:
        return [v for w, v in self.calls if w == what]


class _ParserError:
    def __init__(self, node: int, name: str, desc: str) -> None:
        self._node, self._name, self._desc = node, name, desc

    def node(self) -> int:
        return self._node

    def desc(self) -> str:
        return self._desc

    def code(self) -> str:
        return "ErrorCode.UNSUPPORTED_NODE"


def make_standin(version: str, *, parse_ok: bool = True, build_ok: bool = True, dla_cores: int = 0) -> types.ModuleType:
    """A module object to inject as ``sys.modules['tensorrt']`` (with ``.record`` holding the calls)."""
    v = Version(version)
    rec = Record()
    mod = types.ModuleType("tensorrt")
    mod.__version__ = version
    mod.record = rec
    mod.__doc__ = "STAND-IN for tensorrt (tests only; builds nothing)"

    class ParserError(_ParserError):
        def node_name(self) -> str:  # TensorRT >= 10.0
            return self._name

        def node_operator(self) -> str:
            return "Einsum"

    error_cls = ParserError if v >= Version("10") else _ParserError
    mod.loggers = 0
    net_flags = (["EXPLICIT_BATCH"] if v < Version("11") else []) + (["STRONGLY_TYPED"] if v >= Version("9") else [])
    mod.NetworkDefinitionCreationFlag = _enum("NetworkDefinitionCreationFlag", net_flags)
    flags = ["GPU_FALLBACK", "REFIT", "TF32"] + (["FP16", "INT8"] if v < Version("11") else [])
    mod.BuilderFlag = _enum("BuilderFlag", flags)
    mod.MemoryPoolType = _enum("MemoryPoolType", ["WORKSPACE", "DLA_MANAGED_SRAM"])
    mod.DeviceType = _enum("DeviceType", ["GPU", "DLA"])

    class Logger:
        WARNING = 2

        def __init__(self, level: int) -> None:
            mod.loggers += 1
            rec.add("Logger", level)

    class Tensor:
        def __init__(self, name: str, shape: tuple[int, ...]) -> None:
            self.name, self.shape = name, shape

    class Network:
        def __init__(self, flags: int) -> None:
            self.flags = flags
            self.inputs: list[Tensor] = []

        @property
        def num_inputs(self) -> int:
            return len(self.inputs)

        def get_input(self, i: int) -> Tensor:
            return self.inputs[i]

    class OnnxParser:
        def __init__(self, network: Network, logger: Logger) -> None:
            self.network = network
            self.errors: list[_ParserError] = []

        def parse(self, data: bytes) -> bool:
            import onnx

            rec.add("parse", len(data))
            if not parse_ok:
                self.errors = [error_cls(7, "/head/Einsum", "No importer registered for op: Einsum")]
                return False
            model = onnx.load_from_string(data)
            init = {t.name for t in model.graph.initializer}
            for vi in model.graph.input:
                if vi.name in init:
                    continue
                dims = tuple(d.dim_value if d.dim_value > 0 else -1 for d in vi.type.tensor_type.shape.dim)
                self.network.inputs.append(Tensor(vi.name, dims))
            return True

        @property
        def num_errors(self) -> int:
            return len(self.errors)

        def get_error(self, i: int) -> _ParserError:
            return self.errors[i]

    class TimingCache:
        def __init__(self, blob: bytes) -> None:
            self.blob = blob

        def serialize(self) -> bytes:
            return f"timing-cache:{version}:{len(self.blob)}".encode()

    class Profile:
        def __init__(self) -> None:
            self.shapes: tuple = ()

        def set_shape(self, name: str, mn, opt, mx) -> None:
            self.shapes = (tuple(mn), tuple(opt), tuple(mx))
            rec.add("profile.set_shape", (name, tuple(mn), tuple(opt), tuple(mx)))

    class Config:
        def __init__(self) -> None:
            self._cache: TimingCache | None = None
            self._dla_core = -1
            self._device = None
            self.profiles: list[Profile] = []
            self.calib_profile: Profile | None = None
            if v < Version("11"):
                self.int8_calibrator = None

        def set_memory_pool_limit(self, pool: _Member, size: int) -> None:
            rec.add("set_memory_pool_limit", (pool.name, size))

        def set_flag(self, flag: _Member) -> None:
            rec.add("set_flag", flag.name)
            if flag.name in ("FP16", "INT8") and v >= Version("10.12"):
                rec.add("deprecated", f"BuilderFlag.{flag.name} (weak typing) is deprecated from 10.12")

        def add_optimization_profile(self, profile: Profile) -> int:
            rec.add("add_optimization_profile", 1)
            self.profiles.append(profile)
            return 0

        def create_timing_cache(self, blob: bytes) -> TimingCache:
            rec.add("create_timing_cache", bytes(blob))
            return TimingCache(bytes(blob))

        def set_timing_cache(self, cache: TimingCache, ignore_mismatch: bool) -> bool:
            ok = cache.blob == b"" or cache.blob.startswith(f"timing-cache:{version}:".encode())
            rec.add("set_timing_cache", (cache.blob, ignore_mismatch, ok))
            if ok:
                self._cache = cache
            return ok

        def get_timing_cache(self) -> TimingCache | None:
            return self._cache

        @property
        def default_device_type(self):
            return self._device

        @default_device_type.setter
        def default_device_type(self, value: _Member) -> None:
            rec.add("default_device_type", value.name)
            self._device = value

        @property
        def DLA_core(self) -> int:  # noqa: N802 (TensorRT's name)
            return self._dla_core

        @DLA_core.setter
        def DLA_core(self, value: int) -> None:  # noqa: N802
            rec.add("DLA_core", value)
            self._dla_core = value

    if v < Version("11"):
        def set_calibration_profile(self, profile: Profile) -> bool:
            rec.add("set_calibration_profile", profile.shapes)
            self.calib_profile = profile
            return True

        Config.set_calibration_profile = set_calibration_profile

        class IInt8EntropyCalibrator2:
            def __init__(self) -> None:
                rec.add("IInt8EntropyCalibrator2")

        mod.IInt8EntropyCalibrator2 = IInt8EntropyCalibrator2

    def _build_fails(config: Config) -> str | None:
        shapes = config.profiles[0].shapes if config.profiles else ()
        if config._device is not None and config._device.name == "DLA" and len({s[0] for s in shapes}) > 1:
            return "DLA needs static shapes (min = opt = max)"
        cal = getattr(config, "int8_calibrator", None)
        if cal is not None:
            if config.calib_profile is None:
                return "dynamic shapes and a calibrator need a calibration profile"
            if cal.get_batch_size() != config.calib_profile.shapes[1][0]:
                return "the calibrator's batch differs from the calibration profile's OPT batch"
        return None

    class Builder:
        num_DLA_cores = dla_cores

        def __init__(self, logger: Logger) -> None:
            rec.add("Builder")

        def create_network(self, flags: int = 0) -> Network:
            rec.add("create_network", flags)
            return Network(flags)

        def create_builder_config(self) -> Config:
            return Config()

        def create_optimization_profile(self) -> Profile:
            return Profile()

        def build_serialized_network(self, network: Network, config: Config):
            why = _build_fails(config)
            rec.add("build_serialized_network", why)
            return b"STAND-IN ENGINE (not a TensorRT engine)" if build_ok and why is None else None

    mod.Logger, mod.OnnxParser, mod.Builder = Logger, OnnxParser, Builder
    return mod
