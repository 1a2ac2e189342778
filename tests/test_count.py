"""Tests for minilib.count (chapter 02): co-occurrence, PPMI, truncated SVD, LSA."""
import numpy as np
import pytest
import scipy.sparse as sp
from scipy.sparse.linalg import svds
from sklearn.decomposition import TruncatedSVD

from minilib import count


def naive_cooccurrence(docs, V, window, weighting="harmonic", symmetric=True):
    """The definition, as a double loop over positions."""
    C = np.zeros((V, V))
    for doc in docs:
        for t, center in enumerate(doc):
            for s, context in enumerate(doc):
                d = t - s  # context sits d positions to the left of the centre
                if d == 0 or abs(d) > window or (not symmetric and d < 0):
                    continue
                C[center, context] += 1.0 / abs(d) if weighting == "harmonic" else 1.0
    return C


@pytest.fixture
def toy_docs():
    rng = np.random.default_rng(0)
    return [rng.integers(0, 7, size=n) for n in (12, 1, 0, 5, 20)]


@pytest.mark.parametrize("weighting", ["harmonic", "uniform"])
@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("window", [1, 3, 30])
def test_cooccurrence_matches_double_loop(toy_docs, weighting, symmetric, window):
    C = count.cooccurrence(toy_docs, 7, window, weighting=weighting, symmetric=symmetric)
    assert sp.isspmatrix_csr(C) and C.shape == (7, 7)
    np.testing.assert_allclose(C.toarray(), naive_cooccurrence(toy_docs, 7, window, weighting, symmetric), atol=1e-12)


def test_cooccurrence_does_not_cross_documents():
    # "0 1" and "2 3" in two documents: 1 and 2 are adjacent only if the boundary leaks.
    C = count.cooccurrence([[0, 1], [2, 3]], 4, window=5).toarray()
    assert C[1, 2] == 0 and C[2, 1] == 0 and C[0, 1] == 1 and C[2, 3] == 1


def test_cooccurrence_bad_input():
    with pytest.raises(ValueError, match="no tokens"):
        count.cooccurrence([], 3, 2)
    with pytest.raises(ValueError, match="vocab_size"):
        count.cooccurrence([[0, 5]], 3, 2)
    with pytest.raises(ValueError, match="window"):
        count.cooccurrence([[0, 1]], 3, 0)
    with pytest.raises(TypeError, match="Vocab.encode"):
        count.cooccurrence([["the", "cat"]], 3, 2)
    with pytest.raises(ValueError, match="weighting"):
        count.cooccurrence([[0, 1]], 3, 2, weighting="gaussian")


def dense_ppmi(C, alpha, shift):
    """PPMI straight from the formula, on a dense matrix."""
    P = C / C.sum()
    pw = C.sum(1) / C.sum()
    pc = C.sum(0) ** alpha / (C.sum(0) ** alpha).sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        pmi = np.log(P) - np.log(pw)[:, None] - np.log(pc)[None, :] - np.log(shift)
    return np.where(C > 0, np.maximum(pmi, 0), 0.0)  # a zero count has PMI -inf -> 0


@pytest.mark.parametrize("alpha,shift", [(1.0, 1.0), (0.75, 1.0), (0.75, 5.0)])
def test_ppmi_matches_dense_formula(alpha, shift):
    rng = np.random.default_rng(1)
    C = rng.poisson(0.7, size=(15, 15)).astype(float) * rng.integers(1, 50, size=(15, 15))
    C[3] = 0  # an empty row must not break anything
    M = count.ppmi(sp.csr_matrix(C), alpha=alpha, shift=shift)
    np.testing.assert_allclose(M.toarray(), dense_ppmi(C, alpha, shift), rtol=0, atol=1e-12)
    assert M.data.min() > 0  # only positive entries are stored


def test_ppmi_smoothing_lowers_rare_contexts():
    # Context 1 is rare: smoothing (alpha < 1) inflates its probability, which lowers its PMI.
    C = np.array([[0, 10, 10, 1], [10, 0, 10, 0], [10, 10, 0, 0], [1, 0, 0, 0]], dtype=float)
    plain, smooth = count.ppmi(C, alpha=1.0).toarray(), count.ppmi(C, alpha=0.75).toarray()
    assert 0 < smooth[0, 3] < plain[0, 3]
    assert smooth[0, 1] > plain[0, 1]  # frequent contexts lose probability mass, gain PMI


def test_ppmi_bad_input():
    with pytest.raises(ValueError, match="square"):
        count.ppmi(sp.csr_matrix(np.ones((2, 3))))
    with pytest.raises(ValueError, match="empty"):
        count.ppmi(sp.csr_matrix((3, 3)))
    with pytest.raises(ValueError, match="non-negative"):
        count.ppmi(np.array([[1.0, -1.0], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="alpha"):
        count.ppmi(np.eye(2), alpha=0)


@pytest.fixture
def sparse_matrix():
    return sp.random(300, 200, density=0.05, random_state=np.random.RandomState(2), format="csr")


def test_truncated_svd_matches_sklearn_and_scipy(sparse_matrix):
    k = 10
    U, S, Vt = count.truncated_svd(sparse_matrix, k, n_iter=30, seed=0)
    assert U.shape == (300, k) and S.shape == (k,) and Vt.shape == (k, 200)
    ref = TruncatedSVD(n_components=k, algorithm="arpack", random_state=0).fit(sparse_matrix)
    np.testing.assert_allclose(S, ref.singular_values_, rtol=1e-5)
    _, S2, _ = svds(sparse_matrix, k=k, random_state=0)
    np.testing.assert_allclose(S, np.sort(S2)[::-1], rtol=1e-5)
    # Same subspace up to sign: |cos| of matching right singular vectors is 1.
    np.testing.assert_allclose(np.abs((Vt * ref.components_).sum(1)), 1.0, atol=1e-4)
    np.testing.assert_allclose(U.T @ U, np.eye(k), atol=1e-10)


def test_truncated_svd_dense_exact_and_deterministic():
    rng = np.random.default_rng(3)
    A = rng.standard_normal((40, 8)) @ rng.standard_normal((8, 30))  # rank 8
    U, S, Vt = count.truncated_svd(A, 8, seed=5)
    np.testing.assert_allclose(U * S @ Vt, A, atol=1e-9)
    np.testing.assert_allclose(S, np.linalg.svd(A, compute_uv=False)[:8], rtol=1e-10)
    U2, S2, Vt2 = count.truncated_svd(A, 8, seed=5)
    assert np.array_equal(U, U2) and np.array_equal(Vt, Vt2)


def test_truncated_svd_bad_input(sparse_matrix):
    with pytest.raises(ValueError, match="k must be"):
        count.truncated_svd(sparse_matrix, 0)
    with pytest.raises(ValueError, match="k must be"):
        count.truncated_svd(sparse_matrix, 201)
    with pytest.raises(ValueError, match="2-D"):
        count.truncated_svd(np.ones(5), 1)


@pytest.mark.parametrize("p", [0.0, 0.5, 1.0])
def test_svd_embeddings_weighting(sparse_matrix, p):
    U, S, _ = count.truncated_svd(sparse_matrix, 6, seed=0)
    X = count.svd_embeddings(sparse_matrix, 6, p=p, seed=0)
    assert X.shape == (300, 6) and X.dtype == np.float32
    np.testing.assert_allclose(X, U * S**p, rtol=1e-5, atol=1e-6)


def test_term_document_and_lsa():
    docs = [[0, 1, 1, 2], [2, 3], [0, 1, 4, 4, 4]]
    X = count.term_document(docs, 5)
    np.testing.assert_array_equal(X.toarray(), [[1, 0, 1], [2, 0, 1], [1, 1, 0], [0, 1, 0], [0, 0, 3]])
    words, doc_vecs = count.lsa(X, 2)
    assert words.shape == (5, 2) and doc_vecs.shape == (3, 2)
    # Words 0 and 1 occur in the same documents: their LSA vectors point the same way.
    cos = words[0] @ words[1] / np.linalg.norm(words[0]) / np.linalg.norm(words[1])
    assert cos > 0.99


def test_flat_ids_shift_iterations_and_empty_lsa_errors_name_the_fix(sparse_matrix):
    with pytest.raises(TypeError, match="not one flat array: wrap it in a list"):
        count.cooccurrence(np.array([0, 1, 2]), 3, 2)
    with pytest.raises(TypeError, match="list of documents \\(id arrays\\)"):
        count.term_document(np.array([0, 1, 2]), 3)
    assert count.term_document([np.array([0, 1, 2])], 3).shape == (3, 1)   # the fix works
    with pytest.raises(ValueError, match=r"shift is the k of log k and must be positive \(1 = no shift\), got 0"):
        count.ppmi(np.eye(2), shift=0)
    with pytest.raises(ValueError, match="n_iter and oversample must be >= 0"):
        count.truncated_svd(sparse_matrix, 2, n_iter=-1)
    with pytest.raises(ValueError, match="n_iter and oversample must be >= 0"):
        count.truncated_svd(sparse_matrix, 2, oversample=-5)
    with pytest.raises(ValueError, match=r"lsa got an empty term-document matrix .*: build it with term_document\(docs_ids, vocab_size\)"):
        count.lsa(sp.csr_matrix((4, 3)), 1)
