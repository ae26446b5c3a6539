#!/usr/bin/env bash
# The test suite: creates the virtualenv if needed, installs toprec with its
# test extras, runs pytest. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${TOPREC_VENV:-.venv}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e '.[test]'
exec "$VENV/bin/python" -m pytest "$@"
