"""minilib.limits: top-2 qrels, free embeddings and critical n, the moment-curve construction,
the LIMIT-style collection, MaxSim and the multi-vector retriever. Small sizes keep it fast."""
import itertools
import math
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import numpy as np
import pytest
import torch

from minilib import limits as L
from minilib.text import tokenize

FAST = dict(steps=1500, restarts=4)


# --- qrels, the solved test, the threshold matrix -------------------------------------------------


def test_top2_qrels_lists_every_pair_once():
    q = L.top2_qrels(5)
    assert q.shape == (10, 2) and q.dtype == np.int64
    assert [tuple(r) for r in q] == list(itertools.combinations(range(5), 2))
    A = L.qrel_matrix(q, 5)
    assert A.shape == (10, 5) and (A.sum(1) == 2).all() and (A.sum(0) == 4).all()


def test_solved_is_strict_and_checks_shapes():
    qrels = np.array([[0, 1]])
    assert L.solved([[3.0, 2.0, 1.0]], qrels).tolist() == [True]
    assert L.solved([[3.0, 1.0, 1.0]], qrels).tolist() == [False]   # a tie with an irrelevant document
    assert L.solved([[3.0, 0.5, 1.0]], qrels).tolist() == [False]
    with pytest.raises(ValueError, match="one row of qrels per query"):
        L.solved(np.zeros((2, 3)), qrels)
    with pytest.raises(ValueError, match="outside"):
        L.solved(np.zeros((1, 3)), np.array([[0, 3]]))
    with pytest.raises(ValueError, match="twice"):
        L.solved(np.zeros((1, 3)), np.array([[1, 1]]))


def test_threshold_matrix_has_the_qrel_signs_and_rank_at_most_d_plus_one():
    r = L.free_embedding(7, 4, **FAST)
    assert r.solved
    S = r.Q.astype(np.float64) @ r.D.astype(np.float64).T
    qrels = L.top2_qrels(7)
    M = L.threshold_matrix(S, qrels)
    assert np.array_equal(np.sign(M), 2 * L.qrel_matrix(qrels, 7) - 1)
    assert np.linalg.matrix_rank(M) <= 4 + 1
    with pytest.raises(ValueError, match="not solved"):
        L.threshold_matrix(-S, qrels)


# --- free embeddings ---------------------------------------------------------------------------------


def test_free_embedding_solves_a_small_case_with_unit_vectors():
    r = L.free_embedding(6, 4, **FAST)
    assert r.solved and r.accuracy == 1.0 and r.steps < 1500
    assert r.Q.shape == (15, 4) and r.D.shape == (6, 4)
    np.testing.assert_allclose(np.linalg.norm(r.D, axis=1), 1, atol=1e-5)
    assert L.solved(r.Q @ r.D.T, L.top2_qrels(6)).all()
    assert r.history[-1][2] == 1.0 and r.history[0][0] == 0


def test_free_embedding_fails_four_documents_on_the_circle():
    # Unit vectors in 2-D lie on a circle; a query's two best documents are its nearest ones by angle,
    # which are always neighbours on the circle. Four documents have 4 neighbouring pairs but 6 pairs.
    r = L.free_embedding(4, 2, **FAST)
    assert not r.solved and r.accuracy <= 4 / 6 + 1e-6
    assert L.free_embedding(3, 2, **FAST).solved


def test_free_embedding_infonce_loss_and_determinism():
    a = L.free_embedding(6, 4, loss="infonce", **FAST)
    b = L.free_embedding(6, 4, loss="infonce", **FAST)
    assert a.solved and a.steps == b.steps and np.array_equal(a.Q, b.Q)


def test_critical_n_grows_with_d():
    c2 = L.critical_n(2, steps=600)
    assert c2.n == 3 and [t[:2] for t in c2.trials] == [(3, True), (4, False)]   # the circle: exactly 3
    assert L.critical_n(2, steps=600, progress=True).trials == c2.trials          # a progress bar changes nothing
    c3 = L.critical_n(3, steps=600).n
    assert c3 >= 4                  # four unit vectors at the corners of a tetrahedron solve every pair
    assert L.critical_n(4, start=8, steps=600).n > c3
    down = L.critical_n(3, start=c3 + 2, steps=600)     # a start above the answer steps down to it
    assert down.n == c3 and [t[1] for t in down.trials] == [False, False, True]


def test_critical_n_of_one_dimension_is_two():
    assert L.critical_n(1, steps=200).n == 2


def test_free_embedding_errors():
    with pytest.raises(ValueError, match="n must be an int >= 3"):
        L.free_embedding(2, 4)
    with pytest.raises(ValueError, match="d must be an int >= 1"):
        L.free_embedding(5, 0)
    with pytest.raises(ValueError, match="loss must be one of"):
        L.free_embedding(5, 2, loss="hinge")
    with pytest.raises(ValueError, match="temperature"):
        L.free_embedding(5, 2, temperature=0)


def test_published_fit():
    np.testing.assert_allclose(L.published_critical_n([4, 8, 12, 16]), [6.6602, 26.9374, 51.7202, 82.4294], atol=1e-4)


# --- the moment curve ----------------------------------------------------------------------------------


@pytest.mark.parametrize("n,k,unit", [(40, 2, False), (40, 2, True), (12, 3, False)])
def test_moment_curve_solves_every_subset_in_2k_dimensions(n, k, unit):
    Q, D, qrels = L.moment_curve(n, k, unit=unit)
    assert D.shape == (n, 2 * k + unit) and len(qrels) == math.comb(n, k)
    assert L.solved(Q @ D.T, qrels).all()
    if unit:
        np.testing.assert_allclose(np.linalg.norm(D, axis=1), 1)


def test_moment_curve_breaks_in_float32_long_before_float64():
    Q, D, qrels = L.moment_curve(200)
    assert L.solved(Q @ D.T, qrels).all()
    assert not L.solved(Q.astype(np.float32) @ D.astype(np.float32).T, qrels).all()


# --- the LIMIT-style collection ----------------------------------------------------------------------


def test_limit_dataset_covers_every_core_pair_with_exactly_two_relevant_documents():
    ds = L.limit_dataset(n_core=8, n_distractors=20, seed=3)
    assert len(ds.docs) == 28 and len(ds.queries) == 28 == len(ds.qrels)
    pairs = {tuple(sorted(map(int, r))) for r in ds.qrels}
    assert pairs == set(itertools.combinations(sorted(ds.core.tolist()), 2))
    words = [set(tokenize(d)) for d in ds.docs]
    for q, (a, b), thing in zip(ds.queries, ds.qrels, ds.query_attributes):
        assert q == f"Who likes {thing}?"
        having = [j for j, w in enumerate(words) if thing in w]
        assert having == sorted([a, b])       # exactly the two relevant documents mention it
    assert all(len(a) == 7 for a in ds.doc_attributes)   # n_core - 1 things each, distractors too


def test_attributes_are_distinct_single_tokens():
    assert len(L.ATTRIBUTES) == len(set(L.ATTRIBUTES)) == 1392
    assert all(tokenize(a) == [a] for a in L.ATTRIBUTES)
    # Every document has the same number of tokens (two name words, "likes", the things, "and"):
    # length gives BM25 and the encoders nothing to go on.
    ds = L.limit_dataset(n_core=6, n_distractors=30, seed=5)
    assert {len(tokenize(d)) for d in ds.docs} == {2 + 1 + 5 + 1}


def test_limit_dataset_is_deterministic_for_a_seed():
    a, b = L.limit_dataset(6, 10, seed=1), L.limit_dataset(6, 10, seed=1)
    assert a.docs == b.docs and a.queries == b.queries and np.array_equal(a.qrels, b.qrels)
    assert L.limit_dataset(6, 10, seed=2).docs != a.docs


def test_limit_dataset_errors():
    with pytest.raises(ValueError, match="n_core must be an int >= 3"):
        L.limit_dataset(2)
    with pytest.raises(ValueError, match="use n_core <="):
        L.limit_dataset(60, 10)


def test_recall_counts_relevant_documents_found():
    qrels = np.array([[0, 1], [2, 3]])
    found = np.array([[1, 5, 0], [4, 2, 6]])
    assert L.recall(found, qrels, 2) == pytest.approx((0.5 + 0.5) / 2)
    assert L.recall(found, qrels, 3) == pytest.approx((1.0 + 0.5) / 2)
    with pytest.raises(ValueError, match="use k >= 2"):
        L.recall(found, qrels, 1)
    with pytest.raises(ValueError, match="larger k"):
        L.recall(found, qrels, 4)


# --- MaxSim and the multi-vector retriever -------------------------------------------------------------


def test_maxsim_equals_a_brute_force_loop():
    g = torch.Generator().manual_seed(0)
    q, d = torch.randn(3, 4, 8, generator=g), torch.randn(5, 6, 8, generator=g)
    qm = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]], dtype=torch.bool)
    dm = torch.ones(5, 6, dtype=torch.bool)
    dm[1, 3:] = False
    dm[4, 1:] = False
    S = L.maxsim(q, d, qm, dm)
    for a in range(3):
        for b in range(5):
            want = sum(max(float(q[a, i] @ d[b, j]) for j in range(6) if dm[b, j]) for i in range(4) if qm[a, i])
            assert float(S[a, b]) == pytest.approx(want, rel=1e-5)
    with pytest.raises(ValueError, match="same dim"):
        L.maxsim(q, torch.randn(5, 6, 7))
    with pytest.raises(ValueError, match="masks"):
        L.maxsim(q, d, qm[:, :2], dm)


@pytest.fixture(scope="module")
def minilm_parts():
    from minilib import data
    from minilib.transformer import load_minilm_encoder

    return load_minilm_encoder(data.load("minilm"))


def test_multivector_search_is_exact_maxsim_and_pooled_is_the_sentence_embedding(minilm_parts):
    enc = minilm_parts
    ds = L.limit_dataset(n_core=5, n_distractors=3, attributes_per_doc=4, seed=0)
    mv = L.MultiVector(enc.model, enc.tokenizer, doc_chunk=3, query_batch=4)   # several chunks and batches
    mv.add(ds.docs[:5]).add(ds.docs[5:])
    assert mv.ntotal == 8 and mv.offsets[-1] == len(mv.tokens)
    np.testing.assert_allclose(mv.pooled, enc.encode(ds.docs), atol=1e-5)
    # No [CLS], [SEP] or punctuation among the kept vectors: "Who likes X?" keeps who, likes and X's pieces.
    qv, _ = mv.encode(["Who likes quokkas?"])
    assert len(qv[0]) == len(enc.tokenizer.tokenize("who likes quokkas"))
    qv, _ = mv.encode(ds.queries)
    dv, _ = mv.encode(ds.docs)
    (qp, qmask), (dp, dmask) = mv._pad(qv), mv._pad(dv)
    want = L.maxsim(qp, dp, qmask, dmask).numpy()
    np.testing.assert_allclose(mv.scores(ds.queries), want, rtol=1e-5, atol=1e-5)
    S, I = mv.search(ds.queries, 10)
    assert I.shape == (10, 10) and (I[:, 8:] == -1).all()
    assert L.recall(I, ds.qrels, 2) == 1.0      # a word in the query is a word in the document: easy for MaxSim
    with pytest.raises(ValueError, match="empty"):
        L.MultiVector(enc.model, enc.tokenizer).scores(["x"])


def test_qrels_scores_and_collection_errors_name_the_fix():
    with pytest.raises(ValueError, match=r"non-empty \(m, k\) integer array.*dtype float64"):
        L.qrel_matrix(np.array([[0.0, 1.0]]), 3)
    with pytest.raises(ValueError, match=r"non-empty \(m, k\) integer array.*shape \(0, 2\)"):
        L.qrel_matrix(np.zeros((0, 2), dtype=np.int64), 3)
    with pytest.raises(ValueError, match=r"scores must be a matrix \(m queries, n documents\), got shape \(3,\)"):
        L.solved([3.0, 2.0, 1.0], np.array([[0, 1]]))
    with pytest.raises(ValueError, match="every document is relevant to every query"):
        L.solved([[1.0, 2.0]], np.array([[0, 1]]))
    with pytest.raises(ValueError, match="k=3 must be smaller than n=3"):
        L.moment_curve(3, k=3)
    for bad in (-1, 2.0, True):
        with pytest.raises(ValueError, match=f"n_distractors must be an int >= 0, got {bad!r}"):
            L.limit_dataset(4, bad)
    with pytest.raises(ValueError, match="n_core=60 needs 1770 distinct things but ATTRIBUTES has 1392: use n_core <= 53"):
        L.limit_dataset(60, 0)      # without distractors the core alone asks for too many things
    with pytest.raises(ValueError, match=r"same number of rows, got shapes \(3, 2\) and \(1, 2\)"):
        L.recall(np.zeros((3, 2), dtype=np.int64), np.array([[0, 1]]), 2)
    with pytest.raises(ValueError, match="same number of rows"):
        L.recall(np.array([0, 1]), np.array([[0, 1]]), 2)      # found_ids must be (m, k), not flat


def test_multivector_errors_name_the_fix(word_tokenizer):
    from minilib.transformer import Transformer, TransformerConfig

    torch.manual_seed(0)
    model = Transformer(TransformerConfig(vocab_size=50, d_model=8, n_layers=1, n_heads=2, d_ff=16, max_len=16))
    with pytest.raises(TypeError, match=r"tokenizer needs an encode_batch\(texts, max_len=\.\.\., truncate=True\)"):
        L.MultiVector(model, tokenizer=object())
    mv = L.MultiVector(model, word_tokenizer, max_len=16)
    with pytest.raises(TypeError, match=r"got one str: wrap it, \[text\]"):
        mv.encode("who likes tea")
    with pytest.raises(ValueError, match="no texts given: pass at least one"):
        mv.encode([])
    mv.add(["ann likes tea", "bob likes jam"])
    assert mv.ntotal == 2
    with pytest.raises(ValueError, match=r"encoded queries must be non-empty \(T, 8\) tensors"):
        mv.scores([torch.zeros(3, 5)])                  # wrong width
    with pytest.raises(ValueError, match=r"non-empty \(T, 8\)"):
        mv.scores([torch.zeros(0, 8)])                  # no token at all
    qv, _ = mv.encode(["who likes tea"])
    assert mv.scores(qv).shape == (1, 2)                # the vectors encode() returns are accepted
