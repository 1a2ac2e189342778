#!/usr/bin/env bash
# Set up everything the book, its notebooks and its tests need, in ./.venv (override: VENV=...).
# Safe to run again: a second run only checks what is there.
#   - torch first: the CUDA build where an NVIDIA GPU is present, otherwise a CPU build
#     (a local wheel if pip is configured with one, PyTorch's CPU index, then PyPI);
#     a torch that is already importable (Colab, a conda env) is kept as it is.
#   - then requirements.txt and minilib itself (pip install -e .).
#   - Debian data packages for the full profile (KJV, GCIDE, Fashion-MNIST) where apt-get
#     can be used (root or passwordless sudo); elsewhere the full profile names what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
start=$(date +%s)

if [ -n "${VIRTUAL_ENV:-}" ] || [ -n "${COLAB_RELEASE_TAG:-}" ]; then
  py=python                         # already inside an environment: use it
elif [ -x "$VENV/bin/python" ]; then
  py="$VENV/bin/python"
else
  echo "[setup] creating $VENV"
  "$PYTHON" -m venv "$VENV"
  py="$VENV/bin/python"
fi
pipi() {  # pip install, quiet, without the noise of unreachable extra indexes
  local log rc=0
  log=$(mktemp)
  "$py" -m pip install -q --disable-pip-version-check "$@" >"$log" 2>&1 || rc=$?
  grep -v "is ignored: it is neither a file" "$log" >&2 || true
  rm -f "$log"
  return $rc
}

if ! "$py" -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    echo "[setup] NVIDIA GPU found: installing the CUDA build of torch from PyPI"
    pipi "torch>=2.2"
  else
    echo "[setup] no NVIDIA GPU: installing a CPU build of torch"
    pipi --no-index --no-deps "torch>=2.2" 2>/dev/null \
      || pipi --index-url https://download.pytorch.org/whl/cpu "torch>=2.2" 2>/dev/null \
      || pipi "torch>=2.2"
  fi
fi

# Skip the (slow) resolver when requirements.txt and pyproject.toml have not changed.
stamp="$("$py" -c 'import sys; print(sys.prefix)')/.embeddings-from-scratch-setup"
want=$(cat requirements.txt requirements-nodeps.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] || ! "$py" -c "import minilib" 2>/dev/null; then
  echo "[setup] installing requirements.txt and minilib"
  pipi -r requirements.txt -e .
  pipi --no-deps -r requirements-nodeps.txt
  echo "$want" > "$stamp"
fi

if [ "${MINILIB_APT:-auto}" != "no" ] && command -v apt-get >/dev/null 2>&1; then
  debs=(bible-kjv-text bible-kjv dict-gcide dataset-fashion-mnist)
  missing=()
  for d in "${debs[@]}"; do dpkg -s "$d" >/dev/null 2>&1 || missing+=("$d"); done
  if [ ${#missing[@]} -gt 0 ]; then
    sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo -n"
    echo "[setup] installing Debian data packages: ${missing[*]}"
    { $sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null 2>&1 \
      || { $sudo apt-get update -q >/dev/null 2>&1 && $sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null 2>&1; }; } \
      || echo "[setup] could not install ${missing[*]} (needs root): the quick profile does not use them"
  fi
fi
"$py" -c "import torch, minilib; print('[setup] torch', torch.__version__, '| cuda' if torch.cuda.is_available() else '| cpu')"
echo "[setup] done in $(( $(date +%s) - start )) s"
