"""scripts/run_notebooks.py: the table of measured runs is written after every notebook, merged with
the previous table, so a run stopped part-way (a GPU machine's time limit) keeps what it measured; with
--executed the notebooks run through scripts/execute_notebook.py, which keeps their outputs."""
import csv
import json
import subprocess
import sys
from pathlib import Path

from scripts_loader import load_script

ROOT = Path(__file__).resolve().parent.parent
rn = load_script("run_notebooks")


def read(p):
    with open(p, newline="") as f:
        return {r["notebook"]: r for r in csv.DictReader(f)}


def fake_row(nb, profile, seconds="7", result="passed"):
    return {"notebook": nb.stem, "profile": profile, "device": "test", "seconds": seconds, "result": result,
            "date": "2026-12-07", "metrics": "x=1"}


def test_rows_are_written_as_each_notebook_ends_and_kept_when_a_run_is_stopped(tmp_path, monkeypatch):
    nbs = rn.toc_notebooks()
    out = tmp_path / "full.csv"
    rn.write_table(out, [fake_row(nb, "full", seconds="old") for nb in nbs[:4]])   # an earlier table
    seen = []

    def run_one(nb, profile, cell_timeout, executed=None, text_only=False, keep_going=False):
        assert cell_timeout == 3600 and executed is None
        if len(seen) == 2:
            raise KeyboardInterrupt  # the time limit, during the third notebook
        seen.append(nb.stem)
        return fake_row(nb, profile, result="passed" if len(seen) == 1 else "FAILED")

    monkeypatch.setattr(rn, "run_one", run_one)
    monkeypatch.setattr(sys, "argv", ["run_notebooks.py", "--profile", "full", "--out", str(out),
                                      *map(str, [nbs[3], nbs[1], nbs[6]])])
    assert rn.main() == 130
    table = read(out)
    assert [r["seconds"] for r in table.values()] == ["old", "7", "old", "7"]      # toc order, merged
    assert table[nbs[3].stem]["result"] == "passed" and table[nbs[1].stem]["result"] == "FAILED"
    assert not out.with_name("full.csv.tmp").exists()


def test_a_complete_run_of_every_notebook_replaces_the_table(tmp_path, monkeypatch):
    nbs = rn.toc_notebooks()
    out = tmp_path / "quick.csv"
    rn.write_table(out, [fake_row(Path("notebooks/99_gone.ipynb"), "quick")])
    monkeypatch.setattr(rn, "run_one", lambda nb, profile, cell_timeout, *_: fake_row(nb, profile, str(cell_timeout)))
    monkeypatch.setattr(sys, "argv", ["run_notebooks.py", "--profile", "quick", "--out", str(out),
                                      "--cell-timeout", "9000"])
    assert rn.main() == 0
    assert list(read(out)) == [nb.stem for nb in nbs]
    assert {r["seconds"] for r in read(out).values()} == {"9000"}          # the limit reached run_one


execute = [sys.executable, str(ROOT / "scripts" / "execute_notebook.py")]


def tiny_notebook(path, *sources):
    import nbformat

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def test_execute_notebook_keeps_the_outputs_and_drops_figures_when_asked(tmp_path):
    import nbformat

    src = tiny_notebook(tmp_path / "ok.ipynb", "print(6 * 7)",
                        "from IPython.display import display, HTML\ndisplay(HTML('<b>table</b>'))")
    out = tmp_path / "run" / "ok.ipynb"
    done = subprocess.run([*execute, str(src), str(out), "--text-only"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    cells = nbformat.read(out, as_version=4).cells
    assert cells[0].outputs[0]["text"] == "42\n"
    assert cells[1].outputs[0]["data"] == {"text/plain": "<IPython.core.display.HTML object>"}   # the HTML is gone
    assert not nbformat.read(src, as_version=4).cells[0].outputs                                 # source untouched


def test_execute_notebook_fails_on_a_cell_that_raises_and_still_writes_what_ran(tmp_path):
    import nbformat

    src = tiny_notebook(tmp_path / "bad.ipynb", "print('before')", "assert 1 + 1 == 3, 'claimed wrongly'", "print('after')")
    stored = nbformat.read(src, as_version=4)      # outputs stored by an earlier run (quick's) must not survive
    stored.cells[2].outputs = [nbformat.v4.new_output("stream", name="stdout", text="after, from an old run\n")]
    nbformat.write(stored, src)
    out = tmp_path / "bad_run.ipynb"
    done = subprocess.run([*execute, str(src), str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert "claimed wrongly" in done.stderr
    cells = nbformat.read(out, as_version=4).cells
    assert cells[0].outputs[0]["text"] == "before\n"
    assert cells[1].outputs[-1]["output_type"] == "error" and cells[1].outputs[-1]["evalue"] == "claimed wrongly"
    assert not cells[2].outputs                                                                   # never ran


def test_run_one_with_executed_keeps_the_copy_and_reads_the_recorded_metrics(tmp_path):
    src = tiny_notebook(tmp_path / "07_tiny.ipynb", "from minilib import profile\nprofile.record(answer=42)\nprint('ran')")
    row = rn.run_one(src, "quick", cell_timeout=300, executed=tmp_path / "executed")
    assert row["result"] == "passed" and row["notebook"] == "07_tiny"
    assert "answer=42" in row["metrics"]
    assert json.loads((tmp_path / "executed" / "07_tiny.ipynb").read_text())["cells"][0]["outputs"][0]["text"] == ["ran\n"]
    bad = tiny_notebook(tmp_path / "08_bad.ipynb", "raise ValueError('no')")
    assert rn.run_one(bad, "quick", cell_timeout=300, executed=tmp_path / "executed")["result"] == "FAILED"


def test_keep_going_runs_past_failing_cells_and_lists_every_failure(tmp_path):
    import nbformat

    src = tiny_notebook(tmp_path / "claims.ipynb", "x = 1", "assert x == 2, 'first claim'", "y = x + 1\nprint(y)",
                        "assert y == 3, 'second claim'")
    out = tmp_path / "claims_run.ipynb"
    done = subprocess.run([*execute, str(src), str(out), "--keep-going"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert "cell 1" in done.stderr and "first claim" in done.stderr
    assert "cell 3" in done.stderr and "second claim" in done.stderr
    assert nbformat.read(out, as_version=4).cells[2].outputs[0]["text"] == "2\n"     # ran after the failure
    # without --keep-going the run stops at the first
    done = subprocess.run([*execute, str(src), str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "second claim" not in done.stderr


def test_keep_going_and_text_only_need_executed(monkeypatch, capsys):
    import pytest

    monkeypatch.setattr(sys, "argv", ["run_notebooks.py", "--keep-going"])
    with pytest.raises(SystemExit):
        rn.main()
    assert "--executed" in capsys.readouterr().err
