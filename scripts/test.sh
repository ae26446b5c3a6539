#!/usr/bin/env bash
# The test suite: creates the virtualenv if needed, installs toprec with its
# test extras, runs pytest. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${TOPREC_VENV:-.venv}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
# torch (optional at run time: GPU paths) first, pinned, so nothing pulls a multi-GB CUDA build
"$VENV/bin/python" -c "import torch" 2>/dev/null \
  || "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "torch==2.13.0"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e '.[test]'
exec "$VENV/bin/python" -m pytest "$@"
