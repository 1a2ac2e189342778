#!/usr/bin/env bash
# Execute notebooks in place in the quick profile (or MINILIB_PROFILE=full) and strip every
# output except the cells marked NBVAL_CHECK_OUTPUT: the way a notebook's stored outputs are made.
#   bash scripts/run_notebook.sh notebooks/01_what_is_an_embedding.ipynb
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PY:-.venv/bin/python}
export MINILIB_PROFILE=${MINILIB_PROFILE:-quick} HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
# One torch thread on the CPU, as scripts/test.sh runs them: the checked outputs then do not depend on
# the core count, and two notebooks side by side do not fight over the cores.
export MINILIB_THREADS=${MINILIB_THREADS:-1}
# AVX2 code paths on a CPU with AVX-512 too, as notebooks/conftest.py sets for the tests: the
# checked digits then come out the same on either kind of machine.
if [ "$MINILIB_PROFILE" = quick ]; then
  eval "$("$py" -c 'from minilib.profile import portable_cpu_env as e; print("".join(f"export {k}=\"{v}\"; " for k, v in e().items()))')"
fi
for nb in "$@"; do
  t0=$(date +%s)
  "$py" -m jupyter execute --inplace --timeout=1200 --kernel_name=python3 "$nb"
  "$py" scripts/strip_outputs.py "$nb"
  echo "$nb: $(( $(date +%s) - t0 )) s ($MINILIB_PROFILE)"
done
