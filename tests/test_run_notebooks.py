"""scripts/run_notebooks.py: the table of measured runs is written after every notebook, merged with
the previous table, so a run stopped part-way (a GPU machine's time limit) keeps what it measured."""
import csv
import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("run_notebooks", ROOT / "scripts" / "run_notebooks.py")
rn = importlib.util.module_from_spec(spec)
spec.loader.exec_module(rn)


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

    def run_one(nb, profile, cell_timeout):
        assert cell_timeout == 3600
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
    monkeypatch.setattr(rn, "run_one", lambda nb, profile, cell_timeout: fake_row(nb, profile, str(cell_timeout)))
    monkeypatch.setattr(sys, "argv", ["run_notebooks.py", "--profile", "quick", "--out", str(out),
                                      "--cell-timeout", "9000"])
    assert rn.main() == 0
    assert list(read(out)) == [nb.stem for nb in nbs]
    assert {r["seconds"] for r in read(out).values()} == {"9000"}          # the limit reached run_one
