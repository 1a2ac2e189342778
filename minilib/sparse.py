"""BM25: sparse retrieval, one dimension per word of the vocabulary.

A document is a vector over the whole vocabulary whose non-zero entries are its words, weighted
by how often they occur (saturating, normalised by length) and how rare they are in the
collection (idf). A query is a bag of words, and its score against a document is the sum of the
document's weights over the query's words (Robertson & Zaragoza 2009)::

    score(q, d) = sum_{t in q} idf(t) * tf(t, d) (k1 + 1) / (tf(t, d) + k1 (1 - b + b |d| / avgdl))

Two idf variants:

* ``"okapi"``: ``log((N - df + 0.5) / (df + 0.5))``, negative for words in more than half of
  the documents; those get ``epsilon`` times the mean idf instead, the floor of ``rank_bm25``'s
  ``BM25Okapi`` (the reference our tests match to 1e-9);
* ``"lucene"``: ``log(1 + (N - df + 0.5) / (df + 0.5))``, always positive (Lucene, Elasticsearch).

The weights of all documents form one SciPy sparse matrix ``(n_docs, vocabulary)``, so scoring a
batch of queries is one sparse matrix product. The interface follows :mod:`minilib.index`:
``search(queries, k) -> (scores, ids)``.

Defined in chapter 13.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import scipy.sparse as sp

from .text import tokenize

__all__ = ["IDF", "BM25"]

IDF = ("okapi", "lucene")


class BM25:
    """Okapi BM25 over a fixed collection, as a sparse document-by-term weight matrix.

    ``BM25(k1=1.5, b=0.75, idf="okapi", epsilon=0.25)``; ``fit(docs)`` takes texts (tokenized with
    ``tokenizer``, default :func:`minilib.text.tokenize`) or lists of tokens; ``scores(query)``
    gives ``(n_docs,)``; ``search(queries, k)`` gives ``(scores, ids)``, both ``(nq, k)``, best
    first, ties by the smaller id. Query words the collection never saw add nothing (a query of
    unknown words scores 0 everywhere); a repeated query word counts once per occurrence.

    Defined in chapter 13.
    """

    def __init__(self, k1: float = 1.5, b: float = 0.75, idf: str = "okapi", epsilon: float = 0.25,
                 tokenizer: Callable[[str], list[str]] = tokenize):
        if not k1 >= 0:
            raise ValueError(f"k1 must be >= 0 (0 ignores term frequency), got {k1!r}")
        if not 0 <= b <= 1:
            raise ValueError(f"b must be in [0, 1] (0: no length normalisation, 1: full), got {b!r}")
        if idf not in IDF:
            raise ValueError(f"idf must be one of {IDF}, got {idf!r}")
        self.k1, self.b, self.idf_kind, self.epsilon, self.tokenizer = k1, b, idf, epsilon, tokenizer
        self.vocabulary: dict[str, int] = {}
        self.weights: sp.csr_matrix | None = None   # (n_docs, V) BM25 weight of each term in each document

    def _tokens(self, text, what: str) -> list[str]:
        if isinstance(text, str):
            return self.tokenizer(text)
        if isinstance(text, Sequence) and all(isinstance(t, str) for t in text):
            return list(text)
        raise TypeError(f"each {what} must be a str or a list of str tokens, got {type(text).__name__}")

    @property
    def n_docs(self) -> int:
        """The number of documents given to :meth:`fit` (0 before it)."""
        return 0 if self.weights is None else self.weights.shape[0]

    def fit(self, docs) -> "BM25":
        """Count terms, compute idf and the weight matrix for ``docs`` (texts or token lists)."""
        if isinstance(docs, str):
            raise TypeError("fit takes a list of documents, got one str: wrap it, [text]")
        docs = [self._tokens(d, "document") for d in docs]
        if not docs:
            raise ValueError("the collection is empty: fit needs at least one document")
        vocab: dict[str, int] = {}
        rows, cols = [], []
        for i, doc in enumerate(docs):
            for t in doc:
                cols.append(vocab.setdefault(t, len(vocab)))
                rows.append(i)
        if not vocab:
            raise ValueError("every document is empty after tokenization: there is nothing to index")
        N, V = len(docs), len(vocab)
        # Term frequencies: duplicate (row, col) entries are summed when converting to CSR.
        tf = sp.csr_matrix((np.ones(len(cols)), (rows, cols)), shape=(N, V), dtype=np.float64)
        tf.sum_duplicates()
        doc_len = np.array([len(d) for d in docs], dtype=np.float64)
        self.avgdl = doc_len.mean()
        df = np.bincount(tf.indices, minlength=V).astype(np.float64)     # documents holding each term
        self.idf = self._idf(df, N)
        # BM25 weight of each stored (doc, term): idf * tf (k1 + 1) / (tf + k1 (1 - b + b |d| / avgdl)).
        norm = self.k1 * (1 - self.b + self.b * doc_len / self.avgdl)   # (N,) per-document constant
        f = tf.data
        per_row = np.repeat(norm, np.diff(tf.indptr))                    # the constant of each entry's row
        w = sp.csr_matrix((self.idf[tf.indices] * f * (self.k1 + 1) / (f + per_row), tf.indices, tf.indptr),
                          shape=(N, V))
        self.vocabulary, self.doc_len, self.df, self.weights = vocab, doc_len, df, w
        return self

    def _idf(self, df: np.ndarray, N: int) -> np.ndarray:
        if self.idf_kind == "lucene":
            return np.log1p((N - df + 0.5) / (df + 0.5))
        idf = np.log(N - df + 0.5) - np.log(df + 0.5)   # rank_bm25's form of log((N - df + .5) / (df + .5))
        # A word in more than half of the documents would *lower* a score; Okapi as rank_bm25 does it
        # replaces those negative values with a small positive floor, epsilon x the mean idf.
        floor = self.epsilon * idf.mean()
        return np.where(idf < 0, floor, idf)

    def _require_fit(self) -> None:
        if self.weights is None:
            raise ValueError("BM25 is not fitted: call fit(documents) first")

    def query_matrix(self, queries) -> sp.csr_matrix:
        """Queries as term counts over the vocabulary: ``(nq, V)`` sparse (unknown words dropped)."""
        self._require_fit()
        if isinstance(queries, str):
            raise TypeError("pass a list of queries, got one str: wrap it, [query]")
        rows, cols = [], []
        for i, q in enumerate(queries):
            for t in self._tokens(q, "query"):
                j = self.vocabulary.get(t)
                if j is not None:
                    rows.append(i)
                    cols.append(j)
        nq = len(queries)
        if nq == 0:
            raise ValueError("no queries given: pass at least one")
        return sp.csr_matrix((np.ones(len(cols)), (rows, cols)), shape=(nq, len(self.vocabulary)))

    def scores(self, query) -> np.ndarray:
        """BM25 score of one query (text or tokens) against every document: ``(n_docs,)`` float64."""
        return self.score_matrix([query])[0]

    def score_matrix(self, queries) -> np.ndarray:
        """Scores of every query against every document: ``(nq, n_docs)`` float64, one sparse product."""
        return np.asarray((self.query_matrix(queries) @ self.weights.T).todense())

    def search(self, queries, k: int, batch: int = 1024) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` best documents per query: ``(scores (nq, k) float32, ids (nq, k) int64)``, best
        first, ties by the smaller id; ``k`` above ``n_docs`` pads with id ``-1`` and score ``-inf``."""
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k must be a positive int, got {k!r}")
        self._require_fit()
        queries = list(queries) if not isinstance(queries, str) else queries
        if isinstance(queries, str):
            raise TypeError("pass a list of queries, got one str: wrap it, [query]")
        out_s, out_i = [], []
        for s in range(0, len(queries), batch):
            S = self.score_matrix(queries[s:s + batch])                   # (b, n_docs)
            kk = min(k, S.shape[1])
            ids = np.argsort(-S, axis=1, kind="stable")[:, :kk]
            vals = np.take_along_axis(S, ids, axis=1)
            if kk < k:
                ids = np.concatenate([ids, np.full((len(S), k - kk), -1)], axis=1)
                vals = np.concatenate([vals, np.full((len(S), k - kk), -math.inf)], axis=1)
            out_s.append(vals.astype(np.float32))
            out_i.append(ids.astype(np.int64))
        if not out_s:
            raise ValueError("no queries given: pass at least one")
        return np.concatenate(out_s), np.concatenate(out_i)
