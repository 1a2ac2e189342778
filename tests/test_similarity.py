"""Tests for minilib.similarity: cosine, dot, Euclidean, normalize, topk, nearest_words."""
import numpy as np
import pytest
import scipy.sparse as sp
import torch

from minilib.similarity import cosine, dot, euclidean, nearest_words, normalize, topk
from minilib.text import Vocab


@pytest.fixture
def XY():
    rng = np.random.default_rng(0)
    return rng.normal(size=(7, 5)), rng.normal(size=(11, 5))


def brute_cosine(A, B):
    return np.array([[a @ b / np.linalg.norm(a) / np.linalg.norm(b) for b in B] for a in A])


def test_shape_rule(XY):
    X, Y = XY
    assert isinstance(cosine(X[0], Y[0]), float)
    assert cosine(X[0], Y).shape == (11,)
    assert cosine(X, Y[0]).shape == (7,)
    assert cosine(X, Y).shape == (7, 11)
    assert dot(X, Y).shape == euclidean(X, Y).shape == (7, 11)


def test_values_match_brute_force(XY):
    X, Y = XY
    np.testing.assert_allclose(cosine(X, Y), brute_cosine(X, Y), atol=1e-12)
    np.testing.assert_allclose(dot(X, Y), X @ Y.T, atol=1e-12)
    np.testing.assert_allclose(euclidean(X, Y), np.linalg.norm(X[:, None] - Y[None], axis=2), atol=1e-9)
    assert cosine([1, 0], [0, 1]) == 0.0 and cosine([1, 1], [2, 2]) == pytest.approx(1.0)
    assert euclidean([0, 0], [3, 4]) == pytest.approx(5.0)


def test_unit_vectors_euclidean_is_cosine(XY):
    # |a - b|^2 = 2 - 2 cos(a, b) for unit vectors: the derivation of chapter 01
    X, Y = normalize(XY[0]), normalize(XY[1])
    np.testing.assert_allclose(euclidean(X, Y) ** 2, 2 - 2 * cosine(X, Y), atol=1e-12)
    np.testing.assert_allclose(dot(X, Y), cosine(X, Y), atol=1e-12)


def test_torch_and_sparse_agree_with_numpy(XY):
    X, Y = XY
    for f in (cosine, dot, euclidean):
        t = f(torch.tensor(X), torch.tensor(Y))
        assert isinstance(t, torch.Tensor) and t.dtype == torch.float64
        np.testing.assert_allclose(t.numpy(), f(X, Y), atol=1e-10)
        np.testing.assert_allclose(f(sp.csr_matrix(X), sp.csr_matrix(Y)), f(X, Y), atol=1e-10)
        np.testing.assert_allclose(f(sp.csr_matrix(X), Y), f(X, Y), atol=1e-10)


def test_normalize_zero_rows_and_kinds():
    X = np.array([[3.0, 4.0], [0.0, 0.0]])
    np.testing.assert_allclose(normalize(X), [[0.6, 0.8], [0.0, 0.0]])
    assert not np.isnan(cosine(X, X)).any() and cosine(X[1], X[0]) == 0.0
    assert torch.allclose(normalize(torch.tensor(X)), torch.tensor([[0.6, 0.8], [0.0, 0.0]], dtype=torch.float64))
    S = normalize(sp.csr_matrix(X))
    assert sp.issparse(S) and np.allclose(S.toarray(), [[0.6, 0.8], [0.0, 0.0]])
    np.testing.assert_allclose(normalize(np.array([0, 2])), [0.0, 1.0])  # ints become floats


def test_dimension_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(3, 4\).*\(2, 5\)"):
        cosine(np.zeros((3, 4)), np.zeros((2, 5)))
    with pytest.raises(ValueError, match="vector"):
        dot(np.zeros((2, 2, 2)), np.zeros((2, 2)))
    with pytest.raises(TypeError, match="sparse"):
        dot(torch.zeros(2, 3), sp.csr_matrix(np.zeros((2, 3))))


def test_topk_matches_sklearn_nearest_neighbors():
    from sklearn.neighbors import NearestNeighbors

    rng = np.random.default_rng(1)
    keys, queries = rng.normal(size=(200, 16)), rng.normal(size=(30, 16))
    ref = NearestNeighbors(n_neighbors=10, metric="cosine", algorithm="brute").fit(keys)
    dist, ref_ids = ref.kneighbors(queries)
    scores, ids = topk(queries, keys, 10, batch_size=7)  # small batches exercise the loop
    assert ids.shape == scores.shape == (30, 10) and ids.dtype == np.int64
    assert np.array_equal(ids, ref_ids)
    np.testing.assert_allclose(scores, 1 - dist, atol=1e-10)
    # euclidean too, as distances (ascending)
    ref = NearestNeighbors(n_neighbors=5, metric="euclidean", algorithm="brute").fit(keys)
    dist, ref_ids = ref.kneighbors(queries)
    scores, ids = topk(queries, keys, 5, metric="euclidean")
    assert np.array_equal(ids, ref_ids) and np.allclose(scores, dist, atol=1e-8)


def test_topk_backends_agree_and_order():
    rng = np.random.default_rng(2)
    K = rng.normal(size=(50, 8))
    for metric in ("cosine", "dot", "euclidean"):
        s_np, i_np = topk(K, K, 4, metric=metric)
        s_t, i_t = topk(torch.tensor(K), torch.tensor(K), 4, metric=metric)
        s_sp, i_sp = topk(sp.csr_matrix(K), sp.csr_matrix(K), 4, metric=metric)
        assert isinstance(i_t, torch.Tensor)
        assert np.array_equal(i_np, i_t.numpy()) and np.array_equal(i_np, i_sp)
        np.testing.assert_allclose(s_np, s_t.numpy(), atol=1e-6)  # sqrt(rounding) at distance 0
        step = np.diff(s_np, axis=1)
        assert (step <= 1e-12).all() if metric != "euclidean" else (step >= -1e-12).all()


def test_topk_exclude_self_and_ties():
    K = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    s, i = topk(K, K, 2, exclude_self=True)
    assert i[0].tolist() == [1, 3] and i[1].tolist() == [0, 3]  # row 0 and 1 are identical
    assert (i != np.arange(4)[:, None]).all()
    s1, i1 = topk(K[2], K, 1)  # one query vector gives (k,) results
    assert i1.shape == (1,) and i1[0] == 2 and s1[0] == pytest.approx(1.0)
    s, i = topk(np.ones((1, 2)), np.ones((5, 2)), 3)  # all tied: lowest ids first
    assert i.tolist() == [[0, 1, 2]]


def test_topk_errors():
    K = np.zeros((4, 3))
    with pytest.raises(ValueError, match="k=5 but only 4 keys"):
        topk(K, K, 5)
    with pytest.raises(ValueError, match="only 3 keys.*self excluded"):
        topk(K, K, 4, exclude_self=True)
    with pytest.raises(ValueError, match="queries to be the keys"):
        topk(K[:2], K, 1, exclude_self=True)
    with pytest.raises(ValueError, match="unknown metric"):
        topk(K, K, 1, metric="manhattan")
    with pytest.raises(ValueError, match="positive int"):
        topk(K, K, 0)
    with pytest.raises(ValueError, match=r"\(4, 3\).*\(4, 2\)"):
        topk(K, np.zeros((4, 2)), 1)


def test_nearest_words():
    words = ["king", "queen", "man", "woman", "apple"]
    V = np.array([[1.0, 1.0, 0.0], [1.0, 0.9, 0.1], [0.3, 1.0, 0.0], [0.2, 0.9, 0.1], [0.0, 0.0, 1.0]])
    out = nearest_words("king", V, Vocab(words), k=2)
    assert [w for w, _ in out] == ["queen", "man"] and out[0][1] == pytest.approx(cosine(V[0], V[1]))
    assert [w for w, _ in nearest_words("king", torch.tensor(V), words, k=4)][-1] == "apple"
    with pytest.raises(KeyError, match="not in the vocabulary.*queen"):
        nearest_words("queeen", V, words)
    with pytest.raises(ValueError, match="5 words but 4 vectors"):
        nearest_words("king", V[:4], words)


def test_one_hot_product_is_embedding_lookup_for_many_ids():
    from minilib.text import one_hot

    torch.manual_seed(0)
    emb = torch.nn.Embedding(1000, 32)
    ids = torch.randint(0, 1000, (64,))
    with torch.no_grad():
        assert torch.equal(one_hot(ids, 1000) @ emb.weight, emb(ids))


def test_topk_of_every_key_is_a_full_stable_sort():
    keys = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [-1.0, 0.0]])
    s, i = topk(np.array([[1.0, 0.0]]), keys, k=4, metric="dot")
    assert i.tolist() == [[0, 2, 1, 3]] and s.tolist() == [[1.0, 1.0, 0.0, -1.0]]   # the tie goes to the lower id


def test_input_kind_and_empty_errors_name_the_fix():
    with pytest.raises(ValueError, match=r"a must be a vector \(d,\) or a matrix \(n, d\), got shape \(2, 2, 2\)"):
        cosine(torch.zeros(2, 2, 2), torch.zeros(2, 2))
    with pytest.raises(ValueError, match=r"b must be a vector .* got shape \(\)"):
        dot(torch.zeros(2), torch.tensor(1.0))
    with pytest.raises(TypeError, match="b must hold numbers, got dtype <U3"):
        cosine(np.zeros((1, 3)), np.array(["cat", "dog", "cow"]))
    with pytest.raises(TypeError, match="a must hold numbers, got dtype object"):
        dot(np.array([[1.0, None]], dtype=object), np.zeros((1, 2)))
    K = np.zeros((4, 3))
    with pytest.raises(ValueError, match="need at least one query and one key, got 0 queries and 4 keys"):
        topk(K[:0], K, 1)
    with pytest.raises(ValueError, match="got 2 queries and 0 keys"):
        topk(torch.zeros(2, 3), torch.zeros(0, 3), 1)
