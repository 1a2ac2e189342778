"""Carry what full-profile notebooks need to an offline GPU machine, in parts small enough to
travel one at a time, and unpack them there.

The GPU machine (see ``../shared/gpu/README.md``) has Python 3.12, torch, transformers and most of
the scientific stack, but no internet, no Jupyter stack, none of the packages that ship the
book's data, and accepts at most 64 MiB per transfer. This script, run here, works out which data
sources, cached files and wheels the named notebooks read, builds the cached files a CPU can build
ahead of time (the full book corpus, the decoded King James Bible, chapter 06's tokenizer and token
streams), and packs them into a compressed archive split into parts::

    python scripts/gpu_bundle.py needs notebooks/06_transformers_from_scratch.ipynb
    python scripts/gpu_bundle.py pack notebooks/06_*.ipynb notebooks/14_*.ipynb   # -> .gpu/part-NN

Send each part in its own call (``carry: [".gpu/part-00"]`` ... ``cp .gpu/part-* /tmp/gpu/``),
then, in the last call, there::

    python3 scripts/gpu_bundle.py unpack /tmp/gpu && . /tmp/gpu/env.sh
    python3 scripts/run_notebooks.py --profile full --out "$OUT/full.csv" notebooks/06_*.ipynb

``unpack`` checks every part against the manifest, extracts the cache (``MINILIB_CACHE``) and the
wheels, installs the wheels into ``/tmp/gpu/site`` and registers a Jupyter kernel; ``env.sh`` sets
``MINILIB_CACHE``, ``PYTHONPATH`` and ``PATH``. The sources travel as files of the download cache
(``$MINILIB_CACHE/sources/<name>/``), where :func:`minilib.data.files` finds and verifies them.

Models the notebooks train there (chapter 06's full-profile encoder and decoder, say) can come back,
so that the chapters built on them run on without the GPU: ``send-back`` there packs cached files
into ``back-NN`` parts of at most 15 MiB (what may come back from ``$OUT``), ``receive`` here checks
them and puts them into the local cache (``scripts/gpu_run.sh`` does the first with ``SEND_BACK``)::

    python3 scripts/gpu_bundle.py send-back --out "$OUT/back" 'ch06-*-full-v1.safetensors'   # there
    python scripts/gpu_bundle.py receive /path/to/back                                      # here
"""
from __future__ import annotations

import argparse
import ast
import functools
import hashlib
import io
import json
import lzma
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MIB = 1 << 20
# Packages the notebooks import that the GPU machine's image lacks (KINDS.md lists the image).
JUPYTER = ["nbval", "ipykernel", "nbclient"]
GGUF = ["gguf"]                      # transformers reads the SmolLM2 GGUF file with it (chapter 10)
REFS = {"gensim": ["gensim"], "faiss": ["faiss-cpu"]}
# In the CUDA image already: never shipped again (a wheel's name, normalised, before its version).
IMAGE = set("""numpy scipy pandas pyarrow torch transformers tokenizers safetensors accelerate
sentence_transformers huggingface_hub hf_xet scikit_learn joblib threadpoolctl matplotlib contourpy
cycler fonttools kiwisolver pillow pyparsing networkx sympy mpmath tqdm regex requests urllib3 idna
certifi charset_normalizer filelock fsspec packaging pyyaml jinja2 markupsafe typing_extensions
pygments attrs psutil pytest pluggy iniconfig execnet pytest_xdist coverage six python_dateutil
click anyio h11 httpx httpcore sentencepiece protobuf setuptools wheel pip wrapt
xxhash aiohttp aiosignal frozenlist multidict yarl propcache aiohappyeyeballs msgpack""".split())


# --- what a notebook reads -----------------------------------------------------------------


LEAVES = {"data.load", "data.path", "data.files", "data.info", "data.cached_derived"}  # dispatch on a name


def _docstrings(tree: ast.AST) -> set[int]:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Module)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                out.add(id(first.value))
    return out


def _imports(tree: ast.AST, module: str | None) -> dict[str, str]:
    """``{local name: "module" or "module.function"}`` for the minilib names a file imports."""
    out = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level == 1 or base == "minilib":          # from . import data / from minilib import data
                for a in node.names:
                    out[a.asname or a.name] = a.name if not base or base == "minilib" else f"{base}.{a.name}"
            elif base.startswith("minilib."):                  # from minilib.data import load
                for a in node.names:
                    out[a.asname or a.name] = f"{base.removeprefix('minilib.')}.{a.name}"
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("minilib."):
                    out[a.asname or a.name] = a.name.removeprefix("minilib.")
    return out


def _scan(tree: ast.AST, module: str | None, imports: dict[str, str], docs: set[int]) -> tuple[set[str], set[str]]:
    """String constants (docstrings aside) and resolved calls under ``tree``: ``"mod.func"`` for a
    module's function, ``".name"`` for a method call on some object."""
    strings, calls = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            strings.add(node.value)
        elif isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Name):
                target = imports.get(f.id)
                calls.add(target if target and "." in target else f"{module}.{f.id}")
            elif isinstance(f, ast.Attribute) and not (isinstance(f.value, ast.Name) and f.value.id in imports):
                calls.add(f".{f.attr}")
        # a module's function named, called or not (``clip.mnist_images`` passed as a value counts)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            mod = imports.get(node.value.id)
            if mod and "." not in mod:
                calls.add(f"{mod}.{node.attr}")
        elif isinstance(node, ast.Name) and "." in imports.get(node.id, ""):
            calls.add(imports[node.id])
    return strings, calls


@functools.lru_cache(maxsize=1)
def library_graph() -> dict[str, tuple[set[str], set[str]]]:
    """``{"module.function" or ".method": (string constants, resolved calls)}`` over minilib."""
    graph: dict[str, tuple[set[str], set[str]]] = {}
    for py in sorted((ROOT / "minilib").glob("*.py")):
        module = py.stem
        tree = ast.parse(py.read_text())
        imports, docs = _imports(tree, module), _docstrings(tree)

        def add(key, node):
            s, c = _scan(node, module, imports, docs)
            old = graph.setdefault(key, (set(), set()))
            old[0].update(s)
            old[1].update(c)

        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                add(f"{module}.{node.name}", node)
            elif isinstance(node, ast.ClassDef):
                add(f"{module}.{node.name}", node)           # constructing it runs __init__
                for item in node.body:
                    if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                        if not item.name.startswith("__"):   # __init__ & co. run with their class
                            add(f".{item.name}", item)
                        add(f"{module}.{item.name}", item)   # classmethods called as module.Class.f
    return graph


def notebook_code(nb: Path) -> str:
    """The code of a notebook (magics dropped), or of a script such as ``benchmarks/*.py``."""
    if nb.suffix == ".py":
        return nb.read_text()
    cells = json.loads(nb.read_text())["cells"]
    lines = []
    for c in cells:
        if c["cell_type"] == "code":
            lines += [ln for ln in "".join(c["source"]).splitlines() if not ln.lstrip().startswith(("%", "!"))]
            lines.append("")
    return "\n".join(lines)


def needs(nb: Path) -> dict:
    """What ``nb`` reads in the full profile: ``sources`` (registry names), ``derived`` (flags for
    cached files built from them), ``refs`` (reference packages it imports) and ``gguf``."""
    from minilib import data

    code = notebook_code(nb)
    tree = ast.parse(code)
    strings, calls = _scan(tree, None, _imports(tree, None), set())
    graph, seen, todo = library_graph(), set(), set(calls)
    while todo:
        name = todo.pop()
        if name in seen or name not in graph or name in LEAVES:
            continue
        seen.add(name)
        strings |= graph[name][0]
        todo |= graph[name][1] - seen
    if "data.book_corpus" in seen or "data._corpus_part" in seen:
        strings.add("book_corpus")
    sources = sorted(strings & set(data.SOURCES))
    derived = {"book_corpus": "book_corpus" in strings,
               "ch06": bool({"transformer.book_models", "transformer.book_tokenizer"} & seen)
               or nb.name.startswith("06_")}
    refs = sorted(k for k in REFS if re.search(rf"^\s*(import|from) {k}\b", code, re.M))
    return {"sources": sources, "derived": derived, "refs": refs, "gguf": "smollm2" in sources}


# --- pack ----------------------------------------------------------------------------------


def _norm(wheel: str) -> str:
    return re.sub(r"[-.]+", "_", wheel.split("-")[0]).lower()


def download_wheels(packages: list[str], dest: Path, python_version: str = "3.12") -> list[Path]:
    """x86-64 wheels of ``packages`` and their needs for Python ``python_version``, minus what the
    GPU machine's image has."""
    tmp = Path(tempfile.mkdtemp())
    plats = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64", "any"]
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:", "--python-version", python_version,
           "--implementation", "cp", *[a for p in plats for a in ("--platform", p)], "-d", str(tmp), *packages]
    subprocess.run(cmd, check=True)
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for w in sorted(tmp.glob("*.whl")):
        if _norm(w.name) not in IMAGE:
            out.append(Path(shutil.move(str(w), dest / w.name)))
    shutil.rmtree(tmp)
    return out


def prebuild(need: dict) -> None:
    """Build here, on the CPU, the cached files the notebooks would otherwise build on the GPU machine."""
    from minilib import data, transformer

    if need["derived"]["book_corpus"]:
        data.book_corpus("full")
    if "kjv" in need["sources"]:
        data.load("kjv")
    if need["derived"]["ch06"]:
        transformer.book_token_ids("train", "full")
        transformer.book_token_ids("held", "full")


def cache_members(need: dict) -> list[tuple[Path, str]]:
    """``(file here, name in the archive)`` for every source file and cached file ``need`` names."""
    from minilib import data, transformer

    out = []
    for name in need["sources"]:
        found = data.files(name)
        for key, (path_rel, _) in data.info(name).files.items():
            p = found[key]
            files = [q for q in sorted(p.rglob("*")) if q.is_file()] if p.is_dir() else [p]
            for q in files:
                out.append((q, f"cache/sources/{name}/{path_rel}" + (f"/{q.relative_to(p)}" if p.is_dir() else "")))
    derived = data.cache_dir() / "derived"
    patterns = []
    if need["derived"]["book_corpus"]:
        patterns.append(f"corpus-*-v{data._CORPUS_VERSION}.txt")
    if "kjv" in need["sources"]:
        patterns.append("kjv-chapters-*.json")
    if need["derived"]["ch06"]:
        patterns += [transformer.book_cache_name(w, "full") for w in ("bpe", "train", "held")]
    for pat in patterns:
        for q in sorted(derived.glob(pat)):
            for f in (q, q.with_name(q.name + ".sha256")):
                out.append((f, f"cache/derived/{f.name}"))
    return out


def merge_needs(notebooks: list[Path]) -> dict:
    per = [needs(nb) for nb in notebooks]
    return {"sources": sorted({s for n in per for s in n["sources"]}),
            "derived": {k: any(n["derived"][k] for n in per) for k in ("book_corpus", "ch06")},
            "refs": sorted({r for n in per for r in n["refs"]}),
            "gguf": any(n["gguf"] for n in per)}


def write_bundle(need: dict, dest: Path, part_bytes: int, wheels: bool = True, python_version: str = "3.12") -> dict:
    """Pack the cache files ``need`` names (and the wheels) into ``dest/part-NN`` + ``manifest.json``."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    whl = []
    if wheels:
        whl = download_wheels(JUPYTER + (GGUF if need["gguf"] else []) + [p for r in need["refs"] for p in REFS[r]],
                              dest / "wheels", python_version)
    members = cache_members(need) + [(w, f"wheels/{w.name}") for w in whl]
    raw = sum(p.stat().st_size for p, _ in members)
    buf = io.BytesIO()
    with lzma.open(buf, "wb", preset=6) as xz, tarfile.open(fileobj=xz, mode="w") as tar:
        for p, arc in members:
            tar.add(p, arcname=arc)
    shutil.rmtree(dest / "wheels", ignore_errors=True)
    blob = buf.getvalue()
    manifest = {"needs": need, "files": len(members), **_split(blob, dest, "part", part_bytes)}
    (dest / "manifest.json").write_text(json.dumps(manifest, indent=1))
    print(f"{len(members)} files, {raw / MIB:.1f} MiB -> {len(blob) / MIB:.1f} MiB in {len(manifest['parts'])} part(s) "
          f"of at most {part_bytes / MIB:.0f} MiB under {dest}/ (carry manifest.json with each part)")
    return manifest


# --- parts: a blob split to fit a transfer, and joined again with checks --------------------


def _split(blob: bytes, dest: Path, prefix: str, part_bytes: int) -> dict:
    """Write ``blob`` as ``dest/<prefix>-NN`` files of at most ``part_bytes``; the manifest entries."""
    parts = []
    for i in range(0, len(blob), part_bytes):
        p = dest / f"{prefix}-{i // part_bytes:02d}"
        p.write_bytes(blob[i:i + part_bytes])
        parts.append({"name": p.name, "sha256": hashlib.sha256(p.read_bytes()).hexdigest()})
    return {"sha256": hashlib.sha256(blob).hexdigest(), "parts": parts}


def _join(folder: Path, manifest: dict, fix: str) -> io.BytesIO:
    """The parts ``manifest`` lists, read from ``folder``, checked and joined; ``fix`` completes the
    message when a part is missing."""
    blob = io.BytesIO()
    for part in manifest["parts"]:
        p = folder / part["name"]
        if not p.exists():
            raise SystemExit(f"{p} is missing: {fix}")
        b = p.read_bytes()
        if hashlib.sha256(b).hexdigest() != part["sha256"]:
            raise SystemExit(f"{p} does not match the manifest (a transfer broke off?): send it again")
        blob.write(b)
    if hashlib.sha256(blob.getvalue()).hexdigest() != manifest["sha256"]:
        raise SystemExit("the joined parts do not match the manifest: pack again and send every part")
    blob.seek(0)
    return blob


# --- unpack (on the GPU machine) -----------------------------------------------------------


def unpack(folder: Path) -> None:
    """Join and check the parts in ``folder``, extract cache and wheels, install the wheels into
    ``folder/site`` and write ``folder/env.sh``."""
    manifest = json.loads((folder / "manifest.json").read_text())
    blob = _join(folder, manifest, "send every part listed in manifest.json before unpacking")
    with lzma.open(blob) as xz, tarfile.open(fileobj=xz) as tar:
        tar.extractall(folder, filter="data")
    site = folder / "site"
    wheels = sorted((folder / "wheels").glob("*.whl"))
    env = {**os.environ, "PYTHONPATH": f"{site}:{ROOT}", "PATH": f"{site}/bin:{os.environ.get('PATH', '')}"}
    if wheels:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                        "--target", str(site), *map(str, wheels)], check=True)
        # a kernel that sees the installed packages (nbval starts notebooks in it)
        subprocess.run([sys.executable, "-m", "ipykernel", "install", "--user", "--name", "python3"], env=env,
                       check=True)
    (folder / "env.sh").write_text(f'export MINILIB_CACHE="{folder}/cache" PYTHONPATH="{site}:{ROOT}" '
                                   f'PATH="{site}/bin:$PATH"\n')
    print(f"unpacked {len(wheels)} wheels and the cache into {folder}; now: . {folder}/env.sh")


# --- send back (there) and receive (here): models trained on the GPU ------------------------

BACK_PART_MIB = 15      # a file that comes back from $OUT may hold at most 16 MiB ...
BACK_MAX_FILES = 5      # ... and at most 8 come back: 4 parts and back.json leave room for full.csv,
                        # gpu_run.log and executed.tar.gz (scripts/gpu_run.sh) ...
BACK_MAX_MIB = 60       # ... and 64 MiB together


def send_back(patterns: list[str], out: Path, part_bytes: int = BACK_PART_MIB * MIB,
              max_files: int = BACK_MAX_FILES, max_bytes: int = BACK_MAX_MIB * MIB) -> dict:
    """Pack the cached derived files matching ``patterns`` (globs under ``$MINILIB_CACHE/derived``,
    e.g. the full-profile models chapter 06 trained there) with their checksums into
    ``out/back-NN`` parts and ``out/back.json``, small enough to come back from the GPU machine."""
    from minilib import data

    derived = data.cache_dir() / "derived"
    files = sorted({q for pat in patterns for q in derived.glob(pat)
                    if q.is_file() and not q.name.endswith(".sha256")})
    if not files:
        raise SystemExit(f"no cached file under {derived} matches {' '.join(patterns)}: run the notebook that "
                         f"builds it first, or check the pattern against `ls {derived}`")
    members = [f for q in files for f in (q, q.with_name(q.name + ".sha256")) if f.exists()]
    buf = io.BytesIO()
    with lzma.open(buf, "wb", preset=0) as xz, tarfile.open(fileobj=xz, mode="w") as tar:
        for f in members:
            tar.add(f, arcname=f.name)
    blob = buf.getvalue()
    n_parts = -(-len(blob) // part_bytes)
    if n_parts + 1 > max_files or len(blob) > max_bytes:
        raise SystemExit(f"{len(blob) / MIB:.1f} MiB in {n_parts} parts and a manifest is more than may come back "
                         f"({max_files} files, {max_bytes / MIB:.0f} MiB): name fewer patterns and send the rest "
                         "in a later call")
    out.mkdir(parents=True, exist_ok=True)
    manifest = {"files": [q.name for q in files], **_split(blob, out, "back", part_bytes)}
    (out / "back.json").write_text(json.dumps(manifest, indent=1))
    print(f"{len(files)} cached files, {len(blob) / MIB:.1f} MiB in {len(manifest['parts'])} part(s) under {out}/")
    return manifest


def receive(folder: Path) -> list[Path]:
    """Here: check and join the parts ``send_back`` wrote, and put the files into this machine's
    cache (``data.cache_dir() / "derived"``), each verified against its ``.sha256``. A file already
    there is replaced (it is named): the GPU's run is the one the book reports."""
    from minilib import data

    if not (folder / "back.json").is_file():
        raise SystemExit(f"{folder} has no back.json: name the folder the GPU run's back/ files were copied to")
    manifest = json.loads((folder / "back.json").read_text())
    blob = _join(folder, manifest, "copy every back-NN file that came back next to back.json")
    derived = data.cache_dir() / "derived"
    derived.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=derived) as tmp, lzma.open(blob) as xz, tarfile.open(fileobj=xz) as tar:
        tar.extractall(tmp, filter="data")
        got = []
        for name in manifest["files"]:
            f, sidecar = Path(tmp) / name, Path(tmp) / (name + ".sha256")
            if not data._matches_sidecar(f):
                raise SystemExit(f"{name} does not match its checksum: send it back again")
            for q in (f, sidecar):
                if (derived / q.name).exists():
                    print(f"replacing {derived / q.name}")
                os.replace(q, derived / q.name)
            got.append(derived / name)
    print(f"{len(got)} files into {derived}: {', '.join(p.name for p in got)}")
    return got


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("needs", help="print what each notebook reads")
    a.add_argument("notebooks", nargs="+", type=Path)
    b = sub.add_parser("pack", help="build and pack what the notebooks need into parts")
    b.add_argument("notebooks", nargs="+", type=Path)
    b.add_argument("--dest", type=Path, default=ROOT / ".gpu")
    b.add_argument("--part-mib", type=int, default=56, help="size of each part (a call carries at most 64 MiB)")
    b.add_argument("--no-build", action="store_true", help="do not build the cached files here first")
    b.add_argument("--python-version", default="3.12", help="the GPU machine's Python, for the wheels")
    c = sub.add_parser("unpack", help="on the GPU machine: join, check and install the parts in FOLDER")
    c.add_argument("folder", type=Path)
    d = sub.add_parser("send-back", help="on the GPU machine: pack cached files (globs) into parts that come back")
    d.add_argument("patterns", nargs="+", help="globs under $MINILIB_CACHE/derived, e.g. 'ch06-*-full-v1.safetensors'")
    d.add_argument("--out", type=Path, required=True, help="a folder under $OUT")
    e = sub.add_parser("receive", help="here: check the parts that came back and put the files into the cache")
    e.add_argument("folder", type=Path)
    args = ap.parse_args(argv)
    if args.cmd == "needs":
        for nb in args.notebooks:
            print(nb.name, json.dumps(needs(nb)))
    elif args.cmd == "pack":
        missing = [nb for nb in args.notebooks if not nb.exists()]
        if missing:
            ap.error(f"no such notebook: {', '.join(map(str, missing))}")
        need = merge_needs(args.notebooks)
        print(json.dumps(need))
        if not args.no_build:
            prebuild(need)
        write_bundle(need, args.dest, args.part_mib * MIB, python_version=args.python_version)
    elif args.cmd == "unpack":
        unpack(args.folder.resolve())
    elif args.cmd == "send-back":
        send_back(args.patterns, args.out)
    else:
        receive(args.folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
