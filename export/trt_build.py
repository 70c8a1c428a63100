"""The TensorRT engine builder: ONNX -> serialized engine (``model.plan``) + ``model.plan.json``.

The build goes through Polygraphy's TensorRT loaders (``CreateNetwork``, ``CreateConfig`` with the batch
profile, the precision flags, TF32 kept on, the workspace pool and detailed profiling verbosity, so that the
engine inspector can report per-layer precisions; ``PostprocessConfig`` for the DLA and the timing cache;
``EngineBytesFromNetwork``) with one TensorRT logger for the process (the runtime's, handed to Polygraphy).
What to ask for on each TensorRT version stays ours: :func:`plan_build` (pure, tested without TensorRT):

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
limit, a timing cache read from and written back (atomically) to a file beside the engine (a cache from
another TensorRT or GPU is replaced), and, for Jetson, ``--dla-core N`` (default device DLA, that core,
``GPU_FALLBACK``; FP16 or INT8 only; refused on the TensorRT versions without DLA support,
:func:`fa3d.runtime.policy.trt_dla_unsupported`). The DLA needs static shapes: a DLA build uses the static
profile OPT:OPT:OPT (the runtime pads smaller batches and splits larger ones).

INT8 always comes from the Q/DQ ONNX (``fa-export --int8``): TensorRT's implicit calibrator is deprecated
from 10.1 and removed in 11, and the Q/DQ file is linted and gated before any engine is built.
``tensorrt`` and ``polygraphy`` are imported on first use (:mod:`fa3d.runtime.lazy`); nothing here constructs
a TensorRT object to probe for a GPU: the GPU name and compute capability come from the CUDA device
properties through pycuda (:func:`gpu_info`), the same call the runtime compares them with.
"""

from __future__ import annotations

import importlib
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from packaging.version import InvalidVersion, Version

from fa3d.runtime.atomic import atomic_path, atomic_write_bytes
from fa3d.runtime.backends.trt import cuda_device_info, shared_logger
from fa3d.runtime.lazy import MissingDependency, lazy_import
from fa3d.runtime.metadata import ArtifactMetadata, read_sidecar, sha256_file, sidecar_path, write_metadata
from fa3d.runtime.policy import MIN_TENSORRT as OLDEST
from fa3d.runtime.policy import TRT_STRONGLY_TYPED, trt_dla_unsupported

from .defaults import DEFAULT_BATCH, DEFAULT_WORKSPACE_MB

trt = lazy_import("tensorrt", extra="gpu")
cuda = lazy_import("pycuda.driver", extra="gpu")
pg_trt = lazy_import("polygraphy.backend.trt", extra="export")
pg_logger = lazy_import("polygraphy.logger", extra="export")
pg_exception = lazy_import("polygraphy.exception", extra="export")

FIRST_IMPLICIT_EXPLICIT_BATCH = Version("10")  # EXPLICIT_BATCH deprecated and ignored from 10.0
FIRST_STRONGLY_TYPED = TRT_STRONGLY_TYPED  # weak typing (BuilderFlag.FP16/INT8) deprecated: strongly typed builds
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

    @property
    def network_flags(self) -> tuple[str, ...]:
        """Names of tensorrt.NetworkDefinitionCreationFlag members to set."""
        return (("EXPLICIT_BATCH",) if self.explicit_batch_flag else ()) + \
            (("STRONGLY_TYPED",) if self.strongly_typed else ())

    def to_dict(self) -> dict[str, Any]:
        return {"tensorrt_version": self.tensorrt_version, "explicit_batch_flag": self.explicit_batch_flag,
                "strongly_typed": self.strongly_typed, "builder_flags": list(self.builder_flags),
                "network_flags": list(self.network_flags), "precision": self.precision}


def parse_version(text: str) -> Version:
    try:
        return Version(str(text))
    except InvalidVersion:
        raise EngineBuildError(f"cannot read the TensorRT version {text!r}") from None


def plan_build(trt_version: str | Version, precision: str, onnx_precision: str,
               dla_core: int | None = None) -> BuildPlan:
    """Flags and typing for ``precision`` on ``trt_version`` from an ONNX of ``onnx_precision``.

    Raises :class:`EngineBuildError` for requests that version cannot build, saying what to do instead.
    """
    v = trt_version if isinstance(trt_version, Version) else parse_version(trt_version)
    if precision not in PRECISIONS or onnx_precision not in PRECISIONS:
        raise EngineBuildError(f"precision {precision!r} / ONNX precision {onnx_precision!r} not in {PRECISIONS}")
    if v < OLDEST:
        raise EngineBuildError(f"TensorRT {v} is older than {OLDEST}, the oldest fa3d supports (JetPack 5); "
                               "upgrade TensorRT")
    strongly_typed = v >= FIRST_STRONGLY_TYPED
    _refuse(v, precision, onnx_precision, dla_core, strongly_typed)
    flags: list[str] = []
    if not strongly_typed:
        if precision == "fp16":
            flags.append("FP16")
        elif precision == "int8":
            flags += ["INT8", "FP16"]  # Q/DQ layers in INT8, the rest may run in FP16
    if dla_core is not None:
        flags.append("GPU_FALLBACK")
    return BuildPlan(tensorrt_version=str(v), explicit_batch_flag=v < FIRST_IMPLICIT_EXPLICIT_BATCH,
                     strongly_typed=strongly_typed, builder_flags=tuple(flags), precision=precision)


def _refuse(v: Version, precision: str, onnx_precision: str, dla_core: int | None, strongly_typed: bool) -> None:
    """The requests ``plan_build`` cannot turn into a build on TensorRT ``v``, each with what to do instead."""
    if precision == "int8" and onnx_precision != "int8":
        raise EngineBuildError("an INT8 engine needs the Q/DQ ONNX (model.int8.onnx from fa-export --int8); "
                               f"this ONNX is {onnx_precision}")
    if onnx_precision == "int8" and precision != "int8":
        raise EngineBuildError(f"this ONNX holds Q/DQ nodes (INT8); it cannot be built as {precision}: "
                               "give the FP32 model.onnx instead")
    if onnx_precision == "fp16" and precision == "fp32":
        raise EngineBuildError("this ONNX is FP16; an FP32 engine needs the FP32 model.onnx")
    if dla_core is not None and precision == "fp32":
        raise EngineBuildError("the DLA runs FP16 or INT8 only: add --fp16 or --int8 to --dla-core")
    no_dla = trt_dla_unsupported(v) if dla_core is not None else None
    if no_dla is not None:
        raise EngineBuildError(f"TensorRT {v} has no DLA support ({no_dla}): drop --dla-core to build for the GPU, "
                               "or use a TensorRT with DLA support (8.5 to 10.7: JetPack 5 and 6; 11.4.1 on "
                               "JetPack 7.2.2 or later, Jetson AGX Orin)")
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

def import_tensorrt() -> Any:
    """The ``tensorrt`` module, turning every failure (missing module, unloadable libraries) into one error."""
    try:
        trt.__version__
    except MissingDependency as e:
        raise TensorRTUnavailable(f"TensorRT cannot be imported here ({e.__cause__.__class__.__name__}: "
                                  f"{e.__cause__})") from None
    return trt


def gpu_info(device_id: int = 0) -> dict[str, str | None]:
    """The CUDA device's name and compute capability (pycuda, the runtime's own query); None when unknown.

    Never ``nvidia-smi``: on JetPack 6 it says "Orin (nvgpu)" where CUDA says "Orin", and ``-i 0`` ignores
    CUDA_VISIBLE_DEVICES, so an engine could be refused on the very GPU it was built on.
    """
    try:
        name, (major, minor) = cuda_device_info(cuda, device_id)  # never pycuda.autoinit
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


def _one_logger() -> Any:
    """The process's one TensorRT logger (the runtime's), also the one Polygraphy's loaders hand to TensorRT."""
    logger = shared_logger()
    util = importlib.import_module("polygraphy.backend.trt.util")  # the module itself: its logger slot is set
    if util.TRT_LOGGER is None:
        util.TRT_LOGGER = logger
    return util.TRT_LOGGER


def _network(onnx_path: Path, plan: BuildPlan) -> tuple[Any, Any, Any]:
    """(builder, network, parser): Polygraphy's ``CreateNetwork`` and TensorRT's ONNX parser, whose errors name
    the nodes (Polygraphy's ``NetworkFromOnnxPath`` only logs them)."""
    strongly_typed = plan.strongly_typed and hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED")
    builder, network = pg_trt.CreateNetwork(strongly_typed=strongly_typed)()
    parser = trt.OnnxParser(network, _one_logger())
    if not parser.parse_from_file(str(onnx_path)):
        errors = _parser_errors(parser) or ["no parser message"]
        raise EngineBuildError(f"TensorRT {plan.tensorrt_version} could not parse {onnx_path}: " + "; ".join(errors))
    return builder, network, parser


def _load_timing_cache(config: Any, path: Path | None) -> bool:
    """Set the timing cache from ``path`` (True: reused) or a fresh one; a cache from another TensorRT/GPU is
    replaced."""
    if path is None:
        return False
    blob = path.read_bytes() if path.is_file() else b""
    cache = None
    if blob:
        try:
            cache = config.create_timing_cache(blob)
        except Exception:  # noqa: BLE001 - a corrupt or foreign file: start afresh, it is only a cache
            cache = None
    reused = cache is not None and bool(config.set_timing_cache(cache, ignore_mismatch=False))
    if not reused:
        config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False)
    return reused


@dataclass
class _ConfigSteps:
    """Polygraphy's ``PostprocessConfig`` step: DLA, GPU fallback and the timing cache; it keeps the config."""

    options: BuildOptions
    plan: BuildPlan
    config: Any = None
    timing_cache_reused: bool = False

    def __call__(self, builder: Any, network: Any, config: Any) -> None:
        if self.options.dla_core is not None:
            cores = int(builder.num_DLA_cores)
            if self.options.dla_core >= cores:
                raise EngineBuildError(
                    f"--dla-core {self.options.dla_core}: this device has {cores} DLA core(s) (valid: "
                    f"{list(range(cores)) or 'none'}; Jetson Thor and desktop GPUs have no DLA); drop --dla-core "
                    "to build for the GPU")
            config.default_device_type = trt.DeviceType.DLA
            config.DLA_core = int(self.options.dla_core)
        if "GPU_FALLBACK" in self.plan.builder_flags:
            config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
        self.timing_cache_reused = _load_timing_cache(config, self.options.timing_cache)
        self.config = config


def _config_loader(plan: BuildPlan, options: BuildOptions, input_name: str,
                   chw: tuple[int, ...]) -> tuple[Any, _ConfigSteps]:
    """Polygraphy's ``CreateConfig`` for ``plan`` (profile, precision flags, TF32 on, workspace) + our steps."""
    steps = _ConfigSteps(options, plan)
    mn, opt, mx = ((b, *chw) for b in (options.batch.min, options.batch.opt, options.batch.max))
    create = pg_trt.CreateConfig(
        tf32=hasattr(trt.BuilderFlag, "TF32"), fp16="FP16" in plan.builder_flags, int8="INT8" in plan.builder_flags,
        profiles=[pg_trt.Profile().add(input_name, min=mn, opt=opt, max=mx)],
        memory_pool_limits={trt.MemoryPoolType.WORKSPACE: int(options.workspace_mb) << 20},
        profiling_verbosity=trt.ProfilingVerbosity.DETAILED)  # the inspector's per-layer precisions need it
    return pg_trt.PostprocessConfig(create, steps), steps


@dataclass(frozen=True)
class SerializedEngine:
    """What :func:`build_serialized` made: the plan bytes and how they were built."""

    data: Any  # TensorRT's serialized engine (a buffer)
    plan: BuildPlan
    options: BuildOptions  # with the batch profile actually built (static for the DLA)
    timing_cache_reused: bool
    seconds: float


def build_serialized(onnx_path: Path, options: BuildOptions, *, onnx_precision: str, input_name: str,
                     input_chw: tuple[int, int, int]) -> SerializedEngine:
    """Build an engine from any ONNX whose one input is ``input_name`` of shape (-1, *input_chw), and save the
    timing cache; nothing else is written (the callers write the engine and its sidecar)."""
    onnx_path = Path(onnx_path)
    import_tensorrt()
    plan = plan_build(trt.__version__, options.precision, onnx_precision, options.dla_core)
    options = replace(options, batch=build_batch(options))
    t0 = time.perf_counter()
    _one_logger()
    log = pg_logger.G_LOGGER
    with log.verbosity(log.ERROR):  # Polygraphy's progress lines and warnings off; its errors stay
        builder, network, parser = _network(onnx_path, plan)
        _check_network_input(network, input_name, tuple(input_chw), onnx_path)
        config, steps = _config_loader(plan, options, input_name, tuple(input_chw))
        try:
            serialized = pg_trt.EngineBytesFromNetwork((builder, network, parser), config=config)()
        except pg_exception.PolygraphyException as e:
            raise EngineBuildError(f"TensorRT {plan.tensorrt_version} failed to build an engine from {onnx_path} "
                                   f"({e}; see TensorRT's log above); try a larger --workspace (now "
                                   f"{options.workspace_mb} MiB)"
                                   + (" or drop --dla-core" if options.dla_core is not None else "")) from None
    if options.timing_cache is not None:
        atomic_write_bytes(options.timing_cache, bytes(steps.config.get_timing_cache().serialize()))
    return SerializedEngine(serialized, plan, options, steps.timing_cache_reused, time.perf_counter() - t0)


def build_engine(onnx_path: Path, engine_path: Path, options: BuildOptions) -> EngineResult:
    """Build ``engine_path`` (+ ``engine_path.json``) from the face model ``onnx_path`` (+ its sidecar).

    Raises :class:`TensorRTUnavailable` when TensorRT cannot be imported and :class:`EngineBuildError`
    (with the parser's messages naming the nodes) when the build fails. Nothing is left half-written.
    """
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    meta = read_sidecar(onnx_path)
    if meta.format != "onnx":
        raise EngineBuildError(f"{onnx_path}: its sidecar says format {meta.format!r}, expected an ONNX export")
    size = meta.preprocess.input_size
    built = build_serialized(onnx_path, options, onnx_precision=meta.precision, input_name=meta.input_name,
                             input_chw=(3, size, size))
    engine_meta = meta.with_(
        format="tensorrt", precision=built.plan.precision, source_sha256=sha256_file(onnx_path),
        producer={**meta.producer, "tensorrt": built.plan.tensorrt_version},
        engine=engine_description(built.plan, built.options, size, meta.input_name, onnx_path))
    with atomic_path(engine_path) as tmp:
        with open(tmp, "wb") as f:
            f.write(built.data)
        write_metadata(sidecar_path(engine_path), engine_meta)
    return EngineResult(path=engine_path, sidecar=sidecar_path(engine_path), plan=built.plan,
                        timing_cache=options.timing_cache, timing_cache_reused=built.timing_cache_reused,
                        seconds=built.seconds, size_bytes=engine_path.stat().st_size)


def _check_network_input(network: Any, input_name: str, chw: tuple[int, ...], onnx_path: Path) -> None:
    names = [network.get_input(i).name for i in range(int(network.num_inputs))]
    if names != [input_name]:
        raise EngineBuildError(f"{onnx_path}: the network's inputs are {names}, its sidecar promises "
                               f"[{input_name!r}]; re-export it with fa-export")
    shape = tuple(network.get_input(0).shape)
    if len(shape) != 4 or shape[0] != -1 or tuple(shape[1:]) != chw:
        raise EngineBuildError(f"{onnx_path}: input shape {shape} is not (-1, {', '.join(map(str, chw))}) "
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
