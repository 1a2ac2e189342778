"""nbval settings: print how long each notebook took (the CI budget is watched per notebook), keep
progress bars from flooding the kernel's output socket, wait longer than nbval's 5 s for a finished
cell's output on a loaded runner, run the kernels on AVX2 code paths, and compare the checked
cells' outputs in the quick profile only."""
import collections
import os

# nbval reads a cell's output messages only after the cell has finished, and the kernel's message
# socket holds about a thousand of them: a long cell whose tqdm bars redraw every 0.1 s (tqdm's
# default) overflows it, the kernel drops messages, the final "idle" among them, and nbval fails with
# "Timeout ... waiting for output" (seen in chapter 16's full profile, and reproduced: three bars over
# two minutes fail, the same with one redraw per 10 s pass). Kernels inherit this environment, so every
# bar in a notebook under test redraws at most every 10 s; readers' own runs are not affected.
os.environ.setdefault("TQDM_MININTERVAL", "10")

_seconds = collections.defaultdict(float)


def pytest_runtest_logreport(report):
    if report.nodeid.split("::")[0].endswith(".ipynb"):
        _seconds[report.nodeid.split("::")[0]] += report.duration


def pytest_terminal_summary(terminalreporter):
    if _seconds:
        terminalreporter.section("notebook durations")
        for nb, s in sorted(_seconds.items(), key=lambda kv: -kv[1]):
            terminalreporter.write_line(f"{s:8.1f} s  {nb}")


def _profile() -> str:
    name = os.environ.get("MINILIB_PROFILE", "").strip().lower()
    if name:
        return name
    from minilib import profile          # no override: the notebooks pick full where a GPU is present

    return profile.pick_profile(profile.pick_device())


def pytest_configure(config):
    # The stored outputs were made with AVX2 code paths; on a CPU with AVX-512 the kernels started
    # from here take the same paths (minilib.profile.portable_cpu_env), so the checked digits do not
    # depend on which of the two machines runs the tests.
    if _profile() == "quick":
        from minilib import profile

        for key, value in profile.portable_cpu_env().items():
            os.environ.setdefault(key, value)


def pytest_collection_modifyitems(items):
    # nbval waits only 5 s for each output message after a cell has finished; a loaded two-core runner
    # needs more (chapter 14 once failed there on a cold cache, most likely the progress-bar overflow
    # described at the top). The cell timeout (--nbval-cell-timeout) still bounds a cell that really hangs.
    for item in items:
        if hasattr(item, "output_timeout"):
            item.output_timeout = 60
    # The stored outputs of the checked cells (# NBVAL_CHECK_OUTPUT) come from the quick profile. A full
    # run prints other numbers by design, and sometimes other rows (more tasks, more sampler steps) or a
    # library warning: there it checks that every cell runs and every assertion in the notebooks holds,
    # and its results are read from the metrics table (scripts/run_notebooks.py), not compared.
    nb_items = [item for item in items if hasattr(item, "options") and hasattr(item, "cell")]
    if nb_items and _profile() == "full":
        for item in nb_items:
            item.options["check"] = False
