"""Tests of minilib.matryoshka: truncation, the nested loss, 2D pairs and loss, layer vectors, retention."""
import functools

import numpy as np
import pytest
import torch

from minilib import bench, contrastive, matryoshka
from minilib.transformer import Transformer, TransformerConfig

nce = functools.partial(contrastive.info_nce, temperature=0.05)


def _qk(B=6, D=24, M=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, D, generator=g), torch.randn(B + M, D, generator=g)


def test_truncate_keeps_the_prefix_and_renormalises():
    x = torch.randn(5, 12)
    t = matryoshka.truncate(x, 4)
    assert t.shape == (5, 4)
    torch.testing.assert_close(t.norm(dim=1), torch.ones(5))
    torch.testing.assert_close(t, x[:, :4] / x[:, :4].norm(dim=1, keepdim=True))
    a = matryoshka.truncate(x.numpy(), 4)
    assert isinstance(a, np.ndarray) and np.allclose(a, t.numpy(), atol=1e-6)
    assert torch.equal(matryoshka.truncate(x, 4, normalize=False), x[:, :4])


@pytest.mark.parametrize("d", [0, 13, 2.5, True])
def test_truncate_rejects_bad_widths(d):
    with pytest.raises(ValueError, match="between 1 and"):
        matryoshka.truncate(torch.randn(3, 12), d)


def test_truncate_rejects_bad_input():
    with pytest.raises(ValueError, match="matrix"):
        matryoshka.truncate(torch.randn(12), 4)
    with pytest.raises(TypeError):
        matryoshka.truncate([[1.0, 2.0]], 1)


def test_check_dims_sorts_and_validates():
    assert matryoshka.check_dims([64, 16, 32], 64) == (16, 32, 64)
    with pytest.raises(ValueError, match="empty"):
        matryoshka.check_dims([])
    with pytest.raises(ValueError, match="exceed"):
        matryoshka.check_dims([16, 128], 64)
    with pytest.raises(ValueError, match="twice"):
        matryoshka.check_dims([16, 16])
    with pytest.raises(ValueError, match="positive"):
        matryoshka.check_dims([0, 16])


def test_matryoshka_loss_is_the_sum_of_prefix_losses():
    q, k = _qk()
    dims = (4, 8, 24)
    expected = sum(nce(q[:, :m], k[:, :m]) for m in dims)
    torch.testing.assert_close(matryoshka.matryoshka_loss(nce, dims)(q, k), expected)
    w = (2.0, 0.5, 1.0)
    expected_w = sum(wm * nce(q[:, :m], k[:, :m]) for m, wm in zip(dims, w))
    torch.testing.assert_close(matryoshka.matryoshka_loss(nce, dims, w)(q, k), expected_w)
    # one size, the full width: the base loss itself
    torch.testing.assert_close(matryoshka.matryoshka_loss(nce, (24,))(q, k), nce(q, k))


def test_matryoshka_weights_follow_their_dims_in_any_order():
    q, k = _qk()
    dims, w = (24, 4, 8), (1.0, 3.0, 0.5)                      # largest first, as sentence-transformers' docs write them
    loss = matryoshka.matryoshka_loss(nce, dims, w)
    expected = sum(wm * nce(q[:, :m], k[:, :m]) for m, wm in zip(dims, w))
    torch.testing.assert_close(loss(q, k), expected)
    assert loss.dims == (4, 8, 24) and loss.weights == [3.0, 0.5, 1.0]


@pytest.mark.parametrize("dims,weights", [((32, 16, 8, 4), (1.0, 0.5, 0.5, 2.0)), ((8, 32), None)])
def test_matryoshka_loss_matches_sentence_transformers(dims, weights, table_model):
    """sentence-transformers' MatryoshkaLoss around MultipleNegativesRankingLoss (scale 20, i.e.
    temperature 0.05) on the same anchors, positives and hard negatives gives our loss."""
    from sentence_transformers.sentence_transformer import losses
    E = torch.randn(12, 32, generator=torch.Generator().manual_seed(0))
    st = table_model(E)
    kw = {} if weights is None else {"matryoshka_weights": list(weights)}
    ref = losses.MatryoshkaLoss(st, losses.MultipleNegativesRankingLoss(st, scale=20.0), list(dims), **kw)
    a, p, n = torch.arange(0, 4), torch.arange(4, 8), torch.arange(8, 12)
    want = ref([{"idx": a}, {"idx": p}, {"idx": n}], labels=None)
    got = matryoshka.matryoshka_loss(nce, dims, weights)(E[a], torch.cat([E[p], E[n]]))
    torch.testing.assert_close(got, want.detach(), atol=1e-5, rtol=1e-5)


def test_matryoshka_loss_errors():
    q, k = _qk(D=16)
    with pytest.raises(ValueError, match="exceed"):
        matryoshka.matryoshka_loss(nce, (8, 32))(q, k)
    with pytest.raises(ValueError, match="one weight per dim"):
        matryoshka.matryoshka_loss(nce, (8, 16), weights=(1.0,))
    with pytest.raises(TypeError):
        matryoshka.matryoshka_loss("info_nce", (8,))


def test_matryoshka_loss_gradients_reach_only_used_coordinates():
    q, k = _qk(D=16)
    q.requires_grad_(True)
    matryoshka.matryoshka_loss(nce, (4, 8))(q, k).backward()
    assert q.grad[:, 8:].abs().max() == 0 and q.grad[:, :8].abs().max() > 0


def test_scaled_pairs_for_minilm_halve_starbucks():
    assert matryoshka.scaled_pairs(12, 768) == matryoshka.STARBUCKS_PAIRS
    assert matryoshka.scaled_pairs(6, 384) == ((1, 16), (2, 32), (3, 64), (4, 128), (5, 256), (6, 384))
    with pytest.raises(ValueError):
        matryoshka.scaled_pairs(0, 384)
    with pytest.raises(ValueError, match="outside"):
        matryoshka.scaled_pairs(6, 384, pairs=[(13, 32)])


def test_2d_loss_is_the_sum_over_pairs():
    g = torch.Generator().manual_seed(1)
    ql, kl = torch.randn(3, 5, 16, generator=g), torch.randn(3, 7, 16, generator=g)
    pairs = [(1, 4), (2, 8), (3, 16)]
    expected = sum(nce(ql[l - 1, :, :m], kl[l - 1, :, :m]) for l, m in pairs)
    torch.testing.assert_close(matryoshka.matryoshka_2d_loss(nce, pairs)(ql, kl), expected)
    # the single (last layer, full width) pair is the plain loss on the last layer
    torch.testing.assert_close(matryoshka.matryoshka_2d_loss(nce, [(3, 16)])(ql, kl), nce(ql[-1], kl[-1]))


def test_2d_loss_errors():
    ql = torch.randn(2, 4, 8)
    with pytest.raises(ValueError, match="exceed"):
        matryoshka.matryoshka_2d_loss(nce, [(3, 8)])(ql, ql)
    with pytest.raises(ValueError, match="empty"):
        matryoshka.matryoshka_2d_loss(nce, [])
    with pytest.raises(ValueError, match="layers, n, dim"):
        matryoshka.matryoshka_2d_loss(nce, [(1, 8)])(ql[0], ql[0])


def test_layer_embeddings_match_a_manual_forward_in_input_order(word_tokenizer):
    torch.manual_seed(0)
    cfg = TransformerConfig(vocab_size=50, d_model=16, n_layers=2, n_heads=2, d_ff=32, max_len=16)
    model = Transformer(cfg)
    texts = ["a much longer text with many words here", "short one", "mid size text"]
    X = matryoshka.layer_embeddings(model, word_tokenizer, texts, max_len=16, batch_size=2)
    assert X.shape == (2, 3, 16)
    model.eval()
    for i, t in enumerate(texts):
        ids, mask = word_tokenizer.encode_batch([t], 16)
        _, hidden = model(ids, attention_mask=mask, output_hidden_states=True)
        for layer in (1, 2):
            torch.testing.assert_close(X[layer - 1, i], hidden[layer][0].mean(0), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="empty"):
        matryoshka.layer_embeddings(model, word_tokenizer, [])
    with pytest.raises(TypeError):
        matryoshka.layer_embeddings(model, word_tokenizer, "one text")


def test_retention_curve_on_a_toy_sts_task():
    rng = np.random.default_rng(0)
    texts = [f"text {i}" for i in range(12)]
    X = rng.normal(size=(12, 8)).astype(np.float32)
    U = X / np.linalg.norm(X, axis=1, keepdims=True)
    gold = U @ U.T  # the cosines themselves: the full width scores Spearman 1
    task = bench.MatrixSTSTask("toy", texts, gold, n_boot=50)
    curve = matryoshka.retention_curve(texts, X, task, (2, 4))
    assert list(curve) == [8, 4, 2]
    assert curve[8]["retention"] == 1.0 and curve[8]["score"] > 0.99
    assert all(0 < curve[d]["retention"] <= 1.0 + 1e-9 for d in (2, 4))
    with pytest.raises(ValueError, match="exceed"):
        matryoshka.retention_curve(texts, X, task, (16,))
    with pytest.raises(ValueError, match="len\\(texts\\)"):
        matryoshka.retention_curve(texts[:3], X, task, (2,))


def test_loss_arguments_errors_name_the_fix(word_tokenizer):
    q, k = _qk(D=16)
    for bad in ((1.0, -1.0), (1.0, float("nan"))):
        with pytest.raises(ValueError, match=r"weights must be finite and >= 0, got \[1.0, (-1.0|nan)\]"):
            matryoshka.matryoshka_loss(nce, (8, 16), weights=bad)
    with pytest.raises(ValueError, match=r"queries must be \(n, dim\), got shape \(16,\)"):
        matryoshka.matryoshka_loss(nce, (8,))(q[0], k)
    with pytest.raises(ValueError, match=r"keys must be \(n, dim\), got shape \(2, 9, 16\)"):
        matryoshka.matryoshka_loss(nce, (8,))(q, k[None].expand(2, -1, -1))
    with pytest.raises(TypeError, match=r"base_loss must be a function loss\(queries, keys\) -> scalar"):
        matryoshka.matryoshka_2d_loss("info_nce", [(1, 8)])
    with pytest.raises(ValueError, match=r"every pair must be \(layer >= 1, dims >= 1\), got \[\(0, 8\)\]"):
        matryoshka.matryoshka_2d_loss(nce, [(0, 8)])
    with pytest.raises(ValueError, match=r"every pair must be \(layer >= 1, dims >= 1\)"):
        matryoshka.matryoshka_2d_loss(nce, [(1, 8, 2)])
    with pytest.raises(TypeError, match="model must be a minilib.transformer.Transformer, got Linear"):
        matryoshka.layer_embeddings(torch.nn.Linear(4, 4), word_tokenizer, ["a text"])


def test_retention_of_a_negative_score_is_refused():
    rng = np.random.default_rng(0)
    texts = [f"text {i}" for i in range(12)]
    X = rng.normal(size=(12, 8)).astype(np.float32)
    U = X / np.linalg.norm(X, axis=1, keepdims=True)
    task = bench.MatrixSTSTask("anti", texts, -(U @ U.T), n_boot=50)  # gold opposite to the cosines
    with pytest.raises(ValueError, match="the full-width score is -.*retention is only defined for a positive score"):
        matryoshka.retention_curve(texts, X, task, (2, 4))
