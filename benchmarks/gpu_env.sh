# Sourced by benchmarks/gpu_session.sh and gpu_auto.sh on the lent GPU machine: PY, unbuffered output, no
# tracking, and the wheels in .whl/ (benchmarks/gpu_prepare.sh) installed into /tmp/site ahead of src/.
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 TOPREC_NO_TRACK=1
if ls .whl/*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "wheel install failed"; exit 1; }
  export PYTHONPATH=/tmp/site:$PWD/src
else
  export PYTHONPATH=$PWD/src
fi
