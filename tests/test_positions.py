"""Tests for minilib.positions: sinusoidal table (closed form, DistilBERT's table), learned
positions, RoPE (relative-position property, norms, parity with Hugging Face's RoFormer)."""
import math
import os

import pytest
import torch

from minilib.positions import (LearnedPositions, SinusoidalPositions, apply_rope, frequencies, rope_angles,
                               rotate_pairs, sinusoidal)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


# --- sinusoidal --------------------------------------------------------------------------


@pytest.mark.parametrize("dim", [8, 7, 2, 1])
def test_sinusoidal_matches_the_closed_form(dim):
    T = 50
    pe = sinusoidal(T, dim)
    assert pe.shape == (T, dim) and pe.dtype == torch.float32
    for p in range(T):
        for j in range(dim):
            i2 = j - j % 2  # 2i: the even index of the pair j belongs to
            angle = p / 10000 ** (i2 / dim)
            expected = math.sin(angle) if j % 2 == 0 else math.cos(angle)
            assert abs(pe[p, j].item() - expected) < 1e-6, (p, j)


def test_sinusoidal_base_and_frequencies():
    pe = sinusoidal(5, 4, base=100.0)
    assert abs(pe[3, 2].item() - math.sin(3 / 100 ** 0.5)) < 1e-6
    expected = torch.tensor([1.0, 10000 ** (-2 / 6), 10000 ** (-4 / 6)], dtype=torch.float64)
    assert torch.allclose(frequencies(6, 10000.0), expected)
    with pytest.raises(ValueError, match="base"):
        frequencies(4, base=1.0)


def test_sinusoidal_equals_distilbert_table():
    from transformers.models.distilbert.modeling_distilbert import _create_sinusoidal_embeddings

    out = torch.empty(64, 16)
    _create_sinusoidal_embeddings(64, 16, out)
    torch.testing.assert_close(sinusoidal(64, 16), out, atol=1e-6, rtol=0)


def test_sinusoidal_rejects_bad_sizes():
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="max_len"):
            sinusoidal(bad, 4)
        with pytest.raises(ValueError, match="dim"):
            sinusoidal(4, bad)


def test_sinusoidal_dot_product_depends_on_offset_only():
    # PE[p] . PE[p + k] = sum_i cos(k * theta_i): the same for every p.
    pe = sinusoidal(200, 32).double()
    for k in (1, 5, 40):
        dots = (pe[:-k] * pe[k:]).sum(-1)
        expected = torch.cos(k * frequencies(32)).sum()
        assert torch.allclose(dots, expected.expand_as(dots), atol=1e-5)


def test_sinusoidal_module_adds_a_buffer():
    m = SinusoidalPositions(16, 8)
    x = torch.randn(3, 10, 8)
    torch.testing.assert_close(m(x), x + sinusoidal(16, 8)[:10])
    assert not list(m.parameters()) and "table" not in m.state_dict()
    assert m(x.double()).dtype == torch.float64
    with pytest.raises(ValueError, match="max_len=16"):
        m(torch.randn(1, 17, 8))
    with pytest.raises(ValueError, match=r"\(batch, seq, 8\)"):
        m(torch.randn(10, 8))


# --- learned -----------------------------------------------------------------------------


def test_learned_positions_add_a_trainable_row_per_position():
    torch.manual_seed(0)
    m = LearnedPositions(12, 6)
    assert isinstance(m.weight, torch.nn.Embedding) and m.weight.weight.shape == (12, 6)
    assert 0.005 < m.weight.weight.std().item() < 0.05  # BERT's initialisation, std 0.02
    x = torch.randn(2, 5, 6)
    y = m(x)
    torch.testing.assert_close(y, x + m.weight.weight[:5])
    y.sum().backward()
    grad = m.weight.weight.grad
    assert torch.all(grad[:5] == 2.0) and torch.all(grad[5:] == 0)  # batch of 2; unused rows get nothing


def test_learned_positions_refuse_sequences_beyond_max_len():
    m = LearnedPositions(8, 4)
    m(torch.zeros(1, 8, 4))  # exactly max_len is fine
    with pytest.raises(ValueError, match="max_len=8") as e:
        m(torch.zeros(1, 9, 4))
    assert "truncate" in str(e.value).lower()


# --- RoPE --------------------------------------------------------------------------------


def test_rotate_pairs_turns_each_pair_by_90_degrees():
    x = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert rotate_pairs(x).tolist() == [-2.0, 1.0, -4.0, 3.0]


def test_rope_is_a_2d_rotation_per_pair():
    torch.manual_seed(0)
    d, p = 8, 7
    x = torch.randn(1, d, dtype=torch.float64)
    out = apply_rope(x.expand(p + 1, d).clone())[p]  # row p sits at position p
    for i in range(d // 2):
        a = p * 10000 ** (-2 * i / d)
        R = torch.tensor([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]], dtype=torch.float64)
        torch.testing.assert_close(out[2 * i: 2 * i + 2], R @ x[0, 2 * i: 2 * i + 2])


def test_rope_angles_match_apply_rope():
    cos, sin = rope_angles(20, 8)
    assert cos.shape == sin.shape == (20, 8) and cos.dtype == torch.float32
    assert torch.equal(cos[:, 0::2], cos[:, 1::2]) and torch.equal(sin[:, 0::2], sin[:, 1::2])
    x = torch.randn(3, 20, 8)
    torch.testing.assert_close(apply_rope(x), x * cos + rotate_pairs(x) * sin)


def test_rope_keeps_shape_dtype_and_norm():
    torch.manual_seed(0)
    for dtype in (torch.float32, torch.float64, torch.bfloat16):
        x = torch.randn(2, 3, 11, 16, dtype=dtype)
        y = apply_rope(x)
        assert y.shape == x.shape and y.dtype == dtype
        tol = 2e-2 if dtype == torch.bfloat16 else 1e-5
        torch.testing.assert_close(y.float().norm(dim=-1), x.float().norm(dim=-1), atol=tol, rtol=tol)
    x = torch.randn(4, 16)
    torch.testing.assert_close(apply_rope(x, torch.zeros(4)), x)  # position 0: no rotation


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_rope_scores_depend_only_on_relative_position(dtype):
    gen = torch.Generator().manual_seed(0)
    head_dim = 64
    q = torch.randn(head_dim, generator=gen, dtype=dtype)
    k = torch.randn(head_dim, generator=gen, dtype=dtype)
    q, k = q / q.norm(), k / k.norm()  # unit vectors: the score is a cosine, atol is meaningful

    def score(m, n):
        qm = apply_rope(q[None], torch.tensor([m]))[0]
        kn = apply_rope(k[None], torch.tensor([n]))[0]
        return (qm * kn).sum()

    for m, n in [(0, 0), (3, 1), (1, 3), (10, 25), (100, 7)]:
        ref = score(m, n)
        for s in [1, 2, 5, 17, 64, 100, 333, 1000]:
            torch.testing.assert_close(score(m + s, n + s), ref, atol=1e-5, rtol=0)
    assert abs(score(0, 5) - score(0, 6)) > 1e-3  # ... but it does change with the offset


def test_rope_relative_property_for_a_whole_sequence():
    torch.manual_seed(0)
    q, k = torch.randn(2, 4, 32, 16, dtype=torch.float64).unbind(0)  # (heads, T, head_dim)
    S = apply_rope(q) @ apply_rope(k).transpose(-1, -2)
    shift = torch.arange(32, dtype=torch.float64) + 500
    S_shift = apply_rope(q, shift) @ apply_rope(k, shift).transpose(-1, -2)
    torch.testing.assert_close(S, S_shift, atol=1e-9, rtol=0)


def test_rope_equals_huggingface_roformer():
    from transformers.models.roformer.modeling_roformer import (RoFormerSelfAttention,
                                                                RoFormerSinusoidalPositionalEmbedding)

    torch.manual_seed(0)
    B, H, T, D = 2, 3, 9, 16
    table = RoFormerSinusoidalPositionalEmbedding(T, D).create_weight()  # (T, D): sin half, cos half
    q, k = torch.randn(B, H, T, D), torch.randn(B, H, T, D)
    hq, hk = RoFormerSelfAttention.apply_rotary_position_embeddings(table[None, None], q, k)
    torch.testing.assert_close(apply_rope(q), hq, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(apply_rope(k), hk, atol=1e-5, rtol=1e-5)


def test_rope_rejects_bad_input():
    with pytest.raises(ValueError, match="even"):
        apply_rope(torch.randn(4, 7))
    with pytest.raises(ValueError, match="one position per token"):
        apply_rope(torch.randn(2, 4, 8), torch.arange(5))
    with pytest.raises(ValueError, match="one position per token"):
        apply_rope(torch.randn(2, 4, 8), torch.zeros(2, 4))
    with pytest.raises(TypeError, match="floating"):
        apply_rope(torch.ones(4, 8, dtype=torch.long))
    with pytest.raises(ValueError, match="head_dim"):
        apply_rope(torch.randn(8))


def test_position_modules_print_their_sizes():
    assert repr(SinusoidalPositions(16, 8)) == "SinusoidalPositions(max_len=16, dim=8)"
    assert repr(LearnedPositions(16, 8)).startswith("LearnedPositions(\n  max_len=16, dim=8")
