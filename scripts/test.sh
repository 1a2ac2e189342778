#!/usr/bin/env bash
# Set everything up, then run every test: unit and parity tests with the book-build test
# (tests/), then every notebook under nbval (each executed once), printing each one's time.
# The profile is quick on a CPU and full on a GPU (MINILIB_PROFILE overrides).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
py=python
[ -n "${VIRTUAL_ENV:-}" ] || [ -n "${COLAB_RELEASE_TAG:-}" ] || py="${VENV:-.venv}/bin/python"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
       HF_HUB_DISABLE_PROGRESS_BARS=1 HF_DATASETS_DISABLE_PROGRESS_BARS=1 TOKENIZERS_PARALLELISM=false \
       PYDEVD_DISABLE_FILE_VALIDATION=1 MPLBACKEND=Agg
profile=$("$py" -c "from minilib import profile as p; print(p.pick_profile(p.pick_device()))")
# In the full profile notebooks/conftest.py compares no stored outputs (they are quick's): cells must run
# and the notebooks' own assertions hold.
sanitize=tests/nbval_sanitize.cfg
echo "[test] profile: $profile"

start=$(date +%s)
"$py" -m pytest tests/ -n 2 -q -p no:cacheprovider --durations=5
echo "[test] unit, parity and book tests: $(( $(date +%s) - start )) s"

# One torch thread per notebook on the CPU, as scripts/run_notebook.sh made the checked outputs: two
# notebooks run at once, and with two threads each on two cores GloVe's loop ran 10x slower.
start=$(date +%s)
MINILIB_THREADS=${MINILIB_THREADS:-1} MINILIB_PROFILE=$profile "$py" -m pytest notebooks/ --nbval-lax --nbval-current-env -n 2 --dist loadfile \
  --nbval-sanitize-with "$sanitize" --nbval-cell-timeout=1800 -q -p no:cacheprovider
echo "[test] notebooks ($profile): $(( $(date +%s) - start )) s"
