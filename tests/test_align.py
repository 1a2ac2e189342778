"""Tests for minilib.align (chapter 04): Procrustes parity with SciPy, least squares with gensim's TranslationMatrix."""
import warnings

import numpy as np
import pytest
from scipy.linalg import orthogonal_procrustes
from scipy.stats import ortho_group

from minilib import align


def rotated_pair(n=200, dim=10, noise=0.01, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, dim))
    R = ortho_group.rvs(dim, random_state=seed)
    return X, X @ R + noise * rng.standard_normal((n, dim)), R


def test_procrustes_matches_scipy():
    X, Y, _ = rotated_pair(noise=0.5)
    W = align.procrustes(X, Y)
    np.testing.assert_allclose(W, orthogonal_procrustes(X, Y)[0], atol=1e-6)
    np.testing.assert_allclose(W.T @ W, np.eye(10), atol=1e-10)


def test_procrustes_recovers_rotation():
    X, Y, R = rotated_pair(noise=0.0)
    np.testing.assert_allclose(align.procrustes(X, Y), R, atol=1e-8)


def test_shape_errors_name_both_shapes():
    with pytest.raises(ValueError, match=r"\(5, 3\).*\(4, 3\)"):
        align.procrustes(np.ones((5, 3)), np.ones((4, 3)))
    with pytest.raises(ValueError, match="same dimension"):
        align.procrustes(np.ones((5, 3)), np.ones((5, 4)))
    with pytest.raises(ValueError, match=r"W has shape \(3, 3\)"):
        align.translation_accuracy(np.eye(3), np.ones((2, 4)), ["a", "b"], np.ones((2, 4)), ["a", "b"], [("a", "a")])


def test_translation_accuracy_on_a_rotation():
    X, Y, _ = rotated_pair(n=300, dim=20, noise=0.05)
    words = [f"w{i}" for i in range(300)]
    pairs = [(w, w) for w in words]
    train, test = align.split_pairs(pairs, test_fraction=0.2, seed=0)
    assert len(test) == 60 and not {a for a, _ in train} & {a for a, _ in test}
    A, B, used = align.pair_matrices(X, words, Y, words, train)
    W = align.procrustes(A, B)
    acc = align.translation_accuracy(W, X, words, Y, words, test)
    assert acc["p@1"] > 0.95 and acc["p@5"] >= acc["p@1"] and acc["n_used"] == 60
    ident = align.translation_accuracy(np.eye(20), X, words, Y, words, test)
    assert ident["p@1"] < 0.2  # without the map the spaces do not line up
    csls = align.translation_accuracy(W, X, words, Y, words, test, method="csls")
    assert csls["p@1"] > 0.95


def test_least_squares_matches_gensim_translation_matrix():
    from gensim.models import KeyedVectors
    from gensim.models.translation_matrix import TranslationMatrix

    X, Y, _ = rotated_pair(n=40, dim=6, noise=0.3, seed=1)
    src, tgt = [f"s{i}" for i in range(40)], [f"t{i}" for i in range(40)]
    pairs = [(f"s{i}", f"t{i}") for i in range(30)]
    kv_s, kv_t = KeyedVectors(6), KeyedVectors(6)
    kv_s.add_vectors(src, X.astype(np.float32))
    kv_t.add_vectors(tgt, Y.astype(np.float32))
    tm = TranslationMatrix(kv_s, kv_t, pairs)
    A, B, _ = align.pair_matrices(X.astype(np.float32), src, Y.astype(np.float32), tgt, pairs)
    W = align.least_squares_map(A, B)
    np.testing.assert_allclose(W, tm.translation_matrix, atol=1e-4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = tm.translate(src[30:], topn=3)
    ours = align.translation_accuracy(W, X, src, Y, tgt, [(s, "t0") for s in src[30:]], ks=(3,))["predictions"]
    assert all(ours[s] == theirs[s] for s in src[30:])


def test_loaders(tmp_path):
    p = tmp_path / "v.txt"
    p.write_text("2 3\nuno 1 0 0\ndue 0 1 0\n")
    words, V = align.load_word2vec_text(p)
    assert words == ["uno", "due"] and V.shape == (2, 3) and V.dtype == np.float32
    p.write_text("3 3\nuno 1 0 0\n")
    with pytest.raises(ValueError, match="promises 3 words"):
        align.load_word2vec_text(p)
    d = tmp_path / "pairs.txt"
    d.write_text("one uno\ntwo due\n\n")
    assert align.load_pairs(d) == [("one", "uno"), ("two", "due")]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        align.load_pairs(tmp_path / "missing.txt")
    with pytest.raises(ValueError, match="none of the 1 pairs"):
        align.pair_matrices(V, words, V, words, [("x", "y")])


def test_split_fit_and_translate_errors_name_the_fix():
    pairs = [("a", "x"), ("a", "y"), ("b", "z")]
    with pytest.raises(ValueError, match="test_fraction must be between 0 and 1, got 1.0"):
        align.split_pairs(pairs, test_fraction=1.0)
    with pytest.raises(ValueError, match="need pairs with at least 2 distinct source words to split, got 1"):
        align.split_pairs(pairs[:2])
    with pytest.raises(ValueError, match=r"X and Y must be matrices \(n, dim\), got shapes \(3,\) and \(3, 3\)"):
        align.procrustes(np.ones(3), np.ones((3, 3)))
    with pytest.raises(ValueError, match="X and Y are empty: give at least one pair"):
        align.least_squares_map(np.zeros((0, 3)), np.zeros((0, 2)))
    T = np.random.default_rng(0).standard_normal((5, 4))
    with pytest.raises(ValueError, match=r"queries have shape \(2, 3\) but target vectors \(5, 4\): dimensions must match"):
        align.translate(np.ones((2, 3)), T)
    for k in (0, 6):
        with pytest.raises(ValueError, match=f"k must be between 1 and the 5 target words, got {k}"):
            align.translate(T[:2], T, k=k)
    with pytest.raises(ValueError, match="method must be 'nn' or 'csls', got 'knn'"):
        align.translate(T[:2], T, k=1, method="knn")
    with pytest.raises(ValueError, match="none of the 2 pairs has both words in the two vocabularies"):
        align.translation_accuracy(np.eye(4), T[:2], ["a", "b"], T, list("vwxyz"), [("a", "q"), ("c", "v")])
