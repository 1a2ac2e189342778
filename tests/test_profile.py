"""minilib.profile: profile and device choice, seeding, pick()."""
import os
import random

import numpy as np
import pytest
import torch

from minilib import profile


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    monkeypatch.delenv("MINILIB_PROFILE", raising=False)
    monkeypatch.delenv("MINILIB_DEVICE", raising=False)


def test_quick_on_cpu_full_on_cuda_and_env_override(monkeypatch):
    assert profile.pick_profile(torch.device("cpu")) == "quick"
    assert profile.pick_profile(torch.device("cuda")) == "full"
    monkeypatch.setenv("MINILIB_PROFILE", "FULL")
    assert profile.pick_profile(torch.device("cpu")) == "full"


def test_unknown_profile_is_a_clear_error():
    with pytest.raises(ValueError, match="MINILIB_PROFILE=quick or full"):
        profile.pick_profile(torch.device("cpu"), "medium")


def test_asking_for_a_missing_gpu_says_what_to_do(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="Unset MINILIB_DEVICE"):
        profile.pick_device("cuda")
    assert profile.pick_device("cpu").type == "cpu"


def test_setup_seeds_everything_and_pick_follows_the_profile(capsys):
    P = profile.setup(seed=7, profile="quick", device="cpu")
    a = (random.random(), np.random.rand(), torch.rand(1).item())
    profile.setup(seed=7, profile="quick", device="cpu", verbose=False)
    b = (random.random(), np.random.rand(), torch.rand(1).item())
    assert a == b
    out = capsys.readouterr().out
    assert "profile: quick | device: cpu | seed: 7" in out and "torch" in out
    assert P.pick(quick=1, full=2) == 1 and profile.pick(quick="q", full="f") == "q"
    assert P.quick and not P.full
    P = profile.setup(seed=0, profile="full", device="cpu", verbose=False)
    assert profile.current() is P and profile.pick(quick=1, full=2) == 2


def test_versions_lists_the_main_libraries():
    v = profile.versions()
    assert {"python", "torch", "numpy"} <= set(v)


def test_record_merges_metrics_into_the_file(tmp_path, monkeypatch):
    import json
    out = tmp_path / "m.json"
    profile.record(a=1)  # no file asked for: checked, written nowhere
    assert not out.exists()
    monkeypatch.setenv("MINILIB_METRICS_FILE", str(out))
    profile.record(acc=0.123456, name="glove")
    profile.record(rho=0.5)
    assert json.loads(out.read_text()) == {"acc": 0.1235, "name": "glove", "rho": 0.5}
    with pytest.raises(TypeError, match="number or a string"):
        profile.record(bad=[1, 2])


def test_minilib_threads_sets_torch_threads_and_rejects_nonsense(monkeypatch):
    import torch

    before = torch.get_num_threads()
    try:
        monkeypatch.delenv("MINILIB_THREADS", raising=False)
        assert profile.cpu_threads() is None
        monkeypatch.setenv("MINILIB_THREADS", "1")
        assert profile.cpu_threads() == 1
        profile.setup(seed=0, device="cpu", verbose=False)
        assert torch.get_num_threads() == 1
        for bad in ("0", "two", "-3"):
            monkeypatch.setenv("MINILIB_THREADS", bad)
            with pytest.raises(ValueError, match="MINILIB_THREADS"):
                profile.cpu_threads()
    finally:
        torch.set_num_threads(before)


def test_minilib_threads_caps_blas_and_openmp_too():
    # In a new process (the caps are process-wide): numpy's and scipy's OpenBLAS and the OpenMP pools
    # follow MINILIB_THREADS, not only torch. 3 is no machine's default here, so the test can fail.
    import ast
    import os
    import subprocess
    import sys

    code = ("import numpy, scipy.linalg, torch; from threadpoolctl import threadpool_info; "
            "from minilib import profile; profile.setup(seed=0, device='cpu', verbose=False); "
            "print(sorted({(d['internal_api'], d['num_threads']) for d in threadpool_info()}), torch.get_num_threads())")
    env = {**os.environ, "MINILIB_THREADS": "3"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    pools, torch_threads = out.rsplit(" ", 1)
    pools = ast.literal_eval(pools)
    assert {api for api, _ in pools} >= {"openblas"}, pools
    assert all(n == 3 for _, n in pools) and int(torch_threads) == 3, out
    for bad in (0, -1, 1.5):
        with pytest.raises(ValueError, match="at least 1"):
            profile.limit_native_threads(bad)


def test_portable_cpu_env_selects_the_avx2_code_paths_in_new_processes():
    import subprocess
    import sys

    env = profile.portable_cpu_env()
    assert env["OPENBLAS_CORETYPE"] == "Haswell" and env["ATEN_CPU_CAPABILITY"] == "avx2" and env["MKL_CBWR"] == "AVX2"
    try:
        from numpy._core._multiarray_umath import __cpu_features__
    except ImportError:
        from numpy.core._multiarray_umath import __cpu_features__
    assert all(__cpu_features__[f] for f in env.get("NPY_DISABLE_CPU_FEATURES", "").split())  # only what is there
    off = env.get("NPY_DISABLE_CPU_FEATURES", "").split()
    code = ("import numpy, torch; f = numpy._core._multiarray_umath.__cpu_features__; "
            f"print(any(f[k] for k in {off!r}), torch.backends.cpu.get_cpu_capability())")
    still_on, capability = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env},
                                          capture_output=True, text=True, check=True).stdout.split()
    assert still_on == "False" and capability in ("AVX2", "DEFAULT")


def test_describe_device_names_the_hardware(monkeypatch):
    monkeypatch.setattr(profile.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert profile.describe_device(torch.device("cpu")) == "cpu (2 cores)"
    monkeypatch.setattr(profile.torch.cuda, "get_device_name", lambda dev: "NVIDIA H100 80GB HBM3")
    assert profile.describe_device(torch.device("cuda", 0)) == "NVIDIA H100 80GB HBM3"
    assert profile.describe_device(torch.device("mps")) == "mps"


def test_asking_for_missing_mps_says_what_to_do(monkeypatch):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="device 'mps' asked for, but MPS is not available here; unset MINILIB_DEVICE"):
        profile.pick_device("mps")
    monkeypatch.setenv("MINILIB_DEVICE", "mps:0")  # the same through the environment variable
    with pytest.raises(RuntimeError, match="device 'mps:0' asked for.*unset MINILIB_DEVICE"):
        profile.pick_device()
