"""Execute one notebook and write a copy with its outputs, for reading what a run printed.

    python scripts/execute_notebook.py notebooks/11_training_recipes.ipynb /tmp/run/11.ipynb --timeout 10800

nbval (what the tests and ``scripts/run_notebooks.py`` use) checks a notebook but keeps none of its
outputs. A full-profile run on a GPU or on a CPU takes hours, and the chapter's text needs its tables,
not only the few numbers ``minilib.profile.record`` keeps, so ``run_notebooks.py --executed DIR``
executes through this script instead: the same kernel (this Python), the same per-cell timeout, and
a cell that raises fails the run as it fails under nbval. The copy holds this run's outputs only (the
stored ones are cleared first) and is written also when a cell fails: up to and including the failing
cell with its traceback, the cells after it empty. With ``--keep-going`` the run goes on past a failing
cell and lists every cell that failed (a full-profile claim that does not hold at full scale rarely
comes alone, and a GPU lease is too short to find them one run at a time); cells that fail only because
an earlier one did show up too. Images are dropped with ``--text-only`` (small enough to send back from a
remote machine). Exit status 1 if a cell failed.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def strip_images(nb) -> None:
    """Drop every output's non-text data (PNG, SVG, HTML, widgets), keeping its plain-text form."""
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data")
            if data and set(data) != {"text/plain"}:
                out["data"] = {"text/plain": data.get("text/plain", "<figure not kept (--text-only)>")}


def clear_outputs(nb) -> None:
    """Empty every code cell's outputs and execution count (the stored ones must not pass for a new run's)."""
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None


def cell_errors(cell) -> list[tuple[str, str]]:
    """(exception name, message) of each error among one cell's outputs."""
    return [(out.get("ename", "?"), str(out.get("evalue", ""))) for out in cell.get("outputs", [])
            if out.get("output_type") == "error"]


def failures(nb) -> list[tuple[int, str, str, str]]:
    """(cell index, cell id, exception name, message) of every code cell whose outputs hold an error."""
    return [(index, cell.get("id", "?"), name, value[:500])
            for index, cell in enumerate(nb.cells) for name, value in cell_errors(cell)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("notebook", type=Path)
    ap.add_argument("out", type=Path, help="where the executed copy goes")
    ap.add_argument("--timeout", type=int, default=3600, help="seconds one cell may run (default 3600)")
    ap.add_argument("--text-only", action="store_true", help="drop figures and HTML from the copy")
    ap.add_argument("--keep-going", action="store_true", help="run every cell even after one fails; list the failures")
    args = ap.parse_args(argv)
    if not args.notebook.is_file():
        ap.error(f"no such notebook: {args.notebook}")
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    # As notebooks/conftest.py does under nbval: progress bars redraw at most every 10 s.
    os.environ.setdefault("TQDM_MININTERVAL", "10")
    nb = nbformat.read(args.notebook, as_version=4)
    clear_outputs(nb)              # the stored outputs (the quick profile's) must not pass for this run's
    # "python3" is the kernel of the Python running this script (jupyter_client starts sys.executable
    # for it), as nbval's --nbval-current-env does.
    client = NotebookClient(nb, timeout=args.timeout, kernel_name="python3", allow_errors=args.keep_going,
                            resources={"metadata": {"path": str(args.notebook.resolve().parent)}})
    status = 0
    try:
        client.execute()
        failed = failures(nb)
        for index, cell_id, name, value in failed:
            print(f"{args.notebook.name}: cell {index} ({cell_id}) failed: {name}: {value}", file=sys.stderr)
        status = int(bool(failed))
    except CellExecutionError as err:
        print(f"{args.notebook.name}: a cell failed\n{str(err)[-3000:]}", file=sys.stderr)
        status = 1
    finally:
        if args.text_only:
            strip_images(nb)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, args.out)
    return status


if __name__ == "__main__":
    sys.exit(main())
