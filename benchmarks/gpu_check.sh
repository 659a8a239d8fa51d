#!/usr/bin/env bash
# The GPU measurements, as one prepared run for a lent GPU machine (no network there; its own
# python3 with torch, torchvision and timm is used, the repository root is the working folder).
#
#     bash benchmarks/gpu_check.sh [OUTDIR]
#
# In order, each with its own time limit so that one slow step cannot starve the rest:
#   1. checkpoint scoring: benchmarks/checkpoint_speed.py (resnet50 at 224, 10,000 images)
#   2. the baseline recipe: benchmarks/baseline_speed.py --mode full (fast vs naive, real processes)
#   3. the data path alone on the GPU: benchmarks/baseline_speed.py --mode data
#   4. the CUDA-only tests (pytest -m gpu)
# Every step's output goes to OUTDIR (default $OUT, else ./gpu-out) and to the terminal.
set -u
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
OUTDIR=${1:-${OUT:-gpu-out}}
mkdir -p "$OUTDIR"
PY=${PYTHON:-python3}

step() {  # step NAME SECONDS COMMAND...
    local name=$1 limit=$2; shift 2
    echo "=== $name (limit ${limit}s): $*"
    local start=$SECONDS
    timeout --kill-after=10 "$limit" "$@" >"$OUTDIR/$name.txt" 2>&1
    local rc=$?
    cat "$OUTDIR/$name.txt" | tail -n 40
    echo "=== $name: exit $rc after $((SECONDS - start)) s"
}

{
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv
    $PY -c "import sys, torch, torchvision, timm; print(sys.version.split()[0], 'torch', torch.__version__, 'torchvision', torchvision.__version__, 'timm', timm.__version__, 'cuda', torch.version.cuda)"
    nproc
} 2>&1 | tee "$OUTDIR/machine.txt"

step checkpoint_speed 120 $PY benchmarks/checkpoint_speed.py
step baseline_full 300 $PY benchmarks/baseline_speed.py --mode full
step baseline_data 40 $PY benchmarks/baseline_speed.py --mode data --images 4096
step gpu_tests 60 $PY -m pytest -q -m gpu -p no:cacheprovider tests/test_baseline_run.py tests/test_baseline_transforms.py tests/test_checkpoint_inference.py
