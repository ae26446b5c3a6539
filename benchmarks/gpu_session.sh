#!/usr/bin/env bash
# Everything toprec measures on a GPU machine, in one command (used with the lent H100):
# CUDA tests, EASE end to end, autoencoder / sequential / graph epoch speed at competition scale.
#
#   bash benchmarks/gpu_session.sh OUTDIR [steps]
#
# steps: a comma list of info,tests,ease,neural,neural2048,sequential (default: all). Each step has its own
# time limit (GPU_T_<STEP> seconds) and writes OUTDIR/<step>.log (+ JSON where the benchmark has one);
# a failing step does not stop the others. The machine needs python3 with torch (CUDA), numpy, scipy,
# pandas, pyarrow; wheels of anything else (pydantic, ...) can sit in .whl/ and are installed first.
set -u
OUT=${1:-/tmp/gpu-out}
STEPS=${2:-info,tests,ease,neural,neural2048,sequential}
mkdir -p "$OUT"
. benchmarks/gpu_env.sh
SYNTH=$PWD/benchmarks/data/synth
mkdir -p benchmarks/data
step() {  # step NAME LIMIT COMMAND...
  local name=$1 limit=$2; shift 2
  case ",$STEPS," in *",$name,"*) ;; *) return 0 ;; esac
  echo "=== $name (limit ${limit}s): $*"
  local t0=$SECONDS
  timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  echo "=== $name rc=$rc in $((SECONDS - t0))s"
  tail -n "${GPU_TAIL:-25}" "$OUT/$name.log"
}
step info "${GPU_T_INFO:-60}" bash -c "nvidia-smi; $PY -c 'import torch, numpy, scipy, pandas; print(torch.__version__, torch.cuda.is_available(), torch.cuda.get_device_name(0), numpy.__version__, scipy.__version__, pandas.__version__)'; nproc; free -g"
if [ ! -f "$SYNTH/train_ratings.csv" ]; then "$PY" -m toprec data synth --out "$SYNTH" --seed 0 -q; fi
step ease "${GPU_T_EASE:-150}" "$PY" benchmarks/bench_ease.py --data "$SYNTH" --runs "${GPU_EASE_RUNS:-5}" --cache --json "$OUT/ease_gpu.json"
step neural "${GPU_T_NEURAL:-150}" "$PY" benchmarks/bench_neural.py speed --device cuda --synth "$SYNTH" \
  --models "${GPU_NEURAL_MODELS:-multidae,multivae,recvae}" --epochs "${GPU_EPOCHS:-3}" --warmup 1 --valid-repeats 3 --quiet \
  --json "$OUT/neural_speed_cuda.json"
# the same at RecBole's default train_batch_size (2048), for a like-for-like comparison with its per-epoch times
step neural2048 "${GPU_T_NEURAL:-150}" "$PY" benchmarks/bench_neural.py speed --device cuda --synth "$SYNTH" \
  --models multidae,multivae,recvae -p multidae.batch_size=2048 -p multivae.batch_size=2048 -p recvae.batch_size=2048 \
  --epochs "${GPU_EPOCHS:-3}" --warmup 1 --valid-repeats 1 --quiet --json "$OUT/neural_speed_cuda_b2048.json"
step sequential "${GPU_T_SEQUENTIAL:-200}" "$PY" benchmarks/bench_sequential.py speed --device cuda --synth "$SYNTH" \
  --models "${GPU_SEQ_MODELS:-sasrec,bert4rec,lightgcn,ngcf,ncf}" --batches "${GPU_SEQ_BATCHES:-0}" --quiet \
  --json "$OUT/sequential_speed_cuda.json"
step tests "${GPU_T_TESTS:-200}" "$PY" -m pytest -q -p no:cacheprovider -n "${GPU_TEST_WORKERS:-8}" -rfs \
  ${GPU_TESTS:-tests --ignore=tests/test_experiment.py --ignore=tests/test_experiment_tune.py --ignore=tests/test_report_screenshot.py}
exit 0
