#!/usr/bin/env bash
# Reproduces the committed zoo from scratch on the shared HAM10000 copy (resumable: re-run after a kill).
# Usage: bash models/zoo/train_zoo.sh [DATA_ROOT] [RUN_DIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${1:-../shared/data/ham10000-isic2019}
RUNS=${2:-runs/zoo}
BIN=.venv/bin
CFG=${CFG:-configs/ham_zoo.yaml}
# PASSIVE: OpenMP threads sleep instead of spinning when the 2 cores are shared (spinning cost 10x here).
export PYTHONUNBUFFERED=1 OMP_WAIT_POLICY=PASSIVE MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=68719476736
resume() { [ -f "$1/last.pt" ] && echo --resume || true; }
done_() { [ -f "$1/metrics.json" ]; }

done_ "$RUNS/teacher" || $BIN/ssdkd-distill teacher --config $CFG --data "$DATA" --out "$RUNS/teacher" $(resume "$RUNS/teacher")
done_ "$RUNS/teacher/ss_head" || $BIN/ssdkd-distill ss-head --config $CFG --data "$DATA" --teacher "$RUNS/teacher" \
  --out "$RUNS/teacher/ss_head" $(resume "$RUNS/teacher/ss_head")
for m in ${METHODS:-scratch ssd-kd kd rkd d-kd}; do
  done_ "$RUNS/$m" || $BIN/ssdkd-distill student --config $CFG --data "$DATA" --teacher "$RUNS/teacher" --method "$m" \
    --out "$RUNS/$m" $(resume "$RUNS/$m")
done
for r in teacher scratch kd rkd d-kd ssd-kd; do
  $BIN/ssdkd-distill evaluate "$RUNS/$r/best.pt" --data "$DATA" --split test --out "$RUNS/$r/test_metrics.json"
done
