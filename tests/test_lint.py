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
