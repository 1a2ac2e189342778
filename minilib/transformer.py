"""Transformers from scratch: attention, the block, an encoder (BERT) and a decoder (GPT), and
real pretrained weights running in them.

Read it top to bottom, as chapter 06 builds it:

1. :func:`attention`: scaled dot-product attention, ``softmax(q k^T / sqrt(d)) v`` with a mask;
2. :class:`MultiHeadAttention`: ``n_heads`` attentions side by side on slices of the width;
3. :class:`Block`: attention and a feed-forward layer, each wrapped in a residual connection and
   a LayerNorm, placed after the sum (post-norm, BERT) or before the sublayer (pre-norm, GPT-2);
4. :class:`Transformer`: token (+ position, + segment) embeddings, a stack of blocks, optionally
   causal; :class:`MaskedLM` and :class:`CausalLM` put a prediction head on top, tied to the
   token embeddings;
5. :func:`mean_pool` and :class:`SentenceEncoder`: one vector per text;
6. the name maps (``bert_name_map``, ``gpt2_name_map``) that copy Hugging Face checkpoints into
   our modules, checked by :func:`load_weights`, and :func:`load_minilm`, which runs the real
   all-MiniLM-L6-v2 sentence embedder in the code above;
7. (chapter 10) the four switches that turn the GPT-2 block into a Llama block -- RMSNorm
   (:class:`RMSNorm`), a SwiGLU feed-forward layer, grouped-query attention and RoPE with a chosen
   base, all in :class:`TransformerConfig` -- and ``llama_name_map``, with which
   :func:`from_transformers` runs a Llama-family checkpoint (SmolLM2) in our code.

Every parameter name is ours; the name maps say, line by line, which tensor of a BERT or GPT-2
checkpoint it is. The unit tests copy random ``transformers`` models through these maps and
compare every hidden state.

Defined in chapter 06.
"""
from __future__ import annotations

import fnmatch
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .positions import LearnedPositions, SinusoidalPositions, apply_rope

__all__ = [
    "TransformerConfig", "attention", "split_heads", "merge_heads", "causal_mask", "MultiHeadAttention", "Block",
    "Transformer", "MaskedLM", "CausalLM", "mean_pool", "SentenceEncoder", "parameter_count", "Rename",
    "bert_name_map", "gpt2_name_map", "convert_state_dict", "load_weights", "config_from_bert",
    "config_from_gpt2", "RMSNorm", "llama_name_map", "config_from_llama", "from_transformers", "load_minilm",
    "load_minilm_encoder", "save", "load",
    "BOOK_RECIPE", "book_cache_name", "book_documents", "book_tokenizer", "book_token_ids", "book_models",
    "store_book_model",
]

ACTIVATIONS = ("gelu", "gelu_tanh", "relu", "silu")
POSITIONS = ("learned", "sinusoidal", "rope")
NORMS = ("layer", "rms")
FFNS = ("mlp", "swiglu")


# --- configuration ------------------------------------------------------------------------


@dataclass
class TransformerConfig:
    """Every size and switch of a :class:`Transformer`, BERT-base-like or GPT-2-like.

    Defined in chapter 06.
    """

    vocab_size: int                # number of token ids (rows of the embedding table)
    d_model: int = 128             # width of the residual stream: every token is a d_model vector
    n_layers: int = 2              # number of blocks
    n_heads: int = 4               # attention heads per block; d_model must be a multiple
    d_ff: int = 512                # hidden width of the feed-forward layer (usually 4 * d_model)
    max_len: int = 128             # longest sequence the model accepts (size of the position table)
    dropout: float = 0.1           # on embeddings, attention weights and each sublayer's output
    norm_first: bool = False       # False: post-norm (BERT); True: pre-norm + a final LayerNorm (GPT-2)
    causal: bool = False           # True: position t attends to positions <= t only (a decoder)
    activation: str = "gelu"       # "gelu" (erf: BERT) | "gelu_tanh" (GPT-2) | "relu" (Vaswani et al.) | "silu" (Llama)
    type_vocab_size: int = 0       # BERT's segment embeddings (2 for BERT and MiniLM); 0 = none
    layer_norm_eps: float = 1e-12  # BERT uses 1e-12, GPT-2 1e-5
    position: str = "learned"      # "learned" | "sinusoidal" | "rope" (all from minilib.positions)
    pad_id: int = 0                # the padding token: its embedding row starts at zero and gets no gradient
    # Chapter 10's switches from the GPT-2 block to the Llama block (the defaults are GPT-2's and BERT's):
    norm: str = "layer"            # "layer" (LayerNorm) | "rms" (RMSNorm: no centring, no bias)
    ffn: str = "mlp"               # "mlp": ff2(act(ff1 x)) | "swiglu": ff2(act(gate x) * ff1 x), act = silu
    n_kv_heads: int | None = None  # grouped-query attention: heads of keys and values (None: n_heads)
    bias: bool = True              # biases in the attention and feed-forward layers (Llama has none)
    rope_base: float = 10000.0     # RoPE's base (Llama 3 and SmolLM2 use larger ones)

    def __post_init__(self):
        for name in ("vocab_size", "d_model", "n_layers", "n_heads", "d_ff", "max_len"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"TransformerConfig.{name} must be a positive int, got {v!r}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} is not a multiple of n_heads={self.n_heads}: "
                             "each head gets d_model / n_heads dimensions; change one of them")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {self.activation!r}: use one of {ACTIVATIONS}")
        if self.position not in POSITIONS:
            raise ValueError(f"unknown position {self.position!r}: use one of {POSITIONS}")
        if self.position == "rope" and (self.d_model // self.n_heads) % 2:
            raise ValueError(f"RoPE rotates pairs of dimensions: the head size d_model / n_heads = "
                             f"{self.d_model // self.n_heads} must be even")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout}")
        if not 0 <= self.pad_id < self.vocab_size:
            raise ValueError(f"pad_id={self.pad_id} is not a token id (vocab_size={self.vocab_size})")
        if self.type_vocab_size < 0:
            raise ValueError("type_vocab_size must be >= 0 (0 = no segment embeddings)")
        if self.norm not in NORMS:
            raise ValueError(f"unknown norm {self.norm!r}: use one of {NORMS}")
        if self.ffn not in FFNS:
            raise ValueError(f"unknown ffn {self.ffn!r}: use one of {FFNS}")
        if self.n_kv_heads is not None and (isinstance(self.n_kv_heads, bool) or not isinstance(self.n_kv_heads, int)
                                            or self.n_kv_heads < 1 or self.n_heads % self.n_kv_heads):
            raise ValueError(f"n_kv_heads={self.n_kv_heads!r} must be a positive int dividing n_heads={self.n_heads}: "
                             "each key/value head serves n_heads / n_kv_heads query heads")
        if not self.rope_base > 0:
            raise ValueError(f"rope_base must be positive, got {self.rope_base}")

    @property
    def head_dim(self) -> int:
        """The width of one attention head: ``d_model // n_heads``."""
        return self.d_model // self.n_heads

    @property
    def kv_heads(self) -> int:
        """The number of key/value heads: ``n_kv_heads``, or ``n_heads`` when it is None."""
        return self.n_kv_heads or self.n_heads


def _activation(name: str) -> nn.Module:
    # GELU(x) = x * Phi(x); GPT-2 used the tanh approximation of Phi, BERT the exact erf form.
    # SiLU(x) = x * sigmoid(x) is the gate of Llama's SwiGLU.
    return {"gelu": nn.GELU(), "gelu_tanh": nn.GELU(approximate="tanh"), "relu": nn.ReLU(), "silu": nn.SiLU()}[name]


class RMSNorm(nn.Module):
    """Root-mean-square normalisation (Zhang & Sennrich, 2019): ``w * x / sqrt(mean(x^2) + eps)``.

    LayerNorm without the centring and without the bias: one division per vector, and the Llama
    family's choice. Half-precision inputs are normalised in float32, then cast back.
    Defined in chapter 10.
    """

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        work = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        work = work * torch.rsqrt(work.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * work.to(x.dtype)


def _norm(c: TransformerConfig) -> nn.Module:
    return RMSNorm(c.d_model, eps=c.layer_norm_eps) if c.norm == "rms" else nn.LayerNorm(c.d_model, eps=c.layer_norm_eps)


# --- attention ----------------------------------------------------------------------------


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None,
              dropout_p: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Scaled dot-product attention: ``softmax(q k^T / sqrt(d) + mask) v``.

    ``q`` is ``(..., Tq, d)``, ``k`` is ``(..., Tk, d)``, ``v`` is ``(..., Tk, dv)``. ``mask`` is a
    bool tensor broadcastable to ``(..., Tq, Tk)``, ``True`` where a query may attend to a key.
    Returns ``(out (..., Tq, dv), weights (..., Tq, Tk))``; the weights are the softmax before
    dropout, so rows sum to 1. A query that may attend to no key at all gets zero weights (and a
    zero output) instead of NaN. Equals ``torch.nn.functional.scaled_dot_product_attention``.

    Defined in chapter 06.
    """
    if q.dim() < 2 or k.dim() < 2 or v.dim() < 2:
        raise ValueError(f"q, k, v must be (..., T, d); got shapes {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"q and k must have the same last dimension (a dot product), got {q.shape[-1]} and {k.shape[-1]}")
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(f"k and v must have one row per key, got {k.shape[-2]} and {v.shape[-2]} rows")
    # Dividing by sqrt(d) keeps the scores' variance near 1 whatever d is (chapter 06 derives it),
    # so the softmax neither saturates into a one-hot nor flattens into a uniform average.
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (..., Tq, Tk)
    if mask is not None:
        if mask.dtype != torch.bool:
            raise TypeError(f"mask must be a bool tensor (True = may attend), got {mask.dtype}; "
                            "for a 0/1 padding mask use mask.bool()")
        try:
            torch.broadcast_shapes(mask.shape, scores.shape)
        except RuntimeError:
            raise ValueError(f"mask of shape {tuple(mask.shape)} does not broadcast to the scores' shape "
                             f"{tuple(scores.shape)} (..., Tq, Tk)") from None
        scores = scores.masked_fill(~mask, float("-inf"))  # exp(-inf) = 0: a masked key gets no weight
    weights = scores.softmax(dim=-1)
    if mask is not None:
        # A row with every key masked is all -inf and softmax gives NaN; make it all zeros instead.
        weights = weights.masked_fill(~mask.any(dim=-1, keepdim=True), 0.0)
    dropped = F.dropout(weights, p=dropout_p) if dropout_p > 0 else weights
    return dropped @ v, weights


def split_heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    """``(B, T, n_heads * dh)`` -> ``(B, n_heads, T, dh)``: each head gets its own slice of the width.

    Defined in chapter 06.
    """
    B, T, d = x.shape
    if d % n_heads:
        raise ValueError(f"width {d} is not a multiple of n_heads={n_heads}")
    return x.view(B, T, n_heads, d // n_heads).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """``(B, n_heads, T, dh)`` -> ``(B, T, n_heads * dh)``: the inverse of :func:`split_heads`.

    Defined in chapter 06.
    """
    B, H, T, dh = x.shape
    return x.transpose(1, 2).reshape(B, T, H * dh)


def causal_mask(T: int, device=None) -> torch.Tensor:
    """``(T, T)`` bool, ``True`` on and below the diagonal: query t may see keys 0..t.

    Defined in chapter 06.
    """
    return torch.ones(T, T, dtype=torch.bool, device=device).tril()


class MultiHeadAttention(nn.Module):
    """``n_heads`` attentions in parallel, each on ``d_model / n_heads`` dimensions.

    ``forward(x (B, T, d_model), mask=None) -> (B, T, d_model)``; ``mask`` is bool,
    broadcastable to ``(B, n_heads, T, T)``. With ``rope=True`` the queries and keys are rotated
    by their positions (:func:`minilib.positions.apply_rope`) before the dot product. After a
    forward, ``last_weights`` holds the attention weights ``(B, n_heads, T, T)`` (detached), for plots.

    Defined in chapter 06.
    """

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0, rope: bool = False,
                 n_kv_heads: int | None = None, bias: bool = True, rope_base: float = 10000.0):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} is not a multiple of n_heads={n_heads}")
        if n_kv_heads is not None and (isinstance(n_kv_heads, bool) or not isinstance(n_kv_heads, int) or n_kv_heads < 1):
            raise ValueError(f"n_kv_heads must be a positive int (or None: one key/value head per query head), "
                             f"got {n_kv_heads!r}")
        n_kv = n_kv_heads or n_heads
        if n_heads % n_kv:
            raise ValueError(f"n_kv_heads={n_kv} must divide n_heads={n_heads}")
        self.n_heads, self.n_kv_heads, self.dropout, self.rope, self.rope_base = n_heads, n_kv, dropout, rope, rope_base
        kv_width = n_kv * (d_model // n_heads)
        # One (d_model x d_model) projection each for queries, keys and values holds all heads at
        # once: head h uses rows h*dh .. (h+1)*dh of it, a rank-dh slice. With grouped-query
        # attention (chapter 10) keys and values have fewer heads, each shared by a group of queries.
        self.q = nn.Linear(d_model, d_model, bias=bias)
        self.k = nn.Linear(d_model, kv_width, bias=bias)
        self.v = nn.Linear(d_model, kv_width, bias=bias)
        self.out = nn.Linear(d_model, d_model, bias=bias)  # mixes the heads' outputs back into the stream
        self.last_weights: torch.Tensor | None = None

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if x.dim() != 3:
            raise ValueError(f"MultiHeadAttention expects x of shape (batch, seq, d_model), got {tuple(x.shape)}")
        q = split_heads(self.q(x), self.n_heads)  # (B, H, T, dh)
        k = split_heads(self.k(x), self.n_kv_heads)  # (B, H_kv, T, dh)
        v = split_heads(self.v(x), self.n_kv_heads)
        if self.rope:
            q, k = apply_rope(q, base=self.rope_base), apply_rope(k, base=self.rope_base)
        if self.n_kv_heads != self.n_heads:  # query head h reads key/value head h // group
            group = self.n_heads // self.n_kv_heads
            k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
        out, weights = attention(q, k, v, mask, self.dropout if self.training else 0.0)
        self.last_weights = weights.detach()
        return self.out(merge_heads(out))  # (B, T, d_model)


# --- the block ------------------------------------------------------------------------------


class Block(nn.Module):
    """One transformer layer: attention then a feed-forward network, each in a residual branch.

    Post-norm (``config.norm_first=False``, BERT, the original Transformer)::

        x = LayerNorm(x + Dropout(Attention(x)))
        x = LayerNorm(x + Dropout(FFN(x)))

    Pre-norm (``norm_first=True``, GPT-2)::

        x = x + Dropout(Attention(LayerNorm(x)))
        x = x + Dropout(FFN(LayerNorm(x)))

    with ``FFN(x) = ff2(act(ff1(x)))``. ``forward(x (B, T, d), mask=None) -> (B, T, d)``.

    Defined in chapter 06.
    """

    def __init__(self, config: TransformerConfig):
        super().__init__()
        c = config
        self.norm_first = c.norm_first
        self.attn = MultiHeadAttention(c.d_model, c.n_heads, c.dropout, rope=c.position == "rope",
                                       n_kv_heads=c.n_kv_heads, bias=c.bias, rope_base=c.rope_base)
        self.norm1 = _norm(c)
        self.ff1 = nn.Linear(c.d_model, c.d_ff, bias=c.bias)
        # SwiGLU (Shazeer, 2020): a second projection, through the activation, gates ff1's output.
        self.gate = nn.Linear(c.d_model, c.d_ff, bias=c.bias) if c.ffn == "swiglu" else None
        self.act = _activation(c.activation)
        self.ff2 = nn.Linear(c.d_ff, c.d_model, bias=c.bias)
        self.norm2 = _norm(c)
        self.drop = nn.Dropout(c.dropout)

    def feed_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The position-wise feed-forward network (MLP or SwiGLU), no residual or norm: ``(B, T, d) -> (B, T, d)``."""
        if self.gate is not None:
            return self.ff2(self.act(self.gate(x)) * self.ff1(x))  # SwiGLU
        return self.ff2(self.act(self.ff1(x)))  # (B, T, d) -> (B, T, d_ff) -> (B, T, d), per position

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.norm_first:
            # The residual stream x itself is never normalised: a clean path from input to output.
            x = x + self.drop(self.attn(self.norm1(x), mask))
            return x + self.drop(self.feed_forward(self.norm2(x)))
        x = self.norm1(x + self.drop(self.attn(x, mask)))
        return self.norm2(x + self.drop(self.feed_forward(x)))


# --- the model --------------------------------------------------------------------------------


class Transformer(nn.Module):
    """Embeddings and a stack of :class:`Block` s: BERT's encoder or GPT-2's decoder, by config.

    ``forward(ids (B, T), attention_mask=None (B, T) 1 = token, 0 = padding, token_type_ids=None,
    output_hidden_states=False)`` returns the last hidden states ``(B, T, d_model)``, or
    ``(last, hidden)`` where ``hidden`` is a list of ``n_layers + 1`` tensors ``(B, T, d_model)``:
    the embedding output, then the output of each block (the last one after the final LayerNorm
    of a pre-norm model, equal to ``last``, as in ``transformers``). Padded keys are masked; with
    ``config.causal`` each position also sees only itself and earlier positions. A sequence
    longer than ``config.max_len`` raises a ``ValueError`` (truncation is the tokenizer's job).
    With ``position="sinusoidal"`` the token vectors are multiplied by ``sqrt(d_model)`` before the
    fixed table is added, as in Vaswani et al. (2017).

    Defined in chapter 06.
    """

    def __init__(self, config: TransformerConfig):
        super().__init__()
        c = self.config = config
        self.tok = nn.Embedding(c.vocab_size, c.d_model, padding_idx=c.pad_id)
        self.pos: nn.Module | None = {
            "learned": lambda: LearnedPositions(c.max_len, c.d_model),
            "sinusoidal": lambda: SinusoidalPositions(c.max_len, c.d_model),
            "rope": lambda: None,  # RoPE acts inside attention, on queries and keys
        }[c.position]()
        self.seg = nn.Embedding(c.type_vocab_size, c.d_model) if c.type_vocab_size else None
        # BERT normalises the summed embeddings; a pre-norm model needs no such layer: each block normalises its input.
        self.emb_norm = None if c.norm_first else _norm(c)
        self.drop = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(Block(c) for _ in range(c.n_layers))
        self.final_norm = _norm(c) if c.norm_first else None
        self.apply(self._init_weights)
        if c.norm_first:
            # GPT-2: every block adds two branches to the residual stream, so shrink the layers that
            # write into it by 1/sqrt(2 L) and the stream's variance stays put as L grows.
            for block in self.blocks:
                for lin in (block.attn.out, block.ff2):
                    nn.init.normal_(lin.weight, std=0.02 / math.sqrt(2 * c.n_layers))
        with torch.no_grad():
            self.tok.weight[c.pad_id].zero_()

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        # BERT's and GPT-2's initialisation: N(0, 0.02) weights, zero biases, unit LayerNorms.
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)
        if isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        if isinstance(m, RMSNorm):
            nn.init.ones_(m.weight)

    def _check_ids(self, ids: torch.Tensor) -> None:
        c = self.config
        if not isinstance(ids, torch.Tensor) or ids.dim() != 2:
            shape = tuple(ids.shape) if isinstance(ids, torch.Tensor) else type(ids).__name__
            raise ValueError(f"ids must be a (batch, seq) tensor of token ids, got {shape}; "
                             "for one sequence use ids[None]")
        if ids.dtype not in (torch.long, torch.int):
            raise TypeError(f"ids must be integer token ids (torch.long or torch.int), got {ids.dtype}: use ids.long()")
        if ids.shape[1] == 0:
            raise ValueError("ids has no positions (seq length 0): give at least one token")
        if ids.shape[1] > c.max_len:
            raise ValueError(f"sequence length {ids.shape[1]} exceeds the model's max_len={c.max_len}: truncate "
                             f"the input to {c.max_len} tokens (e.g. tokenizer.encode_batch(texts, max_len={c.max_len}, "
                             "truncate=True)) or build the model with a larger max_len")
        lo, hi = int(ids.min()), int(ids.max())
        if lo < 0 or hi >= c.vocab_size:
            raise ValueError(f"token ids must lie in [0, {c.vocab_size}), got min {lo} and max {hi}: "
                             "was the input made by the tokenizer this model was built for?")

    def attention_mask(self, attention_mask: torch.Tensor | None, ids: torch.Tensor) -> torch.Tensor | None:
        """The bool mask every block uses, broadcastable to ``(B, H, T, T)``, or ``None`` (see all)."""
        B, T = ids.shape
        mask = None
        if attention_mask is not None:
            if tuple(attention_mask.shape) != (B, T):
                raise ValueError(f"attention_mask must have the shape of ids {(B, T)}, got {tuple(attention_mask.shape)}")
            mask = attention_mask.to(ids.device).bool()[:, None, None, :]  # (B, 1, 1, T): which keys are tokens
        if self.config.causal:
            c = causal_mask(T, ids.device)  # (T, T)
            mask = c if mask is None else mask & c  # (B, 1, T, T)
        return mask

    def embed(self, ids: torch.Tensor, token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Token (+ position, + segment) embeddings, normalised in a post-norm model: ``(B, T, d)``."""
        x = self.tok(ids)  # (B, T, d)
        if self.config.position == "sinusoidal":
            # The fixed table has entries of size ~1, the token vectors start at ~0.02: scale the tokens by
            # sqrt(d), as Vaswani et al. do, or the positions drown the words.
            x = x * math.sqrt(self.config.d_model)
        if self.pos is not None:
            x = self.pos(x)
        if self.seg is not None:
            x = x + self.seg(token_type_ids if token_type_ids is not None else torch.zeros_like(ids))
        elif token_type_ids is not None:
            raise ValueError("token_type_ids given, but this model has no segment embeddings (type_vocab_size=0)")
        if self.emb_norm is not None:
            x = self.emb_norm(x)
        return self.drop(x)

    def forward(self, ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, output_hidden_states: bool = False):
        self._check_ids(ids)
        mask = self.attention_mask(attention_mask, ids)
        x = self.embed(ids, token_type_ids)
        hidden = [x]
        for block in self.blocks:
            x = block(x, mask)
            hidden.append(x)
        if self.final_norm is not None:
            x = self.final_norm(x)
            hidden[-1] = x
        return (x, hidden) if output_hidden_states else x


class MaskedLM(nn.Module):
    """A :class:`Transformer` encoder with BERT's masked-language-model head.

    The head is ``LayerNorm(act(dense(h)))`` followed by a product with the token embedding
    table (tied weights: the output layer *is* the input table) plus a bias.
    ``forward(ids (B, T), attention_mask=None, token_type_ids=None) -> logits (B, T, vocab_size)``;
    with ``select`` (bool ``(B, T)``, e.g. ``labels != -100``) only the selected positions go
    through the head: ``logits (n_selected, vocab_size)``, in row-major order, as BERT's original
    code does, since only the masked ~15 % are scored and the head is the costliest layer of a
    small model.

    Defined in chapter 06.
    """

    def __init__(self, config: TransformerConfig):
        super().__init__()
        if config.causal:
            raise ValueError("a masked LM reads both directions: build it with causal=False")
        self.config = config
        self.encoder = Transformer(config)
        self.head_dense = nn.Linear(config.d_model, config.d_model)
        self.head_act = _activation(config.activation)
        self.head_norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
        self.head_bias = nn.Parameter(torch.zeros(config.vocab_size))
        Transformer._init_weights(self.head_dense)

    def forward(self, ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, select: torch.Tensor | None = None) -> torch.Tensor:
        h = self.encoder(ids, attention_mask, token_type_ids)  # (B, T, d)
        if select is not None:
            if select.dtype != torch.bool or select.shape != ids.shape:
                raise ValueError(f"select must be a bool tensor shaped like ids {tuple(ids.shape)}, "
                                 f"got {select.dtype} {tuple(select.shape)}")
            h = h[select]  # (n_selected, d)
        h = self.head_norm(self.head_act(self.head_dense(h)))
        return F.linear(h, self.encoder.tok.weight, self.head_bias)  # (B, T, V), or (n_selected, V)


class CausalLM(nn.Module):
    """A causal :class:`Transformer` decoder with a next-token head tied to the token embeddings.

    ``forward(ids (B, T), attention_mask=None) -> logits (B, T, vocab_size)``: row ``t`` scores
    the token at ``t + 1``. :meth:`generate` continues a prompt.

    Defined in chapter 06.
    """

    def __init__(self, config: TransformerConfig):
        super().__init__()
        if not config.causal:
            raise ValueError("CausalLM predicts the next token from the previous ones: build it with causal=True")
        self.config = config
        self.decoder = Transformer(config)

    def forward(self, ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        h = self.decoder(ids, attention_mask)  # (B, T, d)
        return F.linear(h, self.decoder.tok.weight)  # (B, T, V), GPT-2's head has no bias

    @torch.no_grad()
    def generate(self, ids: torch.Tensor, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Append ``max_new_tokens`` tokens to ``ids`` (``(B, T)`` or ``(T,)``), one at a time.

        ``temperature=0`` is greedy decoding (argmax); otherwise the next token is sampled from
        ``softmax(logits / temperature)``, restricted to the ``top_k`` best tokens if given.
        ``generator`` (on the model's device) makes sampling repeatable. Only the last ``max_len``
        tokens are fed back. Returns the prompt followed by the new tokens.
        """
        one = ids.dim() == 1
        ids = ids[None] if one else ids
        if max_new_tokens < 0 or temperature < 0:
            raise ValueError("max_new_tokens and temperature must be >= 0")
        if top_k is not None and top_k < 1:
            raise ValueError(f"top_k must be a positive int or None, got {top_k}")
        was_training = self.training
        self.eval()
        for _ in range(max_new_tokens):
            logits = self(ids[:, -self.config.max_len:])[:, -1, :].float()  # (B, V): scores of the next token
            if temperature == 0:
                nxt = logits.argmax(dim=-1, keepdim=True)
            else:
                logits = logits / temperature
                if top_k is not None:
                    kth = logits.topk(min(top_k, logits.shape[-1]), dim=-1).values[:, -1:]  # (B, 1)
                    logits = logits.masked_fill(logits < kth, float("-inf"))
                nxt = torch.multinomial(logits.softmax(dim=-1), 1, generator=generator)  # (B, 1)
            ids = torch.cat([ids, nxt], dim=1)
        self.train(was_training)
        return ids[0] if one else ids


def parameter_count(config: TransformerConfig) -> int:
    """The number of parameters of ``Transformer(config)``, from the formula of chapter 06.

    Per block ``4 d^2 + 4 d`` (q, k, v, out), ``2 d d_ff + d_ff + d`` (feed-forward) and ``4 d``
    (two LayerNorms); embeddings ``V d`` (+ ``max_len d`` learned positions, + ``S d`` segments);
    one more LayerNorm ``2 d`` (on the embeddings in post-norm, at the end in pre-norm).
    Chapter 10's switches change the terms: keys and values ``d x d_kv`` with grouped-query
    attention, a third ``d x d_ff`` matrix for SwiGLU, ``d`` per RMSNorm, no biases.

    Defined in chapter 06.
    """
    c = config
    d, f, b = c.d_model, c.d_ff, int(c.bias)
    kv = c.kv_heads * c.head_dim
    attn = 2 * d * d + 2 * d * kv + b * (2 * d + 2 * kv)
    ffn = (3 if c.ffn == "swiglu" else 2) * d * f + b * ((2 if c.ffn == "swiglu" else 1) * f + d)
    norm = d if c.norm == "rms" else 2 * d
    emb = c.vocab_size * d + c.type_vocab_size * d
    if c.position == "learned":
        emb += c.max_len * d
    return emb + c.n_layers * (attn + ffn + 2 * norm) + norm


# --- one vector per text --------------------------------------------------------------------


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The mean of each sequence's token vectors, padding left out: ``(B, T, d), (B, T) -> (B, d)``.

    Defined in chapter 06.
    """
    if hidden.dim() != 3 or attention_mask.shape != hidden.shape[:2]:
        raise ValueError(f"mean_pool expects hidden (B, T, d) and attention_mask (B, T), got "
                         f"{tuple(hidden.shape)} and {tuple(attention_mask.shape)}")
    m = attention_mask.to(hidden.dtype).unsqueeze(-1)  # (B, T, 1): 1 for tokens, 0 for padding
    return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp_min(1e-9)  # an all-padding row gives zeros


class SentenceEncoder:
    """A sentence embedder: tokenizer -> :class:`Transformer` -> :func:`mean_pool` (-> unit length).

    ``tokenizer`` is any object with ``encode_batch(texts, max_len=..., truncate=True) -> (ids,
    attention_mask)`` (``minilib.bpe.WordPiece`` or ``ByteBPE``). ``encode(texts, batch_size=32)``
    returns a float32 array ``(n, d_model)``, L2-normalised rows if ``normalize``; ``encode([])``
    returns ``(0, d_model)``. Texts longer than ``max_len`` tokens (default: the model's) are
    truncated, as sentence-transformers does.

    Defined in chapter 06.
    """

    def __init__(self, model: Transformer, tokenizer, normalize: bool = True, max_len: int | None = None,
                 device: str | torch.device | None = None):
        if not isinstance(model, Transformer):
            raise TypeError(f"model must be a minilib.transformer.Transformer, got {type(model).__name__} "
                            "(for a MaskedLM pass model.encoder)")
        if not hasattr(tokenizer, "encode_batch"):
            raise TypeError("tokenizer needs an encode_batch(texts, max_len=..., truncate=True) method")
        self.model, self.tokenizer, self.normalize = model, tokenizer, normalize
        self.max_len = min(max_len or model.config.max_len, model.config.max_len)
        self.device = torch.device(device) if device is not None else next(model.parameters()).device

    @property
    def dim(self) -> int:
        """The width of the sentence vectors: the model's ``d_model``."""
        return self.model.config.d_model

    @torch.no_grad()
    def encode(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """``(n, d_model)`` float32 sentence vectors (unit rows if ``normalize``), computed in eval mode;
        ``encode([])`` is ``(0, d_model)``."""
        if isinstance(texts, str):
            raise TypeError("encode takes a list of texts, got one str: wrap it, encode([text])")
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if not all(isinstance(t, str) for t in texts):
            raise TypeError("every text must be a str")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        was_training = self.model.training
        self.model.eval()  # no dropout: the same text always gets the same vector
        out = []
        try:
            for start in range(0, len(texts), batch_size):
                ids, mask = self.tokenizer.encode_batch(texts[start:start + batch_size], max_len=self.max_len,
                                                        truncate=True)
                ids, mask = ids.to(self.device), mask.to(self.device)
                e = mean_pool(self.model(ids, attention_mask=mask), mask)  # (b, d)
                if self.normalize:
                    e = F.normalize(e, dim=-1)
                out.append(e.float().cpu().numpy())
        finally:   # an error (a text too long, say) must not leave a model in training in eval mode
            self.model.train(was_training)
        return np.concatenate(out)


# --- real weights: name maps ------------------------------------------------------------------


@dataclass(frozen=True)
class Rename:
    """One line of a name map: our parameter ``ours`` is the checkpoint's tensor ``theirs``.

    ``transpose``: GPT-2 stores its linear layers as ``Conv1D`` with weight ``(in, out)``, where
    ``nn.Linear`` keeps ``(out, in)``. ``part``: GPT-2 fuses the query, key and value projections
    into one ``c_attn`` of width ``3 d``; ``part`` 0, 1, 2 takes the q, k or v third.
    ``rope_heads``: Llama checkpoints pair RoPE's dimensions ``i`` and ``i + dh/2`` of a head
    ("rotate half"), ours pairs ``2i`` and ``2i + 1`` (chapter 05); reordering the rows of each of
    the ``rope_heads`` heads of a query or key projection the same way turns one into the other,
    and leaves every dot product ``q . k`` as it was. Defined in chapter 06 (``rope_heads``: chapter 10).
    """

    ours: str
    theirs: str
    transpose: bool = False
    part: int | None = None
    rope_heads: int | None = None

    def how(self) -> str:
        """How the tensor is changed on the way, in words (for the name-map table)."""
        steps = []
        if self.part is not None:
            steps.append(f"take {'qkv'[self.part]} (third {self.part + 1} of 3)")
        if self.transpose:
            steps.append("transpose (Conv1D)")
        if self.rope_heads is not None:
            steps.append(f"interleave each of {self.rope_heads} heads' halves (RoPE pairs)")
        return ", then ".join(steps) or "copy"


def _halves_to_pairs(t: torch.Tensor, heads: int) -> torch.Tensor:
    """Rows ``(0, dh/2, 1, dh/2 + 1, ...)`` of each head of ``t`` ``(heads * dh, ...)``: RoPE's
    "rotate half" layout reordered into interleaved pairs."""
    dh = t.shape[0] // heads
    if dh * heads != t.shape[0] or dh % 2:
        raise ValueError(f"a tensor of {t.shape[0]} rows does not split into {heads} heads of even size: build the "
                         "name map from the checkpoint's own config (its n_heads and n_kv_heads)")
    half = torch.arange(dh // 2)
    order = torch.stack([half, half + dh // 2], dim=1).flatten()  # (dh,)
    return t.unflatten(0, (heads, dh))[:, order].flatten(0, 1)


# BERT's pooler ([CLS] -> dense -> tanh) served next-sentence prediction; mean pooling never uses it.
# position_ids is a constant buffer (0, 1, ..., 511) that some checkpoints store.
BERT_IGNORE = ("pooler.*", "embeddings.position_ids")
# Old GPT-2 checkpoints store the causal mask itself as buffers; we build it on the fly.
GPT2_IGNORE = ("h.*.attn.bias", "h.*.attn.masked_bias")
# Some Llama checkpoints store RoPE's frequencies; apply_rope computes them.
LLAMA_IGNORE = ("rotary_emb.inv_freq", "layers.*.self_attn.rotary_emb.inv_freq")


def bert_name_map(n_layers: int, segments: bool = True) -> list[Rename]:
    """Our names <- ``transformers.BertModel``'s (and all-MiniLM-L6-v2's), every tensor.

    Defined in chapter 06.
    """
    m = [Rename("tok.weight", "embeddings.word_embeddings.weight"),
         Rename("pos.weight.weight", "embeddings.position_embeddings.weight")]
    if segments:
        m.append(Rename("seg.weight", "embeddings.token_type_embeddings.weight"))
    m += [Rename(f"emb_norm.{p}", f"embeddings.LayerNorm.{p}") for p in ("weight", "bias")]
    layer = [("attn.q", "attention.self.query"), ("attn.k", "attention.self.key"),
             ("attn.v", "attention.self.value"), ("attn.out", "attention.output.dense"),
             ("norm1", "attention.output.LayerNorm"), ("ff1", "intermediate.dense"),
             ("ff2", "output.dense"), ("norm2", "output.LayerNorm")]
    for i in range(n_layers):
        for ours, theirs in layer:
            m += [Rename(f"blocks.{i}.{ours}.{p}", f"encoder.layer.{i}.{theirs}.{p}") for p in ("weight", "bias")]
    return m


def gpt2_name_map(n_layers: int) -> list[Rename]:
    """Our names <- ``transformers.GPT2Model``'s: Conv1D weights transposed, ``c_attn`` split in 3.

    Defined in chapter 06.
    """
    m = [Rename("tok.weight", "wte.weight"), Rename("pos.weight.weight", "wpe.weight")]
    for i in range(n_layers):
        b, h = f"blocks.{i}.", f"h.{i}."
        m += [Rename(b + f"norm1.{p}", h + f"ln_1.{p}") for p in ("weight", "bias")]
        for part, name in enumerate("qkv"):
            m.append(Rename(b + f"attn.{name}.weight", h + "attn.c_attn.weight", transpose=True, part=part))
            m.append(Rename(b + f"attn.{name}.bias", h + "attn.c_attn.bias", part=part))
        m += [Rename(b + "attn.out.weight", h + "attn.c_proj.weight", transpose=True),
              Rename(b + "attn.out.bias", h + "attn.c_proj.bias")]
        m += [Rename(b + f"norm2.{p}", h + f"ln_2.{p}") for p in ("weight", "bias")]
        m += [Rename(b + "ff1.weight", h + "mlp.c_fc.weight", transpose=True), Rename(b + "ff1.bias", h + "mlp.c_fc.bias"),
              Rename(b + "ff2.weight", h + "mlp.c_proj.weight", transpose=True), Rename(b + "ff2.bias", h + "mlp.c_proj.bias")]
    m += [Rename(f"final_norm.{p}", f"ln_f.{p}") for p in ("weight", "bias")]
    return m


def llama_name_map(config: TransformerConfig) -> list[Rename]:
    """Our names <- ``transformers.LlamaModel``'s (SmolLM2, Llama, ...): query and key rows
    reordered for our RoPE pairs, SwiGLU's ``gate_proj``/``up_proj``/``down_proj`` as
    ``gate``/``ff1``/``ff2``, the RMSNorm weights. Defined in chapter 10.
    """
    c = config
    m = [Rename("tok.weight", "embed_tokens.weight")]
    for i in range(c.n_layers):
        b, h = f"blocks.{i}.", f"layers.{i}."
        params = ("weight", "bias") if c.bias else ("weight",)
        for ours, theirs, heads in (("q", "q_proj", c.n_heads), ("k", "k_proj", c.kv_heads), ("v", "v_proj", None),
                                    ("out", "o_proj", None)):
            m += [Rename(f"{b}attn.{ours}.{p}", f"{h}self_attn.{theirs}.{p}", rope_heads=heads) for p in params]
        for ours, theirs in (("gate", "gate_proj"), ("ff1", "up_proj"), ("ff2", "down_proj")):
            m += [Rename(f"{b}{ours}.{p}", f"{h}mlp.{theirs}.{p}") for p in params]
        m += [Rename(b + "norm1.weight", h + "input_layernorm.weight"),
              Rename(b + "norm2.weight", h + "post_attention_layernorm.weight")]
    m.append(Rename("final_norm.weight", "norm.weight"))
    return m


def convert_state_dict(theirs: Mapping[str, torch.Tensor], name_map: Sequence[Rename],
                       ignore: Sequence[str] = ()) -> dict[str, torch.Tensor]:
    """A checkpoint's tensors under our names, following ``name_map``.

    Every tensor the map names must be present; every tensor of the checkpoint must be used by
    the map or match a pattern of ``ignore`` (``fnmatch`` style, e.g. ``"pooler.*"``): anything
    else means the checkpoint is not the architecture the map describes, and a ``KeyError``
    lists the names.

    Defined in chapter 06.
    """
    missing = sorted({r.theirs for r in name_map if r.theirs not in theirs})
    used = {r.theirs for r in name_map}
    unexpected = [k for k in theirs if k not in used and not any(fnmatch.fnmatchcase(k, p) for p in ignore)]
    if missing or unexpected:
        raise KeyError(
            f"the checkpoint does not fit the name map: {len(missing)} tensors missing {missing[:8]}, "
            f"{len(unexpected)} not mapped {unexpected[:8]}. Is it the architecture of the map (a BERT map for "
            "a BERT checkpoint)? Checkpoints with a head store names with a prefix such as 'bert.': strip it first."
        )
    out = {}
    for r in name_map:
        t = theirs[r.theirs]
        if r.part is not None:
            t = t.chunk(3, dim=-1)[r.part]  # c_attn: (d, 3d) weight / (3d,) bias -> the q, k or v third
        if r.transpose:
            t = t.t()  # Conv1D (in, out) -> Linear (out, in)
        if r.rope_heads is not None:
            t = _halves_to_pairs(t, r.rope_heads)
        out[r.ours] = t.contiguous()
    return out


def load_weights(model: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> nn.Module:
    """Copy ``state_dict`` into ``model`` after checking it fits exactly; returns ``model``.

    Shapes are checked first, in the model's own order, and the first tensor whose shape differs
    raises a ``ValueError`` naming it (the usual cause: a config that does not match the
    checkpoint). Then any missing or unexpected names raise a ``KeyError`` listing them.

    Defined in chapter 06.
    """
    own = model.state_dict()
    for name, t in own.items():
        if name in state_dict and tuple(state_dict[name].shape) != tuple(t.shape):
            raise ValueError(
                f"shape mismatch at {name!r}: the weights have {tuple(state_dict[name].shape)}, the model expects "
                f"{tuple(t.shape)}. Build the model with the checkpoint's own config (config_from_bert / "
                "config_from_gpt2 read it), e.g. the same d_model, d_ff, vocab_size and max_len."
            )
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    if missing or unexpected:
        raise KeyError(f"the weights do not fit the model: missing {missing}, unexpected {unexpected}")
    model.load_state_dict(dict(state_dict), strict=True)
    return model


_HF_ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "relu": "relu",
                   "silu": "silu"}


def _activation_from_hf(name: str) -> str:
    if name not in _HF_ACTIVATIONS:
        raise ValueError(f"activation {name!r} is not supported: minilib knows {sorted(_HF_ACTIVATIONS)}")
    return _HF_ACTIVATIONS[name]


def config_from_bert(cfg: Mapping) -> TransformerConfig:
    """A :class:`TransformerConfig` from a BERT ``config.json`` (a dict, e.g. ``BertConfig.to_dict()``).

    Defined in chapter 06.
    """
    if cfg.get("position_embedding_type", "absolute") != "absolute":
        raise ValueError(f"position_embedding_type {cfg['position_embedding_type']!r}: only 'absolute' maps to ours")
    return TransformerConfig(
        vocab_size=cfg["vocab_size"], d_model=cfg["hidden_size"], n_layers=cfg["num_hidden_layers"],
        n_heads=cfg["num_attention_heads"], d_ff=cfg["intermediate_size"], max_len=cfg["max_position_embeddings"],
        dropout=cfg.get("hidden_dropout_prob", 0.1), norm_first=False, causal=False,
        activation=_activation_from_hf(cfg.get("hidden_act", "gelu")), type_vocab_size=cfg.get("type_vocab_size", 2),
        layer_norm_eps=cfg.get("layer_norm_eps", 1e-12), position="learned", pad_id=cfg.get("pad_token_id") or 0)


def config_from_gpt2(cfg: Mapping) -> TransformerConfig:
    """A :class:`TransformerConfig` from a GPT-2 ``config.json`` (a dict, e.g. ``GPT2Config.to_dict()``).

    Defined in chapter 06.
    """
    for flag in ("scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn"):
        if cfg.get(flag):
            raise ValueError(f"GPT-2 option {flag}=True is not implemented in minilib.transformer")
    if not cfg.get("scale_attn_weights", True):
        raise ValueError("GPT-2 option scale_attn_weights=False is not implemented (we always divide by sqrt(d))")
    return TransformerConfig(
        vocab_size=cfg["vocab_size"], d_model=cfg["n_embd"], n_layers=cfg["n_layer"], n_heads=cfg["n_head"],
        d_ff=cfg.get("n_inner") or 4 * cfg["n_embd"], max_len=cfg["n_positions"], dropout=cfg.get("resid_pdrop", 0.1),
        norm_first=True, causal=True, activation=_activation_from_hf(cfg.get("activation_function", "gelu_new")),
        type_vocab_size=0, layer_norm_eps=cfg.get("layer_norm_epsilon", 1e-5), position="learned", pad_id=0)


def config_from_llama(cfg: Mapping) -> TransformerConfig:
    """A :class:`TransformerConfig` from a Llama-family ``config.json`` (``model_type`` "llama", e.g.
    SmolLM2): pre-norm with RMSNorm, SwiGLU with SiLU, grouped-query attention, RoPE with the
    checkpoint's base, no biases. Options we do not implement raise a ``ValueError``.
    Defined in chapter 10.
    """
    rope = dict(cfg.get("rope_parameters") or {})        # transformers 5 keeps RoPE's settings here
    scaling = cfg.get("rope_scaling") or {}
    kind = rope.get("rope_type") or scaling.get("rope_type") or scaling.get("type") or "default"
    if kind != "default":
        raise ValueError(f"RoPE scaling {kind!r} is not implemented in minilib (only the plain rotation)")
    base = rope.get("rope_theta", cfg.get("rope_theta", 10000.0))
    d, heads = cfg["hidden_size"], cfg["num_attention_heads"]
    if cfg.get("head_dim") not in (None, d // heads):
        raise ValueError(f"head_dim={cfg['head_dim']} differs from hidden_size / heads = {d // heads}: not implemented")
    if bool(cfg.get("attention_bias", False)) != bool(cfg.get("mlp_bias", False)):
        raise ValueError("attention_bias and mlp_bias differ: minilib has one bias switch for both")
    pad = cfg.get("pad_token_id")
    return TransformerConfig(
        vocab_size=cfg["vocab_size"], d_model=d, n_layers=cfg["num_hidden_layers"], n_heads=heads,
        d_ff=cfg["intermediate_size"], max_len=cfg.get("max_position_embeddings", 2048), dropout=0.0,
        norm_first=True, causal=True, activation=_activation_from_hf(cfg.get("hidden_act", "silu")), type_vocab_size=0,
        layer_norm_eps=cfg.get("rms_norm_eps", 1e-6), position="rope", pad_id=pad if pad is not None else 0,
        norm="rms", ffn="swiglu", n_kv_heads=cfg.get("num_key_value_heads") or heads,
        bias=bool(cfg.get("attention_bias", False)), rope_base=float(base))


def from_transformers(hf_model: nn.Module, head: bool = False) -> Transformer | CausalLM:
    """Our :class:`Transformer` with the weights of a ``transformers`` BERT, GPT-2 or Llama-family model.

    ``hf_model`` may be the bare model (``BertModel``, ``GPT2Model``, ``LlamaModel``) or one with a
    head (``GPT2LMHeadModel``, ``LlamaForCausalLM``, ...): its ``base_model`` is read. With
    ``head=True`` a decoder comes back as our :class:`CausalLM`, whose next-token head is the token
    table; a checkpoint whose output layer is not tied to its input embeddings is refused. Building
    our model draws random initial weights that the checkpoint's then replace; the caller's random
    state is put back afterwards, so loading weights leaves the random numbers drawn later unchanged.
    Defined in chapter 06 (Llama and ``head``: chapter 10).
    """
    cfg = hf_model.config.to_dict()
    kind = cfg.get("model_type")
    if kind == "bert":
        config = config_from_bert(cfg)
        name_map, ignore = bert_name_map(config.n_layers, segments=config.type_vocab_size > 0), BERT_IGNORE
    elif kind == "gpt2":
        config = config_from_gpt2(cfg)
        name_map, ignore = gpt2_name_map(config.n_layers), GPT2_IGNORE
    elif kind == "llama":
        config = config_from_llama(cfg)
        name_map, ignore = llama_name_map(config), LLAMA_IGNORE
    else:
        raise ValueError(f"from_transformers knows BERT, GPT-2 and Llama-family models, got model_type {kind!r}")
    base = getattr(hf_model, "base_model", hf_model)
    theirs = convert_state_dict(base.state_dict(), name_map, ignore)
    if head:
        if not config.causal:
            raise ValueError(f"head=True gives a next-token model; a {kind} model is an encoder: use head=False")
        out = hf_model.get_output_embeddings() if hasattr(hf_model, "get_output_embeddings") else None
        if out is None:
            raise ValueError("head=True needs the model with its language-model head (e.g. LlamaForCausalLM or "
                             "GPT2LMHeadModel, from AutoModelForCausalLM), not the bare model")
        if not torch.equal(out.weight.detach().cpu(), theirs["tok.weight"].detach().cpu()):
            raise ValueError("this checkpoint's output layer is not tied to its token embeddings; our CausalLM's "
                             "head is the token table, so it cannot hold it")
    with torch.random.fork_rng(devices=[]):   # its random initial weights are all replaced below
        model = CausalLM(config) if head else Transformer(config)
    load_weights(model.decoder if head else model, theirs)
    return model.eval()


def _minilm_folder(folder) -> Path:
    if folder is None:
        from . import data

        return Path(data.load("minilm"))
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder} holds no config.json: pass the all-MiniLM-L6-v2 folder (data.load('minilm'))")
    return folder


def load_minilm(folder: str | Path | None = None) -> Transformer:
    """The real all-MiniLM-L6-v2 encoder (6 layers, 384-d, 12 heads) in our :class:`Transformer`.

    Reads ``config.json`` and ``model.safetensors`` from ``folder`` (default:
    ``minilib.data.load("minilm")``), renames every tensor with :func:`bert_name_map` and loads
    them with the checks of :func:`load_weights`. Returns the model in eval mode, on the CPU.

    Defined in chapter 06.
    """
    from safetensors.torch import load_file

    folder = _minilm_folder(folder)
    config = config_from_bert(json.loads((folder / "config.json").read_text()))
    model = Transformer(config)
    theirs = load_file(str(folder / "model.safetensors"))
    load_weights(model, convert_state_dict(theirs, bert_name_map(config.n_layers), BERT_IGNORE))
    return model.eval()


def load_minilm_encoder(folder: str | Path | None = None, device: str | torch.device | None = None) -> SentenceEncoder:
    """all-MiniLM-L6-v2 as a sentence embedder built only from minilib parts: our WordPiece
    (``minilib.bpe``), our :class:`Transformer`, :func:`mean_pool` and L2 normalisation, with
    sentence-transformers' ``max_seq_length`` (256). ``encode(texts) -> (n, 384)``.

    Defined in chapter 06.
    """
    from .bpe import WordPiece

    folder = _minilm_folder(folder)
    model = load_minilm(folder)
    if device is not None:
        model = model.to(device)
    sbert = folder / "sentence_bert_config.json"
    max_len = json.loads(sbert.read_text()).get("max_seq_length", 256) if sbert.is_file() else 256
    return SentenceEncoder(model, WordPiece.from_vocab(folder / "vocab.txt"), normalize=True, max_len=max_len)


# --- save and load our own models -----------------------------------------------------------

_KINDS = {"Transformer": Transformer, "MaskedLM": MaskedLM, "CausalLM": CausalLM}


def save(model: nn.Module, folder: str | Path) -> Path:
    """Write ``model`` (a Transformer, MaskedLM or CausalLM) as ``config.json`` + ``model.safetensors``.

    Defined in chapter 06.
    """
    from safetensors.torch import save_file

    kind = type(model).__name__
    if kind not in _KINDS:
        raise TypeError(f"save knows {sorted(_KINDS)}, got {kind}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"kind": kind, **asdict(model.config)}, indent=1))
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"))
    return folder


def load(folder: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """The model :func:`save` wrote in ``folder``, in eval mode on ``device``.

    Defined in chapter 06.
    """
    from safetensors.torch import load_file

    folder = Path(folder)
    if not (folder / "config.json").is_file() or not (folder / "model.safetensors").is_file():
        raise FileNotFoundError(f"{folder} needs config.json and model.safetensors (written by transformer.save)")
    cfg = json.loads((folder / "config.json").read_text())
    kind = cfg.pop("kind", "Transformer")
    model = _KINDS[kind](TransformerConfig(**cfg))
    load_weights(model, load_file(str(folder / "model.safetensors")))
    return model.to(device).eval()


# --- the book's own models, for later chapters ------------------------------------------------

#: The recipe of chapter 06 (its notebook's ``cfg``), per profile. Later chapters (07-11) start from
#: the models this recipe trains; :func:`book_models` trains them once and caches them.
BOOK_RECIPE = {
    "quick": dict(vocab_size=2000, block=64, d_model=64, n_layers=2, n_heads=4, batch_size=16, steps_mlm=1500,
                  steps_clm=1000, lr_mlm=2e-3, lr_clm=2e-3, dropout=0.0, held_out=0.1),
    "full": dict(vocab_size=8000, block=128, d_model=256, n_layers=6, n_heads=8, batch_size=128, steps_mlm=4000,
                 steps_clm=4000, lr_mlm=5e-4, lr_clm=1e-3, dropout=0.1, held_out=0.05),
}


def book_documents(profile: str) -> tuple[list[str], list[str]]:
    """``(train_docs, held_docs)``: chapter 06's running-text documents and its held-out split.

    Wikipedia articles without markup (quick), plus BBC News, the King James Bible and GCIDE
    definitions (full), whitespace collapsed, split at random (seed 0) as chapter 06 does.

    Defined in chapter 06.
    """
    import re

    from . import data, text

    if profile not in BOOK_RECIPE:
        raise ValueError(f"unknown profile {profile!r}: use one of {sorted(BOOK_RECIPE)}")
    raw = [text.strip_wiki_markup(markup) for _, markup in data.load("enwiki_sample")]
    if profile == "full":
        raw += data.load("bbc_news")[0] + data.load("kjv") + data.load("gcide")
    docs = [d for d in (re.sub(r"\s+", " ", t).strip() for t in raw) if d]
    order = np.random.default_rng(0).permutation(len(docs))
    n_held = max(1, round(BOOK_RECIPE[profile]["held_out"] * len(docs)))
    return [docs[i] for i in order[n_held:]], [docs[i] for i in order[:n_held]]


def book_cache_name(what: str, profile: str) -> str:
    """The file name under ``data.cache_dir() / "derived"`` of one of chapter 06's cached products:
    ``what`` is ``"bpe"`` (the tokenizer), ``"train"`` or ``"held"`` (token streams), ``"encoder"``
    or ``"decoder"`` (trained weights). The names are the ones chapter 06's notebook writes, so the
    notebook and :func:`book_models` share one cache (``scripts/gpu_bundle.py`` ships them too).

    Defined in chapter 06.
    """
    if profile not in BOOK_RECIPE:
        raise ValueError(f"unknown profile {profile!r}: use one of {sorted(BOOK_RECIPE)}")
    v = BOOK_RECIPE[profile]["vocab_size"]
    names = {"bpe": f"ch06-bpe-{profile}-{v}-v1.json", "train": f"ch06-train-{profile}-{v}-v1.npy",
             "held": f"ch06-held-{profile}-{v}-v1.npy", "encoder": f"ch06-encoder-{profile}-v1.safetensors",
             "decoder": f"ch06-decoder-{profile}-v1.safetensors"}
    if what not in names:
        raise ValueError(f"what must be one of {sorted(names)}, got {what!r}")
    return names[what]


def book_tokenizer(profile: str):
    """Chapter 06's byte-level BPE (:class:`minilib.bpe.ByteBPE`) for ``profile``, trained on the
    training documents of :func:`book_documents` with :data:`BOOK_RECIPE`'s vocabulary size and
    cached (``data.cached_derived``) under the name chapter 06's notebook uses. Defined in chapter 06."""
    from . import data
    from .bpe import ByteBPE

    if profile not in BOOK_RECIPE:
        raise ValueError(f"unknown profile {profile!r}: use one of {sorted(BOOK_RECIPE)}")
    v = BOOK_RECIPE[profile]["vocab_size"]
    return ByteBPE.load(data.cached_derived(book_cache_name("bpe", profile),
                                            lambda p: ByteBPE.train(book_documents(profile)[0], v).save(p)))


def book_token_ids(split: str, profile: str) -> np.ndarray:
    """Chapter 06's token stream (int32) of the ``"train"`` or ``"held"`` documents: each document
    encoded with :func:`book_tokenizer` and closed by ``<eos>``, cached under the notebook's names.
    Defined in chapter 06."""
    from . import data

    if split not in ("train", "held"):
        raise ValueError(f"split must be 'train' or 'held', got {split!r}")
    tok = book_tokenizer(profile)

    def build(p):
        texts = book_documents(profile)[0 if split == "train" else 1]
        ids = [i for t in texts for i in tok.encode(t) + [tok.eos_id]]
        with open(p, "wb") as f:
            np.save(f, np.array(ids, dtype=np.int32))

    return np.load(data.cached_derived(book_cache_name(split, profile), build))


def _book_config(kind: str, profile: str, vocab_size: int) -> TransformerConfig:
    """The :class:`TransformerConfig` of chapter 06's encoder or decoder under :data:`BOOK_RECIPE`."""
    r = BOOK_RECIPE[profile]
    cfg = TransformerConfig(vocab_size=vocab_size, d_model=r["d_model"], n_layers=r["n_layers"], n_heads=r["n_heads"],
                            d_ff=4 * r["d_model"], max_len=r["block"], dropout=r["dropout"], norm_first=False,
                            causal=False, activation="gelu", position="rope")
    if kind == "decoder":
        cfg = replace(cfg, norm_first=True, causal=True, activation="gelu_tanh")
    return cfg


def store_book_model(model: nn.Module, kind: str, profile: str | None = None) -> Path:
    """Hand a model trained with :data:`BOOK_RECIPE` to the cache where :func:`book_models` looks.

    Chapter 06's notebook trains the encoder (``kind="encoder"``, a :class:`MaskedLM`) and the decoder
    (``"decoder"``, a :class:`CausalLM`) in view, with the same seeds and batches as
    :func:`book_models`; storing them spares chapters 07-11 a second training of the same models.
    The model must have the recipe's configuration for ``profile`` (default: the current one), or a
    ``ValueError`` names the first field that differs. If the cache already holds weights for this
    model (an earlier run, or :func:`book_models` itself), they are kept, with a warning if they differ
    from ``model``'s (training on a GPU is not bit-reproducible). Returns the cached file.

    Defined in chapter 06.
    """
    import warnings

    from safetensors.torch import load_file, save_file

    from . import data
    from .profile import current

    expected_cls = {"encoder": MaskedLM, "decoder": CausalLM}
    if kind not in expected_cls:
        raise ValueError(f"kind must be 'encoder' or 'decoder', got {kind!r}")
    profile = profile or current().name
    if profile not in BOOK_RECIPE:
        raise ValueError(f"unknown profile {profile!r}: use one of {sorted(BOOK_RECIPE)}")
    if not isinstance(model, expected_cls[kind]):
        raise ValueError(f"the book's {kind} is a {expected_cls[kind].__name__}, got {type(model).__name__}")
    want = asdict(_book_config(kind, profile, model.config.vocab_size))
    got = asdict(model.config)
    for field in want:
        if field != "pad_id" and got[field] != want[field]:
            raise ValueError(f"this {kind} does not follow BOOK_RECIPE[{profile!r}]: {field} is {got[field]!r}, "
                             f"the recipe says {want[field]!r}; train it with the recipe or call book_models()")
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    wrote = []

    def write(p):
        save_file(state, str(p), metadata={"config": json.dumps(got)})
        wrote.append(p)

    path = data.cached_derived(book_cache_name(kind, profile), write)
    if wrote:   # stored just now: nothing to compare
        return path
    cached = load_file(str(path))
    if cached.keys() != state.keys() or any(not torch.equal(cached[k], state[k]) for k in state):
        warnings.warn(f"the cache already held other weights for the book's {kind} ({path.name}, another run's): "
                      f"later chapters load those; delete the file to store these instead", stacklevel=2)
    return path


def book_models(kind: str = "encoder", profile: str | None = None, device: str | torch.device | None = None,
                progress: bool = True):
    """``(model, tokenizer)``: the encoder or decoder chapter 06 pretrains on the book corpus.

    ``kind="encoder"`` is the post-norm masked-LM (:class:`MaskedLM`), ``"decoder"`` the pre-norm
    causal LM (:class:`CausalLM`), both with rotary positions and chapter 05's byte-level BPE
    (``minilib.bpe.ByteBPE``), trained with :data:`BOOK_RECIPE` for ``profile`` (default: the
    current one). The first call trains (about a minute per model in the quick profile on a CPU,
    single-threaded so the weights do not depend on the core count) and caches the weights with
    ``data.cached_derived``; later calls load them. The model comes back in eval mode on
    ``device`` (default: the profile's). ``SentenceEncoder(model.encoder, tokenizer)`` turns the
    encoder into a sentence embedder.

    Defined in chapter 06.
    """
    from . import data, train
    from .profile import current

    if kind not in ("encoder", "decoder"):
        raise ValueError(f"kind must be 'encoder' or 'decoder', got {kind!r}")
    profile = profile or current().name
    if profile not in BOOK_RECIPE:
        raise ValueError(f"unknown profile {profile!r}: use one of {sorted(BOOK_RECIPE)}")
    r = BOOK_RECIPE[profile]
    device = torch.device(device) if device is not None else current().device
    tok = book_tokenizer(profile)

    def write_model(p):
        from safetensors.torch import save_file

        blocks = train.lm_blocks(book_token_ids("train", profile), r["block"])
        cfg = replace(_book_config(kind, profile, tok.vocab_size), pad_id=tok.pad_id)
        # data.cached_derived runs this on one CPU thread: the weights do not depend on the core count.
        torch.manual_seed(0)
        if kind == "encoder":
            model = MaskedLM(cfg)
            gen = torch.Generator().manual_seed(0)
            specials = [tok.pad_id, tok.mask_id, tok.bos_id, tok.eos_id]

            def loss_fn(m, b):
                inputs, labels = train.mask_tokens(b, mask_id=tok.mask_id, vocab_size=tok.vocab_size,
                                                   special_ids=specials, generator=gen)
                chosen = labels != train.IGNORE_INDEX
                return F.cross_entropy(m(inputs, select=chosen), labels[chosen])

            train.fit(model, train.Batches(blocks, r["batch_size"], seed=0), loss_fn, steps=r["steps_mlm"],
                      lr=r["lr_mlm"], device=device, progress=progress, desc="chapter-06 masked LM")
        else:
            model = CausalLM(cfg)
            train.fit(model, train.Batches(blocks, r["batch_size"], seed=1),
                      lambda m, b: train.causal_lm_loss(m(b), b), steps=r["steps_clm"], lr=r["lr_clm"],
                      schedule="cosine", device=device, progress=progress, desc="chapter-06 causal LM")
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(p), metadata={"config": json.dumps(asdict(model.config))})

    path = data.cached_derived(book_cache_name(kind, profile), write_model)
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as f:
        cfg = TransformerConfig(**json.loads(f.metadata()["config"]))
    model = (MaskedLM if kind == "encoder" else CausalLM)(cfg)
    load_weights(model, load_file(str(path)))
    return model.to(device).eval(), tok
