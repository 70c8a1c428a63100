#!/usr/bin/env bash
# One GPU check of fa3d's TensorRT path, self-contained: run from a checkout on a machine with an NVIDIA GPU,
# TensorRT's Python bindings and (for the runtime backend) pycuda. It installs fa3d from this checkout into a
# virtual environment that sees the system's TensorRT, runs the gpu-marked tests and fa-verify, and leaves
# every log and report in $OUT (default ./gpu-check). Nothing here has been run by us: no machine of ours has a GPU.
#
#   tools/gpu_check.sh                 # FP32/FP16/INT8 engines, tests, fa-verify
#   DLA_CORE=0 tools/gpu_check.sh      # Jetson with a DLA: also fa-verify --dla-core 0
#
# Exit status: fa-verify's (0 every check passed, 1 a check failed, 3 no usable GPU), or 4 when the gpu tests
# failed while fa-verify passed, or 2 when the environment could not be set up.
set -u
cd "$(dirname "$0")/.."
OUT="${OUT:-gpu-check}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
ENV="${GPU_CHECK_VENV:-.venv-gpu}"

{
  echo "== machine"; uname -a; nvidia-smi 2>&1 | head -15; cat /etc/nv_tegra_release 2>/dev/null
  "$PY" -c "import tensorrt; print('tensorrt', tensorrt.__version__)" 2>&1
  "$PY" -c "import pycuda; print('pycuda', pycuda.VERSION_TEXT)" 2>&1
} > "$OUT/environment.txt" 2>&1
cat "$OUT/environment.txt"

# a venv that sees the system's tensorrt (and pycuda, when installed there); fa3d and its test extras on top
if [ ! -x "$ENV/bin/python" ]; then
  "$PY" -m venv --system-site-packages "$ENV" || { echo "gpu_check: cannot make a venv" >&2; exit 2; }
fi
"$ENV/bin/python" -m pip install --quiet -e ".[export,dev]" > "$OUT/pip.txt" 2>&1 \
  || { echo "gpu_check: pip install -e .[export,dev] failed (see $OUT/pip.txt)" >&2; exit 2; }
"$ENV/bin/python" -c "import pycuda.driver" 2>/dev/null || \
  "$ENV/bin/python" -m pip install --quiet --no-binary pycuda "pycuda>=2022.1" >> "$OUT/pip.txt" 2>&1 || \
  echo "gpu_check: pycuda could not be built here (CUDA 13 needs pycuda>=2025.1.2); the runtime backend checks will say so"

"$ENV/bin/python" -m pytest -m gpu -ra -q --junitxml="$OUT/pytest-gpu.xml" tests/ 2>&1 | tee "$OUT/pytest-gpu.txt"
tests_rc=${PIPESTATUS[0]}
verify_args=(--out "$OUT/verify" --json)
if [ -n "${DLA_CORE:-}" ]; then verify_args+=(--dla-core "$DLA_CORE"); fi
"$ENV/bin/fa-verify" "${verify_args[@]}" > "$OUT/fa-verify.json" 2> "$OUT/fa-verify.stderr.txt"
verify_rc=$?
echo "gpu_check: pytest -m gpu exit $tests_rc, fa-verify exit $verify_rc; reports in $OUT/"
if [ "$verify_rc" -ne 0 ]; then exit "$verify_rc"; fi
if [ "$tests_rc" -ne 0 ] && [ "$tests_rc" -ne 5 ]; then exit 4; fi
exit 0
