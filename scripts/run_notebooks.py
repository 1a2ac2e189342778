"""Run every notebook of the book under nbval in one profile and write the table of measured
runs that Appendix B renders: notebook, profile, device, seconds, result, key metrics.

    python scripts/run_notebooks.py --profile full            # on a GPU machine
    python scripts/run_notebooks.py --profile quick notebooks/02_count_based_vectors.ipynb

Each notebook reports its key numbers with ``minilib.profile.record(...)``; this script points
``MINILIB_METRICS_FILE`` at a temporary file per notebook and reads them back. The table goes
to ``book/runtimes/<profile>.csv`` (``--out`` to change), rewritten after every notebook: rows of
notebooks not run this time are kept, so a run stopped part-way keeps what it measured. Exit
status 1 if a notebook fails, 130 if the run was interrupted. A cell may run for ``--cell-timeout``
seconds (default 3600), which a full profile on a CPU can exceed (chapter 13).

nbval keeps none of a notebook's outputs. With ``--executed DIR`` each notebook runs through
``scripts/execute_notebook.py`` instead (the same checks: any cell that raises fails it) and its
executed copy, with every table the run printed, is written to ``DIR/<notebook>.ipynb``
(``--text-only``: without figures) -- what a chapter's text quotes from a full run. ``--keep-going``
(with ``--executed``) runs every cell even after one fails and lists all the failures.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def toc_notebooks() -> list[Path]:
    """Notebooks in the order of ``_toc.yml``."""
    toc = (ROOT / "_toc.yml").read_text()
    return [ROOT / f"{m}.ipynb" for m in re.findall(r"file:\s*(notebooks/\S+)", toc)]


def run_one(nb: Path, profile: str, cell_timeout: int = 3600, executed: Path | None = None,
            text_only: bool = False, keep_going: bool = False) -> dict:
    sanitize = ROOT / "tests" / "nbval_sanitize.cfg"   # full: notebooks/conftest.py compares no outputs
    with tempfile.TemporaryDirectory() as tmp:
        metrics_file = Path(tmp) / "metrics.json"
        env = {**os.environ, "MINILIB_PROFILE": profile, "MINILIB_METRICS_FILE": str(metrics_file),
               "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
               "HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
               # one torch thread on a CPU, as the checked outputs were made (scripts/run_notebook.sh)
               "MINILIB_THREADS": os.environ.get("MINILIB_THREADS", "1")}
        if executed is None:
            cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax", "--nbval-current-env",
                   f"--nbval-cell-timeout={cell_timeout}", f"--nbval-sanitize-with={sanitize}", str(nb)]
        else:
            cmd = [sys.executable, str(ROOT / "scripts" / "execute_notebook.py"), str(nb), str(executed / nb.name),
                   f"--timeout={cell_timeout}"] + ["--text-only"] * text_only + ["--keep-going"] * keep_going
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - t0
        metrics = json.loads(metrics_file.read_text()) if metrics_file.exists() else {}
    if proc.returncode != 0:
        print(proc.stdout[-4000:], proc.stderr[-4000:], sep="\n", file=sys.stderr)
    return {
        "notebook": nb.stem,
        "profile": metrics.pop("profile", profile),
        "device": metrics.pop("device", "?"),
        "seconds": f"{seconds:.0f}",
        "result": "passed" if proc.returncode == 0 else "FAILED",
        "date": time.strftime("%Y-%m-%d"),
        "metrics": "; ".join(f"{k}={v}" for k, v in sorted(metrics.items())),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("notebooks", nargs="*", type=Path, help="default: every notebook in _toc.yml")
    ap.add_argument("--profile", choices=["quick", "full"], default="full")
    ap.add_argument("--out", type=Path, help="default: book/runtimes/<profile>.csv")
    ap.add_argument("--cell-timeout", type=int, default=3600,
                    help="seconds one cell may run (default 3600; a full profile on a CPU can need more: "
                         "chapter 13's critical-n search ran past an hour on one core)")
    ap.add_argument("--executed", type=Path, metavar="DIR",
                    help="keep each executed notebook, with its outputs, in DIR (runs them with nbclient, not nbval)")
    ap.add_argument("--text-only", action="store_true", help="with --executed: drop the figures from the copies")
    ap.add_argument("--keep-going", action="store_true",
                    help="with --executed: run every cell even after one fails, and list every failure")
    args = ap.parse_args()
    nbs = [p.resolve() for p in args.notebooks] or toc_notebooks()
    if args.executed is not None:
        args.executed = args.executed.resolve()
    elif args.text_only or args.keep_going:
        ap.error("--text-only and --keep-going go with --executed DIR")
    missing = [str(p) for p in nbs if not p.exists()]
    if missing:
        ap.error(f"no such notebook: {', '.join(missing)}")
    out = args.out or ROOT / "book" / "runtimes" / f"{args.profile}.csv"
    old = {}
    if out.exists():
        with open(out, newline="") as f:
            old = {r["notebook"]: r for r in csv.DictReader(f)}
    rows = []
    for nb in nbs:
        try:
            row = run_one(nb, args.profile, args.cell_timeout, args.executed, args.text_only, args.keep_going)
        except KeyboardInterrupt:   # Ctrl-C, or gpu_run.sh's RUN_BUDGET: the finished rows are written
            print(f"stopped during {nb.stem}: {len(rows)} of {len(nbs)} notebooks ran; {out} holds their rows",
                  file=sys.stderr)
            return 130
        print(f"{row['notebook']:<40} {row['profile']:<6} {row['device']:<28} {row['seconds']:>6} s  {row['result']}",
              flush=True)
        rows.append(row)
        # written after every notebook, so a run stopped part-way (a time limit) keeps what it measured;
        # until the last notebook the rows of the previous table stay for the notebooks not yet run
        last = len(rows) == len(nbs)
        write_table(out, rows if last and not args.notebooks else {**old, **{r["notebook"]: r for r in rows}}.values())
    print(f"wrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return 0 if all(r["result"] == "passed" for r in rows) else 1


def write_table(out: Path, rows) -> None:
    """Write ``rows`` to ``out`` in the order of ``_toc.yml`` (other notebooks last), atomically."""
    order = [p.stem for p in toc_notebooks()]
    rows = sorted(rows, key=lambda r: order.index(r["notebook"]) if r["notebook"] in order else len(order))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, out)


if __name__ == "__main__":
    sys.exit(main())
