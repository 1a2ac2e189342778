"""The book builds with warnings as errors (notebooks are not executed here: nbval already ran
them in the same test run), and a notebook that raises fails a build that executes it."""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
JB = [str(Path(sys.executable).parent / "jupyter-book")]


def _jb(*args, cwd=ROOT):
    env = {**os.environ, "MINILIB_PROFILE": "quick", "PYDEVD_DISABLE_FILE_VALIDATION": "1"}
    return subprocess.run([*JB, "build", "-W", "-n", "--keep-going", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=1500)


@pytest.mark.slow
def test_book_builds_without_warnings(tmp_path):
    config = (ROOT / "_config.yml").read_text()
    config, n = re.subn(r"execute_notebooks:\s*\w+", "execute_notebooks: 'off'", config)
    assert n == 1
    (tmp_path / "_config.yml").write_text(config)
    out = _jb("--config", str(tmp_path / "_config.yml"), "--path-output", str(tmp_path / "out"), ".")
    assert out.returncode == 0, out.stdout[-5000:] + out.stderr[-5000:]
    html = tmp_path / "out" / "_build" / "html"
    for entry in re.findall(r"(?:root|file):\s*(\S+)", (ROOT / "_toc.yml").read_text()):
        assert (html / f"{entry}.html").exists(), f"no page built for {entry}"


@pytest.mark.slow
def test_a_failing_notebook_fails_the_build(tmp_path):
    book = tmp_path / "book"
    book.mkdir()
    shutil.copy(ROOT / "_config.yml", book / "_config.yml")
    (book / "references.bib").write_text("")
    cfg = (book / "_config.yml").read_text().replace("book/references.bib", "references.bib")
    (book / "_config.yml").write_text(cfg)
    (book / "_toc.yml").write_text("format: jb-book\nroot: index\nchapters:\n  - file: broken\n")
    (book / "index.md").write_text("# Index\n")
    nb = {"cells": [{"cell_type": "markdown", "metadata": {}, "source": "# Broken"},
                    {"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [],
                     "source": "raise ValueError('this notebook is broken')"}],
          "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
          "nbformat": 4, "nbformat_minor": 5}
    (book / "broken.ipynb").write_text(json.dumps(nb))
    out = _jb(".", cwd=book)
    assert out.returncode != 0, "the build passed although a notebook raised"
    assert "this notebook is broken" in out.stdout + out.stderr
