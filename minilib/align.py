"""Aligning two vector spaces: orthogonal Procrustes, a least-squares map, translation accuracy.

Two spaces trained apart (two languages, or two runs of the same method with different seeds)
are unrelated coordinate systems. Given pairs of words known to match (``x_i`` in the source,
``y_i`` in the target), Mikolov et al. (2013) learn a linear map ``W`` with ``X W ~ Y`` by least
squares; Xing et al. (2015) and Smith et al. (2017) ask ``W`` to be *orthogonal* (a rotation,
perhaps with a reflection), which keeps lengths and angles, and the best such ``W`` has a closed
form, the solution of the orthogonal Procrustes problem:

    min_W ||X W - Y||_F  subject to  W^T W = I   =>   W = U V^T  where  U S V^T = svd(X^T Y).

A map is judged by translation accuracy @k: map a held-out source word and look for its gold
translation among the ``k`` target words nearest to the mapped vector.

Defined in chapter 04.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .data import read_translation_pairs, read_word2vec_text
from .evaluate import as_matrix as _matrix, unit_rows as _unit, word_index as _index

__all__ = ["load_word2vec_text", "load_pairs", "pair_matrices", "split_pairs", "procrustes", "least_squares_map",
           "translate", "translation_accuracy"]


# The readers live with the other file formats in minilib.data; chapter 04 uses them by these names.
load_word2vec_text = read_word2vec_text
load_pairs = read_translation_pairs


def pair_matrices(src_vectors, src_words: Sequence[str], tgt_vectors, tgt_words: Sequence[str],
                  pairs: Sequence[tuple[str, str]], normalize: bool = True) -> tuple[np.ndarray, np.ndarray, list]:
    """Stack the vectors of known pairs: ``X`` ``(n, d_src)``, ``Y`` ``(n, d_tgt)`` and the pairs used.

    Pairs with a word missing on either side are skipped; an error if none remains. With
    ``normalize`` (default) every row is unit length, as the alignment papers do.
    Defined in chapter 04.
    """
    S, T = _matrix(src_vectors, src_words, "source"), _matrix(tgt_vectors, tgt_words, "target")
    si, ti = _index(src_words), _index(tgt_words)
    used = [(a, b) for a, b in pairs if a in si and b in ti]
    if not used:
        raise ValueError(f"none of the {len(pairs)} pairs has both words in the two vocabularies")
    X = S[[si[a] for a, _ in used]].astype(np.float64)
    Y = T[[ti[b] for _, b in used]].astype(np.float64)
    return (_unit(X), _unit(Y), used) if normalize else (X, Y, used)


def split_pairs(pairs: Sequence[tuple[str, str]], test_fraction: float = 0.2, seed: int = 0):
    """Split a dictionary into ``(train, test)`` by *source word*, seeded.

    All pairs of one source word land on the same side, so a test word was never seen while
    fitting. Defined in chapter 04.
    """
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be between 0 and 1, got {test_fraction}")
    sources = list(dict.fromkeys(a for a, _ in pairs))
    if len(sources) < 2:
        raise ValueError(f"need pairs with at least 2 distinct source words to split, got {len(sources)}")
    rng = np.random.default_rng(seed)
    n_test = min(max(1, round(test_fraction * len(sources))), len(sources) - 1)
    test = {sources[i] for i in rng.permutation(len(sources))[:n_test]}
    return [p for p in pairs if p[0] not in test], [p for p in pairs if p[0] in test]


def _check_xy(X, Y) -> tuple[np.ndarray, np.ndarray]:
    X, Y = np.asarray(X, dtype=np.float64), np.asarray(Y, dtype=np.float64)
    if X.ndim != 2 or Y.ndim != 2:
        raise ValueError(f"X and Y must be matrices (n, dim), got shapes {X.shape} and {Y.shape}")
    if X.shape[0] != Y.shape[0]:
        raise ValueError(f"X {X.shape} and Y {Y.shape} need the same number of rows (one row per pair)")
    if X.shape[0] == 0:
        raise ValueError("X and Y are empty: give at least one pair")
    return X, Y


def procrustes(X, Y) -> np.ndarray:
    """The orthogonal ``W`` ``(dim, dim)`` that minimises ``||X W - Y||_F``: ``W = U V^T``, ``U S V^T = svd(X^T Y)``.

    ``X`` ``(n, dim)`` source rows, ``Y`` ``(n, dim)`` their targets (same ``dim``: a rotation
    cannot change it). Same result as ``scipy.linalg.orthogonal_procrustes(X, Y)[0]``.
    Defined in chapter 04.
    """
    X, Y = _check_xy(X, Y)
    if X.shape[1] != Y.shape[1]:
        raise ValueError(f"X {X.shape} and Y {Y.shape} must have the same dimension for an orthogonal map; "
                         "use least_squares_map for spaces of different sizes")
    U, _, Vt = np.linalg.svd(X.T @ Y)  # (dim, dim) each
    return U @ Vt


def least_squares_map(X, Y) -> np.ndarray:
    """Mikolov et al.'s (2013) unconstrained map: the minimum-norm ``W`` ``(d_src, d_tgt)`` minimising ``||X W - Y||_F``.

    ``X`` ``(n, d_src)``, ``Y`` ``(n, d_tgt)``. This is what gensim's ``TranslationMatrix``
    computes (on unit rows). Defined in chapter 04.
    """
    X, Y = _check_xy(X, Y)
    return np.linalg.lstsq(X, Y, rcond=None)[0]


def translate(queries, tgt_vectors, k: int = 5, method: str = "nn", csls_k: int = 10, batch_size: int = 1024):
    """Indices ``(n, k)`` of the ``k`` target rows nearest to each mapped query ``(n, dim)``.

    ``method="nn"``: plain cosine. ``method="csls"``: cross-domain similarity local scaling
    (Conneau et al. 2018), ``2 cos(q, t) - r_T(q) - r_S(t)`` with ``r`` the mean cosine to the
    ``csls_k`` nearest neighbours on the other side; it penalises hubs, target words close to
    everything. (Here the ``r_S`` side uses the queries as the source sample.)
    Defined in chapter 04.
    """
    Q = torch.as_tensor(_unit(np.atleast_2d(queries)), dtype=torch.float32)
    T = torch.as_tensor(_unit(np.asarray(tgt_vectors)), dtype=torch.float32)
    if Q.shape[1] != T.shape[1]:
        raise ValueError(f"queries have shape {tuple(Q.shape)} but target vectors {tuple(T.shape)}: dimensions must match")
    if not 1 <= k <= T.shape[0]:
        raise ValueError(f"k must be between 1 and the {T.shape[0]} target words, got {k}")
    if method not in ("nn", "csls"):
        raise ValueError(f"method must be 'nn' or 'csls', got {method!r}")
    if method == "csls":
        kq, kt = min(csls_k, T.shape[0]), min(csls_k, Q.shape[0])
        r_t = torch.cat([(Q[s : s + batch_size] @ T.T).topk(kq, dim=1).values.mean(1) for s in range(0, len(Q), batch_size)])
        r_s = torch.cat([(T[s : s + batch_size] @ Q.T).topk(kt, dim=1).values.mean(1) for s in range(0, len(T), batch_size)])
    out = []
    for s in range(0, len(Q), batch_size):
        S = Q[s : s + batch_size] @ T.T  # (b, V_tgt)
        if method == "csls":
            S = 2 * S - r_t[s : s + batch_size, None] - r_s[None, :]
        out.append(S.topk(k, dim=1).indices)
    return torch.cat(out).numpy()


def translation_accuracy(W, src_vectors, src_words: Sequence[str], tgt_vectors, tgt_words: Sequence[str],
                         pairs: Sequence[tuple[str, str]], ks: Sequence[int] = (1, 5), method: str = "nn") -> dict:
    """Precision @k of the map ``W`` ``(d_src, d_tgt)`` on a dictionary ``pairs`` (the test split).

    Each distinct source word of ``pairs`` found in both vocabularies (with at least one gold
    translation in the target vocabulary) is mapped (unit row times ``W``) and counted correct
    @k if any of its gold translations is among the ``k`` nearest target words (all of
    ``tgt_words`` compete; ``method`` as in :func:`translate`). Returns
    ``dict({"p@1": ..., "p@5": ...}, n_used, n_skipped, predictions={source: [top words]})``.
    Defined in chapter 04.
    """
    S, T = _matrix(src_vectors, src_words, "source"), _matrix(tgt_vectors, tgt_words, "target")
    W = np.asarray(W, dtype=np.float64)
    if W.shape != (S.shape[1], T.shape[1]):
        raise ValueError(f"W has shape {W.shape} but must map source dim {S.shape[1]} to target dim {T.shape[1]}: "
                         f"expected {(S.shape[1], T.shape[1])}")
    si, ti = _index(src_words), _index(tgt_words)
    gold: dict[str, set[int]] = {}
    for a, b in pairs:
        if a in si and b in ti:
            gold.setdefault(a, set()).add(ti[b])
    n_sources = len({a for a, _ in pairs})
    if not gold:
        raise ValueError(f"none of the {len(pairs)} pairs has both words in the two vocabularies")
    queries = list(gold)
    k_max = max(ks)
    top = translate(_unit(S[[si[a] for a in queries]]) @ W, T, k=k_max, method=method)  # (n, k_max)
    out = {f"p@{k}": float(np.mean([bool(gold[a] & set(top[r, :k].tolist())) for r, a in enumerate(queries)]))
           for k in ks}
    out.update(n_used=len(queries), n_skipped=n_sources - len(queries),
               predictions={a: [tgt_words[int(j)] for j in top[r]] for r, a in enumerate(queries)})
    return out
