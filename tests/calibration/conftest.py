"""Fixtures of the calibration tests: the tiny FP32 face-model stand-in (tests/helpers/calibration_model.py) and
synthetic faces cropped by the runtime's preprocessing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.helpers.calibration_model import SIZE, export_tiny_onnx, synthetic_calibration_set


@pytest.fixture(scope="session")
def preprocess_config():
    from fa3d.runtime.preprocess import PreprocessConfig
    return PreprocessConfig(input_size=SIZE)


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory, preprocess_config) -> Path:
    pytest.importorskip("torch")
    return export_tiny_onnx(tmp_path_factory.mktemp("tiny") / "model.onnx", preprocess_config)


@pytest.fixture(scope="session")
def synthetic_set(preprocess_config):
    """64 crops of synthetic faces (with labels), made by the runtime's preprocessing."""
    return synthetic_calibration_set(preprocess_config)


@pytest.fixture()
def rng():
    return np.random.default_rng(0)
