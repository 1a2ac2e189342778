"""Load one of scripts/*.py (plain scripts, not a package) as a module, for the tests that call
their functions."""
import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def load_script(name: str):
    """scripts/<name>.py as a module, registered in sys.modules (dataclasses look their module up
    there); loaded once, however many test files ask."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]
