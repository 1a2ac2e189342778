"""Tests for minilib.evaluate (chapter 02): similarity rho and the analogy protocol, with gensim parity."""
import math

import numpy as np
import pytest
import torch
from gensim.models import KeyedVectors

from minilib import evaluate

# gensim 4.4 calls its own deprecated init_sims() inside most_similar_cosmul.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture
def random_model():
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(300)]
    return words, rng.standard_normal((300, 8)).astype(np.float32)


@pytest.fixture
def questions(random_model):
    _, X = random_model
    U = X / np.linalg.norm(X, axis=1, keepdims=True)
    rng = np.random.default_rng(1)
    qs = {}
    for name in ("capital-world", "family", "gram1-adjective-to-adverb", "gram3-comparative"):
        section = []
        for n in range(150):
            # Words up to w349: some fall outside the vocabulary (300) or the restriction.
            a, b, c, d = (int(i) for i in rng.choice(350, 4, replace=False))
            if n % 2 == 0 and max(a, b, c) < 300:
                # Half the questions get as answer the nearest of the first 200 words to b - a + c,
                # so that some are answered correctly (more often with a tighter restriction).
                scores = U[:200] @ (U[b] - U[a] + U[c])
                scores[[x for x in (a, b, c) if x < 200]] = -np.inf
                d = int(np.argmax(scores))
            section.append(tuple(f"w{i}" for i in (a, b, c, d)))
        qs[name] = section
    return qs


def gensim_kv(words, X):
    kv = KeyedVectors(vector_size=X.shape[1])
    kv.add_vectors(words, X)
    return kv


@pytest.mark.parametrize("restrict", [100, 250, 1000])
def test_analogy_matches_gensim(random_model, questions, restrict, tmp_path):
    words, X = random_model
    path = tmp_path / "questions.txt"
    with open(path, "w") as fh:
        for name, qs in questions.items():
            fh.write(f": {name}\n")
            fh.writelines(" ".join(q) + "\n" for q in qs)
    score, sections = gensim_kv(words, X).evaluate_word_analogies(str(path), restrict_vocab=restrict)
    ours = evaluate.analogy(X, words, questions, restrict_vocab=restrict, batch_size=37)
    total = sections[-1]
    assert ours["correct"] == len(total["correct"])
    assert ours["answered"] == len(total["correct"]) + len(total["incorrect"])
    assert ours["answered"] > 0 and ours["correct"] > 0  # the test compares something
    assert ours["accuracy"] == pytest.approx(score)
    for sec in sections[:-1]:
        assert ours["by_section"][sec["section"]] == (len(sec["correct"]), len(sec["correct"]) + len(sec["incorrect"]))
    assert ours["skipped"] == 600 - ours["answered"] and ours["coverage"] == ours["answered"] / 600


def test_analogy_solves_planted_offsets():
    # b - a = c - d... planted: king - man + woman = queen, exactly.
    rng = np.random.default_rng(2)
    base = rng.standard_normal((50, 16))
    words = [f"x{i}" for i in range(50)] + ["man", "woman", "king", "queen"]
    g = rng.standard_normal(16) * 3
    man, king = rng.standard_normal(16), rng.standard_normal(16) * 2
    X = np.vstack([base, man, man + g, king, king + g])
    res = evaluate.analogy(X, words, {"gram-x": [("man", "king", "woman", "queen")], "sem": [("man", "woman", "king", "queen")]})
    assert res["correct"] == 2 and res["accuracy"] == 1.0 and res["semantic"] == 1.0 and res["syntactic"] == 1.0


def test_analogy_restrict_skips_rare_words(random_model):
    words, X = random_model
    res = evaluate.analogy(X, words, [("w1", "w2", "w3", "w250")], restrict_vocab=200)
    assert res["answered"] == 0 and res["skipped"] == 1 and math.isnan(res["accuracy"])


def test_analogy_3cosmul_matches_gensim_cosmul(random_model):
    words, X = random_model
    kv = gensim_kv(words, X)
    qs = [("w1", "w2", "w3", "w4"), ("w10", "w20", "w30", "w40"), ("w7", "w70", "w77", "w5")]
    expected = [kv.most_similar_cosmul(positive=[b, c], negative=[a], topn=1)[0][0] for a, b, c, _ in qs]
    qs = [(a, b, c, e) for (a, b, c, _), e in zip(qs, expected)]  # make gensim's answer the gold one
    assert evaluate.analogy(X, words, qs, method="3cosmul")["correct"] == 3


def test_analogy_accepts_torch_and_checks_input(random_model):
    words, X = random_model
    res = evaluate.analogy(torch.from_numpy(X), words, [("w1", "w2", "w3", "w4")])  # (V, dim) tensor
    assert res["answered"] == 1
    with pytest.raises(ValueError, match="one word per row"):
        evaluate.analogy(X, words[:-1], [("w1", "w2", "w3", "w4")])
    with pytest.raises(ValueError, match="no analogy questions"):
        evaluate.analogy(X, words, {})
    with pytest.raises(ValueError, match="method"):
        evaluate.analogy(X, words, [("w1", "w2", "w3", "w4")], method="3cosavg")


def test_similarity_matches_gensim(random_model, tmp_path):
    words, X = random_model
    rng = np.random.default_rng(3)
    pairs = [(f"w{i}", f"w{j}", float(s)) for i, j, s in zip(rng.integers(0, 330, 80), rng.integers(0, 330, 80), rng.uniform(0, 10, 80))]
    path = tmp_path / "pairs.tsv"
    path.write_text("".join(f"{a}\t{b}\t{s}\n" for a, b, s in pairs))
    # gensim's defaults: case-insensitive (our words are all lowercase, so no difference) and
    # pairs with an unknown word skipped, which is our protocol too.
    _, (g_rho, _), oov = gensim_kv(words, X).evaluate_word_pairs(str(path), restrict_vocab=len(words))
    ours = evaluate.similarity(X, words, pairs)
    assert ours["rho"] == pytest.approx(g_rho, abs=1e-9)
    assert ours["n_skipped"] > 0 and ours["n_skipped"] / len(pairs) * 100 == pytest.approx(oov)
    assert ours["n_used"] + ours["n_skipped"] == len(pairs)


def test_similarity_perfect_and_errors():
    X = np.array([[1.0, 0.0], [1.0, 0.1], [1.0, 1.0], [0.0, 1.0]])
    words = ["a", "b", "c", "d"]
    # Human scores ordered like the cosines -> rho = 1.
    res = evaluate.similarity(X, words, [("a", "b", 9.0), ("a", "c", 5.0), ("a", "d", 1.0), ("a", "zzz", 3.0)])
    assert res == dict(rho=pytest.approx(1.0), n_used=3, n_skipped=1)
    with pytest.raises(ValueError, match="cannot correlate"):
        evaluate.similarity(X, words, [("a", "zzz", 1.0)])
    with pytest.raises(ValueError, match="no pairs"):
        evaluate.similarity(X, words, [])


# ---- chapter 04: neighbours, hubness, anisotropy, all-but-the-top, numeracy ----------------------

def test_nearest_neighbours_matches_gensim(random_model):
    words, X = random_model
    ours = evaluate.nearest_neighbours(X, words, ["w0", "w7"], k=5)
    kv = gensim_kv(words, X)
    for q in ("w0", "w7"):
        theirs = kv.most_similar(q, topn=5)
        assert [w for w, _ in ours[q]] == [w for w, _ in theirs]
        np.testing.assert_allclose([s for _, s in ours[q]], [s for _, s in theirs], atol=1e-5)


def test_nearest_neighbours_unknown_word():
    with pytest.raises(KeyError, match="out of vocabulary.*zebra"):
        evaluate.nearest_neighbours(np.eye(3), ["a", "b", "c"], ["a", "zebra"])
    with pytest.raises(ValueError, match=r"3 words but vectors has shape \(2, 2\)"):
        evaluate.nearest_neighbours(np.eye(2), ["a", "b", "c"], ["a"])


def test_k_occurrence_brute_force():
    X = np.random.default_rng(3).standard_normal((40, 5))
    n_k = evaluate.k_occurrence(X, k=3, batch_size=7)
    U = X / np.linalg.norm(X, axis=1, keepdims=True)
    S = U @ U.T
    np.fill_diagonal(S, -np.inf)
    expected = np.bincount(np.argsort(-S, axis=1)[:, :3].ravel(), minlength=40)
    np.testing.assert_array_equal(n_k, expected)
    assert n_k.sum() == 40 * 3
    with pytest.raises(ValueError, match="k must be between 1 and V - 1"):
        evaluate.k_occurrence(X, k=40)


def test_hubness_finds_the_hub():
    # In high dimension random vectors are nearly orthogonal, but their mean is close to all of
    # them (cosine about 1/sqrt(n)): the mean is everybody's neighbour, a perfect hub.
    X = np.random.default_rng(0).standard_normal((30, 500))
    X = np.vstack([X, X.mean(axis=0)])
    words = [f"w{i}" for i in range(30)] + ["hub"]
    h = evaluate.hubness(X, words, k=2, top=3)
    assert h["top_hubs"][0][0] == "hub" and h["max_n_k"] == h["top_hubs"][0][1]
    assert h["skewness"] > 1 and 0 < h["antihub_fraction"] < 1
    assert h["n_k"].sum() == 31 * 2
    from scipy.stats import skew
    assert math.isclose(h["skewness"], skew(h["n_k"]), rel_tol=1e-9)


def test_anisotropy_seeded_and_sensible():
    rng = np.random.default_rng(0)
    iso = rng.standard_normal((500, 50))
    a1, a2 = evaluate.anisotropy(iso, seed=1), evaluate.anisotropy(iso, seed=1)
    assert a1 == a2 and abs(a1["mean"]) < 0.01
    shifted = iso + 3.0  # a common offset: every pair points the same way
    assert evaluate.anisotropy(shifted)["mean"] > 0.7
    # The sampler never pairs a row with itself: two rows give exactly their one cosine.
    two = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert evaluate.anisotropy(two, n_pairs=50)["mean"] == 0.0
    with pytest.raises(ValueError, match="V >= 2"):
        evaluate.anisotropy(np.ones((1, 3)))


def test_all_but_the_top_removes_mean_and_top_directions():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 10)) * np.arange(1, 11) + 5.0
    Z = evaluate.all_but_the_top(X, n_components=2)
    np.testing.assert_allclose(Z.mean(axis=0), 0, atol=1e-4)
    _, _, Vt = np.linalg.svd(X - X.mean(0), full_matrices=False)
    np.testing.assert_allclose(Z @ Vt[:2].T, 0, atol=1e-3)
    assert evaluate.anisotropy(Z)["mean"] < evaluate.anisotropy(X)["mean"]
    with pytest.raises(ValueError, match="n_components"):
        evaluate.all_but_the_top(X, n_components=10)


def test_numeracy_probe_reads_a_planted_magnitude():
    rng = np.random.default_rng(0)
    values = np.arange(1, 201)
    X = rng.standard_normal((200, 8))
    X[:, 0] = np.log10(values) + 0.05 * rng.standard_normal(200)  # magnitude written in one coordinate
    words = [str(v) for v in values]
    numbers = {w: int(w) for w in words} | {"9999": 9999}
    r = evaluate.numeracy_probe(X, words, numbers, alpha=0.01)
    assert r["r2"] > 0.9 and r["spearman"] > 0.9 and r["n_used"] == 200 and r["n_skipped"] == 1
    noise = evaluate.numeracy_probe(rng.standard_normal((200, 8)), words, numbers)
    assert noise["r2"] < 0.1
    assert evaluate.numeracy_probe(X, words, numbers, alpha=0.01)["r2"] == r["r2"]  # seeded folds
    with pytest.raises(ValueError, match="only 0 of"):
        evaluate.numeracy_probe(X, words, {"x": 1})


def test_shared_helpers_label_rows_and_normalise():
    from minilib.evaluate import as_matrix, unit_rows, word_index
    import torch
    X = as_matrix(torch.ones(2, 3), ["a", "b"], name="source")
    assert X.shape == (2, 3)
    with pytest.raises(ValueError, match=r"1 source words but source vectors has shape \(2, 3\)"):
        as_matrix(X, ["a"], name="source")
    assert word_index(["a", "b", "a", "c"]) == {"a": 0, "b": 1, "c": 3}
    assert word_index(["a", "b", "c"], limit=2) == {"a": 0, "b": 1}
    U = unit_rows([[3.0, 4.0], [0.0, 0.0]])
    np.testing.assert_allclose(U, [[0.6, 0.8], [0.0, 0.0]])
    np.testing.assert_allclose(unit_rows([0.0, 2.0]), [0.0, 1.0])


def test_vector_and_argument_errors_name_the_fix(random_model):
    from minilib.evaluate import as_matrix

    words, X = random_model
    with pytest.raises(ValueError, match=r"vectors must be a \(V, dim\) matrix, got shape \(3,\)"):
        evaluate.similarity(np.ones(3), ["a", "b", "c"], [("a", "b", 1.0)])
    with pytest.raises(ValueError, match=r"target vectors must be a \(V, dim\) matrix"):
        as_matrix(np.ones((2, 3, 4)), ["a", "b"], name="target")
    with pytest.raises(ValueError, match="vectors is empty: no words to evaluate"):
        as_matrix(np.zeros((0, 3)), [])
    with pytest.raises(ValueError, match="restrict_vocab must be >= 1"):
        evaluate.analogy(X, words, [("w1", "w2", "w3", "w4")], restrict_vocab=0)
    with pytest.raises(ValueError, match=r"no query words given: pass a list such as \['king', 'paris'\]"):
        evaluate.nearest_neighbours(X, words, [])
    with pytest.raises(ValueError, match="k must be >= 1, got 0"):
        evaluate.nearest_neighbours(X, words, ["w0"], k=0)
    with pytest.raises(ValueError, match=r"vectors must be a \(V, dim\) matrix, got shape \(300,\)"):
        evaluate.k_occurrence(X[:, 0], k=3)
    with pytest.raises(ValueError, match="n_pairs must be >= 1, got 0"):
        evaluate.anisotropy(X, n_pairs=0)
    with pytest.raises(ValueError, match=r"V >= 2 rows, got shape \(1, 8\)"):
        evaluate.all_but_the_top(X[:1])
    with pytest.raises(ValueError, match=r"V >= 2 rows, got shape \(8,\)"):
        evaluate.all_but_the_top(X[0])


def test_numeracy_probe_errors_name_the_fix(random_model):
    words, X = random_model
    with pytest.raises(ValueError, match=r"numbers is empty: pass e\.g\. \{str\(n\): n"):
        evaluate.numeracy_probe(X, words, {})
    with pytest.raises(ValueError, match=r"numbers must have positive values \(the probe predicts log10\(value\)\)"):
        evaluate.numeracy_probe(X, words, {f"w{i}": i for i in range(10)}, folds=5)   # w0 -> 0
