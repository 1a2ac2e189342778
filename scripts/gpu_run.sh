#!/usr/bin/env bash
# On an offline GPU machine: unpack the parts of scripts/gpu_bundle.py in FOLDER (once), then run
# the named notebooks in the full profile; the table of measured runs goes to $OUT/full.csv (or
# ./full.csv), the log to $OUT/gpu_run.log, and the executed notebooks (their printed tables, no
# figures; scripts/execute_notebook.py) to $OUT/executed.tar.gz. A failing cell does not stop its
# notebook (--keep-going): one run lists every claim that fails at full scale. With SEND_BACK set to globs of
# cached files (the models the notebooks trained there), they come back too, as $OUT/back/ parts
# that `python scripts/gpu_bundle.py receive DIR` puts into this machine's cache.
#   bash scripts/gpu_run.sh /tmp/gpu notebooks/06_transformers_from_scratch.ipynb ...
#   SEND_BACK='ch06-*-full-v1.safetensors' RUN_BUDGET=480 bash scripts/gpu_run.sh /tmp/gpu notebooks/06_*.ipynb
set -euo pipefail
cd "$(dirname "$0")/.."
folder=${1:?usage: gpu_run.sh FOLDER NOTEBOOK...}; shift
[ -f "$folder/env.sh" ] || python3 scripts/gpu_bundle.py unpack "$folder"
. "$folder/env.sh"
out=${OUT:-.}
export PYTHONUNBUFFERED=1 MINILIB_THREADS=${MINILIB_THREADS:-$(nproc)}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
# RUN_BUDGET (seconds): stop the notebooks then, leaving the call time to send back; full.csv keeps
# the rows of the notebooks that finished (run_notebooks.py writes it after each one).
runner=(python3 scripts/run_notebooks.py --profile full --out "$out/full.csv" --executed "$out/executed" --text-only --keep-going "$@")
[ -z "${RUN_BUDGET:-}" ] || runner=(timeout --signal=INT --kill-after=20 "$RUN_BUDGET" "${runner[@]}")
status=0
"${runner[@]}" 2>&1 | tee "$out/gpu_run.log" || status=$?
# one file for every executed notebook (at most 8 files come back from a lent machine)
[ ! -d "$out/executed" ] || { tar czf "$out/executed.tar.gz" -C "$out" executed && rm -rf "$out/executed"; }
if [ -n "${SEND_BACK:-}" ]; then   # also after a failure: what was trained before it is still good
  python3 scripts/gpu_bundle.py send-back --out "$out/back" $SEND_BACK 2>&1 | tee -a "$out/gpu_run.log"
fi
exit $status
