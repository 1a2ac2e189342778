"""Tests for minilib.bench (chapter 09): metrics against SciPy / scikit-learn, the bootstrap and the
paired tests, every task on tiny fake models, the TF-IDF baseline, bad input, the task builders."""
import numpy as np
import pytest
import scipy.stats
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics import f1_score, homogeneity_completeness_v_measure, ndcg_score, v_measure_score

from minilib import bench, text


# --- fake models ---------------------------------------------------------------------------------


class TableModel:
    """Looks each text up in a dict of vectors; counts its calls."""

    def __init__(self, table: dict, dim: int):
        self.table, self.dim, self.calls = table, dim, 0

    def encode(self, texts):
        self.calls += 1
        return np.array([self.table[t] for t in texts], dtype=np.float32).reshape(len(texts), self.dim)


class RandomModel:
    """A fixed random vector per text (seeded by the text): no information at all."""

    def __init__(self, dim: int = 16):
        self.dim = dim

    def encode(self, texts):
        out = [np.random.default_rng(sum(map(ord, t)) * 7919 + len(t)).standard_normal(self.dim) for t in texts]
        return np.array(out, dtype=np.float32).reshape(len(texts), self.dim)


def labelled(n_per_class=12, classes=("a", "b", "c")):
    texts, labels = [], []
    for c in classes:
        for i in range(n_per_class):
            texts.append(f"{c} text number {i}")
            labels.append(c)
    return texts, labels


def one_hot_model(texts, labels):
    classes = sorted(set(labels))
    return TableModel({t: np.eye(len(classes))[classes.index(l)] for t, l in zip(texts, labels)}, len(classes))


# --- rank correlation ---------------------------------------------------------------------------


def test_rankdata_and_spearman_match_scipy_with_ties():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 6, 80).astype(float)       # many ties
    y = rng.normal(size=80) + 0.3 * x
    np.testing.assert_array_equal(bench.rankdata(x), scipy.stats.rankdata(x))
    assert bench.spearman(x, y) == pytest.approx(scipy.stats.spearmanr(x, y).statistic, abs=1e-12)
    assert bench.rankdata([10, 30, 20, 20]).tolist() == [1, 4, 2.5, 2.5]
    assert bench.spearman([1, 2, 3], [30, 20, 10]) == pytest.approx(-1.0)


def test_spearman_bad_input():
    assert np.isnan(bench.spearman([1, 1, 1], [1, 2, 3]))         # constant: undefined, as in SciPy
    with pytest.raises(ValueError, match="same length"):
        bench.spearman([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="NaN"):
        bench.spearman([1, np.nan, 3], [1, 2, 3])


# --- ranking metrics -----------------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 3, 10, 40])
def test_ndcg_matches_sklearn_graded_and_binary(k):
    rng = np.random.default_rng(k)
    S = rng.normal(size=(25, 40))
    graded = rng.integers(0, 4, size=(25, 40)).astype(float)
    graded[:, 0] = np.maximum(graded[:, 0], 1)                  # every query has something to find
    binary = (rng.random((25, 40)) < 0.1).astype(float)
    binary[np.arange(25), rng.integers(0, 40, 25)] = 1
    for R in (graded, binary):
        assert bench.ndcg_at_k(S, R, k).mean() == pytest.approx(ndcg_score(R, S, k=k), abs=1e-12)


def test_recall_mrr_by_hand():
    S = np.array([[0.9, 0.8, 0.7, 0.1],       # relevant docs 1 and 3: ranks 2 and 4
                  [0.1, 0.2, 0.3, 0.4]])      # relevant doc 0: rank 4
    R = np.array([[0, 1, 0, 1], [1, 0, 0, 0]], dtype=float)
    np.testing.assert_allclose(bench.recall_at_k(S, R, 2), [0.5, 0.0])
    np.testing.assert_allclose(bench.recall_at_k(S, R, 4), [1.0, 1.0])
    np.testing.assert_allclose(bench.mrr_at_k(S, R, k=None), [0.5, 0.25])
    np.testing.assert_allclose(bench.mrr_at_k(S, R, k=3), [0.5, 0.0])
    np.testing.assert_allclose(bench.ndcg_at_k(S, R, 4)[1], 1 / np.log2(5))


def test_ties_are_broken_against_the_model():
    S = np.zeros((3, 5))                                       # a model that scores everything alike
    R = np.eye(3, 5)
    assert bench.ndcg_at_k(S, R, 10).max() == pytest.approx(1 / np.log2(6))  # the relevant doc comes last
    assert bench.mrr_at_k(S, R, k=4).max() == 0.0


def test_ranking_metric_errors():
    with pytest.raises(ValueError, match="no relevant document"):
        bench.ndcg_at_k(np.zeros((2, 3)), np.array([[1, 0, 0], [0, 0, 0]]))
    with pytest.raises(ValueError, match=r"\(n_queries, n_docs\)"):
        bench.recall_at_k(np.zeros((2, 3)), np.zeros((2, 4)))


# --- clustering and classification metrics -----------------------------------------------------


def test_v_measure_matches_sklearn():
    rng = np.random.default_rng(0)
    for n_pred in (2, 5, 9):
        a, b = rng.integers(0, 5, 300), rng.integers(0, n_pred, 300)
        np.testing.assert_allclose(bench.homogeneity_completeness_v(a, b), homogeneity_completeness_v_measure(a, b),
                                   atol=1e-12)
        assert bench.v_measure(a, b, beta=2.0) == pytest.approx(v_measure_score(a, b, beta=2.0), abs=1e-12)
    labels = ["x", "y", "y", "z"]
    assert bench.v_measure(labels, [5, 7, 7, 9]) == 1.0                  # the same partition, other names
    assert bench.v_measure(labels, [0, 0, 0, 0]) == v_measure_score(labels, [0, 0, 0, 0]) == 0.0
    assert bench.v_measure([1, 1, 1], [0, 1, 2]) == v_measure_score([1, 1, 1], [0, 1, 2])
    with pytest.raises(ValueError, match="equal length"):
        bench.v_measure([0, 1], [0])


def test_macro_f1_matches_sklearn():
    rng = np.random.default_rng(1)
    a, b = rng.integers(0, 4, 200), rng.integers(0, 5, 200)          # one predicted class never true
    assert bench.macro_f1(a, b) == pytest.approx(f1_score(a, b, average="macro", zero_division=0), abs=1e-12)
    assert bench.accuracy(a, a) == 1.0 and bench.macro_f1(["p", "n"], ["p", "n"]) == 1.0


# --- bootstrap and paired tests --------------------------------------------------------------------


def test_bootstrap_ci_contains_the_mean_and_shrinks_with_n():
    rng = np.random.default_rng(0)
    widths = []
    for n in (100, 1600):
        v = rng.random(n)
        lo, hi = bench.bootstrap_ci(v, n_boot=2000, seed=0)
        assert lo < v.mean() < hi
        widths.append(hi - lo)
    assert 3 < widths[0] / widths[1] < 5                              # about sqrt(16) = 4


def test_bootstrap_forms_agree_and_are_seeded():
    v = np.random.default_rng(2).random(60)
    r1 = bench.bootstrap(v, n_boot=300, seed=5)
    r2 = bench.bootstrap(statistic=lambda i: v[i].mean(), n=60, n_boot=300, seed=5)
    np.testing.assert_allclose(r1, r2)
    np.testing.assert_array_equal(r1, bench.bootstrap(v, n_boot=300, seed=5))
    assert not np.array_equal(r1, bench.bootstrap(v, n_boot=300, seed=6))
    # a symmetric bootstrap distribution: bias-corrected = plain percentile interval
    sym = np.linspace(-1, 1, 1001)
    assert bench.percentile_interval(sym, 0.1, 0.0) == pytest.approx(bench.percentile_interval(sym, 0.1))
    # replicates shifted above the estimate pull the bias-corrected interval down
    assert bench.percentile_interval(sym + 0.3, 0.1, 0.0)[0] < bench.percentile_interval(sym + 0.3, 0.1)[0]


def test_paired_test_identical_and_different():
    rng = np.random.default_rng(0)
    a = rng.random(200)
    assert bench.paired_test(a, a) == 1.0
    assert bench.paired_test(a + 0.2, a, n_resamples=2000) == pytest.approx(1 / 2001)
    noise = a + rng.normal(0, 0.3, 200)                               # same mean, other items
    assert bench.paired_test(a, noise, n_resamples=2000) > 0.05
    assert bench.paired_test(a, noise, seed=3) == bench.paired_test(a, noise, seed=3)
    with pytest.raises(ValueError, match="same items"):
        bench.paired_test(a, a[:10])


def test_paired_bootstrap_test():
    rng = np.random.default_rng(0)
    reps = rng.normal(0.5, 0.05, 1000)
    assert bench.paired_bootstrap_test(reps, reps, 0.5, 0.5) == 1.0
    assert bench.paired_bootstrap_test(reps + 0.3, reps + rng.normal(0, 0.01, 1000), 0.8, 0.5) < 0.01


# --- the model check -----------------------------------------------------------------------------


def test_checked_model_caches_and_keeps_order():
    class Lengths:
        calls = 0

        def encode(self, texts):
            Lengths.calls += 1
            return np.array([[len(t), 1.0] for t in texts]).reshape(len(texts), 2)

    m = bench.CheckedModel(Lengths(), "lengths")
    texts = ["ccc", "a", "bbbbb", "dd"]
    E = m.encode(texts)
    np.testing.assert_array_equal(E[:, 0], [3, 1, 5, 2])       # rows in the caller's order, not sorted
    m.encode(list(texts))
    assert Lengths.calls == 2                                   # encode([]) once, the texts once
    assert m.dim == 2


@pytest.mark.parametrize("bad, match", [
    (lambda texts: np.zeros((len(texts), 3)) + (np.nan if texts else 0), "NaN or infinity"),
    (lambda texts: np.zeros((max(len(texts) - 1, 0), 3)), "one row per text"),
    (lambda texts: np.zeros((len(texts), 3 if not texts else 4)), "same width"),
    (lambda texts: np.zeros(3), r"encode\(\[\]\) must return an empty \(0, d\)"),
])
def test_bad_models_are_named_with_the_task(bad, match):
    class Bad:
        def encode(self, texts):
            return bad(list(texts))

    task = bench.ClusteringTask("tiny", *labelled(4, ("a", "b")), seeds=(0,), n_boot=10)
    with pytest.raises(bench.EmbeddingError, match=match) as err:
        task.run(Bad(), name="broken")
    assert "'broken'" in str(err.value)
    if "empty" not in match:
        assert "'tiny'" in str(err.value)


def test_a_model_that_raises_is_named():
    class Raises:
        def encode(self, texts):
            if texts:
                raise FloatingPointError("NaN in the pooled vectors")
            return np.zeros((0, 2))

    task = bench.ClusteringTask("tiny", *labelled(4, ("a", "b")), seeds=(0,), n_boot=10)
    with pytest.raises(bench.EmbeddingError, match="'nan model' failed on task 'tiny'.*NaN in the pooled"):
        task.run(Raises(), name="nan model")


def test_a_model_needs_encode():
    with pytest.raises(TypeError, match="encode"):
        bench.CheckedModel(object(), "nothing")


# --- tasks on fake data ----------------------------------------------------------------------------


def test_sts_tasks_perfect_and_random():
    # distinct angle differences (no ties in the gold scores), all below pi: cosine is monotone in them
    angles = {f"t{i}": a for i, a in enumerate(np.sort(np.random.default_rng(0).uniform(0, 2.5, 12)))}
    model = TableModel({t: [np.cos(a), np.sin(a)] for t, a in angles.items()}, 2)
    names = list(angles)
    G = np.array([[-abs(angles[a] - angles[b]) for b in names] for a in names])  # closer angle, more similar
    r = bench.MatrixSTSTask("circle", names, G, n_boot=200).run(model, "circle model")
    assert r["score"] == pytest.approx(1.0) and r["ci"][1] == pytest.approx(1.0)
    pairs = [(a, b) for a in names for b in names if a < b]
    task = bench.STSTask("pairs", [a for a, _ in pairs], [b for _, b in pairs],
                         [-abs(angles[a] - angles[b]) for a, b in pairs], n_boot=200)
    assert task.run(model)["score"] == pytest.approx(1.0)
    assert abs(task.run(RandomModel())["score"]) < 0.5
    with pytest.raises(ValueError, match="symmetric"):
        bench.MatrixSTSTask("bad", names[:3], np.arange(9.0).reshape(3, 3))


def test_matrix_sts_resamples_documents_not_pairs():
    rng = np.random.default_rng(0)
    texts = [f"d{i}" for i in range(20)]
    model = TableModel({t: rng.normal(size=4) for t in texts}, 4)
    G = rng.random((20, 20))
    G = G + G.T
    r = bench.MatrixSTSTask("docs", texts, G, n_boot=300).run(model)
    assert r["n"] == 20 and r["replicates"].shape == (300,) and r["per_item"] is None
    assert r["ci"][0] <= r["score"] <= r["ci"][1]


def test_retrieval_perfect_random_and_ids():
    docs = {f"doc{i}": f"body {i}" for i in range(30)}
    queries = {f"q{i}": f"question {i}" for i in range(30)}
    qrels = {f"q{i}": {f"doc{i}": 1} for i in range(30)}
    table = {**{f"body {i}": np.eye(30)[i] for i in range(30)}, **{f"question {i}": np.eye(30)[i] for i in range(30)}}
    task = bench.RetrievalTask("toy", queries, docs, qrels, n_boot=100)
    r = task.run(TableModel(table, 30))
    assert r["score"] == 1.0 and r["metrics"]["mrr@10"] == 1.0 and r["metrics"]["recall@1"] == 1.0
    assert r["per_item"].shape == (30,)
    assert task.run(RandomModel())["metrics"]["recall@1"] < 0.3
    with pytest.raises(KeyError, match="unknown query id"):
        bench.RetrievalTask("bad", queries, docs, {**qrels, "q99": {"doc1": 1}})
    with pytest.raises(KeyError, match="unknown document id"):
        bench.RetrievalTask("bad", queries, docs, {**qrels, "q3": {"doc77": 1}})
    with pytest.raises(ValueError, match="no relevant document"):
        bench.RetrievalTask("bad", queries, docs, {k: v for k, v in qrels.items() if k != "q4"})
    with pytest.raises(ValueError, match=">= 0"):
        bench.RetrievalTask("bad", queries, docs, {**qrels, "q3": {"doc3": -1}})


def test_classification_perfect_and_at_chance():
    texts, labels = labelled(20, ("pos", "neg"))
    task = bench.ClassificationTask("toy", texts, labels, n_folds=4, n_boot=200)
    r = task.run(one_hot_model(texts, labels))
    assert r["score"] == 1.0 and r["metrics"]["macro_f1"] == 1.0
    assert r["ci"] == (1.0, 1.0)
    chance = task.run(RandomModel())
    assert chance["score"] < 0.75 and chance["per_item"].shape == (40,)
    folds = task.folds()
    assert all(np.bincount(folds[np.array(labels) == c]).tolist() == [5, 5, 5, 5] for c in ("pos", "neg"))
    with pytest.raises(ValueError, match="smallest class"):
        bench.ClassificationTask("few", texts[:22], labels[:22], n_folds=5)
    with pytest.raises(ValueError, match="one label per text"):
        bench.ClassificationTask("bad", texts, labels[:-1])


def test_row_space_projection_gives_the_same_probe():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(30, 200)), rng.integers(0, 3, 30)
    T = rng.normal(size=(10, 200))
    B = bench._row_space(X)
    assert B.shape == (200, 30)
    p_full = LogisticRegression(C=1.0, max_iter=5000, tol=1e-10).fit(X, y).predict_proba(T)
    p_proj = LogisticRegression(C=1.0, max_iter=5000, tol=1e-10).fit(X @ B, y).predict_proba(T @ B)
    np.testing.assert_allclose(p_full, p_proj, atol=1e-5)


def test_clustering_perfect_and_at_chance():
    texts, labels = labelled(10)
    task = bench.ClusteringTask("toy", texts, labels, seeds=(0, 1), n_boot=100)
    r = task.run(one_hot_model(texts, labels))
    assert r["score"] == pytest.approx(1.0) and r["metrics"]["v_measure_seed_std"] == pytest.approx(0.0)
    assert task.run(RandomModel())["score"] < 0.3


def test_runs_are_deterministic():
    texts, labels = labelled(10)
    task = bench.ClassificationTask("toy", texts, labels, n_folds=5, C=1.0, n_boot=100)
    r1, r2 = task.run(RandomModel()), task.run(RandomModel())
    assert r1["score"] == r2["score"] and r1["ci"] == r2["ci"]
    np.testing.assert_array_equal(r1["replicates"], r2["replicates"])


# --- TF-IDF ----------------------------------------------------------------------------------------


def test_tfidf_matches_sklearn():
    docs = ["The cat sat on the mat.", "Dogs and cats, and more dogs!", "A dog, a cat, a mouse.",
            "Completely different words here", "the the the cat"]
    for min_df in (1, 2):
        ours = bench.TfidfEmbedder(min_df=min_df).fit(docs)
        sk = TfidfVectorizer(tokenizer=text.tokenize, lowercase=False, token_pattern=None, min_df=min_df).fit(docs)
        assert list(ours.vocab) == list(sk.get_feature_names_out())
        new = docs + ["a cat we never saw, and a zebra"]
        np.testing.assert_allclose(ours.encode(new), sk.transform(new).toarray(), atol=1e-6)
    E = ours.encode(["zebra quagga", "cat"])
    assert not E[0].any() and E.dtype == np.float32                   # no known word: a zero row
    assert ours.encode([]).shape == (0, ours.dim)
    with pytest.raises(RuntimeError, match="fit"):
        bench.TfidfEmbedder().encode(["x"])
    with pytest.raises(ValueError, match="min_df"):
        bench.TfidfEmbedder(min_df=9).fit(docs)


# --- evaluate, table, compare -------------------------------------------------------------------


def test_evaluate_table_and_compare():
    texts, labels = labelled(10, ("a", "b"))
    tasks = [bench.ClassificationTask("cls", texts, labels, C=1.0, n_boot=100),
             bench.ClusteringTask("clu", texts, labels, seeds=(0,), n_boot=100)]
    models = {"oracle": one_hot_model(texts, labels), "random": RandomModel()}
    df = bench.evaluate(models, tasks, progress=False)
    assert list(df.index) == ["oracle", "random"]
    assert df[("cls", "score")]["oracle"] == 1.0
    assert (df.xs("lo", axis=1, level="stat") <= df.xs("score", axis=1, level="stat")).all().all()
    t = bench.table(df)
    assert t.loc["oracle", "cls"] == "1.000 [1.000, 1.000]"
    res = df.attrs["results"]
    c = bench.compare(res["oracle", "cls"], res["random", "cls"], n_resamples=2000)
    assert c["method"] == "approximate randomisation" and c["p"] < 0.01 and c["delta"] > 0.2
    same = bench.compare(res["random", "clu"], res["random", "clu"])
    assert same["method"] == "paired bootstrap" and same["p"] == 1.0
    with pytest.raises(ValueError, match="same task"):
        bench.compare(res["oracle", "cls"], res["oracle", "clu"])
    wins = bench.win_rates(df)
    assert wins.loc["oracle", "cls"] == 1.0 and wins["cls"].sum() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="unique"):
        bench.evaluate(models, [tasks[0], tasks[0]])


# --- building the book's tasks -----------------------------------------------------------------------


def test_first_sentence_and_truncate():
    head, rest = bench.first_sentence("Anarchism is a political philosophy of freedom.  It rejects the U.S. state.")
    assert head == "Anarchism is a political philosophy of freedom." and rest == "It rejects the U.S. state."
    assert bench.first_sentence("Short one. Then the real first sentence goes on. Rest.")[0] == \
        "Short one. Then the real first sentence goes on."
    assert bench.first_sentence("Dr. No is a film by Terence Young. It stars Connery.")[0] == \
        "Dr. No is a film by Terence Young."
    assert bench.first_sentence("no end here")[1] == ""
    assert bench.truncate_words("a  b\nc d", 3) == "a b c"


def test_the_book_tasks_build():
    heads, bodies, labels = bench.bbc_articles()
    assert len(set(heads)) == len(heads) and len(set(bodies)) == len(bodies) and 2000 < len(heads) < 2225
    assert max(len(b.split()) for b in bodies) == 200
    h50, b50, l50 = bench.bbc_articles(n=50, seed=0)
    assert len(h50) == 50 and set(h50) <= set(heads) and len(set(l50)) == 5
    assert bench.bbc_articles(n=50, seed=0)[0] == h50
    assert set(h50) <= set(bench.bbc_articles(n=80, seed=0)[0])          # a smaller sample nests in a larger
    shares = {c: labels.count(c) / len(labels) for c in set(labels)}
    assert all(abs(l50.count(c) - 50 * s) < 1 for c, s in shares.items())  # stratified
    r = bench.bbc_retrieval(n=40, max_words=30)
    assert r.n_items == 40 and (r.relevance.sum(1) == 1).all()
    assert bench.bbc_classification(n=80).texts == bench.bbc_clustering(n=80).texts  # shared encodings
    w = bench.wiki_retrieval()
    assert w.n_items > 90 and all(q not in d for q, d in zip(w.queries, w.corpus))
    lee = bench.lee_sts()
    assert lee.n_items == 50 and lee.gold.shape == (50, 50)
    assert bench.polarity_classification().n_items == 200


def test_tasks_list_their_texts_and_all_texts_dedupes_in_order():
    names = ["a", "b", "c"]
    G = np.array([[1.0, 0.5, 0.1], [0.5, 1.0, 0.2], [0.1, 0.2, 1.0]])
    sts = bench.MatrixSTSTask("m", names, G)
    ret = bench.RetrievalTask("r", {"q1": "b question"}, {"d1": "a", "d2": "body"}, {"q1": {"d1": 1}})
    texts, y = labelled(6, ("x", "y"))
    cls = bench.ClassificationTask("c", texts, y)
    assert sts.texts == names and sts.n_items == 3 and repr(sts) == "MatrixSTSTask('m', 3 items)"
    assert ret.texts == ["b question", "a", "body"] and ret.n_items == 1
    assert cls.texts == list(texts) and cls.n_items == len(texts)
    sts.texts.append("z")                                # a copy: the task keeps its own list
    assert sts.n_items == 3
    # every distinct text once, first occurrence first: "a" (from the STS task) is not repeated by the retrieval task
    assert bench.all_texts([sts, ret, cls]) == ["a", "b", "c", "b question", "body", *dict.fromkeys(texts)]
    assert bench.all_texts([]) == []


def test_task_base_class_is_an_interface():
    task = bench.Task("abstract")
    for what in ("n_items", "texts"):
        with pytest.raises(NotImplementedError):
            getattr(task, what)
    with pytest.raises(NotImplementedError):
        task.run(RandomModel())
    with pytest.raises(ValueError, match="name"):
        bench.Task("")


def test_tfidf_embedder_repr_tells_whether_it_is_fitted():
    emb = bench.TfidfEmbedder(min_df=1)
    assert repr(emb) == "TfidfEmbedder(min_df=1, not fitted)"
    assert repr(emb.fit(["the cat", "the dog"])) == "TfidfEmbedder(min_df=1, 3 words)"


def test_bootstrap_takes_pre_drawn_resamples_as_any_array():
    v = np.arange(5.0)
    idx = bench.bootstrap_indices(5, 20, seed=0)
    np.testing.assert_array_equal(bench.bootstrap(v, idx=idx.tolist()), bench.bootstrap(v, idx=idx))
    with pytest.raises(ValueError, match=r"idx must be \(n_boot, 5\), got \(20, 4\)"):
        bench.bootstrap(v, idx=idx[:, :4].tolist())


def test_bootstrap_ci_of_a_statistic_of_indices():
    x = np.random.default_rng(0).standard_normal(200)
    y = 2 * x + np.random.default_rng(1).standard_normal(200)
    corr = lambda idx: float(np.corrcoef(x[idx], y[idx])[0, 1])
    lo, hi = bench.bootstrap_ci(statistic=corr, n=200, n_boot=500, seed=0)
    assert lo < corr(np.arange(200)) < hi and 0.8 < lo and hi < 0.95
    with pytest.raises(ValueError, match="statistic of an index array together with n"):
        bench.bootstrap_ci(statistic=corr)


# --- bad input: every error names the fix ------------------------------------------------------------


def test_metric_errors_name_the_fix():
    with pytest.raises(ValueError, match=r"x must be a 1-D sequence of numbers, got shape \(2, 2\)"):
        bench.spearman([[1, 2], [3, 4]], [1, 2])
    with pytest.raises(ValueError, match="at least 2 pairs, got 1"):
        bench.spearman([1.0], [2.0])
    S, R = np.zeros((2, 3)), np.eye(2, 3)
    with pytest.raises(ValueError, match="NaN or infinite values: check the embeddings"):
        bench.ndcg_at_k(np.where(R > 0, np.nan, S), R)
    with pytest.raises(ValueError, match=r"finite and >= 0 \(0 = not relevant\)"):
        bench.recall_at_k(S, R - np.eye(2, 3, k=1))                 # a grade of -1
    with pytest.raises(ValueError, match=r"finite and >= 0"):
        bench.mrr_at_k(S, np.where(R > 0, R, np.nan))
    with pytest.raises(ValueError, match="k must be at least 1, got 0"):
        bench.ndcg_at_k(S, R, k=0)
    with pytest.raises(ValueError, match="a clustering of zero items has no score"):
        bench.v_measure([], [])
    with pytest.raises(ValueError, match=r"non-empty 1-D arrays of equal length, got \(0,\) and \(0,\)"):
        bench.accuracy([], [])
    with pytest.raises(ValueError, match=r"equal length, got \(3,\) and \(2,\)"):
        bench.macro_f1(["a", "b", "a"], ["a", "b"])


def test_resampling_errors_name_the_fix():
    with pytest.raises(ValueError, match="cannot resample 0 items: a task needs at least one"):
        bench.bootstrap_indices(0)
    with pytest.raises(ValueError, match="n_boot must be at least 1, got 0"):
        bench.bootstrap_indices(5, n_boot=0)
    with pytest.raises(ValueError, match=r"per-item numbers \(n,\), got shape \(2, 3\)"):
        bench.bootstrap(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="statistic of an index array together with n"):
        bench.bootstrap(statistic=lambda i: float(len(i)))           # n missing
    with pytest.raises(ValueError, match=r"idx must be \(n_boot, 3\), got \(4, 2\)"):
        bench.bootstrap([1.0, 2.0, 3.0], idx=np.zeros((4, 2), dtype=int))
    for alpha in (0.0, 1.0):
        with pytest.raises(ValueError, match=r"alpha must be in \(0, 1\)"):
            bench.percentile_interval([0.1, 0.2, 0.3], alpha=alpha)
    with pytest.raises(ValueError, match="no items to compare"):
        bench.paired_test([], [])
    with pytest.raises(ValueError, match=r"same resamples: got shapes \(5,\) and \(4,\)"):
        bench.paired_bootstrap_test(np.zeros(5), np.zeros(4), 0.5, 0.5)


def test_a_model_returning_no_array_is_named():
    class Lists:
        def encode(self, texts):
            return [[1.0, 2.0] for _ in texts]

    with pytest.raises(bench.EmbeddingError, match=r"model 'listy' \(encode\(\[\]\)\) returned list, not an array"):
        bench.CheckedModel(Lists(), "listy")


def test_sts_task_errors_name_the_fix():
    with pytest.raises(ValueError, match="pairs: texts_a, texts_b and gold need one entry per pair, got 3, 2 and 3"):
        bench.STSTask("pairs", ["a", "b", "c"], ["d", "e"], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="pairs: a correlation needs at least 3 pairs, got 2"):
        bench.STSTask("pairs", ["a", "b"], ["c", "d"], [1.0, 2.0])
    names = ["a", "b", "c"]
    with pytest.raises(ValueError, match=r"docs: gold must be \(3, 3\) for 3 texts, got \(2, 2\)"):
        bench.MatrixSTSTask("docs", names, np.eye(2))
    G = np.ones((3, 3))
    G[0, 1] = G[1, 0] = np.nan
    with pytest.raises(ValueError, match="docs: gold holds NaN or infinite values"):
        bench.MatrixSTSTask("docs", names, G)
    with pytest.raises(ValueError, match="docs: needs at least 3 texts, got 2"):
        bench.MatrixSTSTask("docs", names[:2], np.eye(2))


def test_retrieval_task_errors_name_the_fix():
    from collections.abc import Mapping

    class Pairs(Mapping):
        """A mapping read from (id, text) records, which may repeat an id."""

        def __init__(self, pairs):
            self.pairs = pairs

        def __getitem__(self, key):
            return next(t for k, t in self.pairs if k == key)

        def __iter__(self):
            return (k for k, _ in self.pairs)

        def __len__(self):
            return len(self.pairs)

    docs = Pairs([("d1", "first body"), ("d1", "second body")])
    with pytest.raises(ValueError, match="dup: query and document ids must be unique"):
        bench.RetrievalTask("dup", {"q1": "a question"}, docs, {"q1": {"d1": 1}})


def test_classification_and_clustering_task_errors_name_the_fix():
    texts, labels = labelled(10, ("a", "b"))
    with pytest.raises(ValueError, match=r"one: needs at least 2 classes, got \['x'\]"):
        bench.ClassificationTask("one", *labelled(6, ("x",)))
    with pytest.raises(ValueError, match=r"one: needs at least 2 classes"):
        bench.ClusteringTask("one", *labelled(6, ("x",)))
    for C in (0.0, -1.0, [], [1.0, -0.5]):
        with pytest.raises(ValueError, match="cls: C must be a positive number or a non-empty list of them"):
            bench.ClassificationTask("cls", texts, labels, C=C)
    with pytest.raises(ValueError, match="cls: choosing C needs inner_folds >= 2.*pass a single C or add texts"):
        bench.ClassificationTask("cls", texts, labels, inner_folds=1)
    few_texts, few_labels = labelled(3, ("a", "b"))                  # 2 per class in each training part
    with pytest.raises(ValueError, match="choosing C needs inner_folds >= 2"):
        bench.ClassificationTask("cls", few_texts, few_labels, n_folds=3)
    assert bench.ClassificationTask("cls", few_texts, few_labels, n_folds=3, C=1.0).Cs == (1.0,)  # a single C is fine
    with pytest.raises(ValueError, match="clu: give at least one k-means seed"):
        bench.ClusteringTask("clu", texts, labels, seeds=())


def test_tfidf_and_evaluate_errors_name_the_fix():
    for min_df in (0, 1.5):
        with pytest.raises(ValueError, match=r"min_df must be a positive integer \(a number of texts\)"):
            bench.TfidfEmbedder(min_df=min_df)
    with pytest.raises(ValueError, match="fit needs at least one text"):
        bench.TfidfEmbedder().fit([])
    texts, labels = labelled(4, ("a", "b"))
    task = bench.ClusteringTask("clu", texts, labels, seeds=(0,), n_boot=10)
    with pytest.raises(ValueError, match=r"give at least one model: \{name: model\}"):
        bench.evaluate({}, [task], progress=False)
    with pytest.raises(ValueError, match="give at least one task"):
        bench.evaluate({"random": RandomModel()}, [], progress=False)


def test_bbc_articles_rejects_a_bad_sample_size(monkeypatch):
    # a stand-in for the 2,225 BBC files: 12 distinct articles, "headline\nbody"
    fake = tuple(f"Headline {i}\nBody of article {i}." for i in range(12)), tuple("ab"[i % 2] for i in range(12))
    monkeypatch.setattr(bench, "_bbc_news", lambda: fake)
    assert len(bench.bbc_articles(n=10)[0]) == 10
    for n in (5, 13):
        with pytest.raises(ValueError, match=rf"n must be between 10 and 12 \(the distinct articles\), got {n}"):
            bench.bbc_articles(n=n)


def test_classification_probe_in_the_row_space_predicts_like_the_full_width_probe(monkeypatch):
    texts, y = labelled(10, ("a", "b", "c"))
    wide = RandomModel(dim=300)                                  # 300 columns for 24 training texts per fold
    task = bench.ClassificationTask("wide", texts, y, n_boot=50)
    projected = task.run(wide)
    monkeypatch.setattr(bench, "_row_space", lambda X: None)     # fit on all 300 columns instead
    full = task.run(wide)
    np.testing.assert_array_equal(projected["per_item"], full["per_item"])
    assert projected["score"] == full["score"]
