"""The TensorRT engine builder: ONNX -> serialized engine (``model.plan``) + ``model.plan.json``.

``tensorrt`` is imported only inside :func:`build_engine` (never at package import), and nothing here
constructs a TensorRT object to probe for a GPU: the GPU name and compute capability come from the CUDA
device properties through pycuda (:func:`gpu_info`), the same call the runtime compares them with.

Version dispatch (:func:`plan_build`, pure and tested without TensorRT), per DESIGN.md section 3:

===============  ==============================  ==========================================================
TensorRT         network creation flags          precision
===============  ==============================  ==========================================================
8.5, 8.6 (9.x)   ``1 << EXPLICIT_BATCH``         FP16: ``BuilderFlag.FP16``; Q/DQ INT8: ``INT8`` + ``FP16``
10.0 to 10.11    none (explicit batch implied)   same builder flags (weakly typed network)
10.12 to 10.x    ``1 << STRONGLY_TYPED``         no precision flags (deprecated from 10.12): FP16 from
                                                 ``model.fp16.onnx``, INT8 from the Q/DQ ``model.int8.onnx``
11.x             ``1 << STRONGLY_TYPED``         the same (always strongly typed; the flag is accepted)
===============  ==============================  ==========================================================

Every build has one optimisation profile over the batch axis of ``input`` (min/opt/max), a workspace
limit (``set_memory_pool_limit(WORKSPACE)``), a timing cache read from and written back to a file beside
the engine (reused by later builds with the same TensorRT and GPU; a stale one is replaced), and, for
Jetson, ``--dla-core N`` (default device DLA, that core, ``GPU_FALLBACK``; FP16 or INT8 only; refused on
TensorRT 11.0 to 11.3, which have no DLA support). The DLA needs static shapes: a DLA build uses the
static profile OPT:OPT:OPT (the runtime pads smaller batches and splits larger ones).

Optionally (TensorRT 8.5 to 10.11 only), ``BuildOptions.calibration`` builds INT8 from the FP32 ONNX with
TensorRT's own entropy calibrator (:mod:`fa3d.calibration.trt_calibrator`): its batch is the profile's
OPT and the profile is also the calibration profile. The Q/DQ ONNX is the default and the only INT8 path
from 10.12 on.

Polygraphy is not used for the build: our version dispatch, errors and sidecar need the same few calls on
8.5 to 11 and Polygraphy's loaders would add a second layer of version handling (see the README).
"""

from __future__ import annotations

import contextlib
import importlib.util
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from packaging.version import InvalidVersion, Version

from fa3d.runtime.atomic import atomic_path, atomic_write_bytes
from fa3d.runtime.metadata import ArtifactMetadata, read_sidecar, sha256_file, sidecar_path, write_metadata
from fa3d.runtime.policy import MIN_TENSORRT as OLDEST
from fa3d.runtime.policy import TRT_NO_DLA, TRT_STRONGLY_TYPED, TRT_STRONGLY_TYPED_ONLY

from .defaults import DEFAULT_BATCH, DEFAULT_WORKSPACE_MB

FIRST_IMPLICIT_EXPLICIT_BATCH = Version("10")  # EXPLICIT_BATCH deprecated and ignored from 10.0
FIRST_STRONGLY_TYPED = TRT_STRONGLY_TYPED  # weak typing (BuilderFlag.FP16/INT8) deprecated: strongly typed builds
FIRST_STRONGLY_TYPED_ONLY = TRT_STRONGLY_TYPED_ONLY  # no FP16/INT8 builder flags, strongly typed networks only
NO_DLA = TRT_NO_DLA  # TensorRT 11.0 to 11.3 have no DLA support
PRECISIONS = ("fp32", "fp16", "int8")


class TensorRTUnavailable(RuntimeError):
    """``import tensorrt`` failed here (not installed, or its libraries cannot load)."""


class EngineBuildError(RuntimeError):
    """TensorRT could not parse the ONNX or build the engine, or the request cannot be built."""


# ---------------------------------------------------------------- options and the version dispatch

@dataclass(frozen=True)
class BatchProfile:
    """The optimisation profile over the batch axis."""

    min: int
    opt: int
    max: int

    def __post_init__(self) -> None:
        if not (1 <= self.min <= self.opt <= self.max):
            raise ValueError(f"batch profile needs 1 <= MIN <= OPT <= MAX, got {self.min}:{self.opt}:{self.max}")

    @classmethod
    def parse(cls, text: str) -> "BatchProfile":
        """``"MIN:OPT:MAX"`` (e.g. ``1:4:16``) or a single ``"N"`` for a fixed batch."""
        parts = str(text).split(":")
        try:
            vals = [int(p) for p in parts]
        except ValueError:
            raise ValueError(f"batch profile {text!r} is not MIN:OPT:MAX integers (e.g. 1:4:16)") from None
        if len(vals) == 1:
            vals = vals * 3
        if len(vals) != 3:
            raise ValueError(f"batch profile {text!r} is not MIN:OPT:MAX (e.g. 1:4:16)")
        return cls(*vals)

    def shapes(self, input_size: int) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        return tuple((b, 3, input_size, input_size) for b in (self.min, self.opt, self.max))  # type: ignore[return-value]

    def __str__(self) -> str:
        return f"{self.min}:{self.opt}:{self.max}"


@dataclass(frozen=True)
class BuildOptions:
    precision: str = "fp32"  # what the engine should run: fp32, fp16 or int8 (int8 needs a Q/DQ ONNX)
    batch: BatchProfile = BatchProfile(*DEFAULT_BATCH)
    workspace_mb: int = DEFAULT_WORKSPACE_MB
    dla_core: int | None = None
    timing_cache: Path | None = None  # None: no timing cache
    calibration: Path | None = None  # INT8 from the FP32 ONNX with TensorRT's calibrator (8.5-10.11 only)
    device_id: int = 0  # the CUDA device (after CUDA_VISIBLE_DEVICES) whose name the sidecar records

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.workspace_mb < 1:
            raise ValueError(f"workspace must be at least 1 MiB, got {self.workspace_mb}")
        if self.dla_core is not None and self.dla_core < 0:
            raise ValueError(f"--dla-core must be >= 0, got {self.dla_core}")


@dataclass(frozen=True)
class BuildPlan:
    """What the version dispatch decided for one TensorRT version; see the module docstring."""

    tensorrt_version: str
    explicit_batch_flag: bool
    strongly_typed: bool
    builder_flags: tuple[str, ...]  # names of tensorrt.BuilderFlag members to set
    precision: str
    implicit_int8: bool = False  # INT8 by TensorRT's calibrator from an FP32 network

    @property
    def network_flags(self) -> tuple[str, ...]:
        """Names of tensorrt.NetworkDefinitionCreationFlag members to set."""
        return (("EXPLICIT_BATCH",) if self.explicit_batch_flag else ()) + \
            (("STRONGLY_TYPED",) if self.strongly_typed else ())

    def to_dict(self) -> dict[str, Any]:
        return {"tensorrt_version": self.tensorrt_version, "explicit_batch_flag": self.explicit_batch_flag,
                "strongly_typed": self.strongly_typed, "builder_flags": list(self.builder_flags),
                "network_flags": list(self.network_flags), "precision": self.precision,
                "implicit_int8": self.implicit_int8}


def parse_version(text: str) -> Version:
    try:
        return Version(str(text))
    except InvalidVersion:
        raise EngineBuildError(f"cannot read the TensorRT version {text!r}") from None


def plan_build(trt_version: str | Version, precision: str, onnx_precision: str,
               dla_core: int | None = None, implicit_int8: bool = False) -> BuildPlan:
    """Flags and typing for ``precision`` on ``trt_version`` from an ONNX of ``onnx_precision``.

    ``implicit_int8``: INT8 from an FP32 ONNX with TensorRT's calibrator (8.5 to 10.11 only).
    Raises :class:`EngineBuildError` for requests that version cannot build, saying what to do instead.
    """
    v = trt_version if isinstance(trt_version, Version) else parse_version(trt_version)
    if precision not in PRECISIONS or onnx_precision not in PRECISIONS:
        raise EngineBuildError(f"precision {precision!r} / ONNX precision {onnx_precision!r} not in {PRECISIONS}")
    if v < OLDEST:
        raise EngineBuildError(f"TensorRT {v} is older than {OLDEST}, the oldest fa3d supports (JetPack 5); "
                               "upgrade TensorRT")
    strongly_typed = v >= FIRST_STRONGLY_TYPED
    implicit = precision == "int8" and onnx_precision == "fp32" and implicit_int8
    _refuse(v, precision, onnx_precision, dla_core, implicit, strongly_typed)
    flags: list[str] = []
    if not strongly_typed:
        if precision == "fp16":
            flags.append("FP16")
        elif precision == "int8":
            flags += ["INT8", "FP16"]  # Q/DQ (or calibrated) layers in INT8, the rest may run in FP16
    if dla_core is not None:
        flags.append("GPU_FALLBACK")
    return BuildPlan(tensorrt_version=str(v), explicit_batch_flag=v < FIRST_IMPLICIT_EXPLICIT_BATCH,
                     strongly_typed=strongly_typed, builder_flags=tuple(flags), precision=precision,
                     implicit_int8=implicit)


def _refuse(v: Version, precision: str, onnx_precision: str, dla_core: int | None, implicit: bool,
            strongly_typed: bool) -> None:
    """The requests ``plan_build`` cannot turn into a build on TensorRT ``v``, each with what to do instead."""
    if implicit and strongly_typed:
        raise EngineBuildError(f"TensorRT {v} builds strongly typed networks: its INT8 calibrator is deprecated "
                               "(removed in 11); build from the Q/DQ ONNX (model.int8.onnx, fa-export --int8)")
    if precision == "int8" and onnx_precision != "int8" and not implicit:
        raise EngineBuildError("an INT8 engine needs the Q/DQ ONNX (model.int8.onnx from fa-export --int8); "
                               f"this ONNX is {onnx_precision}")
    if onnx_precision == "int8" and precision != "int8":
        raise EngineBuildError(f"this ONNX holds Q/DQ nodes (INT8); it cannot be built as {precision}: "
                               "give the FP32 model.onnx instead")
    if onnx_precision == "fp16" and precision == "fp32":
        raise EngineBuildError("this ONNX is FP16; an FP32 engine needs the FP32 model.onnx")
    if dla_core is not None and precision == "fp32":
        raise EngineBuildError("the DLA runs FP16 or INT8 only: add --fp16 or --int8 to --dla-core")
    if dla_core is not None and NO_DLA[0] <= v < NO_DLA[1]:
        raise EngineBuildError(f"TensorRT {v} has no DLA support (TensorRT 11.0 to 11.3): drop --dla-core to "
                               "build for the GPU, or use the TensorRT of JetPack 5/6 (8.5, 10.3) for the DLA")
    if strongly_typed and precision == "fp16" and onnx_precision != "fp16":
        raise EngineBuildError(f"TensorRT {v} builds strongly typed networks (no FP16 builder flag): build "
                               "from the FP16 ONNX (model.fp16.onnx, written by fa-export --fp16)")


def build_batch(options: BuildOptions) -> BatchProfile:
    """The profile actually built: a DLA build needs static shapes, OPT:OPT:OPT."""
    if options.dla_core is not None and not (options.batch.min == options.batch.opt == options.batch.max):
        b = options.batch.opt
        return BatchProfile(b, b, b)
    return options.batch


# ---------------------------------------------------------------- probing without TensorRT objects

def tensorrt_installed() -> bool:
    """Whether a ``tensorrt`` module can be found, without importing it."""
    return importlib.util.find_spec("tensorrt") is not None


def import_tensorrt() -> Any:
    """``import tensorrt``, turning every failure (missing module, unloadable libraries) into one error."""
    try:
        import tensorrt
    except Exception as e:  # ModuleNotFoundError, ImportError, OSError from missing CUDA libraries...
        raise TensorRTUnavailable(f"TensorRT cannot be imported here ({type(e).__name__}: {e})") from None
    return tensorrt


def gpu_info(device_id: int = 0) -> dict[str, str | None]:
    """The CUDA device's name and compute capability (pycuda, the runtime's own query); None when unknown.

    Never ``nvidia-smi``: on JetPack 6 it says "Orin (nvgpu)" where CUDA says "Orin", and ``-i 0`` ignores
    CUDA_VISIBLE_DEVICES, so an engine could be refused on the very GPU it was built on.
    """
    try:
        import pycuda.driver as cuda  # never pycuda.autoinit

        from fa3d.runtime.backends.trt import cuda_device_info

        name, (major, minor) = cuda_device_info(cuda, device_id)
        return {"gpu_name": name, "compute_capability": f"{major}.{minor}"}
    except Exception:  # noqa: BLE001 - no pycuda, no driver, no device
        return {"gpu_name": None, "compute_capability": None}


# ---------------------------------------------------------------- the build

@dataclass(frozen=True)
class EngineResult:
    path: Path
    sidecar: Path
    plan: BuildPlan
    timing_cache: Path | None
    timing_cache_reused: bool
    seconds: float
    size_bytes: int


def _parser_errors(parser: Any) -> list[str]:
    msgs = []
    for i in range(int(parser.num_errors)):
        err = parser.get_error(i)
        where = f"node {err.node()}"
        name = getattr(err, "node_name", None)  # TensorRT >= 10.0; 8.5 and 8.6 have node() only
        op = getattr(err, "node_operator", None)
        if callable(name) and name():
            where += f" {name()!r}"
        if callable(op) and op():
            where += f" ({op()})"
        msgs.append(f"{where}: {err.desc()} [{err.code()}]")
    return msgs


def _load_timing_cache(trt: Any, config: Any, path: Path | None) -> tuple[Any, bool]:
    """A timing cache from ``path`` (reused) or a fresh one; a cache from another TensorRT/GPU is replaced."""
    if path is None:
        return None, False
    blob = path.read_bytes() if path.is_file() else b""
    cache = None
    if blob:
        try:
            cache = config.create_timing_cache(blob)
        except Exception:  # a corrupt or foreign file: start afresh, it is only a cache
            cache = None
    reused = cache is not None and bool(config.set_timing_cache(cache, ignore_mismatch=False))
    if not reused:
        cache = config.create_timing_cache(b"")
        config.set_timing_cache(cache, ignore_mismatch=False)
    return cache, reused


def build_engine(onnx_path: Path, engine_path: Path, options: BuildOptions) -> EngineResult:
    """Build ``engine_path`` (+ ``engine_path.json``) from ``onnx_path`` (+ its sidecar).

    Raises :class:`TensorRTUnavailable` when TensorRT cannot be imported and :class:`EngineBuildError`
    (with the parser's messages naming the nodes) when the build fails. Nothing is left half-written.
    """
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    meta = read_sidecar(onnx_path)
    if meta.format != "onnx":
        raise EngineBuildError(f"{onnx_path}: its sidecar says format {meta.format!r}, expected an ONNX export")
    trt = import_tensorrt()
    plan = plan_build(trt.__version__, options.precision, meta.precision, options.dla_core,
                      implicit_int8=options.calibration is not None)
    options = replace(options, batch=build_batch(options))
    t0 = time.perf_counter()
    from fa3d.runtime.backends.trt import shared_logger

    logger = shared_logger(trt)
    builder = trt.Builder(logger)
    net_flags = sum(1 << int(getattr(trt.NetworkDefinitionCreationFlag, f)) for f in plan.network_flags
                    if hasattr(trt.NetworkDefinitionCreationFlag, f))  # 11.x may drop STRONGLY_TYPED: implied
    network = builder.create_network(net_flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = _parser_errors(parser) or ["no parser message"]
        raise EngineBuildError(f"TensorRT {plan.tensorrt_version} could not parse {onnx_path}: " + "; ".join(errors))
    size = meta.preprocess.input_size
    _check_network_input(network, meta, size, onnx_path)
    config, profile = _builder_config(trt, builder, plan, options, meta.input_name, size)
    _, reused = _load_timing_cache(trt, config, options.timing_cache)
    with _calibrating(trt, config, profile, options, meta):
        serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineBuildError(f"TensorRT {plan.tensorrt_version} failed to build an engine from {onnx_path} "
                               f"(see its log above); try a larger --workspace (now {options.workspace_mb} MiB)"
                               + (" or drop --dla-core" if options.dla_core is not None else ""))
    engine_meta = meta.with_(
        format="tensorrt", precision=plan.precision, source_sha256=sha256_file(onnx_path),
        producer={**meta.producer, "tensorrt": plan.tensorrt_version},
        engine=engine_description(plan, options, size, meta.input_name, onnx_path))
    with atomic_path(engine_path) as tmp:
        with open(tmp, "wb") as f:
            f.write(serialized)
        write_metadata(sidecar_path(engine_path), engine_meta)
    if options.timing_cache is not None:
        atomic_write_bytes(options.timing_cache, bytes(config.get_timing_cache().serialize()))
    return EngineResult(path=engine_path, sidecar=sidecar_path(engine_path), plan=plan,
                        timing_cache=options.timing_cache, timing_cache_reused=reused,
                        seconds=time.perf_counter() - t0, size_bytes=engine_path.stat().st_size)


def _builder_config(trt: Any, builder: Any, plan: BuildPlan, options: BuildOptions, input_name: str,
                    size: int) -> tuple[Any, Any]:
    """The builder config (workspace, precision flags, DLA) and its one optimisation profile."""
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(options.workspace_mb) << 20)
    for name in plan.builder_flags:
        config.set_flag(getattr(trt.BuilderFlag, name))
    if options.dla_core is not None:
        cores = int(builder.num_DLA_cores)
        if options.dla_core >= cores:
            raise EngineBuildError(f"--dla-core {options.dla_core}: this device has {cores} DLA core(s) "
                                   f"(valid: {list(range(cores)) or 'none'}); drop --dla-core to build for the GPU")
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = int(options.dla_core)
    profile = builder.create_optimization_profile()
    profile.set_shape(input_name, *options.batch.shapes(size))
    config.add_optimization_profile(profile)
    return config, profile


@contextlib.contextmanager
def _calibrating(trt: Any, config: Any, profile: Any, options: BuildOptions, meta: ArtifactMetadata):
    """With ``options.calibration``: a CUDA context and TensorRT's entropy calibrator for the build.

    The calibrator's batch is the profile's OPT, and the profile is the calibration profile (dynamic
    shapes need one). Its device buffer is freed and the context detached (current, so destroyed) after.
    """
    if options.calibration is None:
        yield
        return
    import pycuda.driver as cuda

    from fa3d.calibration.trt_calibrator import make_entropy_calibrator

    cuda.init()
    ctx = cuda.Device(options.device_id).make_context()
    calibrator = None
    try:
        cache = Path(options.calibration).with_suffix(".trt-calib.cache")
        calibrator = make_entropy_calibrator(options.calibration, meta.preprocess, cache,
                                             batch_size=options.batch.opt, trt=trt, cuda=cuda)
        config.int8_calibrator = calibrator
        config.set_calibration_profile(profile)
        yield
    finally:
        if calibrator is not None:
            config.int8_calibrator = None
            calibrator.release()
        ctx.detach()


def _check_network_input(network: Any, meta: ArtifactMetadata, size: int, onnx_path: Path) -> None:
    names = [network.get_input(i).name for i in range(int(network.num_inputs))]
    if names != [meta.input_name]:
        raise EngineBuildError(f"{onnx_path}: the network's inputs are {names}, its sidecar promises "
                               f"[{meta.input_name!r}]; re-export it with fa-export")
    shape = tuple(network.get_input(0).shape)
    if len(shape) != 4 or shape[0] != -1 or tuple(shape[1:]) != (3, size, size):
        raise EngineBuildError(f"{onnx_path}: input shape {shape} is not (-1, 3, {size}, {size}) "
                               "(a dynamic batch of the sidecar's input size); re-export it with fa-export")


def engine_description(plan: BuildPlan, options: BuildOptions, size: int, input_name: str,
                       onnx_path: Path) -> dict[str, Any]:
    """The ``engine`` block of the sidecar: what the runtime checks before it loads the engine."""
    mn, opt, mx = options.batch.shapes(size)
    return {
        "tensorrt_version": plan.tensorrt_version,
        **gpu_info(options.device_id),
        "profile": {"input": input_name, "min": list(mn), "opt": list(opt), "max": list(mx)},
        "dla_core": options.dla_core,
        "workspace_mb": int(options.workspace_mb),
        "builder_flags": list(plan.builder_flags),
        "strongly_typed": plan.strongly_typed,
        "source_onnx": onnx_path.name,
    }


def read_engine_sidecar(engine_path: Path) -> ArtifactMetadata:
    meta = read_sidecar(engine_path)
    if meta.format != "tensorrt" or not meta.engine:
        raise EngineBuildError(f"{sidecar_path(engine_path)}: not a TensorRT engine sidecar")
    return meta
