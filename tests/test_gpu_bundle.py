"""scripts/gpu_bundle.py: what each notebook reads, and a pack/unpack round trip (no wheels, offline)."""
import json
from pathlib import Path

import pytest

from minilib import data
from scripts_loader import load_script

ROOT = Path(__file__).resolve().parent.parent
gb = load_script("gpu_bundle")


def nb(prefix):
    return next((ROOT / "notebooks").glob(f"{prefix}_*.ipynb"))


def test_needs_follow_the_library_calls_of_each_notebook():
    ch14 = gb.needs(nb("14"))          # clip.mnist_images is passed as a value, not called
    assert {"mnist", "fashion_mnist", "minilm"} <= set(ch14["sources"]) and not ch14["refs"]
    ch10 = gb.needs(nb("10"))          # llm_embed.load_smollm2 -> data.load("smollm2")
    assert "smollm2" in ch10["sources"] and ch10["gguf"] and ch10["derived"]["ch06"]
    ch06 = gb.needs(nb("06"))          # the full corpus reads BBC, the Bible and GCIDE
    assert {"kjv", "gcide", "bbc_news", "enwiki_sample", "minilm"} <= set(ch06["sources"])
    assert ch06["derived"] == {"book_corpus": True, "ch06": True}
    assert gb.needs(nb("12"))["refs"] == ["faiss"] and gb.needs(nb("03"))["refs"] == ["gensim"]
    # nothing is dragged in through shared method names (every class has an __init__)
    assert gb.needs(nb("15"))["sources"] == [] and gb.needs(nb("16"))["sources"] == []
    assert "minilm" not in gb.needs(nb("02"))["sources"]
    bench = gb.needs(ROOT / "benchmarks" / "vector_search.py")   # scripts too
    assert {"enwiki_sample", "minilm", "glove_6b_50d"} <= set(bench["sources"])


def test_every_source_is_read_by_some_notebook():
    read = set().union(*(gb.needs(p)["sources"] for p in (ROOT / "notebooks").glob("*.ipynb")))
    assert read == set(data.SOURCES)


def test_pack_and_unpack_round_trip(tmp_path, monkeypatch):
    need = {"sources": ["wordsim353", "lee"], "derived": {"book_corpus": False, "ch06": False},
            "refs": [], "gguf": False}
    dest = tmp_path / "bundle"
    manifest = gb.write_bundle(need, dest, part_bytes=40_000, wheels=False)
    assert len(manifest["parts"]) >= 2 and all((dest / p["name"]).stat().st_size <= 40_000 for p in manifest["parts"])
    gb.unpack(dest)
    assert "MINILIB_CACHE" in (dest / "env.sh").read_text()
    # there, the files come from the unpacked download cache and pass their checksums
    monkeypatch.setenv("MINILIB_CACHE", str(dest / "cache"))
    monkeypatch.setattr(data, "_package_dir", lambda pkg: None)
    found = data.files("lee")
    assert all(str(p).startswith(str(dest / "cache" / "sources" / "lee")) for p in found.values())
    assert len(data.load("wordsim353")) > 300


def test_unpack_refuses_a_broken_or_missing_part(tmp_path):
    need = {"sources": ["wordsim353"], "derived": {"book_corpus": False, "ch06": False}, "refs": [], "gguf": False}
    dest = tmp_path / "bundle"
    manifest = gb.write_bundle(need, dest, part_bytes=20_000, wheels=False)
    last = dest / manifest["parts"][-1]["name"]
    last.write_bytes(last.read_bytes()[:-1] + b"x")
    with pytest.raises(SystemExit, match="does not match the manifest"):
        gb.unpack(dest)
    last.unlink()
    with pytest.raises(SystemExit, match="is missing: send every part"):
        gb.unpack(dest)
    assert json.loads((dest / "manifest.json").read_text())["needs"] == need


def _derived(cache: Path, name: str, payload: bytes) -> Path:
    """A cached derived file with its checksum, as data.cached_derived writes it."""
    return data.cached_derived(name, lambda p: p.write_bytes(payload))


def test_send_back_and_receive_put_the_gpus_files_into_this_cache(tmp_path, monkeypatch):
    there, here = tmp_path / "there", tmp_path / "here"
    monkeypatch.setenv("MINILIB_CACHE", str(there))
    payload = bytes(range(256)) * 400                                   # 100 kB of "weights"
    _derived(there, "ch06-encoder-full-v1.safetensors", payload)
    _derived(there, "ch06-decoder-full-v1.safetensors", payload[::-1])
    _derived(there, "corpus-full-v3.txt", b"not asked for")
    manifest = gb.send_back(["ch06-*-full-v1.safetensors"], tmp_path / "out" / "back", part_bytes=30_000)
    assert manifest["files"] == ["ch06-decoder-full-v1.safetensors", "ch06-encoder-full-v1.safetensors"]
    assert all((tmp_path / "out" / "back" / p["name"]).stat().st_size <= 30_000 for p in manifest["parts"])

    monkeypatch.setenv("MINILIB_CACHE", str(here))
    _derived(here, "ch06-encoder-full-v1.safetensors", b"a CPU run's weights")   # replaced by the GPU's
    got = gb.receive(tmp_path / "out" / "back")
    assert [p.name for p in got] == manifest["files"]
    assert (here / "derived" / "ch06-encoder-full-v1.safetensors").read_bytes() == payload
    # the cache accepts them as they are: no rebuild
    assert data.cached_derived("ch06-decoder-full-v1.safetensors", lambda p: 1 / 0).read_bytes() == payload[::-1]
    assert not (here / "derived" / "corpus-full-v3.txt").exists()
    assert sorted(p.name for p in (here / "derived").iterdir()) == sorted(
        n for f in manifest["files"] for n in (f, f + ".sha256"))           # no temporary folder left


def test_what_comes_back_fits_the_lent_machines_limits():
    # at most 8 files of 16 MiB, 64 MiB together, come back from $OUT: the model parts with back.json,
    # and full.csv, gpu_run.log and executed.tar.gz (scripts/gpu_run.sh)
    parts = -(-gb.BACK_MAX_MIB // gb.BACK_PART_MIB)
    assert parts + 1 <= gb.BACK_MAX_FILES and gb.BACK_MAX_FILES + 3 <= 8
    assert gb.BACK_PART_MIB < 16 and gb.BACK_MAX_MIB < 64
    script = (ROOT / "scripts" / "gpu_run.sh").read_text()
    assert "--executed" in script and "executed.tar.gz" in script and "gpu_run.log" in script


def test_send_back_refuses_nothing_or_too_much_and_receive_a_broken_part(tmp_path, monkeypatch):
    monkeypatch.setenv("MINILIB_CACHE", str(tmp_path / "cache"))
    with pytest.raises(SystemExit, match="no cached file under .* matches ch14-"):
        gb.send_back(["ch14-*"], tmp_path / "back")
    _derived(tmp_path / "cache", "ch14-clip.safetensors", __import__("os").urandom(50_000))  # incompressible
    with pytest.raises(SystemExit, match=r"more than may come back \(5 files, .*\): name fewer patterns"):
        gb.send_back(["ch14-*"], tmp_path / "back", part_bytes=5_000)
    with pytest.raises(SystemExit, match="more than may come back"):
        gb.send_back(["ch14-*"], tmp_path / "back", max_bytes=40_000)
    assert not (tmp_path / "back").exists()
    manifest = gb.send_back(["ch14-*"], tmp_path / "back", part_bytes=20_000)
    last = tmp_path / "back" / manifest["parts"][-1]["name"]
    last.write_bytes(b"x" + last.read_bytes()[1:])
    with pytest.raises(SystemExit, match="does not match the manifest"):
        gb.receive(tmp_path / "back")
    last.unlink()
    with pytest.raises(SystemExit, match="is missing: copy every back-NN file"):
        gb.receive(tmp_path / "back")
    with pytest.raises(SystemExit, match="has no back.json"):
        gb.receive(tmp_path)
