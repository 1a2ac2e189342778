"""One call at the top of every notebook: seed, device, profile, versions.

The book runs every notebook in one of two profiles:

* ``quick``: two CPU cores, minutes, small data. What CI runs.
* ``full``: a GPU, real scale, the numbers the book reports.

The profile is ``full`` when a CUDA GPU is present and ``quick`` otherwise; the environment
variable ``MINILIB_PROFILE`` overrides the choice. Sizes in a notebook come from
:func:`pick`, never from edits, so the same file runs unchanged in both.

Defined in chapter 01 (set-up); used by every chapter.
"""
from __future__ import annotations

import os
import platform
import random
from dataclasses import dataclass

import numpy as np
import torch

PROFILES = ("quick", "full")

_current: "Profile | None" = None


@dataclass(frozen=True)
class Profile:
    """The choices :func:`setup` made: profile name, torch device and seed."""

    name: str
    device: torch.device
    seed: int

    @property
    def quick(self) -> bool:
        """True in the ``quick`` profile."""
        return self.name == "quick"

    @property
    def full(self) -> bool:
        """True in the ``full`` profile."""
        return self.name == "full"

    def pick(self, *, quick, full):
        """Return ``quick`` or ``full`` according to this profile."""
        return quick if self.name == "quick" else full


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and every GPU)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def pick_device(name: str | None = None) -> torch.device:
    """The best device available (CUDA, then Apple MPS, then CPU), or the one named.

    ``MINILIB_DEVICE`` overrides the automatic choice. Asking for a device that is not
    there raises a ``RuntimeError`` that says what is available.
    """
    name = name or os.environ.get("MINILIB_DEVICE")
    if name:
        dev = torch.device(name)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(
                f"device {name!r} asked for, but torch sees no CUDA GPU (torch {torch.__version__}, "
                f"built for CUDA {torch.version.cuda}). Unset MINILIB_DEVICE to run on the CPU, or "
                "install a CUDA build of torch on a machine with an NVIDIA GPU."
            )
        if dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise RuntimeError(f"device {name!r} asked for, but MPS is not available here; unset MINILIB_DEVICE.")
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    if hasattr(torch.backends, "mps") and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def pick_profile(device: torch.device, name: str | None = None) -> str:
    """``name``, else ``$MINILIB_PROFILE``, else ``full`` on a CUDA GPU and ``quick`` elsewhere."""
    name = name or os.environ.get("MINILIB_PROFILE") or ("full" if device.type == "cuda" else "quick")
    name = name.strip().lower()
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}: use one of {PROFILES} (set MINILIB_PROFILE=quick or full)")
    return name


def versions() -> dict[str, str]:
    """Versions of Python and the libraries the book leans on (those that are installed)."""
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("minilib", "torch", "numpy", "scipy", "scikit-learn", "gensim", "transformers"):
        try:
            out[pkg] = md.version("embeddings-from-scratch" if pkg == "minilib" else pkg)
        except md.PackageNotFoundError:
            pass
    return out


def setup(seed: int = 0, profile: str | None = None, device: str | None = None, verbose: bool = True) -> Profile:
    """Seed everything, choose device and profile, print them with the versions.

    Call it once at the top of a notebook::

        P = setup(seed=0)
        n_docs = P.pick(quick=200, full=20_000)

    Returns the :class:`Profile`; :func:`current` and :func:`pick` use it afterwards.
    """
    global _current
    dev = pick_device(device)
    name = pick_profile(dev, profile)
    seed_everything(seed)
    if dev.type == "cpu":
        # Two quick runs must print the same numbers: keep CPU kernels deterministic.
        torch.use_deterministic_algorithms(True, warn_only=True)
        threads = cpu_threads()
        if threads is not None:
            torch.set_num_threads(threads)
            limit_native_threads(threads)
    _current = Profile(name=name, device=dev, seed=seed)
    if verbose:
        gpu = f" ({torch.cuda.get_device_name(dev)})" if dev.type == "cuda" else ""
        print(f"profile: {name} | device: {dev.type}{gpu} | seed: {seed}")
        print(" | ".join(f"{k} {v}" for k, v in versions().items()))
    if os.environ.get("MINILIB_METRICS_FILE"):
        record(profile=name, device=describe_device(dev))
    return _current


def cpu_threads() -> int | None:
    """The number of CPU threads torch should use, from ``MINILIB_THREADS``; ``None`` keeps torch's default.

    When several notebooks run side by side (the test script runs two at once on two cores), each
    one using every core makes the threads wait on each other, and some training loops run ten times
    slower. ``scripts/test.sh`` and ``scripts/run_notebook.sh`` therefore set ``MINILIB_THREADS=1``,
    which also makes the checked outputs independent of the machine's core count. :func:`setup`
    applies it to torch and to numpy's and scipy's BLAS and OpenMP (:func:`limit_native_threads`).
    """
    value = os.environ.get("MINILIB_THREADS", "").strip()
    if not value:
        return None
    try:
        threads = int(value)
    except ValueError:
        threads = 0
    if threads < 1:
        raise ValueError(f"MINILIB_THREADS must be a whole number of threads, at least 1, got {value!r}; "
                         "unset it to let torch use every core")
    return threads


def limit_native_threads(threads: int) -> None:
    """Cap the thread pools of the native libraries numpy, scipy, scikit-learn and faiss call into
    (OpenBLAS and OpenMP) at ``threads``, as ``torch.set_num_threads`` caps torch's.

    :func:`setup` calls it with ``MINILIB_THREADS``. Without it, a notebook limited to one torch thread
    still runs numpy's and scipy's BLAS on every core; with two notebooks side by side on two cores
    (``scripts/test.sh``) their BLAS threads wait on each other, and chapter 02's three SVD cells took 100 s
    instead of under 5 (measured on this project's 2-core machine, the other core busy). Every notebook's
    checked outputs came out the same with the limit as without it.
    """
    if not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a whole number, at least 1, got {threads!r}")
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=threads)   # sets the limits now; they stay until changed again


# numpy's names for its AVX-512 code paths (numpy 2.4 groups them as X86_V4; older releases name each)
_NUMPY_AVX512 = ("X86_V4", "AVX512F", "AVX512CD", "AVX512_KNL", "AVX512_KNM", "AVX512_SKX", "AVX512_CLX",
                 "AVX512_CNL", "AVX512_ICL", "AVX512_SPR")


def portable_cpu_env() -> dict[str, str]:
    """Environment variables that make numpy, OpenBLAS and torch (MKL, oneDNN, ATen) take their AVX2
    code paths on a CPU that also has AVX-512, for the processes started afterwards.

    The checked outputs of the notebooks are exact to the printed digit, and a vector unit twice as
    wide sums floats in another order: on an AVX-512 machine a WEAT effect size moved by one float32
    ulp and contrastive-training scores in the third decimal, against outputs made on an AVX2
    machine. With these settings an AVX-512 machine reproduces the AVX2 numbers, so the notebook
    tests (``notebooks/conftest.py`` sets them for nbval's kernels) and the stored outputs
    (``scripts/run_notebook.sh``) do not depend on which of the two CI lands on.
    A reader's own runs are not affected. numpy refuses to disable a feature the machine lacks or
    does not dispatch, so only those present are named.
    """
    try:
        from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__
    except ImportError:                   # numpy 1.x
        from numpy.core._multiarray_umath import __cpu_dispatch__, __cpu_features__
    off = [f for f in _NUMPY_AVX512 if __cpu_features__.get(f) and f in __cpu_dispatch__]
    env = {"OPENBLAS_CORETYPE": "Haswell", "ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2",
           "MKL_CBWR": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
    if off:
        env["NPY_DISABLE_CPU_FEATURES"] = " ".join(off)
    return env


def describe_device(dev: torch.device) -> str:
    """``"NVIDIA H100 80GB HBM3"`` or ``"cpu (2 cores)"``: the hardware a number was measured on."""
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    if dev.type == "cpu":
        n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        return f"cpu ({n} cores)"
    return dev.type


def current() -> Profile:
    """The profile chosen by the last :func:`setup` (runs ``setup()`` quietly if none yet)."""
    return _current if _current is not None else setup(verbose=False)


def pick(*, quick, full):
    """``quick`` or ``full`` according to the current profile."""
    return current().pick(quick=quick, full=full)


def record(**metrics) -> None:
    """Record a notebook's key results for the table of measured runs (Appendix B).

    ``scripts/run_notebooks.py`` sets ``MINILIB_METRICS_FILE`` for each notebook it runs and
    reads the values back; elsewhere it only checks them. Values must be numbers or short
    strings::

        profile.record(analogy_glove=0.231, ws353_glove=0.52)
    """
    import json

    for k, v in metrics.items():
        if not isinstance(v, (int, float, str)) or isinstance(v, bool):
            raise TypeError(f"record({k}=...) takes a number or a string, got {type(v).__name__}")
    path = os.environ.get("MINILIB_METRICS_FILE")
    if path:
        old = {}
        if os.path.exists(path):
            with open(path) as f:
                old = json.load(f)
        old.update({k: (round(v, 4) if isinstance(v, float) else v) for k, v in metrics.items()})
        tmp = f"{path}.tmp"
        with open(tmp, "w") as f:
            json.dump(old, f, indent=1, sort_keys=True)
        os.replace(tmp, path)
