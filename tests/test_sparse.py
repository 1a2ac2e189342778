"""minilib.sparse: BM25 from scratch, checked against rank_bm25 (the reference) and by hand."""
import math

import numpy as np
import pytest

from minilib import sparse
from minilib.text import tokenize

rank_bm25 = pytest.importorskip("rank_bm25")

CORPUS = [
    "the cat sat on the mat",
    "the dog sat on the log",
    "cats and dogs are friends",
    "a quokka is a small wallaby",
    "the the the mat mat",
    "dogs chase cats and the cat runs",
    "wallaby and quokka live in australia",
]
QUERIES = ["the cat", "quokka wallaby", "dogs and cats", "mat mat the", "sat", "australia quokka cat dog"]


@pytest.mark.parametrize("k1,b,eps", [(1.5, 0.75, 0.25), (1.2, 0.3, 0.5), (0.9, 1.0, 0.0)])
def test_scores_equal_rank_bm25_okapi(k1, b, eps):
    docs = [tokenize(t) for t in CORPUS]
    ref = rank_bm25.BM25Okapi(docs, k1=k1, b=b, epsilon=eps)
    ours = sparse.BM25(k1=k1, b=b, epsilon=eps).fit(CORPUS)
    # "the" is in 4 of 7 documents: its idf is negative and gets the epsilon floor in both.
    assert ours.idf[ours.vocabulary["the"]] == pytest.approx(eps * ref.average_idf, abs=1e-12)
    assert ours.idf[ours.vocabulary["the"]] == pytest.approx(ref.idf["the"], abs=1e-12)
    for q in QUERIES:
        np.testing.assert_allclose(ours.scores(q), ref.get_scores(tokenize(q)), rtol=0, atol=1e-9)
    np.testing.assert_allclose(ours.score_matrix(QUERIES), np.stack([ref.get_scores(tokenize(q)) for q in QUERIES]),
                               rtol=0, atol=1e-9)


def test_lucene_idf_by_hand():
    # N = 3 documents; "a" is in all 3, "b" in 1. Lucene: idf = log(1 + (N - df + 0.5) / (df + 0.5)).
    bm = sparse.BM25(idf="lucene", k1=1.2, b=0.75).fit([["a", "b"], ["a"], ["a", "a", "c"]])
    idf_a, idf_b = math.log(1 + 0.5 / 3.5), math.log(1 + 2.5 / 1.5)
    assert bm.idf[bm.vocabulary["a"]] == pytest.approx(idf_a)
    assert bm.idf[bm.vocabulary["b"]] == pytest.approx(idf_b)
    avgdl = 6 / 3
    # Document 0 has |d| = 2, tf(a) = tf(b) = 1; the query "a b" sums both terms.
    norm0 = 1.2 * (1 - 0.75 + 0.75 * 2 / avgdl)
    expected0 = (idf_a + idf_b) * 1 * 2.2 / (1 + norm0)
    # Document 2 has |d| = 3, tf(a) = 2, no b.
    norm2 = 1.2 * (1 - 0.75 + 0.75 * 3 / avgdl)
    expected2 = idf_a * 2 * 2.2 / (2 + norm2)
    s = bm.scores(["a", "b"])
    assert s[0] == pytest.approx(expected0, abs=1e-12) and s[2] == pytest.approx(expected2, abs=1e-12)
    assert (bm.idf > 0).all()


def test_search_matches_scores_and_breaks_ties_by_id():
    bm = sparse.BM25().fit(CORPUS)
    S, I = bm.search(QUERIES, 3)
    full = bm.score_matrix(QUERIES)
    for q in range(len(QUERIES)):
        order = np.argsort(-full[q], kind="stable")[:3]
        np.testing.assert_array_equal(I[q], order)
        np.testing.assert_allclose(S[q], full[q][order], rtol=1e-6)
    # Two identical documents tie: the smaller id comes first.
    bm2 = sparse.BM25().fit(["x y", "x y", "z", "w", "v"])
    assert bm2.search(["x"], 2)[1].tolist() == [[0, 1]]


def test_unknown_words_score_zero_not_nan_and_k_pads():
    bm = sparse.BM25().fit(CORPUS)
    s = bm.scores("zebra xylophone")
    assert s.shape == (len(CORPUS),) and np.all(s == 0) and not np.isnan(s).any()
    assert np.all(bm.scores([]) == 0)
    S, I = bm.search(["cat"], 10)
    assert I.shape == (1, 10) and (I[0, 7:] == -1).all() and np.isneginf(S[0, 7:]).all()


def test_repeated_query_words_count_each_time():
    bm = sparse.BM25().fit(CORPUS)
    np.testing.assert_allclose(bm.scores("quokka quokka"), 2 * bm.scores("quokka"))


def test_errors_name_the_fix():
    with pytest.raises(ValueError, match="empty"):
        sparse.BM25().fit([])
    with pytest.raises(ValueError, match="every document is empty"):
        sparse.BM25().fit(["...", ""])
    with pytest.raises(ValueError, match="not fitted"):
        sparse.BM25().scores("cat")
    with pytest.raises(TypeError, match="wrap it"):
        sparse.BM25().fit("one document as a string")
    with pytest.raises(ValueError, match="idf must be one of"):
        sparse.BM25(idf="tfidf")
    with pytest.raises(ValueError, match="b must be"):
        sparse.BM25(b=2)
    bm = sparse.BM25().fit(CORPUS)
    with pytest.raises(ValueError, match="k must be"):
        bm.search(["cat"], 0)
    with pytest.raises(TypeError, match="wrap it"):
        bm.search("cat", 2)
    with pytest.raises(TypeError, match="str or a list of str"):
        bm.scores(42)


def test_n_docs_counts_the_fitted_collection():
    bm = sparse.BM25()
    assert bm.n_docs == 0
    assert bm.fit(CORPUS).n_docs == len(CORPUS)


def test_k1_and_query_list_errors_name_the_fix():
    with pytest.raises(ValueError, match=r"k1 must be >= 0 \(0 ignores term frequency\), got -0.5"):
        sparse.BM25(k1=-0.5)
    with pytest.raises(ValueError, match="k1 must be >= 0.*got nan"):
        sparse.BM25(k1=float("nan"))
    bm = sparse.BM25().fit(CORPUS)
    with pytest.raises(TypeError, match=r"pass a list of queries, got one str: wrap it, \[query\]"):
        bm.query_matrix("the cat")
    with pytest.raises(TypeError, match=r"wrap it, \[query\]"):
        bm.score_matrix("the cat")
    with pytest.raises(ValueError, match="no queries given: pass at least one"):
        bm.score_matrix([])
    with pytest.raises(ValueError, match="no queries given: pass at least one"):
        bm.search([], 2)
