# The two commands of the README: `make run` (set up + run the main job) and `make test` (set up + run
# every test). Both are idempotent: a stamp file per environment records what was installed.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
OUT    ?= out

.PHONY: run test env-run env-test teacher-env test-teacher clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# base install: the runtime on CPU (numpy, OpenCV, ONNX Runtime)
$(VENV)/.stamp-run: pyproject.toml | $(BIN)/python
	$(PIP) install --quiet -e .
	touch $@

# test install: torch 2.13.0 first (pip takes the CPU build from local disk; a range would fetch CUDA); [ros] too,
# so that the ROS 2 / Foxglove layer is tested (make run's base install stays lean)
$(VENV)/.stamp-test: pyproject.toml | $(BIN)/python
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -e ".[train,export,dev,ros]"
	touch $@

env-run: $(VENV)/.stamp-run
env-test: $(VENV)/.stamp-test

run: env-run
	$(BIN)/fa-run --headless --output $(OUT)/sample_annotated.mp4 --json $(OUT)/sample.jsonl

# the import contract first (pyproject.toml [tool.importlinter]: the layers of the README's "Architecture")
test: env-test
	$(BIN)/lint-imports
	$(BIN)/python -m pytest

# MediaPipe (the fa-label teacher) in an environment of its own: it pins numpy<2 and brings a second cv2.
teacher-env:
	$(PYTHON) -m venv .venv-teacher
	.venv-teacher/bin/python -m pip install --quiet --upgrade pip
	.venv-teacher/bin/python -m pip install --quiet -e ".[teacher]" pytest

# the MediaPipe teacher's own tests (skipped, with the reason, by `make test`, which has no MediaPipe)
test-teacher: teacher-env
	.venv-teacher/bin/python -m pytest tests/training/test_label.py

clean:
	rm -rf $(VENV) .venv-teacher $(OUT) build *.egg-info
