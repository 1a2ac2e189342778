"""Tests for minilib.glove (chapter 02): the weighting, training, fit quality, determinism, errors."""
import numpy as np
import pytest
import scipy.sparse as sp
import torch

from minilib import count, glove


@pytest.fixture
def small_counts():
    # A co-occurrence matrix from a tiny synthetic corpus with two topics.
    rng = np.random.default_rng(0)
    docs = [rng.integers(0, 10, 60) if k % 2 else rng.integers(10, 20, 60) for k in range(40)]
    return count.cooccurrence(docs, 20, window=3)


def test_weighting_function():
    x = torch.tensor([0.0, 1.0, 50.0, 100.0, 1e4])
    f = glove.glove_weight(x, x_max=100, alpha=0.75)
    torch.testing.assert_close(f, torch.tensor([0.0, 0.01**0.75, 0.5**0.75, 1.0, 1.0]))


def test_forward_is_dot_plus_biases():
    torch.manual_seed(0)
    m = glove.GloVe(5, 3)
    i, j = torch.tensor([0, 4]), torch.tensor([2, 2])
    expected = (m.W[i] * m.W_ctx[j]).sum(1) + m.b[i] + m.b_ctx[j]
    torch.testing.assert_close(m(i, j), expected)
    assert m.vectors().shape == (5, 3)


def test_loss_decreases(small_counts):
    _, hist = glove.train_glove(small_counts, dim=5, epochs=20, batch_size=64, progress=False)
    assert len(hist["loss"]) == 20
    assert hist["loss"][-1] < 0.2 * hist["loss"][0]


def test_fit_approaches_log_counts():
    # Counts that are exactly log-bilinear (rank 2) plus a constant: GloVe can fit them, so the
    # fitted w.w~ + b + b~ must approach log X on the heavily weighted (large) entries.
    rng = np.random.default_rng(1)
    A, B = rng.normal(size=(12, 2)), rng.normal(size=(12, 2))
    logX = A @ B.T + 5.0  # counts from about e^1 to e^9: many above x_max = 100
    X = np.exp(logX)
    vectors, hist, model = glove.train_glove(X, dim=4, epochs=300, lr=0.3, batch_size=16, progress=False, return_model=True)
    i, j = (torch.as_tensor(a.ravel()) for a in np.indices((12, 12)))
    err = (model(i, j) - torch.as_tensor(logX.ravel(), dtype=torch.float32)).abs().detach()
    heavy = glove.glove_weight(torch.as_tensor(X.ravel(), dtype=torch.float32)) > 0.5
    assert heavy.sum() > 100 and err[heavy].max() < 0.05
    assert hist["loss"][-1] < 1e-3 * hist["loss"][0]
    np.testing.assert_allclose(vectors, (model.W + model.W_ctx).detach().numpy())


def test_same_seed_same_vectors(small_counts):
    v1, h1 = glove.train_glove(small_counts, dim=4, epochs=3, batch_size=50, seed=7, progress=False)
    v2, h2 = glove.train_glove(small_counts, dim=4, epochs=3, batch_size=50, seed=7, progress=False)
    v3, _ = glove.train_glove(small_counts, dim=4, epochs=3, batch_size=50, seed=8, progress=False)
    assert np.array_equal(v1, v2) and h1["loss"] == h2["loss"]
    assert not np.array_equal(v1, v3)
    assert v1.shape == (20, 4) and v1.dtype == np.float32
    v4, h4 = glove.train_glove(small_counts, dim=4, epochs=3, batch_size=50, seed=7, progress=True)
    assert np.array_equal(v1, v4) and h4["loss"] == h1["loss"]     # a progress bar changes nothing


def test_bad_input():
    with pytest.raises(ValueError, match="non-negative"):
        glove.train_glove(np.array([[1.0, -2.0], [0.0, 1.0]]), 2, 1, progress=False)
    with pytest.raises(ValueError, match="square"):
        glove.train_glove(sp.csr_matrix(np.ones((2, 3))), 2, 1, progress=False)
    with pytest.raises(ValueError, match="no positive entry"):
        glove.train_glove(sp.csr_matrix((4, 4)), 2, 1, progress=False)
    with pytest.raises(ValueError, match="positive"):
        glove.train_glove(np.eye(3), 0, 1, progress=False)


def test_size_shape_and_rate_errors_name_the_fix():
    with pytest.raises(ValueError, match="vocab_size and dim must be positive, got 0, 3"):
        glove.GloVe(0, 3)
    with pytest.raises(ValueError, match="vocab_size and dim must be positive, got 4, 0"):
        glove.GloVe(4, 0)
    with pytest.raises(ValueError, match=r"expected a \(V, V\) co-occurrence matrix, got shape \(3,\)"):
        glove.train_glove(np.ones(3), 2, 1, progress=False)
    for kw in (dict(lr=0), dict(x_max=-1.0), dict(alpha=0)):
        with pytest.raises(ValueError, match="lr, x_max and alpha must be positive"):
            glove.train_glove(np.eye(3), 2, 1, progress=False, **kw)
