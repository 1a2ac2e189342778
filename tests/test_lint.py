"""Static checks (ruff's pyflakes rules, configured in pyproject.toml) over minilib, the scripts,
the benchmarks, the tests and the notebooks: an undefined name in an error message, or an import a
refactoring left behind, fails here even where no test runs that line."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _ruff() -> list[str]:
    exe = Path(sys.executable).with_name("ruff")
    if exe.exists():
        return [str(exe)]
    if shutil.which("ruff"):
        return ["ruff"]
    pytest.skip("ruff is not installed: bash scripts/setup.sh installs it (requirements.txt)")


def test_code_and_notebooks_pass_pyflakes():
    paths = ["minilib", "scripts", "benchmarks", "tests", "notebooks"]
    run = subprocess.run([*_ruff(), "check", "--no-cache", "--output-format", "concise", *paths],
                         cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_exercise_solutions_use_only_names_their_notebook_defines(tmp_path):
    """Each notebook with its solutions' code appended (as scripts/check_solutions.py runs them) passes
    the same checks: a solution that calls a renamed function or a variable the notebook no longer
    defines fails here, without running anything."""
    import nbformat

    from scripts_loader import load_script

    cs = load_script("check_solutions")
    n = 0
    for nb in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        joined = cs.with_solutions(nb)
        n += sum("solution" in c.metadata for c in joined.cells)
        nbformat.write(joined, tmp_path / nb.name)
    assert n >= 70, f"found only {n} solutions with code: has the solution syntax changed?"
    run = subprocess.run([*_ruff(), "check", "--no-cache", "--output-format", "concise",
                          "--config", str(ROOT / "pyproject.toml"), str(tmp_path)],
                         cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr

