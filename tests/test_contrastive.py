"""minilib.contrastive: InfoNCE against a hand-written loop and sentence-transformers'
MultipleNegativesRankingLoss, alignment and uniformity against Wang & Isola's formulas, the
bi-encoder, the SimCSE and pair losses, pair tokenization against Hugging Face's BERT tokenizer,
the cross-encoder, the distillation losses against sentence-transformers' DistillKLDivLoss and
MarginMSELoss, training through minilib.train.fit (loss falls, deterministic), NaN detection
and the errors. (tests/conftest.py keeps Hugging Face offline and torch on one thread.)"""
import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from minilib import contrastive as C
from minilib import train
from minilib.bpe import ByteBPE
from minilib.transformer import MaskedLM, Transformer, TransformerConfig


TEXTS = [
    "The cat sat on the mat.", "A dog barked at the postman.", "Shares fell sharply on Monday.",
    "The team won the cup final.", "Rain is expected in the north.", "The minister resigned today.",
    "A new phone was launched.", "The film won an award.", "Prices rose by two percent.",
    "The striker scored twice.", "Voters go to the polls.", "The band released an album.",
]


@pytest.fixture(scope="module")
def tok():
    return ByteBPE.train(TEXTS * 3, vocab_size=300, min_frequency=1)


def tiny_encoder(tok, dropout=0.1, seed=0):
    torch.manual_seed(seed)
    cfg = TransformerConfig(vocab_size=tok.vocab_size, d_model=16, n_layers=1, n_heads=2, d_ff=32, max_len=32,
                            dropout=dropout, position="rope", pad_id=tok.pad_id)
    return Transformer(cfg)


# --- InfoNCE ----------------------------------------------------------------------------------


def info_nce_loop(q, k, t):
    """The definition, one query at a time: -log( exp(cos(q_i,k_i)/t) / sum_j exp(cos(q_i,k_j)/t) )."""
    total = 0.0
    for i in range(q.shape[0]):
        sims = [float(F.cosine_similarity(q[i], k[j], dim=0)) / t for j in range(k.shape[0])]
        total += -(sims[i] - math.log(sum(math.exp(s) for s in sims)))
    return total / q.shape[0]


def test_info_nce_matches_a_hand_written_loop_with_and_without_hard_negatives():
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(5, 8, generator=g), torch.randn(9, 8, generator=g)  # 5 positives + 4 hard negatives
    for t in (0.05, 0.5, 1.0):
        assert abs(float(C.info_nce(q, k, t)) - info_nce_loop(q, k, t)) < 1e-4
        assert abs(float(C.info_nce(q, k[:5], t)) - info_nce_loop(q, k[:5], t)) < 1e-4
    sym = (info_nce_loop(q, k[:5], 0.1) + info_nce_loop(k[:5], q, 0.1)) / 2
    assert abs(float(C.info_nce(q, k[:5], 0.1, symmetric=True)) - sym) < 1e-4


def test_info_nce_parity_with_sentence_transformers_multiple_negatives_ranking_loss():
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    g = torch.Generator().manual_seed(1)
    q, p, n = (torch.randn(6, 16, generator=g) for _ in range(3))
    for t in (0.05, 0.1):
        ref = MultipleNegativesRankingLoss(model=None, scale=1 / t)
        ours = C.info_nce(q, torch.cat([p, n]), t)
        theirs = ref.compute_loss_from_embeddings([q, p, n], None)
        assert abs(float(ours) - float(theirs)) < 1e-6 * max(1.0, float(theirs))
        ours = C.info_nce(q, p, t)
        theirs = ref.compute_loss_from_embeddings([q, p], None)
        assert abs(float(ours) - float(theirs)) < 1e-6 * max(1.0, float(theirs))
    sym = MultipleNegativesRankingLoss(model=None, scale=20.0, directions=("query_to_doc", "doc_to_query"),
                                       partition_mode="per_direction")
    assert abs(float(C.info_nce(q, p, 0.05, symmetric=True)) - float(sym.compute_loss_from_embeddings([q, p], None))) < 1e-5


def test_info_nce_behaves_as_derived():
    g = torch.Generator().manual_seed(2)
    q = torch.randn(8, 4, generator=g)
    # keys equal to the queries: the positive is the best match, a low temperature makes the loss ~0
    assert float(C.info_nce(q, q.clone(), 0.01)) < 0.05
    # a huge temperature flattens the softmax: loss -> log(number of keys)
    assert abs(float(C.info_nce(q, torch.randn(8, 4, generator=g), 1e6)) - math.log(8)) < 1e-3
    # scale does not matter (cosine), and NumPy input is accepted
    assert abs(float(C.info_nce(3 * q, q.numpy(), 0.1)) - float(C.info_nce(q, q, 0.1))) < 1e-6
    # gradients flow to both sides
    qq, kk = q.clone().requires_grad_(), torch.randn(8, 4, generator=g).requires_grad_()
    C.info_nce(qq, kk).backward()
    assert qq.grad.abs().sum() > 0 and kk.grad.abs().sum() > 0


def test_info_nce_errors():
    q = torch.randn(4, 8)
    with pytest.raises(ValueError, match="same width"):
        C.info_nce(q, torch.randn(4, 6))
    with pytest.raises(ValueError, match="at least one row per query"):
        C.info_nce(q, torch.randn(3, 8))
    with pytest.raises(ValueError, match=r"\(n, dim\)"):
        C.info_nce(torch.randn(8), torch.randn(8))
    with pytest.raises(ValueError, match="temperature"):
        C.info_nce(q, q, 0.0)
    with pytest.raises(ValueError, match="symmetric"):
        C.info_nce(q, torch.randn(6, 8), symmetric=True)
    with pytest.raises(ValueError, match="empty"):
        C.info_nce(torch.zeros(0, 8), torch.zeros(0, 8))
    bad = q.clone()
    bad[2, 1] = float("nan")
    with pytest.raises(FloatingPointError, match=r"queries holds NaN or inf \(rows \[2\]"):
        C.info_nce(bad, q)
    with pytest.raises(TypeError):
        C.info_nce([[1.0]], [[1.0]])


# --- alignment and uniformity ----------------------------------------------------------------


def test_alignment_and_uniformity_match_wang_and_isola():
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(50, 8, generator=g), torch.randn(50, 8, generator=g)
    xn, yn = F.normalize(x, dim=1), F.normalize(y, dim=1)
    # The two functions of Wang & Isola (2020), Figure 5, on normalised inputs.
    align_ref = (xn - yn).norm(p=2, dim=1).pow(2).mean()
    unif_ref = torch.pdist(xn, p=2).pow(2).mul(-2).exp().mean().log()
    assert abs(float(C.alignment(x, y)) - float(align_ref)) < 1e-5
    assert abs(float(C.uniformity(x)) - float(unif_ref)) < 1e-5
    # a loop over the pairs i < j, for the uniformity
    pairs = [math.exp(-2 * float(((xn[i] - xn[j]) ** 2).sum())) for i in range(50) for j in range(i + 1, 50)]
    assert abs(float(C.uniformity(x)) - math.log(sum(pairs) / len(pairs))) < 1e-5
    assert abs(float(C.alignment(x, y, alpha=1)) - float((xn - yn).norm(dim=1).mean())) < 1e-5


def test_alignment_and_uniformity_limits():
    x = torch.randn(20, 5)
    assert float(C.alignment(x, 2 * x)) < 1e-10                           # pairs coincide after normalising
    assert abs(float(C.alignment(x, -x)) - 4.0) < 1e-5                    # antipodal: ||x - (-x)||^2 = 4
    assert abs(float(C.uniformity(torch.ones(10, 3)))) < 1e-7             # collapsed: log(1) = 0
    # many random points on a high-dimensional sphere: almost every squared distance is 2, so -> -4
    spread = float(C.uniformity(torch.randn(400, 512, generator=torch.Generator().manual_seed(0))))
    assert -4.0 < spread < -3.8
    # uniformity >= 4 (mean cosine - 1) (Jensen): an anisotropic cloud cannot be uniform
    cone = torch.randn(200, 16) * 0.3 + 2.0
    mean_cos = float((F.normalize(cone, dim=1) @ F.normalize(cone, dim=1).T)[np.triu_indices(200, 1)].mean())
    assert float(C.uniformity(cone)) >= 4 * (mean_cos - 1) - 1e-6


def test_alignment_and_uniformity_errors():
    with pytest.raises(ValueError, match="paired row by row"):
        C.alignment(torch.randn(4, 3), torch.randn(5, 3))
    with pytest.raises(ValueError, match="at least 2 rows"):
        C.uniformity(torch.randn(1, 3))
    with pytest.raises(FloatingPointError, match="NaN"):
        C.uniformity(torch.tensor([[1.0, float("inf")], [0.0, 1.0]]))


# --- text helpers -------------------------------------------------------------------------------


def test_split_sentences_and_trim(tok):
    text = "The first sentence is here.  The second one follows! Is this the third? yes, lowercase stays.  Short."
    assert C.split_sentences(text, min_chars=10) == [
        "The first sentence is here.", "The second one follows!", "Is this the third? yes, lowercase stays."]
    assert C.split_sentences(text, min_chars=0)[-1] == "Short."
    with pytest.raises(TypeError):
        C.split_sentences(["a list"])
    ids = torch.tensor([[5, 6, 0, 0, 0], [7, 0, 0, 0, 0]])
    mask = (ids != 0).long()
    i2, m2 = C.trim(ids, mask)
    assert i2.tolist() == [[5, 6], [7, 0]] and m2.tolist() == [[1, 1], [1, 0]]
    ids, mask = C.tokenize_texts(tok, TEXTS[:3], max_len=6)
    assert ids.shape[1] <= 6 and mask[:, -1].any()                         # cut to max_len, padded to the longest
    with pytest.raises(ValueError, match="empty"):
        C.tokenize_texts(tok, [], 8)


def test_set_dropout_and_dropout_rate(tok):
    enc = tiny_encoder(tok, dropout=0.0)
    assert C.dropout_rate(enc) == 0.0
    n = C.set_dropout(enc, 0.2)
    assert n >= 3 and C.dropout_rate(enc) == 0.2 and enc.config.dropout == 0.2
    assert all(b.attn.dropout == 0.2 for b in enc.blocks)
    with pytest.raises(ValueError):
        C.set_dropout(enc, 1.0)


# --- bi-encoder ---------------------------------------------------------------------------------


def test_bi_encoder_forward_encode_and_candidates(tok):
    bi = C.BiEncoder(tiny_encoder(tok), tok).eval()
    ids, mask = C.tokenize_texts(tok, TEXTS[:4], 32)
    with torch.no_grad():
        z = bi(ids, mask)
    assert z.shape == (4, 16) and torch.allclose(z.norm(dim=1), torch.ones(4), atol=1e-5)
    E = bi.encode(TEXTS[:4])
    assert E.dtype == np.float32 and np.allclose(E, z.numpy(), atol=1e-5)   # encode = forward in eval mode
    assert bi.encode([]).shape == (0, 16)
    S = bi.score_candidates(TEXTS[:2], [TEXTS[2:5], [TEXTS[1], TEXTS[5], TEXTS[6]]])
    assert S.shape == (2, 3)
    assert abs(S[1, 0] - 1.0) < 1e-5 and abs(S[0, 1] - float(E[0] @ E[3])) < 1e-5
    for p in ("max", "cls", "first_last"):
        assert C.BiEncoder(bi.encoder, tok, pooling=p).eval()(ids, mask).shape == (4, 16)
    with pytest.raises(TypeError, match="model.encoder"):
        C.BiEncoder(MaskedLM(bi.encoder.config), tok)
    with pytest.raises(ValueError, match="unknown pooling"):
        C.BiEncoder(bi.encoder, tok, pooling="sum")
    with pytest.raises(ValueError, match="one candidate list per query"):
        bi.score_candidates(TEXTS[:2], [TEXTS[:3]])
    with pytest.raises(ValueError, match="no tokenizer"):
        C.BiEncoder(bi.encoder).encode(["x"])


def test_simcse_loss_needs_dropout_and_uses_two_views(tok):
    data = C.tokenize_texts(tok, TEXTS, 32)
    bi = C.BiEncoder(tiny_encoder(tok, dropout=0.0), tok).train()
    with pytest.raises(ValueError, match="set_dropout"):
        C.simcse_loss()(bi, data)
    no_dropout = float(C.simcse_loss(require_dropout=False)(bi, data).detach())
    with torch.no_grad():
        z = bi(*data)
    assert abs(no_dropout - float(C.info_nce(z, z))) < 1e-5                 # identical views without dropout
    C.set_dropout(bi, 0.1)
    torch.manual_seed(0)
    a = float(C.simcse_loss()(bi, data).detach())
    torch.manual_seed(0)
    assert a == float(C.simcse_loss()(bi, data).detach()) and a > no_dropout          # seeded; the views now differ
    with pytest.raises(ValueError, match=r"\(ids, attention_mask\)"):
        C.simcse_loss()(bi, data[0])


def test_pair_loss_equals_info_nce_on_the_encoded_batch(tok):
    bi = C.BiEncoder(tiny_encoder(tok, dropout=0.0), tok).train()
    a, p, n = (C.tokenize_texts(tok, TEXTS[i:i + 4], 32) for i in (0, 4, 8))
    with torch.no_grad():
        za, zp, zn = bi(*a), bi(*p), bi(*n)
        assert abs(float(C.pair_loss(0.1)(bi, (*a, *p, *n))) - float(C.info_nce(za, torch.cat([zp, zn]), 0.1))) < 1e-6
        assert abs(float(C.pair_loss(0.1)(bi, (*a, *p))) - float(C.info_nce(za, zp, 0.1))) < 1e-6
        assert abs(float(C.pair_loss(0.1, symmetric=True)(bi, (*a, *p))) -
                   float(C.info_nce(za, zp, 0.1, symmetric=True))) < 1e-6
    with pytest.raises(ValueError, match="pair_loss expects"):
        C.pair_loss()(bi, a)


def fit_simcse(tok, seed=0):
    torch.manual_seed(seed)
    bi = C.BiEncoder(tiny_encoder(tok, dropout=0.1, seed=seed), tok)
    monitor = C.AlignUniform(tok, TEXTS[:6], TEXTS[6:], max_len=32)
    hist = train.fit(bi, train.Batches(C.tokenize_texts(tok, TEXTS, 32), 6, seed=seed), C.simcse_loss(0.1),
                     steps=30, lr=3e-3, device="cpu", progress=False, eval_fn=monitor, eval_every=10,
                     use_accelerate=False)
    return bi, hist, monitor


def test_simcse_trains_through_fit_deterministically_and_spreads_the_vectors(tok):
    raw = C.BiEncoder(tiny_encoder(tok, dropout=0.1), tok)
    before = C.AlignUniform(tok, TEXTS[:6], TEXTS[6:], max_len=32).measure(raw)
    bi, hist, monitor = fit_simcse(tok)
    assert np.mean(hist["loss"][-5:]) < np.mean(hist["loss"][:5])
    assert len(monitor.history["uniformity"]) == 3 and hist["eval"] == monitor.history["uniformity"]
    assert monitor.history["uniformity"][-1] < before["uniformity"]          # InfoNCE's second term at work
    _, hist2, monitor2 = fit_simcse(tok)
    assert hist["loss"] == hist2["loss"] and monitor.history == monitor2.history


def test_train_simcse_trains_a_copy_and_returns_it_ready_for_inference(tok):
    enc = tiny_encoder(tok, dropout=0.0)
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    kw = dict(steps=20, batch_size=6, lr=3e-3, max_len=32, temperature=0.1, device="cpu", progress=False)
    bi, hist = C.train_simcse(enc, tok, TEXTS, **kw)
    assert all(torch.equal(before[k], v) for k, v in enc.state_dict().items())   # the raw encoder is untouched
    assert not bi.training and C.dropout_rate(bi) == 0.0 and len(hist["loss"]) == 20
    assert np.mean(hist["loss"][-5:]) < np.mean(hist["loss"][:5])
    assert np.array_equal(bi.encode(TEXTS[:3]), bi.encode(TEXTS[:3]))             # no dropout at inference
    _, hist2 = C.train_simcse(enc, tok, TEXTS, **kw)
    assert hist["loss"] == hist2["loss"]                                          # seeded
    _, hist3 = C.train_simcse(enc, tok, TEXTS, **{**kw, "steps": 2}, max_sentences=4)
    assert len(hist3["loss"]) == 2
    assert set(C.SIMCSE_RECIPE) == {"quick", "full"}
    with pytest.raises(ValueError, match="at least 2 sentences"):
        C.train_simcse(enc, tok, ["only one"], **kw)
    with pytest.raises(ValueError, match="empty"):
        C.train_simcse(enc, tok, [], **kw)


# --- pairs and the cross-encoder ----------------------------------------------------------------


def test_tokenize_pairs_layout_and_longest_first_truncation(tok):
    ids, mask = C.tokenize_pairs(tok, ["The cat"], ["A dog barked"], max_len=32)
    a, b = tok.encode("The cat"), tok.encode("A dog barked")
    assert ids[0, : mask[0].sum()].tolist() == [tok.bos_id, *a, tok.eos_id, *b, tok.eos_id]
    long_a = " ".join(TEXTS)
    ids, mask = C.tokenize_pairs(tok, [long_a], ["The cat"], max_len=16)
    row = ids[0, : mask[0].sum()].tolist()
    assert len(row) == 16 and row[-1 - len(tok.encode("The cat")) - 1] == tok.eos_id   # the short text survives whole
    with pytest.raises(ValueError, match="paired"):
        C.tokenize_pairs(tok, ["a"], ["b", "c"], 16)
    with pytest.raises(ValueError, match="no room"):
        C.tokenize_pairs(tok, ["a"], ["b"], 4)


def test_tokenize_pairs_matches_hugging_face_bert_pairs():
    from transformers import AutoTokenizer

    from minilib import data
    from minilib.bpe import WordPiece

    folder = data.load("minilm")
    wp = WordPiece.from_vocab(folder / "vocab.txt")
    hf = AutoTokenizer.from_pretrained(str(folder))
    a = ["What is the capital of France?", "A man plays a guitar on a very long stage " * 3]
    b = ["Paris is the capital and largest city of France.", "Someone plays music."]
    ours, mask = C.tokenize_pairs(wp, a, b, max_len=24)
    theirs = hf(a, b, truncation="longest_first", max_length=24, padding=True, return_tensors="pt")
    assert torch.equal(ours, theirs["input_ids"]) and torch.equal(mask, theirs["attention_mask"])


def test_cross_encoder_scores_and_losses(tok):
    ce = C.CrossEncoder(tiny_encoder(tok), tok)
    s = ce.score(TEXTS[:3], TEXTS[3:6])
    assert s.shape == (3,) and s.dtype == np.float32 and ce.training            # score() restores train mode
    S = ce.score_candidates(TEXTS[:2], [TEXTS[2:5], TEXTS[5:8]])
    assert S.shape == (2, 3) and abs(S[1, 2] - float(ce.score([TEXTS[1]], [TEXTS[7]])[0])) < 1e-5
    ids, mask = C.tokenize_pairs(tok, [q for q in TEXTS[:2] for _ in range(3)], TEXTS[2:8], 32)
    batch = (ids.view(2, 3, -1), mask.view(2, 3, -1))
    ce.eval()
    with torch.no_grad():
        logits = ce(ids, mask).view(2, 3)
        lw = C.cross_encoder_loss("listwise")(ce, batch)
        pw = C.cross_encoder_loss("pointwise")(ce, batch)
    assert abs(float(lw) - float(-(logits.log_softmax(1)[:, 0]).mean())) < 1e-6
    labels = torch.tensor([[1.0, 0, 0], [1.0, 0, 0]])
    assert abs(float(pw) - float(F.binary_cross_entropy_with_logits(logits, labels))) < 1e-6
    for head in ("mean", "first"):
        assert C.CrossEncoder(ce.encoder, tok, head=head).eval()(ids, mask).shape == (6,)
    with pytest.raises(ValueError, match="head must be"):
        C.CrossEncoder(ce.encoder, tok, head="max")
    with pytest.raises(ValueError, match="candidates >= 2"):
        C.cross_encoder_loss()(ce, (ids, mask))
    with pytest.raises(ValueError, match="listwise"):
        C.cross_encoder_loss("pairwise")


def test_cross_encoder_pair_head_pools_each_text_on_its_own(tok):
    ce = C.CrossEncoder(tiny_encoder(tok), tok).eval()
    ids, mask = C.tokenize_pairs(tok, ["The cat", "A dog barked at"], ["A dog barked", "The"], max_len=32)
    in_a, in_b = ce.segments(ids, mask)
    assert in_a.sum(1).tolist() == [len(tok.encode("The cat")), len(tok.encode("A dog barked at"))]
    assert in_b.sum(1).tolist() == [len(tok.encode("A dog barked")), len(tok.encode("The"))]
    assert not (in_a & in_b).any() and not ((in_a | in_b) & (ids == tok.eos_id)).any()
    with torch.no_grad():
        h = ce.encoder(ids, mask)
        u, v = F.normalize(pooling_mean(h, in_a), dim=-1), F.normalize(pooling_mean(h, in_b), dim=-1)
        torch.testing.assert_close(ce(ids, mask), 20.0 * (u * v).sum(-1))


def pooling_mean(h, m):
    m = m.float()[:, :, None]
    return (h * m).sum(1) / m.sum(1)


def test_cross_encoder_learns_to_rank_on_a_toy_task(tok):
    # Query = a text, relevant candidate = the same text, others = different texts.
    rng = np.random.default_rng(0)
    rows = [[TEXTS[i]] + [TEXTS[j] for j in rng.choice([j for j in range(12) if j != i], 2, replace=False)]
            for i in range(12)]
    ids, mask = C.tokenize_pairs(tok, [TEXTS[i] for i in range(12) for _ in range(3)], sum(rows, []), 32)
    data = (ids.view(12, 3, -1), mask.view(12, 3, -1))
    torch.manual_seed(0)
    ce = C.CrossEncoder(tiny_encoder(tok, dropout=0.0), tok, head="mean")  # must learn to compare from scratch
    before = C.ranking_metrics(ce.score_candidates(TEXTS, rows))["mrr"]
    hist = train.fit(ce, train.Batches(data, 6, seed=0), C.cross_encoder_loss(), steps=60, lr=3e-3, device="cpu",
                     progress=False, use_accelerate=False)
    after = C.ranking_metrics(ce.score_candidates(TEXTS, rows))["mrr"]
    assert np.mean(hist["loss"][-5:]) < np.mean(hist["loss"][:5]) and after > before


# --- distillation -------------------------------------------------------------------------------


def test_distill_loss_parity_with_sentence_transformers():
    from sentence_transformers.sentence_transformer.losses import DistillKLDivLoss, MarginMSELoss
    from sentence_transformers.util import pairwise_cos_sim

    g = torch.Generator().manual_seed(4)
    q, c1, c2, c3 = (torch.randn(5, 8, generator=g) for _ in range(4))
    teacher = torch.randn(5, 3, generator=g) * 3
    student = torch.stack([F.cosine_similarity(q, c, dim=1) for c in (c1, c2, c3)], dim=1)  # (5, 3)
    ref = DistillKLDivLoss(model=None, similarity_fct=pairwise_cos_sim, student_temperature=0.05, teacher_temperature=2.0)
    theirs = ref.compute_loss_from_embeddings([q, c1, c2, c3], teacher)
    ours = C.distill_loss(student, teacher, "kl", student_temperature=0.05, teacher_temperature=2.0)
    assert abs(float(ours) * 0.05 ** 2 - float(theirs)) < 1e-6               # they scale by T_student^2
    ref = MarginMSELoss(model=None, similarity_fct=pairwise_cos_sim)
    theirs = ref.compute_loss_from_embeddings([q, c1, c2, c3], teacher)
    assert abs(float(C.distill_loss(student, teacher, "margin_mse")) - float(theirs)) < 1e-6


def test_distill_loss_is_zero_when_the_student_agrees_and_errors():
    t = torch.tensor([[2.0, 0.5, -1.0], [0.0, 1.0, 3.0]])
    assert float(C.distill_loss(t, t, "kl", 1.0, 1.0)) < 1e-7
    assert float(C.distill_loss(t * 0.05, t, "kl", 0.05, 1.0)) < 1e-7        # only the distribution matters
    assert float(C.distill_loss(t + 5.0, t, "margin_mse")) < 1e-10             # margins ignore a shift
    with pytest.raises(ValueError, match="same"):
        C.distill_loss(t, t[:, :2])
    with pytest.raises(ValueError, match="at least 2"):
        C.distill_loss(t[:, :1], t[:, :1])
    with pytest.raises(ValueError, match="kind"):
        C.distill_loss(t, t, "mse")


def test_distillation_loss_fn_equals_its_definition(tok):
    bi = C.BiEncoder(tiny_encoder(tok, dropout=0.0), tok).train()
    q = C.tokenize_texts(tok, TEXTS[:2], 32)
    cids, cmask = C.tokenize_texts(tok, TEXTS[2:8], 32)
    teacher = torch.tensor([[3.0, 1.0, 0.0], [2.0, 2.5, -1.0]])
    batch = (*q, cids.view(2, 3, -1), cmask.view(2, 3, -1), teacher)
    with torch.no_grad():
        zq, zc = bi(*q), bi(cids, cmask).view(2, 3, -1)
        student = (zq[:, None] * zc).sum(-1)
        want = C.distill_loss(student, teacher, "kl", 0.05, 1.0)
        assert abs(float(C.distillation_loss()(bi, batch)) - float(want)) < 1e-5
        keys = torch.cat([zc[:, 0], zc[:, 1:].reshape(4, -1)])
        want = want + 0.5 * C.info_nce(zq, keys)
        assert abs(float(C.distillation_loss(contrastive_weight=0.5)(bi, batch)) - float(want)) < 1e-5
    with pytest.raises(ValueError, match="shapes do not fit"):
        C.distillation_loss()(bi, (*q, cids, cmask, teacher))


# --- evaluation and NaN detection ---------------------------------------------------------------


def test_ranking_metrics_by_hand_ties_count_against():
    S = np.array([[0.9, 0.1, 0.2], [0.1, 0.5, 0.05], [0.3, 0.3, 0.3]])
    m = C.ranking_metrics(S)
    assert m["accuracy@1"] == pytest.approx(1 / 3) and m["mrr"] == pytest.approx((1 + 1 / 2 + 1 / 3) / 3)
    with pytest.raises(ValueError, match="N >= 2"):
        C.ranking_metrics(np.ones((3, 1)))
    with pytest.raises(FloatingPointError):
        C.ranking_metrics(np.array([[np.nan, 1.0]]))


def test_nan_weights_are_reported_not_propagated(tok):
    enc = tiny_encoder(tok)
    with torch.no_grad():
        enc.blocks[0].ff2.weight.fill_(float("nan"))
    bi = C.BiEncoder(enc, tok)
    with pytest.raises(FloatingPointError, match="NaN"):
        C.simcse_loss()(bi, C.tokenize_texts(tok, TEXTS[:4], 32))
    with pytest.raises(FloatingPointError):
        bi.encode(TEXTS[:2])
    with pytest.raises(FloatingPointError):
        C.CrossEncoder(copy.deepcopy(enc), tok).score(TEXTS[:2], TEXTS[2:4])


def test_bi_encoder_dim_is_the_encoder_width(tok):
    bi = C.BiEncoder(tiny_encoder(tok), tok)
    assert bi.dim == 16 == bi.encode(["the cat"]).shape[1]


# --- bad input: every error names the fix ----------------------------------------------------------


def test_helpers_refuse_bad_arguments():
    x = torch.randn(4, 3)
    with pytest.raises(ValueError, match="alpha must be > 0, got 0"):
        C.alignment(x, x, alpha=0)
    with pytest.raises(ValueError, match="t must be > 0, got -1"):
        C.uniformity(x, t=-1)
    with pytest.raises(ValueError, match="need 0 <= min_chars <= max_chars, got 50 and 10"):
        C.split_sentences("Some text here.", min_chars=50, max_chars=10)
    with pytest.raises(ValueError, match=r"same \(\.\.\., T\) shape, got \(2, 5\) and \(2, 4\)"):
        C.trim(torch.ones(2, 5, dtype=torch.long), torch.ones(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"same \(\.\.\., T\) shape, got \(5,\) and \(5,\)"):
        C.trim(torch.ones(5, dtype=torch.long), torch.ones(5, dtype=torch.long))


def test_encoders_refuse_bad_tokenizers_and_models(tok):
    enc = tiny_encoder(tok)
    with pytest.raises(TypeError, match=r"encode_batch\(texts, max_len=\.\.\., truncate=True\)"):
        C.BiEncoder(enc, tokenizer=object())
    with pytest.raises(TypeError, match=r"got MaskedLM \(for a MaskedLM pass model.encoder\)"):
        C.CrossEncoder(MaskedLM(enc.config), tok)
    no_sep = ByteBPE([], special_tokens=("<pad>",))
    with pytest.raises(ValueError, match=r"needs a separator token to join two texts: \[SEP\] \(WordPiece\) or <eos>"):
        C.CrossEncoder(enc, no_sep)
    with pytest.raises(ValueError, match="needs a separator token"):
        C.tokenize_pairs(no_sep, ["a"], ["b"], 16)
    bi = C.BiEncoder(enc, tok)
    with pytest.raises(ValueError, match="same number of candidates"):
        bi.score_candidates(TEXTS[:2], [TEXTS[2:5], TEXTS[5:7]])
    with pytest.raises(ValueError, match="same number of candidates"):
        C.CrossEncoder(enc, tok).score_candidates(TEXTS[:2], [TEXTS[2:5], TEXTS[5:7]])


def test_distillation_and_monitor_refuse_bad_arguments(tok):
    t = torch.tensor([[2.0, 0.5, -1.0], [0.0, 1.0, 3.0]])
    for kw in (dict(student_temperature=0.0), dict(teacher_temperature=-1.0)):
        with pytest.raises(ValueError, match="temperatures must be > 0"):
            C.distill_loss(t, t, **kw)
    with pytest.raises(ValueError, match="contrastive_weight must be >= 0, got -0.5"):
        C.distillation_loss(contrastive_weight=-0.5)
    bi = C.BiEncoder(tiny_encoder(tok, dropout=0.0), tok)
    q = C.tokenize_texts(tok, TEXTS[:2], 32)
    with pytest.raises(ValueError, match=r"expects batches \(q_ids, q_mask, c_ids, c_mask, teacher_scores\)"):
        C.distillation_loss()(bi, q)
    with pytest.raises(ValueError, match="must be paired: 3 and 2 texts"):
        C.AlignUniform(tok, TEXTS[:3], TEXTS[3:5])
    with pytest.raises(ValueError, match="returns must be 'alignment' or 'uniformity', got 'loss'"):
        C.AlignUniform(tok, TEXTS[:2], TEXTS[2:4], returns="loss")
