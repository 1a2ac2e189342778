"""Measuring embedders: a small MTEB built from offline data, with confidence intervals.

Any object with ``encode(texts) -> (n, d)`` is a model here: the book's transformers, averaged
word vectors, the TF-IDF baseline below. A *task* turns a model's embeddings into one number and
says how sure that number is:

* :class:`STSTask` and :class:`MatrixSTSTask`: cosine similarity against human judgements,
  scored by Spearman's rank correlation (Lee documents);
* :class:`RetrievalTask`: exact cosine search of a corpus, scored by nDCG@10, recall@k and MRR@10;
* :class:`ClassificationTask`: a logistic-regression probe, cross-validated; accuracy and macro-F1;
* :class:`ClusteringTask`: k-means with k = the number of classes, scored by V-measure.

Every task draws its bootstrap resamples once, from its own seed, and scores every model on the
same resamples: that gives each score a (bias-corrected) percentile confidence interval and lets
:func:`compare` run a paired significance test between two models. :func:`evaluate` runs many
models on many tasks and returns the table; adding a model is one more entry in its dictionary.
The builders at the end (:func:`lee_sts`, :func:`bbc_retrieval`, ...) make the chapter's six
tasks from data that Python packages ship.

The metrics are written from scratch (the unit tests check them against SciPy and
scikit-learn); scikit-learn provides only the two fitted pieces, the logistic-regression
probe and k-means, which are instruments here, not the thing being measured.

Defined in chapter 09.
"""
from __future__ import annotations

import functools
import hashlib
import math
import re
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from . import data
from .text import strip_wiki_markup, text_list, tokenize

__all__ = [
    "rankdata", "spearman", "ndcg_at_k", "recall_at_k", "mrr_at_k", "rank_documents", "contingency",
    "entropy", "homogeneity_completeness_v", "v_measure", "accuracy", "macro_f1", "bootstrap_indices",
    "bootstrap", "percentile_interval", "bootstrap_ci", "paired_test", "paired_bootstrap_test",
    "EmbeddingError", "CheckedModel", "Task", "STSTask", "MatrixSTSTask", "RetrievalTask",
    "ClassificationTask", "ClusteringTask", "stratified_folds", "TfidfEmbedder", "evaluate", "table", "compare",
    "win_rates", "lee_sts", "polarity_classification", "bbc_articles", "bbc_classification", "bbc_clustering",
    "bbc_retrieval", "first_sentence", "wiki_retrieval", "truncate_words", "all_texts",
]


# --- rank correlation -----------------------------------------------------------------------


def _vector(x, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"{name} must be a 1-D sequence of numbers, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} holds {int((~np.isfinite(x)).sum())} NaN or infinite value(s): remove them first")
    return x


def rankdata(x) -> np.ndarray:
    """Ranks ``1..n`` of the values of ``x`` ``(n,)``, ties sharing their average rank.

    ``rankdata([10, 30, 20, 20]) == [1, 4, 2.5, 2.5]``. Defined in chapter 09.
    """
    x = _vector(x, "x")
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    starts_run = np.r_[True, xs[1:] != xs[:-1]]          # first position of each run of equal values
    run = np.cumsum(starts_run) - 1                       # run number of each sorted position
    first = np.flatnonzero(starts_run)                    # 0-based start of each run
    last = np.r_[first[1:], len(x)] - 1                   # 0-based end of each run
    ranks = np.empty(len(x))
    ranks[order] = (first + last)[run] / 2 + 1            # average of the 1-based ranks of the run
    return ranks


def spearman(x, y) -> float:
    """Spearman's rank correlation of two ``(n,)`` sequences: Pearson's r of their average ranks.

    Returns NaN when either sequence is constant (no order to compare), as SciPy does.
    Defined in chapter 09.
    """
    x, y = _vector(x, "x"), _vector(y, "y")
    if len(x) != len(y):
        raise ValueError(f"x and y must have the same length, got {len(x)} and {len(y)}")
    if len(x) < 2:
        raise ValueError(f"Spearman's rho needs at least 2 pairs, got {len(x)}")
    rx, ry = rankdata(x) - (len(x) + 1) / 2, rankdata(y) - (len(y) + 1) / 2  # centred: the mean rank is (n+1)/2
    den = math.sqrt(float(rx @ rx) * float(ry @ ry))
    return float(rx @ ry / den) if den > 0 else float("nan")


# --- ranking metrics ---------------------------------------------------------------------------


def _scores_and_relevance(scores, relevance) -> tuple[np.ndarray, np.ndarray]:
    S = np.asarray(scores, dtype=np.float64)
    R = np.asarray(relevance, dtype=np.float64)
    if S.ndim != 2 or S.shape != R.shape:
        raise ValueError(f"scores and relevance must both be (n_queries, n_docs), got {S.shape} and {R.shape}")
    if not np.isfinite(S).all():
        raise ValueError("scores hold NaN or infinite values: check the embeddings")
    if (R < 0).any() or not np.isfinite(R).all():
        raise ValueError("relevance grades must be finite and >= 0 (0 = not relevant)")
    if not (R > 0).any(axis=1).all():
        bad = np.flatnonzero(~(R > 0).any(axis=1))
        raise ValueError(f"queries {bad[:5].tolist()} have no relevant document: drop them, "
                         "a metric of a query with nothing to find is undefined")
    return S, R


def rank_documents(scores, relevance) -> np.ndarray:
    """Document indices of each query, best first: ``(n_q, n_d)`` scores -> ``(n_q, n_d)`` ids.

    Ties are broken *against* the model: among documents with equal scores the less relevant
    come first, so a model that scores everything alike gains nothing from the order in which
    the corpus happens to be stored. Defined in chapter 09.
    """
    S, R = np.asarray(scores, dtype=np.float64), np.asarray(relevance, dtype=np.float64)
    by_grade = np.argsort(R, axis=1, kind="stable")                            # secondary key: grade, ascending
    by_score = np.argsort(-np.take_along_axis(S, by_grade, 1), axis=1, kind="stable")  # primary key: score, descending
    return np.take_along_axis(by_grade, by_score, 1)


def ndcg_at_k(scores, relevance, k: int = 10) -> np.ndarray:
    """nDCG@k of each query (Järvelin & Kekäläinen 2002), with linear gains as in trec_eval.

    ``scores`` and ``relevance`` are ``(n_q, n_d)``; relevance holds grades (0 = not relevant).
    DCG@k = sum over the top k ranks r of grade / log2(r + 1); nDCG divides by the DCG of the
    ideal order. Returns ``(n_q,)``; its mean is scikit-learn's ``ndcg_score``.
    Defined in chapter 09.
    """
    S, R = _scores_and_relevance(scores, relevance)
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    k = min(k, S.shape[1])
    discount = 1.0 / np.log2(np.arange(2, k + 2))                         # ranks 1..k
    got = np.take_along_axis(R, rank_documents(S, R)[:, :k], 1)          # grades in the model's order
    ideal = -np.sort(-R, axis=1)[:, :k]                                   # grades in the best order
    return (got @ discount) / (ideal @ discount)


def recall_at_k(scores, relevance, k: int = 10) -> np.ndarray:
    """Share of each query's relevant documents (grade > 0) found in its top k: ``(n_q,)``.

    Defined in chapter 09.
    """
    S, R = _scores_and_relevance(scores, relevance)
    top = rank_documents(S, R)[:, :k]
    hits = (np.take_along_axis(R, top, 1) > 0).sum(1)
    return hits / (R > 0).sum(1)


def mrr_at_k(scores, relevance, k: int | None = 10) -> np.ndarray:
    """Reciprocal rank of each query's first relevant document, 0 if it is not in the top k
    (``k=None``: no cut-off): ``(n_q,)``; the mean is the MRR. Defined in chapter 09.
    """
    S, R = _scores_and_relevance(scores, relevance)
    k = S.shape[1] if k is None else min(k, S.shape[1])
    rel_in_order = np.take_along_axis(R, rank_documents(S, R)[:, :k], 1) > 0  # (n_q, k)
    found = rel_in_order.any(1)
    first = rel_in_order.argmax(1)                                            # 0-based rank of the first hit
    return np.where(found, 1.0 / (first + 1), 0.0)


# --- clustering and classification metrics ---------------------------------------------------


def contingency(labels_true, labels_pred) -> np.ndarray:
    """Counts ``n[c, k]`` of items with true class c and predicted cluster k: ``(n_classes, n_clusters)``.

    Defined in chapter 09.
    """
    a, b = np.asarray(labels_true), np.asarray(labels_pred)
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError(f"labels_true and labels_pred must be 1-D and of equal length, got {a.shape} and {b.shape}")
    if len(a) == 0:
        raise ValueError("no labels given: a clustering of zero items has no score")
    _, ia = np.unique(a, return_inverse=True)
    _, ib = np.unique(b, return_inverse=True)
    return _contingency_codes(ia.ravel(), ib.ravel(), ia.max() + 1, ib.max() + 1)


def _contingency_codes(ia: np.ndarray, ib: np.ndarray, na: int, nb: int) -> np.ndarray:
    return np.bincount(ia * nb + ib, minlength=na * nb).reshape(na, nb).astype(np.float64)


def entropy(counts) -> float:
    """Shannon entropy (nats) of the distribution given by non-negative ``counts``. Defined in chapter 09."""
    c = np.asarray(counts, dtype=np.float64).ravel()
    c = c[c > 0]
    p = c / c.sum()
    return float(-(p * np.log(p)).sum())


def _hcv(C: np.ndarray, beta: float = 1.0) -> tuple[float, float, float]:
    N = C.sum()
    n_c, n_k = C.sum(1), C.sum(0)                      # class sizes, cluster sizes
    H_C, H_K = entropy(n_c), entropy(n_k)
    nz = C > 0
    # H(C|K) = -sum_ck n_ck/N log(n_ck / n_k) and H(K|C) = -sum_ck n_ck/N log(n_ck / n_c)
    H_C_given_K = float(-(C[nz] / N * np.log(C[nz] / np.broadcast_to(n_k, C.shape)[nz])).sum())
    H_K_given_C = float(-(C[nz] / N * np.log(C[nz] / np.broadcast_to(n_c[:, None], C.shape)[nz])).sum())
    h = 1.0 if H_C == 0 else 1.0 - H_C_given_K / H_C   # one class: every clustering is homogeneous
    c = 1.0 if H_K == 0 else 1.0 - H_K_given_C / H_K   # one cluster: trivially complete
    v = 0.0 if h + c == 0 else (1 + beta) * h * c / (beta * h + c)
    return h, c, v


def homogeneity_completeness_v(labels_true, labels_pred, beta: float = 1.0) -> tuple[float, float, float]:
    """Homogeneity, completeness and V-measure of a clustering (Rosenberg & Hirschberg 2007).

    Homogeneity ``1 - H(C|K) / H(C)``: each cluster holds one class. Completeness
    ``1 - H(K|C) / H(K)``: each class sits in one cluster. V is their weighted harmonic mean.
    Defined in chapter 09.
    """
    return _hcv(contingency(labels_true, labels_pred), beta)


def v_measure(labels_true, labels_pred, beta: float = 1.0) -> float:
    """V-measure of a clustering against the true classes, in [0, 1]. Defined in chapter 09."""
    return homogeneity_completeness_v(labels_true, labels_pred, beta)[2]


def accuracy(y_true, y_pred) -> float:
    """Share of equal labels. Defined in chapter 09."""
    a, b = np.asarray(y_true), np.asarray(y_pred)
    if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
        raise ValueError(f"y_true and y_pred must be non-empty 1-D arrays of equal length, got {a.shape} and {b.shape}")
    return float((a == b).mean())


def macro_f1(y_true, y_pred) -> float:
    """Unweighted mean over classes of F1 = 2PR / (P + R); a class never predicted or never
    present gets F1 = 0, as scikit-learn's ``f1_score(average="macro")`` does. Defined in chapter 09."""
    a, b = np.asarray(y_true), np.asarray(y_pred)
    accuracy(a, b)  # the same input checks
    labels = np.union1d(a, b)
    f1 = []
    for lab in labels:
        tp = float(((a == lab) & (b == lab)).sum())
        pred, true = float((b == lab).sum()), float((a == lab).sum())
        f1.append(0.0 if tp == 0 else 2 * tp / (pred + true))  # 2PR/(P+R) = 2tp / (n_pred + n_true)
    return float(np.mean(f1))


# --- resampling: confidence intervals and paired tests ------------------------------------------


def bootstrap_indices(n: int, n_boot: int = 1000, seed: int = 0) -> np.ndarray:
    """``(n_boot, n)`` item indices drawn with replacement: one bootstrap resample per row.

    Defined in chapter 09.
    """
    if n < 1:
        raise ValueError(f"cannot resample {n} items: a task needs at least one")
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def bootstrap(values=None, statistic: Callable | None = None, *, idx: np.ndarray | None = None,
              n: int | None = None, n_boot: int = 1000, seed: int = 0) -> np.ndarray:
    """Bootstrap replicates of a statistic: ``(n_boot,)``.

    Two forms. ``bootstrap(values)`` resamples the per-item ``values`` ``(n,)`` and returns the mean
    of each resample (vectorised). ``bootstrap(statistic=f, n=n)`` calls ``f(index_array)`` for each
    resample of the item indices ``0..n-1``: use it when the score is not a mean of per-item values
    (Spearman, V-measure). ``idx`` passes pre-drawn resamples (:func:`bootstrap_indices`).
    Defined in chapter 09.
    """
    if values is not None:
        v = np.asarray(values, dtype=np.float64)
        if v.ndim != 1:
            raise ValueError(f"values must be per-item numbers (n,), got shape {v.shape}")
        n = len(v)
    elif statistic is None or n is None:
        raise ValueError("give per-item values, or a statistic of an index array together with n")
    if idx is None:
        idx = bootstrap_indices(n, n_boot, seed)
    elif (idx := np.asarray(idx)).ndim != 2 or idx.shape[1] != n:
        raise ValueError(f"idx must be (n_boot, {n}), got {idx.shape}")
    if values is not None and statistic is None:
        return v[idx].mean(axis=1)
    if values is not None:
        return np.array([statistic(v[row]) for row in idx])
    return np.array([statistic(row) for row in idx])


def percentile_interval(replicates, alpha: float = 0.05, estimate: float | None = None) -> tuple[float, float]:
    """A bootstrap confidence interval ``(lo, hi)`` at level ``1 - alpha`` from the replicates.

    Without ``estimate``: the plain percentile interval, the ``alpha/2`` and ``1 - alpha/2``
    quantiles of the replicates. With the point ``estimate``: Efron's *bias-corrected* (BC)
    percentile interval. If the replicates are not centred on the estimate (a share
    ``p0 != 1/2`` of them fall below it, as happens with V-measure, which resampling with
    repeats makes look better), it shifts both quantiles by ``z0 = Phi^-1(p0)``: it uses the
    quantiles ``Phi(2 z0 + z_{alpha/2})`` and ``Phi(2 z0 + z_{1-alpha/2})``. With ``p0 = 1/2`` the two
    intervals agree. Defined in chapter 09.
    """
    from statistics import NormalDist

    r = np.asarray(replicates, dtype=np.float64)
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    r = r[np.isfinite(r)]
    if len(r) == 0:
        return float("nan"), float("nan")
    q = np.array([alpha / 2, 1 - alpha / 2])
    if estimate is not None and np.isfinite(estimate):
        N = NormalDist()
        # ties count half, and p0 stays inside (0, 1) so that z0 is finite
        p0 = ((r < estimate).sum() + 0.5 * (r == estimate).sum()) / len(r)
        p0 = min(max(p0, 0.5 / len(r)), 1 - 0.5 / len(r))
        z0 = N.inv_cdf(p0)
        q = np.array([N.cdf(2 * z0 + N.inv_cdf(x)) for x in q])
    lo, hi = np.quantile(r, q)
    return float(lo), float(hi)


def bootstrap_ci(values=None, statistic: Callable | None = None, *, n: int | None = None, n_boot: int = 1000,
                 alpha: float = 0.05, seed: int = 0, bias_corrected: bool = True) -> tuple[float, float]:
    """Bootstrap confidence interval ``(lo, hi)`` (Efron 1979) at level ``1 - alpha``.

    Same two forms as :func:`bootstrap`: per-item ``values`` (interval of their mean), or a
    ``statistic`` of a resampled index array with the number of items ``n``. The interval is the
    bias-corrected percentile one (:func:`percentile_interval`), or the plain percentile one with
    ``bias_corrected=False``. Defined in chapter 09.
    """
    if values is not None:
        v = np.asarray(values, dtype=np.float64)
        estimate = v.mean() if statistic is None else statistic(v)
    elif statistic is not None and n is not None:
        estimate = statistic(np.arange(n))
    else:
        raise ValueError("give per-item values, or a statistic of an index array together with n")
    reps = bootstrap(values, statistic, n=n, n_boot=n_boot, seed=seed)
    return percentile_interval(reps, alpha, estimate if bias_corrected else None)


def paired_test(a, b, n_resamples: int = 10_000, seed: int = 0) -> float:
    """Two-sided p-value that two models with per-item scores ``a`` and ``b`` ``(n,)`` are equally good.

    Approximate randomisation (Noreen 1989): if the models were interchangeable, each item's
    pair of scores could be swapped, i.e. each difference ``a_i - b_i`` could flip its sign.
    The p-value is the share of ``n_resamples`` random sign flips whose mean difference is at
    least as far from 0 as the observed one, counting the observed one: ``(1 + hits) / (1 + R)``.
    Identical models give p = 1. Defined in chapter 09.
    """
    a, b = _vector(a, "a"), _vector(b, "b")
    if len(a) != len(b):
        raise ValueError(f"a and b must score the same items: got {len(a)} and {len(b)} values")
    if len(a) == 0:
        raise ValueError("no items to compare")
    d = a - b
    observed = abs(d.mean())
    rng = np.random.default_rng(seed)
    hits, done = 0, 0
    while done < n_resamples:                           # in chunks: R x n signs may not fit in memory
        m = min(1000, n_resamples - done)
        signs = rng.integers(0, 2, size=(m, len(d))) * 2 - 1
        hits += int((np.abs((signs * d).mean(1)) >= observed - 1e-12).sum())
        done += m
    return (1 + hits) / (1 + n_resamples)


def paired_bootstrap_test(replicates_a, replicates_b, score_a: float, score_b: float) -> float:
    """Two-sided p-value from the *same* bootstrap resamples scored for two models.

    ``delta* = replicates_a - replicates_b`` estimates how the difference varies from one sample
    of items to another; shifted to mean zero it is the distribution of the difference if the
    models were equal (Efron & Tibshirani 1993, ch. 16). p = share of resamples with
    ``|delta* - delta| >= |delta|``, counting the observed one. Works for any score (Spearman,
    V-measure). Defined in chapter 09.
    """
    ra, rb = np.asarray(replicates_a, dtype=np.float64), np.asarray(replicates_b, dtype=np.float64)
    if ra.shape != rb.shape or ra.ndim != 1:
        raise ValueError(f"the replicates must come from the same resamples: got shapes {ra.shape} and {rb.shape}")
    delta = score_a - score_b
    d = ra - rb
    d = d[np.isfinite(d)]
    hits = int((np.abs(d - delta) >= abs(delta) - 1e-12).sum())
    return (1 + hits) / (1 + len(d))


# --- models: checked, cached encodings -----------------------------------------------------------


class EmbeddingError(ValueError):
    """A model's output is unusable: wrong shape, wrong dimension, NaN or infinity."""


class CheckedModel:
    """Wraps a model (anything with ``encode(texts) -> (n, d)``) for benchmarking.

    On creation it calls ``model.encode([])``, which must return an empty ``(0, d)`` array: that
    fixes ``d``. Texts are passed to the model sorted by length (less padding in each batch) and
    the rows put back in order. Every later call is checked (a 2-D array, one row per text, ``d``
    columns, only finite numbers; an error names the model, the task and the fix; an error the
    model raises itself is re-raised as an :class:`EmbeddingError` naming both) and cached by the
    texts' hash, so tasks that share texts (BBC classification and clustering) encode them once.
    Defined in chapter 09.
    """

    def __init__(self, model, name: str | None = None):
        if isinstance(model, CheckedModel):
            model = model.model
        if not callable(getattr(model, "encode", None)):
            raise TypeError(f"{name or type(model).__name__} has no encode(texts) method: a model must map a list "
                            "of texts to an (n, d) array")
        self.model, self.name = model, name or type(model).__name__
        self._cache: dict[str, np.ndarray] = {}
        empty = self._array(model.encode([]), "encode([])")
        if empty.ndim != 2 or empty.shape[0] != 0 or empty.shape[1] < 1:
            raise EmbeddingError(f"model {self.name!r}: encode([]) must return an empty (0, d) array, got shape "
                                 f"{empty.shape}; return np.zeros((0, d), dtype=np.float32) for no texts")
        self.dim = int(empty.shape[1])

    def _array(self, E, where: str) -> np.ndarray:
        if hasattr(E, "detach"):  # a torch tensor
            E = E.detach().cpu().numpy()
        if hasattr(E, "toarray"):  # a SciPy sparse matrix
            E = E.toarray()
        if not isinstance(E, np.ndarray) or not np.issubdtype(E.dtype, np.number):
            raise EmbeddingError(f"model {self.name!r} ({where}) returned {type(E).__name__}, not an array of numbers")
        return E

    def encode(self, texts: Sequence[str], task: str = "?") -> np.ndarray:
        """Checked ``(n, d)`` float64 embeddings of ``texts`` (from the cache when seen before)."""
        texts = list(texts)
        key = hashlib.sha256("\x1e".join(texts).encode("utf-8", "surrogatepass")).hexdigest()
        if key in self._cache:
            return self._cache[key]
        # Encode from the shortest text to the longest: a batch is padded to its longest text, so
        # batches of similar lengths waste less work (sentence-transformers does the same).
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        try:
            E = self.model.encode([texts[i] for i in order])
        except Exception as e:  # e.g. a model's own NaN check: say which model and task failed
            raise EmbeddingError(f"model {self.name!r} failed on task {task!r}: {type(e).__name__}: {e}") from e
        E = self._array(E, f"task {task!r}")
        if E.ndim == 2 and E.shape[0] == len(texts):
            E = E[np.argsort(order)]                       # back to the caller's order
        if E.ndim != 2 or E.shape[0] != len(texts):
            raise EmbeddingError(f"model {self.name!r} on task {task!r}: expected ({len(texts)}, {self.dim}) for "
                                 f"{len(texts)} texts, got shape {E.shape}; encode must return one row per text")
        if E.shape[1] != self.dim:
            raise EmbeddingError(f"model {self.name!r} on task {task!r}: rows have {E.shape[1]} dimensions but "
                                 f"encode([]) said {self.dim}; return the same width for every call")
        bad = ~np.isfinite(E).all(axis=1)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise EmbeddingError(f"model {self.name!r} on task {task!r}: {int(bad.sum())} of {len(texts)} embeddings "
                                 f"hold NaN or infinity (first: text {i}, {texts[i][:60]!r}); fix the model (a "
                                 "division by a zero norm or count is the usual cause) before benchmarking it")
        E = E.astype(np.float64)
        self._cache[key] = E
        return E


def _unit_rows(E: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1; a zero row (a text with no known word) stays zero: cosine 0 with all."""
    return E / np.maximum(np.linalg.norm(E, axis=1, keepdims=True), 1e-12)


# --- tasks ---------------------------------------------------------------------------------------


class Task:
    """A benchmark task: ``run(model) -> dict`` with the main score and its confidence interval.

    The result holds ``task``, ``model``, ``metric`` (name of the main score), ``score``, ``ci``
    ``(lo, hi)``, ``metrics`` (every score the task computes), ``n`` (items resampled),
    ``replicates`` (the main score on each of the task's ``n_boot`` bootstrap resamples, the same
    resamples for every model) and ``per_item`` (per-item values whose mean is the score, or
    None when the score is not such a mean). Defined in chapter 09.
    """

    name: str
    metric: str
    kind: str

    def __init__(self, name: str, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0):
        if not name:
            raise ValueError("a task needs a name")
        self.name, self.n_boot, self.alpha, self.seed = name, int(n_boot), float(alpha), int(seed)

    @property
    def n_items(self) -> int:
        """Number of items the bootstrap resamples (pairs, queries or texts): the result's ``n``."""
        raise NotImplementedError

    @property
    def texts(self) -> list[str]:
        """Every text the task encodes (for fitting a baseline such as TF-IDF; labels excluded)."""
        raise NotImplementedError

    def resamples(self) -> np.ndarray:
        """The task's bootstrap resamples ``(n_boot, n_items)``: drawn from its seed, the same for every model."""
        return bootstrap_indices(self.n_items, self.n_boot, self.seed)

    @staticmethod
    def _checked(model, name: str | None) -> CheckedModel:
        """``model`` wrapped in a :class:`CheckedModel` (kept as is if it already is one)."""
        return model if isinstance(model, CheckedModel) else CheckedModel(model, name)

    def _result(self, model: CheckedModel, score: float, metrics: dict, replicates, per_item=None) -> dict:
        return {"task": self.name, "kind": self.kind, "model": model.name, "metric": self.metric,
                "score": float(score), "ci": percentile_interval(replicates, self.alpha, score),
                "metrics": {k: float(v) for k, v in metrics.items()}, "n": self.n_items, "seed": self.seed,
                "replicates": np.asarray(replicates, dtype=np.float64),
                "per_item": None if per_item is None else np.asarray(per_item, dtype=np.float64)}

    def run(self, model, name: str | None = None) -> dict:
        """Score ``model`` on the task: the result ``dict`` described above (subclasses implement it).

        ``model`` is anything with ``encode(texts) -> (n, d)``, checked by :class:`CheckedModel`;
        ``name`` labels it in the result."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {self.n_items} items)"


class _TextListTask(Task):
    """A task over one list of texts, ``self._texts`` (one item per text)."""

    @property
    def n_items(self) -> int:
        return len(self._texts)

    @property
    def texts(self) -> list[str]:
        return list(self._texts)


class STSTask(Task):
    """Semantic similarity of text pairs: Spearman between cosine(a_i, b_i) and the gold scores.

    ``texts_a``, ``texts_b`` and ``gold`` have one entry per pair; the bootstrap resamples pairs
    (right when pairs are independent, as in STS-B). Defined in chapter 09.
    """

    kind, metric = "sts", "spearman"

    def __init__(self, name: str, texts_a: Sequence[str], texts_b: Sequence[str], gold, **kw):
        super().__init__(name, **kw)
        self.texts_a, self.texts_b = text_list(texts_a, "texts_a"), text_list(texts_b, "texts_b")
        self.gold = _vector(gold, "gold")
        if not len(self.texts_a) == len(self.texts_b) == len(self.gold):
            raise ValueError(f"{name}: texts_a, texts_b and gold need one entry per pair, got "
                             f"{len(self.texts_a)}, {len(self.texts_b)} and {len(self.gold)}")
        if len(self.gold) < 3:
            raise ValueError(f"{name}: a correlation needs at least 3 pairs, got {len(self.gold)}")

    @property
    def n_items(self) -> int:
        """Number of pairs (the bootstrap resamples pairs)."""
        return len(self.gold)

    @property
    def texts(self) -> list[str]:
        """The distinct texts of ``texts_a`` and ``texts_b``, in first-seen order (each encoded once)."""
        return list(dict.fromkeys(self.texts_a + self.texts_b))

    def run(self, model, name: str | None = None) -> dict:
        """Spearman between the cosine of each pair and ``gold``, with a bootstrap over pairs; the result
        ``dict`` of :class:`Task` (``per_item`` None)."""
        model = self._checked(model, name)
        uniq = self.texts
        E = _unit_rows(model.encode(uniq, self.name))
        pos = {t: i for i, t in enumerate(uniq)}
        A = E[[pos[t] for t in self.texts_a]]
        B = E[[pos[t] for t in self.texts_b]]
        pred = (A * B).sum(1)                                           # cosine of each pair
        score = spearman(pred, self.gold)
        reps = bootstrap(statistic=lambda i: spearman(pred[i], self.gold[i]), n=self.n_items, idx=self.resamples())
        return self._result(model, score, {"spearman": score}, reps)


class MatrixSTSTask(_TextListTask):
    """Document similarity as a matrix: all pairs of ``texts`` against a gold ``(n, n)`` matrix.

    Score: Spearman between the cosines and the gold similarities of the n(n-1)/2 pairs. The
    pairs are *not* independent (each document is in n - 1 of them), so the bootstrap resamples
    documents and scores all pairs of two different drawn documents. Defined in chapter 09.
    """

    kind, metric = "sts", "spearman"

    def __init__(self, name: str, texts: Sequence[str], gold, **kw):
        super().__init__(name, **kw)
        self._texts = text_list(texts, "texts")
        G = np.asarray(gold, dtype=np.float64)
        n = len(self._texts)
        if G.shape != (n, n):
            raise ValueError(f"{name}: gold must be ({n}, {n}) for {n} texts, got {G.shape}")
        if not np.isfinite(G).all():
            raise ValueError(f"{name}: gold holds NaN or infinite values")
        if not np.allclose(G, G.T):
            raise ValueError(f"{name}: gold must be symmetric (fill the lower triangle from the upper one)")
        if n < 3:
            raise ValueError(f"{name}: needs at least 3 texts, got {n}")
        self.gold = G

    def run(self, model, name: str | None = None) -> dict:
        """Spearman between the cosines and ``gold`` over all n(n-1)/2 pairs, with a bootstrap over
        documents; the result ``dict`` of :class:`Task` (``per_item`` None)."""
        model = self._checked(model, name)
        E = _unit_rows(model.encode(self._texts, self.name))
        P = E @ E.T                                                       # (n, n) cosines
        n = self.n_items
        iu, ju = np.triu_indices(n, 1)
        score = spearman(P[iu, ju], self.gold[iu, ju])

        def on_docs(docs):                     # docs: n drawn document ids, repeats allowed
            a, b = docs[iu], docs[ju]
            keep = a != b                      # a document paired with its own copy says nothing
            return spearman(P[a[keep], b[keep]], self.gold[a[keep], b[keep]])

        reps = bootstrap(statistic=on_docs, n=n, idx=self.resamples())
        return self._result(model, score, {"spearman": score}, reps)


def _ids_and_texts(items, what: str) -> tuple[list, list[str]]:
    if isinstance(items, Mapping):
        return list(items.keys()), text_list(items.values(), what, allow_empty=False)
    texts = text_list(items, what, allow_empty=False)
    return list(range(len(texts))), texts


class RetrievalTask(Task):
    """Find each query's relevant documents in a corpus by exact cosine search.

    ``queries`` and ``corpus`` are lists (ids are positions) or ``{id: text}`` mappings; ``qrels``
    maps a query id to ``{doc id: grade}`` (grade > 0 means relevant; BEIR's format). Every
    query needs at least one relevant document, and every id must exist: a wrong id raises an
    error naming it. Scores: nDCG@10 (the main one, as in MTEB), recall@k for ``ks``, MRR@10;
    the bootstrap resamples queries. Defined in chapter 09.
    """

    kind, metric = "retrieval", "ndcg@10"

    def __init__(self, name: str, queries, corpus, qrels: Mapping, k: int = 10, ks: Sequence[int] = (1, 10),
                 **kw):
        super().__init__(name, **kw)
        self.query_ids, self.queries = _ids_and_texts(queries, "queries")
        self.doc_ids, self.corpus = _ids_and_texts(corpus, "corpus")
        self.k, self.ks = int(k), tuple(int(x) for x in ks)
        self.metric = f"ndcg@{self.k}"
        qpos = {q: i for i, q in enumerate(self.query_ids)}
        dpos = {d: i for i, d in enumerate(self.doc_ids)}
        if len(qpos) != len(self.query_ids) or len(dpos) != len(self.doc_ids):
            raise ValueError(f"{name}: query and document ids must be unique")
        unknown_q = [q for q in qrels if q not in qpos]
        if unknown_q:
            raise KeyError(f"{name}: qrels name {len(unknown_q)} unknown query id(s), e.g. {unknown_q[:3]}; "
                           "every qrels key must be a query id")
        R = np.zeros((len(self.queries), len(self.corpus)))
        for q, docs in qrels.items():
            unknown_d = [d for d in docs if d not in dpos]
            if unknown_d:
                raise KeyError(f"{name}: qrels of query {q!r} name unknown document id(s) {unknown_d[:3]}; "
                               "every relevant document must be in the corpus")
            for d, grade in docs.items():
                if not np.isfinite(grade) or grade < 0:
                    raise ValueError(f"{name}: grade of ({q!r}, {d!r}) must be a number >= 0, got {grade!r}")
                R[qpos[q], dpos[d]] = grade
        empty = [self.query_ids[i] for i in np.flatnonzero(~(R > 0).any(1))]
        if empty:
            raise ValueError(f"{name}: {len(empty)} quer(ies) have no relevant document in qrels, e.g. {empty[:3]}; "
                             "drop them from queries or add their relevant documents")
        self.relevance = R

    @property
    def n_items(self) -> int:
        """Number of queries (the bootstrap resamples queries)."""
        return len(self.queries)

    @property
    def texts(self) -> list[str]:
        """The queries followed by the corpus documents (not deduplicated)."""
        return self.queries + self.corpus

    def run(self, model, name: str | None = None) -> dict:
        """Rank the whole corpus for each query by cosine: nDCG@k (main score and ``per_item``), MRR@k
        and recall@k for each of ``ks``; the result ``dict`` of :class:`Task`."""
        model = self._checked(model, name)
        Q = _unit_rows(model.encode(self.queries, self.name))
        D = _unit_rows(model.encode(self.corpus, self.name))
        S = Q @ D.T                                                   # (n_queries, n_docs) cosines
        ndcg = ndcg_at_k(S, self.relevance, self.k)
        metrics = {self.metric: ndcg.mean(), f"mrr@{self.k}": mrr_at_k(S, self.relevance, self.k).mean()}
        for k in self.ks:
            metrics[f"recall@{k}"] = recall_at_k(S, self.relevance, k).mean()
        reps = bootstrap(ndcg, idx=self.resamples())
        return self._result(model, ndcg.mean(), metrics, reps, per_item=ndcg)


def _labels(labels, n: int, name: str) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(list(labels))
    if labels.ndim != 1 or len(labels) != n:
        raise ValueError(f"{name}: need one label per text, got {len(labels)} labels for {n} texts")
    classes, y = np.unique(labels, return_inverse=True)
    if len(classes) < 2:
        raise ValueError(f"{name}: needs at least 2 classes, got {classes.tolist()}")
    return classes, y.ravel()


def stratified_folds(y, n_folds: int, seed: int = 0) -> np.ndarray:
    """Fold number ``0..n_folds-1`` of each item ``(n,)``: each fold keeps the class shares of ``y``.

    The members of each class are shuffled (seeded) and dealt out to the folds like cards.
    Defined in chapter 09.
    """
    y = np.asarray(y)
    rng = np.random.default_rng(seed)
    fold = np.empty(len(y), dtype=np.int64)
    for c, cls in enumerate(np.unique(y)):
        members = rng.permutation(np.flatnonzero(y == cls))
        fold[members] = (np.arange(len(members)) + c) % n_folds  # start each class at another fold
    return fold


def _row_space(X_train: np.ndarray) -> np.ndarray | None:
    """An orthonormal basis ``(d, r)`` of the span of the training rows, or None when d <= n.

    With an L2 penalty the best logistic-regression weights are a combination of the training
    rows (any part orthogonal to them changes no training score and only adds to ||w||^2), so
    fitting on the coordinates ``X @ basis`` gives exactly the same predictions, in r <= n
    dimensions instead of d: a big saving for TF-IDF's thousands of columns.
    """
    n, d = X_train.shape
    if d <= n:
        return None
    _, s, Vt = np.linalg.svd(X_train, full_matrices=False)   # Vt: (n, d)
    return Vt[s > s[0] * 1e-10].T if s[0] > 0 else Vt[:1].T


class ClassificationTask(_TextListTask):
    """A linear probe: can a logistic regression read the label off the (unit-length) embedding?

    ``n_folds``-fold stratified cross-validation: every text is predicted once, by a probe trained
    on the other folds, so every item gets a right/wrong (``per_item``). Scores: accuracy (main)
    and macro-F1; the bootstrap resamples texts. The probe is scikit-learn's
    ``LogisticRegression`` (L-BFGS on a convex loss: one optimum, whoever runs it), the same for
    every model. Its inverse penalty ``C`` is a number, or a grid (default) from which each outer
    fold picks the best by an inner ``inner_folds``-fold cross-validation *of its training part*:
    the test fold never takes part in any choice. Defined in chapter 09.
    """

    kind, metric = "classification", "accuracy"

    def __init__(self, name: str, texts: Sequence[str], labels, n_folds: int = 5,
                 C: float | Sequence[float] = (0.1, 1.0, 10.0, 100.0), inner_folds: int = 3, **kw):
        super().__init__(name, **kw)
        self._texts = text_list(texts, "texts")
        self.classes, self.y = _labels(labels, len(self._texts), name)
        smallest = np.bincount(self.y).min()
        if n_folds < 2 or smallest < n_folds:
            raise ValueError(f"{name}: {n_folds}-fold cross-validation needs n_folds >= 2 and at least n_folds texts "
                             f"per class; the smallest class has {smallest}. Lower n_folds or add texts")
        self.Cs = (float(C),) if np.isscalar(C) else tuple(float(c) for c in C)
        if not self.Cs or min(self.Cs) <= 0:
            raise ValueError(f"{name}: C must be a positive number or a non-empty list of them, got {C!r}")
        if len(self.Cs) > 1 and (inner_folds < 2 or smallest * (n_folds - 1) // n_folds < inner_folds):
            raise ValueError(f"{name}: choosing C needs inner_folds >= 2 and at least inner_folds texts per class in "
                             "each training part; pass a single C or add texts")
        self.n_folds, self.inner_folds = int(n_folds), int(inner_folds)

    def folds(self) -> np.ndarray:
        """Outer fold of each text ``(n,)`` (:func:`stratified_folds`, the task's seed)."""
        return stratified_folds(self.y, self.n_folds, self.seed)

    def _fit(self, X: np.ndarray, y: np.ndarray, C: float):
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(C=C, max_iter=5000).fit(X, y)

    def choose_C(self, X: np.ndarray, y: np.ndarray) -> float:
        """The C of the grid with the best inner cross-validated accuracy on ``(X, y)`` (ties: the smaller C)."""
        if len(self.Cs) == 1:
            return self.Cs[0]
        inner = stratified_folds(y, self.inner_folds, self.seed + 1)
        acc = [np.mean([(self._fit(X[inner != f], y[inner != f], C).predict(X[inner == f]) == y[inner == f]).mean()
                        for f in range(self.inner_folds)]) for C in self.Cs]
        return self.Cs[int(np.argmax(acc))]

    def run(self, model, name: str | None = None) -> dict:
        """Cross-validated probe accuracy (main score; ``per_item`` is 1 for right, 0 for wrong), macro-F1
        and the median chosen C (``C_median``); the result ``dict`` of :class:`Task`."""
        from threadpoolctl import threadpool_limits

        model = self._checked(model, name)
        X = _unit_rows(model.encode(self._texts, self.name))
        with threadpool_limits(1, user_api="blas"):
            # The probes are small problems: one BLAS thread is faster than several that wait for
            # each other (ten times faster when other programs share the cores).
            pred, chosen = self._cross_validate(X)
        correct = (pred == self.y).astype(np.float64)
        metrics = {"accuracy": correct.mean(), "macro_f1": macro_f1(self.y, pred),
                   "C_median": float(np.median(chosen))}
        reps = bootstrap(correct, idx=self.resamples())
        return self._result(model, correct.mean(), metrics, reps, per_item=correct)

    def _cross_validate(self, X: np.ndarray) -> tuple[np.ndarray, list[float]]:
        """Out-of-fold predictions ``(n,)`` and the C chosen in each fold."""
        fold, pred, chosen = self.folds(), np.empty_like(self.y), []
        for f in range(self.n_folds):
            train, test = fold != f, fold == f
            Xtr, Xte = X[train], X[test]
            basis = _row_space(Xtr)
            if basis is not None:                  # same probe, fewer columns (see _row_space)
                Xtr, Xte = Xtr @ basis, Xte @ basis
            C = self.choose_C(Xtr, self.y[train])
            chosen.append(C)
            pred[test] = self._fit(Xtr, self.y[train], C).predict(Xte)
        return pred, chosen


class ClusteringTask(_TextListTask):
    """k-means on the (unit-length) embeddings, k = the number of classes, scored by V-measure.

    k-means depends on its start, so it runs once per seed in ``seeds`` (each with ``n_init``
    starts) and the score is the mean V-measure. The bootstrap resamples texts and re-scores
    the fixed cluster assignments: the interval covers which texts were sampled, and
    ``metrics["v_measure_seed_std"]`` reports the spread over k-means seeds. Defined in chapter 09.
    """

    kind, metric = "clustering", "v_measure"

    def __init__(self, name: str, texts: Sequence[str], labels, seeds: Sequence[int] = (0, 1, 2), n_init: int = 3,
                 **kw):
        super().__init__(name, **kw)
        self._texts = text_list(texts, "texts")
        self.classes, self.y = _labels(labels, len(self._texts), name)
        if not seeds:
            raise ValueError(f"{name}: give at least one k-means seed")
        self.seeds, self.n_init = tuple(int(s) for s in seeds), int(n_init)

    def run(self, model, name: str | None = None) -> dict:
        """Mean V-measure over the k-means seeds, with homogeneity, completeness and
        ``v_measure_seed_std``; the result ``dict`` of :class:`Task` (``per_item`` None)."""
        from sklearn.cluster import KMeans

        model = self._checked(model, name)
        X = _unit_rows(model.encode(self._texts, self.name))
        k = len(self.classes)
        assignments = [KMeans(n_clusters=k, n_init=self.n_init, random_state=s).fit_predict(X) for s in self.seeds]
        hcv = np.array([_hcv(_contingency_codes(self.y, a, k, k)) for a in assignments])  # (seeds, 3)

        def on_items(i):
            return float(np.mean([_hcv(_contingency_codes(self.y[i], a[i], k, k))[2] for a in assignments]))

        reps = bootstrap(statistic=on_items, n=self.n_items, idx=self.resamples())
        metrics = {"v_measure": hcv[:, 2].mean(), "homogeneity": hcv[:, 0].mean(), "completeness": hcv[:, 1].mean(),
                   "v_measure_seed_std": hcv[:, 2].std()}
        return self._result(model, hcv[:, 2].mean(), metrics, reps)


# --- the TF-IDF baseline -------------------------------------------------------------------------


class TfidfEmbedder:
    """TF-IDF vectors (chapter 01's weighting) as a baseline embedder: ``fit(texts)``, ``encode(texts)``.

    tf = raw count of the word in the text; idf = ln((1 + N) / (1 + df)) + 1 (smoothed: as if one
    extra document held every word); rows scaled to unit length. Words come from
    ``minilib.text.tokenize``; words seen in fewer than ``min_df`` fitted texts are dropped, and
    words never fitted are ignored at encode time (a text with none left is a zero row). The
    vocabulary is sorted, so the matrix equals scikit-learn's ``TfidfVectorizer(tokenizer=tokenize,
    lowercase=False, token_pattern=None, min_df=min_df)``. ``encode`` returns a dense float32
    ``(n, V)`` array. Defined in chapter 09.
    """

    def __init__(self, min_df: int = 1, tokenizer: Callable[[str], list[str]] = tokenize):
        if int(min_df) != min_df or min_df < 1:
            raise ValueError(f"min_df must be a positive integer (a number of texts), got {min_df!r}")
        self.min_df, self.tokenizer = int(min_df), tokenizer
        self.vocab: dict[str, int] | None = None
        self.idf: np.ndarray | None = None

    def fit(self, texts: Sequence[str]) -> "TfidfEmbedder":
        """Learn the sorted vocabulary (words in at least ``min_df`` of ``texts``) and its idf; returns ``self``.

        Raises ``ValueError`` when there is no text, or no word is left."""
        texts = text_list(texts, "texts")
        if not texts:
            raise ValueError("fit needs at least one text")
        df: dict[str, int] = {}
        for t in texts:
            for w in set(self.tokenizer(t)):
                df[w] = df.get(w, 0) + 1
        words = sorted(w for w, c in df.items() if c >= self.min_df)
        if not words:
            raise ValueError(f"no word occurs in at least min_df={self.min_df} texts: lower min_df or give more text")
        self.vocab = {w: i for i, w in enumerate(words)}
        counts = np.array([df[w] for w in words], dtype=np.float64)
        self.idf = np.log((1 + len(texts)) / (1 + counts)) + 1
        return self

    @property
    def dim(self) -> int:
        """Vocabulary size ``V``, the width of the rows of :meth:`encode`; ``RuntimeError`` before :meth:`fit`."""
        if self.vocab is None:
            raise RuntimeError("the TF-IDF model is not fitted: call fit(texts) first")
        return len(self.vocab)

    def encode(self, texts: Sequence[str], batch_size: int | None = None) -> np.ndarray:
        """Unit-length TF-IDF rows ``(n, V)`` float32 of ``texts``; a text with no fitted word is a zero row.

        ``batch_size`` is accepted for the common ``encode`` signature and ignored."""
        import scipy.sparse as sp

        dim = self.dim
        texts = text_list(texts, "texts")
        rows, cols = [], []
        for i, t in enumerate(texts):
            ids = [self.vocab[w] for w in self.tokenizer(t) if w in self.vocab]
            rows.extend([i] * len(ids))
            cols.extend(ids)
        tf = sp.csr_matrix((np.ones(len(cols)), (rows, cols)), shape=(len(texts), dim))  # duplicates summed
        X = (tf @ sp.diags(self.idf)).toarray()
        return _unit_rows(X).astype(np.float32) if len(texts) else X.astype(np.float32)

    def __repr__(self) -> str:
        state = f"{len(self.vocab)} words" if self.vocab else "not fitted"
        return f"TfidfEmbedder(min_df={self.min_df}, {state})"


# --- running many models on many tasks ----------------------------------------------------------


def evaluate(models: Mapping[str, object], tasks: Sequence[Task], progress: bool = True):
    """Run every model on every task: a ``pandas.DataFrame`` with one row per model.

    Columns are ``(task name, "score" | "lo" | "hi")``; :func:`table` formats it with the
    intervals. ``df.attrs["results"][(model, task)]`` holds each full result (for :func:`compare`).
    Each model is checked (``encode([])``, shapes, finite values) and its encodings are cached
    across tasks. Defined in chapter 09.
    """
    import pandas as pd
    from tqdm.auto import tqdm

    if not models:
        raise ValueError("give at least one model: {name: model}")
    if not tasks:
        raise ValueError("give at least one task")
    names = [t.name for t in tasks]
    if len(set(names)) != len(names):
        raise ValueError(f"task names must be unique, got {names}")
    results, rows = {}, {}
    bar = tqdm(total=len(models) * len(tasks), desc="benchmark", disable=not progress)
    for mname, model in models.items():
        checked = CheckedModel(model, mname)
        row = {}
        for task in tasks:
            bar.set_postfix_str(f"{mname} / {task.name}")
            r = task.run(checked)
            results[(mname, task.name)] = r
            row[(task.name, "score")], (row[(task.name, "lo")], row[(task.name, "hi")]) = r["score"], r["ci"]
            bar.update()
        rows[mname] = row
    bar.close()
    df = pd.DataFrame.from_dict(rows, orient="index")
    df.columns = pd.MultiIndex.from_tuples(df.columns, names=["task", "stat"])
    df.attrs["results"] = results
    df.attrs["metrics"] = {t.name: t.metric for t in tasks}
    return df


def table(df, decimals: int = 3):
    """The :func:`evaluate` frame as text cells ``"0.812 [0.780, 0.840]"``, one column per task.

    Defined in chapter 09.
    """
    import pandas as pd

    tasks = list(dict.fromkeys(df.columns.get_level_values(0)))
    f = f"{{:.{decimals}f}}"
    out = pd.DataFrame(index=df.index)
    for t in tasks:
        out[t] = [f"{f.format(s)} [{f.format(lo)}, {f.format(hi)}]"
                  for s, lo, hi in zip(df[(t, "score")], df[(t, "lo")], df[(t, "hi")])]
    return out


def win_rates(df):
    """How often each model would be the best on each task had other items been sampled.

    From :func:`evaluate`'s frame: for every task, the share of its bootstrap resamples (shared by
    all models) on which each model scores highest (ties share the win). A model winning, say,
    55 % of the resamples is not a clear winner. Rows models, columns tasks. Defined in chapter 09.
    """
    import pandas as pd

    results = df.attrs["results"]
    tasks = list(dict.fromkeys(df.columns.get_level_values(0)))
    out = pd.DataFrame(index=df.index, columns=tasks, dtype=float)
    for t in tasks:
        R = np.stack([results[(m, t)]["replicates"] for m in df.index])      # (models, n_boot)
        best = R == np.nanmax(R, axis=0, keepdims=True)
        out[t] = (best / best.sum(0, keepdims=True)).mean(1)
    return out


def compare(result_a: dict, result_b: dict, n_resamples: int = 10_000, seed: int = 0, alpha: float = 0.05) -> dict:
    """Paired significance test of two models' results on the same task.

    Scores that are means of per-item values (retrieval, classification) use approximate
    randomisation (:func:`paired_test`); the others (Spearman, V-measure) the paired bootstrap
    on the task's shared resamples (:func:`paired_bootstrap_test`). Returns ``delta`` (a - b),
    its bootstrap interval ``ci``, the two-sided ``p`` and the ``method``. Defined in chapter 09.
    """
    if result_a["task"] != result_b["task"] or result_a["n"] != result_b["n"] or result_a["seed"] != result_b["seed"]:
        raise ValueError(f"compare needs two results of the same task (same items and resamples), got "
                         f"{result_a['task']!r} (n={result_a['n']}) and {result_b['task']!r} (n={result_b['n']})")
    delta = result_a["score"] - result_b["score"]
    diff = result_a["replicates"] - result_b["replicates"]
    if result_a["per_item"] is not None and result_b["per_item"] is not None:
        p = paired_test(result_a["per_item"], result_b["per_item"], n_resamples, seed)
        method = "approximate randomisation"
    else:
        p = paired_bootstrap_test(result_a["replicates"], result_b["replicates"], result_a["score"], result_b["score"])
        method = "paired bootstrap"
    return {"task": result_a["task"], "a": result_a["model"], "b": result_b["model"], "metric": result_a["metric"],
            "delta": float(delta), "ci": percentile_interval(diff, alpha, delta), "p": float(p), "method": method}


# --- the book's tasks, built from offline data ---------------------------------------------------


def truncate_words(text: str, max_words: int | None) -> str:
    """The first ``max_words`` whitespace-separated words of ``text``, joined by single spaces.

    Defined in chapter 09.
    """
    words = text.split()
    return " ".join(words if max_words is None else words[:max_words])


def lee_sts(**kw) -> MatrixSTSTask:
    """The Lee et al. (2005) documents: 50 news texts, all 1,225 pairs against the human
    similarity matrix. Defined in chapter 09."""
    lee = data.load("lee")
    return MatrixSTSTask("Lee STS", lee["docs"], lee["sim"], **kw)


def polarity_classification(n_folds: int = 5, **kw) -> ClassificationTask:
    """Sentence polarity (Pang & Lee): 200 movie-review sentences, positive or negative.
    Defined in chapter 09."""
    texts, labels = data.load("polarity")
    return ClassificationTask("Polarity", texts, labels, n_folds=n_folds, **kw)


@functools.lru_cache(maxsize=1)
def _bbc_news() -> tuple[tuple[str, ...], tuple[str, ...]]:
    texts, labels = data.load("bbc_news")      # 2,225 files: read them once per session
    return tuple(texts), tuple(labels)


def bbc_articles(n: int | None = None, seed: int = 0, max_words: int | None = 200) -> tuple[list, list, list]:
    """``(headlines, bodies, labels)`` of BBC News articles, duplicates removed, ``n`` drawn at random
    per topic (stratified).

    The first line of an article is its headline; the body is the rest, cut to its first
    ``max_words`` words (all-MiniLM-L6-v2 reads 256 word pieces, about 200 words), so every
    model sees the same text. The data set holds articles published twice: an article whose
    headline or body was already seen is dropped (else a headline would have two right
    answers). Defined in chapter 09.
    """
    texts, labels = _bbc_news()
    heads, bodies, labs, seen = [], [], [], set()
    for t, lab in zip(texts, labels):
        head, _, body = t.strip().partition("\n")
        head, body = head.strip(), truncate_words(body, max_words)
        if not head or not body or head in seen or body in seen:
            continue
        seen.update((head, body))
        heads.append(head), bodies.append(body), labs.append(lab)
    if n is not None:
        if n < 10 or n > len(heads):
            raise ValueError(f"n must be between 10 and {len(heads)} (the distinct articles), got {n}")
        # A stratified sample: each topic keeps its share (largest remainders get the leftover
        # places), and a smaller n takes the first articles of the same per-topic shuffles.
        lab = np.array(labs)
        classes, counts = np.unique(lab, return_counts=True)
        share = n * counts / counts.sum()
        quota = np.floor(share).astype(int)
        quota[np.argsort(-(share - quota), kind="stable")[: n - quota.sum()]] += 1
        rng = np.random.default_rng(seed)
        keep = np.sort(np.concatenate([rng.permutation(np.flatnonzero(lab == c))[:q] for c, q in zip(classes, quota)]))
        heads, bodies, labs = [heads[i] for i in keep], [bodies[i] for i in keep], [labs[i] for i in keep]
    return heads, bodies, labs


def bbc_classification(n: int | None = None, seed: int = 0, max_words: int | None = 200, n_folds: int = 5,
                       **kw) -> ClassificationTask:
    """BBC News bodies (no headline) -> one of 5 topics. Defined in chapter 09."""
    _, bodies, labels = bbc_articles(n, seed, max_words)
    return ClassificationTask("BBC classification", bodies, labels, n_folds=n_folds, seed=seed, **kw)


def bbc_clustering(n: int | None = None, seed: int = 0, max_words: int | None = 200, **kw) -> ClusteringTask:
    """BBC News bodies clustered into 5 groups, compared with the 5 topics. Defined in chapter 09."""
    _, bodies, labels = bbc_articles(n, seed, max_words)
    return ClusteringTask("BBC clustering", bodies, labels, seed=seed, **kw)


def bbc_retrieval(n: int | None = None, seed: int = 0, max_words: int | None = 200, **kw) -> RetrievalTask:
    """Headline -> its article: each of the ``n`` headlines is a query whose one relevant
    document is its own body, among the ``n`` bodies. Defined in chapter 09."""
    heads, bodies, _ = bbc_articles(n, seed, max_words)
    return RetrievalTask("BBC retrieval", heads, bodies, {i: {i: 1} for i in range(len(heads))}, seed=seed, **kw)


def _wiki_plain() -> list[tuple[str, str]]:
    """``(title, text without markup)`` of gensim's Wikipedia articles, cleaned once and cached
    (cleaning the markup takes seconds)."""
    import json

    def build(tmp):
        arts = [(title, strip_wiki_markup(markup)) for title, markup in data.load("enwiki_sample")]
        tmp.write_text(json.dumps(arts), encoding="utf-8")

    return [tuple(a) for a in json.loads(data.cached_derived("bench-wiki-plain-v1.json", build).read_text("utf-8"))]


_SENTENCE_END = re.compile(r"[.!?](?=\s+[\"'(\[]?[A-Z0-9])")


def first_sentence(text: str, min_words: int = 6) -> tuple[str, str]:
    """``(first sentence, rest)`` of a running text, whitespace collapsed.

    The first sentence ends at the first ``.``, ``!`` or ``?`` followed by a space and a capital
    or digit, once it holds ``min_words`` words (so "Dr. Smith" or "U.S. Army" rarely cut it
    short). A text with no such end is all first sentence. Defined in chapter 09.
    """
    text = " ".join(text.split())
    for m in _SENTENCE_END.finditer(text):
        head = text[: m.end()]
        if len(head.split()) >= min_words:
            return head, text[m.end():].strip()
    return text, ""


def wiki_retrieval(max_words: int | None = 200, min_words: int = 50, **kw) -> RetrievalTask:
    """Wikipedia first sentence -> the rest of its article, for the articles gensim ships.

    Markup stripped (``text.strip_wiki_markup``); the query is the article's first sentence, its
    one relevant document the next ``max_words`` words, among the same passages of all other
    articles. Articles with fewer than ``min_words`` words after the first sentence are left
    out. Defined in chapter 09.
    """
    queries, docs = {}, {}
    for title, plain in _wiki_plain():
        head, rest = first_sentence(plain)
        rest = truncate_words(rest, max_words)
        if len(rest.split()) >= min_words and len(head.split()) >= 3:
            queries[title], docs[title] = head, rest
    return RetrievalTask("Wiki retrieval", queries, docs, {t: {t: 1} for t in queries}, **kw)


def all_texts(tasks: Sequence[Task]) -> list[str]:
    """Every distinct text of ``tasks``, in order (to fit an unsupervised baseline such as TF-IDF:
    it sees the texts, never the labels or the relevance judgements). Defined in chapter 09."""
    return list(dict.fromkeys(t for task in tasks for t in task.texts))
