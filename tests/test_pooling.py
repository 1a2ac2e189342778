"""minilib.pooling: each pooling against a hand-computed example, padding that never changes a
result, whitening's identity covariance, SIF's weights and component removal, the word-vector
embedder on a toy vocabulary, the transformer embedder on the real all-MiniLM-L6-v2 against
sentence-transformers, NaN detection and the errors."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


import numpy as np
import pytest
import torch

from minilib import pooling, transformer as tr
from minilib.pooling import TransformerEmbedder, Whitening, WordVectorEmbedder



# A batch of two texts: the first has 3 tokens, the second 2 tokens and one padding position
# whose values are huge, so any pooling that lets padding in gives a visibly wrong answer.
H = torch.tensor([[[1.0, 2.0], [3.0, -1.0], [5.0, 0.0]],
                  [[-2.0, 4.0], [0.0, 6.0], [100.0, 100.0]]])  # (B=2, T=3, d=2)
M = torch.tensor([[1, 1, 1], [1, 1, 0]])


def test_mean_by_hand_and_equals_transformer_mean_pool():
    out = pooling.mean(H, M)
    torch.testing.assert_close(out, torch.tensor([[3.0, 1 / 3], [-1.0, 5.0]]))
    torch.testing.assert_close(out, tr.mean_pool(H, M))


def test_max_by_hand_padding_never_wins():
    torch.testing.assert_close(pooling.max(H, M), torch.tensor([[5.0, 2.0], [0.0, 6.0]]))
    # All-negative tokens: the zero (or anything) in the padding slot must still lose.
    neg = torch.full((1, 3, 2), -7.0)
    neg[0, 2] = 50.0
    torch.testing.assert_close(pooling.max(neg, torch.tensor([[1, 1, 0]])), torch.tensor([[-7.0, -7.0]]))


def test_cls_takes_the_first_real_token_even_with_left_padding():
    torch.testing.assert_close(pooling.cls(H, M), torch.tensor([[1.0, 2.0], [-2.0, 4.0]]))
    left = torch.tensor([[0, 1, 1], [1, 1, 1]])
    torch.testing.assert_close(pooling.cls(H, left), torch.tensor([[3.0, -1.0], [-2.0, 4.0]]))


def test_first_last_by_hand_and_its_first_layer_choice():
    L0, L1, L2 = H, H + 1.0, 2 * H  # embedding output, layer 1, layer 2
    out = pooling.first_last([L0, L1, L2], M)  # default first=1: (L1 + L2) / 2
    torch.testing.assert_close(out, pooling.mean((L1 + L2) / 2, M))
    torch.testing.assert_close(out, torch.tensor([[5.0, 1.0], [-1.0, 8.0]]))
    torch.testing.assert_close(pooling.first_last([L0, L1, L2], M, first=0), pooling.mean(1.5 * H, M))
    with pytest.raises(ValueError, match="output_hidden_states"):
        pooling.first_last(H, M)


@pytest.mark.parametrize("name", pooling.POOLINGS)
def test_padding_never_changes_a_result(name):
    g = torch.Generator().manual_seed(0)
    layers = [torch.randn(2, 4, 3, generator=g) for _ in range(3)]
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    padded = [torch.cat([x, 1e3 * torch.randn(2, 5, 3, generator=g)], dim=1) for x in layers]  # 5 more pads
    pmask = torch.cat([mask, torch.zeros(2, 5, dtype=torch.long)], dim=1)
    a = pooling.pool(name, layers[-1], layers, mask)
    b = pooling.pool(name, padded[-1], padded, pmask)
    torch.testing.assert_close(a, b)
    # The second row alone, without its own padding, gives the same vector.
    one = [x[1:, :2] for x in layers]
    torch.testing.assert_close(pooling.pool(name, one[-1], one, torch.ones(1, 2, dtype=torch.long)), a[1:])


def test_weighted_mean_by_hand():
    w = torch.tensor([[1.0, 0.0, 3.0], [2.0, 2.0, 9.0]])  # the 9 sits on padding: ignored
    torch.testing.assert_close(pooling.weighted_mean(H, M, w), torch.tensor([[4.0, 0.5], [-1.0, 5.0]]))
    torch.testing.assert_close(pooling.weighted_mean(H, M, torch.ones(2, 3)), pooling.mean(H, M))
    torch.testing.assert_close(pooling.pool("mean", H, None, M, weights=w), pooling.weighted_mean(H, M, w))
    with pytest.raises(ValueError, match="averaging"):
        pooling.pool("max", H, None, M, weights=w)
    with pytest.raises(ValueError, match="one per token"):
        pooling.weighted_mean(H, M, w[:, :2])


def test_rows_without_tokens_give_zeros_not_nan():
    empty = torch.zeros(1, 3, dtype=torch.long)
    for fn in (pooling.mean, pooling.max, pooling.cls):
        assert torch.equal(fn(H[:1], empty), torch.zeros(1, 2))


def test_pooling_errors_name_the_fix():
    with pytest.raises(ValueError, match="choose one of"):
        pooling.pool("median", H, None, M)
    with pytest.raises(ValueError, match=r"\(batch, seq, dim\)"):
        pooling.mean(H[0], M[0])
    with pytest.raises(ValueError, match="attention_mask"):
        pooling.max(H, M[:, :2])
    with pytest.raises(TypeError, match="torch"):
        pooling.cls(H.numpy(), M)
    bad = H.clone()
    bad[0, 1, 0] = float("nan")
    with pytest.raises(FloatingPointError, match="diverged"):
        pooling.mean(bad, M)
    bad_pad = H.clone()
    bad_pad[1, 2, 0] = float("nan")  # NaN only in padding: harmless
    assert torch.isfinite(pooling.mean(bad_pad, M)).all()


# --- SIF ---------------------------------------------------------------------------------------


def test_sif_weights_formula_for_arrays_and_mappings():
    counts = np.array([900, 90, 10])
    w = pooling.sif_weights(counts, a=0.01)
    np.testing.assert_allclose(w, 0.01 / (0.01 + np.array([0.9, 0.09, 0.01])))
    d = pooling.sif_weights({"the": 900, "cat": 90, "zebra": 10}, a=0.01)
    assert set(d) == {"the", "cat", "zebra"} and d["zebra"] == pytest.approx(0.5)
    assert d["the"] < d["cat"] < d["zebra"]
    with pytest.raises(ValueError, match="a must be > 0"):
        pooling.sif_weights(counts, a=0)
    with pytest.raises(ValueError, match="non-negative"):
        pooling.sif_weights(np.array([1, -1]))


def test_removing_the_first_component_leaves_vectors_orthogonal_to_it():
    rng = np.random.default_rng(0)
    common = rng.normal(size=8)
    X = rng.normal(size=(30, 8)) + 5 * common  # every row shares a big common direction
    u = pooling.principal_components(X, 1)
    assert u.shape == (1, 8)
    np.testing.assert_allclose(np.linalg.norm(u), 1.0)
    assert abs(u[0] @ common) / np.linalg.norm(common) > 0.95  # it found the common direction
    Y = pooling.remove_components(X, u)
    np.testing.assert_allclose(Y @ u[0], 0.0, atol=1e-10)
    # Removing it again changes nothing, and two components are orthonormal.
    np.testing.assert_allclose(pooling.remove_components(Y, u), Y, atol=1e-12)
    U2 = pooling.principal_components(X, 2)
    np.testing.assert_allclose(U2 @ U2.T, np.eye(2), atol=1e-10)
    with pytest.raises(ValueError, match="share d"):
        pooling.remove_components(X, u[:, :4])


# --- whitening ----------------------------------------------------------------------------------


def test_whitening_gives_identity_covariance_and_zero_mean():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(500, 6)) @ rng.normal(size=(6, 6)) + 3.0  # correlated, shifted
    Z = Whitening().fit_transform(X).astype(np.float64)
    np.testing.assert_allclose(Z.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(Z.T @ Z / len(Z), np.eye(6), atol=1e-5)
    # Truncation keeps the k directions of largest variance, still whitened.
    w = Whitening().fit(X, k=3)
    Zk = w.transform(X).astype(np.float64)
    assert Zk.shape == (500, 3) and w.k == 3
    np.testing.assert_allclose(Zk.T @ Zk / len(Zk), np.eye(3), atol=1e-5)
    np.testing.assert_allclose(Zk, Z[:, :3], atol=1e-5)
    # W = U Lambda^{-1/2}: W^T Sigma W = I.
    Xc = X - X.mean(0)
    np.testing.assert_allclose(w.W.T @ (Xc.T @ Xc / len(X)) @ w.W, np.eye(3), atol=1e-10)


def test_whitening_refuses_rank_deficient_data_and_says_what_to_do():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(4, 10))  # 4 vectors span at most 3 centred directions
    with pytest.raises(ValueError, match=r"k=3"):
        Whitening().fit(X)
    assert Whitening().fit(X, k=3).transform(X).shape == (4, 3)
    with pytest.raises(RuntimeError, match="fit"):
        Whitening().transform(X)
    with pytest.raises(ValueError, match="dimension"):
        Whitening().fit(X, k=2).transform(X[:, :5])
    X[0, 0] = np.nan
    with pytest.raises(FloatingPointError, match="NaN"):
        Whitening().fit(X, k=2)


# --- averaged word vectors ---------------------------------------------------------------------------

WORDS = ["the", "cat", "dog", "sat", "mat"]
VECS = np.array([[1.0, 1.0], [2.0, 0.0], [0.0, 2.0], [4.0, 4.0], [-2.0, 0.0]], dtype=np.float32)
COUNTS = {"the": 60, "cat": 10, "dog": 10, "sat": 15, "mat": 5}  # total 100


def test_word_vector_mean_by_hand():
    emb = WordVectorEmbedder(VECS, WORDS)
    E = emb.encode(["The cat sat.", "dog, dog!", "unknown words only", "cat zebra"])
    np.testing.assert_allclose(E[0], (VECS[0] + VECS[1] + VECS[3]) / 3, rtol=1e-6)
    np.testing.assert_allclose(E[1], VECS[2], rtol=1e-6)
    np.testing.assert_array_equal(E[2], 0.0)  # no known word: a zero row ...
    np.testing.assert_allclose(E[3], VECS[1])  # unknown words are skipped, not averaged in
    assert emb.last_unknown == 1  # ... and counted
    assert E.dtype == np.float32 and E.shape == (4, 2)
    assert emb.encode([]).shape == (0, 2)
    assert emb.fit(["the cat"]) is emb and emb.components_ is None  # plain mean: fit is a no-op


def test_word_vector_sif_weights_and_component_removal():
    emb = WordVectorEmbedder(VECS, WORDS, weighting="sif", counts=COUNTS, a=0.1, remove_pc=1)
    texts = ["the cat sat", "the dog sat", "the mat", "cat dog mat"]
    with pytest.raises(RuntimeError, match="fit"):
        emb.encode(texts)
    raw = emb.average(texts)
    w = {k: 0.1 / (0.1 + c / 100) for k, c in COUNTS.items()}
    np.testing.assert_allclose(raw[0], (w["the"] * VECS[0] + w["cat"] * VECS[1] + w["sat"] * VECS[3]) / 3, rtol=1e-6)
    E = emb.fit(texts).encode(texts)
    u = pooling.principal_components(raw, 1)[0]
    np.testing.assert_allclose(E, raw - np.outer(raw @ u, u), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(E @ u, 0.0, atol=1e-5)
    # An array of counts aligned with the words gives the same weights as the mapping.
    arr = WordVectorEmbedder(VECS, WORDS, weighting="sif", counts=np.array([COUNTS[w] for w in WORDS]), a=0.1)
    np.testing.assert_allclose(arr.average(texts), raw)


def test_word_vector_errors():
    with pytest.raises(ValueError, match="needs counts"):
        WordVectorEmbedder(VECS, WORDS, weighting="sif")
    with pytest.raises(ValueError, match="choose one of"):
        WordVectorEmbedder(VECS, WORDS, weighting="tfidf")
    with pytest.raises(ValueError, match="5 words but 4 vectors"):
        WordVectorEmbedder(VECS[:4], WORDS)
    with pytest.raises(TypeError, match="list of texts"):
        WordVectorEmbedder(VECS, WORDS).encode("the cat")
    bad = VECS.copy()
    bad[1, 0] = np.nan
    with pytest.raises(FloatingPointError, match="NaN"):
        WordVectorEmbedder(bad, WORDS)


# --- pooled transformer states -----------------------------------------------------------------------


def _tiny_model_and_tokenizer():
    from minilib.bpe import ByteBPE

    texts = ["the cat sat on the mat", "a dog sat on a log", "the bird flew over the river"] * 5
    tok = ByteBPE.train(texts, 300)
    torch.manual_seed(0)
    cfg = tr.TransformerConfig(vocab_size=tok.vocab_size, d_model=16, n_layers=2, n_heads=2, d_ff=32, max_len=12,
                               dropout=0.0, position="rope", pad_id=tok.pad_id)
    return tr.Transformer(cfg).eval(), tok


def test_transformer_embedder_poolings_match_the_functions_on_a_tiny_model():
    model, tok = _tiny_model_and_tokenizer()
    texts = ["the cat sat", "a dog sat on a log", "river"]
    ids, mask = tok.encode_batch(texts, max_len=12, truncate=True)
    with torch.no_grad():
        last, hidden = model(ids, attention_mask=mask, output_hidden_states=True)
    for name in pooling.POOLINGS:
        emb = TransformerEmbedder(model, tok, pooling=name, normalize=False)
        expected = pooling.pool(name, last, hidden, mask).numpy()
        np.testing.assert_allclose(emb.encode(texts, batch_size=2), expected, rtol=1e-5, atol=1e-6)
    E = TransformerEmbedder(model, tok).encode(texts)
    np.testing.assert_allclose(np.linalg.norm(E, axis=1), 1.0, atol=1e-5)
    assert TransformerEmbedder(model, tok).encode([]).shape == (0, 16)


def test_pooled_many_is_one_pass_of_every_pooling_in_the_input_order():
    model, tok = _tiny_model_and_tokenizer()
    texts = ["river", "a dog sat on a log", "the cat sat", "bird"]  # lengths out of order: batches are sorted
    many = TransformerEmbedder(model, tok, normalize=False).pooled_many(texts, batch_size=3)
    assert set(many) == set(pooling.POOLINGS)
    for name in pooling.POOLINGS:
        one = TransformerEmbedder(model, tok, pooling=name, normalize=False).encode(texts, batch_size=1)
        np.testing.assert_allclose(many[name], one, rtol=1e-5, atol=1e-6)


def test_token_weights_make_a_weighted_mean():
    model, tok = _tiny_model_and_tokenizer()
    texts = ["the cat sat", "a dog sat on a log"]
    weights = np.random.default_rng(0).random(tok.vocab_size)
    ids, mask = tok.encode_batch(texts, max_len=12, truncate=True)
    with torch.no_grad():
        last = model(ids, attention_mask=mask)
    expected = pooling.weighted_mean(last, mask, torch.from_numpy(weights)[ids]).numpy()
    emb = TransformerEmbedder(model, tok, normalize=False, token_weights=weights)
    np.testing.assert_allclose(emb.encode(texts), expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="one per token id"):
        TransformerEmbedder(model, tok, token_weights=weights[:5])
    with pytest.raises(ValueError, match="averaging"):
        TransformerEmbedder(model, tok, pooling="cls", token_weights=weights)


def test_transformer_embedder_chunks_long_texts():
    model, tok = _tiny_model_and_tokenizer()
    long = "the cat sat on the mat and the dog sat on a log by the river"  # far over 12 tokens
    chunked = TransformerEmbedder(model, tok, pooling="mean", normalize=False, long_texts="chunk")
    pieces, owner = chunked._pieces([long, "river"])
    assert len(pieces) > 2 and owner.tolist() == [0] * (len(pieces) - 1) + [1]
    assert " ".join(pieces[:-1]) == long  # cut at spaces, nothing lost
    # The text's vector is the token-weighted mean of its windows' mean vectors.
    plain = TransformerEmbedder(model, tok, pooling="mean", normalize=False)
    parts = plain.encode(pieces[:-1])
    sizes = np.array([tok.encode_batch([p], max_len=12, truncate=True)[1].sum().item() for p in pieces[:-1]])
    np.testing.assert_allclose(chunked.encode([long])[0], sizes @ parts / sizes.sum(), rtol=1e-5, atol=1e-6)
    mx = TransformerEmbedder(model, tok, pooling="max", normalize=False, long_texts="chunk").encode([long])[0]
    np.testing.assert_allclose(mx, TransformerEmbedder(model, tok, pooling="max", normalize=False)
                               .encode(pieces[:-1]).max(axis=0), rtol=1e-6)
    # cls: the [CLS] of the first window, the one that reads the text's opening
    cls = TransformerEmbedder(model, tok, pooling="cls", normalize=False, long_texts="chunk").encode([long])[0]
    np.testing.assert_allclose(cls, TransformerEmbedder(model, tok, pooling="cls", normalize=False)
                               .encode(pieces[:1])[0], rtol=1e-6)


def test_transformer_embedder_whitening():
    model, tok = _tiny_model_and_tokenizer()
    words = "the cat sat on mat a dog log bird flew over river".split()
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(words, size=4)) for _ in range(36)]  # 36 short, different texts
    emb = TransformerEmbedder(model, tok, normalize=False).fit_whitening(texts, k=8)
    Z = emb.encode(texts).astype(np.float64)
    assert Z.shape == (36, 8) and emb.dim == 8
    np.testing.assert_allclose(Z.T @ Z / len(Z), np.eye(8), atol=1e-3)
    assert emb.encode([]).shape == (0, 8)


def test_transformer_embedder_reports_nan_and_bad_arguments():
    model, tok = _tiny_model_and_tokenizer()
    with pytest.raises(ValueError, match="choose one of"):
        TransformerEmbedder(model, tok, pooling="median")
    with pytest.raises(TypeError, match="model.encoder"):
        TransformerEmbedder(tr.MaskedLM(model.config), tok)
    with pytest.raises(TypeError, match="list of texts"):
        TransformerEmbedder(model, tok).encode("one text")
    with torch.no_grad():
        model.blocks[0].ff2.bias[0] = float("nan")  # a "diverged" weight
    with pytest.raises(FloatingPointError, match="diverged"):
        TransformerEmbedder(model, tok).encode(["the cat sat"])


@pytest.fixture(scope="module")
def minilm():
    from minilib import data
    from minilib.bpe import WordPiece

    folder = data.load("minilm")
    return folder, tr.load_minilm(folder), WordPiece.from_vocab(folder / "vocab.txt")


SENTENCES = ["A man is playing a guitar.", "Someone plays an instrument.", "The stock market fell sharply today.",
             "Whitening makes the covariance the identity matrix, which is a longer sentence than the others."]


def test_minilm_mean_pooling_equals_the_sentence_encoder_and_sentence_transformers(minilm):
    from sentence_transformers import SentenceTransformer

    folder, model, tok = minilm
    ours = TransformerEmbedder(model, tok, pooling="mean", max_len=256).encode(SENTENCES)
    ref = tr.load_minilm_encoder(folder).encode(SENTENCES)
    st = SentenceTransformer(str(folder), device="cpu").encode(SENTENCES)
    assert ours.shape == (4, 384) and ours.dtype == np.float32
    for other in (ref, st):
        cos = (ours * other).sum(1) / np.linalg.norm(other, axis=1)
        assert cos.min() >= 0.9999, cos


def test_embedder_reprs_name_their_settings():
    emb = WordVectorEmbedder(VECS, WORDS, weighting="sif", counts=COUNTS, a=0.1, remove_pc=1)
    assert repr(emb) == "WordVectorEmbedder(5 words, dim=2, weighting='sif', remove_pc=1)"
    model, tok = _tiny_model_and_tokenizer()
    assert repr(TransformerEmbedder(model, tok)) == ("TransformerEmbedder(2 layers, d=16, pooling='mean', "
                                                     "whitening=None, normalize=True)")
    X = np.random.default_rng(0).standard_normal((40, 16))
    w = Whitening().fit(X, k=4)
    assert "whitening=k=4" in repr(TransformerEmbedder(model, tok, pooling="cls", whitening=w))


def test_weighted_first_last_averages_the_two_layers_then_weights_tokens():
    L0, L1, L2 = H, H + 1.0, 2 * H
    w = torch.tensor([[1.0, 2.0, 3.0], [0.5, 1.0, 9.0]])
    torch.testing.assert_close(pooling.pool("first_last", L2, [L0, L1, L2], M, weights=w),
                               pooling.weighted_mean((L1 + L2) / 2, M, w))


# --- bad input: every error names the fix ------------------------------------------------------------


def test_first_last_and_pool_errors_name_the_fix():
    layers = [H, H + 1.0, 2 * H]
    for first in (3, -4):
        with pytest.raises(ValueError, match=rf"first={first} is not a layer index: hidden_states has 3 entries"):
            pooling.first_last(layers, M, first=first)
    with pytest.raises(ValueError, match=r"layers 0 and -1 have different shapes \(2, 2, 2\), \(2, 3, 2\)"):
        pooling.first_last([H[:, :2], H + 1.0, 2 * H], M, first=0)
    with pytest.raises(ValueError, match=r"'first_last' needs hidden_states \(output_hidden_states=True\)"):
        pooling.pool("first_last", H, None, M)
    with pytest.raises(ValueError, match="needs hidden_states"):
        pooling.pool("first_last", H, [H], M)


def test_sif_and_component_errors_name_the_fix():
    with pytest.raises(ValueError, match=r"counts is empty: .*collections.Counter\(tokens\)"):
        pooling.sif_weights({})
    with pytest.raises(ValueError, match=r"X must be \(n_texts, dim\), got shape \(3,\)"):
        pooling.principal_components(np.ones(3))
    X = np.array([[1.0, 2.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    for n in (0, 4):
        with pytest.raises(ValueError, match=rf"n must be between 1 and min\(n_texts, dim\) = 3, got {n}"):
            pooling.principal_components(X, n)
    with pytest.raises(ValueError, match=r"only 1 non-zero rows to find 2 component\(s\) from: fit on more texts"):
        pooling.principal_components(X, 2)


def test_whitening_errors_name_the_fix():
    with pytest.raises(ValueError, match=r"Whitening.fit input must be a matrix \(n, d\), got shape \(5,\)"):
        Whitening().fit(np.ones(5))
    with pytest.raises(ValueError, match=r"Whitening.transform input must be a matrix \(n, d\)"):
        Whitening().fit(np.random.default_rng(0).normal(size=(10, 3))).transform(np.ones(3))
    X = np.random.default_rng(0).normal(size=(10, 3))
    for k in (0, 4, True, 2.0):
        with pytest.raises(ValueError, match=r"k must be an int between 1 and dim = 3"):
            Whitening().fit(X, k=k)
    with pytest.raises(ValueError, match="at least 2 vectors to estimate a covariance, got 1"):
        Whitening().fit(X[:1])
    with pytest.raises(RuntimeError, match=r"Whitening is not fitted: call fit\(X\) first"):
        Whitening().k


def test_word_vector_embedder_argument_errors_name_the_fix():
    for bad in (np.zeros((0, 2)), np.ones(5)):
        with pytest.raises(ValueError, match=r"vectors must be a non-empty \(V, dim\) matrix"):
            WordVectorEmbedder(bad, WORDS[:len(bad)])
    for remove_pc in (-1, True, 1.0):
        with pytest.raises(ValueError, match=r"remove_pc must be an int >= 0 \(0 = none"):
            WordVectorEmbedder(VECS, WORDS, remove_pc=remove_pc)
    with pytest.raises(TypeError, match="tokenizer must be a function text -> list of tokens"):
        WordVectorEmbedder(VECS, WORDS, tokenizer="whitespace")
    with pytest.raises(ValueError, match="non-negative word counts with a positive total$"):
        WordVectorEmbedder(VECS, WORDS, weighting="sif", counts={w: 0 for w in WORDS})
    with pytest.raises(ValueError, match="positive total; got -3 for 'cat'"):
        WordVectorEmbedder(VECS, WORDS, weighting="sif", counts={**COUNTS, "cat": -3})
    with pytest.raises(ValueError, match=r"aligned with words: shape \(5,\), got \(3,\); or pass a mapping"):
        WordVectorEmbedder(VECS, WORDS, weighting="sif", counts=np.array([1, 2, 3]))
    emb = WordVectorEmbedder(VECS, WORDS, remove_pc=1)
    with pytest.raises(ValueError, match=r"fit needs at least 1 text\(s\) with a known word"):
        emb.fit(["zebra quagga", "unknown words only"])
    assert emb.components_ is None


def test_transformer_embedder_argument_errors_name_the_fix():
    model, tok = _tiny_model_and_tokenizer()
    with pytest.raises(TypeError, match=r"tokenizer needs an encode_batch\(texts, max_len=..., truncate=True\)"):
        TransformerEmbedder(model, tok.encode)
    with pytest.raises(ValueError, match=r"long_texts must be one of \('truncate', 'chunk'\), got 'split'"):
        TransformerEmbedder(model, tok, long_texts="split")
    with pytest.raises(TypeError, match="whitening must be a fitted minilib.pooling.Whitening or None, got ndarray"):
        TransformerEmbedder(model, tok, whitening=np.eye(16))
    with pytest.raises(ValueError, match=r"whitening is not fitted: call whitening\.fit\(X\)"):
        TransformerEmbedder(model, tok, whitening=Whitening())
    for max_len in (1, True, 8.0):
        with pytest.raises(ValueError, match=r"max_len must be an int >= 2 or None, got"):
            TransformerEmbedder(model, tok, max_len=max_len)
    for first in (3, -4):
        with pytest.raises(ValueError, match=rf"first={first} is not a layer of this 2-layer model"):
            TransformerEmbedder(model, tok, pooling="first_last", first=first)
    emb = TransformerEmbedder(model, tok)
    with pytest.raises(ValueError, match=r"unknown pooling 'median': choose one of \('mean'"):
        emb.pooled_many(["the cat"], ["mean", "median"])
    with pytest.raises(ValueError, match="batch_size must be at least 1, got 0"):
        emb.pooled_many(["the cat"], batch_size=0)
    weighted = TransformerEmbedder(model, tok, token_weights=np.ones(tok.vocab_size))
    with pytest.raises(ValueError, match="token_weights apply to 'mean' and 'first_last', not 'cls'"):
        weighted.pooled_many(["the cat"], ["mean", "cls"])
