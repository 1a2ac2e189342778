"""minilib.train: BERT masking, token blocks, seeded batches, the two LM losses, schedules,
the fit loop (loss falls, accelerate == plain loop on CPU, clear errors) and perplexity."""
import math

import pytest
import torch
from torch import nn

from minilib.train import (
    IGNORE_INDEX, Batches, causal_lm_loss, fit, lm_blocks, mask_tokens, masked_lm_loss, param_groups, perplexity,
    warmup_cosine, warmup_linear,
)

V, PAD, CLS, SEP, MASK = 50, 0, 1, 2, 3
SPECIAL = (PAD, CLS, SEP, MASK)


def _padded_batch(B=2000, T=64, seed=0):
    """[CLS] tokens... [SEP] then padding, rows of random lengths."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, V, (B, T), generator=g)
    lengths = torch.randint(3, T + 1, (B,), generator=g)
    mask = (torch.arange(T)[None, :] < lengths[:, None]).long()
    ids[:, 0] = CLS
    ids[torch.arange(B), lengths - 1] = SEP
    ids[mask == 0] = PAD
    return ids, mask


# ---- mask_tokens ----------------------------------------------------------------------------

def test_mask_tokens_rates_and_labels():
    ids, attn = _padded_batch()
    inputs, labels = mask_tokens(ids, attn, mask_id=MASK, vocab_size=V, special_ids=SPECIAL,
                                 generator=torch.Generator().manual_seed(1))
    chosen = labels != IGNORE_INDEX
    maskable = attn.bool() & (ids >= 4)
    # Labels: the original token where chosen, -100 elsewhere; never a special or a pad.
    assert torch.equal(labels[chosen], ids[chosen])
    assert not (chosen & ~maskable).any()
    # Unchosen positions are left exactly as they were.
    assert torch.equal(inputs[~chosen], ids[~chosen])
    # 15 % of each row's maskable tokens (rounded, at least one).
    per_row = torch.clamp(torch.round(maskable.sum(1) * 0.15), min=1)
    assert torch.equal(chosen.sum(1), per_row.long())
    # Of the chosen: 80 % [MASK], 10 % another ordinary token, 10 % unchanged (binomial tolerance).
    n = int(chosen.sum())
    assert n > 3000
    frac_mask = (inputs[chosen] == MASK).float().mean().item()
    same = (inputs[chosen] == ids[chosen]).float().mean().item()
    assert abs(frac_mask - 0.8) < 4 * math.sqrt(0.8 * 0.2 / n)
    # "unchanged" also catches a random replacement that drew the same token (1/46 of 10 %).
    assert abs(same - (0.1 + 0.1 / (V - 4))) < 4 * math.sqrt(0.1 * 0.9 / n)
    random_ids = inputs[chosen & (inputs != MASK)]
    assert (random_ids >= 4).all(), "a random replacement must never be a special token"


def test_mask_tokens_is_seeded_and_keeps_specials():
    ids, attn = _padded_batch(B=20, T=16)
    a = mask_tokens(ids, attn, mask_id=MASK, vocab_size=V, special_ids=SPECIAL, generator=torch.Generator().manual_seed(5))
    b = mask_tokens(ids, attn, mask_id=MASK, vocab_size=V, special_ids=SPECIAL, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    special_pos = torch.isin(ids, torch.tensor(SPECIAL))
    assert torch.equal(a[0][special_pos], ids[special_pos])
    # A row with one ordinary token still gets one prediction; an all-special row none.
    ids2 = torch.tensor([[CLS, 7, SEP, PAD], [CLS, SEP, PAD, PAD]])
    _, labels = mask_tokens(ids2, (ids2 != PAD).long(), mask_id=MASK, vocab_size=V, special_ids=SPECIAL)
    assert labels.tolist() == [[-100, 7, -100, -100], [-100, -100, -100, -100]]


def test_mask_tokens_errors():
    ids = torch.randint(4, V, (2, 5))
    with pytest.raises(ValueError, match="batch, seq"):
        mask_tokens(ids[0], mask_id=MASK, vocab_size=V)
    with pytest.raises(ValueError, match="vocab_size"):
        mask_tokens(ids + V, mask_id=MASK, vocab_size=V)
    with pytest.raises(ValueError, match="attention_mask"):
        mask_tokens(ids, torch.ones(2, 4), mask_id=MASK, vocab_size=V)


# ---- lm_blocks and Batches ------------------------------------------------------------------

def test_lm_blocks_cuts_and_drops_the_ragged_end():
    blocks = lm_blocks(list(range(23)), 5)
    assert blocks.shape == (4, 5) and blocks.dtype == torch.long
    assert blocks[0].tolist() == [0, 1, 2, 3, 4] and blocks[-1].tolist() == [15, 16, 17, 18, 19]
    assert torch.equal(lm_blocks(torch.arange(10), 10), torch.arange(10)[None])
    with pytest.raises(ValueError, match="smaller block_size"):
        lm_blocks([1, 2, 3], 4)


def test_batches_reproducible_and_cover_every_row():
    rows = torch.arange(30).view(10, 3)
    b = Batches(rows, batch_size=4, seed=7)
    it1, it2 = iter(b), iter(b)
    first = [next(it1) for _ in range(6)]
    assert all(torch.equal(x, next(it2)) for x in first)  # each iter() restarts from the seed
    assert all(x.shape == (4, 3) for x in first)
    # The first 10 rows drawn are one full permutation: every row once before any twice.
    drawn = torch.cat(first)[:, 0] // 3
    assert sorted(drawn[:10].tolist()) == list(range(10))
    other = [next(iter(Batches(rows, 4, seed=8))) for _ in range(1)]
    assert not torch.equal(other[0], first[0])
    assert len(b) == 3
    # Tuples and dicts of tensors keep their structure and their rows aligned.
    ids, mask = rows, rows * 10
    tb = next(iter(Batches((ids, mask), 4, seed=0)))
    assert isinstance(tb, tuple) and torch.equal(tb[1], tb[0] * 10)
    db = next(iter(Batches({"ids": ids, "mask": mask}, 4, seed=0)))
    assert torch.equal(db["mask"], db["ids"] * 10)
    with pytest.raises(ValueError, match="no rows"):
        Batches(torch.empty(0, 3), 4)


# ---- losses ---------------------------------------------------------------------------------

def test_causal_lm_loss_shifts_by_one():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 6)
    ids = torch.tensor([[1, 2, 3, 4], [5, 0, 1, 0]])
    # By hand: position t predicts ids[t + 1].
    hand = [-torch.log_softmax(logits[b, t], -1)[ids[b, t + 1]] for b in range(2) for t in range(3)]
    assert torch.allclose(causal_lm_loss(logits, ids), torch.stack(hand).mean())
    # Padding: row 1 has 2 tokens then 2 pads, so only its pair (t=0 -> t=1) counts.
    attn = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    kept = hand[:3] + hand[3:4]
    assert torch.allclose(causal_lm_loss(logits, ids, attn), torch.stack(kept).mean())
    with pytest.raises(ValueError, match="at least 2"):
        causal_lm_loss(logits[:, :1], ids[:, :1])


def test_masked_lm_loss_ignores_unlabelled_positions():
    torch.manual_seed(0)
    logits = torch.randn(1, 3, 5)
    labels = torch.tensor([[-100, 2, -100]])
    assert torch.allclose(masked_lm_loss(logits, labels), -torch.log_softmax(logits[0, 1], -1)[2])
    with pytest.raises(ValueError, match="no position"):
        masked_lm_loss(logits, torch.full((1, 3), -100))


# ---- schedules and parameter groups ---------------------------------------------------------

def _lrs(make, warmup, total):
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = make(opt, warmup, total)
    out = []
    for _ in range(total + 1):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_schedules():
    lin = _lrs(warmup_linear, 10, 100)
    assert lin[0] == 0.0 and lin[5] == pytest.approx(0.5) and lin[10] == pytest.approx(1.0)
    assert lin[55] == pytest.approx(0.5) and lin[100] == 0.0
    cos = _lrs(warmup_cosine, 10, 100)
    assert cos[0] == 0.0 and cos[10] == pytest.approx(1.0)
    assert cos[55] == pytest.approx(0.5) and cos[100] == pytest.approx(0.0, abs=1e-12)
    assert _lrs(warmup_linear, 0, 4)[0] == 1.0
    with pytest.raises(ValueError, match="warmup_steps"):
        warmup_linear(torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0), 5, 4)


def test_param_groups_skip_biases_and_norms():
    model = nn.Sequential(nn.Embedding(5, 4), nn.LayerNorm(4), nn.Linear(4, 5))
    model[2].weight = model[0].weight  # tied: must appear once
    decay, no_decay = param_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert len(decay["params"]) == 1 and decay["params"][0] is model[0].weight
    assert len(no_decay["params"]) == 3  # LayerNorm weight and bias, Linear bias


# ---- fit and perplexity ---------------------------------------------------------------------

class NextToken(nn.Module):
    """Embedding + dropout + linear: learns the map token -> next token."""

    def __init__(self, vocab=16, dim=16):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.drop = nn.Dropout(0.1)  # randomness that the two fit paths must consume identically
        self.out = nn.Linear(dim, vocab)

    def forward(self, ids):
        return self.out(self.drop(self.emb(ids)))


def _toy_blocks(vocab=16, n=2000):
    # The stream 0, 3, 6, 9, ... (mod 16): the next token is always (t + 3) % 16.
    return lm_blocks([(3 * i) % vocab for i in range(n)], 8)


def _lm_loss(model, batch):
    return causal_lm_loss(model(batch), batch)


def _train(use_accelerate, steps=60):
    torch.manual_seed(0)
    model = NextToken()
    before = perplexity(model, _toy_blocks()[:20], _lm_loss)
    assert before > 8  # chance is 16
    hist = fit(model, Batches(_toy_blocks(), 16, seed=0), _lm_loss, steps=steps, lr=3e-2, device="cpu",
               eval_fn=lambda m: perplexity(m, _toy_blocks()[:20], _lm_loss), eval_every=20,
               use_accelerate=use_accelerate, progress=False)
    return model, hist


def test_fit_loss_falls_and_history_is_documented():
    model, hist = _train(use_accelerate=False)
    assert set(hist) == {"step", "loss", "lr", "eval_step", "eval"}
    assert hist["step"] == [float(s) for s in range(1, 61)]
    assert all(isinstance(v, float) for key in hist for v in hist[key])
    assert hist["lr"][0] == 0.0 and max(hist["lr"]) == pytest.approx(3e-2)  # warm-up 10 % then decay
    assert hist["eval_step"] == [20.0, 40.0, 60.0]
    assert hist["loss"][0] > math.log(16) - 0.5  # starts near chance...
    assert sum(hist["loss"][-5:]) / 5 < 0.2  # ...and learns the map
    assert hist["eval"][-1] < min(hist["eval"][0], 1.05)  # held-out perplexity falls towards 1
    assert model.training


def test_fit_accelerate_and_plain_loop_agree_on_cpu():
    pytest.importorskip("accelerate")
    m1, h1 = _train(use_accelerate=True, steps=25)
    m2, h2 = _train(use_accelerate=False, steps=25)
    assert h1["loss"] == h2["loss"] and h1["eval"] == h2["eval"]
    for p1, p2 in zip(m1.parameters(), m2.parameters()):
        assert torch.equal(p1, p2)
    # fit twice in a row with accelerate (one process, one accelerate state) works too.
    _train(use_accelerate=True, steps=2)


def test_fit_stops_on_nan_and_names_the_step():
    model = NextToken()
    calls = {"n": 0}

    def exploding(m, batch):
        calls["n"] += 1
        loss = _lm_loss(m, batch)
        return loss * float("nan") if calls["n"] == 3 else loss

    with pytest.raises(FloatingPointError, match=r"step 3 .*lower lr"):
        fit(model, Batches(_toy_blocks(), 4), exploding, steps=5, lr=1e-3, device="cpu", progress=False)


def test_fit_errors():
    model = NextToken()
    blocks = Batches(_toy_blocks(), 4)
    with pytest.raises(ValueError, match="steps"):
        fit(model, blocks, _lm_loss, steps=0, lr=1e-3, device="cpu", progress=False)
    with pytest.raises(ValueError, match="empty"):
        fit(model, [], _lm_loss, steps=2, lr=1e-3, device="cpu", progress=False)
    with pytest.raises(ValueError, match="scalar"):
        fit(model, blocks, lambda m, b: m(b).mean(-1), steps=2, lr=1e-3, device="cpu", progress=False)
    with pytest.raises(ValueError, match="cannot be restarted"):
        fit(model, iter([_toy_blocks()[:4]]), _lm_loss, steps=3, lr=1e-3, device="cpu", progress=False)
    # A finite list is restarted: 3 steps from 2 batches.
    hist = fit(model, [_toy_blocks()[:4], _toy_blocks()[4:8]], _lm_loss, steps=3, lr=1e-3, device="cpu",
               progress=False, use_accelerate=False)
    assert len(hist["loss"]) == 3


class Uniform(nn.Module):
    """Predicts every token with probability 1/vocab."""

    def __init__(self, vocab):
        super().__init__()
        self.vocab = vocab
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, ids):
        return torch.zeros(*ids.shape, self.vocab) + 0 * self.dummy


def test_perplexity_of_a_uniform_predictor_is_the_vocab_size():
    blocks = lm_blocks(torch.randint(0, 37, (1000,), generator=torch.Generator().manual_seed(0)), 10)
    model = Uniform(37)
    assert perplexity(model, blocks, _lm_loss, batch_size=7) == pytest.approx(37, rel=1e-6)
    assert perplexity(model, Batches(blocks, 8), _lm_loss) == pytest.approx(37, rel=1e-6)
    # With (loss, n_tokens) the batches are weighted by their token counts: losses 1 and 3, weights 1 and 3.
    weighted = perplexity(model, [blocks[:1], blocks[1:4]], lambda m, b: (torch.tensor(float(len(b))), len(b)))
    assert weighted == pytest.approx(math.exp((1.0 * 1 + 3.0 * 3) / 4))
    with pytest.raises(ValueError, match="max_batches"):
        perplexity(model, iter([blocks]), _lm_loss)



def test_fit_with_mixed_precision_leaves_a_plain_model():
    # bf16 autocast also exists on CPU, so the GPU path's wrapping and unwrapping is tested here.
    pytest.importorskip("accelerate")
    torch.manual_seed(0)
    model = NextToken()
    hist = fit(model, Batches(_toy_blocks(), 16, seed=0), _lm_loss, steps=30, lr=3e-2, device="cpu",
               mixed_precision="bf16", progress=False)
    assert hist["loss"][-1] < hist["loss"][0] / 4
    assert not hasattr(model.forward, "__wrapped__")  # accelerate's autocast wrapper was removed
    assert model(torch.tensor([[1, 2]])).dtype == torch.float32


# ---- every bad input gets an error that names the fix ---------------------------------------

def test_mask_tokens_rejects_empty_batches_bad_rates_and_all_special_vocabularies():
    with pytest.raises(ValueError, match="ids is empty: mask a batch with at least one token"):
        mask_tokens(torch.zeros(2, 0, dtype=torch.long), mask_id=MASK, vocab_size=V)
    for p in (0.0, 1.5):
        with pytest.raises(ValueError, match=rf"p={p} must be in \(0, 1\]: BERT masks p=0\.15"):
            mask_tokens(torch.randint(4, V, (2, 5)), mask_id=MASK, vocab_size=V, p=p)
    with pytest.raises(ValueError, match="every id is special: there is no ordinary token"):
        mask_tokens(torch.tensor([[CLS, SEP]]), mask_id=MASK, vocab_size=4, special_ids=SPECIAL)


def test_blocks_and_batches_errors_name_the_fix():
    with pytest.raises(ValueError, match="block_size=0 must be at least 1"):
        lm_blocks(list(range(10)), 0)
    rows = torch.arange(12).view(4, 3)
    for bad in ([[1, 2], [3, 4]], (), {"ids": rows, "n": 4}):
        with pytest.raises(TypeError, match=r"Batches takes a tensor or a tuple/dict of tensors \(e\.g\. lm_blocks"):
            Batches(bad, 2)
    with pytest.raises(ValueError, match=r"the same number of rows, got \[4, 3\]"):
        Batches((rows, rows[:3]), 2)
    with pytest.raises(ValueError, match=r"the same number of rows, got \[4, 0\]"):  # a 0-d tensor has no rows
        Batches((rows, torch.tensor(1.0)), 2)
    with pytest.raises(ValueError, match="batch_size=0 must be at least 1"):
        Batches(rows, 0)


def test_loss_shape_and_mask_errors_name_the_fix():
    logits, ids = torch.randn(2, 4, 6), torch.tensor([[1, 2, 3, 4], [5, 0, 1, 0]])
    with pytest.raises(ValueError, match=r"logits must be \(B, T, V\) and labels \(B, T\); got \(2, 4, 6\) and \(2, 3\)"):
        masked_lm_loss(logits, ids[:, :3])
    with pytest.raises(ValueError, match=r"logits must be \(B, T, V\) and labels \(B, T\); got \(8, 6\) and \(8,\)"):
        masked_lm_loss(logits.reshape(8, 6), ids.reshape(8))
    with pytest.raises(ValueError, match=r"logits must be \(B, T, V\) and ids \(B, T\); got \(2, 4, 6\) and \(4,\)"):
        causal_lm_loss(logits, ids[0])
    with pytest.raises(ValueError, match=r"attention_mask has shape \(2, 3\) but ids has \(2, 4\)"):
        causal_lm_loss(logits, ids, torch.ones(2, 3))
    # each row keeps single tokens only, never a (token, next token) pair
    with pytest.raises(ValueError, match=r"leaves no \(token, next token\) pair to predict"):
        causal_lm_loss(logits, ids, torch.tensor([[1, 0, 1, 0], [0, 0, 0, 1]]))


def test_schedule_and_param_group_errors_name_the_fix():
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    for make in (warmup_linear, warmup_cosine):
        with pytest.raises(ValueError, match="total_steps=0 must be at least 1"):
            make(opt, 0, 0)
    with pytest.raises(ValueError, match="the model has no trainable parameter"):
        param_groups(nn.ReLU(), 0.01)
    with pytest.raises(ValueError, match="the model has no trainable parameter"):
        param_groups(NextToken().requires_grad_(False), 0.01)


def test_fit_argument_errors_name_the_fix():
    model = NextToken()
    blocks = Batches(_toy_blocks(), 4)

    def run(**kw):
        fit(model, blocks, _lm_loss, **{**dict(steps=10, lr=1e-3, device="cpu", progress=False), **kw})

    with pytest.raises(ValueError, match="lr=0 must be positive"):
        run(lr=0)
    with pytest.raises(ValueError, match="grad_accum=0 must be at least 1"):
        run(grad_accum=0)
    with pytest.raises(ValueError, match=r"eval_every=0 must be at least 1 \(or None: evaluate only at the end\)"):
        run(eval_every=0)
    with pytest.raises(ValueError, match=r"unknown schedule 'step': use one of \['cosine', 'linear'\]"):
        run(schedule="step")
    for warmup in (1.5, -0.1, 11, -1, True):
        with pytest.raises(ValueError, match=rf"warmup={warmup!r}: give a fraction of steps in \[0, 1\] \(float\) "
                                             r"or a number of steps in \[0, 10\] \(int\)"):
            run(warmup=warmup)
    with pytest.raises(ValueError, match="the model has no trainable parameter"):
        fit(NextToken().requires_grad_(False), blocks, _lm_loss, steps=2, lr=1e-3, device="cpu", progress=False)


def test_perplexity_errors_when_there_is_nothing_to_evaluate():
    model = Uniform(16)
    with pytest.raises(ValueError, match="no rows to evaluate"):
        perplexity(model, torch.empty(0, 8, dtype=torch.long), _lm_loss)
    with pytest.raises(ValueError, match=r"perplexity got no batches \(or no tokens\) to evaluate"):
        perplexity(model, [], _lm_loss)
    with pytest.raises(ValueError, match=r"perplexity got no batches \(or no tokens\) to evaluate"):
        perplexity(model, Batches(_toy_blocks(), 4), _lm_loss, max_batches=0)
