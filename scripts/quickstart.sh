#!/usr/bin/env bash
# The main job, from a fresh clone: virtualenv, install, fetch MovieLens-100K,
# competition-style validation (last event + 9 random earlier ones per user),
# a metrics report (report.json) and a top-10 submission (submission.csv).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${TOPREC_VENV:-.venv}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e .
"$VENV/bin/toprec" data fetch ml-100k --out data/ml-100k
"$VENV/bin/toprec" evaluate --data data/ml-100k --model popularity,itemknn,ease --json report.json
"$VENV/bin/toprec" submit --data data/ml-100k --model ease --output submission.csv
