#!/usr/bin/env bash
# GPU check (issue 16): CUDA tests, speed + memory of the Triton engine (with taps) against cuDNN,
# and a 1-process-per-GPU torchrun training over NCCL.  Meant for one GPU in under 8 minutes.
#
#   bash benchmarks/gpu_check.sh [OUTDIR]      (from the repository root; OUTDIR default gpu_check_out)
#   GPU_CHECK_DRY_RUN=1 bash benchmarks/gpu_check.sh   (no GPU: the same plumbing on the CPU, tiny)
#
# Writes benchmarks/gpu_results.jsonl (one JSON object per benchmark config: cell, mode, shape,
# lstmlab_ms, torch_ms, ratio, peak_mb, torch_peak_mb, device) and the logs of every stage in
# OUTDIR.  Needs a Python whose torch sees a GPU ($PYTHON, python3, python, /opt/torch/.venv/bin/python3)
# with triton (CUDA builds of torch ship it), numpy, pytest and safetensors; it installs nothing.
# Every stage runs under its own timeout (seconds: T_BUILD, T_TESTS, T_SPEED, T_TRAIN) and within
# an overall budget (GPU_CHECK_BUDGET, default 450 s: a stage gets at most what is left, and is
# skipped with under 10 s left); later stages run even when one fails; the exit status is 1 if any
# stage failed or was skipped.  Speed is measured twice: eager launches, and one CUDA graph per
# shape (LSTMLAB_GPU_GRAPHS=1); gpu_results.jsonl tells them apart by "engine".
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${1:-gpu_check_out}
DRY=${GPU_CHECK_DRY_RUN:-0}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
rm -f "$OUT"/*.log  # no stale stage logs from an earlier run
RESULTS=$ROOT/benchmarks/gpu_results.jsonl
[ "$DRY" = 1 ] && RESULTS=$OUT/gpu_results.jsonl  # a dry run never replaces the committed GPU results
T_BUILD=${T_BUILD:-120} T_TESTS=${T_TESTS:-150} T_SPEED=${T_SPEED:-100} T_TRAIN=${T_TRAIN:-90}
BUDGET=${GPU_CHECK_BUDGET:-450}
START=$SECONDS
FAILED=()
say() { echo "[gpu_check $((SECONDS - START))s] $*"; }

# stage NAME TIMEOUT CMD...: run CMD with its output in $OUT/NAME.log (and on screen); record a failure
stage() {
  local name=$1 limit=$2 rc=0 left=$((BUDGET - SECONDS + START))
  shift 2
  if [ "$left" -lt 10 ]; then
    say "stage $name SKIPPED: the ${BUDGET}s budget is spent"
    FAILED+=("$name")
    return 0
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  say "stage $name (timeout ${limit}s): $*"
  timeout --kill-after=10 "$limit" "$@" > >(tee "$OUT/$name.log") 2>&1 || rc=$?
  if [ "$rc" -ne 0 ]; then
    [ "$rc" -eq 124 ] && say "stage $name TIMED OUT after ${limit}s" || say "stage $name FAILED (exit $rc)"
    FAILED+=("$name")
  else
    say "stage $name ok"
  fi
}

find_python() {
  local cand probe
  probe="import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"
  [ "$DRY" = 1 ] && probe="import torch"
  for cand in "${PYTHON:-}" "$ROOT/.venv/bin/python" python3 python /opt/torch/.venv/bin/python3; do
    if [ -n "$cand" ] && command -v "$cand" >/dev/null 2>&1 && "$cand" -c "$probe" >/dev/null 2>&1; then
      command -v "$cand"
      return 0
    fi
  done
  return 1
}

PY=$(find_python) || { say "no Python with a CUDA torch found (set PYTHON=...)"; exit 3; }
say "python: $PY (dry run: $DRY)"
missing=$("$PY" -c "
import importlib.util as u
print(' '.join(m for m in ('triton', 'numpy', 'pytest', 'safetensors') if u.find_spec(m) is None))")
[ -z "$missing" ] || { say "missing Python packages: $missing (pip install them; this script installs nothing)"; exit 3; }
export PYTHONPATH=$ROOT/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
export LSTMLAB_BUILD_DIR=${LSTMLAB_BUILD_DIR:-$OUT/build}
if [ "$DRY" = 1 ]; then DEVICE=cpu; NGPU=0; else DEVICE=cuda; NGPU=$("$PY" -c "import torch; print(torch.cuda.device_count())"); fi

{ command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true
  "$PY" -c "import platform, torch, triton; print('python', platform.python_version(), '| torch', torch.__version__,
    '| cuda', torch.version.cuda, '| triton', triton.__version__, '| gpus', torch.cuda.device_count())"
} 2>&1 | tee "$OUT/env.txt"

# 1. the fused C++ extension (the auto engine of the training stage and the fused CUDA tests need it)
stage build "$T_BUILD" "$PY" -c "from lstmlab.engine import fused; fused.load(); print('fused extension built')"

# 2. the Triton-kernel tests (interpreter on the CPU + the same on CUDA, CUDA graphs included)
if [ "$DRY" = 1 ]; then
  stage gpu_kernels "$T_TESTS" "$PY" -m pytest -q -rs -p no:cacheprovider tests/test_gpu_kernels.py -k "refused or leak"
else
  stage gpu_kernels "$T_TESTS" "$PY" -m pytest -q -rs -p no:cacheprovider -m "not slow" tests/test_gpu_kernels.py
fi

# 3. speed and peak memory: the Triton engine with taps (and without, and inference) against torch.nn /
#    cuDNN, with eager launches and with one CUDA graph per shape
if [ "$DRY" = 1 ]; then
  stage speed "$T_SPEED" "$PY" benchmarks/speed.py --device cpu --json --quick --engine fused --cells lstm
else
  stage speed "$T_SPEED" "$PY" benchmarks/speed.py --device cuda --json --engine gpu
  stage speed_graphs "$T_SPEED" env LSTMLAB_GPU_GRAPHS=1 "$PY" benchmarks/speed.py --device cuda --json --engine gpu
fi
stage results 30 "$PY" - "$RESULTS" "$DEVICE" "$OUT/speed.log" "$OUT/speed_graphs.log" <<'EOF'
import json, os, sys
dst, device, *logs = sys.argv[1:]
rows = []
for src in logs:
    if not os.path.exists(src):
        continue
    header, graphs = {}, src.endswith("_graphs.log")
    for line in open(src):
        if not line.startswith("{"):
            continue
        r = json.loads(line)
        engine = header.get("engine", "") + ("+graphs" if graphs else "")
        if "header" in r:
            header = r["header"]
        elif "config" in r:
            rows.append({"cell": r["cell"], "mode": r["mode"], "shape": r["config"], "lstmlab_ms": r["lstmlab_ms"],
                         "torch_ms": r["torch_ms"], "ratio": r["ratio"], "peak_mb": r.get("lstmlab_peak_mb"),
                         "torch_peak_mb": r.get("torch_peak_mb"), "device": header.get("gpu", device),
                         "engine": engine, "torch": header.get("torch")})
        elif r.get("summary"):
            print(f"{engine} {r['cell']} {r['mode']}: geometric mean ratio {r['geomean_ratio']:.2f}, "
                  f"max {r['max_ratio']:.2f}")
if not rows:
    sys.exit(f"no benchmark rows in {logs}")
with open(dst, "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in rows)
print(f"wrote {len(rows)} rows to {dst}")
EOF

# 4. data-parallel training: torchrun, one process per GPU (NCCL needs >= 2 GPUs; with one the
#    process group is not formed), [train] device = "cuda", gradient monitor on
NPROC=$NGPU
[ "$DRY" = 1 ] && NPROC=2
[ "$NPROC" -ge 2 ] || say "NOTE: $NGPU GPU: torchrun runs 1 process, so no NCCL collective is exercised"
cat > "$OUT/train.toml" <<EOF
[data]
source = "adding"
length = 20
n_train = 512
n_val = 128
n_test = 128

[model]
layers = [{type = "LSTM", units = 16}, {type = "Dense", units = 1}]

[train]
epochs = 2
batch_size = 64
learning_rate = 1e-2
clipnorm = 1.0
verbose = 0
device = "$DEVICE"

[train.monitor]
every = 2
EOF
rm -rf "$OUT/train_run"
stage torchrun "$T_TRAIN" env OMP_NUM_THREADS=1 "$PY" -m torch.distributed.run --standalone \
  --nproc_per_node "$NPROC" -m lstmlab train "$OUT/train.toml" --run-dir "$OUT/train_run"
stage train_result 30 "$PY" - "$OUT/train_run/result.json" "$NPROC" <<'EOF'
import json, sys
res = json.load(open(sys.argv[1]))
print({k: res.get(k) for k in ("status", "epochs", "world_size", "test", "time_s")})
assert res["status"] == "completed", res["status"]
assert res.get("world_size", 1) == int(sys.argv[2]), (res.get("world_size"), sys.argv[2])
EOF

# 5. every other cuda-marked test of the suite (the fused engine's device-generic route, ...)
[ "$DRY" = 1 ] || stage cuda_tests "$T_TESTS" "$PY" -m pytest -q -rs -p no:cacheprovider -m cuda tests \
  --ignore=tests/test_gpu_kernels.py

say "done in $((SECONDS - START))s; logs in $OUT/, results in $RESULTS"
if [ "${#FAILED[@]}" -gt 0 ]; then
  say "FAILED stages: ${FAILED[*]}"
  exit 1
fi
say "all stages passed"
