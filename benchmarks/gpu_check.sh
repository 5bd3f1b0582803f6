#!/usr/bin/env bash
# GPU check of the fused engine: CUDA equivalence tests + speed benchmark on a CUDA machine.
#
#   bash benchmarks/gpu_check.sh [OUTDIR]        (from a fresh checkout; OUTDIR default gpu_check_out)
#
# Finds a Python whose torch sees a GPU ($PYTHON, python3, python, /opt/torch/.venv/bin/python3);
# only if there is none it makes .venv-gpu (with system site-packages) and tries `pip install
# torch` (whatever CUDA build the index offers; the machine may have no network).  Prints what it
# finds; each stage runs even if an earlier one failed; the exit status is that of the CUDA tests.
set -u
cd "$(dirname "$0")/.."
OUT=${1:-gpu_check_out}
mkdir -p "$OUT"
say() { echo "[gpu_check] $*"; }
cuda_ok() { "$1" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" >/dev/null 2>&1; }

PY=""
for cand in "${PYTHON:-}" python3 python /opt/torch/.venv/bin/python3; do
  if [ -n "$cand" ] && command -v "$cand" >/dev/null 2>&1 && cuda_ok "$cand"; then PY=$(command -v "$cand"); break; fi
done
if [ -z "$PY" ]; then
  say "no Python with a CUDA torch found; creating .venv-gpu"
  python3 -m venv --system-site-packages .venv-gpu && PY=$PWD/.venv-gpu/bin/python
  cuda_ok "$PY" || "$PY" -m pip install -q torch || say "pip install torch failed (no network?)"
  cuda_ok "$PY" || { say "still no CUDA torch: giving up"; exit 3; }
fi
for mod in numpy pytest safetensors; do
  "$PY" -c "import $mod" 2>/dev/null || "$PY" -m pip install -q "$mod" || say "could not install $mod"
done
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 | tee "$OUT/gpu.txt"
"$PY" - <<'EOF' 2>&1 | tee -a "$OUT/gpu.txt"
import platform, shutil, torch
print("python", platform.python_version(), "| torch", torch.__version__, "| cuda", torch.version.cuda,
      "| device", torch.cuda.get_device_name(), "| ninja", shutil.which("ninja"), "| c++", shutil.which("c++"))
EOF

export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
export LSTMLAB_BUILD_DIR=${LSTMLAB_BUILD_DIR:-$PWD/$OUT/build}
say "building the extension"
"$PY" -c "from lstmlab.engine import fused; print(fused.configure())" 2>&1 | tail -5 | tee "$OUT/build.txt"

say "CUDA tests"
"$PY" -m pytest tests/test_engine_fused.py -m cuda -rs -q -p no:cacheprovider 2>&1 | tee "$OUT/cuda_tests.txt"
status=${PIPESTATUS[0]}
say "CPU tests of the same file (sanity on this machine)"
"$PY" -m pytest tests/test_engine_fused.py -q -p no:cacheprovider 2>&1 | tail -3 | tee "$OUT/cpu_tests.txt"

say "speed (CUDA)"
timeout 900 "$PY" benchmarks/speed.py --device cuda --json 2>&1 | tee "$OUT/speed_cuda.jsonl"
say "done: CUDA tests exit status $status; results in $OUT/"
exit "$status"
