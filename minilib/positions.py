"""Position embeddings: sinusoidal, learned and rotary (RoPE).

Attention compares every token with every other token by a dot product and sums the results;
nothing in it knows where a token stands, so a transformer without positions reads a sentence
as a bag of tokens. Three ways to tell it the order:

* **sinusoidal** (Vaswani et al. 2017): add a fixed table of sines and cosines of the position
  at geometrically spaced frequencies. No parameters, defined for any position.
* **learned** (BERT, GPT-2): add a trained vector per position, ``max_len`` of them. The model
  cannot read past ``max_len``.
* **rotary, RoPE** (Su et al., RoFormer): do not add anything; rotate each pair of coordinates
  of the queries and keys by an angle proportional to the position. The score ``q_m . k_n`` then
  depends on the positions only through ``m - n``.

Conventions (used everywhere in the book): dimensions are taken in *interleaved* pairs
``(2i, 2i + 1)``, and pair ``i`` turns at frequency ``theta_i = base ** (-2i / dim)``. The
sinusoidal table puts ``sin`` in the even and ``cos`` in the odd dimension of each pair, as in the
paper; RoPE rotates ``(x[2i], x[2i+1])`` as a 2-D vector, as in the RoFormer paper (GPT-NeoX and
Hugging Face's Llama pair dimension ``i`` with ``i + dim/2`` instead: the same rotation after a fixed
permutation of the dimensions).

Defined in chapter 05.
"""
from __future__ import annotations

import torch
from torch import nn


def _check_size(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def frequencies(dim: int, base: float = 10000.0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The angular frequency of each dimension pair, ``theta_i = base ** (-2i / dim)``.

    Shape ``(ceil(dim / 2),)``: pair 0 turns one radian per position, the last pair about
    ``1 / base`` radians, so the wavelengths grow geometrically from ``2 pi`` to about
    ``2 pi * base``. Defined in chapter 05.
    """
    _check_size("dim", dim)
    if not base > 1:
        raise ValueError(f"base must be > 1 (10000 in the papers), got {base!r}")
    i = torch.arange(0, dim, 2, dtype=torch.float64)  # 2i = 0, 2, 4, ...
    return (base ** (-i / dim)).to(dtype)


def sinusoidal(max_len: int, dim: int, base: float = 10000.0) -> torch.Tensor:
    """The sinusoidal position table of Vaswani et al. (2017), shape ``(max_len, dim)``, float32.

    ``PE[p, 2i] = sin(p * theta_i)`` and ``PE[p, 2i + 1] = cos(p * theta_i)`` with
    ``theta_i = base ** (-2i / dim)``. An odd ``dim`` ends with a sine column.
    Defined in chapter 05.
    """
    _check_size("max_len", max_len)
    positions = torch.arange(max_len, dtype=torch.float64)
    angles = positions[:, None] * frequencies(dim, base)[None, :]  # (max_len, ceil(dim/2))
    table = torch.empty(max_len, dim, dtype=torch.float64)
    table[:, 0::2] = torch.sin(angles)
    table[:, 1::2] = torch.cos(angles[:, : dim // 2])
    return table.float()  # computed in float64: at position 10^4 float32 angles would be off by ~1e-3


def _check_length(x: torch.Tensor, max_len: int, dim: int, who: str) -> int:
    if x.dim() != 3 or x.shape[-1] != dim:
        raise ValueError(f"{who} expects x of shape (batch, seq, {dim}), got {tuple(x.shape)}")
    T = x.shape[1]
    if T > max_len:
        raise ValueError(
            f"{who}: the sequence has {T} positions but the table holds max_len={max_len}. "
            f"Truncate the input to {max_len} tokens (e.g. encode_batch(..., max_len={max_len}, truncate=True)) "
            "or build the model with a larger max_len."
        )
    return T


class SinusoidalPositions(nn.Module):
    """Add the fixed sinusoidal table to token embeddings: ``x (B, T, dim) -> x + PE[:T]``.

    The table is a buffer, not a parameter (nothing to train), and is not saved in the
    ``state_dict`` (it is rebuilt from ``max_len`` and ``dim``). Defined in chapter 05.
    """

    def __init__(self, max_len: int, dim: int, base: float = 10000.0):
        super().__init__()
        self.max_len, self.dim = _check_size("max_len", max_len), _check_size("dim", dim)
        self.register_buffer("table", sinusoidal(max_len, dim, base), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T = _check_length(x, self.max_len, self.dim, "SinusoidalPositions")
        return x + self.table[:T].to(x.dtype)

    def extra_repr(self) -> str:
        return f"max_len={self.max_len}, dim={self.dim}"


class LearnedPositions(nn.Module):
    """Add a trained vector per position: ``x (B, T, dim) -> x + weight(arange(T))``.

    ``self.weight`` is an ``nn.Embedding(max_len, dim)`` (BERT's ``position_embeddings``),
    initialised like BERT's, N(0, 0.02^2). Positions ``>= max_len`` have no vector: a longer
    input raises a ``ValueError`` naming ``max_len``. Defined in chapter 05.
    """

    def __init__(self, max_len: int, dim: int):
        super().__init__()
        self.max_len, self.dim = _check_size("max_len", max_len), _check_size("dim", dim)
        self.weight = nn.Embedding(max_len, dim)
        nn.init.normal_(self.weight.weight, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T = _check_length(x, self.max_len, self.dim, "LearnedPositions")
        pos = torch.arange(T, device=x.device)
        return x + self.weight(pos).to(x.dtype)  # (T, dim) broadcast over the batch

    def extra_repr(self) -> str:
        return f"max_len={self.max_len}, dim={self.dim}"


# --- rotary position embedding -----------------------------------------------------------


def rope_angles(max_len: int, head_dim: int, base: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """``cos`` and ``sin`` of the RoPE angles, each ``(max_len, head_dim)``, float32.

    Entry ``[p, 2i]`` and ``[p, 2i + 1]`` both hold ``cos(p * theta_i)`` (resp. ``sin``): one
    angle per interleaved pair, repeated for its two dimensions, ready for
    ``x * cos + rotate_pairs(x) * sin``. Defined in chapter 05.
    """
    _check_size("max_len", max_len)
    angles = _rope_angle_table(torch.arange(max_len, dtype=torch.float64), head_dim, base)
    return torch.cos(angles).float(), torch.sin(angles).float()


def _rope_angle_table(positions: torch.Tensor, head_dim: int, base: float) -> torch.Tensor:
    """``(T, head_dim)`` angles ``p * theta_i``, each repeated for the two dimensions of its pair."""
    _check_size("head_dim", head_dim, 2)
    if head_dim % 2:
        raise ValueError(f"RoPE rotates pairs of dimensions: head_dim must be even, got {head_dim}")
    theta = frequencies(head_dim, base, positions.dtype).to(positions.device)  # (head_dim/2,)
    return torch.repeat_interleave(positions[:, None] * theta[None, :], 2, dim=-1)


def rotate_pairs(x: torch.Tensor) -> torch.Tensor:
    """``(x0, x1, x2, x3, ...) -> (-x1, x0, -x3, x2, ...)``: each pair turned by 90 degrees.

    With it, rotating every pair by its angle is ``x * cos + rotate_pairs(x) * sin``.
    Defined in chapter 05.
    """
    pairs = x.unflatten(-1, (-1, 2))  # (..., head_dim/2, 2)
    return torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1).flatten(-2)


def apply_rope(x: torch.Tensor, positions: torch.Tensor | None = None, base: float = 10000.0) -> torch.Tensor:
    """Rotate queries or keys by their positions (RoPE, RoFormer's interleaved pairs).

    ``x`` has shape ``(..., T, head_dim)`` with ``head_dim`` even (e.g. ``(B, heads, T, head_dim)``);
    ``positions`` is a 1-D tensor of ``T`` positions (default ``0..T-1``; fractional positions are
    allowed, e.g. for position interpolation). Pair ``(x[2i], x[2i+1])`` at position ``p`` is
    rotated by the angle ``p * base ** (-2i / head_dim)``. Returns a tensor of the same shape
    and dtype. Because rotations compose, ``apply_rope(q, m) . apply_rope(k, n)`` depends on
    ``m - n`` only. Defined in chapter 05.
    """
    if not torch.is_tensor(x) or x.dim() < 2:
        raise ValueError(f"apply_rope expects x of shape (..., T, head_dim), got {getattr(x, 'shape', type(x))}")
    if not x.is_floating_point():
        raise TypeError(f"apply_rope expects a floating-point x, got {x.dtype}")
    T, head_dim = x.shape[-2], x.shape[-1]
    # Angles in float64 where the device has it: float32 products p * theta lose ~1e-4 rad at p ~ 2000.
    work = torch.float32 if x.device.type == "mps" else torch.float64
    if positions is None:
        positions = torch.arange(T, device=x.device, dtype=work)
    else:
        positions = torch.as_tensor(positions, device=x.device)
        if positions.dim() != 1 or positions.shape[0] != T:
            raise ValueError(
                f"positions must be a 1-D tensor with one position per token ({T}), got shape "
                f"{tuple(positions.shape)}; for a batch of different offsets, call apply_rope per row"
            )
        positions = positions.to(work)
    angles = _rope_angle_table(positions, head_dim, base)  # (T, head_dim)
    cos, sin = torch.cos(angles).to(x.dtype), torch.sin(angles).to(x.dtype)
    return x * cos + rotate_pairs(x) * sin
