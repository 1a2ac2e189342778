"""notebooks/conftest.py: checked cells are compared in the quick profile and not in the full one
(their stored outputs are quick's), and progress bars in kernels under test redraw at most every 10 s.
Run on small notebooks in a scratch folder."""
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture()
def stale_notebook(tmp_path):
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("# NBVAL_CHECK_OUTPUT\nprint(6 * 7)")
    cell.execution_count = 1
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="41\n")]   # not what it prints
    nb.cells = [nbformat.v4.new_code_cell("x = 1\nassert x == 1"), cell]
    nbformat.write(nb, tmp_path / "stale.ipynb")
    shutil.copy(ROOT / "notebooks" / "conftest.py", tmp_path / "conftest.py")
    return tmp_path


def _nbval(folder: Path, profile: str, name: str = "stale.ipynb") -> subprocess.CompletedProcess:
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("PYTEST")}
    env["MINILIB_PROFILE"] = profile
    env.pop("TQDM_MININTERVAL", None)
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
                           "--nbval-lax", "--nbval-current-env", "--rootdir", str(folder), str(folder / name)],
                          cwd=folder, env=env, capture_output=True, text=True, timeout=300)


def test_quick_compares_checked_cells_and_full_does_not(stale_notebook):
    quick = _nbval(stale_notebook, "quick")
    assert quick.returncode == 1 and "1 failed" in quick.stdout, quick.stdout[-2000:]
    full = _nbval(stale_notebook, "full")
    assert full.returncode == 0 and "2 passed" in full.stdout, full.stdout[-2000:]


def test_progress_bars_in_kernels_under_test_redraw_at_most_every_10_s(stale_notebook):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("from tqdm.auto import tqdm\n"
                                          "bar = tqdm(range(3))\n"
                                          "assert bar.mininterval == 10, bar.mininterval\n"
                                          "assert tqdm(range(3), mininterval=0.5).mininterval == 0.5  # explicit wins")]
    nbformat.write(nb, stale_notebook / "bars.ipynb")
    run = _nbval(stale_notebook, "quick", "bars.ipynb")
    assert run.returncode == 0 and "1 passed" in run.stdout, run.stdout[-2000:]
