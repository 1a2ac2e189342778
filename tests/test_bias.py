"""Tests for minilib.bias (chapter 04): WEAT against a brute-force reference, hard debiasing, residual bias."""
import math
from itertools import combinations

import numpy as np
import pytest

from minilib import bias


def planted_space(seed=0, dim=12):
    """Words whose first coordinate carries a planted 'gender' and second a planted 'pleasantness'."""
    rng = np.random.default_rng(seed)
    words, rows = [], []
    def add(word, g=0.0, p=0.0):
        v = 0.3 * rng.standard_normal(dim)
        v[0] += g
        v[1] += p
        words.append(word)
        rows.append(v)
    for w in ("x1", "x2", "x3", "x4"):
        add(w, p=1.0)
    for w in ("y1", "y2", "y3", "y4"):
        add(w, p=-1.0)
    for w in ("a1", "a2", "a3"):
        add(w, p=1.0)
    for w in ("b1", "b2", "b3"):
        add(w, p=-1.0)
    for f, m in bias.DEFINITIONAL_PAIRS:
        add(f, g=1.0)
        add(m, g=-1.0)
    for i in range(60):
        add("neutral" + chr(97 + i // 26) + chr(97 + i % 26), g=rng.choice([-0.8, 0.8]))
    return words, np.array(rows)


def reference_weat(vec, X, Y, A, B):
    """Textbook WEAT, written the slow way: every quantity from its definition."""
    cos = lambda u, v: u @ v / (np.linalg.norm(u) * np.linalg.norm(v))
    s = lambda w: np.mean([cos(vec[w], vec[a]) for a in A]) - np.mean([cos(vec[w], vec[b]) for b in B])
    S = lambda Xi, Yi: sum(s(x) for x in Xi) - sum(s(y) for y in Yi)
    all_ = X + Y
    observed = S(X, Y)
    null = [S(list(c), [w for w in all_ if w not in c]) for c in combinations(all_, len(X))]
    effect = (np.mean([s(x) for x in X]) - np.mean([s(y) for y in Y])) / np.std([s(w) for w in all_], ddof=1)
    return effect, observed, np.mean(np.array(null) >= observed - 1e-12)


def test_weat_matches_reference_exact():
    words, M = planted_space()
    vec = dict(zip(words, M))
    X, Y, A, B = ["x1", "x2", "x3", "x4"], ["y1", "y2", "y3", "y4"], ["a1", "a2", "a3"], ["b1", "b2", "b3"]
    r = bias.weat(M, words, X, Y, A, B)
    effect, statistic, p = reference_weat(vec, X, Y, A, B)
    assert r["exact"] and len(r["null"]) == math.comb(8, 4)
    assert math.isclose(r["effect_size"], effect, rel_tol=1e-9)
    assert math.isclose(r["statistic"], statistic, rel_tol=1e-9)
    assert math.isclose(r["p_value"], p) and p == 1 / 70  # planted: only the true split is as extreme
    assert r["effect_size"] > 1.5


def test_weat_sampled_is_seeded_and_close_to_exact():
    words, M = planted_space()
    args = (M, words, ["x1", "x2", "x3", "x4"], ["y1", "y2", "y3", "y4"], ["a1", "a2"], ["b1", "b2"])
    exact = bias.weat(*args)
    s1, s2 = bias.weat(*args, n_permutations=20, seed=3), bias.weat(*args, n_permutations=20, seed=3)
    assert not s1["exact"] and s1["p_value"] == s2["p_value"] and len(s1["null"]) == 20
    assert s1["effect_size"] == exact["effect_size"] and s1["p_value"] >= 1 / 21


def test_weat_bad_input():
    words, M = planted_space()
    with pytest.raises(ValueError, match="none of the words of set A"):
        bias.weat(M, words, ["x1"], ["y1"], ["unknown1", "unknown2"], ["b1"])
    with pytest.raises(ValueError, match="word set B is empty"):
        bias.weat(M, words, ["x1"], ["y1"], ["a1"], [])
    with pytest.raises(ValueError, match="3 words but vectors has shape"):
        bias.weat(M, words[:3], ["x1"], ["y1"], ["a1"], ["b1"])
    r = bias.weat(M, words, ["x1", "x2", "zzz"], ["y1", "y2", "y3"], ["a1"], ["b1"])
    assert r["dropped"] == {"X": ["zzz"]} and r["n_x"] == r["n_y"] == 2


def test_bias_direction_and_neutralize():
    words, M = planted_space()
    g = bias.bias_direction(M, words)
    assert math.isclose(np.linalg.norm(g), 1.0) and abs(g[0]) > 0.9 and g[0] > 0  # points to "she"
    N = bias.neutralize(M[:5], g)
    np.testing.assert_allclose(N @ g, 0, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(N, axis=1), 1)
    with pytest.raises(ValueError, match="dimensions must match"):
        bias.neutralize(M, g[:3])


def test_equalize_makes_pairs_symmetric():
    words, M = planted_space()
    g = bias.bias_direction(M, words)
    i, j = words.index("she"), words.index("he")
    a, b = bias.equalize(M[i], M[j], g)
    np.testing.assert_allclose([np.linalg.norm(a), np.linalg.norm(b)], 1)
    np.testing.assert_allclose(a - (a @ g) * g, b - (b @ g) * g, atol=1e-12)  # same neutral part
    assert a @ g > 0 > b @ g
    w = bias.neutralize(M[words.index("neutralaa")], g)[0]
    assert math.isclose(w @ a, w @ b, abs_tol=1e-12)  # a neutral word is equidistant


def test_hard_debias_and_residual_bias():
    words, M = planted_space()
    g = bias.bias_direction(M, words)
    D = bias.hard_debias(M, words, g)
    neutral = [i for i, w in enumerate(words) if w.startswith("neutral")]
    np.testing.assert_allclose(D[neutral] @ g, 0, atol=1e-6)
    assert abs(D[words.index("she")] @ g) > 0.3  # gender-specific words keep their gender
    r = bias.residual_bias(M, D, words, g, n=10, restrict=len(words))
    assert r["before"]["projection"] > 0.3 and r["after"]["projection"] < 0.05
    assert r["before"]["kmeans"] >= r["after"]["kmeans"] - 1e-9
    with pytest.raises(ValueError, match=r"94 words but vectors has shape \(5, 12\)"):
        bias.residual_bias(M, D[:5], words, g)


def test_shape_and_vocabulary_errors_name_the_fix():
    words, M = planted_space()
    g = bias.bias_direction(M, words)
    with pytest.raises(ValueError, match=r"dimensions differ: W \(2, 3\), A \(1, 4\), B \(1, 3\); all need the same"):
        bias.association(np.ones((2, 3)), np.ones((1, 4)), np.ones((1, 3)))
    with pytest.raises(ValueError, match="attribute sets A and B must each hold at least one vector"):
        bias.association(np.ones((2, 3)), np.zeros((0, 3)), np.ones((1, 3)))
    with pytest.raises(ValueError, match=r"none of the pairs \[\('zz', 'yy'\)\]\.\.\. has both words in the vocabulary"):
        bias.bias_direction(M, words, pairs=[("zz", "yy")])
    with pytest.raises(ValueError, match=r"vectors have shape \(94, 12\) but direction has shape \(3,\)"):
        bias.project(M, g[:3])
    with pytest.raises(ValueError, match=r"shapes differ: va \(12,\), vb \(5,\), direction \(12,\)"):
        bias.equalize(M[0], M[1, :5], g)
    with pytest.raises(ValueError, match=r"direction has shape \(3,\) but vectors have shape \(94, 12\)"):
        bias.hard_debias(M, words, direction=g[:3])


def test_residual_bias_errors_name_the_fix():
    words, M = planted_space()
    g = bias.bias_direction(M, words)
    D = bias.hard_debias(M, words, g)
    with pytest.raises(ValueError, match=r"original \(94, 12\) and debiased \(94, 5\) must have the same shape"):
        bias.residual_bias(M, D[:, :5], words, g)
    # Only the 60 "neutral.." words are alphabetic and not gender-specific.
    with pytest.raises(ValueError, match="only 60 candidate words for 2 \\* n = 62: lower n or raise restrict"):
        bias.residual_bias(M, D, words, g, n=31)
