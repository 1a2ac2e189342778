"""Tests of minilib.recipes: mining with the false-negative filter, focal InfoNCE, soups,
embedding distillation, the student, asymmetric search, the embedding filter, the vector head."""
import functools

import numpy as np
import pytest
import torch

from minilib import contrastive, recipes, train
from minilib.llm_embed import DecoderEmbedder, Lookup
from minilib.transformer import CausalLM, TransformerConfig

nce = functools.partial(contrastive.info_nce, temperature=0.05)


def _unit(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(*shape, generator=g), dim=-1)


# --- mining ---------------------------------------------------------------------------------------


def test_mining_never_returns_the_positive_and_matches_a_brute_force():
    q, d = _unit(10, 8), _unit(30, 8, seed=1)
    pos = torch.arange(10) * 3
    neg = recipes.mine_hard_negatives(q, d, pos, k=4, relative=None)
    assert neg.shape == (10, 4) and neg.dtype == torch.long
    S = q @ d.T
    for i in range(10):
        assert int(pos[i]) not in neg[i].tolist()
        ranked = [j for j in torch.argsort(S[i], descending=True).tolist() if j != int(pos[i])]
        assert neg[i].tolist() == ranked[:4]


def test_the_filter_drops_candidates_close_to_the_positive():
    q = torch.tensor([[1.0, 0.0]])
    # positive at cos 0.8; a near-duplicate at 0.9 (above), one at 0.78 (>= 0.95 * 0.8 = 0.76), one at 0.5
    angles = torch.tensor([np.arccos(0.8), np.arccos(0.9), np.arccos(0.78), np.arccos(0.5)])
    d = torch.stack([angles.cos(), angles.sin()], dim=1)
    neg, dropped = recipes.mine_hard_negatives(q, d, [0], k=1, relative=0.95, return_dropped=True)
    assert neg.tolist() == [[3]]
    assert dropped.tolist() == [[1]]  # the top candidate of the unfiltered ranking was removed
    assert recipes.mine_hard_negatives(q, d, [0], k=1, relative=None).tolist() == [[1]]
    # absolute margin: drop anything >= 0.8 - 0.1 = 0.7
    assert recipes.mine_hard_negatives(q, d, [0], k=1, relative=None, margin=0.1).tolist() == [[3]]
    # exclude a document explicitly
    assert recipes.mine_hard_negatives(q, d, [0], k=1, relative=None, exclude={0: [1]}).tolist() == [[2]]


def test_mining_is_deterministic_with_ties():
    q = torch.ones(2, 4)
    d = torch.ones(6, 4) * torch.tensor([[1.0], [1.0], [1.0], [1.0], [1.0], [1.0]])
    a = recipes.mine_hard_negatives(q, d, [0, 1], k=3, relative=None)
    b = recipes.mine_hard_negatives(q, d, [0, 1], k=3, relative=None)
    assert torch.equal(a, b) and a.tolist() == [[1, 2, 3], [0, 2, 3]]


def test_mining_errors():
    q, d = _unit(3, 4), _unit(5, 4, seed=1)
    with pytest.raises(ValueError, match="one positive per query"):
        recipes.mine_hard_negatives(q, d, [0, 1], k=1)
    with pytest.raises(ValueError, match="index the 5 documents"):
        recipes.mine_hard_negatives(q, d, [0, 1, 7], k=1)
    with pytest.raises(ValueError, match="fewer than k"):
        recipes.mine_hard_negatives(q, d, [0, 1, 2], k=5, relative=None)
    with pytest.raises(ValueError, match="same width"):
        recipes.mine_hard_negatives(q, _unit(5, 3), [0, 1, 2], k=1)
    with pytest.raises(ValueError, match="k must be"):
        recipes.mine_hard_negatives(q, d, [0, 1, 2], k=0)


# --- focal InfoNCE -------------------------------------------------------------------------------


def test_focal_with_gamma_zero_is_info_nce():
    q, k = torch.randn(6, 8), torch.randn(9, 8)
    torch.testing.assert_close(recipes.focal_info_nce(q, k, 0.05, 0.0), contrastive.info_nce(q, k, 0.05))


def test_focal_matches_the_formula_and_shrinks_confident_pairs():
    q, k = torch.randn(6, 8), torch.randn(6, 8)
    logits = torch.nn.functional.normalize(q, dim=-1) @ torch.nn.functional.normalize(k, dim=-1).T / 0.1
    p = logits.softmax(dim=1).diagonal()
    expected = (-(1 - p) ** 2 * p.log()).mean()
    torch.testing.assert_close(recipes.focal_info_nce(q, k, 0.1, 2.0), expected)
    assert recipes.focal_info_nce(q, k, 0.1, 2.0) < recipes.focal_info_nce(q, k, 0.1, 0.0)
    with pytest.raises(ValueError, match="gamma"):
        recipes.focal_info_nce(q, k, 0.1, -1.0)
    with pytest.raises(ValueError, match="temperature"):
        recipes.focal_info_nce(q, k, 0.0, 1.0)


# --- soups ----------------------------------------------------------------------------------------


def _sd(seed):
    torch.manual_seed(seed)
    m = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    return m.state_dict()


def test_soup_of_identical_dicts_is_identity_and_of_two_is_the_average():
    a, b = _sd(0), _sd(1)
    s = recipes.soup([a, a, a])
    assert all(torch.allclose(s[key].double(), a[key].double()) for key in a)
    s2 = recipes.soup([a, b])
    torch.testing.assert_close(s2["0.weight"], (a["0.weight"] + b["0.weight"]) / 2)
    assert s2["1.num_batches_tracked"].dtype == torch.long
    w = recipes.soup([a, b], weights=[3, 1])
    torch.testing.assert_close(w["0.bias"], 0.75 * a["0.bias"] + 0.25 * b["0.bias"])


def test_soup_errors():
    a = _sd(0)
    with pytest.raises(ValueError, match="empty"):
        recipes.soup([])
    b = dict(a)
    b.pop("0.bias")
    with pytest.raises(KeyError, match="different keys"):
        recipes.soup([a, b])
    c = dict(a)
    c["0.weight"] = torch.zeros(2, 2)
    with pytest.raises(ValueError, match="shapes"):
        recipes.soup([a, c])
    d = dict(a)
    d["1.num_batches_tracked"] = torch.tensor(7)
    with pytest.raises(ValueError, match="integer"):
        recipes.soup([a, d])
    with pytest.raises(ValueError, match="weight"):
        recipes.soup([a, a], weights=[1.0])


def test_greedy_soup_adds_only_what_helps():
    target = torch.zeros(3)
    cands = [{"w": torch.tensor([1.0, 0.0, 0.0])}, {"w": torch.tensor([-1.0, 0.0, 0.0])},
             {"w": torch.tensor([0.0, 5.0, 0.0])}]
    evaluate = lambda sd: -float((sd["w"] - target).norm())  # noqa: E731
    sd, chosen, info = recipes.greedy_soup(cands, evaluate)
    assert chosen == [0, 1]  # the average of 0 and 1 is the target; adding 2 hurts
    torch.testing.assert_close(sd["w"], target)
    assert info["soup"] == 0.0 and info["scores"] == [-1.0, -1.0, -5.0]
    with pytest.raises(ValueError):
        recipes.greedy_soup([], evaluate)


# --- distillation ---------------------------------------------------------------------------------


def test_distill_losses():
    s, t = _unit(5, 8), _unit(5, 8, seed=1)
    cos = (s * t).sum(1)
    torch.testing.assert_close(recipes.distill_embeddings_loss(s, t, "mse"), (2 - 2 * cos).mean())
    torch.testing.assert_close(recipes.distill_embeddings_loss(s, t, "cosine"), (1 - cos).mean())
    assert float(recipes.distill_embeddings_loss(t, t)) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="same"):
        recipes.distill_embeddings_loss(s, t[:, :4])
    with pytest.raises(ValueError, match="kind"):
        recipes.distill_embeddings_loss(s, t, "kl")


def test_student_starts_as_the_mean_of_its_token_vectors_and_learns_the_teacher(word_tokenizer):
    torch.manual_seed(0)
    table = torch.randn(32, 8)
    st = recipes.StudentEncoder(table, 8, tokenizer=word_tokenizer, normalize=False)
    ids, mask = word_tokenizer.encode_batch(["a b c", "dd"], 8)
    out = st(ids, mask)
    torch.testing.assert_close(out[0], table[ids[0, :3]].mean(0))
    torch.testing.assert_close(out[1], table[ids[1, 0]])
    texts = [f"w{i} w{i + 1} w{i + 2}" for i in range(40)]
    teacher = _unit(40, 8, seed=3)
    data = (*contrastive.tokenize_texts(word_tokenizer, texts, 8), teacher)
    student = recipes.StudentEncoder(table, 8, tokenizer=word_tokenizer)
    with torch.no_grad():
        before = float(recipes.distill_loss_fn("mse")(student, data))
    train.fit(student, train.Batches(data, 40), recipes.distill_loss_fn("mse"), steps=60, lr=0.05,
              weight_decay=0.0, progress=False, device="cpu")
    with torch.no_grad():
        after = float(recipes.distill_loss_fn("mse")(student, data))
    assert after < 0.5 * before
    E = student.encode(texts)
    assert E.shape == (40, 8) and np.allclose(np.linalg.norm(E, axis=1), 1, atol=1e-5)
    assert student.encode([]).shape == (0, 8)
    with pytest.raises(TypeError):
        student.encode("one text")


def test_asymmetric_routes_queries_and_documents():
    qs, ds = ["q1", "q2"], ["d1", "d2", "d3"]
    qm = Lookup(qs, np.eye(4)[:2])
    dm = Lookup(ds, np.eye(4)[[1, 0, 2]])
    both = recipes.Asymmetric(qm, dm, qs)
    E = both.encode(["q2", "d1", "q1"])
    assert np.allclose(E, np.eye(4)[[1, 1, 0]])
    assert both.encode([]).shape == (0, 4)
    scores, idx = recipes.asymmetric_search(qm.encode(qs), dm.encode(ds), k=2)
    assert idx[:, 0].tolist() == [1, 0] and scores.shape == (2, 2)
    with pytest.raises(ValueError, match="k must be"):
        recipes.asymmetric_search(qm.encode(qs), dm.encode(ds), k=9)
    with pytest.raises(ValueError, match="widths"):
        recipes.Asymmetric(qm, Lookup(ds, np.eye(3)), qs).encode(["q1", "d1"])


# --- the embedding filter ------------------------------------------------------------------------


def test_embedding_filter_is_an_orthogonal_projector_removing_the_frequent_direction():
    g = torch.Generator().manual_seed(0)
    W = torch.randn(50, 6, generator=g)
    u = torch.nn.functional.normalize(torch.randn(6, generator=g), dim=0)
    W[:5] = 20 * u + 0.01 * W[:5]  # the frequent tokens all write along u
    freq = np.ones(50)
    freq[:5] = 1000
    P = recipes.embedding_filter(W, freq, k=1).double()
    torch.testing.assert_close(P @ P, P)
    torch.testing.assert_close(P, P.T)
    assert float((P @ u.double()).norm()) < 1e-2  # u is (almost) removed
    assert abs(torch.trace(P).item() - 5) < 1e-6  # rank d - k
    P2 = recipes.embedding_filter(W, freq, k=2)
    assert abs(torch.trace(P2.double()).item() - 4) < 1e-5
    X = np.random.default_rng(0).normal(size=(7, 6))
    Y = recipes.apply_projector(X, P)
    assert np.allclose(Y @ u.numpy(), 0, atol=1e-2) and Y.dtype == np.float32


def test_embedding_filter_ignores_special_tokens_and_rare_tokens():
    g = torch.Generator().manual_seed(1)
    W = torch.randn(20, 4, generator=g)
    freq = np.arange(20, dtype=float)
    freq[19] = 1e9  # a padding token counted by mistake
    a = recipes.embedding_filter(W, freq, k=1, special_ids=[19])
    freq2 = freq.copy()
    freq2[19] = 0
    torch.testing.assert_close(a, recipes.embedding_filter(W, freq2, k=1))
    b = recipes.embedding_filter(W, freq2, k=1, n_tokens=3)
    W3 = W[[18, 17, 16]].double() * torch.tensor([18.0, 17.0, 16.0]).double().div(51).sqrt()[:, None]
    u = torch.linalg.svd(W3)[2][0]
    torch.testing.assert_close(b.double(), torch.eye(4, dtype=torch.double) - torch.outer(u, u), atol=1e-5, rtol=0)


def test_embedding_filter_errors():
    W = torch.randn(10, 4)
    with pytest.raises(ValueError, match="one count per vocabulary row"):
        recipes.embedding_filter(W, np.ones(9))
    with pytest.raises(ValueError, match="k must be"):
        recipes.embedding_filter(W, np.ones(10), k=4)
    with pytest.raises(ValueError, match="positive count"):
        recipes.embedding_filter(W, np.zeros(10))
    with pytest.raises(ValueError, match="finite counts"):
        recipes.embedding_filter(W, -np.ones(10))


class _ByteTok:
    pad_id, mask_id, bos_id, eos_id = 0, None, None, 1

    def encode(self, text):
        return [2 + (b % 28) for b in text.encode()]


def test_token_frequencies_and_unembedding_of_a_minilib_decoder():
    f = recipes.token_frequencies(_ByteTok().encode, ["aa", "ab"], 30)
    assert f.sum() == 4 and f[2 + (ord("a") % 28)] == 3
    with pytest.raises(ValueError, match="outside"):
        recipes.token_frequencies(_ByteTok().encode, ["a"], 3)
    with pytest.raises(ValueError, match="empty"):
        recipes.token_frequencies(_ByteTok().encode, [], 30)
    torch.manual_seed(0)
    lm = CausalLM(TransformerConfig(vocab_size=30, d_model=8, n_layers=1, n_heads=2, d_ff=16, max_len=16, causal=True,
                                    pad_id=0))
    emb = DecoderEmbedder(lm, _ByteTok())
    W = recipes.unembedding(emb)
    assert W.shape == (30, 8) and torch.equal(W, lm.decoder.tok.weight.detach())
    assert torch.equal(recipes.unembedding(lm), W)
    with pytest.raises(TypeError):
        recipes.unembedding(torch.nn.Linear(2, 2))


# --- the vector head -----------------------------------------------------------------------------


def test_vector_head_starts_as_identity_and_head_loss_builds_the_keys():
    h = recipes.VectorHead(6)
    x = torch.randn(4, 6)
    torch.testing.assert_close(h(x), x)
    assert np.allclose(h.transform(x.numpy()), x.numpy(), atol=1e-6)
    q, p, n = torch.randn(4, 6), torch.randn(4, 6), torch.randn(4, 2, 6)
    loss = recipes.head_loss(nce)
    torch.testing.assert_close(loss(h, (q, p)), nce(q, p))
    torch.testing.assert_close(loss(h, (q, p, n)), nce(q, torch.cat([p, n.reshape(8, 6)])))
    ql, pl = torch.randn(4, 3, 6), torch.randn(4, 3, 6)
    last = lambda a, b: nce(a[-1], b[-1])  # noqa: E731
    torch.testing.assert_close(recipes.head_loss(last, layers=True)(h, (ql, pl)), nce(ql[:, -1], pl[:, -1]))
    with pytest.raises(ValueError, match="reads 6-d"):
        h(torch.randn(2, 5))
    with pytest.raises(ValueError, match="batches"):
        loss(h, (q,))


# --- errors name the fix -------------------------------------------------------------------------


def test_mining_and_focal_argument_errors_name_the_fix():
    q, d = _unit(3, 4), _unit(5, 4, seed=1)
    with pytest.raises(ValueError, match=r"relative must be > 0 \(NV-Retriever uses 0.95\), or None, got 0"):
        recipes.mine_hard_negatives(q, d, [0, 1, 2], k=1, relative=0)
    with pytest.raises(ValueError, match="margin must be >= 0, or None, got -0.1"):
        recipes.mine_hard_negatives(q, d, [0, 1, 2], k=1, relative=None, margin=-0.1)
    with pytest.raises(ValueError, match="queries and keys must have the same width, got 4 and 3"):
        recipes.focal_info_nce(q, _unit(3, 3))
    with pytest.raises(ValueError, match=r"keys needs at least one row per query \(3 positives first\), got 2"):
        recipes.focal_info_nce(q, d[:2])


def test_student_and_asymmetric_errors_name_the_fix():
    table = torch.randn(32, 8)
    with pytest.raises(ValueError, match="expects batches \\(ids, attention_mask, teacher_vectors\\)"):
        recipes.distill_loss_fn()(recipes.StudentEncoder(table, 8), (torch.zeros(2, 3, dtype=torch.long),) * 2)
    with pytest.raises(ValueError, match=r"embeddings must be a \(vocab_size, d_in\) tensor"):
        recipes.StudentEncoder(table[0], 8)
    with pytest.raises(ValueError, match=r"embeddings must be a \(vocab_size, d_in\) tensor"):
        recipes.StudentEncoder(table.numpy(), 8)
    with pytest.raises(TypeError, match="tokenizer needs an encode_batch"):
        recipes.StudentEncoder(table, 8, tokenizer=_ByteTok())
    st = recipes.StudentEncoder(table, 8)
    with pytest.raises(ValueError, match=r"must both be \(B, T\), got \(2, 3\) and \(2, 4\)"):
        st(torch.zeros(2, 3, dtype=torch.long), torch.ones(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"has no tokenizer: build it with StudentEncoder\(emb, dim, tokenizer\)"):
        st.encode(["a text"])
    dm = Lookup(["d1"], np.eye(2)[:1])
    with pytest.raises(TypeError, match=r"query_model needs an encode\(texts\) method"):
        recipes.Asymmetric(object(), dm, ["q1"])
    with pytest.raises(TypeError, match=r"doc_model needs an encode\(texts\) method"):
        recipes.Asymmetric(dm, object(), ["q1"])
    with pytest.raises(TypeError, match="queries must be a list of texts, got one str"):
        recipes.Asymmetric(dm, dm, "q1")


def test_filter_input_errors_name_the_fix():
    with pytest.raises(TypeError, match=r"got one str: wrap it, \[text\]"):
        recipes.token_frequencies(_ByteTok().encode, "one text", 30)
    with pytest.raises(ValueError, match="n_tokens must be >= 1, got 0"):
        recipes.embedding_filter(torch.randn(10, 4), np.ones(10), n_tokens=0)
    with pytest.raises(ValueError, match=r"X must be \(n, d\) and P \(d, d\); got \(3, 4\) and \(3, 3\)"):
        recipes.apply_projector(np.zeros((3, 4)), np.eye(3))
    with pytest.raises(ValueError, match=r"got \(4,\) and \(4, 4\)"):
        recipes.apply_projector(np.zeros(4), np.eye(4))


@pytest.mark.parametrize("relative_margin,absolute_margin", [(None, None), (0.05, None), (None, 0.1), (0.05, 0.1)])
def test_mining_matches_sentence_transformers_mine_hard_negatives(relative_margin, absolute_margin, table_model):
    """sentence-transformers' mine_hard_negatives (top sampling) picks the same negatives: its
    relative_margin r is our relative = 1 - r for positive scores, its absolute_margin our margin."""
    from datasets import Dataset
    from sentence_transformers.util import mine_hard_negatives

    n, d, k = 30, 16, 3
    g = torch.Generator().manual_seed(0)
    topics = torch.randn(5, d, generator=g)
    q = topics[torch.arange(n) % 5] + 0.6 * torch.randn(n, d, generator=g)     # 5 topics: many near misses
    p = q + 0.5 * torch.randn(n, d, generator=g)
    queries, docs = [f"q{i}" for i in range(n)], [f"d{i}" for i in range(n)]
    st = table_model(torch.cat([q, p]), queries + docs)
    out = mine_hard_negatives(Dataset.from_dict({"anchor": queries, "positive": docs}), st, num_negatives=k,
                              relative_margin=relative_margin, absolute_margin=absolute_margin, range_max=n - 1,
                              sampling_strategy="top", output_format="n-tuple", verbose=False)
    assert out["anchor"] == queries                                   # no query lost for want of negatives
    theirs = [[int(row[f"negative_{j}"][1:]) for j in range(1, k + 1)] for row in out]
    ours, dropped = recipes.mine_hard_negatives(q, p, torch.arange(n), k=k, margin=absolute_margin,
                                                relative=None if relative_margin is None else 1 - relative_margin,
                                                return_dropped=True)
    assert ours.tolist() == theirs
    assert (dropped >= 0).any() == (relative_margin is not None or absolute_margin is not None)   # the filter acts


def test_distillation_losses_match_sentence_transformers(table_model):
    """sentence-transformers' EmbedDistillLoss: its "cosine" is ours; its MSELoss averages over the
    d coordinates where ours sums them (LEAF's ||s - t||^2), so ours is d times its."""
    from sentence_transformers.sentence_transformer import losses

    g = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(6, 16, generator=g), torch.randn(6, 16, generator=g)
    st = table_model(student)
    features = [{"idx": torch.arange(6)}]
    cos = losses.EmbedDistillLoss(st, distance_metric="cosine")(features, teacher)
    mse = losses.MSELoss(st)(features, teacher)
    torch.testing.assert_close(recipes.distill_embeddings_loss(student, teacher, "cosine"), cos.detach())
    torch.testing.assert_close(recipes.distill_embeddings_loss(student, teacher, "mse"), 16 * mse.detach())


def test_student_restores_training_mode_after_an_error(broken_tokenizer):
    student = recipes.StudentEncoder(torch.randn(32, 8), 8, tokenizer=broken_tokenizer).train()
    with pytest.raises(RuntimeError, match="tokenizer broke"):
        student.encode(["a b c"])
    assert student.training
