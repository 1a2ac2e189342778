"""minilib.llm_embed: the poolings on hand examples (left and right padding), the trainable poolings,
the causal <-> bidirectional switch on our CausalLM and on a random transformers Llama, prompts,
the embedder's interface and errors, and the two LLM2Vec losses (MNTP's target shift, SimCSE)."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import numpy as np
import pytest
import torch

from minilib import bench, llm_embed as le, pooling, train
from minilib.bpe import ByteBPE
from minilib.transformer import CausalLM, TransformerConfig

CORPUS = ["the cat sat on the mat", "a dog barked at the cat", "stocks fell on monday morning",
          "the market rose again today", "rain is expected tomorrow in the north"] * 4


@pytest.fixture(scope="module")
def bpe():
    return ByteBPE.train(CORPUS, vocab_size=300)


@pytest.fixture(scope="module")
def lm(bpe):
    torch.manual_seed(0)
    cfg = TransformerConfig(vocab_size=bpe.vocab_size, d_model=32, n_layers=2, n_heads=4, d_ff=64, max_len=48,
                            dropout=0.0, norm_first=True, causal=True, activation="gelu_tanh", position="rope",
                            pad_id=bpe.pad_id)
    return CausalLM(cfg).eval()


@pytest.fixture(scope="module")
def llama(bpe):
    transformers = pytest.importorskip("transformers")
    tok = transformers.PreTrainedTokenizerFast(tokenizer_object=bpe.to_hf(), eos_token="<eos>", pad_token="<pad>",
                                               mask_token="<mask>", bos_token="<bos>")
    cfg = transformers.LlamaConfig(vocab_size=bpe.vocab_size, hidden_size=32, intermediate_size=64,
                                   num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                   max_position_embeddings=64, pad_token_id=bpe.pad_id, bos_token_id=bpe.bos_id,
                                   eos_token_id=bpe.eos_id, tie_word_embeddings=True)
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(cfg).eval(), tok


def states(B=3, T=5, d=4, seed=0):
    return torch.randn(B, T, d, generator=torch.Generator().manual_seed(seed))


# --- 1. poolings -----------------------------------------------------------------------------------


def test_mean_ignores_padding_values():
    h = states()
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [0, 0, 1, 1, 1]])
    h2 = h.clone()
    h2[mask == 0] = 1e6  # padding may hold anything
    torch.testing.assert_close(le.mean(h, mask), le.mean(h2, mask))
    torch.testing.assert_close(le.mean(h, mask)[0], h[0, :3].mean(0))
    torch.testing.assert_close(le.mean(h, mask)[2], h[2, 2:].mean(0))


@pytest.mark.parametrize("side", ["right", "left"])
def test_last_and_first_token_with_either_padding(side):
    h = states()
    lengths = [2, 5, 3]
    mask = torch.zeros(3, 5, dtype=torch.long)
    for r, n in enumerate(lengths):
        if side == "right":
            mask[r, :n] = 1
        else:
            mask[r, 5 - n:] = 1
    last = le.last_token(h, mask)
    first = le.first_token(h, mask)
    for r, n in enumerate(lengths):
        lo, hi = (0, n - 1) if side == "right" else (5 - n, 4)
        torch.testing.assert_close(last[r], h[r, hi])
        torch.testing.assert_close(first[r], h[r, lo])
    assert le.last_token_index(mask).tolist() == ([1, 4, 2] if side == "right" else [4, 4, 4])


def test_last_token_of_an_empty_row_is_zero():
    h = states(B=2)
    mask = torch.tensor([[1, 1, 0, 0, 0], [0, 0, 0, 0, 0]])
    out = le.last_token(h, mask)
    assert torch.equal(out[1], torch.zeros(4))
    assert le.last_token_index(mask).tolist() == [1, 0]


def test_position_weights_follow_sgpt():
    mask = torch.tensor([[1, 1, 1, 0], [0, 1, 1, 1]])
    w = le.position_weights(mask)
    expected = torch.tensor([[1, 2, 3, 0], [0, 1, 2, 3]], dtype=torch.float32) / 6
    torch.testing.assert_close(w, expected)
    # a pool mask keeps the absolute positions but renormalises over the pooled tokens
    pm = torch.tensor([[0, 1, 1, 0], [0, 0, 0, 1]])
    torch.testing.assert_close(le.position_weights(mask, pm),
                               torch.tensor([[0, 2 / 5, 3 / 5, 0], [0, 0, 0, 1.0]]))


def test_position_weighted_mean_by_hand():
    h = states(B=1, T=3, d=2)
    mask = torch.ones(1, 3, dtype=torch.long)
    expected = (1 * h[0, 0] + 2 * h[0, 1] + 3 * h[0, 2]) / 6
    torch.testing.assert_close(le.position_weighted_mean(h, mask)[0], expected)
    torch.testing.assert_close(le.pool("weighted_mean", h, mask)[0], expected)


def test_pool_dispatch_pool_mask_and_fallback():
    h = states(B=2)
    mask = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 0, 0]])
    pm = torch.tensor([[0, 1, 1, 0, 0], [0, 0, 0, 0, 0]])  # row 1 pools nothing: falls back to its tokens
    out = le.pool("mean", h, mask, pm)
    torch.testing.assert_close(out[0], h[0, 1:3].mean(0))
    torch.testing.assert_close(out[1], h[1, :3].mean(0))
    # last_token ignores the pool mask: the last real token, e.g. an EOS that is not pooled
    torch.testing.assert_close(le.pool("last_token", h, mask, pm)[0], h[0, 3])
    torch.testing.assert_close(le.pool("first_token", h, mask, pm)[0], h[0, 1])
    with pytest.raises(ValueError, match="unknown pooling"):
        le.pool("cls", h, mask)
    with pytest.raises(ValueError, match="pool_mask"):
        le.pool("mean", h, mask, pm[:, :3])


def test_poolings_refuse_nan_at_real_tokens_and_bad_shapes():
    h = states()
    mask = torch.ones(3, 5, dtype=torch.long)
    h[0, 1, 0] = float("nan")
    for name in le.POOLINGS:
        with pytest.raises(FloatingPointError, match="NaN"):
            le.pool(name, h, mask)
    with pytest.raises(ValueError, match="batch, seq, dim"):
        le.last_token(h[0], mask[0])


# --- 2. trainable poolings --------------------------------------------------------------------------


def test_latent_attention_starts_as_mean_and_learns():
    torch.manual_seed(0)
    lat = le.LatentAttentionPooling(8, n_latents=6, n_heads=2)
    h = states(B=3, T=5, d=8)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]])
    torch.testing.assert_close(lat(h, mask), le.mean(h, mask))  # zero output layers: mean pooling
    assert lat(h, mask).shape == (3, 8)
    opt = torch.optim.SGD(lat.parameters(), lr=0.5)
    for _ in range(2):  # step 1 moves the zero output layers; then the latents get a gradient too
        opt.zero_grad()
        lat(h, mask).pow(2).sum().backward()
        assert lat.out.weight.grad.abs().sum() > 0
        opt.step()
    assert lat.latents.grad.abs().sum() > 0
    assert not torch.allclose(lat(h, mask), le.mean(h, mask))
    # padding still does not matter
    h2 = h.clone()
    h2[mask == 0] = 3.0
    torch.testing.assert_close(lat(h, mask), lat(h2, mask))
    with pytest.raises(ValueError, match="d_model=8"):
        lat(states(d=4), torch.ones(3, 5))
    with pytest.raises(ValueError, match="multiple"):
        le.LatentAttentionPooling(10, n_heads=4)


def test_multi_layer_pooling_mixes_layers():
    hs = [states(seed=i) for i in range(3)]
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 1, 0, 0, 0]])
    ml = le.MultiLayerPooling(3)
    torch.testing.assert_close(ml(hs, mask), le.mean(sum(hs) / 3, mask))
    torch.testing.assert_close(ml.weights.sum(), torch.tensor(1.0))
    ml(hs, mask).sum().backward()
    assert ml.scores.grad is not None and ml.gamma.grad is not None
    last_only = le.MultiLayerPooling(3, layers=[-1])
    torch.testing.assert_close(last_only(hs, mask), le.mean(hs[2], mask))
    with pytest.raises(ValueError, match="3 hidden states"):
        ml(hs[:2], mask)
    with pytest.raises(ValueError, match="indices"):
        le.MultiLayerPooling(3, layers=[5])


# --- 3. attention switch ----------------------------------------------------------------------------


def test_visibility_and_bias():
    mask = torch.tensor([[1, 1, 1, 0]])
    causal = le.visibility(mask)[0]
    assert causal.tolist() == [[True, False, False, False], [True, True, False, False],
                               [True, True, True, False], [True, True, True, False]]
    bi = le.visibility(mask, bidirectional=True)[0]
    assert bi[0].tolist() == [True, True, True, False]
    bias = le.attention_bias(mask, True)
    assert bias.shape == (1, 1, 4, 4)
    assert (bias[0, 0, :, :3] == 0).all() and (bias[0, 0, :, 3] == torch.finfo(torch.float32).min).all()


def _perturbed(ids, mask, pos):
    ids2 = ids.clone()
    ids2[:, pos] = (ids2[:, pos] + 7) % 250 + 5
    return ids2


def _dependence_on_last(dec, ids, mask, bidirectional):
    """How much the first token's state changes when the last token changes."""
    with torch.no_grad():
        a, _ = dec(ids, mask, bidirectional=bidirectional)
        b, _ = dec(_perturbed(ids, mask, ids.shape[1] - 1), mask, bidirectional=bidirectional)
    return (a[:, 0] - b[:, 0]).abs().max().item(), (a[:, -1] - b[:, -1]).abs().max().item()


def test_minilib_decoder_switch(lm, bpe):
    dec = le.as_decoder(lm, bpe)
    ids = torch.tensor([bpe.encode("the cat sat on the mat")])
    mask = torch.ones_like(ids)
    first, last = _dependence_on_last(dec, ids, mask, bidirectional=False)
    assert first == 0.0 and last > 1e-4  # causal: the first token cannot see the last
    first, _ = _dependence_on_last(dec, ids, mask, bidirectional=True)
    assert first > 1e-4  # bidirectional: it can
    assert lm.config.causal is True  # the switch is undone after the call
    # the causal path is exactly the model's own forward
    torch.testing.assert_close(dec(ids, mask)[0], lm.decoder(ids, attention_mask=mask))
    torch.testing.assert_close(dec.logits(dec(ids, mask)[0]), lm(ids, mask))


def test_minilib_decoder_restores_causal_after_an_error(lm, bpe):
    dec = le.as_decoder(lm, bpe)
    with pytest.raises(ValueError):
        dec(torch.zeros(1, 100, dtype=torch.long), torch.ones(1, 100), bidirectional=True)  # longer than max_len
    assert lm.config.causal is True


def test_hf_decoder_switch_and_parity(llama, bpe):
    model, tok = llama
    dec = le.as_decoder(model, tok)
    assert isinstance(dec, le.HFDecoder) and dec.mask_id == bpe.mask_id and dec.eos_id == bpe.eos_id
    ids = torch.tensor([dec.encode("the cat sat on the mat")])
    assert ids[0].tolist() == bpe.encode("the cat sat on the mat")
    mask = torch.ones_like(ids)
    first, last = _dependence_on_last(dec, ids, mask, bidirectional=False)
    assert first == 0.0 and last > 1e-4
    first, _ = _dependence_on_last(dec, ids, mask, bidirectional=True)
    assert first > 1e-4
    with torch.no_grad():
        ours, hidden = dec(ids, mask, bidirectional=False, output_hidden_states=True)
        theirs = model.model(input_ids=ids, attention_mask=mask).last_hidden_state
        torch.testing.assert_close(ours, theirs)
        assert len(hidden) == 3 and torch.equal(hidden[-1], ours)
        torch.testing.assert_close(dec.logits(ours), model(input_ids=ids, attention_mask=mask).logits)
        # bidirectional through the 4-D mask = transformers' own bidirectional mode (config.is_causal=False),
        # in the eager implementation as in sdpa
        bi, _ = dec(ids, mask, bidirectional=True)
        model.config.is_causal = False
        try:
            ref = model.model(input_ids=ids, attention_mask=mask).last_hidden_state
        finally:
            model.config.is_causal = True
        torch.testing.assert_close(bi, ref, rtol=1e-5, atol=1e-5)
        impl = model.config._attn_implementation
        model.set_attn_implementation("eager")
        try:
            torch.testing.assert_close(dec(ids, mask, bidirectional=True)[0], bi, rtol=1e-5, atol=1e-5)
        finally:
            model.set_attn_implementation(impl)


def test_hf_decoder_padding_does_not_change_a_text(llama):
    model, tok = llama
    emb = le.DecoderEmbedder(model, tok, pooling="mean")
    for bi in (False, True):
        emb.bidirectional = bi
        alone = emb.encode(["the cat sat"])
        padded = emb.encode(["the cat sat", "stocks fell on monday morning and the market rose again"])
        np.testing.assert_allclose(alone[0], padded[0], atol=1e-5)


def test_as_decoder_errors(lm, bpe):
    with pytest.raises(TypeError, match="CausalLM"):
        le.as_decoder(lm.decoder, bpe)
    with pytest.raises(ValueError, match="tokenizer"):
        le.as_decoder(lm)
    with pytest.raises(TypeError, match="causal LM"):
        le.HFDecoder(torch.nn.Linear(2, 2), lambda t: t)


# --- 4. prompts -------------------------------------------------------------------------------------


def test_segments():
    assert le.segments("hi") == [("hi", True, True)]
    assert le.segments("hi", "prompteol") == [('This sentence : "', False, False), ("hi", True, True),
                                              ('" means in one word:"', False, False)]
    echo = le.segments("hi", "echo")
    assert [s for s, *_ in echo] == ["Rewrite the sentence: ", "hi", ", rewritten sentence: ", "hi"]
    assert [p for *_, p in echo] == [False, False, False, True]  # only the second copy is pooled
    assert [t for _, t, _ in echo] == [False, True, False, True]
    inst = le.segments("hi", instruction="Classify the topic")
    assert inst[0] == ("Instruct: Classify the topic\nQuery: ", False, False)
    assert le.segments("hi", "Q: {text} A:")[1] == ("hi", True, True)
    with pytest.raises(ValueError, match="unknown prompt"):
        le.segments("hi", "summarize")
    with pytest.raises(TypeError):
        le.segments(3)


def test_prompt_tokens_and_truncation_keep_the_template(lm, bpe):
    emb = le.DecoderEmbedder(lm, bpe, pooling="last_token", prompt="prompteol", max_len=40)
    assert emb.add_eos is False
    long = "the cat sat on the mat " * 10
    ids, flags = emb.token_ids(long)
    assert len(ids) == 40
    tail = bpe.encode('" means in one word:"')
    assert ids[-len(tail):] == tail  # the end of the prompt survives: it is what last_token reads
    assert bpe.decode(ids).startswith('This sentence : "the cat')
    emb = le.DecoderEmbedder(lm, bpe, pooling="mean", prompt="echo", max_len=48)
    ids, flags = emb.token_ids(long)
    assert len(ids) <= 48
    text_ids = [i for i, f in zip(ids, flags) if f]
    assert bpe.decode(text_ids).startswith("the cat sat")  # the pooled span is the second copy of the text
    assert sum(flags) < len(ids) / 2
    emb = le.DecoderEmbedder(lm, bpe)  # no prompt: EOS appended, not pooled
    ids, flags = emb.token_ids("the cat")
    assert ids[-1] == bpe.eos_id and flags[-1] == 0 and all(flags[:-1])
    with pytest.raises(ValueError, match="no room"):
        le.DecoderEmbedder(lm, bpe, prompt="echo", instruction="a very long instruction " * 5,
                           max_len=20).token_ids("x")


# --- 5. the embedder --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", le.POOLINGS)
@pytest.mark.parametrize("bidirectional", [False, True])
def test_embedder_encode(lm, bpe, name, bidirectional):
    emb = le.DecoderEmbedder(lm, bpe, pooling=name, bidirectional=bidirectional)
    X = emb.encode(CORPUS[:5], batch_size=2)
    assert X.shape == (5, 32) and X.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1, atol=1e-5)
    assert emb.encode([]).shape == (0, 32)
    # the same vectors in another batch order and size (sorting by length is undone)
    np.testing.assert_allclose(emb.encode(CORPUS[:5][::-1], batch_size=5)[::-1], X, atol=1e-5)
    # forward (differentiable) agrees with encode
    ids, mask, pm = emb.tokenize(CORPUS[:2])
    z = torch.nn.functional.normalize(emb(ids, mask, pm), dim=-1).detach().numpy()
    np.testing.assert_allclose(z, X[:2], atol=1e-5)


def test_first_token_is_blind_under_causal_attention(lm, bpe):
    texts = ["the cat sat on the mat", "the market rose again today"]  # same first token
    causal = le.DecoderEmbedder(lm, bpe, pooling="first_token").encode(texts)
    np.testing.assert_allclose(causal[0], causal[1], atol=1e-6)
    bi = le.DecoderEmbedder(lm, bpe, pooling="first_token", bidirectional=True).encode(texts)
    assert np.abs(bi[0] - bi[1]).max() > 1e-4


def test_pooled_many_equals_single_poolings(lm, bpe):
    emb = le.DecoderEmbedder(lm, bpe, bidirectional=True, normalize=False)
    many = emb.pooled_many(CORPUS[:4])
    for name in le.POOLINGS:
        one = le.DecoderEmbedder(lm, bpe, pooling=name, bidirectional=True, normalize=False).encode(CORPUS[:4])
        np.testing.assert_allclose(many[name], one, atol=1e-5)
    looks = le.precompute(emb, CORPUS[:4] + CORPUS[:2])  # duplicates are fine
    np.testing.assert_allclose(looks["mean"].encode(CORPUS[1:3]), many["mean"][1:3], atol=1e-6)  # normalize=False
    unit = le.precompute(le.DecoderEmbedder(lm, bpe, bidirectional=True), CORPUS[:4])["mean"].encode(CORPUS[1:3])
    np.testing.assert_allclose(unit, many["mean"][1:3] / np.linalg.norm(many["mean"][1:3], axis=1, keepdims=True),
                               atol=1e-5)
    assert looks["mean"].encode([]).shape == (0, 32)
    with pytest.raises(KeyError, match="precomputed"):
        looks["mean"].encode(["an unseen text"])
    # a Lookup is a model for minilib.bench
    task = bench.STSTask("toy", CORPUS[:3], CORPUS[1:4], [1.0, 2.0, 3.0], n_boot=20)
    assert np.isfinite(task.run(le.precompute(emb, task.texts)["mean"])["score"])


def test_trainable_pooling_in_the_embedder(lm, bpe):
    lat = le.LatentAttentionPooling(32, n_latents=4, n_heads=2)
    emb = le.DecoderEmbedder(lm, bpe, pooling=lat, bidirectional=True)
    mean = le.DecoderEmbedder(lm, bpe, pooling="mean", bidirectional=True)
    np.testing.assert_allclose(emb.encode(CORPUS[:3]), mean.encode(CORPUS[:3]), atol=1e-5)  # untrained = mean
    assert set(emb.pooled_many(CORPUS[:2], ["trained", "mean"])) == {"trained", "mean"}
    ml = le.DecoderEmbedder(lm, bpe, pooling=le.MultiLayerPooling(3))
    assert ml.encode(CORPUS[:3]).shape == (3, 32)
    with pytest.raises(ValueError, match="LatentAttentionPooling\\(32\\)"):
        le.DecoderEmbedder(lm, bpe, pooling=le.LatentAttentionPooling(16))
    with pytest.raises(ValueError, match="MultiLayerPooling\\(3\\)"):
        le.DecoderEmbedder(lm, bpe, pooling=le.MultiLayerPooling(5))


def test_embedder_on_a_transformers_decoder(llama):
    model, tok = llama
    for prompt in (None, "prompteol", "echo"):
        emb = le.DecoderEmbedder(model, tok, pooling="last_token" if prompt == "prompteol" else "mean", prompt=prompt,
                                 instruction="Find the topic" if prompt != "echo" else None)
        X = emb.encode(CORPUS[:3])
        assert X.shape == (3, 32) and np.isfinite(X).all()


@pytest.mark.parametrize("pooling,bidirectional,prompt", [("mean", False, None), ("last_token", False, "prompteol"),
                                                          ("weighted_mean", True, None), ("mean", True, "echo")])
def test_our_copy_of_a_llama_embeds_like_the_original(llama, pooling, bidirectional, prompt):
    """A Llama copied into our CausalLM (transformer.from_transformers) runs the chapter with the
    checkpoint's own transformers tokenizer, and gives the embeddings transformers' model gives."""
    from minilib.transformer import from_transformers
    model, tok = llama
    ours = from_transformers(model, head=True)
    kw = dict(pooling=pooling, bidirectional=bidirectional, prompt=prompt)
    theirs = le.DecoderEmbedder(model, tok, **kw).encode(CORPUS[:5])
    mine_emb = le.DecoderEmbedder(ours, tok, **kw)
    assert isinstance(mine_emb.decoder, le.MinilibDecoder)
    np.testing.assert_allclose(mine_emb.encode(CORPUS[:5]), theirs, atol=1e-5, rtol=1e-5)
    dec = mine_emb.decoder
    assert (dec.eos_id, dec.pad_id, dec.mask_id) == (tok.eos_token_id, tok.pad_token_id, tok.mask_token_id)


def test_embedder_errors_and_nan_detection(lm, bpe):
    with pytest.raises(ValueError, match="unknown pooling"):
        le.DecoderEmbedder(lm, bpe, pooling="cls")
    with pytest.raises(TypeError, match="pooling must be"):
        le.DecoderEmbedder(lm, bpe, pooling=torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="unknown prompt"):
        le.DecoderEmbedder(lm, bpe, prompt="nope")
    with pytest.raises(ValueError, match="max_len"):
        le.DecoderEmbedder(lm, bpe, max_len=1)
    emb = le.DecoderEmbedder(lm, bpe)
    with pytest.raises(TypeError, match="one str"):
        emb.encode("the cat")
    with pytest.raises(ValueError, match="unknown pooling"):
        emb.pooled_many(["x"], ["trained"])
    with pytest.raises(ValueError, match="no tokens"):
        le.DecoderEmbedder(lm, bpe, add_eos=False).encode([""])
    assert emb.encode([""]).shape == (1, 32)  # the EOS alone: a vector, not an error
    broken = CausalLM(lm.config)
    with torch.no_grad():
        broken.decoder.blocks[0].ff1.weight.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="NaN"):
        le.DecoderEmbedder(broken, bpe).encode(["the cat"])


# --- 6. LLM2Vec: MNTP and SimCSE ---------------------------------------------------------------------


def test_mntp_inputs_never_mask_the_first_token():
    ids = torch.arange(1, 41).view(4, 10) % 30 + 5
    mask = torch.ones(4, 10, dtype=torch.long)
    mask[1, 6:] = 0
    mask[2, :3] = 0  # left padding: its first real token is column 3
    for seed in range(20):
        inputs, labels = le.mntp_inputs(ids, mask, mask_id=1, vocab_size=50, p=0.5,
                                        generator=torch.Generator().manual_seed(seed))
        chosen = labels != train.IGNORE_INDEX
        assert not chosen[:, 0].any() and not chosen[2, 3] and not chosen[mask == 0].any()
        assert chosen.any(dim=1).all()
        assert torch.equal(labels[chosen], ids[chosen])
        assert torch.equal(inputs[~chosen], ids[~chosen])


def test_mntp_loss_reads_the_previous_position():
    V, T = 7, 5
    labels = torch.full((1, T), train.IGNORE_INDEX)
    labels[0, 2], labels[0, 4] = 5, 2  # tokens 2 and 4 were masked
    right = torch.full((1, T, V), -10.0)
    right[0, 1, 5] = right[0, 3, 2] = 10.0  # the answers sit one position earlier: i - 1
    same = torch.full((1, T, V), -10.0)
    same[0, 2, 5] = same[0, 4, 2] = 10.0  # a masked LM would read them at i itself
    assert le.mntp_loss(right, labels) < 1e-6
    assert le.mntp_loss(same, labels) > 1.9  # = log V: positions 1 and 3 say nothing
    bad = labels.clone()
    bad[0, 0] = 3
    with pytest.raises(ValueError, match="position 0"):
        le.mntp_loss(right, bad)
    with pytest.raises(ValueError, match="nothing was masked"):
        le.mntp_loss(right, torch.full((1, T), train.IGNORE_INDEX))


def test_mntp_and_simcse_train(lm, bpe):
    import copy

    model = copy.deepcopy(lm)
    emb = le.DecoderEmbedder(model, bpe, bidirectional=True)
    batches = le.text_batches(emb, CORPUS, batch_size=4)
    before = [p.detach().clone() for p in model.parameters()]
    h = train.fit(emb, batches, le.mntp_loss_fn(p=0.3), steps=3, lr=1e-3, device="cpu", progress=False)
    assert len(h["loss"]) == 3 and all(np.isfinite(h["loss"]))
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert model.config.causal is True
    with pytest.raises(ValueError, match="no dropout"):
        train.fit(emb, batches, le.simcse_loss_fn(), steps=1, lr=1e-3, device="cpu", progress=False)
    assert emb.decoder.set_dropout(0.1) > 0 and emb.decoder.dropout_rate() == pytest.approx(0.1)
    lat = le.LatentAttentionPooling(32, n_latents=4, n_heads=2)
    emb2 = le.DecoderEmbedder(model, bpe, pooling=lat, bidirectional=True)
    h = train.fit(emb2, le.text_batches(emb2, CORPUS, 8), le.simcse_loss_fn(), steps=3, lr=1e-3, device="cpu",
                  progress=False)
    assert all(np.isfinite(h["loss"])) and lat.out.weight.abs().sum() > 0
    emb.decoder.set_dropout(0.0)


def test_hf_dropout_switch_and_mntp(llama):
    model, tok = llama
    dec = le.as_decoder(model, tok)
    assert dec.set_dropout(0.3) >= 2 and dec.dropout_rate() == pytest.approx(0.3)
    emb = le.DecoderEmbedder(dec, pooling="mean", bidirectional=True)
    ids, mask, pm = emb.tokenize(CORPUS[:4])
    loss = le.simcse_loss_fn()(emb.train(), (ids, mask, pm))
    loss.backward()
    assert torch.isfinite(loss)
    loss = le.mntp_loss_fn()(emb, (ids, mask, pm))
    assert torch.isfinite(loss)
    dec.set_dropout(0.0)
    emb.eval()
    model.zero_grad()


def test_mntp_without_a_mask_token_uses_underscore(bpe):
    transformers = pytest.importorskip("transformers")
    tok = transformers.PreTrainedTokenizerFast(tokenizer_object=bpe.to_hf(), eos_token="<eos>", pad_token="<pad>")
    cfg = transformers.LlamaConfig(vocab_size=bpe.vocab_size, hidden_size=16, intermediate_size=32,
                                   num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1)
    dec = le.HFDecoder(transformers.LlamaForCausalLM(cfg), tok)
    assert dec.mask_id == bpe.token_to_id("_")


def test_pooling_module_is_reused():
    # chapter 07's mean is chapter 10's mean: one definition
    h, mask = states(), torch.ones(3, 5, dtype=torch.long)
    torch.testing.assert_close(le.mean(h, mask), pooling.mean(h, mask))


def test_mntp_eval_is_repeatable_and_improves_with_training(lm, bpe):
    import copy

    model = copy.deepcopy(lm)
    emb = le.DecoderEmbedder(model, bpe, bidirectional=True)
    before = le.mntp_eval(emb, CORPUS, seed=3)
    assert before == le.mntp_eval(emb, CORPUS, seed=3)  # the same gaps for the same seed
    assert 0 <= before["accuracy"] <= 1 and before["n"] > 0
    le.train_mntp(emb, CORPUS, steps=30, batch_size=8, lr=3e-3, p=0.3, device="cpu", progress=False)
    after = le.mntp_eval(emb, CORPUS, seed=3)
    assert after["loss"] < before["loss"] - 0.5
    assert model.config.causal is True and not emb.training


def test_train_simcse_restores_dropout(lm, bpe):
    import copy

    emb = le.DecoderEmbedder(copy.deepcopy(lm), bpe, pooling="last_token")
    h = le.train_simcse(emb, CORPUS, steps=2, batch_size=4, device="cpu", progress=False)
    assert len(h["loss"]) == 2 and emb.decoder.dropout_rate() == 0.0


# --- 5. loading decoders -----------------------------------------------------------------------------


def test_load_decoder_reads_a_local_folder_and_pads_with_eos(llama, tmp_path):
    model, tok = llama
    transformers = pytest.importorskip("transformers")
    model.save_pretrained(tmp_path)
    no_pad = transformers.PreTrainedTokenizerFast(tokenizer_object=tok.backend_tokenizer, eos_token="<eos>",
                                                  bos_token="<bos>")
    no_pad.save_pretrained(tmp_path)
    loaded, loaded_tok = le.load_decoder(tmp_path)
    assert not loaded.training and loaded_tok.pad_token == "<eos>"     # no padding token: EOS pads
    ids = torch.tensor([tok.encode("the cat sat on the mat")])
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids=ids).logits, model(input_ids=ids).logits)
    half, _ = le.load_decoder(str(tmp_path), dtype=torch.bfloat16)
    assert next(half.parameters()).dtype == torch.bfloat16


def test_load_smollm2_loads_the_verified_gguf_file(monkeypatch, tmp_path):
    from minilib import data

    gguf = tmp_path / "smollm2" / "model.gguf"
    calls = []
    monkeypatch.setattr(data, "load", lambda name: calls.append(name) or gguf)
    monkeypatch.setattr(le, "load_decoder", lambda folder, gguf_file=None, device=None: (folder, gguf_file, device))
    assert le.load_smollm2(device="cpu") == (gguf.parent, "model.gguf", "cpu")
    assert calls == ["smollm2"]


def test_decoder_base_class_is_an_interface():
    dec = le.Decoder()
    for call in (lambda: dec.encode("x"), lambda: dec.logits(torch.zeros(1, 1, 2)), lambda: dec.set_dropout(0.1),
                 dec.dropout_rate):
        with pytest.raises(NotImplementedError):
            call()


def test_embedder_repr_lists_its_settings(lm, bpe):
    emb = le.DecoderEmbedder(lm, bpe, pooling="last_token", bidirectional=True, prompt="prompteol")
    text = repr(emb)
    assert "pooling='last_token', bidirectional=True" in text and "add_eos=" in text and "max_len=" in text


# --- bad input: every error names the fix ------------------------------------------------------------


def test_pooling_and_attention_helpers_refuse_bad_shapes():
    mask = torch.ones(2, 4, dtype=torch.long)
    with pytest.raises(ValueError, match=r"attention_mask must be \(batch, seq\), got \(4,\)"):
        le.last_token_index(mask[0])
    with pytest.raises(ValueError, match=r"attention_mask must be \(batch, seq\), got \(4,\)"):
        le.visibility(mask[0])
    with pytest.raises(ValueError, match=r"pool_mask must be shaped like attention_mask \(2, 4\), got \(2, 3\)"):
        le.position_weights(mask, mask[:, :3])


def test_trainable_poolings_refuse_bad_sizes():
    for kw, name in ((dict(d_model=0), "d_model"), (dict(d_model=8, n_latents=0), "n_latents"),
                     (dict(d_model=8, n_heads=True), "n_heads")):
        with pytest.raises(ValueError, match=f"{name} must be a positive int"):
            le.LatentAttentionPooling(**kw)
    for bad in (0, True, 2.0):
        with pytest.raises(ValueError, match=r"n_states must be the number of hidden states \(n_layers \+ 1\)"):
            le.MultiLayerPooling(bad)


def test_decoders_refuse_the_wrong_model_or_tokenizer(lm, bpe, llama):
    with pytest.raises(TypeError, match="takes a minilib.transformer.CausalLM, got Linear"):
        le.MinilibDecoder(torch.nn.Linear(2, 2), bpe)
    with pytest.raises(TypeError, match="tokenizer must be the decoder's ByteBPE"):
        le.MinilibDecoder(lm, object())
    model, tok = llama
    with pytest.raises(TypeError, match=r"AutoTokenizer.from_pretrained"):
        le.HFDecoder(model, object())
    dec = le.as_decoder(model, tok)
    before = dec.dropout_rate()
    with pytest.raises(ValueError, match=r"dropout p must lie in \[0, 1\), got 1.0"):
        dec.set_dropout(1.0)
    assert dec.dropout_rate() == before  # nothing was changed


def test_embedder_errors_name_the_fix(lm, bpe):
    no_eos = ByteBPE([], special_tokens=("<pad>",))
    with pytest.raises(ValueError, match="no EOS token: pass add_eos=False"):
        le.DecoderEmbedder(lm, no_eos)
    assert le.DecoderEmbedder(lm, no_eos, add_eos=False).add_eos is False
    emb = le.DecoderEmbedder(lm, bpe)
    with pytest.raises(ValueError, match="tokenize got no texts"):
        emb.tokenize([])
    ids, mask, pm = emb.tokenize(CORPUS[:2])
    with pytest.raises(ValueError, match="output must be 'embedding' or 'logits', got 'hidden'"):
        emb(ids, mask, pm, output="hidden")
    with pytest.raises(ValueError, match="batch_size must be at least 1, got 0"):
        emb.pooled_many(CORPUS[:2], batch_size=0)
    with pytest.raises(ValueError, match=r"X must be \(n_texts, d\) = \(2, d\), got \(3, 4\)"):
        le.Lookup(CORPUS[:2], np.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"X must be \(n_texts, d\)"):
        le.Lookup(CORPUS[:2], np.zeros(2))


def test_llm2vec_losses_refuse_bad_batches(lm, bpe):
    ids = torch.arange(10).view(2, 5) + 5
    mask = torch.ones(2, 5, dtype=torch.long)
    with pytest.raises(ValueError, match=r"both be \(batch, seq\), got \(2, 5\) and \(2, 4\)"):
        le.mntp_inputs(ids, mask[:, :4], mask_id=1, vocab_size=50)
    one_token = torch.tensor([[1, 0, 0, 0, 0], [0, 0, 1, 0, 0]])
    with pytest.raises(ValueError, match="MNTP needs rows of at least 2 tokens"):
        le.mntp_inputs(ids, one_token, mask_id=1, vocab_size=50)
    with pytest.raises(ValueError, match=r"logits must be \(B, T, V\) and labels \(B, T\), got \(2, 5, 7\) and \(2, 4\)"):
        le.mntp_loss(torch.zeros(2, 5, 7), torch.zeros(2, 4, dtype=torch.long))
    emb = le.DecoderEmbedder(lm, bpe)
    with pytest.raises(ValueError, match="mntp_eval got no texts"):
        le.mntp_eval(emb, [])
    with pytest.raises(ValueError, match="text_batches got no texts"):
        le.text_batches(emb, [], batch_size=2)
    for loss_fn in (le.mntp_loss_fn(), le.simcse_loss_fn()):
        with pytest.raises(ValueError, match=r"expected batches \(ids, attention_mask\[, pool_mask\]\) from text_batches"):
            loss_fn(emb, (ids,))
