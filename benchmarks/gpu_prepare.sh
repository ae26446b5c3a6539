#!/usr/bin/env bash
# Prepares a device call of benchmarks/gpu_auto.sh (run here, in the repository root; then carry .whl and .gpudata):
#   1. .gpudata/: the files of ../shared/data that bench_auto.py reads (16 MB; the device gets no ../shared);
#   2. .whl/: wheels of what `toprec auto` needs and the lent GPU machine's image lacks (it has torch, numpy, scipy,
# pandas, pyarrow, typer, rich, safetensors, xxhash, scikit-learn, narwhals, tqdm ...; Python 3.12), downloaded
# here into .whl/ (both kept out of git through .git/info/exclude), at the versions of this venv.
# benchmarks/gpu_auto.sh and gpu_session.sh install them first; carry .whl with the device call.
# Missed in session 8's first GPU run: implicit (iALS's solver), so iALS dropped out of every table.
set -eu
PY=${PYTHON:-.venv/bin/python}
ver() { "$PY" -m pip show "$1" 2>/dev/null | awk '/^Version/{print $2}'; }
pkgs=""
for p in pydantic pydantic_core annotated_types typing_inspection typing_extensions optuna alembic SQLAlchemy \
         colorlog Mako lightgbm implicit; do
  v=$(ver "$p"); [ -n "$v" ] || { echo "not installed here: $p"; exit 1; }
  pkgs="$pkgs $p==$v"
done
mkdir -p .whl
# shellcheck disable=SC2086
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl $pkgs
ls -la .whl
S=${SHARED:-../shared/data}
rm -rf .gpudata && mkdir -p .gpudata/ml-1m/derived .gpudata/hetrec2011-lastfm-2k
cp -r "$S/ml-100k" "$S/boostcamp-movierec-2022" .gpudata/
cp "$S/ml-1m/derived/ml1m_ratings_ge4_with_time.csv.gz" .gpudata/ml-1m/derived/
cp "$S/ml-1m/movies.dat" .gpudata/ml-1m/
cp "$S"/hetrec2011-lastfm-2k/{artists.dat,tags.dat,user_artists.dat,user_taggedartists.dat} .gpudata/hetrec2011-lastfm-2k/
chmod -R u+w .gpudata
ex=$(git rev-parse --git-path info/exclude); mkdir -p "$(dirname "$ex")"
grep -qx "/.whl/" "$ex" 2>/dev/null || echo "/.whl/" >>"$ex"
grep -qx "/.gpudata/" "$ex" 2>/dev/null || echo "/.gpudata/" >>"$ex"
du -sh .whl .gpudata
