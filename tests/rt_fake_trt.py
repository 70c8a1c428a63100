"""A STAND-IN for the ``tensorrt`` and ``pycuda.driver`` modules, to test TrtBackend's own logic.

It records calls (versions, profile shapes, buffer sizes, addresses, syncs) and moves bytes between
"host" and "device" numpy buffers; its "engine" computes trivial outputs from the input so that the data
path can be checked. It is not TensorRT and nothing run through it is a TensorRT result.

It is faithful to what the real bindings refuse or do silently, where our code depends on it:

* pycuda contexts: a per-thread context stack; ``make_context`` makes the context current on the calling
  thread; ``detach()`` destroys the context when it is current on this thread (and pops it) or when this
  thread created it, and otherwise *leaks* it (pycuda's "leaked out-of-thread context"); ``free()`` and
  the release of pinned memory need a current context;
* TensorRT objects (runtime, engine, execution context) and streams record whether a context was current
  when they were released, and ``Runtime.DLA_core`` (present in 8.5 to 10.x) records when it was set;
* an engine built for a static profile (DLA) refuses other shapes in ``set_input_shape``.
"""

from __future__ import annotations

import threading
import types

import numpy as np

from fa3d.runtime.schema import NUM_LANDMARKS

PLAN_BYTES = b"FAKE-PLAN"


class World:
    """Shared state of one fake GPU: device memory by address and a call log."""

    def __init__(self, size: int, num_dense: int, profile=(1, 4, 16), trt_version="10.3.0",
                 gpu_name="Fake GPU", cc=(8, 7)) -> None:
        self.size, self.num_dense, self.profile = size, num_dense, profile
        self.trt_version, self.gpu_name, self.cc = trt_version, gpu_name, cc
        self.mem: dict[int, np.ndarray] = {}
        self.log: list[tuple] = []
        self.next_addr = 0x1000
        self._tls = threading.local()
        self.loggers = 0

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

    def modules(self) -> dict[str, types.ModuleType]:
        return {"tensorrt": _trt_module(self), "pycuda": _pycuda_module(self)[0],
                "pycuda.driver": _pycuda_module(self)[1]}


def _trt_module(w: World) -> types.ModuleType:
    trt = types.ModuleType("tensorrt")
    trt.__version__ = w.trt_version

    class Logger:
        WARNING = 2

        def __init__(self, severity):
            w.loggers += 1
            w.log.append(("Logger", severity))

    class _Released:
        """Records whether a CUDA context was current when the object was released."""

        kind = "object"

        def __del__(self):
            w.log.append(("release", self.kind, w.current()))

    class TensorIOMode:
        INPUT, OUTPUT = "INPUT", "OUTPUT"

    class DataType:
        FLOAT = "FLOAT"

    def nptype(dt):
        assert dt == DataType.FLOAT
        return np.float32

    names = ["input", "landmarks", "rotation", "dense", "confidence"]

    class Context(_Released):
        kind = "context"

        def __init__(self):
            self.batch = None
            self.addr: dict[str, int] = {}

        def set_input_shape(self, name, shape):
            w.log.append(("set_input_shape", name, tuple(shape)))
            assert w.ctx_depth > 0, "set_input_shape outside a pushed CUDA context"
            b = shape[0]
            if not (w.profile[0] <= b <= w.profile[2]) or tuple(shape[1:]) != (3, w.size, w.size):
                w.log.append(("shape_refused", tuple(shape)))
                return False
            self.batch = b
            return True

        def get_tensor_shape(self, name):
            b, s = self.batch, w.size
            return {"input": (b, 3, s, s), "landmarks": (b, NUM_LANDMARKS, 3), "rotation": (b, 3, 3),
                    "dense": (b, w.num_dense, 3), "confidence": (b, 1)}[name]

        def set_tensor_address(self, name, addr):
            w.log.append(("set_tensor_address", name, addr))
            self.addr[name] = addr

        def execute_async_v3(self, stream_handle):
            w.log.append(("execute_async_v3", stream_handle, self.batch))
            b, s = self.batch, w.size
            x = w.mem[self.addr["input"]].view(np.float32)[: b * 3 * s * s].reshape(b, 3, s, s)
            m = x.mean(axis=(1, 2, 3)).astype(np.float32)  # per-sample mean: shows the data path
            outs = {"landmarks": np.broadcast_to(m[:, None, None], (b, NUM_LANDMARKS, 3)),
                    "rotation": np.broadcast_to(np.eye(3, dtype=np.float32), (b, 3, 3)),
                    "dense": np.broadcast_to(-m[:, None, None], (b, w.num_dense, 3)),
                    "confidence": m[:, None]}
            for k, v in outs.items():
                flat = np.ascontiguousarray(v, np.float32).ravel()
                w.mem[self.addr[k]].view(np.float32)[: flat.size] = flat
            return True

    class Engine(_Released):
        kind = "engine"
        num_io_tensors = len(names)

        def get_tensor_name(self, i):
            return names[i]

        def get_tensor_mode(self, name):
            return TensorIOMode.INPUT if name == "input" else TensorIOMode.OUTPUT

        def get_tensor_dtype(self, name):
            return DataType.FLOAT

        def get_tensor_profile_shape(self, name, profile):
            w.log.append(("get_tensor_profile_shape", name, profile))
            return [(b, 3, w.size, w.size) for b in w.profile]

        def create_execution_context(self):
            return Context()

    class Runtime(_Released):
        kind = "runtime"

        def __init__(self, logger):
            self._dla = 0

        @property
        def DLA_core(self):  # noqa: N802 - TensorRT's name
            return self._dla

        @DLA_core.setter
        def DLA_core(self, core):  # noqa: N802
            w.log.append(("runtime.DLA_core", core))
            self._dla = core

        def deserialize_cuda_engine(self, data):
            w.log.append(("deserialize", len(data), self._dla))
            return Engine() if data == PLAN_BYTES else None

    trt.Logger, trt.TensorIOMode, trt.DataType, trt.nptype, trt.Runtime = Logger, TensorIOMode, DataType, nptype, Runtime
    return trt


def _pycuda_module(w: World):
    if hasattr(w, "_pycuda"):
        return w._pycuda
    pkg = types.ModuleType("pycuda")
    drv = types.ModuleType("pycuda.driver")
    pkg.driver = drv

    class Ctx:
        def __init__(self):
            self.alive = True
            self.creator = threading.get_ident()

        def push(self):
            assert self.alive, "push of a destroyed context"
            w.stack().append(self)
            w.log.append(("push",))

        @staticmethod
        def pop():
            st = w.stack()
            assert st, "pop with no current context"
            st.pop()
            w.log.append(("pop",))

        def detach(self):
            st = w.stack()
            if st and st[-1] is self:  # current here: cuCtxDetach, which pops it
                st.pop()
                self.alive = False
                w.log.append(("detach", "destroyed"))
            elif threading.get_ident() == self.creator:  # pushed, detached and popped by pycuda
                self.alive = False
                w.log.append(("detach", "destroyed"))
            else:  # pycuda: "leaked out-of-thread context"
                w.log.append(("detach", "leaked"))

    class Device:
        def __init__(self, i):
            w.log.append(("Device", i))

        def name(self):
            return w.gpu_name

        def compute_capability(self):
            return w.cc

        def make_context(self):
            ctx = Ctx()
            w.stack().append(ctx)  # created current on this thread, as pycuda does
            w.log.append(("make_context",))
            return ctx

    class Stream:
        handle = 4242

        def synchronize(self):
            w.log.append(("synchronize",))

        def __del__(self):
            w.log.append(("release", "stream", w.current()))

    class Pinned(np.ndarray):
        def __del__(self):
            if getattr(self, "_owner", False):
                w.log.append(("release", "pinned", w.current()))

    class DevMem:
        def __init__(self, nbytes):
            self.addr = w.next_addr
            w.next_addr += nbytes + 256
            w.mem[self.addr] = np.zeros(nbytes, np.uint8)

        def __int__(self):
            return self.addr

        def free(self):
            assert w.current(), "DeviceAllocation.free() without a current CUDA context"
            w.log.append(("free", self.addr))
            del w.mem[self.addr]

    def pagelocked_empty(n, dtype):
        w.log.append(("pagelocked_empty", n, np.dtype(dtype).name))
        a = np.zeros(n, dtype).view(Pinned)
        a._owner = True
        return a

    def mem_alloc(nbytes):
        w.log.append(("mem_alloc", nbytes))
        return DevMem(nbytes)

    def memcpy_htod_async(dev, host, stream):
        w.log.append(("htod", host.nbytes))
        w.mem[int(dev)][: host.nbytes] = np.ascontiguousarray(host).view(np.uint8)

    def memcpy_dtoh_async(host, dev, stream):
        w.log.append(("dtoh", host.nbytes))
        host.view(np.uint8)[:] = w.mem[int(dev)][: host.nbytes]

    drv.init = lambda: w.log.append(("init",))
    drv.Device, drv.Stream, drv.pagelocked_empty, drv.mem_alloc = Device, Stream, pagelocked_empty, mem_alloc
    drv.memcpy_htod_async, drv.memcpy_dtoh_async = memcpy_htod_async, memcpy_dtoh_async
    w._pycuda = (pkg, drv)
    return w._pycuda
