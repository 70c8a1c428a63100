"""Backends: ONNX Runtime on the plumbing fixture model; TrtBackend logic against THE STAND-IN (tests/helpers/trt_standin.py)."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from fa3d.runtime.backends import BackendError, backend_kind, open_backend
from fa3d.runtime.backends.onnxrt import OrtBackend, choose_providers
from fa3d.runtime.metadata import MetadataError, write_metadata
from tests.helpers.plumbing import NUM_DENSE, make_plumbing_model, plumbing_metadata
from tests.helpers.trt_standin import Gpu, plumbing_plan


def test_artifact_type_picks_backend(tmp_path):
    assert backend_kind("a/model.onnx") == "onnxruntime"
    assert backend_kind("model.plan") == "tensorrt" and backend_kind("m.ENGINE") == "tensorrt"
    with pytest.raises(BackendError, match="unknown model type"):
        backend_kind("model.pt")
    with pytest.raises(FileNotFoundError):
        open_backend(tmp_path / "missing.onnx")


def test_ort_backend_outputs_and_chunking(plumbing_model):
    with open_backend(plumbing_model) as be:
        assert isinstance(be, OrtBackend) and be.providers == ["CPUExecutionProvider"]
        x = np.random.default_rng(0).standard_normal((5, 3, 64, 64)).astype(np.float32)
        out = be.infer(x)
        assert out["landmarks"].shape == (5, 68, 3) and out["dense"].shape == (5, NUM_DENSE, 3)
        assert out["rotation"].shape == (5, 3, 3) and out["confidence"].shape == (5, 1)
        be.max_batch = 2  # forces chunks of 2, 2, 1: same results
        out2 = be.infer(x)
        for k in out:
            np.testing.assert_allclose(out[k], out2[k], rtol=1e-5, atol=1e-4)
        assert be.infer(x[:0])["landmarks"].shape == (0, 68, 3)
        with pytest.raises(ValueError, match=r"expected inputs \(B, 3, 64, 64\)"):
            be.infer(np.zeros((1, 3, 32, 32), np.float32))


def test_ort_fixed_batch_model_is_chunked(tmp_path):
    p = make_plumbing_model(tmp_path / "fixed.onnx", size=32, fixed_batch=1)
    with open_backend(p) as be:
        assert be.max_batch == 1
        assert be.infer(np.zeros((3, 3, 32, 32), np.float32))["landmarks"].shape == (3, 68, 3)


def test_ort_refuses_missing_or_mismatched_sidecar(tmp_path, plumbing_model):
    bare = tmp_path / "bare.onnx"
    bare.write_bytes(plumbing_model.read_bytes())
    with pytest.raises(MetadataError, match="sidecar"):
        open_backend(bare)
    write_metadata(str(bare) + ".json", plumbing_metadata(size=128))  # wrong input size
    with pytest.raises(BackendError, match="does not match the sidecar"):
        open_backend(bare)


def test_choose_providers():
    assert choose_providers("cpu", ["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    assert choose_providers("auto", ["CUDAExecutionProvider", "CPUExecutionProvider"]) == [
        "CUDAExecutionProvider", "CPUExecutionProvider"]
    with pytest.raises(BackendError, match="onnxruntime-gpu"):
        choose_providers("cuda", ["CPUExecutionProvider"])


# ---------------------------------------------------------------- TrtBackend against the stand-in

SIZE = 32


def _engine(tmp_path, *, engine_meta=None, plan=None, profile=(1, 4, 16), version="10.3.0"):
    path = tmp_path / "model.plan"
    path.write_bytes(plan if plan is not None else plumbing_plan(SIZE, NUM_DENSE, profile, version))
    eng = {"tensorrt_version": version, "gpu_name": "Fake GPU", "compute_capability": "8.7"}
    if engine_meta is not None:
        eng.update(engine_meta)
    write_metadata(str(path) + ".json", plumbing_metadata(SIZE, fmt="tensorrt", engine=eng))
    return path


@pytest.fixture
def fake(monkeypatch):
    return Gpu("10.3.0").install(monkeypatch)


def test_trt_buffers_bindings_and_one_sync_per_batch(tmp_path, fake):
    from fa3d.runtime.backends.trt import TrtBackend

    with open_backend(_engine(tmp_path)) as be:
        assert isinstance(be, TrtBackend)
        assert (be.min_batch, be.opt_batch, be.max_batch) == (1, 4, 16)
        s2 = 3 * SIZE * SIZE
        pinned = sorted(e[1] for e in fake.log if e[0] == "pagelocked_empty")
        assert pinned == sorted([16 * s2, 16 * 68 * 3, 16 * 9, 16 * NUM_DENSE * 3, 16]), "max-batch buffers"
        assert {e[1] for e in fake.log if e[0] == "set_tensor_address"} == {
            "input", "landmarks", "rotation", "dense", "confidence"}
        assert fake.ctx_depth == 0, "the context is popped after loading"
        n_alloc = sum(e[0] == "mem_alloc" for e in fake.log)

        x = np.random.default_rng(1).standard_normal((3, 3, SIZE, SIZE)).astype(np.float32)
        out = be.infer(x)
        np.testing.assert_allclose(out["landmarks"][:, 0, 0], x.mean(axis=(1, 2, 3)), rtol=1e-5)
        np.testing.assert_allclose(out["confidence"][:, 0], x.mean(axis=(1, 2, 3)), rtol=1e-5)
        assert ("set_input_shape", "input", (3, 3, SIZE, SIZE)) in fake.log
        assert [e for e in fake.log if e[0] == "htod"][-1][1] == x.nbytes  # only the batch is copied
        assert sum(e[0] == "synchronize" for e in fake.log) == 1
        assert fake.ctx_depth == 0

        big = np.zeros((20, 3, SIZE, SIZE), np.float32)  # above the profile's max: two batches
        assert be.infer(big)["landmarks"].shape == (20, 68, 3)
        assert [e[2] for e in fake.log if e[0] == "execute_async_v3"][-2:] == [16, 4]
        assert sum(e[0] == "synchronize" for e in fake.log) == 3
        assert sum(e[0] == "mem_alloc" for e in fake.log) == n_alloc, "buffers are allocated once"
    assert sum(e[0] == "free" for e in fake.log) == n_alloc and ("detach", "destroyed") in fake.log
    assert "pycuda.autoinit" not in sys.modules


def test_trt_checks_what_tensorrt_returns(tmp_path, fake, monkeypatch):
    """set_input_shape, set_tensor_address and execute_async_v3 report failure by their return value."""
    with open_backend(_engine(tmp_path)) as be:
        ctx_cls = type(be._trt._context)
        with monkeypatch.context() as m:
            m.setattr(ctx_cls, "execute_async_v3", lambda self, handle: False)
            with pytest.raises(BackendError, match="TensorRT execution failed"):
                be.infer(np.zeros((2, 3, SIZE, SIZE), np.float32))
        with monkeypatch.context() as m:
            m.setattr(ctx_cls, "set_input_shape", lambda self, name, shape: False)
            with pytest.raises(BackendError, match="outside the engine's profile"):
                be.infer(np.zeros((2, 3, SIZE, SIZE), np.float32))
        assert fake.ctx_depth == 0, "the context is popped after a failed call"
    with monkeypatch.context() as m:  # at load time too: the profile's own max shape, every tensor's address
        m.setattr(ctx_cls, "set_input_shape", lambda self, name, shape: False)
        with pytest.raises(BackendError, match="refused the input shape"):
            open_backend(_engine(tmp_path))
    real_address = ctx_cls.set_tensor_address
    with monkeypatch.context() as m:
        m.setattr(ctx_cls, "set_tensor_address",
                  lambda self, name, addr: name != "dense" and real_address(self, name, addr))
        with pytest.raises(BackendError, match="refused the address of tensor 'dense'"):
            open_backend(_engine(tmp_path))
    assert fake.ctx_depth == 0
    monkeypatch.setattr(fake.trt.Runtime, "deserialize_cuda_engine", _renaming(fake.trt.Runtime.deserialize_cuda_engine))
    with pytest.raises(BackendError, match=r"engine inputs \['images'\] do not match the sidecar's 'input'"):
        open_backend(_engine(tmp_path))


def _renaming(deserialize):
    """An engine whose input tensor is called 'images' (the sidecar says 'input')."""

    def wrapped(self, data):
        engine = deserialize(self, data)
        engine.h = dict(engine.h, input="images")
        engine.names = ["images", *engine.names[1:]]
        return engine
    return wrapped


def test_trt_refuses_an_engine_without_a_required_output(tmp_path, fake, monkeypatch):
    real = fake.trt.Runtime.deserialize_cuda_engine

    def without_dense(self, data):
        engine = real(self, data)
        engine.outputs.pop("dense")
        engine.names.remove("dense")
        engine.num_io_tensors -= 1
        return engine
    monkeypatch.setattr(fake.trt.Runtime, "deserialize_cuda_engine", without_dense)
    with pytest.raises(BackendError, match=r"lacks the outputs \['dense'\]"):
        open_backend(_engine(tmp_path))
    assert fake.ctx_depth == 0 and ("detach", "destroyed") in fake.log


@pytest.mark.parametrize("meta,match", [
    ({"tensorrt_version": "8.6.1"}, r"TensorRT 8\.6\.1.*this machine has TensorRT 10\.3\.0.*fa-export --from-onnx model\.onnx"),
    ({"gpu_name": "Orin"}, r"GPU 'Orin'.*'Fake GPU'.*fa-export --from-onnx"),
    ({"compute_capability": "7.2"}, r"compute capability \(7, 2\).*fa-export --from-onnx"),
])
def test_trt_refuses_engine_for_other_version_or_gpu(tmp_path, fake, meta, match):
    with pytest.raises(BackendError, match=match):
        open_backend(_engine(tmp_path, engine_meta=meta))
    assert not any(e[0] == "deserialize" for e in fake.log), "refused before deserializing"


def test_trt_refuses_wrong_metadata_schema_and_missing_engine_block(tmp_path, fake):
    path = _engine(tmp_path)
    side = json.loads((tmp_path / "model.plan.json").read_text())
    side["schema_version"] = 99
    (tmp_path / "model.plan.json").write_text(json.dumps(side))
    with pytest.raises(MetadataError, match="schema version 99"):
        open_backend(path)
    write_metadata(str(path) + ".json", plumbing_metadata(SIZE, fmt="tensorrt", engine=None))
    with pytest.raises(MetadataError, match="no 'engine' entry.*fa-export --from-onnx"):
        open_backend(path)
    write_metadata(str(path) + ".json", plumbing_metadata(SIZE, fmt="onnx"))
    with pytest.raises(MetadataError, match="expected 'tensorrt'"):
        open_backend(path)


def test_trt_version_dispatch_and_corrupt_engine(tmp_path, monkeypatch):
    Gpu("8.4.3").install(monkeypatch)
    with pytest.raises(BackendError, match=r"too old.*>= 8\.5"):
        open_backend(_engine(tmp_path, engine_meta={"tensorrt_version": "8.4.3"}))
    gpu = Gpu("11.1.0").install(monkeypatch)
    with pytest.raises(BackendError, match="could not deserialize"):
        open_backend(_engine(tmp_path, version="11.1.0", plan=b"garbage"))
    assert gpu.ctx_depth == 0 and ("detach", "destroyed") in gpu.log
    # a sidecar written where the GPU could not be queried names no GPU: accepted
    with open_backend(_engine(tmp_path, version="11.1.0", engine_meta={"gpu_name": None,
                                                                        "compute_capability": None})) as be:
        assert be.max_batch == 16


def test_trt_close_from_another_thread_releases_everything_then_detaches(tmp_path, fake):
    """close() popped the context before detach(): from a second thread pycuda leaked the context,
    and the runtime, stream and pinned buffers were released after the context was gone."""
    import gc
    import threading

    be = open_backend(_engine(tmp_path))
    be.infer(np.zeros((2, 3, SIZE, SIZE), np.float32))
    worker = threading.Thread(target=be.close)
    worker.start()
    worker.join()
    gc.collect()
    log = fake.log
    detach = log.index(("detach", "destroyed")) if ("detach", "destroyed") in log else None
    assert ("detach", "leaked") not in log and detach is not None
    released = [(i, e) for i, e in enumerate(log) if e[0] in ("release", "free")]
    kinds = {e[1] for _, e in released if e[0] == "release"}
    assert {"context", "engine", "runtime", "stream", "pinned"} <= kinds
    assert all(i < detach for i, _ in released), "everything is released before the context is detached"
    assert all(e[2] for _, e in released if e[0] == "release"), "with the context current"
    be.close()  # idempotent
    assert log.count(("detach", "destroyed")) == 1


@pytest.mark.parametrize("version", ["8.5.2", "10.3.0", "11.4.1"])
def test_trt_dla_core_is_set_before_deserialising(tmp_path, monkeypatch, version):
    """An engine built for DLA core 1 ran on core 0 (Runtime.DLA_core exists in every version)."""
    gpu = Gpu(version).install(monkeypatch)
    with open_backend(_engine(tmp_path, version=version, engine_meta={"dla_core": 1})):
        pass
    i = gpu.log.index(("runtime.DLA_core", 1))
    assert gpu.log[i + 1][0] == "deserialize" and gpu.log[i + 1][2] == 1
    with open_backend(_engine(tmp_path, version=version)):
        pass
    assert gpu.log.count(("runtime.DLA_core", 1)) == 1  # a GPU engine sets no DLA core


def test_trt_static_profile_pads_smaller_batches(tmp_path, fake):
    """A DLA engine has a static profile (min = opt = max); smaller batches are padded."""
    with open_backend(_engine(tmp_path, profile=(4, 4, 4), engine_meta={"dla_core": 0})) as be:
        x = np.random.default_rng(2).standard_normal((1, 3, SIZE, SIZE)).astype(np.float32)
        out = be.infer(x)
        assert out["landmarks"].shape == (1, 68, 3)
        np.testing.assert_allclose(out["landmarks"][0, 0, 0], x.mean(), rtol=1e-5)
        assert be.infer(np.zeros((6, 3, SIZE, SIZE), np.float32))["landmarks"].shape == (6, 68, 3)
    assert [e[2] for e in fake.log if e[0] == "execute_async_v3"] == [4, 4, 4]
    assert not any(e[0] == "shape_refused" for e in fake.log)


def test_trt_one_logger_for_every_backend(tmp_path, fake):
    """One trt.Logger per process, shared by every runtime (and the builder)."""
    with open_backend(_engine(tmp_path)), open_backend(_engine(tmp_path)):
        pass
    from fa3d.runtime.backends.trt import shared_logger
    assert fake.loggers == 1 and shared_logger() is shared_logger()


def test_trt_without_tensorrt_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import fails
    with pytest.raises(BackendError, match="TensorRT cannot be imported.*--model model.onnx"):
        open_backend(_engine(tmp_path))


def test_trt_without_pycuda_says_what_to_do(tmp_path, monkeypatch):
    Gpu("10.3.0").install(monkeypatch, pycuda=False)
    with pytest.raises(BackendError, match="pycuda cannot be imported.*pip install pycuda"):
        open_backend(_engine(tmp_path))


def test_gpu_probe_never_imports_tensorrt():
    from fa3d.runtime.backends.trt import gpu_probe

    before = set(sys.modules)
    reason = gpu_probe()
    assert "tensorrt" not in set(sys.modules) - before
    assert reason is None or isinstance(reason, str)


@pytest.mark.gpu
def test_real_tensorrt_matches_onnxruntime(tmp_path, plumbing_model):
    """Builds an engine from the plumbing ONNX with fa-export's builder and compares with ONNX Runtime."""
    from fa3d.export.trt_build import BuildOptions, build_engine

    engine = tmp_path / "plumbing.plan"
    build_engine(plumbing_model, engine, BuildOptions())
    x = np.random.default_rng(0).uniform(-1, 1, (3, 3, 64, 64)).astype(np.float32)
    with open_backend(engine) as trt_be, open_backend(plumbing_model) as ort_be:
        a, b = trt_be.infer(x), ort_be.infer(x)
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-3, atol=1e-2)
