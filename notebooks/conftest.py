"""Print how long each notebook took under nbval (the CI budget is watched per notebook)."""
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
