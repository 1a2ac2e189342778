"""How close are two vectors? Cosine, dot product, Euclidean distance, and top-k search.

Every chapter compares embeddings, and they all do it with this module. The functions take
NumPy arrays, torch tensors, or (where noted) SciPy sparse matrices, and follow one shape rule,
the one of ``a @ b.T``:

* ``(d,)`` and ``(d,)``      -> a scalar
* ``(n, d)`` and ``(d,)``    -> ``(n,)``  (and ``(d,)`` with ``(m, d)`` -> ``(m,)``)
* ``(n, d)`` and ``(m, d)``  -> ``(n, m)``, the pairwise matrix

A torch input gives a torch result (on the input's device); anything else gives NumPy.

Defined in chapter 01.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
import torch

from minilib.text import Vocab

METRICS = ("cosine", "dot", "euclidean")


# --- inputs --------------------------------------------------------------------------------


def _check_2d(x, name: str):
    """``x`` as a 2-D array/tensor/sparse matrix, plus whether it was 1-D."""
    if sp.issparse(x):
        return sp.csr_matrix(x), False
    if isinstance(x, torch.Tensor):
        if x.dim() not in (1, 2):
            raise ValueError(f"{name} must be a vector (d,) or a matrix (n, d), got shape {tuple(x.shape)}")
        return (x.unsqueeze(0), True) if x.dim() == 1 else (x, False)
    x = np.asarray(x)
    if x.dtype == object or not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
        raise TypeError(f"{name} must hold numbers, got dtype {x.dtype}")
    if x.ndim not in (1, 2):
        raise ValueError(f"{name} must be a vector (d,) or a matrix (n, d), got shape {x.shape}")
    return (x[None, :], True) if x.ndim == 1 else (x, False)


def _pair(a, b):
    """Both inputs as 2-D in one backend (torch if either is a tensor), dimensions checked."""
    A, a1 = _check_2d(a, "a")
    B, b1 = _check_2d(b, "b")
    if A.shape[1] != B.shape[1]:
        raise ValueError(
            f"dimension mismatch: a has shape {tuple(np.shape(a)) if not sp.issparse(a) else a.shape} and "
            f"b has shape {tuple(np.shape(b)) if not sp.issparse(b) else b.shape}; both need the same "
            f"last dimension (got {A.shape[1]} and {B.shape[1]})"
        )
    if isinstance(A, torch.Tensor) or isinstance(B, torch.Tensor):
        if sp.issparse(A) or sp.issparse(B):
            raise TypeError("cannot mix a torch tensor with a SciPy sparse matrix: call .toarray() or use NumPy")
        dev = A.device if isinstance(A, torch.Tensor) else B.device
        A = torch.as_tensor(A, device=dev)
        B = torch.as_tensor(B, device=dev)
        dt = torch.promote_types(A.dtype, B.dtype)
        if not dt.is_floating_point:
            dt = torch.get_default_dtype()
        A, B = A.to(dt), B.to(dt)
    else:  # integer counts become floats, so scores can hold -inf and fractions
        A, B = _float(A), _float(B)
    return A, B, a1, b1


def _float(X):
    return X if np.issubdtype(X.dtype, np.floating) else X.astype(np.float64)


def _squeeze(S, a1: bool, b1: bool):
    """Undo the 2-D promotion of 1-D inputs (see the module's shape rule)."""
    if a1 and b1:
        return S[0, 0].item() if isinstance(S, torch.Tensor) else float(S[0, 0])
    if a1:
        return S[0]
    if b1:
        return S[:, 0]
    return S


def _matmul_t(A, B):
    """``A @ B.T`` as a dense result, for dense or sparse inputs."""
    if isinstance(A, torch.Tensor):
        return A @ B.T
    S = A @ B.T
    return S.toarray() if sp.issparse(S) else np.asarray(S)


def _row_norms(X):
    """L2 norm of each row: ``(n,)``."""
    if isinstance(X, torch.Tensor):
        return torch.linalg.vector_norm(X, dim=1)
    if sp.issparse(X):
        return np.sqrt(np.asarray(X.multiply(X).sum(axis=1)).ravel())
    return np.linalg.norm(X, axis=1)


# --- the three measures ----------------------------------------------------------------------


def normalize(X, eps: float = 1e-12):
    """Scale each row of ``X`` (``(n, d)``, or one vector ``(d,)``) to unit L2 length.

    Rows of zeros stay zeros instead of becoming NaN: a document made only of unknown
    words has no direction, and we give it cosine 0 with everything. Works on NumPy, torch
    and SciPy sparse input and returns the same kind.

    Defined in chapter 01.
    """
    X2, was1 = _check_2d(X, "X")
    norms = _row_norms(X2)
    if isinstance(X2, torch.Tensor):
        if not X2.dtype.is_floating_point:
            X2 = X2.to(torch.get_default_dtype())
        out = X2 / norms.clamp_min(eps).unsqueeze(1).to(X2.dtype)
    elif sp.issparse(X2):
        out = sp.csr_matrix(sp.diags(1.0 / np.maximum(norms, eps)) @ X2)
    else:
        X2 = X2 if np.issubdtype(X2.dtype, np.floating) else X2.astype(np.float64)
        out = X2 / np.maximum(norms, eps)[:, None].astype(X2.dtype)
    return out[0] if was1 else out


def dot(a, b):
    """Dot products ``a @ b.T`` (shape rule in the module docstring). Sparse input allowed.

    Defined in chapter 01.
    """
    A, B, a1, b1 = _pair(a, b)
    return _squeeze(_matmul_t(A, B), a1, b1)


def cosine(a, b):
    """Cosine similarity ``a.b / (|a| |b|)`` in [-1, 1]; 0 where a vector is all zeros.

    Shapes follow the module's rule: two vectors give a float, two matrices ``(n, d)`` and
    ``(m, d)`` give the pairwise ``(n, m)`` matrix. Sparse input allowed.

    Defined in chapter 01.
    """
    A, B, a1, b1 = _pair(a, b)
    return _squeeze(_matmul_t(normalize(A), normalize(B)), a1, b1)


def euclidean(a, b):
    """Euclidean distance ``|a - b|`` (shape rule in the module docstring). Sparse input allowed.

    Computed as ``sqrt(|a|^2 + |b|^2 - 2 a.b)`` so that a pairwise matrix costs one matrix
    product; tiny negative values from rounding are clipped to 0.

    Defined in chapter 01.
    """
    A, B, a1, b1 = _pair(a, b)
    G = _matmul_t(A, B)  # (n, m)
    na, nb = _row_norms(A), _row_norms(B)
    if isinstance(G, torch.Tensor):
        D = (na[:, None] ** 2 + nb[None, :] ** 2 - 2 * G).clamp_min(0).sqrt()
    else:
        D = np.sqrt(np.maximum(na[:, None] ** 2 + nb[None, :] ** 2 - 2 * G, 0))
    return _squeeze(D, a1, b1)


# --- top-k search ------------------------------------------------------------------------------


def topk(queries, keys, k: int, metric: str = "cosine", exclude_self: bool = False, batch_size: int = 1024):
    """The ``k`` keys closest to each query, best first: ``(scores, ids)``, both ``(n_queries, k)``.

    ``queries`` is ``(n, d)`` (or one vector ``(d,)``, giving ``(k,)`` results), ``keys`` is
    ``(m, d)``; NumPy, torch or SciPy sparse. ``metric`` is ``"cosine"`` or ``"dot"`` (scores are
    similarities, highest first) or ``"euclidean"`` (scores are distances, lowest first).
    ``exclude_self=True`` means the queries *are* the keys (same rows, same order) and drops
    key ``i`` from the results of query ``i``. This is exact search: one matrix product per
    batch of ``batch_size`` queries. Ties are broken towards the lower key id.
    Torch input gives torch output; anything else gives NumPy (ids int64).

    Defined in chapter 01.
    """
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}: use one of {METRICS}")
    Q, K, q1, _ = _pair(queries, keys)
    n, m = Q.shape[0], K.shape[0]
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    if n == 0 or m == 0:
        raise ValueError(f"need at least one query and one key, got {n} queries and {m} keys")
    if exclude_self and n != m:
        raise ValueError(
            f"exclude_self=True needs the queries to be the keys, but there are {n} queries and {m} keys; "
            "pass the same matrix twice or set exclude_self=False"
        )
    available = m - 1 if exclude_self else m
    if k > available:
        raise ValueError(f"k={k} but only {available} keys can be returned{' (self excluded)' if exclude_self else ''}; lower k")
    if metric == "cosine":
        Q, K = normalize(Q), normalize(K)
    is_torch = isinstance(Q, torch.Tensor)
    out_s, out_i = [], []
    for start in range(0, n, batch_size):
        q = Q[start : start + batch_size]
        if metric == "euclidean":
            S = -euclidean(q, K)  # negate so that "largest" means "closest"
        else:
            S = _matmul_t(q, K)  # (b, m)
        if exclude_self:
            rows = torch.arange(S.shape[0], device=S.device) if is_torch else np.arange(S.shape[0])
            S[rows, rows + start] = -float("inf")  # a key at -inf never beats a real one
        s, i = (_select_torch if is_torch else _select_numpy)(S, k)
        out_s.append(s)
        out_i.append(i)
    scores = torch.cat(out_s) if is_torch else np.concatenate(out_s)
    ids = torch.cat(out_i) if is_torch else np.concatenate(out_i)
    if metric == "euclidean":
        scores = -scores
    return (scores[0], ids[0]) if q1 else (scores, ids)


def _select_numpy(S: np.ndarray, k: int):
    """Top ``k`` of each row of ``S``, highest first, ties towards the lower column."""
    m = S.shape[1]
    if k < m:
        cand = np.argpartition(-S, k - 1, axis=1)[:, :k]  # the k best, unordered
    else:
        cand = np.broadcast_to(np.arange(m), S.shape).copy()
    vals = np.take_along_axis(S, cand, axis=1)
    order = np.lexsort((cand, -vals), axis=1)  # by score, then by id
    ids = np.take_along_axis(cand, order, axis=1)
    return np.take_along_axis(S, ids, axis=1), ids.astype(np.int64)


def _select_torch(S: torch.Tensor, k: int):
    """Top ``k`` of each row of ``S``, highest first (torch)."""
    s, i = torch.topk(S, k, dim=1, largest=True, sorted=True)
    return s, i


def nearest_words(word: str, vectors, vocab: Vocab | Sequence[str], k: int = 10) -> list[tuple[str, float]]:
    """The ``k`` words whose vectors have the highest cosine with ``word``'s, itself excluded.

    ``vectors`` is ``(V, d)`` with row ``i`` the vector of ``vocab.itos[i]``; ``vocab`` is a
    :class:`~minilib.text.Vocab` (or a list of words, wrapped into one: build the ``Vocab``
    once if you call this often). An unknown word raises a ``KeyError`` naming close
    matches. Returns ``[(neighbour, cosine), ...]``, best first.

    Defined in chapter 01.
    """
    if not isinstance(vocab, Vocab):
        vocab = Vocab(list(vocab))
    if len(vocab) != len(vectors):
        raise ValueError(f"{len(vocab)} words but {len(vectors)} vectors: row i of vectors must belong to word i")
    i = vocab.index(word)
    # k + 1 candidates, then drop the word itself (it is its own nearest neighbour, cosine 1).
    scores, ids = topk(vectors[i], vectors, min(k + 1, len(vocab)), metric="cosine")
    pairs = [(vocab.itos[int(j)], float(s)) for s, j in zip(scores, ids) if int(j) != i]
    return pairs[:k]
