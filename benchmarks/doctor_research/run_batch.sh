#!/bin/bash
# Run every line of a batch file, PARALLEL at a time (default 2); results go to results/BATCH.jsonl.
# A line is the arguments of probe.py, or of doctor_sim.py / small.py when it starts with "sim " / "small ".
#   bash benchmarks/doctor_research/run_batch.sh benchmarks/doctor_research/batches/NAME.txt [PARALLEL]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
batch="$1"; par="${2:-2}"
name="$(basename "$batch" .txt)"
export PYTHONPATH="$root/src" LSTMLAB_BUILD_DIR="${LSTMLAB_BUILD_DIR:-/tmp/build-research}"
export PY="${PYTHON:-/work/main/.venv/bin/python}" HERE="$here" NAME="$name"
grep -v '^\s*#' "$batch" | grep -v '^\s*$' | xargs -P "$par" -I{} bash -c '
  line="{}"; script=probe.py
  if [[ $line == sim\ * ]]; then script=doctor_sim.py; line="${line#sim }"; fi
  if [[ $line == small\ * ]]; then script=small.py; line="${line#small }"; fi
  $PY "$HERE/$script" $line --out "$HERE/results/$NAME.jsonl" >> "$HERE/results/$NAME.log" 2>&1'
