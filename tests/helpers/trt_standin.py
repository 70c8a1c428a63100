"""THE STAND-IN for ``tensorrt`` and ``pycuda.driver``: it tests fa3d's own TensorRT logic, and builds nothing.

One fake GPU (:class:`Gpu`) provides both modules. Its "engine" is a small JSON record of what was built
(the source ONNX, the profile, the precision, the DLA core, the TensorRT version); "running" it runs that
ONNX with ONNX Runtime on the CPU (or, for a plumbing engine made by :func:`plumbing_plan`, returns the
input's per-sample mean), so that the data path and fa-verify's comparisons can be checked. Nothing run
through it is a TensorRT result.

It refuses what the real bindings refuse, where fa3d's code depends on it (TensorRT 8.5, 8.6, 10.x, 11.x):

* enums per version: 11 has no ``BuilderFlag.FP16/INT8`` and no ``EXPLICIT_BATCH``; ``STRONGLY_TYPED`` from
  9.x (accepted and ignored by 11, whose networks are always strongly typed); FP16/INT8 builder flags on a
  strongly typed network fail the build; ``Runtime.DLA_core`` exists in every version;
* a network made without ``EXPLICIT_BATCH`` before 10.0 cannot hold an ONNX model (the parser fails);
* a build without an optimisation profile, or with one that does not name the network's dynamic input,
  fails (``build_serialized_network`` returns None); so does a DLA build with a dynamic profile, a DLA core
  the device does not have, INT8 on a network without Q/DQ layers (no calibrator), and any DLA build on the
  TensorRT versions without DLA (10.8 to 11.4.0, 11.5; NVIDIA's "Working with DLA", 11.4.1 and 11.5.0);
* parser errors have ``node_name()``/``node_operator()`` only from 10.0 (8.5 and 8.6: ``node()`` only);
* ``set_input_shape`` returns False for an output or an unknown name or a shape outside the profile;
  ``set_tensor_address`` returns False for a name that is not an I/O tensor; ``execute_async_v3`` returns
  False before the input shape or every address is set; an engine from another TensorRT version does not
  deserialise (None);
* the engine inspector reports per-layer precisions only for engines built with DETAILED profiling
  verbosity, in the JSON schema of 10.x (``"Format/Datatype"``) or 11.x (``"Datatype"`` and ``"Format"``);
* pycuda contexts: a per-thread context stack; ``make_context`` makes the context current on the calling
  thread; ``detach()`` destroys the context when it is current on this thread (and pops it) or when this
  thread created it, and otherwise *leaks* it (pycuda's "leaked out-of-thread context"); ``free()`` and the
  release of pinned memory need a current context; TensorRT objects and streams record whether a context
  was current when they were released.

:meth:`Gpu.install` puts the modules into ``sys.modules`` and makes Polygraphy forget any TensorRT module it
loaded before (its lazy imports keep the first one), so every test sees its own version.
"""

from __future__ import annotations

import json
import sys
import threading
import types
from pathlib import Path
from typing import Any

import numpy as np
from packaging.version import Version

PLAN_MAGIC = b"FA3D-STANDIN-PLAN "
#: TensorRT versions [first, end) whose Linux builds have no DLA (10.7 was the last 10.x with DLA; 11.4.0 has it
#: only on Windows on ARM; 11.5.0 does not support JetPack). Stated here independently of fa3d's policy.
NO_DLA = ((Version("10.8"), Version("11.4.1")), (Version("11.5"), Version("11.6")))


class Enum:
    """A pybind11-like enum: members are attributes, ``__members__`` lists them, ``int(member)`` its value."""

    def __init__(self, name: str, members: list[str]) -> None:
        self.__name__ = name
        self.__members__ = {m: Member(name, m, i) for i, m in enumerate(members)}
        for m, v in self.__members__.items():
            setattr(self, m, v)


class Member:
    def __init__(self, enum: str, name: str, value: int) -> None:
        self.enum, self.name, self.value = enum, name, value

    def __int__(self) -> int:
        return self.value

    def __index__(self) -> int:
        return self.value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Member) and (other.enum, other.name) == (self.enum, self.name)

    def __hash__(self) -> int:
        return hash((self.enum, self.name))

    def __repr__(self) -> str:
        return f"{self.enum}.{self.name}"


def plumbing_plan(size: int, num_dense: int, profile=(1, 4, 16), version: str = "10.3.0",
                  dla_core: int | None = None) -> bytes:
    """A serialized stand-in engine with the fa3d output contract whose outputs are the input's per-sample mean."""
    return PLAN_MAGIC + json.dumps({"version": version, "onnx": None, "input": "input", "size": size,
                                    "num_dense": num_dense, "profile": list(profile), "precision": "fp32",
                                    "dla_core": dla_core, "detailed": True, "layers": []}).encode()


class Gpu:
    """One fake GPU: TensorRT ``version``, device memory by address, a call log (``log``, ``values``)."""

    def __init__(self, version: str = "10.3.0", *, gpu_name: str = "Fake GPU", cc=(8, 7), dla_cores: int = 0,
                 parse_ok: bool = True, build_ok: bool = True) -> None:
        self.version, self.v = version, Version(version)
        self.gpu_name, self.cc, self.dla_cores = gpu_name, cc, dla_cores
        self.parse_ok, self.build_ok = parse_ok, build_ok
        self.mem: dict[int, np.ndarray] = {}
        self.log: list[tuple] = []
        self.next_addr = 0x1000
        self._tls = threading.local()
        self.loggers = 0
        self.trt = _tensorrt(self)
        self.pycuda, self.driver = _pycuda(self)

    # ------------------------------------------------------------ bookkeeping
    def values(self, kind: str) -> list:
        """The logged values of ``kind`` (one value, or a tuple of them, per call)."""
        return [e[1] if len(e) == 2 else e[1:] for e in self.log if e[0] == kind]

    def stack(self) -> list:
        """This thread's CUDA context stack."""
        if not hasattr(self._tls, "stack"):
            self._tls.stack = []
        return self._tls.stack

    @property
    def ctx_depth(self) -> int:
        return len(self.stack())

    def current(self) -> bool:
        st = self.stack()
        return bool(st) and st[-1].alive

    def has_dla(self) -> bool:
        return not any(a <= self.v < b for a, b in NO_DLA)

    def modules(self) -> dict[str, types.ModuleType]:
        return {"tensorrt": self.trt, "pycuda": self.pycuda, "pycuda.driver": self.driver}

    def install(self, monkeypatch, *, pycuda: bool = True) -> "Gpu":
        """``sys.modules`` gets this GPU's modules (``pycuda=False``: pycuda missing); Polygraphy and fa3d forget
        the TensorRT module and logger of an earlier test."""
        for name, mod in self.modules().items():
            monkeypatch.setitem(sys.modules, name, mod if pycuda or name == "tensorrt" else None)
        forget_tensorrt(monkeypatch)
        return self


def forget_tensorrt(monkeypatch) -> None:
    """Polygraphy's lazy ``tensorrt`` imports and its logger, and fa3d's shared logger, start afresh."""
    from fa3d.runtime.backends import trt as trt_backend

    trt_backend._logger_for.cache_clear()
    for name, mod in list(sys.modules.items()):
        if not name.startswith("polygraphy") or mod is None:
            continue
        for attr, val in list(vars(mod).items()):
            if type(val).__name__ == "LazyModule" and "module" in vars(val):
                inner = vars(val)["module"]
                if inner is not None and getattr(inner, "__name__", "") == "tensorrt":
                    object.__setattr__(val, "module", None)
        if name == "polygraphy.backend.trt.util":
            monkeypatch.setattr(mod, "TRT_LOGGER", None)


# ---------------------------------------------------------------- tensorrt

def _tensorrt(g: Gpu) -> types.ModuleType:  # noqa: C901 - one module, many small classes
    v = g.v
    trt = types.ModuleType("tensorrt")
    trt.__version__ = g.version
    trt.__file__ = "<stand-in tensorrt>"
    trt.__doc__ = "STAND-IN for tensorrt (tests only; builds nothing)"
    net_flags = (["EXPLICIT_BATCH"] if v < Version("11") else []) + (["STRONGLY_TYPED"] if v >= Version("9") else [])
    trt.NetworkDefinitionCreationFlag = Enum("NetworkDefinitionCreationFlag", net_flags)
    trt.BuilderFlag = Enum("BuilderFlag", ["GPU_FALLBACK", "REFIT", "TF32"] +
                           (["FP16", "INT8"] if v < Version("11") else []))
    trt.MemoryPoolType = Enum("MemoryPoolType", ["WORKSPACE", "DLA_MANAGED_SRAM"])
    trt.DeviceType = Enum("DeviceType", ["GPU", "DLA"])
    trt.ProfilingVerbosity = Enum("ProfilingVerbosity", ["LAYER_NAMES_ONLY", "NONE", "DETAILED"])
    trt.LayerType = Enum("LayerType", ["CONVOLUTION", "ACTIVATION", "ELEMENTWISE", "SHAPE", "QUANTIZE",
                                       "DEQUANTIZE", "MATRIX_MULTIPLY", "OTHER"])
    trt.TensorIOMode = Enum("TensorIOMode", ["NONE", "INPUT", "OUTPUT"])
    trt.DataType = Enum("DataType", ["FLOAT", "HALF", "INT8", "INT32"])
    trt.LayerInformationFormat = Enum("LayerInformationFormat", ["ONELINE", "JSON"])
    trt.nptype = lambda dt: {"FLOAT": np.float32, "HALF": np.float16, "INT8": np.int8, "INT32": np.int32}[dt.name]

    class ILogger:
        def __init__(self) -> None:
            g.loggers += 1

    class Logger(ILogger):
        INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = 0, 1, 2, 3, 4

        def __init__(self, severity: int = 2) -> None:
            super().__init__()
            g.log.append(("Logger", severity))

    trt.ILogger, trt.Logger = ILogger, Logger
    _builder_side(g, trt)
    _runtime_side(g, trt)
    return trt


class _Released:
    """Records whether a CUDA context was current when the object was released."""

    kind = "object"
    gpu: Gpu

    def __del__(self):
        self.gpu.log.append(("release", self.kind, self.gpu.current()))


def _builder_side(g: Gpu, trt: types.ModuleType) -> None:  # noqa: C901
    v = g.v

    class Tensor:
        def __init__(self, name: str, shape: tuple[int, ...]) -> None:
            self.name, self.shape, self.is_shape_tensor, self.dtype = name, shape, False, trt.DataType.FLOAT

    class Layer:
        precision_is_set = False

        def __init__(self, name: str, op: str, type_: Member, quantized: bool) -> None:
            self.name, self.op, self.type, self.quantized = name, op, type_, quantized

    class Network:
        def __init__(self, flags: int) -> None:
            self.flags = flags
            self.inputs: list[Tensor] = []
            self.layers: list[Layer] = []
            self.onnx: str | None = None
            self.onnx_precision = "fp32"

        def flag(self, name: str) -> bool:
            member = trt.NetworkDefinitionCreationFlag.__members__.get(name)
            return member is not None and bool(self.flags & (1 << int(member)))

        @property
        def strongly_typed(self) -> bool:
            return v >= Version("11") or self.flag("STRONGLY_TYPED")

        @property
        def num_inputs(self) -> int:
            return len(self.inputs)

        def get_input(self, i: int) -> Tensor:
            return self.inputs[i]

        @property
        def num_layers(self) -> int:
            return len(self.layers)

        def __len__(self) -> int:
            return len(self.layers)

        def __iter__(self):
            return iter(self.layers)

    class ParserError:
        def __init__(self, node: int, name: str, desc: str) -> None:
            self._node, self._name, self._desc = node, name, desc

        def node(self) -> int:
            return self._node

        def desc(self) -> str:
            return self._desc

        def code(self) -> str:
            return "ErrorCode.UNSUPPORTED_NODE"

    if v >= Version("10"):
        ParserError.node_name = lambda self: self._name  # TensorRT >= 10.0
        ParserError.node_operator = lambda self: "Einsum"

    layer_types = {"Conv": "CONVOLUTION", "Relu": "ACTIVATION", "Sigmoid": "ACTIVATION", "QuantizeLinear": "QUANTIZE",
                   "DequantizeLinear": "DEQUANTIZE", "MatMul": "MATRIX_MULTIPLY", "Gemm": "MATRIX_MULTIPLY",
                   "Shape": "SHAPE", "Add": "ELEMENTWISE", "Mul": "ELEMENTWISE"}

    class OnnxParser:
        def __init__(self, network: Network, logger: ILogger) -> None:
            assert isinstance(logger, trt.ILogger), "OnnxParser needs a tensorrt.ILogger"
            self.network = network
            self.errors: list[ParserError] = []

        def parse_from_file(self, path: str) -> bool:
            import onnx

            g.log.append(("parse", Path(path).name))
            if not g.parse_ok:
                self.errors = [ParserError(7, "/head/Einsum", "No importer registered for op: Einsum")]
                return False
            if v < Version("10") and not self.network.flag("EXPLICIT_BATCH"):
                self.errors = [ParserError(0, "", "the ONNX parser supports explicit batch networks only")]
                return False
            model = onnx.load(path)
            init = {t.name for t in model.graph.initializer}
            for vi in model.graph.input:
                if vi.name not in init:
                    dims = tuple(d.dim_value if d.dim_value > 0 else -1 for d in vi.type.tensor_type.shape.dim)
                    self.network.inputs.append(Tensor(vi.name, dims))
            producer = {o: n for n in model.graph.node for o in n.output}
            for n in model.graph.node:
                quantized = any(producer.get(i) is not None and producer[i].op_type == "DequantizeLinear"
                                for i in n.input)
                type_ = getattr(trt.LayerType, layer_types.get(n.op_type, "OTHER"))
                self.network.layers.append(Layer(n.name or n.op_type, n.op_type, type_, quantized))
            half = any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer)
            self.network.onnx, self.network.onnx_precision = str(Path(path).resolve()), "fp16" if half else "fp32"
            return True

        @property
        def num_errors(self) -> int:
            return len(self.errors)

        def get_error(self, i: int) -> ParserError:
            return self.errors[i]

    class TimingCache:
        def __init__(self, blob: bytes) -> None:
            self.blob = blob

        def serialize(self) -> bytes:
            return f"timing-cache:{g.version}:{len(self.blob)}".encode()

    class Profile:
        def __init__(self) -> None:
            self.shapes: dict[str, tuple] = {}

        def set_shape(self, name: str, mn, opt, mx) -> None:
            self.shapes[name] = (tuple(mn), tuple(opt), tuple(mx))
            g.log.append(("profile.set_shape", name, tuple(mn), tuple(opt), tuple(mx)))

        def __bool__(self) -> bool:
            return bool(self.shapes)

    class Config:
        def __init__(self) -> None:
            self._cache: TimingCache | None = None
            self.DLA_core = -1
            self.default_device_type = trt.DeviceType.GPU
            self.profiling_verbosity = trt.ProfilingVerbosity.LAYER_NAMES_ONLY
            self.profiles: list[Profile] = []
            self.flags = {"TF32"}  # TF32 is on by default
            self.pools: dict[str, int] = {}
            if v < Version("11"):
                self.int8_calibrator = None

        def set_flag(self, flag: Member) -> None:
            g.log.append(("set_flag", flag.name))
            self.flags.add(flag.name)

        def clear_flag(self, flag: Member) -> None:
            g.log.append(("clear_flag", flag.name))
            self.flags.discard(flag.name)

        def get_flag(self, flag: Member) -> bool:
            return flag.name in self.flags

        def set_memory_pool_limit(self, pool: Member, size: int) -> None:
            g.log.append(("set_memory_pool_limit", pool.name, size))
            self.pools[pool.name] = size

        def get_memory_pool_limit(self, pool: Member) -> int:
            return self.pools.get(pool.name, 0)

        def add_optimization_profile(self, profile: Profile) -> int:
            g.log.append(("add_optimization_profile", dict(profile.shapes)))
            self.profiles.append(profile)
            return len(self.profiles) - 1

        @property
        def num_optimization_profiles(self) -> int:
            return len(self.profiles)

        def create_timing_cache(self, blob: bytes) -> TimingCache:
            g.log.append(("create_timing_cache", bytes(blob)))
            return TimingCache(bytes(blob))

        def set_timing_cache(self, cache: TimingCache, ignore_mismatch: bool) -> bool:
            ok = cache.blob == b"" or cache.blob.startswith(f"timing-cache:{g.version}:".encode())
            g.log.append(("set_timing_cache", cache.blob, ignore_mismatch, ok))
            if ok:
                self._cache = cache
            return ok

        def get_timing_cache(self) -> TimingCache | None:
            return self._cache

    def why_not(network: Network, config: Config) -> str | None:
        """What the real builder would refuse in this build."""
        dynamic = [t.name for t in network.inputs if -1 in t.shape]
        if dynamic and not config.profiles:
            return "the network has dynamic inputs, but no optimization profile has been defined"
        for p in config.profiles:
            missing = [n for n in dynamic if n not in p.shapes]
            if missing:
                return f"optimization profile is missing values for the network inputs {missing}"
        weak = config.flags & {"FP16", "INT8"}
        if weak and network.strongly_typed:
            return f"builder flags {sorted(weak)} are not allowed on a strongly typed network"
        has_qdq = any(layer.type in (trt.LayerType.QUANTIZE, trt.LayerType.DEQUANTIZE) for layer in network)
        if "INT8" in config.flags and not has_qdq and getattr(config, "int8_calibrator", None) is None:
            return "INT8 without Q/DQ layers, dynamic ranges or a calibrator"
        if config.default_device_type == trt.DeviceType.DLA:
            cores = g.dla_cores if g.has_dla() else 0
            if not 0 <= config.DLA_core < cores:
                return f"DLA core {config.DLA_core} requested, this device has {cores}"
            batches = {s[0] for p in config.profiles for shapes in p.shapes.values() for s in shapes}
            if len(batches) > 1:
                return "DLA needs static shapes (min = opt = max)"
        return None

    def plan(network: Network, config: Config) -> dict[str, Any]:
        inp = network.inputs[0]
        mn, opt, mx = config.profiles[0].shapes[inp.name]
        int8 = "INT8" in config.flags or (network.strongly_typed and any(
            layer.type == trt.LayerType.QUANTIZE for layer in network))
        half = "FP16" in config.flags or network.onnx_precision == "fp16"
        precision = "int8" if int8 else "fp16" if half else "fp32"
        layers = [{"name": layer.name, "type": layer.op,
                   "dtype": "Int8" if int8 and layer.quantized else "Half" if half else "Float"}
                  for layer in network if layer.type not in (trt.LayerType.QUANTIZE, trt.LayerType.DEQUANTIZE)]
        dla = config.DLA_core if config.default_device_type == trt.DeviceType.DLA else None
        return {"version": g.version, "onnx": network.onnx, "input": inp.name, "size": inp.shape[-1],
                "profile": [mn[0], opt[0], mx[0]], "precision": precision, "dla_core": dla,
                "detailed": config.profiling_verbosity == trt.ProfilingVerbosity.DETAILED, "layers": layers}

    class Builder:
        def __init__(self, logger: ILogger) -> None:
            assert isinstance(logger, trt.ILogger), "Builder needs a tensorrt.ILogger"
            g.log.append(("Builder",))

        @property
        def num_DLA_cores(self) -> int:  # noqa: N802 - TensorRT's name
            return g.dla_cores if g.has_dla() else 0

        def create_network(self, flags: int = 0) -> Network:
            g.log.append(("create_network", flags))
            return Network(flags)

        def create_builder_config(self) -> Config:
            return Config()

        def create_optimization_profile(self) -> Profile:
            return Profile()

        def build_serialized_network(self, network: Network, config: Config):
            why = why_not(network, config) or (None if g.build_ok else "out of memory (test)")
            g.log.append(("build_serialized_network", why))
            if why is not None:
                return None
            return PLAN_MAGIC + json.dumps(plan(network, config)).encode()

    trt.OnnxParser, trt.Builder = OnnxParser, Builder


def _runtime_side(g: Gpu, trt: types.ModuleType) -> None:  # noqa: C901
    sessions: dict[str, Any] = {}

    def session(path: str) -> Any:
        if path not in sessions:
            from fa3d.runtime.backends.onnxrt import cpu_session

            sessions[path] = cpu_session(path, 1)
        return sessions[path]

    def onnx_outputs(path: str, size: int, input_name: str) -> dict[str, tuple]:
        """Output shapes (batch -1) as one run at batch 1 gives them (the ONNX declares symbolic dims)."""
        sess = session(path)
        outs = sess.run(None, {input_name: np.zeros((1, 3, size, size), np.float32)})
        return {o.name: (-1, *v.shape[1:]) for o, v in zip(sess.get_outputs(), outs)}

    class Engine(_Released):
        kind = "engine"
        gpu = g

        def __init__(self, header: dict[str, Any]) -> None:
            self.h = header
            if header["onnx"] is None:  # a plumbing engine
                from fa3d.runtime.schema import NUM_LANDMARKS

                self.outputs = {"landmarks": (-1, NUM_LANDMARKS, 3), "rotation": (-1, 3, 3),
                                "dense": (-1, header["num_dense"], 3), "confidence": (-1, 1)}
            else:
                self.outputs = onnx_outputs(header["onnx"], header["size"], header["input"])
            self.names = [header["input"], *self.outputs]
            self.num_io_tensors = len(self.names)
            self.num_layers = len(header["layers"])
            self.profiling_verbosity = (trt.ProfilingVerbosity.DETAILED if header["detailed"]
                                        else trt.ProfilingVerbosity.LAYER_NAMES_ONLY)

        def get_tensor_name(self, i: int) -> str:
            return self.names[i]

        def get_tensor_mode(self, name: str) -> Member:
            return trt.TensorIOMode.INPUT if name == self.h["input"] else trt.TensorIOMode.OUTPUT

        def get_tensor_dtype(self, name: str) -> Member:
            return trt.DataType.FLOAT

        def get_tensor_profile_shape(self, name: str, profile: int):
            assert name == self.h["input"] and profile == 0, (name, profile)
            s = self.h["size"]
            return [(b, 3, s, s) for b in self.h["profile"]]

        def create_execution_context(self):
            return Context(self)

        def create_engine_inspector(self):
            return Inspector(self)

    class Inspector:
        def __init__(self, engine: Engine) -> None:
            self.engine = engine
            self.execution_context = None

        def get_layer_information(self, i: int, fmt: Member) -> str:
            assert fmt == trt.LayerInformationFormat.JSON
            layer = self.engine.h["layers"][i]
            if not self.engine.h["detailed"]:
                return json.dumps(layer["name"])
            fmt_name = {"Float": "Row major linear FP32 format (kLINEAR)", "Half": "Channel major FP16 format "
                        "where channel % 8 == 0 (kHWC8)", "Int8": "Four wide channel vectorized row major Int8 "
                        "format (kCHW4)"}[layer["dtype"]]
            out = ({"Name": layer["name"] + "_out", "Datatype": layer["dtype"], "Format": fmt_name}
                   if g.v >= Version("11") else {"Name": layer["name"] + "_out", "Format/Datatype": fmt_name})
            return json.dumps({"Name": layer["name"], "LayerType": layer["type"], "Outputs": [out]})

        def get_engine_information(self, fmt: Member) -> str:
            layers = [json.loads(self.get_layer_information(i, fmt)) for i in range(self.engine.num_layers)]
            io = ({"I/O Tensors": [{"Name": n} for n in self.engine.names]} if g.v >= Version("11")
                  else {"Bindings": list(self.engine.names)})
            return json.dumps({"Layers": layers, **io})

    class Context(_Released):
        kind = "context"
        gpu = g

        def __init__(self, engine: Engine) -> None:
            self.engine = engine
            self.batch: int | None = None
            self.addr: dict[str, int] = {}

        def set_input_shape(self, name: str, shape) -> bool:
            g.log.append(("set_input_shape", name, tuple(shape)))
            assert g.ctx_depth > 0, "set_input_shape outside a pushed CUDA context"
            h = self.engine.h
            lo, _, hi = h["profile"]
            if name != h["input"] or not (lo <= shape[0] <= hi) or tuple(shape[1:]) != (3, h["size"], h["size"]):
                g.log.append(("shape_refused", name, tuple(shape)))
                return False
            self.batch = int(shape[0])
            return True

        def get_tensor_shape(self, name: str) -> tuple:
            if name == self.engine.h["input"]:
                s = self.engine.h["size"]
                return (self.batch if self.batch is not None else -1, 3, s, s)
            shape = self.engine.outputs[name]
            return (self.batch if self.batch is not None else -1, *shape[1:])

        def set_tensor_address(self, name: str, addr: int) -> bool:
            g.log.append(("set_tensor_address", name, addr))
            if name not in self.engine.names:
                return False
            self.addr[name] = int(addr)
            return True

        def execute_async_v3(self, stream_handle: int) -> bool:
            g.log.append(("execute_async_v3", stream_handle, self.batch))
            assert g.current(), "execute_async_v3 without a current CUDA context"
            if self.batch is None or any(n not in self.addr for n in self.engine.names):
                return False
            h, b = self.engine.h, self.batch
            s = h["size"]
            x = g.mem[self.addr[h["input"]]].view(np.float32)[: b * 3 * s * s].reshape(b, 3, s, s)
            for k, val in self._run(x).items():
                flat = np.ascontiguousarray(val, np.float32).ravel()
                g.mem[self.addr[k]].view(np.float32)[: flat.size] = flat
            return True

        def _run(self, x: np.ndarray) -> dict[str, np.ndarray]:
            h = self.engine.h
            if h["onnx"] is None:
                m = x.mean(axis=(1, 2, 3)).astype(np.float32)  # per-sample mean: shows the data path
                outs = {}
                for k, shape in self.engine.outputs.items():
                    val = np.eye(3, dtype=np.float32)[None] if k == "rotation" else \
                        (-m if k == "dense" else m).reshape(-1, *([1] * (len(shape) - 1)))
                    outs[k] = np.broadcast_to(val, (len(x), *shape[1:]))
                return outs
            outs = session(h["onnx"]).run(list(self.engine.outputs), {h["input"]: x})
            return dict(zip(self.engine.outputs, outs))

    class Runtime(_Released):
        kind = "runtime"
        gpu = g

        def __init__(self, logger) -> None:
            assert isinstance(logger, trt.ILogger), "Runtime needs a tensorrt.ILogger"
            self._dla = -1

        @property
        def DLA_core(self) -> int:  # noqa: N802 - TensorRT's name (present in 8.5 to 11.x)
            return self._dla

        @DLA_core.setter
        def DLA_core(self, core: int) -> None:  # noqa: N802
            g.log.append(("runtime.DLA_core", core))
            self._dla = core

        def deserialize_cuda_engine(self, data: bytes):
            g.log.append(("deserialize", len(data), self._dla))
            if not bytes(data).startswith(PLAN_MAGIC):
                return None
            header = json.loads(bytes(data)[len(PLAN_MAGIC):])
            if header["version"] != g.version:  # an engine from another TensorRT version
                return None
            return Engine(header)

    trt.Runtime = Runtime


# ---------------------------------------------------------------- pycuda

def _pycuda(g: Gpu):
    pkg = types.ModuleType("pycuda")
    drv = types.ModuleType("pycuda.driver")
    pkg.driver = drv
    pkg.__version__ = drv.__version__ = "2025.1.2 (stand-in)"

    class Ctx:
        def __init__(self) -> None:
            self.alive = True
            self.creator = threading.get_ident()

        def push(self) -> None:
            assert self.alive, "push of a destroyed context"
            g.stack().append(self)
            g.log.append(("push",))

        @staticmethod
        def pop() -> None:
            st = g.stack()
            assert st, "pop with no current context"
            st.pop()
            g.log.append(("pop",))

        def detach(self) -> None:
            st = g.stack()
            if st and st[-1] is self:  # current here: cuCtxDetach, which pops it
                st.pop()
                self.alive = False
                g.log.append(("detach", "destroyed"))
            elif threading.get_ident() == self.creator:  # pushed, detached and popped by pycuda
                self.alive = False
                g.log.append(("detach", "destroyed"))
            else:  # pycuda: "leaked out-of-thread context"
                g.log.append(("detach", "leaked"))

    class Device:
        def __init__(self, i: int) -> None:
            g.log.append(("Device", i))

        def name(self) -> str:
            return g.gpu_name

        def compute_capability(self):
            return g.cc

        def make_context(self) -> Ctx:
            ctx = Ctx()
            g.stack().append(ctx)  # created current on this thread, as pycuda does
            g.log.append(("make_context",))
            return ctx

    class Stream:
        handle = 4242

        def synchronize(self) -> None:
            g.log.append(("synchronize",))

        def __del__(self):
            g.log.append(("release", "stream", g.current()))

    class Pinned(np.ndarray):
        def __del__(self):
            if getattr(self, "_owner", False):
                g.log.append(("release", "pinned", g.current()))

    class DevMem:
        def __init__(self, nbytes: int) -> None:
            self.addr = g.next_addr
            g.next_addr += nbytes + 256
            g.mem[self.addr] = np.zeros(nbytes, np.uint8)

        def __int__(self) -> int:
            return self.addr

        def free(self) -> None:
            assert g.current(), "DeviceAllocation.free() without a current CUDA context"
            g.log.append(("free", self.addr))
            del g.mem[self.addr]

    def pagelocked_empty(n: int, dtype):
        g.log.append(("pagelocked_empty", n, np.dtype(dtype).name))
        a = np.zeros(n, dtype).view(Pinned)
        a._owner = True
        return a

    def mem_alloc(nbytes: int) -> DevMem:
        g.log.append(("mem_alloc", nbytes))
        return DevMem(nbytes)

    def memcpy_htod_async(dev, host, stream) -> None:
        g.log.append(("htod", host.nbytes))
        g.mem[int(dev)][: host.nbytes] = np.ascontiguousarray(host).view(np.uint8)

    def memcpy_dtoh_async(host, dev, stream) -> None:
        g.log.append(("dtoh", host.nbytes))
        host.view(np.uint8)[:] = g.mem[int(dev)][: host.nbytes]

    drv.init = lambda: g.log.append(("init",))
    drv.Device, drv.Stream, drv.pagelocked_empty, drv.mem_alloc = Device, Stream, pagelocked_empty, mem_alloc
    drv.memcpy_htod_async, drv.memcpy_dtoh_async = memcpy_htod_async, memcpy_dtoh_async
    return pkg, drv
