"""nbval settings: print how long each notebook took (the CI budget is watched per notebook), and wait
longer than nbval's 5 s for a finished cell's output on a loaded runner."""
import collections

_seconds = collections.defaultdict(float)


def pytest_runtest_logreport(report):
    if report.nodeid.split("::")[0].endswith(".ipynb"):
        _seconds[report.nodeid.split("::")[0]] += report.duration


def pytest_terminal_summary(terminalreporter):
    if _seconds:
        terminalreporter.section("notebook durations")
        for nb, s in sorted(_seconds.items(), key=lambda kv: -kv[1]):
            terminalreporter.write_line(f"{s:8.1f} s  {nb}")


def pytest_collection_modifyitems(items):
    # nbval waits only 5 s for each output message after a cell has finished. On a loaded two-core
    # runner a cell that prints hundreds of progress-bar updates (chapter 14 training two CLIP models
    # on a cold cache) once hit that limit, and nbval then stopped the kernel and failed the rest of
    # the notebook. The cell timeout (--nbval-cell-timeout) still bounds a cell that really hangs.
    for item in items:
        if hasattr(item, "output_timeout"):
            item.output_timeout = 60
