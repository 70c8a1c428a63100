"""TensorRT backend: a serialized engine (``.plan``/``.engine``) and its ``.plan.json`` sidecar, run with pycuda.

The loop follows TensorRT's ``common_runtime.py``: every I/O tensor is bound by name, pinned host buffers
and device buffers are allocated once for the optimisation profile's largest batch, and each batch is one
``set_input_shape`` + async copy in + ``execute_async_v3`` + async copies out + one stream synchronisation.
The CUDA context is created explicitly on the chosen device (never ``pycuda.autoinit``) and pushed for the
duration of each call, so a backend may be used from a thread other than the one that created it (one
call at a time). :meth:`TrtBackend.close` (from any thread) pushes the context, releases the execution
context, engine, runtime, stream, device and pinned buffers while it is current, then detaches it (which
pops it): the order pycuda needs to really destroy a context from a thread other than its creator's.

Engines built for a DLA core (static batch profile) are deserialised with ``runtime.DLA_core`` set to
that core, and a batch smaller than the profile's minimum is padded (the padding's outputs are dropped).
The GPU name and compute capability checked against the sidecar come from the CUDA device properties
(:func:`cuda_device_info`), as at build time. One ``trt.Logger`` serves every build and runtime in the
process (:func:`shared_logger`): TensorRT warns when a second one appears.

Works with TensorRT 8.5 to 11 (the named-tensor API they share). ``tensorrt`` and ``pycuda`` are imported
when a :class:`TrtBackend` is created (:mod:`fa3d.runtime.lazy`). Every TensorRT call that reports failure by
its return value (``set_input_shape``, ``set_tensor_address``, ``execute_async_v3``) is checked. An engine is only valid for the TensorRT version and the GPU it was
built with: the sidecar's ``engine`` entry must carry :data:`ENGINE_KEYS`, and a mismatch is refused with
the command that rebuilds it.
"""

from __future__ import annotations

import functools
import importlib
import os
from pathlib import Path
from collections.abc import Callable
from typing import Any

import numpy as np
from packaging.version import InvalidVersion, Version

from ..lazy import MissingDependency, available, lazy_import
from ..metadata import MetadataError, read_sidecar
from ..policy import MIN_TENSORRT
from .base import OUTPUT_NAMES, BackendBase, BackendError, check_format, check_output_shapes

trt = lazy_import("tensorrt", extra="gpu")
cuda = lazy_import("pycuda.driver", extra="gpu")

#: keys the sidecar's ``engine`` entry must have (written by fa-export when it builds the engine)
ENGINE_KEYS = ("tensorrt_version", "gpu_name", "compute_capability")


def _rebuild_hint(path: Path) -> str:
    return (f"rebuild the engine on this machine: fa-export --from-onnx {path.with_suffix('.onnx').name} "
            "(engines are tied to one TensorRT version and one GPU)")


def gpu_probe() -> str | None:
    """Why TensorRT cannot run here, or None. Never imports tensorrt or constructs any TensorRT object."""
    if not available("tensorrt"):
        return "TensorRT is not installed (pip/apt package tensorrt; JetPack ships it on Jetson)"
    if not available("pycuda"):
        return "pycuda is not installed (pip install pycuda, with the CUDA toolkit present)"
    if not (Path("/dev/nvidia0").exists() or Path("/dev/nvhost-ctrl").exists()):
        return "no NVIDIA device node (/dev/nvidia0 or /dev/nvhost-ctrl): no GPU driver here"
    return None


@functools.cache
def _logger_for(module: Any) -> Any:
    return module.Logger(module.Logger.WARNING)


def shared_logger() -> Any:
    """The one ``trt.Logger`` (WARNING) of this process, for the ``tensorrt`` module it has loaded; fa-export's
    builder hands the same one to Polygraphy's loaders."""
    return _logger_for(importlib.import_module("tensorrt"))


def cuda_device_info(cuda: Any, device_id: int = 0) -> tuple[str, tuple[int, int]]:
    """(name, compute capability) of CUDA device ``device_id`` (after CUDA_VISIBLE_DEVICES), from pycuda.

    The name is CUDA's (``cuDeviceGetName``): what both the engine build and the runtime compare.
    ``nvidia-smi`` is not used: it names Jetson GPUs differently ("Orin (nvgpu)") and ignores
    CUDA_VISIBLE_DEVICES.
    """
    cuda.init()
    dev = cuda.Device(int(device_id))
    major, minor = dev.compute_capability()
    return str(dev.name()), (int(major), int(minor))


def _release(v: str) -> tuple[int, ...]:
    return Version(v).release[:3]


def check_engine_sidecar(engine: dict | None, *, trt_version: str, gpu_name: str,
                         compute_capability: tuple[int, int], path: Path) -> None:
    """Refuse an engine built for another TensorRT version or GPU (raises BackendError/MetadataError)."""
    if not isinstance(engine, dict):
        raise MetadataError(f"{path}.json: the sidecar has no 'engine' entry (TensorRT version, GPU); "
                            f"{_rebuild_hint(path)}")
    missing = [k for k in ENGINE_KEYS if k not in engine]
    if missing:
        raise MetadataError(f"{path}.json: the sidecar's 'engine' entry lacks {missing}; {_rebuild_hint(path)}")
    try:
        built, here = _release(str(engine["tensorrt_version"])), _release(trt_version)
    except InvalidVersion as e:
        raise MetadataError(f"{path}.json: unreadable TensorRT version ({e}); {_rebuild_hint(path)}") from None
    if built != here:
        raise BackendError(f"{path}: built with TensorRT {engine['tensorrt_version']}, but this machine has "
                           f"TensorRT {trt_version}; {_rebuild_hint(path)}")
    # a sidecar written where the GPU could not be queried (None) names no GPU: nothing to compare
    if engine["gpu_name"] is not None and str(engine["gpu_name"]) != gpu_name:
        raise BackendError(f"{path}: built for the GPU {engine['gpu_name']!r}, but this machine has "
                           f"{gpu_name!r}; {_rebuild_hint(path)}")
    cc = engine["compute_capability"]
    if cc is None:
        return
    try:
        cc = tuple(int(v) for v in (cc.split(".") if isinstance(cc, str) else cc))
    except (TypeError, ValueError):
        raise MetadataError(f"{path}.json: unreadable compute capability {engine['compute_capability']!r}; "
                            f"{_rebuild_hint(path)}") from None
    if cc != tuple(int(v) for v in compute_capability):
        raise BackendError(f"{path}: built for compute capability {cc}, this GPU has {tuple(compute_capability)}; "
                           f"{_rebuild_hint(path)}")


class TrtEngine:
    """One serialized engine run with pycuda: any I/O contract (the face model's, the detector's).

    ``engine_block`` is the sidecar's ``engine`` entry (checked against this TensorRT and GPU before anything
    is loaded); ``input_name`` and ``input_chw`` the one input the engine must have; ``required_outputs`` the
    outputs it must have; ``check_shapes`` is called with every output's shape at the profile's largest batch
    before any buffer is allocated. :meth:`run` takes at most :attr:`max_batch` inputs and pads a batch below
    :attr:`min_batch` (static DLA profiles).
    """

    def __init__(self, path: str | os.PathLike, *, engine_block: dict | None, input_name: str,
                 input_chw: tuple[int, int, int], required_outputs: tuple[str, ...],
                 check_shapes: Callable[[dict[str, list]], None] | None = None, device_id: int = 0) -> None:
        self.path = Path(path)
        self._ctx = None
        self._engine = self._context = self._runtime = self._stream = None
        self._device_mem: list = []
        self._host: dict[str, np.ndarray] = {}
        self._dev: dict[str, object] = {}
        try:
            version = Version(trt.__version__)
        except MissingDependency as e:  # import can fail with errors other than ImportError (missing libs)
            raise BackendError(f"TensorRT cannot be imported here ({type(e.__cause__).__name__}: {e.__cause__}); "
                               "run .plan engines on the machine they were built on, or use the ONNX model "
                               "(--model model.onnx)") from None
        except InvalidVersion:
            raise BackendError(f"unreadable TensorRT version {trt.__version__!r}") from None
        if version < MIN_TENSORRT:
            raise BackendError(f"TensorRT {trt.__version__} is too old: fa3d needs TensorRT >= {MIN_TENSORRT}")
        try:
            cuda.init  # noqa: B018 - imports pycuda.driver
        except MissingDependency as e:
            raise BackendError(f"pycuda cannot be imported ({type(e.__cause__).__name__}: {e.__cause__}); "
                               "pip install pycuda") from None
        gpu_name, cc = cuda_device_info(cuda, device_id)
        check_engine_sidecar(engine_block, trt_version=trt.__version__, gpu_name=gpu_name,
                             compute_capability=cc, path=self.path)
        self._ctx = cuda.Device(device_id).make_context()  # created current on this thread
        try:
            self._load(engine_block or {}, input_name, tuple(input_chw), tuple(required_outputs), check_shapes)
        except BaseException:
            self._ctx.pop()
            self.close()
            raise
        self._ctx.pop()

    def _load(self, engine_block: dict, input_name: str, chw: tuple[int, ...], required: tuple[str, ...],
              check_shapes: Callable[[dict[str, list]], None] | None) -> None:
        runtime = trt.Runtime(shared_logger())
        self._runtime = runtime
        dla_core = engine_block.get("dla_core")
        if dla_core is not None:  # before deserialising: an engine built for DLA core N runs on core N
            runtime.DLA_core = int(dla_core)
        engine = runtime.deserialize_cuda_engine(self.path.read_bytes())
        if engine is None:
            raise BackendError(f"{self.path}: TensorRT could not deserialize the engine (corrupt, or built by "
                               f"another TensorRT version); {_rebuild_hint(self.path)}")
        self._engine = engine
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if n not in inputs]
        if inputs != [input_name]:
            raise BackendError(f"{self.path}: engine inputs {inputs} do not match the sidecar's "
                               f"{input_name!r}; {_rebuild_hint(self.path)}")
        missing = [o for o in required if o not in outputs]
        if missing:
            raise BackendError(f"{self.path}: the engine lacks the outputs {missing}; {_rebuild_hint(self.path)}")
        self._input = input_name
        pmin, popt, pmax = engine.get_tensor_profile_shape(self._input, 0)
        if tuple(pmax)[1:] != chw:
            raise BackendError(f"{self.path}: engine input profile {tuple(pmax)} does not match the sidecar's "
                               f"(B, {', '.join(map(str, chw))}); {_rebuild_hint(self.path)}")
        self.min_batch, self.opt_batch, self.max_batch = int(pmin[0]), int(popt[0]), int(pmax[0])
        self._context = engine.create_execution_context()
        if self._context is None:
            raise BackendError(f"{self.path}: could not create an execution context (out of GPU memory?)")
        self._stream = cuda.Stream()
        # size every buffer for the profile's largest batch, once
        if not self._context.set_input_shape(self._input, tuple(pmax)):
            raise BackendError(f"{self.path}: TensorRT refused the input shape {tuple(pmax)} of the engine's own "
                               f"profile; {_rebuild_hint(self.path)}")
        if check_shapes is not None:  # what the caller needs, before any buffer is allocated
            check_shapes({n: list(self._context.get_tensor_shape(n)) for n in outputs})
        for name in [self._input] + outputs:
            shape = tuple(pmax) if name == self._input else tuple(self._context.get_tensor_shape(name))
            if any(d < 0 for d in shape):
                raise BackendError(f"{self.path}: output {name!r} has an unresolved shape {shape}")
            dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
            host = cuda.pagelocked_empty(int(np.prod(shape)), dtype)
            dev = cuda.mem_alloc(host.nbytes)
            self._device_mem.append(dev)
            self._host[name], self._dev[name] = host, dev
            if not self._context.set_tensor_address(name, int(dev)):
                raise BackendError(f"{self.path}: TensorRT refused the address of tensor {name!r}; "
                                   f"{_rebuild_hint(self.path)}")
        self.outputs = outputs

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Every output (float32) for ``x`` of at most :attr:`max_batch` inputs."""
        b = len(x)
        if b < self.min_batch:  # a static profile (DLA): pad, run, drop the padding's outputs
            pad = np.zeros((self.min_batch - b, *x.shape[1:]), dtype=x.dtype)
            return {k: v[:b] for k, v in self.run(np.concatenate([x, pad])).items()}
        ctx = self._ctx
        ctx.push()
        try:
            if not self._context.set_input_shape(self._input, x.shape):
                raise BackendError(f"{self.path}: input shape {x.shape} is outside the engine's profile")
            host_in = self._host[self._input]
            flat = host_in[:x.size]
            flat[:] = x.ravel().astype(host_in.dtype, copy=False)
            cuda.memcpy_htod_async(self._dev[self._input], flat, self._stream)
            if not self._context.execute_async_v3(self._stream.handle):
                raise BackendError(f"{self.path}: TensorRT execution failed (see the TensorRT log above)")
            views = {}
            for name in self.outputs:
                shape = tuple(self._context.get_tensor_shape(name))
                view = self._host[name][:int(np.prod(shape))]
                cuda.memcpy_dtoh_async(view, self._dev[name], self._stream)
                views[name] = (view, shape)
            self._stream.synchronize()
            return {name: np.array(v, dtype=np.float32).reshape(shape) for name, (v, shape) in views.items()}
        finally:
            ctx.pop()

    def close(self) -> None:
        """Release everything with the context current, then detach it (from any thread; idempotent)."""
        ctx, self._ctx = self._ctx, None
        if ctx is None:
            return
        ctx.push()
        try:
            self._context = None  # TensorRT objects first: the execution context, the engine, the runtime
            self._engine = None
            self._runtime = None
            for mem in self._device_mem:
                mem.free()
            self._device_mem.clear()
            self._dev = {}
            self._stream = None
            self._host = {}  # pinned host buffers are freed while the context is current
        finally:
            ctx.detach()  # the context is current here: pycuda detaches and pops it


class TrtBackend(BackendBase):
    """The face model's engine (:class:`TrtEngine`) with the runtime's output contract."""

    name = "tensorrt"

    def __init__(self, path: str | os.PathLike, *, device_id: int = 0) -> None:
        self.path = Path(path)
        self.metadata = read_sidecar(self.path)  # a wrong metadata schema version is refused here
        check_format(self.metadata, "tensorrt", str(self.path))
        s = self.metadata.preprocess.input_size
        self._trt = TrtEngine(self.path, engine_block=self.metadata.engine, input_name=self.metadata.input_name,
                              input_chw=(3, s, s), required_outputs=tuple(OUTPUT_NAMES), device_id=device_id,
                              check_shapes=lambda shapes: check_output_shapes(
                                  {n: shapes[n] for n in OUTPUT_NAMES}, self.metadata, str(self.path)))
        self.min_batch, self.opt_batch, self.max_batch = self._trt.min_batch, self._trt.opt_batch, self._trt.max_batch

    def _infer_batch(self, x: np.ndarray) -> dict[str, np.ndarray]:
        out = self._trt.run(x)
        return {name: out[name] for name in OUTPUT_NAMES}

    def close(self) -> None:
        """Release the engine (from any thread; idempotent): see :meth:`TrtEngine.close`."""
        self._trt.close()
