"""scripts/gpu_bundle.py: what each notebook reads, and a pack/unpack round trip (no wheels, offline)."""
import importlib.util
import json
from pathlib import Path

import pytest

from minilib import data

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("gpu_bundle", ROOT / "scripts" / "gpu_bundle.py")
gb = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gb)


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
