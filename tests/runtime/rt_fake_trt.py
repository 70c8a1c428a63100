"""A STAND-IN for the ``tensorrt`` and ``pycuda.driver`` modules, to test TrtBackend's own logic.

It records calls (versions, profile shapes, buffer sizes, addresses, syncs) and moves bytes between
"host" and "device" numpy buffers; its "engine" computes trivial outputs from the input so that the data
path can be checked. It is not TensorRT and nothing run through it is a TensorRT result.
"""

from __future__ import annotations

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
        self.ctx_depth = 0

    def modules(self) -> dict[str, types.ModuleType]:
        return {"tensorrt": _trt_module(self), "pycuda": _pycuda_module(self)[0],
                "pycuda.driver": _pycuda_module(self)[1]}


def _trt_module(w: World) -> types.ModuleType:
    trt = types.ModuleType("tensorrt")
    trt.__version__ = w.trt_version

    class Logger:
        WARNING = 2

        def __init__(self, severity):
            w.log.append(("Logger", severity))

    class TensorIOMode:
        INPUT, OUTPUT = "INPUT", "OUTPUT"

    class DataType:
        FLOAT = "FLOAT"

    def nptype(dt):
        assert dt == DataType.FLOAT
        return np.float32

    names = ["input", "landmarks", "rotation", "dense", "confidence"]

    class Context:
        def __init__(self):
            self.batch = None
            self.addr: dict[str, int] = {}

        def set_input_shape(self, name, shape):
            w.log.append(("set_input_shape", name, tuple(shape)))
            assert w.ctx_depth > 0, "set_input_shape outside a pushed CUDA context"
            b = shape[0]
            if not (w.profile[0] <= b <= w.profile[2]) or tuple(shape[1:]) != (3, w.size, w.size):
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

    class Engine:
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

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, data):
            w.log.append(("deserialize", len(data)))
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
        def push(self):
            w.ctx_depth += 1
            w.log.append(("push",))

        def pop(self):
            assert w.ctx_depth > 0
            w.ctx_depth -= 1
            w.log.append(("pop",))

        def detach(self):
            w.log.append(("detach",))

    class Device:
        def __init__(self, i):
            w.log.append(("Device", i))

        def name(self):
            return w.gpu_name

        def compute_capability(self):
            return w.cc

        def make_context(self):
            w.ctx_depth += 1  # created current, as pycuda does
            w.log.append(("make_context",))
            return Ctx()

    class Stream:
        handle = 4242

        def synchronize(self):
            w.log.append(("synchronize",))

    class DevMem:
        def __init__(self, nbytes):
            self.addr = w.next_addr
            w.next_addr += nbytes + 256
            w.mem[self.addr] = np.zeros(nbytes, np.uint8)

        def __int__(self):
            return self.addr

        def free(self):
            w.log.append(("free", self.addr))
            del w.mem[self.addr]

    def pagelocked_empty(n, dtype):
        w.log.append(("pagelocked_empty", n, np.dtype(dtype).name))
        return np.zeros(n, dtype)

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
