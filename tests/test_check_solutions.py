"""scripts/check_solutions.py: finds each exercise's solution code in notebook cells and prose pages and
runs it after its notebook, in the same kernel; a failing solution or notebook cell is reported."""
from pathlib import Path

import nbformat
from scripts_loader import load_script

ROOT = Path(__file__).resolve().parent.parent
cs = load_script("check_solutions")


def test_solutions_are_found_in_notebook_cells_and_prose_pages():
    page = ("````{exercise}\n:label: ex-1\nDo it.\n````\n\n"
            "````{solution} ex-1\n:class: dropdown\nFirst:\n```python\nx = 1\n```\nthen\n```python\nprint(x)\n```\n"
            "````\n\n````{solution} ex-2\nProse only.\n```text\nnot code\n```\n````\n")
    [s] = cs.solutions_in(page, "book/x.md")
    assert (s.label, s.source, s.code) == ("ex-1", "book/x.md", "x = 1\nprint(x)\n")
    found = cs.chapter_solutions(ROOT / "notebooks" / "14_multimodal_embeddings.ipynb")
    sources = [s.source for s in found]
    assert set(sources) == {"notebooks/14_multimodal_embeddings.ipynb", "book/14_multimodal_embeddings.md"}
    assert sources[-1].startswith("book/") and found[-1].label == "ex-14-seeds"   # the page's come last


def _notebook(tmp_path, cells, solutions):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    for label, code in solutions:
        nb.cells.append(nbformat.v4.new_markdown_cell(
            f"````{{solution}} {label}\n:class: dropdown\n```python\n{code}\n```\n````"))
    path = tmp_path / "99_scratch.ipynb"
    nbformat.write(nb, path)
    return path


def test_solutions_run_after_the_notebook_in_its_kernel(tmp_path, capsys):
    path = _notebook(tmp_path, ["x = 20"], [("ex-ok", "assert x + 1 == 21\nx = 0"), ("ex-bad", "1 / x")])
    rows = cs.run_chapter(path, timeout=60)
    assert [(r[0], r[3].split(":")[0]) for r in rows] == [("ex-ok", "ok"), ("ex-bad", "ZeroDivisionError")]
    assert all(r[2] is not None and r[2] >= 0 for r in rows)
    assert cs.main([str(path)]) == 1
    out = capsys.readouterr().out
    assert "ex-bad" in out and "1 failed" in out


def test_a_failing_notebook_cell_stops_the_chapter(tmp_path):
    path = _notebook(tmp_path, ["x = 1", "raise RuntimeError('broken')", "y = 2"], [("ex-1", "print(x)")])
    [row] = cs.run_chapter(path, timeout=60)
    assert row[0] == "notebook cell 1" and row[3] == "RuntimeError: broken"


def test_every_solution_ran_gives_status_0(tmp_path, capsys):
    path = _notebook(tmp_path, ["x = 1"], [("ex-1", "print(x)\nx + 41")])
    assert cs.main([str(path)]) == 0
    assert "every solution ran" in capsys.readouterr().out
    assert cs.main(["--outputs", str(path)]) == 0
    assert "    | 1\n    | 42\n" in capsys.readouterr().out      # what the solution printed, then its result
    assert cs.main(["--list", str(path)]) == 0
    assert "ex-1" in capsys.readouterr().out
