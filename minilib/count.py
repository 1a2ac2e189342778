"""Count-based word vectors: co-occurrence counts, PPMI, truncated SVD and LSA.

The recipe of chapter 02, one function per step::

    C = cooccurrence(docs_ids, len(vocab), window=5)     # (V, V) sparse counts
    M = ppmi(C, alpha=0.75)                              # (V, V) sparse PPMI
    X = svd_embeddings(M, k=100, p=0.5)                  # (V, 100) dense word vectors

Everything here is NumPy/SciPy on sparse matrices, so the same code handles a toy sentence
and a corpus of millions of tokens. ``truncated_svd`` is written from scratch (randomized
range finder with power iterations, Halko, Martinsson & Tropp 2011) and checked against
scikit-learn and SciPy in ``tests/test_count.py``.

Defined in chapter 02.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import scipy.sparse as sp

__all__ = ["cooccurrence", "ppmi", "truncated_svd", "svd_embeddings", "term_document", "lsa"]


def _concat_docs(docs_ids: Iterable[Sequence[int]], vocab_size: int) -> tuple[np.ndarray, np.ndarray]:
    """All documents end to end as one id array, plus the document number of every token."""
    if isinstance(docs_ids, np.ndarray) and docs_ids.ndim == 1 and docs_ids.dtype != object:
        raise TypeError("docs_ids must be a list of documents (id arrays), not one flat array: wrap it in a list")
    arrays = []
    for doc in docs_ids:
        if isinstance(doc, str) or (len(doc) and isinstance(doc[0], str)):
            raise TypeError("docs_ids must hold integer ids, not words: encode tokens with Vocab.encode first")
        arrays.append(np.asarray(doc, dtype=np.int64).ravel())
    if not arrays or sum(len(a) for a in arrays) == 0:
        raise ValueError("cooccurrence got no tokens: docs_ids is empty (or every document is)")
    ids = np.concatenate(arrays)
    if ids.min() < 0 or ids.max() >= vocab_size:
        raise ValueError(
            f"token ids must lie in [0, vocab_size={vocab_size}); found {ids.min()}..{ids.max()}. "
            "Pass vocab_size=len(vocab) and drop unknown words (Vocab.encode skips them)."
        )
    doc_of = np.repeat(np.arange(len(arrays), dtype=np.int64), [len(a) for a in arrays])
    return ids, doc_of


def cooccurrence(
    docs_ids: Iterable[Sequence[int]],
    vocab_size: int,
    window: int,
    weighting: str = "harmonic",
    symmetric: bool = True,
) -> sp.csr_matrix:
    """Word-context co-occurrence counts within ``window`` tokens.

    ``docs_ids`` is a list of 1-D integer arrays (one per document, from ``Vocab.encode``).
    A pair of tokens ``d`` positions apart (1 <= d <= window) in the same document adds
    ``1/d`` (``weighting="harmonic"``, as GloVe does) or ``1`` (``"uniform"``) to
    ``C[center, context]``. Windows never cross document boundaries.
    ``symmetric=True`` counts contexts on both sides, so ``C`` is symmetric; ``False``
    counts only the contexts to the left of the centre word (GloVe's ``symmetric=0``).

    Returns a ``(vocab_size, vocab_size)`` float64 ``scipy.sparse.csr_matrix``.
    Vectorised: one NumPy pass per offset ``d``, so memory stays at a few arrays of corpus length
    plus the sparse result. Defined in chapter 02.
    """
    if not isinstance(window, (int, np.integer)) or window < 1:
        raise ValueError(f"window must be a positive integer, got {window!r}")
    if weighting not in ("harmonic", "uniform"):
        raise ValueError(f"weighting must be 'harmonic' or 'uniform', got {weighting!r}")
    ids, doc_of = _concat_docs(docs_ids, vocab_size)
    index_dtype = np.int32 if vocab_size < 2**31 else np.int64
    ids = ids.astype(index_dtype)
    C = sp.csr_matrix((vocab_size, vocab_size), dtype=np.float64)
    for d in range(1, window + 1):
        if d >= len(ids):
            break
        # Token t (the context, on the left) and token t + d (the centre) form a pair when both
        # sit in the same document.
        same_doc = doc_of[:-d] == doc_of[d:]
        left, right = ids[:-d][same_doc], ids[d:][same_doc]
        if len(left) == 0:
            continue
        w = 1.0 / d if weighting == "harmonic" else 1.0
        # COO -> CSR sums duplicate (row, col) pairs: that is the counting step.
        C_d = sp.csr_matrix((np.full(len(left), w), (right, left)), shape=(vocab_size, vocab_size))
        C = C + C_d
    if symmetric:
        # The right-hand contexts of a word are the left-hand contexts seen from the other side.
        C = C + C.T
    C = C.tocsr()
    C.sum_duplicates()
    C.sort_indices()
    return C


def _check_counts(C) -> sp.csr_matrix:
    """``C`` as a float64 CSR matrix, after checking it is a non-empty, non-negative square matrix."""
    if not sp.issparse(C):
        C = sp.csr_matrix(np.asarray(C, dtype=np.float64))
    C = sp.csr_matrix(C, dtype=np.float64)
    if C.ndim != 2 or C.shape[0] != C.shape[1]:
        raise ValueError(f"expected a square (V, V) co-occurrence matrix, got shape {C.shape}")
    if C.nnz == 0 or C.sum() <= 0:
        raise ValueError("the co-occurrence matrix is empty (all zeros): is the corpus or window too small?")
    if C.data.min() < 0:
        raise ValueError("co-occurrence counts must be non-negative; got a negative entry")
    return C


def ppmi(C, alpha: float = 0.75, shift: float = 1.0) -> sp.csr_matrix:
    """Positive pointwise mutual information with context-distribution smoothing.

    ``PMI(w, c) = log P(w, c) / (P(w) P_alpha(c))`` where ``P_alpha(c) = #c^alpha / sum #c'^alpha``
    (``alpha = 1`` is plain PMI; ``0.75`` is the smoothing of Levy, Goldberg & Dagan 2015).
    Returns ``max(PMI - log shift, 0)`` as a CSR matrix of the same ``(V, V)`` shape:
    ``shift = k > 1`` gives the shifted PPMI that mirrors skip-gram with ``k`` negative samples.
    Zero counts have PMI = -inf and stay zero. Defined in chapter 02.
    """
    if alpha <= 0:
        raise ValueError(f"alpha must be positive (1 = no smoothing, 0.75 usual), got {alpha}")
    if shift <= 0:
        raise ValueError(f"shift is the k of log k and must be positive (1 = no shift), got {shift}")
    C = _check_counts(C).tocoo()
    total = C.data.sum()
    row_sums = np.asarray(C.sum(axis=1)).ravel()  # #(w, .)
    col_sums = np.asarray(C.sum(axis=0)).ravel()  # #(., c)
    p_w = row_sums / total
    p_c = col_sums**alpha
    p_c = p_c / p_c.sum()
    # Only the nonzero entries matter: everything else is log 0 = -inf, clipped to 0.
    pmi = np.log(C.data / total) - np.log(p_w[C.row]) - np.log(p_c[C.col]) - np.log(shift)
    keep = pmi > 0
    M = sp.csr_matrix((pmi[keep], (C.row[keep], C.col[keep])), shape=C.shape)
    M.sort_indices()
    return M


def truncated_svd(M, k: int, n_iter: int = 7, oversample: int = 20, seed: int = 0):
    """The ``k`` largest singular triplets of ``M`` (dense or sparse, shape ``(m, n)``).

    Randomized SVD (Halko, Martinsson & Tropp 2011): multiply ``M`` by a Gaussian test matrix
    to sample its range, sharpen that sample with ``n_iter`` power iterations (re-orthonormalised
    by QR each time, so small singular values are not lost to round-off), then take the exact
    SVD of the small projected matrix. Returns ``U (m, k)``, ``S (k,)`` in decreasing order,
    ``Vt (k, n)``, with signs fixed so that the largest entry of every column of ``U`` is positive
    (so the result is deterministic). Defined in chapter 02.
    """
    if not sp.issparse(M):
        M = np.asarray(M, dtype=np.float64)
        if M.ndim != 2:
            raise ValueError(f"truncated_svd expects a 2-D matrix, got shape {M.shape}")
    m, n = M.shape
    if not 1 <= k <= min(m, n):
        raise ValueError(f"k must be between 1 and min(m, n) = {min(m, n)}, got {k}")
    if n_iter < 0 or oversample < 0:
        raise ValueError("n_iter and oversample must be >= 0")
    rng = np.random.default_rng(seed)
    ell = min(k + oversample, min(m, n))  # columns of the sketch
    Omega = rng.standard_normal((n, ell))  # (n, ell) random test matrix
    Q, _ = np.linalg.qr(M @ Omega)  # (m, ell) orthonormal basis of the sampled range
    for _ in range(n_iter):
        # Power iteration on (M M^T): each pass multiplies the gap between kept and dropped
        # singular values by itself again.
        Z, _ = np.linalg.qr(M.T @ Q)  # (n, ell)
        Q, _ = np.linalg.qr(M @ Z)  # (m, ell)
    B = np.asarray((M.T @ Q).T)  # (ell, n) = Q^T M, the small matrix
    Ub, S, Vt = np.linalg.svd(B, full_matrices=False)
    U = Q @ Ub  # (m, ell)
    U, S, Vt = U[:, :k], S[:k], Vt[:k]
    # Singular vectors are defined up to sign: pick the sign that makes each U column's
    # largest-magnitude entry positive.
    signs = np.sign(U[np.argmax(np.abs(U), axis=0), np.arange(k)])
    signs[signs == 0] = 1.0
    return U * signs, S, Vt * signs[:, None]


def svd_embeddings(M, k: int, p: float = 0.5, n_iter: int = 7, seed: int = 0) -> np.ndarray:
    """Word vectors ``U_k S_k^p`` from the truncated SVD of ``M`` (e.g. a PPMI matrix).

    ``p = 1`` is the classical rank-k factor, ``p = 0.5`` the symmetric split that Levy,
    Goldberg & Dagan (2015) found better, ``p = 0`` ignores the singular values.
    Returns a ``(V, k)`` float32 array. Defined in chapter 02.
    """
    U, S, _ = truncated_svd(M, k, n_iter=n_iter, seed=seed)
    return (U * S**p).astype(np.float32)


def term_document(docs_ids: Iterable[Sequence[int]], vocab_size: int) -> sp.csr_matrix:
    """Term-document count matrix ``X[w, j]`` = how often word ``w`` occurs in document ``j``.

    Returns a ``(vocab_size, n_docs)`` float64 CSR matrix. Defined in chapter 02.
    """
    ids, doc_of = _concat_docs(docs_ids, vocab_size)
    n_docs = int(doc_of.max()) + 1
    return sp.csr_matrix((np.ones(len(ids)), (ids, doc_of)), shape=(vocab_size, n_docs))


def lsa(X, k: int, n_iter: int = 7, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Latent semantic analysis (Deerwester et al. 1990) of a term-document count matrix.

    ``X`` is ``(V, n_docs)`` counts (from :func:`term_document`). Counts are reweighted by
    TF-IDF (``log(1 + tf) * log(n_docs / df)``), so that words found in every document carry
    no weight, then factorised by :func:`truncated_svd`. Returns word vectors ``U S``
    ``(V, k)`` and document vectors ``V S`` ``(n_docs, k)``, both float32. Defined in chapter 02.
    """
    X = sp.csr_matrix(X, dtype=np.float64)
    if X.nnz == 0:
        raise ValueError("lsa got an empty term-document matrix (no counted word in any document): build it with "
                         "term_document(docs_ids, vocab_size) from documents encoded with the same vocabulary")
    n_docs = X.shape[1]
    df = np.asarray((X > 0).sum(axis=1)).ravel()
    idf = np.log(n_docs / np.maximum(df, 1))
    W = X.copy()
    W.data = np.log1p(W.data)
    W = sp.diags(idf) @ W
    U, S, Vt = truncated_svd(W, k, n_iter=n_iter, seed=seed)
    return (U * S).astype(np.float32), (Vt.T * S).astype(np.float32)
