#!/bin/bash
# Run every line of a batch file (probe.py arguments) two at a time; results go to results/BATCH.jsonl.
#   bash benchmarks/doctor_research/run_batch.sh benchmarks/doctor_research/batches/NAME.txt [PARALLEL]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
batch="$1"; par="${2:-2}"
name="$(basename "$batch" .txt)"
export PYTHONPATH="$root/src" LSTMLAB_BUILD_DIR="${LSTMLAB_BUILD_DIR:-/tmp/build-research}"
py="${PYTHON:-/work/main/.venv/bin/python}"
grep -v '^\s*#' "$batch" | grep -v '^\s*$' | \
  xargs -P "$par" -I{} sh -c "$py $here/probe.py {} --out $here/results/$name.jsonl >> $here/results/$name.log 2>&1"
