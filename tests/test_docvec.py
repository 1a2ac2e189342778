"""minilib.docvec: PV-DBOW on a tiny topical corpus next to gensim's Doc2Vec(dm=0), inference with
frozen word weights, determinism; LDA against scikit-learn's batch variational Bayes (same
initial topics, same iterations), the digamma series, topic recovery and the errors."""
import numpy as np
import pytest
import scipy.sparse as sp
import torch
from scipy.special import psi

from minilib.docvec import LDA, PVDBOW, digamma_series, dirichlet_expectation



def topical_docs(n_docs=40, length=60, seed=0):
    """Documents from 4 topics: each draws 70 % of its words from its topic's 12 words, 30 % from 10 shared ones."""
    rng = np.random.default_rng(seed)
    letters = "abcdefghijkl"
    topics = [[f"topic{letters[k]}{letters[i]}" for i in range(12)] for k in range(4)]  # e.g. "topicab"
    common = [f"common{letters[i]}" for i in range(10)]
    docs, labels = [], []
    for d in range(n_docs):
        k = d % 4
        words = [rng.choice(topics[k]) if rng.random() < 0.7 else rng.choice(common) for _ in range(length)]
        docs.append([str(w) for w in words])
        labels.append(k)
    return docs, np.array(labels)


def nearest_same_topic(E, labels):
    U = E / np.linalg.norm(E, axis=1, keepdims=True)
    S = U @ U.T
    np.fill_diagonal(S, -np.inf)
    return float((labels[S.argmax(axis=1)] == labels).mean())


# --- PV-DBOW -------------------------------------------------------------------------------------

CFG = dict(dim=16, negative=5, min_count=1, epochs=30, sample=0.0)


def test_pvdbow_learns_topics_like_gensim():
    from gensim.models.doc2vec import Doc2Vec, TaggedDocument

    docs, labels = topical_docs()
    ours = PVDBOW(**CFG, batch_size=64, seed=0).fit(docs, progress=False)
    assert ours.docvecs.shape == (40, 16) and ours.docvecs.dtype == np.float32
    assert ours.history["loss"][-1] < 0.8 * ours.history["loss"][0]  # the loss fell
    g = Doc2Vec([TaggedDocument(d, [i]) for i, d in enumerate(docs)], dm=0, vector_size=16, negative=5, min_count=1,
                epochs=30, sample=0, seed=0, workers=1)
    a, b = nearest_same_topic(ours.docvecs, labels), nearest_same_topic(g.dv.vectors, labels)
    assert a >= 0.9 and b >= 0.9 and abs(a - b) <= 0.1, (a, b)


def test_pvdbow_is_deterministic_and_infer_freezes_the_words():
    docs, labels = topical_docs()
    m1 = PVDBOW(**CFG, seed=3).fit(docs, progress=False)
    m2 = PVDBOW(**CFG, seed=3).fit(docs, progress=False)
    np.testing.assert_array_equal(m1.docvecs, m2.docvecs)
    W = m1.W_out.clone()
    new, new_labels = topical_docs(8, seed=1)
    inferred = m1.infer(new, epochs=30)
    assert inferred.shape == (8, 16)
    assert torch.equal(m1.W_out, W)  # word weights untouched
    np.testing.assert_array_equal(inferred, m1.infer(new, epochs=30))  # seeded
    # A new document lands next to training documents of its own topic.
    U = m1.docvecs / np.linalg.norm(m1.docvecs, axis=1, keepdims=True)
    V = inferred / np.linalg.norm(inferred, axis=1, keepdims=True)
    assert (labels[(V @ U.T).argmax(axis=1)] == new_labels).mean() >= 0.85
    one = m1.infer(new[0], epochs=30)
    assert one.shape == (16,)
    # Unknown words only: a zero vector, counted; nothing at all: (0, dim).
    assert np.array_equal(m1.infer([["zzz", "qqq"], new[0]])[0], np.zeros(16)) and m1.last_unknown == 1
    assert m1.infer([]).shape == (0, 16)
    assert m1.encode(["topicab topicac commona", "nothing known"]).shape == (2, 16) and m1.last_unknown == 1


def test_pvdbow_errors():
    with pytest.raises(RuntimeError, match="fit"):
        PVDBOW().infer([["a"]])
    with pytest.raises(TypeError, match="token lists"):
        PVDBOW(min_count=1).fit(["a plain string", "another"], progress=False)
    with pytest.raises(ValueError, match="dim"):
        PVDBOW(dim=0)
    with pytest.raises(ValueError, match="min_alpha"):
        PVDBOW(alpha=0.01, min_alpha=0.1)
    m = PVDBOW(**CFG).fit(topical_docs(8)[0], progress=False)
    with pytest.raises(TypeError, match="str"):
        m.infer("a string")


# --- LDA -------------------------------------------------------------------------------------------


def lda_corpus(n_docs=30, V=40, k=3, length=50, seed=0):
    """Counts drawn from LDA's own generative story: sparse topics, sparse mixtures."""
    rng = np.random.default_rng(seed)
    beta = rng.dirichlet(np.full(V, 0.1), size=k)  # (k, V)
    theta = rng.dirichlet(np.full(k, 0.3), size=n_docs)  # (n, k)
    X = np.stack([rng.multinomial(length, theta[d] @ beta) for d in range(n_docs)])
    return sp.csr_matrix(X.astype(np.float64)), theta


def test_digamma_series_and_dirichlet_expectation():
    x = np.concatenate([np.geomspace(1e-3, 1e3, 200), [1e-7]])
    np.testing.assert_allclose(digamma_series(x), psi(x), rtol=1e-8, atol=1e-8)
    a = np.array([[1.0, 2.0, 3.0], [0.5, 0.5, 4.0]])
    np.testing.assert_allclose(dirichlet_expectation(a), psi(a) - psi(a.sum(1))[:, None])
    np.testing.assert_allclose(dirichlet_expectation(a[0]), psi(a[0]) - psi(6.0))
    with pytest.raises(ValueError, match="digamma"):
        dirichlet_expectation(a, "fast")


@pytest.mark.parametrize("max_iter", [1, 8])
def test_lda_matches_scikit_learn_batch_variational_bayes(max_iter):
    from sklearn.decomposition import LatentDirichletAllocation

    X, _ = lda_corpus()
    sk = LatentDirichletAllocation(3, learning_method="batch", max_iter=max_iter, random_state=0).fit(X)
    # With scikit-learn's digamma series the two agree to round-off ...
    ours = LDA(3, max_iter=max_iter, seed=0, digamma="series").fit(X)
    np.testing.assert_allclose(ours.components_, sk.components_, rtol=1e-9)
    np.testing.assert_allclose(ours.transform(X), sk.transform(X), rtol=1e-9, atol=1e-12)
    assert ours.perplexity(X) == pytest.approx(sk.perplexity(X), rel=1e-9)
    # ... with SciPy's exact digamma, to the ~1e-9 gap of the series, amplified by the iterations.
    exact = LDA(3, max_iter=max_iter, seed=0).fit(X)
    np.testing.assert_allclose(exact.components_, sk.components_, rtol=1e-5)
    np.testing.assert_allclose(exact.transform(X), sk.transform(X), atol=1e-6)


def test_lda_recovers_the_planted_topics_and_its_bound_rises():
    X, theta = lda_corpus(n_docs=60, V=30, k=2, length=80, seed=1)
    lda = LDA(2, max_iter=30, seed=0, evaluate_every=1).fit(X)
    T = lda.transform(X)
    np.testing.assert_allclose(T.sum(axis=1), 1.0)
    # Topics are found up to a permutation: the proportions correlate with the planted ones.
    r = max(np.corrcoef(T[:, 0], theta[:, 0])[0, 1], np.corrcoef(T[:, 0], theta[:, 1])[0, 1])
    assert r > 0.9, r
    perp = lda.history["perplexity"]
    assert len(perp) == 30 and perp[-1] < perp[0]
    assert lda.top_words([f"w{i}" for i in range(30)], n=3)[0][0].startswith("w")


def test_lda_errors():
    X, _ = lda_corpus()
    with pytest.raises(RuntimeError, match="fit"):
        LDA(3).transform(X)
    with pytest.raises(ValueError, match="non-negative"):
        LDA(3).fit(-X)
    lda = LDA(3, max_iter=1).fit(X)
    with pytest.raises(ValueError, match="same vocabulary"):
        lda.transform(X[:, :10])
    with pytest.raises(ValueError, match="n_topics"):
        LDA(0)
    with pytest.raises(ValueError, match="no words"):
        LDA(2).fit(sp.csr_matrix((3, 5)))


def test_reprs_and_fit_transform():
    X, _ = lda_corpus()
    lda = LDA(3, max_iter=5, seed=0)
    assert repr(lda) == f"LDA(n_topics=3, alpha={lda.alpha:.3g}, eta={lda.eta:.3g}, max_iter=5)"
    np.testing.assert_allclose(lda.fit_transform(X), LDA(3, max_iter=5, seed=0).fit(X).transform(X))
    m = PVDBOW(**CFG, seed=0)
    assert repr(m) == "PVDBOW(not trained, dim=16, negative=5, epochs=30)"
    docs, _ = topical_docs(n_docs=8, length=20)
    m = PVDBOW(**{**CFG, "epochs": 1}, seed=0).fit(docs, progress=False)
    assert repr(m) == f"PVDBOW(8 docs, {len(m.vocab)} words, dim=16, negative=5, epochs=1)"


# --- errors name the fix -------------------------------------------------------------------------


def test_pvdbow_input_errors_name_the_fix():
    with pytest.raises(ValueError, match="fit got no documents: pass a list of token lists"):
        PVDBOW(min_count=1).fit([], progress=False)
    with pytest.raises(ValueError, match=r"hold 1 in-vocabulary token\(s\): give more text or lower min_count"):
        PVDBOW(min_count=1).fit([["lonely"]], progress=False)
    docs, _ = topical_docs(n_docs=4, length=10)
    m = PVDBOW(**{**CFG, "epochs": 1}, seed=0).fit(docs, progress=False)
    with pytest.raises(ValueError, match="epochs must be >= 1, got 0"):
        m.infer([docs[0]], epochs=0)
    with pytest.raises(TypeError, match=r"docs must be token lists, got a str: use text.tokenize\(doc\)"):
        m.infer([docs[0], "a raw text among token lists"])
    with pytest.raises(TypeError, match=r"encode takes a list of texts, got one str: wrap it, encode\(\[text\]\)"):
        m.encode("one raw text")
    m.W_out.fill_(float("nan"))  # weights that diverged in training
    with pytest.raises(FloatingPointError, match=r"NaN/inf vectors: the learning rate is too high .* diverged"):
        m.infer([docs[0]])


def test_lda_argument_errors_name_the_fix():
    with pytest.raises(ValueError, match=r"digamma must be one of \['exact', 'series'\], got 'fast'"):
        LDA(2, digamma="fast")
    with pytest.raises(ValueError, match="max_iter and max_doc_update_iter must be positive integers"):
        LDA(2, max_iter=0)
    with pytest.raises(ValueError, match="max_iter and max_doc_update_iter must be positive integers"):
        LDA(2, max_doc_update_iter=0)
    with pytest.raises(ValueError, match="alpha and eta must be > 0, got 0.0, 0.5"):
        LDA(2, alpha=0)
    with pytest.raises(ValueError, match=r"non-empty \(n_docs, n_words\) count matrix, got shape \(0, 5\)"):
        LDA(2).fit(np.zeros((0, 5)))
    with pytest.raises(ValueError, match="X holds NaN or inf: it must be word counts"):
        LDA(2).fit(np.array([[1.0, np.nan], [2.0, 0.0]]))
    with pytest.raises(RuntimeError, match=r"LDA is not fitted: call fit\(X\) first"):
        LDA(2).top_words(["a", "b"])
    X, _ = lda_corpus(n_docs=6, V=5, k=2, length=10)
    lda = LDA(2, max_iter=1).fit(X)
    with pytest.raises(ValueError, match="3 words for 5 columns"):
        lda.top_words(["a", "b", "c"])
