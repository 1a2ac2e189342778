"""Run every exercise solution's code where a reader would run it: after its chapter's notebook.

    python scripts/check_solutions.py                       # every chapter, quick profile
    python scripts/check_solutions.py notebooks/12_*.ipynb  # some chapters
    python scripts/check_solutions.py --list                # the solutions and their first line
    python scripts/check_solutions.py --outputs notebooks/14_*.ipynb   # also what each solution printed

A solution (a ``{solution}`` block in a notebook's markdown or in the chapter's prose page under
``book/``) holds prose and usually a ```` ```python ```` block that uses the notebook's variables. The
notebooks run under nbval in every test run; the solutions do not (some train several models, and the
rule is one execution of each notebook per test run), so this script is the check that they still run:
it executes the notebook (its stored outputs cleared), then each solution's code in the same kernel, in
the order of the page (notebook solutions first, then the prose page's), and prints a table of
solutions with their seconds and ``ok`` or the error. ``tests/test_lint.py`` checks in every test run,
without running them, that solutions use no name the notebook does not define.

Exit status 1 if a notebook cell or a solution failed. A failing notebook cell stops that chapter (its
solutions would fail for the wrong reason). Solutions run one after another, as a reader working
through the exercises would; one that changes a variable (``ivf.nprobe = 1``) leaves it changed.
"""
from __future__ import annotations

import argparse
import functools
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@functools.cache
def _execute_notebook():
    """scripts/execute_notebook.py (a sibling script, not a package): its output helpers."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("execute_notebook", ROOT / "scripts" / "execute_notebook.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod

_SOLUTION = re.compile(r"^(`{3,})\{solution\}[ \t]*(\S*)[^\n]*\n(.*?)^\1[ \t]*$", re.S | re.M)
_CODE = re.compile(r"^(`{3,})(?:python|py|ipython3?)[ \t]*\n(.*?)^\1[ \t]*$", re.S | re.M)


@dataclass(frozen=True)
class Solution:
    """One solution's code: its exercise label, where it is written, and the code (its python
    blocks joined in order)."""

    label: str
    source: str      # "notebooks/12_vector_search.ipynb" or "book/12_vector_search.md"
    code: str


def solutions_in(text: str, source: str) -> list[Solution]:
    """The solutions with python code in a MyST text (a page, or one markdown cell)."""
    found = []
    for m in _SOLUTION.finditer(text):
        blocks = [c.group(2) for c in _CODE.finditer(m.group(3))]
        if blocks:
            found.append(Solution(m.group(2) or "?", source, "\n".join(b.rstrip("\n") for b in blocks) + "\n"))
    return found


def prose_page(notebook: Path) -> Path:
    """The chapter's prose page under book/ (same file name, ``.md``)."""
    return ROOT / "book" / (notebook.stem + ".md")


def chapter_solutions(notebook: Path) -> list[Solution]:
    """A notebook's solutions, then those of its prose page, in page order."""
    import nbformat

    nb = nbformat.read(notebook, as_version=4)
    rel = _rel(notebook)
    found = [s for cell in nb.cells if cell.cell_type == "markdown" for s in solutions_in(cell.source, rel)]
    page = prose_page(notebook)
    if page.is_file():
        found += solutions_in(page.read_text(encoding="utf-8"), _rel(page))
    return found


def _rel(p: Path) -> str:
    try:
        return str(p.resolve().relative_to(ROOT))
    except ValueError:
        return str(p)


def with_solutions(notebook: Path):
    """The notebook (outputs cleared) with one code cell per solution appended; each appended cell's
    metadata names its solution (``{"solution": label, "solution_source": path}``)."""
    import nbformat

    nb = nbformat.read(notebook, as_version=4)
    _execute_notebook().clear_outputs(nb)
    for s in chapter_solutions(notebook):
        cell = nbformat.v4.new_code_cell(s.code)
        cell.metadata.update(solution=s.label, solution_source=s.source)
        nb.cells.append(cell)
    return nb


def _error(cell) -> str | None:
    errors = _execute_notebook().cell_errors(cell)
    return f"{errors[0][0]}: {errors[0][1][:300]}" if errors else None


def _seconds(cell) -> float | None:
    from datetime import datetime

    m = cell.metadata.get("execution", {})
    try:
        start, end = m["iopub.execute_input"], m["shell.execute_reply"]
    except KeyError:
        return None
    parse = lambda s: datetime.fromisoformat(s.replace("Z", "+00:00"))  # noqa: E731
    return (parse(end) - parse(start)).total_seconds()


def _text(cell) -> str:
    """What a cell printed (streams, and the plain-text form of its results), for quoting."""
    parts = []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            parts.append(out.get("text", ""))
        elif out.get("output_type") in ("execute_result", "display_data") and "text/plain" in out.get("data", {}):
            if "image/png" not in out["data"]:           # a figure's repr says nothing
                parts.append(out["data"]["text/plain"] + "\n")
    return "".join(parts)


def run_chapter(notebook: Path, timeout: int) -> list[tuple[str, str, float | None, str, str]]:
    """Execute ``notebook`` then its solutions; rows (label, source, seconds, "ok" or the error, what
    the solution printed). A failing notebook cell gives one row labelled ``notebook cell N`` and stops
    the chapter."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = with_solutions(notebook)
    n_own = sum(1 for c in nb.cells if "solution" not in c.metadata)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=False,
                            resources={"metadata": {"path": str(notebook.resolve().parent)}})
    rows = []
    with client.setup_kernel():
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            try:
                client.execute_cell(cell, index)
            except CellExecutionError:
                pass
            except Exception as err:      # a timeout, or a kernel that died
                cell.outputs.append({"output_type": "error", "ename": type(err).__name__, "evalue": str(err)})
            err = _error(cell)
            if index < n_own:
                if err:
                    rows.append((f"notebook cell {index}", _rel(notebook), _seconds(cell), err, _text(cell)))
                    return rows
                continue
            rows.append((cell.metadata["solution"], cell.metadata["solution_source"], _seconds(cell), err or "ok",
                         _text(cell)))
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("notebooks", nargs="*", type=Path, help="default: every notebook under notebooks/")
    ap.add_argument("--timeout", type=int, default=1800, help="seconds one cell or solution may run (default 1800)")
    ap.add_argument("--list", action="store_true", help="list the solutions with code and stop")
    ap.add_argument("--outputs", action="store_true", help="print what each solution printed, under its row")
    args = ap.parse_args(argv)
    notebooks = args.notebooks or sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    for nb in notebooks:
        if not nb.is_file():
            ap.error(f"no such notebook: {nb}")
    if args.list:
        for nb in notebooks:
            for s in chapter_solutions(nb):
                print(f"{s.label:<16} {s.source:<45} {s.code.strip().splitlines()[0][:60]}")
        return 0
    os.environ.setdefault("TQDM_MININTERVAL", "10")
    os.environ.setdefault("MINILIB_PROFILE", "quick")
    for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_PROGRESS_BARS"):
        os.environ.setdefault(k, "1")
    failed = 0
    print(f"{'solution':<16} {'written in':<45} {'seconds':>8}  result")
    for nb in notebooks:
        start = time.perf_counter()
        rows = run_chapter(nb, args.timeout)
        for label, source, seconds, result, printed in rows:
            failed += result != "ok"
            sec = f"{seconds:8.1f}" if seconds is not None else " " * 8
            print(f"{label:<16} {source:<45} {sec}  {result}", flush=True)
            if args.outputs and printed.strip():
                print("".join(f"    | {line}\n" for line in printed.rstrip("\n").split("\n")), end="", flush=True)
        print(f"# {nb.name}: {len(rows)} rows, {time.perf_counter() - start:.0f} s with the notebook", flush=True)
    print(f"{failed} failed" if failed else "every solution ran")
    return int(bool(failed))


if __name__ == "__main__":
    sys.exit(main())
