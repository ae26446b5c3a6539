#!/usr/bin/env bash
# `toprec auto --device cuda` on the lent GPU machine: benchmarks/bench_auto.py for several datasets at once
# (one process each, OMP/MKL threads split between them), in one command that fits the device's limits.
#
#   bash benchmarks/gpu_auto.sh OUTDIR [budget=7m] [limit_s=530] [datasets=ml-1m,lastfm,comp-sample,ml-100k] [seeds=0]
#
# Prepare the call here with benchmarks/gpu_prepare.sh, then: run `bash benchmarks/gpu_auto.sh $OUT 7m 545` with
# carry [".whl", ".gpudata", "benchmarks/data/ml-100k"] and timeout_s 585 (the device's limits: 10 minutes a
# command, 15 a session). The ML-100K folder is carried as `toprec data fetch ml-100k` wrote it here: its
# directors, writers and sequels come from a wheel it downloads, and the device has no network.
# Data: ../shared/data as on the development machine; where it is missing and .gpudata/ is there (a copy of
# the needed files in the same layout, carried to the machine), ../shared/data points at it. Wheels of
# packages the machine lacks (pydantic, optuna, lightgbm, ...) can sit in .whl/ and are installed first.
# Writes OUTDIR/auto_<dataset>.json (rewritten after each stage, so a run cut at limit_s still leaves
# auto vs default EASE), OUTDIR/auto_gpu.tgz (every log; refreshed each minute) and OUTDIR/info.txt.
set -u
OUT=${1:-/tmp/gpu-out}
BUDGET=${2:-7m}
LIMIT=${3:-530}
DATASETS=${4:-ml-1m,lastfm,comp-sample,ml-100k}
SEEDS=${5:-0}
mkdir -p "$OUT"
. benchmarks/gpu_env.sh
if [ ! -d ../shared/data ] && [ -d .gpudata ]; then
  mkdir -p ../shared && ln -s "$PWD/.gpudata" ../shared/data
fi
W=$(mktemp -d)
{ nvidia-smi -L; nproc; "$PY" -c 'import torch, numpy, scipy, pandas, pydantic, optuna; print("torch", torch.__version__,
  torch.cuda.is_available(), "numpy", numpy.__version__, "scipy", scipy.__version__, "pandas", pandas.__version__,
  "pydantic", pydantic.__version__, "optuna", optuna.__version__)
import implicit, lightgbm  # iALS and the re-ranker: without them auto runs a smaller portfolio'; } >"$W/info.txt" 2>&1
ok=$?
cp "$W/info.txt" "$OUT/info.txt"
cat "$W/info.txt"
[ "$ok" -eq 0 ] || { echo "missing packages on this machine: see benchmarks/gpu_prepare.sh"; exit 1; }
IFS=, read -ra DS <<<"$DATASETS"
threads=$(( $(nproc) / ${#DS[@]} )); [ "$threads" -ge 1 ] || threads=1
for d in "${DS[@]}"; do
  OMP_NUM_THREADS=$threads MKL_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads \
    timeout "$LIMIT" "$PY" benchmarks/bench_auto.py --datasets "$d" --seeds "$SEEDS" --budget "$BUDGET" --device "${DEVICE:-cuda}" \
    --log --tag "$(nvidia-smi -L 2>/dev/null | head -1 | cut -c1-60)" --json "$OUT/auto_$d.json" \
    >"$W/auto_$d.out" 2>"$W/auto_$d.log" &
done
( while sleep 60; do tar czf "$OUT/auto_gpu.tgz.tmp" -C "$W" . && mv "$OUT/auto_gpu.tgz.tmp" "$OUT/auto_gpu.tgz"; done ) &
ticker=$!
wait_for=$(jobs -p | grep -v "^$ticker$")
for p in $wait_for; do wait "$p"; echo "job $p rc=$?"; done
kill "$ticker" 2>/dev/null
tar czf "$OUT/auto_gpu.tgz" -C "$W" .
for d in "${DS[@]}"; do echo "=== $d"; grep -h "^early\|Error\|error" "$W/auto_$d.log" | tail -5; cat "$W/auto_$d.out"; done
exit 0
