"""minilib.transformer: attention against PyTorch's fused kernel, heads, masks, pre/post-norm
training, parity with transformers' BertModel, GPT2Model and LlamaForCausalLM (random tiny configs,
weights copied through our name maps), the real all-MiniLM-L6-v2 against sentence-transformers, and the errors."""
import os
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from minilib import train as minilib_train
from minilib import transformer as tr
from minilib.transformer import (
    CausalLM, MaskedLM, MultiHeadAttention, Transformer, TransformerConfig, attention, causal_mask,
    mean_pool, merge_heads, parameter_count, split_heads,
)

transformers = pytest.importorskip("transformers")


def tiny(**kw) -> TransformerConfig:
    base = dict(vocab_size=50, d_model=32, n_layers=2, n_heads=4, d_ff=48, max_len=16, dropout=0.0)
    return TransformerConfig(**{**base, **kw})


def ids_and_mask(B=3, T=10, V=50, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, V, (B, T), generator=g)
    mask = torch.ones(B, T, dtype=torch.long)
    mask[1, 7:] = 0  # right padding of different lengths
    mask[2, 3:] = 0
    ids[mask == 0] = 0
    return ids, mask


# --- attention ------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(5, 8), (2, 7, 16), (2, 3, 6, 4), (1, 2, 1, 8)])
@pytest.mark.parametrize("kind", ["none", "padding", "causal", "both"])
def test_attention_equals_sdpa(shape, kind):
    g = torch.Generator().manual_seed(len(shape))
    *lead, T, d = shape
    q, k, v = (torch.randn(*shape, generator=g, dtype=torch.float64) for _ in range(3))
    mask = None
    if kind in ("padding", "both"):
        keep = torch.ones(*lead, 1, T, dtype=torch.bool)
        keep[..., max(1, T // 2):] = False  # the first key stays visible to every query
        mask = keep
    if kind in ("causal", "both"):
        c = causal_mask(T)
        mask = c if mask is None else mask & c
    out, w = attention(q, k, v, mask)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(out, ref, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(w.sum(-1), torch.ones(*lead, T, dtype=torch.float64))
    if mask is not None:
        assert (w[~mask.expand_as(w)] == 0).all()


def test_attention_with_different_query_and_key_lengths_and_value_width():
    g = torch.Generator().manual_seed(1)
    q, k, v = torch.randn(2, 3, 8, generator=g), torch.randn(2, 5, 8, generator=g), torch.randn(2, 5, 6, generator=g)
    out, w = attention(q, k, v)
    assert out.shape == (2, 3, 6) and w.shape == (2, 3, 5)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v), atol=1e-6, rtol=1e-5)


def test_a_query_with_no_visible_key_gets_zeros_not_nan():
    q = k = v = torch.randn(1, 3, 4)
    mask = torch.tensor([[True, False, False], [False, False, False], [True, True, True]])
    out, w = attention(q, k, v, mask)
    assert torch.isfinite(out).all()
    assert (w[0, 1] == 0).all() and (out[0, 1] == 0).all()


def test_attention_rejects_bad_masks_and_shapes():
    q = torch.randn(2, 4, 8)
    with pytest.raises(TypeError, match="bool"):
        attention(q, q, q, torch.ones(4, 4))
    with pytest.raises(ValueError, match="broadcast"):
        attention(q, q, q, torch.ones(3, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="last dimension"):
        attention(q, torch.randn(2, 4, 6), q)


def test_split_and_merge_heads():
    x = torch.arange(2 * 5 * 12, dtype=torch.float32).view(2, 5, 12)
    h = split_heads(x, 3)
    assert h.shape == (2, 3, 5, 4)
    torch.testing.assert_close(h[:, 1], x[..., 4:8])  # head 1 owns dimensions 4..7
    torch.testing.assert_close(merge_heads(h), x)
    with pytest.raises(ValueError, match="multiple"):
        split_heads(x, 5)


def test_multi_head_attention_is_heads_side_by_side():
    torch.manual_seed(0)
    mha = MultiHeadAttention(12, 3).eval()
    x = torch.randn(2, 5, 12)
    mask = causal_mask(5)
    out = mha(x, mask)
    # The same computation one head at a time, with plain slices of the projection matrices.
    heads = []
    for h in range(3):
        s = slice(4 * h, 4 * h + 4)
        q = x @ mha.q.weight[s].T + mha.q.bias[s]
        k = x @ mha.k.weight[s].T + mha.k.bias[s]
        v = x @ mha.v.weight[s].T + mha.v.bias[s]
        heads.append(attention(q, k, v, mask)[0])
    ref = mha.out(torch.cat(heads, dim=-1))
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=1e-5)
    assert mha.last_weights.shape == (2, 3, 5, 5) and not mha.last_weights.requires_grad


# --- the model ------------------------------------------------------------------------------

def test_causal_mask_blocks_the_future():
    torch.manual_seed(0)
    model = Transformer(tiny(causal=True, norm_first=True)).eval()
    ids = torch.randint(1, 50, (2, 9), generator=torch.Generator().manual_seed(0))
    t = 4
    changed = ids.clone()
    changed[:, t + 1] = (changed[:, t + 1] + 7) % 49 + 1
    a, b = model(ids), model(changed)
    torch.testing.assert_close(a[:, : t + 1], b[:, : t + 1], atol=0, rtol=0)  # positions <= t cannot see t + 1
    assert (a[:, t + 1] - b[:, t + 1]).abs().max() > 1e-3
    # The encoder (no causal mask) does look ahead.
    enc = Transformer(tiny()).eval()
    assert (enc(ids)[:, :t + 1] - enc(changed)[:, :t + 1]).abs().max() > 1e-4


def test_padding_does_not_change_the_tokens_outputs():
    torch.manual_seed(0)
    model = Transformer(tiny()).eval()
    ids = torch.randint(1, 50, (1, 6))
    padded = torch.cat([ids, torch.zeros(1, 4, dtype=torch.long)], dim=1)
    mask = torch.tensor([[1] * 6 + [0] * 4])
    torch.testing.assert_close(model(padded, attention_mask=mask)[:, :6], model(ids), atol=1e-6, rtol=1e-5)
    pooled = mean_pool(model(padded, attention_mask=mask), mask)
    torch.testing.assert_close(pooled, model(ids).mean(1), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("position", ["learned", "sinusoidal", "rope"])
@pytest.mark.parametrize("norm_first", [False, True])
def test_positions_options_run_and_parameter_count_matches_the_formula(position, norm_first):
    cfg = tiny(position=position, norm_first=norm_first, type_vocab_size=2 if not norm_first else 0)
    model = Transformer(cfg)
    ids, mask = ids_and_mask()
    out, hidden = model(ids, mask, output_hidden_states=True)
    assert out.shape == (3, 10, 32) and len(hidden) == cfg.n_layers + 1 and torch.isfinite(out).all()
    assert sum(p.numel() for p in model.parameters()) == parameter_count(cfg)
    # Without positions a transformer is blind to order (permuting the tokens permutes the outputs);
    # with them, it is not.
    perm = torch.tensor([3, 1, 0, 2])
    x = torch.randint(1, 50, (1, 4))
    model.eval()
    assert (model(x)[:, perm] - model(x[:, perm])).abs().max() > 1e-4


def test_bert_base_parameter_count():
    # BERT-base: 12 layers, 768 wide, 30522 WordPiece tokens: the famous 110M (without the pooler).
    cfg = TransformerConfig(vocab_size=30522, d_model=768, n_layers=12, n_heads=12, d_ff=3072, max_len=512,
                            type_vocab_size=2)
    assert parameter_count(cfg) == 108_891_648


@pytest.mark.parametrize("norm_first", [False, True])
def test_pre_and_post_norm_both_learn_a_toy_task(norm_first):
    # Next token of a counting sequence (start + 0, 1, 2, ... mod V): learnable from one token back.
    torch.manual_seed(0)
    cfg = tiny(vocab_size=20, n_layers=2, causal=True, norm_first=norm_first, max_len=12)
    model = CausalLM(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(60):
        start = torch.randint(1, 20, (16, 1), generator=g)
        ids = (start + torch.arange(12)) % 19 + 1
        logits = model(ids)
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, 20), ids[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[0] > 2.5  # about log(20): no knowledge at the start
    assert np.mean(losses[-5:]) < 0.5 * losses[0]


def test_masked_lm_head_is_tied_to_the_token_embeddings():
    torch.manual_seed(0)
    model = MaskedLM(tiny(type_vocab_size=2))
    ids, mask = ids_and_mask()
    logits = model(ids, mask)
    assert logits.shape == (3, 10, 50)
    logits[0, 0, 5].backward()
    assert model.encoder.tok.weight.grad[5].abs().sum() > 0  # the output row of token 5 is its input row
    n_unique = sum(p.numel() for p in model.parameters())
    assert n_unique == parameter_count(model.config) + 32 * 32 + 32 + 2 * 32 + 50  # + dense, LayerNorm, bias


def test_masked_lm_select_scores_only_the_chosen_positions():
    torch.manual_seed(0)
    model = MaskedLM(tiny()).eval()
    ids, mask = ids_and_mask()
    chosen = torch.zeros_like(ids, dtype=torch.bool)
    chosen[0, 2] = chosen[2, 1] = chosen[1, 5] = True
    torch.testing.assert_close(model(ids, mask, select=chosen), model(ids, mask)[chosen])
    assert model(ids, mask, select=chosen).shape == (3, 50)
    with pytest.raises(ValueError, match="select"):
        model(ids, mask, select=chosen.long())


def test_sinusoidal_positions_scale_the_tokens_by_sqrt_d():
    model = Transformer(tiny(position="sinusoidal")).eval()
    ids = torch.randint(1, 50, (2, 7))
    expected = model.emb_norm(model.tok(ids) * 32 ** 0.5 + model.pos.table[:7])
    torch.testing.assert_close(model.embed(ids), expected)


def test_dropout_only_in_training():
    torch.manual_seed(0)
    model = Transformer(tiny(dropout=0.3))
    ids, mask = ids_and_mask()
    assert (model(ids, mask) - model(ids, mask)).abs().max() > 0
    model.eval()
    torch.testing.assert_close(model(ids, mask), model(ids, mask), atol=0, rtol=0)


def test_generate_greedy_topk_and_sampling():
    torch.manual_seed(0)
    lm = CausalLM(tiny(causal=True, norm_first=True, max_len=8))
    prompt = torch.tensor([[3, 4, 5], [6, 7, 8]])
    greedy = lm.generate(prompt, 10, temperature=0)  # longer than max_len: the context is cropped
    assert greedy.shape == (2, 13) and torch.equal(greedy[:, :3], prompt)
    torch.testing.assert_close(lm.generate(prompt, 10, top_k=1), greedy)
    a = lm.generate(prompt, 6, top_k=5, generator=torch.Generator().manual_seed(1))
    b = lm.generate(prompt, 6, top_k=5, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    assert lm.generate(torch.tensor([1, 2]), 3, temperature=0).shape == (5,)
    assert lm.training  # generate restores the mode it found


def test_clear_errors_on_bad_input():
    model = Transformer(tiny(max_len=8))
    with pytest.raises(ValueError, match="max_len=8"):
        model(torch.ones(1, 9, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[0, 50\)"):
        model(torch.tensor([[1, 50]]))
    with pytest.raises(ValueError, match="batch, seq"):
        model(torch.ones(5, dtype=torch.long))
    with pytest.raises(ValueError, match="attention_mask"):
        model(torch.ones(2, 4, dtype=torch.long), attention_mask=torch.ones(2, 5))
    with pytest.raises(ValueError, match="type_vocab_size=0"):
        model(torch.ones(1, 4, dtype=torch.long), token_type_ids=torch.zeros(1, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="multiple of n_heads"):
        tiny(d_model=30)
    with pytest.raises(ValueError, match="activation"):
        tiny(activation="swish")
    with pytest.raises(ValueError, match="causal=True"):
        CausalLM(tiny())
    with pytest.raises(ValueError, match="mean_pool"):
        mean_pool(torch.zeros(2, 3, 4), torch.ones(2, 4))


# --- loading weights ------------------------------------------------------------------------

def test_load_weights_names_the_first_mismatching_tensor():
    small, wide = Transformer(tiny()), Transformer(tiny(d_ff=64))
    with pytest.raises(ValueError, match=r"'blocks\.0\.ff1\.weight'.*\(64, 32\).*\(48, 32\)"):
        tr.load_weights(small, wide.state_dict())
    sd = small.state_dict()
    sd.pop("blocks.1.norm2.bias")
    sd["extra.weight"] = torch.zeros(1)
    with pytest.raises(KeyError, match=r"missing \['blocks\.1\.norm2\.bias'\], unexpected \['extra\.weight'\]"):
        tr.load_weights(small, sd)


def test_convert_state_dict_lists_unmapped_and_missing_tensors():
    hf = transformers.BertModel(transformers.BertConfig(vocab_size=30, hidden_size=8, num_hidden_layers=1,
                                                        num_attention_heads=2, intermediate_size=16,
                                                        max_position_embeddings=8))
    theirs = {f"bert.{k}": v for k, v in hf.state_dict().items()}  # a checkpoint with a head's prefix
    with pytest.raises(KeyError, match="prefix"):
        tr.convert_state_dict(theirs, tr.bert_name_map(1), tr.BERT_IGNORE)
    with pytest.raises(KeyError, match="encoder.layer.1"):
        tr.convert_state_dict(hf.state_dict(), tr.bert_name_map(2), tr.BERT_IGNORE)


def test_save_and_load_round_trip(tmp_path):
    torch.manual_seed(0)
    for model in (MaskedLM(tiny(type_vocab_size=2)), CausalLM(tiny(causal=True, norm_first=True, position="rope"))):
        model.eval()
        folder = tr.save(model, tmp_path / type(model).__name__)
        back = tr.load(folder)
        assert type(back) is type(model)
        ids, _ = ids_and_mask()
        torch.testing.assert_close(back(ids), model(ids), atol=0, rtol=0)
    with pytest.raises(FileNotFoundError, match="config.json"):
        tr.load(tmp_path / "nothing")


def test_bert_parity_every_hidden_state():
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                                  intermediate_size=37, max_position_embeddings=24, type_vocab_size=2)
    hf = transformers.BertModel(cfg).eval()
    ours = tr.from_transformers(hf)
    assert not ours.config.norm_first and ours.config.activation == "gelu"
    ids, mask = ids_and_mask(B=3, T=12, V=99)
    types = torch.zeros_like(ids)
    types[:, 6:] = 1  # a second segment, as in BERT's sentence pairs
    with torch.no_grad():
        theirs = hf(input_ids=ids, attention_mask=mask, token_type_ids=types, output_hidden_states=True)
        last, hidden = ours(ids, mask, types, output_hidden_states=True)
    assert len(hidden) == len(theirs.hidden_states) == 4
    for a, b in zip(hidden, theirs.hidden_states):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(last, theirs.last_hidden_state, atol=1e-5, rtol=1e-5)


def test_gpt2_parity_every_hidden_state_and_the_lm_head():
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(vocab_size=99, n_embd=32, n_layer=3, n_head=4, n_positions=24)
    hf = transformers.GPT2LMHeadModel(cfg).eval()
    ours = tr.from_transformers(hf.transformer)
    assert ours.config.norm_first and ours.config.causal and ours.config.activation == "gelu_tanh"
    ids, mask = ids_and_mask(B=3, T=12, V=99)
    with torch.no_grad():
        theirs = hf(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        last, hidden = ours(ids, mask, output_hidden_states=True)
    assert len(hidden) == len(theirs.hidden_states) == 4
    for a, b in zip(hidden, theirs.hidden_states):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    lm = CausalLM(ours.config).eval()
    lm.decoder.load_state_dict(ours.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(lm(ids, mask), theirs.logits, atol=1e-5, rtol=1e-5)
        # the same in one call, from the model with its head (its base_model is read)
        torch.testing.assert_close(tr.from_transformers(hf, head=True)(ids, mask), theirs.logits, atol=1e-5, rtol=1e-5)


def test_gpt2_name_map_splits_and_transposes_c_attn():
    m = {r.ours: r for r in tr.gpt2_name_map(1)}
    assert m["blocks.0.attn.k.weight"].theirs == "h.0.attn.c_attn.weight"
    assert m["blocks.0.attn.k.weight"].part == 1 and m["blocks.0.attn.k.weight"].transpose
    assert m["blocks.0.attn.k.bias"].how() == "take k (third 2 of 3)"
    assert m["blocks.0.ff2.weight"].how() == "transpose (Conv1D)"
    assert {r.ours for r in tr.bert_name_map(2)} == set(Transformer(tiny(type_vocab_size=2)).state_dict())


# --- chapter 10: the Llama block -------------------------------------------------------------

def llama_tiny(**kw) -> TransformerConfig:
    return tiny(**{**dict(d_model=48, n_heads=6, n_kv_heads=2, norm="rms", ffn="swiglu", activation="silu",
                          bias=False, position="rope", rope_base=500.0, norm_first=True, causal=True,
                          layer_norm_eps=1e-5), **kw})


@pytest.mark.parametrize("kw", [dict(), dict(bias=True), dict(n_kv_heads=None), dict(n_kv_heads=1),
                                dict(ffn="mlp", norm="layer"), dict(norm_first=False, causal=False)])
def test_llama_switches_run_and_parameter_count_matches_the_formula(kw):
    cfg = llama_tiny(**kw)
    model = Transformer(cfg)
    ids, mask = ids_and_mask()
    assert torch.isfinite(model(ids, mask)).all()
    assert sum(p.numel() for p in model.parameters()) == parameter_count(cfg)


def test_rms_norm_is_the_formula_and_torchs():
    x = torch.randn(3, 5, 8, dtype=torch.float64)
    norm = tr.RMSNorm(8, eps=1e-5).double()
    with torch.no_grad():
        norm.weight.normal_()
    want = norm.weight * x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5)
    torch.testing.assert_close(norm(x), want)
    if hasattr(F, "rms_norm"):   # torch >= 2.4 has one
        torch.testing.assert_close(norm(x), F.rms_norm(x, (8,), norm.weight, eps=1e-5))
    assert tr.RMSNorm(8)(x.float()).dtype == torch.float32 and tr.RMSNorm(8).half()(x.half()).dtype == torch.float16


def test_grouped_query_attention_is_full_attention_with_shared_key_value_heads():
    torch.manual_seed(0)
    gqa = MultiHeadAttention(24, 6, n_kv_heads=2, bias=False)
    full = MultiHeadAttention(24, 6, bias=False)
    dh = 4
    with torch.no_grad():
        full.q.weight.copy_(gqa.q.weight)
        full.out.weight.copy_(gqa.out.weight)
        for name in ("k", "v"):   # kv head j serves query heads 3j, 3j+1, 3j+2: repeat its rows
            w = getattr(gqa, name).weight.view(2, dh, 24)
            getattr(full, name).weight.copy_(w.repeat_interleave(3, dim=0).reshape(24, 24))
    x = torch.randn(2, 7, 24)
    torch.testing.assert_close(gqa(x, causal_mask(7)), full(x, causal_mask(7)))
    assert gqa.k.weight.shape == (8, 24) and gqa.k.bias is None


def test_halves_to_pairs_keeps_every_rope_dot_product():
    """Reordering query and key rows from "rotate half" to interleaved pairs, then RoPE the way
    chapter 05 writes it, gives the dot products of transformers' rotate-half RoPE."""
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb
    dh, T, base = 8, 6, 100.0
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(1, 1, T, dh, generator=g), torch.randn(1, 1, T, dh, generator=g)
    inv = base ** (-torch.arange(0, dh, 2, dtype=torch.float64) / dh)
    ang = torch.arange(T, dtype=torch.float64)[:, None] * inv[None]
    emb = torch.cat([ang, ang], -1)
    q_hf, k_hf = apply_rotary_pos_emb(q, k, emb.cos().float()[None], emb.sin().float()[None])
    order = tr._halves_to_pairs(torch.arange(dh)[:, None], 1).flatten()
    assert order.tolist() == [0, 4, 1, 5, 2, 6, 3, 7]
    from minilib.positions import apply_rope
    q_ours, k_ours = apply_rope(q[..., order], base=base), apply_rope(k[..., order], base=base)
    torch.testing.assert_close(q_ours @ k_ours.transpose(-1, -2), q_hf @ k_hf.transpose(-1, -2), atol=1e-5, rtol=1e-5)


def _random_llama(**kw):
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(**{**dict(
        vocab_size=99, hidden_size=48, intermediate_size=72, num_hidden_layers=3, num_attention_heads=6,
        num_key_value_heads=2, max_position_embeddings=32, rms_norm_eps=1e-5, rope_theta=500.0,
        tie_word_embeddings=True, pad_token_id=0), **kw})
    hf = transformers.LlamaForCausalLM(cfg).eval()
    with torch.no_grad():   # RMSNorm weights start at 1: randomise them so the test sees them
        for name, p in hf.named_parameters():
            if "norm" in name:
                p.add_(torch.randn_like(p) * 0.3)
    return hf


def test_llama_parity_every_hidden_state_and_the_lm_head():
    hf = _random_llama()
    ours = tr.from_transformers(hf)
    c = ours.config
    assert (c.norm, c.ffn, c.n_kv_heads, c.bias, c.position, c.rope_base) == ("rms", "swiglu", 2, False, "rope", 500.0)
    ids, mask = ids_and_mask(B=3, T=12, V=99)
    with torch.no_grad():
        theirs = hf(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        last, hidden = ours(ids, mask, output_hidden_states=True)
        logits = tr.from_transformers(hf, head=True)(ids, mask)
    assert len(hidden) == len(theirs.hidden_states) == 4
    real = mask.bool()   # padded positions differ (transformers lets them attend to themselves)
    for a, b in zip(hidden[:-1], theirs.hidden_states[:-1]):
        torch.testing.assert_close(a[real], b[real], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(logits[real], theirs.logits[real], atol=1e-5, rtol=1e-5)


def test_loading_weights_leaves_the_random_state_alone():
    hf = _random_llama()
    torch.manual_seed(7)
    want = torch.rand(3)
    torch.manual_seed(7)
    tr.from_transformers(hf, head=True)
    tr.from_transformers(hf)
    assert torch.equal(torch.rand(3), want)


def test_llama_name_map_interleaves_queries_and_keys_only():
    m = {r.ours: r for r in tr.llama_name_map(llama_tiny())}
    assert m["blocks.0.attn.q.weight"].rope_heads == 6 and m["blocks.0.attn.k.weight"].rope_heads == 2
    assert m["blocks.0.attn.v.weight"].how() == "copy" and m["blocks.1.gate.weight"].theirs == "layers.1.mlp.gate_proj.weight"
    assert m["blocks.0.attn.k.weight"].how() == "interleave each of 2 heads' halves (RoPE pairs)"
    assert set(m) == set(Transformer(llama_tiny()).state_dict())


def test_llama_options_we_do_not_have_are_refused():
    with pytest.raises(ValueError, match="RoPE scaling 'linear'"):
        tr.from_transformers(_random_llama(rope_scaling={"rope_type": "linear", "factor": 2.0}))
    with pytest.raises(ValueError, match="not tied"):
        tr.from_transformers(_random_llama(tie_word_embeddings=False), head=True)
    with pytest.raises(ValueError, match="language-model head"):
        tr.from_transformers(_random_llama().model, head=True)
    bert = transformers.BertModel(transformers.BertConfig(vocab_size=20, hidden_size=8, num_hidden_layers=1,
                                                          num_attention_heads=2, intermediate_size=8))
    with pytest.raises(ValueError, match="encoder"):
        tr.from_transformers(bert, head=True)
    with pytest.raises(ValueError, match="n_kv_heads=4 must be a positive int dividing n_heads=6"):
        llama_tiny(n_kv_heads=4)
    with pytest.raises(ValueError, match="unknown norm"):
        tiny(norm="batch")
    with pytest.raises(ValueError, match="unknown ffn"):
        tiny(ffn="geglu")


# --- the real all-MiniLM-L6-v2 ----------------------------------------------------------------

SENTENCES = [
    "The cat sat on the mat.",
    "A man is playing a guitar on stage.",
    "She deposited the cheque at the bank on Monday.",
    "We had a picnic on the river bank.",
    "Embeddings map text to vectors.",
    "How do I reset my password?",
    "The stock market fell sharply after the announcement.",
    "Photosynthesis converts light energy into chemical energy.",
    "Il pleut des cordes à Paris aujourd'hui.",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "naïve café façade résumé",
    "GPU prices: $1,499.99 in 2021 (not 2020)!",
    "e-mail me at someone@example.com",
    "x",
    "The the the the the",
    "unbelievably unconstitutional antidisestablishmentarianism",
    "Transformers read all tokens at once; recurrent networks read one at a time.",
    "🙂 emojis and symbols ☃ ∑ are rare tokens",
    "A very long sentence " + "that keeps going and going " * 60 + "until it is truncated.",  # > 256 tokens
    "   leading and trailing spaces   ",
]


@pytest.fixture(scope="module")
def minilm_folder():
    from minilib import data

    return data.load("minilm")


def test_minilm_hidden_states_match_transformers(minilm_folder):
    from transformers import AutoModel, AutoTokenizer

    hf = AutoModel.from_pretrained(str(minilm_folder)).eval()
    tok = AutoTokenizer.from_pretrained(str(minilm_folder))
    ours = tr.load_minilm(minilm_folder)
    batch = tok(SENTENCES[:8], padding=True, return_tensors="pt")
    with torch.no_grad():
        theirs = hf(**batch, output_hidden_states=True)
        _, hidden = ours(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"], output_hidden_states=True)
    assert len(hidden) == 7
    for a, b in zip(hidden, theirs.hidden_states):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_minilm_sentence_embeddings_match_sentence_transformers(minilm_folder):
    from sentence_transformers import SentenceTransformer

    ours = tr.load_minilm_encoder(minilm_folder)
    st = SentenceTransformer(str(minilm_folder), device="cpu")
    a = ours.encode(SENTENCES, batch_size=8)
    b = st.encode(SENTENCES, batch_size=8)
    assert a.shape == b.shape == (len(SENTENCES), 384) and a.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    assert cos.min() >= 0.9999, cos
    assert ours.encode([]).shape == (0, 384)
    with pytest.raises(TypeError, match="list"):
        ours.encode("one string")


def test_load_minilm_with_a_wrong_config_names_the_tensor(minilm_folder, tmp_path):
    import json
    import shutil

    for name in ("config.json", "model.safetensors"):
        shutil.copy(minilm_folder / name, tmp_path / name)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["intermediate_size"] = 1024  # the file holds 1536-wide feed-forward layers
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"'blocks\.0\.ff1\.weight'"):
        tr.load_minilm(tmp_path)


@pytest.fixture
def tiny_book(monkeypatch, tmp_path):
    """A tiny recipe and corpus so the book models train in a second, in a private cache."""
    monkeypatch.setenv("MINILIB_CACHE", str(tmp_path))
    tiny = dict(vocab_size=300, block=16, d_model=16, n_layers=1, n_heads=2, batch_size=4, steps_mlm=30,
                steps_clm=30, lr_mlm=3e-3, lr_clm=3e-3, dropout=0.0, held_out=0.1)
    monkeypatch.setitem(tr.BOOK_RECIPE, "quick", tiny)
    docs = [f"The {a} sat on the {b} near the river bank number {i}." for i, (a, b) in
            enumerate([("cat", "mat"), ("dog", "log"), ("bird", "wire"), ("fox", "box")] * 10)]
    monkeypatch.setattr(tr, "book_documents", lambda profile: (docs, docs[:2]))
    return tmp_path


@pytest.mark.parametrize("kind, cls", [("encoder", MaskedLM), ("decoder", CausalLM)])
def test_book_models_train_once_then_load_the_cached_weights(tiny_book, kind, cls):
    model, tok = tr.book_models(kind, profile="quick", device="cpu", progress=False)
    assert isinstance(model, cls) and not model.training
    assert model.config.causal == (kind == "decoder") and model.config.vocab_size == tok.vocab_size
    cached = list((tiny_book / "derived").glob(f"ch06-{kind}-quick-*.safetensors"))
    assert len(cached) == 1
    again, _ = tr.book_models(kind, profile="quick", device="cpu", progress=False)  # from the cache
    for (n, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
        torch.testing.assert_close(a, b, msg=n)
    ids, mask = tok.encode_batch(["The cat sat.", "A dog"])
    assert model(ids, mask).shape == (2, ids.shape[1], tok.vocab_size)


def test_book_encoder_is_a_sentence_encoder(tiny_book):
    model, tok = tr.book_models("encoder", profile="quick", device="cpu", progress=False)
    E = tr.SentenceEncoder(model.encoder, tok).encode(["The cat sat on the mat.", "The fox"])
    assert E.shape == (2, 16) and np.allclose(np.linalg.norm(E, axis=1), 1, atol=1e-5)


def test_book_token_streams_close_each_document_and_are_cached(tiny_book):
    tok = tr.book_tokenizer("quick")
    held = tr.book_token_ids("held", "quick")
    docs = ["The cat sat on the mat near the river bank number 0.", "The dog sat on the log near the river bank number 1."]
    assert held.dtype == np.int32 and held.tolist() == [i for d in docs for i in tok.encode(d) + [tok.eos_id]]
    train_ids = tr.book_token_ids("train", "quick")
    assert (train_ids == tok.eos_id).sum() == 40
    names = sorted(p.name for p in (tiny_book / "derived").glob("ch06-*"))
    assert names == ["ch06-bpe-quick-300-v1.json", "ch06-bpe-quick-300-v1.json.sha256",
                     "ch06-held-quick-300-v1.npy", "ch06-held-quick-300-v1.npy.sha256",
                     "ch06-train-quick-300-v1.npy", "ch06-train-quick-300-v1.npy.sha256"]
    with pytest.raises(ValueError, match="'train' or 'held'"):
        tr.book_token_ids("test", "quick")
    with pytest.raises(ValueError, match="unknown profile"):
        tr.book_tokenizer("huge")


def test_book_models_reject_unknown_kind_and_profile():
    with pytest.raises(ValueError, match="'encoder' or 'decoder'"):
        tr.book_models("classifier")
    with pytest.raises(ValueError, match="unknown profile"):
        tr.book_models("encoder", profile="huge")
    with pytest.raises(ValueError, match="unknown profile"):
        tr.book_documents("huge")


def test_book_documents_are_chapter_06s_split():
    train_docs, held = tr.book_documents("quick")
    assert len(held) == round(0.1 * (len(train_docs) + len(held))) and not set(held) & set(train_docs)
    assert all(d == " ".join(d.split()) and d for d in train_docs + held)  # whitespace collapsed, none empty
    assert tr.book_documents("quick") == (train_docs, held)  # the same split every time


def test_book_cache_names_are_the_ones_the_notebook_and_book_models_write(tiny_book):
    assert tr.book_cache_name("bpe", "full") == "ch06-bpe-full-8000-v1.json"
    assert tr.book_cache_name("held", "quick") == "ch06-held-quick-300-v1.npy"      # tiny_book's vocabulary
    tr.book_tokenizer("quick")
    tr.book_models("decoder", profile="quick", device="cpu", progress=False)
    written = {p.name for p in (tiny_book / "derived").iterdir() if not p.name.endswith(".sha256")}
    assert {tr.book_cache_name(w, "quick") for w in ("bpe", "train", "decoder")} <= written
    # chapter 06's notebook spells the tokenizer's and the streams' names out for the reader
    nb = (Path(__file__).resolve().parent.parent / "notebooks" / "06_transformers_from_scratch.ipynb").read_text()
    assert 'f\\"ch06-bpe-{P.name}-{cfg[\'vocab_size\']}-v1.json\\"' in nb
    assert 'f\\"ch06-{name}-{P.name}-{cfg[\'vocab_size\']}-v1.npy\\"' in nb
    with pytest.raises(ValueError, match="what must be one of"):
        tr.book_cache_name("weights", "quick")
    with pytest.raises(ValueError, match="unknown profile"):
        tr.book_cache_name("bpe", "huge")


def test_store_book_model_spares_book_models_a_second_training(tiny_book, monkeypatch, tmp_path):
    trained, _ = tr.book_models("decoder", profile="quick", device="cpu", progress=False)
    monkeypatch.setenv("MINILIB_CACHE", str(tmp_path / "fresh"))      # a cache without the weights
    tr.book_tokenizer("quick")
    path = tr.store_book_model(trained, "decoder", "quick")
    assert path.name == tr.book_cache_name("decoder", "quick")

    def no_training(*a, **k):
        raise AssertionError("book_models trained again")

    monkeypatch.setattr(minilib_train, "fit", no_training)
    loaded, _ = tr.book_models("decoder", profile="quick", device="cpu", progress=False)
    for (n, a), (_, b) in zip(trained.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), n
    # other weights for the same model: the cached ones stay, with a warning
    with pytest.warns(UserWarning, match="already held other weights"):
        assert tr.store_book_model(CausalLM(trained.config), "decoder", "quick") == path
    again, _ = tr.book_models("decoder", profile="quick", device="cpu", progress=False)
    for (n, a), (_, b) in zip(trained.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), n


def test_store_book_model_refuses_a_model_off_the_recipe(tiny_book):
    model, _ = tr.book_models("encoder", profile="quick", device="cpu", progress=False)
    with pytest.raises(ValueError, match="n_layers is 2, the recipe says 1"):
        tr.store_book_model(MaskedLM(replace(model.config, n_layers=2)), "encoder", "quick")
    with pytest.raises(ValueError, match="the book's decoder is a CausalLM, got MaskedLM"):
        tr.store_book_model(model, "decoder", "quick")
    with pytest.raises(ValueError, match="kind must be"):
        tr.store_book_model(model, "bert", "quick")


# --- every bad input gets an error that names the fix ------------------------------------------

def test_config_errors_name_the_fix():
    with pytest.raises(ValueError, match=r"TransformerConfig\.d_model must be a positive int, got 0"):
        tiny(d_model=0)
    with pytest.raises(ValueError, match=r"TransformerConfig\.n_layers must be a positive int, got True"):
        tiny(n_layers=True)
    with pytest.raises(ValueError, match=r"TransformerConfig\.max_len must be a positive int, got 16\.0"):
        tiny(max_len=16.0)
    with pytest.raises(ValueError, match=r"unknown position 'alibi': use one of \('learned', 'sinusoidal', 'rope'\)"):
        tiny(position="alibi")
    with pytest.raises(ValueError, match="RoPE rotates pairs of dimensions: the head size d_model / n_heads = 3 must be even"):
        tiny(d_model=12, n_heads=4, position="rope")
    with pytest.raises(ValueError, match=r"dropout must lie in \[0, 1\), got 1\.0"):
        tiny(dropout=1.0)
    with pytest.raises(ValueError, match=r"pad_id=50 is not a token id \(vocab_size=50\)"):
        tiny(pad_id=50)
    with pytest.raises(ValueError, match=r"type_vocab_size must be >= 0 \(0 = no segment embeddings\)"):
        tiny(type_vocab_size=-1)
    with pytest.raises(ValueError, match="rope_base must be positive, got 0.0"):
        tiny(position="rope", rope_base=0.0)


def test_attention_and_multi_head_attention_reject_bad_shapes():
    q = torch.randn(2, 4, 8)
    with pytest.raises(ValueError, match=r"q, k, v must be \(\.\.\., T, d\); got shapes \(8,\), \(2, 4, 8\)"):
        attention(torch.randn(8), q, q)
    with pytest.raises(ValueError, match="k and v must have one row per key, got 4 and 5 rows"):
        attention(q, q, torch.randn(2, 5, 8))
    with pytest.raises(ValueError, match="d_model=30 is not a multiple of n_heads=4"):
        MultiHeadAttention(30, 4)
    with pytest.raises(ValueError, match="n_kv_heads=4 must divide n_heads=6"):
        MultiHeadAttention(24, 6, n_kv_heads=4)
    for bad in (0, -2, 2.0, True):
        with pytest.raises(ValueError, match=rf"n_kv_heads must be a positive int \(or None.*got {bad!r}"):
            MultiHeadAttention(24, 6, n_kv_heads=bad)
    with pytest.raises(ValueError, match=r"expects x of shape \(batch, seq, d_model\), got \(4, 24\)"):
        MultiHeadAttention(24, 6)(torch.randn(4, 24))


def test_model_input_and_generate_errors_name_the_fix():
    model = Transformer(tiny())
    with pytest.raises(TypeError, match=r"ids must be integer token ids \(torch\.long or torch\.int\), got "
                                        r"torch\.float32: use ids\.long\(\)"):
        model(torch.ones(1, 4))
    with pytest.raises(TypeError, match=r"got torch\.int16: use ids\.long\(\)"):
        model(torch.ones(1, 4, dtype=torch.int16))
    with pytest.raises(ValueError, match=r"seq length 0\): give at least one token"):
        model(torch.zeros(2, 0, dtype=torch.long))
    with pytest.raises(ValueError, match="masked LM reads both directions: build it with causal=False"):
        MaskedLM(tiny(causal=True))
    lm = CausalLM(tiny(causal=True, norm_first=True))
    prompt = torch.tensor([[3, 4, 5]])
    with pytest.raises(ValueError, match="max_new_tokens and temperature must be >= 0"):
        lm.generate(prompt, -1)
    with pytest.raises(ValueError, match="max_new_tokens and temperature must be >= 0"):
        lm.generate(prompt, 2, temperature=-0.5)
    with pytest.raises(ValueError, match="top_k must be a positive int or None, got 0"):
        lm.generate(prompt, 2, top_k=0)


def test_sentence_encoder_errors_name_the_fix(word_tokenizer):
    torch.manual_seed(0)
    with pytest.raises(TypeError, match=r"got MaskedLM \(for a MaskedLM pass model\.encoder\)"):
        tr.SentenceEncoder(MaskedLM(tiny()), word_tokenizer)
    with pytest.raises(TypeError, match=r"tokenizer needs an encode_batch\(texts, max_len=\.\.\., truncate=True\)"):
        tr.SentenceEncoder(Transformer(tiny()), object())
    enc = tr.SentenceEncoder(Transformer(tiny()), word_tokenizer)
    assert enc.encode(["the cat sat", "a dog"]).shape == (2, 32)  # the same encoder works on good input
    with pytest.raises(TypeError, match="every text must be a str"):
        enc.encode(["the cat", 3])
    with pytest.raises(ValueError, match="batch_size must be at least 1, got 0"):
        enc.encode(["the cat"], batch_size=0)


def test_sentence_encoder_restores_training_mode_after_an_error(broken_tokenizer):
    enc = tr.SentenceEncoder(Transformer(tiny()), broken_tokenizer)
    enc.model.train()
    with pytest.raises(RuntimeError, match="tokenizer broke"):
        enc.encode(["the cat"])
    assert enc.model.training                     # back in training mode, as it was


def test_hf_config_options_we_do_not_have_are_refused():
    bert = dict(vocab_size=30, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16,
                max_position_embeddings=8)
    with pytest.raises(ValueError, match=r"activation 'swish' is not supported: minilib knows \['gelu', 'gelu_new'"):
        tr.config_from_bert(transformers.BertConfig(**bert, hidden_act="swish").to_dict())
    with pytest.raises(ValueError, match="position_embedding_type 'relative_key': only 'absolute' maps to ours"):
        tr.config_from_bert(transformers.BertConfig(**bert, position_embedding_type="relative_key").to_dict())
    gpt2 = dict(vocab_size=30, n_embd=8, n_layer=1, n_head=2, n_positions=8)
    for flag in ("scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn"):
        with pytest.raises(ValueError, match=f"GPT-2 option {flag}=True is not implemented"):
            tr.config_from_gpt2(transformers.GPT2Config(**gpt2, **{flag: True}).to_dict())
    with pytest.raises(ValueError, match=r"scale_attn_weights=False is not implemented \(we always divide by sqrt"):
        tr.config_from_gpt2(transformers.GPT2Config(**gpt2, scale_attn_weights=False).to_dict())
    llama = dict(vocab_size=30, hidden_size=48, intermediate_size=16, num_hidden_layers=1, num_attention_heads=6)
    with pytest.raises(ValueError, match="head_dim=16 differs from hidden_size / heads = 8: not implemented"):
        tr.config_from_llama(transformers.LlamaConfig(**llama, head_dim=16).to_dict())
    with pytest.raises(ValueError, match="attention_bias and mlp_bias differ: minilib has one bias switch"):
        tr.config_from_llama(transformers.LlamaConfig(**llama, attention_bias=True, mlp_bias=False).to_dict())
    distil = transformers.DistilBertModel(transformers.DistilBertConfig(vocab_size=20, dim=8, n_layers=1, n_heads=2,
                                                                        hidden_dim=8, max_position_embeddings=8))
    with pytest.raises(ValueError, match="knows BERT, GPT-2 and Llama-family models, got model_type 'distilbert'"):
        tr.from_transformers(distil)
    # a Llama name map built from the wrong config: 48-row query projections cannot be 16 heads of even size
    wrong = tr.llama_name_map(llama_tiny(d_model=64, n_heads=16, n_layers=3))
    with pytest.raises(ValueError, match="a tensor of 48 rows does not split into 16 heads of even size"):
        tr.convert_state_dict(_random_llama().model.state_dict(), wrong, tr.LLAMA_IGNORE)


def test_save_load_and_store_errors_name_the_fix(tmp_path):
    with pytest.raises(TypeError, match=r"save knows \['CausalLM', 'MaskedLM', 'Transformer'\], got Linear"):
        tr.save(torch.nn.Linear(2, 2), tmp_path / "linear")
    assert not (tmp_path / "linear").exists()  # nothing written for a model save cannot load back
    with pytest.raises(FileNotFoundError, match=r"holds no config\.json: pass the all-MiniLM-L6-v2 folder"):
        tr.load_minilm(tmp_path)
    with pytest.raises(ValueError, match=r"unknown profile 'huge': use one of \['full', 'quick'\]"):
        tr.store_book_model(MaskedLM(tiny()), "encoder", "huge")
