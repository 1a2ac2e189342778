#!/usr/bin/env bash
# Set everything up and build the book into _build/html, executing every notebook
# (quick profile on a CPU, full on a GPU; MINILIB_PROFILE overrides). Any notebook error or
# Sphinx warning fails the build.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bin="${VENV:-.venv}/bin/"
[ -z "${VIRTUAL_ENV:-}" ] && [ -z "${COLAB_RELEASE_TAG:-}" ] || bin=""
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
       HF_HUB_DISABLE_PROGRESS_BARS=1 HF_DATASETS_DISABLE_PROGRESS_BARS=1 PYDEVD_DISABLE_FILE_VALIDATION=1
start=$(date +%s)
"${bin}jupyter-book" build -W -n --keep-going --all .
echo "[book] built in $(( $(date +%s) - start )) s: open _build/html/index.html"
