"""Vector search: the ``k`` stored vectors nearest to a query, exactly or approximately.

Every index here has the interface of faiss (Johnson et al. 2019; Douze et al. 2024), so the
chapter can put ours and faiss side by side on the same data::

    index = IVFFlat(d=100, nlist=256, nprobe=8)
    index.train(xb)                       # only the indexes that learn something need it
    index.add(xb)                         # (n, d) float32; ids are 0, 1, ... in order of addition
    D, I = index.search(xq, k=10)         # (nq, k) float32 distances, (nq, k) int64 ids

Two metrics, as in faiss: ``"l2"`` returns *squared* Euclidean distances, smallest first;
``"ip"`` returns inner products, largest first (the cosine when the vectors have unit length).
Where fewer than ``k`` results exist (a small index, a strict filter) the missing ids are
``-1`` and their distances ``+FLT_MAX`` (``l2``) or ``-FLT_MAX`` (``ip``), faiss's convention.

Read it top to bottom, as chapter 12 builds it:

1. :func:`recall_at_k`, :func:`evaluate`, :func:`single_thread`, :func:`read_bandwidth`: how we
   measure an index; :func:`clustered_data` and :func:`minilm_wikipedia`: the data we measure on;
2. :class:`Index`: the checks and the filter shared by every index;
3. :class:`Flat`: exact search as a chunked matrix product and a top-k (CPU or GPU);
4. :class:`KMeans`: Lloyd's algorithm with k-means++ seeding and empty-cluster repair;
5. :class:`IVFFlat`: an inverted file, searching only the ``nprobe`` nearest of ``nlist`` cells;
6. :class:`PQ`: product quantization, ``m`` bytes per vector, asymmetric distance tables;
7. :class:`IVFPQ`: the two together, quantizing each vector's residual from its cell centre;
8. :class:`HNSW`: a hierarchy of proximity graphs searched greedily (NumPy, one query at a time);
9. :class:`Int8` and :class:`Binary`: 8 bits or 1 bit per dimension, with exact re-scoring of a
   short list.

``search(q, k, filter=...)`` restricts results to the ids a predicate allows (filtered search).

Defined in chapter 12.
"""
from __future__ import annotations

import contextlib
import heapq
import math
import time

import numpy as np
import torch

__all__ = [
    "METRICS", "recall_at_k", "clustered_data", "evaluate", "single_thread", "read_bandwidth", "wikipedia_sentences",
    "minilm_wikipedia", "Index", "Flat", "KMeans",
    "IVFFlat", "PQ", "IVFPQ", "HNSW", "Int8", "Binary",
]

METRICS = ("l2", "ip")
FLT_MAX = float(np.finfo(np.float32).max)  # what faiss returns as the distance of a missing result


# --- measuring an index ---------------------------------------------------------------------


def recall_at_k(found_ids, true_ids, k: int = 10) -> float:
    """k-recall@k: the share of the true ``k`` nearest neighbours among the ``k`` ids returned.

    ``found_ids`` and ``true_ids`` are ``(nq, >= k)`` id arrays (their first ``k`` columns are
    used); ``-1`` entries are missing results. A query with fewer than ``k`` true neighbours (a
    strict filter) is scored on the ones it has. Returns the mean over queries, in ``[0, 1]``.

    Defined in chapter 12.
    """
    found, true = np.asarray(found_ids), np.asarray(true_ids)
    if found.ndim != 2 or true.ndim != 2 or found.shape[0] != true.shape[0]:
        raise ValueError(f"found_ids and true_ids must be (nq, k) arrays with the same nq, "
                         f"got shapes {found.shape} and {true.shape}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    if found.shape[1] < k or true.shape[1] < k:
        raise ValueError(f"need at least k={k} columns, got {found.shape[1]} found and {true.shape[1]} true: "
                         "search with a larger k or lower k here")
    found, true = found[:, :k], true[:, :k]
    valid = true >= 0
    hit = (found[:, :, None] == true[:, None, :]).any(axis=1) & valid  # (nq, k): true id j was found
    n_true = valid.sum(axis=1)
    per_query = np.where(n_true > 0, hit.sum(axis=1) / np.maximum(n_true, 1), 1.0)
    return float(per_query.mean())


def clustered_data(n: int, d: int, n_clusters: int = 1000, spread: float = 0.3, seed: int = 0) -> np.ndarray:
    """``n`` points in ``d`` dimensions drawn from a mixture of ``n_clusters`` Gaussians, float32.

    Cluster centres are standard normal; each point is its centre plus Gaussian noise of standard
    deviation ``spread`` per coordinate. Real embeddings are clustered too (topics, languages),
    which is what makes inverted files and graphs work; ``spread`` large gives the isotropic
    worst case. Draw the queries from the same call (same seed) so that they follow the data.

    Defined in chapter 12.
    """
    if n < 1 or d < 1 or n_clusters < 1:
        raise ValueError(f"n, d and n_clusters must be positive, got {n}, {d}, {n_clusters}")
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_clusters, d), dtype=np.float32)
    labels = rng.integers(0, n_clusters, size=n)
    return centres[labels] + spread * rng.standard_normal((n, d), dtype=np.float32)


def evaluate(index, queries, true_ids, k: int = 10, repeat: int = 1) -> dict[str, float]:
    """Recall@k and queries per second of ``index.search(queries, k)``.

    Works for our indexes and for faiss's (same ``search``). ``true_ids`` ``(nq, >= k)`` is the
    exact answer. The time is the best of ``repeat`` runs of the whole batch, so it includes
    every per-query cost; call it inside :func:`single_thread` to compare single cores.
    Returns ``{"recall": ..., "qps": ..., "seconds": ...}``.

    Defined in chapter 12.
    """
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    best = math.inf
    for _ in range(max(1, repeat)):
        t0 = time.perf_counter()
        _, ids = index.search(queries, k)
        best = min(best, time.perf_counter() - t0)
    return {"recall": recall_at_k(ids, true_ids, k), "qps": len(queries) / best, "seconds": best}


@contextlib.contextmanager
def single_thread():
    """Within this block torch, NumPy's BLAS and faiss (if imported) use one thread each.

    Speed comparisons in chapter 12 are one core against one core::

        with index.single_thread():
            print(index.evaluate(hnsw, xq, gt))

    Defined in chapter 12.
    """
    import sys

    from threadpoolctl import threadpool_limits

    faiss = sys.modules.get("faiss")
    torch_threads = torch.get_num_threads()
    faiss_threads = faiss.omp_get_max_threads() if faiss else None
    torch.set_num_threads(1)
    if faiss:
        faiss.omp_set_num_threads(1)
    try:
        with threadpool_limits(1):
            yield
    finally:
        torch.set_num_threads(torch_threads)
        if faiss:
            faiss.omp_set_num_threads(faiss_threads)


def read_bandwidth(device: str | torch.device = "cpu", mbytes: int = 512, repeat: int = 5) -> float:
    """Measured memory read bandwidth of ``device`` in GB/s: summing a large float32 tensor.

    A sum reads every byte once and does one addition per 4 bytes, so its speed is the speed of
    memory. It is the roof that exact search (which reads the whole database per batch of
    queries) cannot beat. Best of ``repeat`` runs.

    Defined in chapter 12.
    """
    device = torch.device(device)
    x = torch.ones(mbytes * (1 << 20) // 4, dtype=torch.float32, device=device)
    best = math.inf
    for _ in range(repeat + 1):  # the first run warms caches and (on a GPU) the kernels
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        x.sum().item()
        best = min(best, time.perf_counter() - t0)
    return x.numel() * 4 / best / 1e9


# --- the chapter's real data set -------------------------------------------------------------


def wikipedia_sentences(min_words: int = 6) -> list[str]:
    """The sentences of the book's Wikipedia sample (chapter 01's ``enwiki_sample``), in order.

    Markup is stripped with :func:`minilib.text.strip_wiki_markup`; paragraphs are cut after
    ``.``, ``!`` or ``?`` followed by a capital or a digit; list bullets and repeated spaces are
    dropped; sentences shorter than ``min_words`` words and repeats are skipped (20,467 remain).

    Defined in chapter 12.
    """
    import re

    from . import data
    from .text import strip_wiki_markup

    out, seen = [], set()
    for _, markup in data.load("enwiki_sample"):
        for paragraph in strip_wiki_markup(markup).split("\n"):
            for s in re.split(r"(?<=[.!?])\s+(?=[A-Z0-9\"])", paragraph):
                s = " ".join(s.strip().lstrip("*#:; ").split())
                if len(s.split()) >= min_words and s not in seen:
                    seen.add(s)
                    out.append(s)
    return out


def minilm_wikipedia(batch_size: int = 64) -> tuple[list[str], np.ndarray]:
    """:func:`wikipedia_sentences` and their all-MiniLM-L6-v2 embeddings ``(n, 384)``, unit length.

    Encoding takes minutes on a CPU (chapter 06's encoder, about 150 sentences/s per core), so
    the embeddings are cached with :func:`minilib.data.cached_derived` and read back afterwards.

    Defined in chapter 12.
    """
    from . import data

    sentences = wikipedia_sentences()

    def build(tmp):
        from .transformer import load_minilm_encoder

        encoder = load_minilm_encoder()
        with open(tmp, "wb") as f:
            np.save(f, encoder.encode(sentences, batch_size=batch_size).astype(np.float32))

    emb = np.load(data.cached_derived(f"minilm-wikipedia-{len(sentences)}-v1.npy", build))
    if len(emb) != len(sentences):
        raise RuntimeError(f"cached embeddings hold {len(emb)} rows for {len(sentences)} sentences: delete "
                           f"{data.cache_dir() / 'derived'}/minilm-wikipedia-* and run again")
    return sentences, emb


# --- the shared part of every index ---------------------------------------------------------


def _as_matrix(x, d: int | None, name: str) -> np.ndarray:
    """``x`` as a C-contiguous float32 ``(n, d)`` NumPy array, or a ``ValueError`` saying what to fix."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    if x.dtype == object or not np.issubdtype(x.dtype, np.number):
        raise TypeError(f"{name} must hold numbers, got dtype {x.dtype}")
    if x.ndim != 2:
        hint = f" (for one vector use {name}[None, :])" if x.ndim == 1 else ""
        raise ValueError(f"{name} must be a matrix (n, d), got shape {x.shape}{hint}")
    if d is not None and x.shape[1] != d:
        raise ValueError(f"{name} has {x.shape[1]} dimensions but the index expects d={d}: "
                         f"pass vectors of shape (n, {d})")
    if x.shape[0] == 0:
        raise ValueError(f"{name} has no rows: pass at least one vector")
    x = np.ascontiguousarray(x, dtype=np.float32)
    bad = ~np.isfinite(x).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise ValueError(f"{name} holds NaN or infinite values in {len(rows)} row(s), first at row {rows[0]}: "
                         "remove or repair them before indexing")
    return x


def _check_k(k) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    return int(k)


def _smallest(keys: np.ndarray, k: int, ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` smallest entries of each row of ``keys`` ``(b, n)``, sorted: ``(keys, ids)``, both ``(b, k)``.

    ``ids`` maps columns to ids (default: the column number). Entries at ``+inf`` are excluded
    ones and come back as id ``-1``; rows with fewer than ``k`` columns are padded the same way.
    """
    b, n = keys.shape
    kk = min(k, n)
    if kk < n:
        cols = np.argpartition(keys, kk - 1, axis=1)[:, :kk]  # the kk best, in no order
    else:
        cols = np.broadcast_to(np.arange(n), (b, n))
    vals = np.take_along_axis(keys, cols, axis=1)
    order = np.argsort(vals, axis=1, kind="stable")
    cols, vals = np.take_along_axis(cols, order, axis=1), np.take_along_axis(vals, order, axis=1)
    out = (cols if ids is None else ids[cols]).astype(np.int64)
    out[~np.isfinite(vals)] = -1
    if kk < k:  # fewer candidates than k: pad like faiss
        vals = np.concatenate([vals, np.full((b, k - kk), np.inf, vals.dtype)], axis=1)
        out = np.concatenate([out, np.full((b, k - kk), -1, np.int64)], axis=1)
    return vals, out


class Index:
    """What every index shares: ``d``, ``metric``, ``ntotal``, input checks, the filter, the output.

    Subclasses implement ``_add(x)`` and ``_search(q, k, allowed) -> (keys, ids)``, where a *key*
    is "smaller is better" in both metrics (the squared distance for ``l2``, minus the inner
    product for ``ip``) and ``allowed`` is ``None`` or a boolean mask over ids.

    Defined in chapter 12.
    """

    def __init__(self, d: int, metric: str = "l2"):
        if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1:
            raise ValueError(f"d must be a positive int (the vectors' dimension), got {d!r}")
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}: use 'l2' (squared Euclidean) or 'ip' (inner product; "
                             "cosine on unit vectors)")
        self.d, self.metric, self.ntotal = int(d), metric, 0

    @property
    def is_trained(self) -> bool:
        """Whether :meth:`add` and :meth:`search` may be called (indexes that learn nothing: always)."""
        return True

    def train(self, x) -> "Index":
        """Learn what the index needs from sample vectors ``x`` ``(n, d)`` (nothing, here)."""
        _as_matrix(x, self.d, "x")
        return self

    def _require_trained(self, what: str) -> None:
        if not self.is_trained:
            raise RuntimeError(f"{type(self).__name__} must be trained before {what}: call index.train(x) "
                               "with a sample of your vectors first")

    def add(self, x) -> "Index":
        """Store vectors ``x`` ``(n, d)``; they get ids ``ntotal .. ntotal + n - 1``."""
        x = _as_matrix(x, self.d, "x")
        self._require_trained("add")
        self._add(x)
        self.ntotal += len(x)
        return self

    def search(self, q, k: int, filter=None) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest stored vectors of each query: ``(distances, ids)``, both ``(nq, k)``.

        ``q`` is ``(nq, d)``. ``filter`` restricts the results to some ids: a boolean mask of
        shape ``(ntotal,)``, or a function called once with the array of all ids ``(ntotal,)``
        that returns such a mask (``lambda ids: year[ids] >= 2020``). Distances are float32,
        ids int64, ``-1`` where fewer than ``k`` results exist.
        """
        q = _as_matrix(q, self.d, "q")
        k = _check_k(k)
        self._require_trained("search")
        if self.ntotal == 0:
            raise ValueError(f"the {type(self).__name__} index is empty: add(x) vectors before searching")
        keys, ids = self._search(q, k, self._allowed(filter))
        return self._distances(keys, ids), ids

    def _allowed(self, filter) -> np.ndarray | None:
        """The filter as a boolean mask over ids ``(ntotal,)``, or ``None`` for "everything"."""
        if filter is None:
            return None
        mask = filter(np.arange(self.ntotal, dtype=np.int64)) if callable(filter) else filter
        if isinstance(mask, torch.Tensor):
            mask = mask.detach().cpu().numpy()
        mask = np.asarray(mask)
        if mask.dtype != bool or mask.shape != (self.ntotal,):
            raise ValueError(f"filter must be a boolean mask of shape ({self.ntotal},) (one entry per stored id), "
                             f"or a function of the id array returning one; got dtype {mask.dtype}, shape {mask.shape}")
        return mask

    def _distances(self, keys: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """Keys ("smaller is better") back to faiss's distances, with its values for missing results."""
        if self.metric == "l2":
            out = np.where(ids >= 0, keys, FLT_MAX)
        else:
            out = np.where(ids >= 0, -keys, -FLT_MAX)
        return out.astype(np.float32)

    def _key(self, q: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Keys between queries ``(b, d)`` and vectors ``(n, d)``: ``(b, n)``, smaller is better."""
        dots = q @ x.T
        if self.metric == "ip":
            return -dots
        # ||q - x||^2 = ||q||^2 - 2 q.x + ||x||^2, clamped: rounding can make it slightly negative.
        return np.maximum((q * q).sum(1)[:, None] - 2 * dots + (x * x).sum(1)[None, :], 0)

    def memory_per_vector(self) -> float:
        """Bytes of index memory per stored vector (codes, ids and links; not the shared tables)."""
        raise NotImplementedError(f"{type(self).__name__} does not report its memory")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(d={self.d}, metric={self.metric!r}, ntotal={self.ntotal})"


# --- exact search ---------------------------------------------------------------------------


class Flat(Index):
    """Exact search: every query against every stored vector, as a matrix product plus a top-k.

    The vectors live on ``device`` (``"cpu"``, ``"cuda"``) as one float32 tensor. Queries are
    processed ``query_batch`` at a time against ``db_chunk`` stored rows at a time, keeping a
    running top-k, so memory stays ``query_batch x db_chunk`` scores whatever the size (default
    256 x 65,536 on a CPU, 64 MB; 1,024 x 262,144 on a GPU, 1 GB).
    Memory: ``4 d`` bytes per vector.

    Defined in chapter 12.
    """

    def __init__(self, d: int, metric: str = "l2", device: str | torch.device = "cpu",
                 query_batch: int | None = None, db_chunk: int | None = None):
        super().__init__(d, metric)
        self.device = torch.device(device)
        gpu = self.device.type != "cpu"
        self.query_batch = int(query_batch or (1024 if gpu else 256))
        self.db_chunk = int(db_chunk or (1 << 18 if gpu else 1 << 16))
        self._parts: list[torch.Tensor] = []    # added blocks, concatenated on the next search
        self._xb = torch.empty(0, d, device=self.device)  # (ntotal, d)
        self._norms = torch.empty(0, device=self.device)  # (ntotal,) squared norms, for l2

    def add(self, x) -> "Flat":
        """Store vectors ``x`` ``(n, d)``; a float32 tensor already on ``device`` is kept as is (not
        copied: a database on the GPU never makes a round trip through host memory)."""
        if isinstance(x, torch.Tensor) and x.device.type == self.device.type and x.dtype == torch.float32:
            if x.dim() != 2 or x.shape[1] != self.d or len(x) == 0:
                raise ValueError(f"x must be a non-empty (n, {self.d}) tensor, got shape {tuple(x.shape)}")
            if not bool(torch.isfinite(x).all()):
                raise ValueError("x holds NaN or infinite values: remove or repair them before indexing")
            self._parts.append(x)
            self.ntotal += len(x)
            return self
        return super().add(x)

    def _add(self, x: np.ndarray) -> None:
        self._parts.append(torch.from_numpy(x).to(self.device))

    @property
    def xb(self) -> torch.Tensor:
        """All stored vectors, ``(ntotal, d)`` on ``device``."""
        if self._parts:
            self._xb = torch.cat([self._xb, *self._parts])
            self._norms = (self._xb * self._xb).sum(1)
            self._parts = []
        return self._xb

    def reconstruct(self, ids) -> np.ndarray:
        """The stored vectors of ``ids`` ``(n,)``: ``(n, d)`` float32."""
        ids = torch.as_tensor(np.asarray(ids, dtype=np.int64), device=self.device)
        return self.xb[ids].cpu().numpy()

    def _search(self, q, k, allowed):
        xb = self.xb
        n = xb.shape[0]
        mask = None if allowed is None else torch.from_numpy(allowed).to(self.device)
        all_keys, all_ids = [], []
        for qs in range(0, len(q), self.query_batch):
            Q = torch.from_numpy(q[qs:qs + self.query_batch]).to(self.device)  # (b, d)
            qn = (Q * Q).sum(1, keepdim=True)
            best_k = torch.empty(len(Q), 0, device=self.device)
            best_i = torch.empty(len(Q), 0, dtype=torch.int64, device=self.device)
            for start in range(0, n, self.db_chunk):
                X = xb[start:start + self.db_chunk]                     # (c, d)
                S = Q @ X.T                                            # (b, c): the matrix product
                if self.metric == "ip":
                    key = -S
                else:
                    key = (qn - 2 * S + self._norms[start:start + len(X)]).clamp_min_(0)
                if mask is not None:
                    key = key.masked_fill(~mask[start:start + len(X)], math.inf)
                kk = min(k, len(X))
                v, i = torch.topk(key, kk, dim=1, largest=False, sorted=True)
                # Merge with the best so far: the top-k of a union is in the union of top-ks.
                best_k = torch.cat([best_k, v], dim=1)
                best_i = torch.cat([best_i, i + start], dim=1)
                if best_k.shape[1] > k:
                    best_k, order = torch.topk(best_k, k, dim=1, largest=False, sorted=True)
                    best_i = torch.gather(best_i, 1, order)
            all_keys.append(best_k.cpu())
            all_ids.append(best_i.cpu())
        keys = torch.cat(all_keys).numpy().astype(np.float32)
        ids = torch.cat(all_ids).numpy().astype(np.int64)
        ids[~np.isfinite(keys)] = -1
        if keys.shape[1] < k:  # fewer stored vectors than k
            pad = k - keys.shape[1]
            keys = np.concatenate([keys, np.full((len(keys), pad), np.inf, np.float32)], axis=1)
            ids = np.concatenate([ids, np.full((len(ids), pad), -1, np.int64)], axis=1)
        return keys, ids

    def memory_per_vector(self) -> float:
        """Bytes per stored vector: ``4 d``, the float32 vector."""
        return 4.0 * self.d


# --- k-means ---------------------------------------------------------------------------------


def _nearest_centroid(X: torch.Tensor, C: torch.Tensor, chunk: int = 1 << 14) -> tuple[torch.Tensor, torch.Tensor]:
    """Squared distance to, and index of, the nearest row of ``C`` for each row of ``X``: ``(n,)``, ``(n,)``."""
    cn = (C * C).sum(1)
    dists, labels = [], []
    for s in range(0, len(X), chunk):
        x = X[s:s + chunk]
        D = (x * x).sum(1, keepdim=True) - 2 * x @ C.T + cn  # (chunk, k)
        v, i = D.min(dim=1)
        dists.append(v.clamp_min(0))
        labels.append(i)
    return torch.cat(dists), torch.cat(labels)


class KMeans:
    """k-means by Lloyd's algorithm: ``niter`` rounds of assign-to-nearest, move-to-mean.

    ``init="k-means++"`` (Arthur & Vassilvitskii 2007) draws each new centre with probability
    proportional to its squared distance from the centres so far; ``"random"`` picks ``k``
    distinct points (faiss's default). As faiss does, at most ``max_points_per_centroid * k``
    points (a seeded sample) are used. A centre left with no points is moved onto the point
    farthest from its own centre, so no cell stays empty. After :meth:`fit`: ``centroids``
    ``(k, d)`` float32 and ``objective`` (sum of squared distances, one value per round).

    Defined in chapter 12.
    """

    def __init__(self, k: int, niter: int = 20, init: str = "k-means++", seed: int = 0,
                 max_points_per_centroid: int = 256, device: str | torch.device = "cpu"):
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k must be a positive int (the number of centroids), got {k!r}")
        if init not in ("k-means++", "random"):
            raise ValueError(f"unknown init {init!r}: use 'k-means++' or 'random'")
        self.k, self.niter, self.init, self.seed = int(k), int(niter), init, seed
        self.max_points_per_centroid = max_points_per_centroid
        self.device = torch.device(device)
        self.centroids: np.ndarray | None = None
        self.objective: list[float] = []

    def fit(self, x) -> "KMeans":
        """Learn ``k`` centroids from ``x`` ``(n, d)``, ``n >= k``. Returns ``self``."""
        x = _as_matrix(x, None, "x")
        n = len(x)
        if n < self.k:
            raise ValueError(f"k-means with k={self.k} needs at least {self.k} points, got {n}: "
                             "pass more training vectors or lower k (nlist, 2**nbits)")
        rng = np.random.default_rng(self.seed)
        if self.max_points_per_centroid and n > self.k * self.max_points_per_centroid:
            x = x[np.sort(rng.choice(n, self.k * self.max_points_per_centroid, replace=False))]
        X = torch.from_numpy(x).to(self.device)
        C = self._init(X, rng)
        self.objective = []
        for _ in range(self.niter):
            dist, labels = _nearest_centroid(X, C)
            self.objective.append(float(dist.double().sum()))
            counts = torch.bincount(labels, minlength=self.k)
            sums = torch.zeros_like(C).index_add_(0, labels, X)
            C = sums / counts.clamp_min(1)[:, None].to(X.dtype)
            empty = torch.nonzero(counts == 0).flatten()
            if len(empty):
                # Re-seed each empty cell with one of the worst-served points: it splits a big cell.
                far = torch.argsort(dist, descending=True)[:len(empty)]
                C[empty] = X[far]
        self.centroids = C.cpu().numpy().astype(np.float32)
        return self

    def _init(self, X: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        n = len(X)
        if self.init == "random":
            return X[torch.from_numpy(np.sort(rng.choice(n, self.k, replace=False))).to(X.device)].clone()
        C = torch.empty(self.k, X.shape[1], dtype=X.dtype, device=X.device)
        C[0] = X[int(rng.integers(n))]
        d2 = ((X - C[0]) ** 2).sum(1).double()  # squared distance to the nearest centre so far
        for j in range(1, self.k):
            p = (d2 / d2.sum()).cpu().numpy() if float(d2.sum()) > 0 else np.full(n, 1.0 / n)
            C[j] = X[int(rng.choice(n, p=p / p.sum()))]
            d2 = torch.minimum(d2, ((X - C[j]) ** 2).sum(1).double())
        return C

    def assign(self, x) -> tuple[np.ndarray, np.ndarray]:
        """Squared distance to and index of the nearest centroid for each row of ``x``: ``(n,)``, ``(n,)``."""
        if self.centroids is None:
            raise RuntimeError("KMeans is not fitted: call fit(x) first")
        x = _as_matrix(x, self.centroids.shape[1], "x")
        dist, labels = _nearest_centroid(torch.from_numpy(x), torch.from_numpy(self.centroids))
        return dist.numpy(), labels.numpy().astype(np.int64)


# --- inverted files ----------------------------------------------------------------------------


class _IVF(Index):
    """The coarse quantizer shared by :class:`IVFFlat` and :class:`IVFPQ`.

    ``nlist`` centroids cut space into Voronoi cells; each stored vector goes to the list of its
    nearest centroid; a query visits the ``nprobe`` lists whose centroids are nearest to it. The
    lists are kept as one array sorted by list (``_order``) with ``_offsets`` marking where each
    list starts: list ``l`` is ``_order[_offsets[l]:_offsets[l + 1]]``.
    """

    def __init__(self, d: int, nlist: int, nprobe: int = 1, metric: str = "l2", niter: int = 20, seed: int = 0,
                 device: str | torch.device = "cpu"):
        super().__init__(d, metric)
        if isinstance(nlist, bool) or not isinstance(nlist, (int, np.integer)) or nlist < 1:
            raise ValueError(f"nlist must be a positive int (the number of cells), got {nlist!r}")
        self.nlist, self.nprobe, self.niter, self.seed = int(nlist), nprobe, niter, seed
        self.device = torch.device(device)  # where k-means runs (a GPU makes large nlist cheap)
        self.centroids: np.ndarray | None = None    # (nlist, d)
        self._quantizer: Flat | None = None         # exact search over the centroids
        self._given_centroids = False               # set_centroids was called: train keeps them
        self._lists = np.zeros(0, np.int64)         # (ntotal,) list of each stored vector
        self._order = self._offsets = None

    @property
    def is_trained(self) -> bool:
        return self.centroids is not None

    def train(self, x) -> "_IVF":
        """k-means on ``x`` ``(n, d)`` for the ``nlist`` centroids, then (IVFPQ) the codebooks of the residuals.
        After :meth:`set_centroids` the given centroids stay and only the codebooks are learnt, as faiss
        does with a quantizer that is already trained."""
        x = _as_matrix(x, self.d, "x")
        if not self._given_centroids:
            km = KMeans(self.nlist, niter=self.niter, seed=self.seed, device=self.device).fit(x)
            self._use_centroids(km.centroids)
        self._train_codes(x)
        return self

    def _train_codes(self, x: np.ndarray) -> None:
        pass

    def set_centroids(self, centroids) -> "_IVF":
        """Use given centroids ``(nlist, d)`` (from faiss, or another k-means) instead of k-means: a later
        :meth:`train` keeps them and learns only the rest (IVFPQ's codebooks). Returns ``self``."""
        self._use_centroids(centroids)
        self._given_centroids = True
        return self

    def _use_centroids(self, centroids) -> None:
        c = _as_matrix(centroids, self.d, "centroids")
        if len(c) != self.nlist:
            raise ValueError(f"expected {self.nlist} centroids (nlist), got {len(c)}")
        if self.ntotal:
            raise RuntimeError("the index already holds vectors assigned to the old centroids: set centroids first")
        self.centroids = c
        self._quantizer = Flat(self.d, self.metric).add(c)

    def quantize(self, x, nprobe: int = 1) -> np.ndarray:
        """The ``nprobe`` nearest centroids of each row of ``x`` ``(n, d)``, nearest first: ``(n, nprobe)``."""
        if self.centroids is None:
            raise RuntimeError(f"{type(self).__name__} must be trained before quantize: call index.train(x) "
                               "or index.set_centroids(c) first")
        return self._quantizer.search(x, nprobe)[1]

    def _store_lists(self, lists: np.ndarray) -> None:
        self._lists = np.concatenate([self._lists, lists])
        self._order = None  # rebuilt on the next search

    def _index_lists(self) -> None:
        if self._order is None:
            self._order = np.argsort(self._lists, kind="stable")  # ids grouped by list, in id order
            self._offsets = np.concatenate([[0], np.cumsum(np.bincount(self._lists, minlength=self.nlist))])

    def list_sizes(self) -> np.ndarray:
        """Number of stored vectors in each list: ``(nlist,)``."""
        return np.bincount(self._lists, minlength=self.nlist)

    def _probes(self, q: np.ndarray) -> np.ndarray:
        if isinstance(self.nprobe, bool) or not isinstance(self.nprobe, (int, np.integer)) or \
                not 1 <= self.nprobe <= self.nlist:
            raise ValueError(f"nprobe must be an int in 1..nlist={self.nlist}, got {self.nprobe!r}")
        return self.quantize(q, int(self.nprobe))

    def candidates(self, q) -> list[np.ndarray]:
        """For each query of ``q`` ``(nq, d)``, the sorted ids stored in the lists it probes."""
        q = _as_matrix(q, self.d, "q")
        self._require_trained("candidates")
        self._index_lists()
        return [np.sort(np.concatenate([self._order[self._offsets[l]:self._offsets[l + 1]] for l in probes]))
                for probes in self._probes(q)]


class IVFFlat(_IVF):
    """Inverted file with full vectors: exact distances, but only inside the ``nprobe`` nearest cells.

    ``train(x)`` runs k-means for the ``nlist`` centroids on ``device`` (or call
    :meth:`set_centroids`). ``nprobe`` may be changed between searches. Memory: ``4 d`` bytes plus
    an 8-byte id per vector.

    Defined in chapter 12.
    """

    def __init__(self, d: int, nlist: int, nprobe: int = 1, metric: str = "l2", niter: int = 20, seed: int = 0,
                 device: str | torch.device = "cpu"):
        super().__init__(d, nlist, nprobe, metric, niter, seed, device)
        self._x = np.zeros((0, d), np.float32)  # (ntotal, d), in id order

    def _add(self, x):
        self._store_lists(self.quantize(x, 1)[:, 0])
        self._x = np.concatenate([self._x, x])

    def _search(self, q, k, allowed):
        self._index_lists()
        keys = np.empty((len(q), k), np.float32)
        ids = np.empty((len(q), k), np.int64)
        for i, probes in enumerate(self._probes(q)):
            cand = np.concatenate([self._order[self._offsets[l]:self._offsets[l + 1]] for l in probes])
            key = self._key(q[i:i + 1], self._x[cand])  # (1, n_candidates)
            if allowed is not None:
                key[:, ~allowed[cand]] = np.inf
            keys[i], ids[i] = (a[0] for a in _smallest(key, k, cand))
        return keys, ids

    def memory_per_vector(self) -> float:
        """Bytes per stored vector: ``4 d`` of float32 vector plus an 8-byte id (the centroids not counted)."""
        return 4.0 * self.d + 8


# --- product quantization ----------------------------------------------------------------------


class PQ(Index):
    """Product quantization (Jégou et al. 2011): ``m`` sub-vectors, each replaced by one of
    ``2**nbits`` centroids of its own sub-space, so a vector costs ``m * nbits / 8`` bytes.

    Search is *asymmetric* (ADC): the query stays exact; per query we fill a table of the
    ``m x 2**nbits`` distances from each query sub-vector to each sub-centroid, and the distance
    to a stored vector is the sum of ``m`` table entries picked by its codes. ``d`` must be a
    multiple of ``m``; ``nbits <= 8``. Memory is counted packed, as faiss stores it; this
    implementation keeps each code in its own uint8, so below 8 bits it holds ``m`` bytes.

    Defined in chapter 12.
    """

    def __init__(self, d: int, m: int, nbits: int = 8, metric: str = "l2", niter: int = 25, seed: int = 0,
                 init: str = "k-means++"):
        super().__init__(d, metric)
        if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or m < 1 or d % m:
            divisors = [j for j in range(1, d + 1) if d % j == 0]
            raise ValueError(f"m={m!r} must divide d={d}: choose m among {divisors}")
        if not isinstance(nbits, (int, np.integer)) or not 1 <= nbits <= 8:
            raise ValueError(f"nbits must be in 1..8 (codes are stored in one byte), got {nbits!r}")
        self.m, self.nbits, self.ksub, self.dsub = int(m), int(nbits), 1 << nbits, d // m
        self.niter, self.seed, self.init = niter, seed, init
        self.codebooks: np.ndarray | None = None  # (m, ksub, dsub)
        self.codes = np.zeros((0, self.m), np.uint8)

    @property
    def is_trained(self) -> bool:
        """Whether :meth:`train` has learned the codebooks."""
        return self.codebooks is not None

    def train(self, x) -> "PQ":
        """One k-means with ``2**nbits`` centroids per sub-space of ``x`` ``(n, d)``."""
        x = _as_matrix(x, self.d, "x")
        self.codebooks = np.stack([
            KMeans(self.ksub, niter=self.niter, init=self.init, seed=self.seed + j).fit(self._sub(x, j)).centroids
            for j in range(self.m)])
        return self

    def _sub(self, x: np.ndarray, j: int) -> np.ndarray:
        return x[:, j * self.dsub:(j + 1) * self.dsub]

    def encode(self, x) -> np.ndarray:
        """Codes of ``x`` ``(n, d)``: ``(n, m)`` uint8, the nearest sub-centroid in each sub-space."""
        x = _as_matrix(x, self.d, "x")
        self._require_trained("encode")
        codes = np.empty((len(x), self.m), np.uint8)
        for j in range(self.m):
            _, labels = _nearest_centroid(torch.from_numpy(self._sub(x, j)), torch.from_numpy(self.codebooks[j]))
            codes[:, j] = labels.numpy()
        return codes

    def decode(self, codes) -> np.ndarray:
        """Reconstructions ``(n, d)`` of codes ``(n, m)``: the chosen sub-centroids side by side."""
        codes = np.asarray(codes)
        return np.concatenate([self.codebooks[j][codes[:, j]] for j in range(self.m)], axis=1)

    def adc_table(self, q: np.ndarray) -> np.ndarray:
        """The lookup table of queries ``q`` ``(b, d)``: ``(b, m, ksub)`` keys, smaller is better.

        ``l2``: ``||q_j - c_jk||^2``; ``ip``: ``-q_j . c_jk``. Summing one entry per sub-space
        gives the key of a stored vector (eq. ``eq-12-adc`` of the chapter).
        """
        qs = q.reshape(len(q), self.m, self.dsub).transpose(1, 0, 2)    # (m, b, dsub)
        dots = (qs @ self.codebooks.transpose(0, 2, 1)).transpose(1, 0, 2)  # (b, m, ksub): m matrix products
        if self.metric == "ip":
            return -dots
        # ||q_j - c_jk||^2 = ||q_j||^2 - 2 q_j.c_jk + ||c_jk||^2, as for exact search.
        cn = (self.codebooks ** 2).sum(-1)                                 # (m, ksub)
        return np.maximum((qs ** 2).sum(-1).T[:, :, None] - 2 * dots + cn[None], 0)

    def _add(self, x):
        self.codes = np.concatenate([self.codes, self.encode(x)])

    def _adc(self, table: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """Keys ``(b, n)`` of codes ``(n, m)`` from tables ``(b, m, ksub)``: ``m`` look-ups and a sum."""
        key = np.zeros((len(table), len(codes)), np.float32)
        for j in range(self.m):
            key += table[:, j, codes[:, j]]
        return key

    def _search(self, q, k, allowed, batch: int = 64):
        keys, ids = [], []
        for s in range(0, len(q), batch):
            key = self._adc(self.adc_table(q[s:s + batch]), self.codes)
            if allowed is not None:
                key[:, ~allowed] = np.inf
            kb, ib = _smallest(key, k)
            keys.append(kb)
            ids.append(ib)
        return np.concatenate(keys), np.concatenate(ids)

    def memory_per_vector(self) -> float:
        """Bytes of code per stored vector, packed as faiss stores them: ``m * nbits / 8`` (codebooks not counted)."""
        return self.m * self.nbits / 8


class IVFPQ(_IVF):
    """An inverted file whose lists hold PQ codes of the *residuals* ``x - c`` (c: the cell centre).

    Residuals are smaller and more alike across cells than the vectors, so the same ``m`` bytes
    quantize them more finely. The key of a stored vector in list ``l`` is, for ``l2``,
    ``||(q - c_l) - r||^2`` by an ADC table of ``q - c_l``; for ``ip``, ``q.c_l + q.r``.
    Memory: ``m * nbits / 8`` bytes of code and an 8-byte id per vector.

    Defined in chapter 12.
    """

    def __init__(self, d: int, nlist: int, m: int, nbits: int = 8, nprobe: int = 1, metric: str = "l2",
                 niter: int = 20, seed: int = 0, device: str | torch.device = "cpu"):
        super().__init__(d, nlist, nprobe, metric, niter, seed, device)
        self.pq = PQ(d, m, nbits, metric="l2" if metric == "l2" else "ip", seed=seed)
        self._codes = np.zeros((0, m), np.uint8)  # (ntotal, m), in id order

    @property
    def is_trained(self) -> bool:
        """Whether :meth:`train` has learned both the centroids and the codebooks of the residuals."""
        return self.centroids is not None and self.pq.is_trained

    def _train_codes(self, x):
        lists = self.quantize(x, 1)[:, 0]
        self.pq.train(x - self.centroids[lists])

    def _add(self, x):
        lists = self.quantize(x, 1)[:, 0]
        self._codes = np.concatenate([self._codes, self.pq.encode(x - self.centroids[lists])])
        self._store_lists(lists)

    def _search(self, q, k, allowed):
        self._index_lists()
        keys = np.empty((len(q), k), np.float32)
        ids = np.empty((len(q), k), np.int64)
        m = np.arange(self.pq.m)
        for i, probes in enumerate(self._probes(q)):
            sizes = self._offsets[probes + 1] - self._offsets[probes]
            cand = np.concatenate([self._order[self._offsets[l]:self._offsets[l + 1]] for l in probes])
            which = np.repeat(np.arange(len(probes)), sizes)          # (n_cand,): probe of each candidate
            codes = self._codes[cand]                                 # (n_cand, m)
            if self.metric == "l2":
                # One ADC table per probed cell, for the query's residual q - c_l: (nprobe, m, ksub).
                tables = self.pq.adc_table(q[i] - self.centroids[probes])
                key = tables[which[:, None], m[None, :], codes].sum(1)
            else:
                # q.(c_l + r) = q.c_l + q.r: one table serves every cell.
                table = self.pq.adc_table(q[i:i + 1])[0]                # (m, ksub), minus q_j . r_jk
                key = table[m[None, :], codes].sum(1) - (self.centroids[probes] @ q[i])[which]
            key = key[None].astype(np.float32)
            if allowed is not None:
                key[:, ~allowed[cand]] = np.inf
            keys[i], ids[i] = (a[0] for a in _smallest(key, k, cand))
        return keys, ids

    def memory_per_vector(self) -> float:
        """Bytes per stored vector: the packed PQ code (``m * nbits / 8``, as faiss) plus an 8-byte id."""
        return self.pq.memory_per_vector() + 8


# --- HNSW ------------------------------------------------------------------------------------------


class HNSW(Index):
    """Hierarchical navigable small-world graphs (Malkov & Yashunin 2018), in NumPy.

    Each vector gets a level ``floor(-ln(U) * mL)``, ``mL = 1 / ln(M)``, and lives in the graphs
    of levels ``0..level``; level 0 holds everyone with up to ``2 M`` neighbours, higher levels
    hold exponentially fewer nodes with up to ``M``. A search descends greedily from the top
    entry point to level 1, then runs a beam search of width ``ef_search`` on level 0.
    Insertion searches the same way with ``ef_construction`` and links the new node to the
    candidates kept by the neighbour-selection heuristic; like faiss, a neighbour list is pruned
    by the heuristic only when it would overflow, and the vectors of one :meth:`add` call are
    inserted from the highest level down (shuffled within a level), so the upper levels that every
    later search walks through exist from the start. ``progress=True`` shows a progress bar. Distances are computed for all new neighbours
    of a node at once (one NumPy call); the rest is Python, hence slow: this is the readable
    version, faiss is the fast one.

    Memory: ``4 d`` bytes of vector plus 4-byte links (``2 M`` slots at level 0, ``M`` per upper level).

    Defined in chapter 12.
    """

    def __init__(self, d: int, M: int = 32, ef_construction: int = 40, ef_search: int = 16,
                 metric: str = "l2", seed: int = 0, progress: bool = False):
        super().__init__(d, metric)
        self.progress = progress
        if isinstance(M, bool) or not isinstance(M, (int, np.integer)) or M < 2:
            raise ValueError(f"M must be an int >= 2 (neighbours per node), got {M!r}")
        self.M, self.M0 = int(M), 2 * int(M)
        self.mL = 1 / math.log(M)
        self.ef_construction, self.ef_search = int(ef_construction), int(ef_search)
        self.rng = np.random.default_rng(seed)
        cap = 1024
        self._x = np.zeros((cap, d), np.float32)        # vectors, grown by doubling
        self._sq = np.zeros(cap, np.float32)            # their squared norms
        self.levels = np.zeros(cap, np.int64)           # level of each node
        self._nbr0 = np.full((cap, self.M0), -1, np.int32)  # level-0 neighbours
        self._deg0 = np.zeros(cap, np.int64)            # how many of those slots are used
        self._upper: list[dict[int, np.ndarray]] = []   # _upper[l - 1][node]: neighbours on level l
        self._seen = np.zeros(cap, np.int64)            # "visited" marks, one stamp per search
        self._stamp = 0
        self.entry, self.max_level = -1, -1
        self.n_distances = 0                            # distance computations so far (a cost measure)

    # storage ----------------------------------------------------------------------------------

    def _grow(self, n: int) -> None:
        cap = len(self._x)
        if n <= cap:
            return
        new = max(n, 2 * cap)
        pad = lambda a, fill: np.concatenate([a, np.full((new - cap, *a.shape[1:]), fill, a.dtype)])
        self._x, self._sq, self.levels = pad(self._x, 0), pad(self._sq, 0), pad(self.levels, 0)
        self._nbr0, self._deg0, self._seen = pad(self._nbr0, -1), pad(self._deg0, 0), pad(self._seen, 0)

    def neighbours(self, node: int, level: int) -> np.ndarray:
        """The neighbour ids of ``node`` on ``level``."""
        if level == 0:
            return self._nbr0[node, :self._deg0[node]]
        return self._upper[level - 1].get(node, np.zeros(0, np.int32))

    def _set_neighbours(self, node: int, level: int, nbrs) -> None:
        nbrs = np.asarray(nbrs, np.int32)
        if level == 0:
            self._nbr0[node, :len(nbrs)] = nbrs
            self._nbr0[node, len(nbrs):] = -1
            self._deg0[node] = len(nbrs)
        else:
            self._upper[level - 1][node] = nbrs

    # distances --------------------------------------------------------------------------------

    def _dist(self, q: np.ndarray, qsq: float, ids: np.ndarray) -> np.ndarray:
        """Keys from query ``q`` ``(d,)`` to nodes ``ids`` ``(n,)``: one NumPy call for a whole set."""
        self.n_distances += len(ids)
        dots = self._x[ids] @ q
        return -dots if self.metric == "ip" else np.maximum(qsq - 2 * dots + self._sq[ids], 0)

    def _pair_keys(self, ids: np.ndarray) -> np.ndarray:
        """Keys between all pairs of nodes ``ids``: ``(n, n)``."""
        X = self._x[ids]
        G = X @ X.T
        return -G if self.metric == "ip" else self._sq[ids][:, None] - 2 * G + self._sq[ids][None, :]

    # the two searches of the paper ------------------------------------------------------------

    def _greedy(self, q, qsq, node: int, key: float, level: int) -> tuple[int, float]:
        """Move to the nearest neighbour while that gets closer (the upper levels: a beam of 1)."""
        while True:
            nbrs = self.neighbours(node, level)
            if len(nbrs) == 0:
                return node, key
            keys = self._dist(q, qsq, nbrs)
            j = int(np.argmin(keys))
            if keys[j] >= key:
                return node, key
            node, key = int(nbrs[j]), float(keys[j])

    def _search_layer(self, q, qsq, entries: list[tuple[float, int]], ef: int, level: int,
                      allowed: np.ndarray | None = None) -> list[tuple[float, int]]:
        """Beam search on one level: the ``ef`` nearest nodes found, as sorted ``(key, id)`` pairs.

        ``candidates`` is a min-heap of nodes to expand; ``best`` a max-heap (negated keys) of the
        ``ef`` nearest *allowed* nodes so far. We stop when the nearest unexpanded candidate is
        farther than the worst of ``best``. Nodes the filter forbids are still walked through
        (they connect the graph) but never enter ``best``.
        """
        self._stamp += 1
        stamp = self._stamp
        candidates = list(entries)
        heapq.heapify(candidates)
        best = [(-key, node) for key, node in entries if allowed is None or allowed[node]]
        heapq.heapify(best)
        while len(best) > ef:
            heapq.heappop(best)
        for _, node in entries:
            self._seen[node] = stamp
        while candidates:
            key, node = heapq.heappop(candidates)
            if len(best) >= ef and key > -best[0][0]:
                break  # every remaining candidate is farther than our worst result
            nbrs = self.neighbours(node, level)
            nbrs = nbrs[self._seen[nbrs] != stamp]
            if len(nbrs) == 0:
                continue
            self._seen[nbrs] = stamp
            keys = self._dist(q, qsq, nbrs)
            worst = -best[0][0] if len(best) >= ef else math.inf
            if worst < math.inf:  # drop at once (vectorised) what cannot enter the results
                close = keys < worst
                keys, nbrs = keys[close], nbrs[close]
            for key_j, j in zip(keys.tolist(), nbrs.tolist()):
                if key_j < worst:
                    heapq.heappush(candidates, (key_j, j))
                    if allowed is None or allowed[j]:
                        heapq.heappush(best, (-key_j, j))
                        if len(best) > ef:
                            heapq.heappop(best)
                        worst = -best[0][0] if len(best) >= ef else math.inf
        return sorted((-negkey, node) for negkey, node in best)

    def _select(self, ids: np.ndarray, keys: np.ndarray, size: int) -> np.ndarray:
        """The neighbour-selection heuristic (the paper's Algorithm 4, faiss's ``shrink_neighbor_list``).

        Walk the candidates from nearest to farthest and keep one only if it is closer to the base
        node than to every neighbour kept so far: links then point in different directions
        instead of all into the same nearby cluster. Lists shorter than ``size`` are kept whole.
        """
        if len(ids) < size:
            return ids
        order = np.argsort(keys, kind="stable")
        ids, keys = ids[order], keys[order]
        # closer[j, i]: candidate i is closer to candidate j than the base node is. Keeping i
        # therefore rules out every j with closer[j, i]: we carry those in ``blocked``.
        closer = self._pair_keys(ids) < keys[:, None]
        blocked = np.zeros(len(ids), bool)
        kept: list[int] = []
        for j in range(len(ids)):
            if blocked[j]:
                continue
            kept.append(j)
            if len(kept) >= size:
                break
            blocked |= closer[:, j]
        return ids[kept]

    # building ---------------------------------------------------------------------------------

    def _add(self, x):
        n0 = self.ntotal
        self._grow(n0 + len(x))
        self._x[n0:n0 + len(x)] = x
        self._sq[n0:n0 + len(x)] = (x * x).sum(1)
        # Level l with probability (1 - 1/M) M^-l: floor(-ln U * mL), U uniform in (0, 1].
        new_levels = np.floor(-np.log(1.0 - self.rng.random(len(x))) * self.mL).astype(np.int64)
        self.levels[n0:n0 + len(x)] = new_levels
        # Highest level first, random order within a level (faiss's order): on clustered data the
        # graph built this way finds about 0.02 more neighbours at small ef than arrival order.
        order = n0 + np.lexsort((self.rng.random(len(x)), -new_levels))
        if self.progress:
            from tqdm.auto import tqdm

            order = tqdm(order, desc="HNSW insert", leave=False)
        for i in order:
            self._insert(int(i))

    def _insert(self, i: int) -> None:
        level = int(self.levels[i])
        while len(self._upper) < level:
            self._upper.append({})
        if self.entry < 0:  # the first node: nothing to link to
            self.entry, self.max_level = i, level
            return
        q, qsq = self._x[i], float(self._sq[i])
        node = self.entry
        key = float(self._dist(q, qsq, np.array([node]))[0])
        for lev in range(self.max_level, level, -1):
            node, key = self._greedy(q, qsq, node, key, lev)
        entries = [(key, node)]
        for lev in range(min(level, self.max_level), -1, -1):
            found = self._search_layer(q, qsq, entries, self.ef_construction, lev)
            cap = self.M0 if lev == 0 else self.M
            ids = np.array([n for _, n in found], np.int64)
            mine = self._select(ids, np.array([k for k, _ in found]), cap)
            self._set_neighbours(i, lev, mine)
            for j in mine.tolist():
                self._link(j, i, lev, cap)
            entries = found  # the paper's choice: this level's results seed the next one
        if level > self.max_level:
            self.entry, self.max_level = i, level

    def _link(self, src: int, dst: int, level: int, cap: int) -> None:
        """Add the edge ``src -> dst``; if ``src``'s list overflows, prune it with the heuristic."""
        nbrs = self.neighbours(src, level)
        if len(nbrs) < cap:
            if level == 0:  # room left: write into the next free slot
                self._nbr0[src, self._deg0[src]] = dst
                self._deg0[src] += 1
            else:
                self._upper[level - 1][src] = np.append(nbrs, dst).astype(np.int32)
            return
        ids = np.append(nbrs, dst).astype(np.int64)
        keys = self._dist(self._x[src], float(self._sq[src]), ids)
        self._set_neighbours(src, level, self._select(ids, keys, cap))

    # searching --------------------------------------------------------------------------------

    def _search(self, q, k, allowed):
        ef = max(self.ef_search, k)
        keys = np.full((len(q), k), np.inf, np.float32)
        ids = np.full((len(q), k), -1, np.int64)
        for r in range(len(q)):
            qr, qsq = q[r], float(q[r] @ q[r])
            node = self.entry
            key = float(self._dist(qr, qsq, np.array([node]))[0])
            for lev in range(self.max_level, 0, -1):
                node, key = self._greedy(qr, qsq, node, key, lev)
            found = self._search_layer(qr, qsq, [(key, node)], ef, 0, allowed)[:k]
            keys[r, :len(found)] = [f[0] for f in found]
            ids[r, :len(found)] = [f[1] for f in found]
        return keys, ids

    def memory_per_vector(self) -> float:
        """Bytes per stored vector: ``4 d`` of vector plus 4 per link slot, used or not, averaged over the nodes."""
        n = max(self.ntotal, 1)
        links = self.M0 * self.ntotal + self.M * int(self.levels[:self.ntotal].sum())  # slots, used or not
        return 4.0 * self.d + 4.0 * links / n


# --- scalar and binary quantization with re-scoring ------------------------------------------------


class _Rescored(Index):
    """Approximate keys from compact codes, then (optionally) exact keys for a short list.

    With ``rescore=r`` the ``r * k`` best candidates by the approximate key are re-ranked with the
    float vectors, which are kept for that (in a real system on disk, read only for the short
    list); without it the approximate keys are returned.
    """

    def __init__(self, d: int, metric: str = "l2", rescore: int | None = None):
        super().__init__(d, metric)
        if rescore is not None and (isinstance(rescore, bool) or not isinstance(rescore, (int, np.integer))
                                    or rescore < 1):
            raise ValueError(f"rescore must be None or a positive int (candidates = rescore * k), got {rescore!r}")
        self.rescore = rescore
        self._floats = np.zeros((0, d), np.float32)  # the originals, for re-scoring only

    def _add(self, x):
        self._store_codes(x)
        if self.rescore:
            self._floats = np.concatenate([self._floats, x])

    def _search(self, q, k, allowed, batch: int = 256):
        keys, ids = [], []
        for s in range(0, len(q), batch):
            qb = q[s:s + batch]
            approx = self._approx_keys(qb)                      # (b, ntotal)
            if allowed is not None:
                approx[:, ~allowed] = np.inf
            if not self.rescore:
                kb, ib = _smallest(approx, k)
            else:
                _, short = _smallest(approx, self.rescore * k)  # (b, r k) candidate ids
                exact = np.stack([self._key(qb[i:i + 1], self._floats[np.maximum(short[i], 0)])[0]
                                  for i in range(len(qb))]).astype(np.float32)
                exact[short < 0] = np.inf
                kb, pos = _smallest(exact, k)
                ib = np.where(pos >= 0, np.take_along_axis(short, np.maximum(pos, 0), axis=1), -1)
            keys.append(kb)
            ids.append(ib)
        return np.concatenate(keys), np.concatenate(ids)

    def memory_per_vector(self, with_rescore: bool = False) -> float:
        """Bytes of code per vector; ``with_rescore=True`` adds the ``4 d`` float copy."""
        return self._code_bytes() + (4.0 * self.d if with_rescore and self.rescore else 0.0)


class Int8(_Rescored):
    """8-bit scalar quantization (faiss's ``SQ8``): each dimension mapped to 256 levels between its
    minimum and maximum over the training vectors. ``d`` bytes per vector, 4x less than float32.

    The approximate key decodes the codes in chunks (``x_hat = vmin + code * step``) and compares
    the query with ``x_hat`` exactly; ``rescore`` re-ranks ``rescore * k`` candidates exactly.

    Defined in chapter 12.
    """

    def __init__(self, d: int, metric: str = "l2", rescore: int | None = None, chunk: int = 1 << 14):
        super().__init__(d, metric, rescore)
        self.chunk = chunk
        self.vmin = self.step = None  # (d,) each
        self.codes = np.zeros((0, d), np.uint8)

    @property
    def is_trained(self) -> bool:
        """Whether :meth:`train` has set the per-dimension ranges."""
        return self.vmin is not None

    def train(self, x) -> "Int8":
        """Per-dimension range of ``x`` ``(n, d)``: 256 levels from its minimum to its maximum."""
        x = _as_matrix(x, self.d, "x")
        self.vmin = x.min(0)
        span = x.max(0) - self.vmin
        self.step = np.where(span > 0, span / 255, 1.0).astype(np.float32)  # a constant dimension: any step
        return self

    def encode(self, x) -> np.ndarray:
        """``(n, d)`` uint8 codes, rounded to the nearest level (values outside the range are clipped)."""
        self._require_trained("encode")
        return np.clip(np.rint((x - self.vmin) / self.step), 0, 255).astype(np.uint8)

    def decode(self, codes) -> np.ndarray:
        """Reconstructions ``(n, d)`` float32 of codes ``(n, d)``."""
        return (self.vmin + np.asarray(codes, np.float32) * self.step).astype(np.float32)

    def _store_codes(self, x):
        self.codes = np.concatenate([self.codes, self.encode(x)])

    def _approx_keys(self, q):
        return np.concatenate([self._key(q, self.decode(self.codes[s:s + self.chunk]))
                               for s in range(0, self.ntotal, self.chunk)], axis=1).astype(np.float32)

    def _code_bytes(self) -> float:
        return float(self.d)


def _popcount(x: np.ndarray) -> np.ndarray:
    """Number of set bits of each byte/word (``np.bitwise_count`` where NumPy >= 2 has it)."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x)
    table = np.array([bin(i).count("1") for i in range(256)], np.uint8)
    return table[x.view(np.uint8)].reshape(*x.shape, -1).sum(-1)


class Binary(_Rescored):
    """1 bit per dimension: the sign of each coordinate after centring, compared by Hamming distance.

    ``train(x)`` learns the mean (signs of raw embeddings are badly unbalanced when their mean is
    far from zero). Codes are packed 64 bits to a word; the Hamming distance is a XOR and a
    popcount. Without ``rescore`` the returned distances are Hamming distances (smaller is
    closer, in both metrics); with it, exact distances in the index's metric.
    Memory: ``d / 8`` bytes per vector, rounded up to whole 8-byte words.

    Defined in chapter 12.
    """

    def __init__(self, d: int, metric: str = "l2", rescore: int | None = None, chunk: int = 1 << 10):
        super().__init__(d, metric, rescore)
        self.chunk = chunk
        self.mean = None
        self.words = (d + 63) // 64
        self.codes = np.zeros((0, self.words), np.uint64)

    @property
    def is_trained(self) -> bool:
        """Whether :meth:`train` has learned the mean."""
        return self.mean is not None

    def train(self, x) -> "Binary":
        """The mean of ``x`` ``(n, d)``, subtracted before taking signs."""
        self.mean = _as_matrix(x, self.d, "x").mean(0)
        return self

    def encode(self, x) -> np.ndarray:
        """``(n, words)`` uint64: bit ``i`` is 1 where ``x[:, i] > mean[i]``."""
        self._require_trained("encode")
        bits = np.packbits(np.asarray(x) > self.mean, axis=1)          # (n, ceil(d/8)) bytes
        bits = np.pad(bits, ((0, 0), (0, 8 * self.words - bits.shape[1])))
        return np.ascontiguousarray(bits).view(np.uint64)

    def hamming(self, qcodes: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """Hamming distances ``(b, n)`` between codes ``(b, words)`` and ``(n, words)``."""
        return _popcount(qcodes[:, None, :] ^ codes[None, :, :]).sum(-1, dtype=np.int64)

    def _store_codes(self, x):
        self.codes = np.concatenate([self.codes, self.encode(x)])

    def _approx_keys(self, q):
        qc = self.encode(q)
        return np.concatenate([self.hamming(qc, self.codes[s:s + self.chunk])
                               for s in range(0, self.ntotal, self.chunk)], axis=1).astype(np.float32)

    def _distances(self, keys, ids):
        if self.rescore:
            return super()._distances(keys, ids)
        return np.where(ids >= 0, keys, FLT_MAX).astype(np.float32)  # Hamming distances

    def _code_bytes(self) -> float:
        return 8.0 * self.words
