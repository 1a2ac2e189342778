"""LLMs as embedders: pooling a decoder, switching its attention, LLM2Vec, prompt-based embeddings.

Read it top to bottom, as chapter 10 builds it:

1. poolings of a decoder's token states ``(B, T, d)`` into ``(B, d)``: :func:`mean`,
   :func:`first_token`, :func:`last_token` (the end-of-sequence token, with left or right padding)
   and :func:`position_weighted_mean` (SGPT's weights, growing with the position); :func:`pool`
   dispatches by name;
2. two trainable poolings: :class:`LatentAttentionPooling` (NV-Embed: the tokens attend to a
   trainable latent array, then an MLP, then the mean) and :class:`MultiLayerPooling` (a softmax
   mix of every layer's states, then the mean);
3. the attention switch: :func:`visibility` says which keys each query may see, causal or
   bidirectional; :class:`Decoder` gives one interface to two kinds of causal LM, the book's own
   ``minilib.transformer.CausalLM`` (:class:`MinilibDecoder`) and any ``transformers`` decoder
   (:class:`HFDecoder`, loaded with :func:`load_decoder` or :func:`load_smollm2`), each with a
   ``bidirectional`` switch;
4. prompts: :func:`segments` wraps a text in a template (PromptEOL's "means in one word", echo
   embeddings, a task instruction) and says which of its tokens are pooled;
5. :class:`DecoderEmbedder`: decoder + prompt + attention + pooling, a differentiable
   ``nn.Module`` with the book's ``encode(texts) -> (n, d)``;
6. LLM2Vec's two training stages: masked next-token prediction (:func:`mntp_inputs`,
   :func:`mntp_loss`, :func:`mntp_loss_fn`, :func:`mntp_eval`) and unsupervised SimCSE
   (:func:`simcse_loss_fn`, on ``minilib.contrastive.info_nce``), both losses for
   ``minilib.train.fit``, fed by :func:`text_batches`; :func:`train_mntp` and :func:`train_simcse`
   run them.

:class:`Lookup` and :func:`precompute` hand vectors computed once (several poolings of one run of
the decoder) to ``minilib.bench``.

Every embedder checks its output: NaN or infinity raises a ``FloatingPointError``.

Defined in chapter 10.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import pooling, train
from .contrastive import info_nce
from .text import text_list
from .transformer import CausalLM, Transformer, attention, merge_heads, split_heads

__all__ = [
    "POOLINGS", "PROMPTS", "mean", "first_token", "last_token", "last_token_index", "position_weights",
    "position_weighted_mean", "pool", "LatentAttentionPooling", "MultiLayerPooling", "visibility",
    "attention_bias", "Decoder", "MinilibDecoder", "HFDecoder", "as_decoder", "load_decoder", "load_smollm2",
    "segments", "DecoderEmbedder", "Lookup", "precompute", "mntp_inputs", "mntp_loss", "mntp_loss_fn", "mntp_eval",
    "simcse_loss_fn", "text_batches", "train_mntp", "train_simcse",
]

#: The parameter-free poolings of a decoder's states (:func:`pool`); the trainable ones are modules.
POOLINGS = ("mean", "first_token", "last_token", "weighted_mean")


# --- 1. poolings of a decoder's token states -------------------------------------------------------


def _mask(hidden: torch.Tensor, attention_mask: torch.Tensor, name: str) -> torch.Tensor:
    # minilib.pooling's check: shapes, and only finite numbers at real tokens.
    return pooling._check(hidden, attention_mask, name)


def mean(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of the token vectors, padding left out: ``(B, T, d), (B, T) -> (B, d)``.

    Chapter 07's :func:`minilib.pooling.mean`; under causal attention token ``t`` has read
    tokens ``0..t`` only, so early tokens weigh as much as late, better-informed ones.
    Defined in chapter 10.
    """
    return pooling.mean(hidden, attention_mask)


def first_token(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The first real token's vector: ``(B, T, d), (B, T) -> (B, d)``.

    BERT's ``[CLS]`` position; in a causal decoder this token has seen nothing but itself, so the
    vector depends on the first token alone. It is here to show that. Defined in chapter 10.
    """
    return pooling.cls(hidden, attention_mask)


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """``(B,)`` index of each row's last real token (mask 1), with left or right padding.

    A row without any token gets index 0. Defined in chapter 10.
    """
    if attention_mask.dim() != 2:
        raise ValueError(f"attention_mask must be (batch, seq), got {tuple(attention_mask.shape)}")
    m = attention_mask.bool()
    T = m.shape[1]
    # argmax returns the first maximum: on the reversed mask that is the last 1 of the row.
    idx = (T - 1) - m.flip(1).to(torch.uint8).argmax(dim=1)
    return torch.where(m.any(dim=1), idx, torch.zeros_like(idx))


def last_token(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The last real token's vector (the appended EOS, if any): ``(B, T, d), (B, T) -> (B, d)``.

    Under causal attention it is the only position that has read the whole text: the pooling
    of SGPT's "last token", E5-Mistral and LLM2Vec's EOS variant. Works with left padding (the last
    column) and right padding (the last 1 of each row). A row without any token gives zeros.
    Defined in chapter 10.
    """
    mask = _mask(hidden, attention_mask, "llm_embed.last_token")
    idx = last_token_index(mask)  # (B,)
    out = hidden[torch.arange(hidden.shape[0], device=hidden.device), idx]  # (B, d)
    return out.masked_fill(~mask.any(dim=1, keepdim=True), 0.0)


def position_weights(attention_mask: torch.Tensor, pool_mask: torch.Tensor | None = None) -> torch.Tensor:
    """SGPT's weights ``w_t = t / sum_s s`` for the real tokens ``t = 1..n`` of each row: ``(B, T)``.

    Positions count real tokens only (``cumsum`` of the mask), so left padding does not shift
    them. With a ``pool_mask`` (a subset of the tokens, e.g. the text inside a prompt) the weights
    keep their absolute positions but only pooled tokens get any, renormalised to sum to 1. A
    row with nothing to pool gets zeros. Defined in chapter 10.
    """
    m = attention_mask.to(torch.float64)
    pos = m.cumsum(dim=1) * m  # (B, T): 1, 2, ..., n at the real tokens, 0 at padding
    if pool_mask is not None:
        if pool_mask.shape != attention_mask.shape:
            raise ValueError(f"pool_mask must be shaped like attention_mask {tuple(attention_mask.shape)}, "
                             f"got {tuple(pool_mask.shape)}")
        pos = pos * pool_mask.to(torch.float64)
    return (pos / pos.sum(dim=1, keepdim=True).clamp_min(1e-12)).float()


def position_weighted_mean(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """SGPT's position-weighted mean (Muennighoff 2022): ``sum_t w_t h_t`` with ``w_t`` growing
    linearly with ``t``: ``(B, T, d), (B, T) -> (B, d)``.

    Later tokens have read more of the text, so they count more. Defined in chapter 10.
    """
    mask = _mask(hidden, attention_mask, "llm_embed.position_weighted_mean")
    return pooling.weighted_mean(hidden, mask, position_weights(mask).to(hidden.device))


def pool(name: str, hidden: torch.Tensor, attention_mask: torch.Tensor,
         pool_mask: torch.Tensor | None = None) -> torch.Tensor:
    """The parameter-free pooling called ``name`` (one of :data:`POOLINGS`): ``-> (B, d)``.

    ``attention_mask`` marks the real tokens; ``pool_mask`` (default: the same) the tokens whose
    states are averaged: ``mean``, ``weighted_mean`` and ``first_token`` read only those (a prompt's
    own words and an appended EOS are left out), ``last_token`` reads the last real token
    whatever the pool mask says. A row whose pool mask is empty falls back to all its tokens.
    Defined in chapter 10.
    """
    if name not in POOLINGS:
        raise ValueError(f"unknown pooling {name!r}: choose one of {POOLINGS}, or pass a trainable "
                         "LatentAttentionPooling / MultiLayerPooling module")
    if name == "last_token":
        return last_token(hidden, attention_mask)
    pm = _pool_mask(attention_mask, pool_mask)
    if name == "weighted_mean":
        mask = _mask(hidden, attention_mask, "llm_embed.pool")
        return pooling.weighted_mean(hidden, mask, position_weights(mask, pm).to(hidden.device))
    return {"mean": mean, "first_token": first_token}[name](hidden, pm)


def _pool_mask(attention_mask: torch.Tensor, pool_mask: torch.Tensor | None) -> torch.Tensor:
    if pool_mask is None:
        return attention_mask
    if pool_mask.shape != attention_mask.shape:
        raise ValueError(f"pool_mask must be shaped like attention_mask {tuple(attention_mask.shape)}, "
                         f"got {tuple(pool_mask.shape)}")
    pm = pool_mask.to(attention_mask.device).bool() & attention_mask.bool()
    empty = ~pm.any(dim=1, keepdim=True)  # e.g. an empty text: pool its template tokens instead
    return torch.where(empty, attention_mask.bool(), pm).to(attention_mask.dtype)


# --- 2. trainable poolings --------------------------------------------------------------------------


class LatentAttentionPooling(nn.Module):
    """NV-Embed's latent-attention layer (Lee et al. 2024): ``forward(hidden (B, T, d), mask (B, T)) -> (B, d)``.

    Each token state is a *query* into a trainable latent array ``L (n_latents, d)`` that serves as
    keys and values: ``o_t = softmax(q_t K^T / sqrt(d_h)) V`` per head, with ``q = W_q RMS(h)``,
    ``K = W_k L``, ``V = W_v L``; then an MLP (two linear layers and a GELU); both in residual
    branches, as NV-Embed's released code has them; then the mean over the real tokens. The
    output projections start at zero, so an untrained layer *is* mean pooling, and training
    moves it away only as far as the loss asks. NV-Embed uses 512 latents and 8 heads on a
    4096-wide Mistral-7B. Defined in chapter 10.
    """

    def __init__(self, d_model: int, n_latents: int = 32, n_heads: int = 4, d_ff: int | None = None):
        super().__init__()
        for name, v in (("d_model", d_model), ("n_latents", n_latents), ("n_heads", n_heads)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"LatentAttentionPooling: {name} must be a positive int, got {v!r}")
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} is not a multiple of n_heads={n_heads}")
        d_ff = d_ff or 4 * d_model
        self.n_heads = n_heads
        self.latents = nn.Parameter(torch.randn(n_latents, d_model) * 0.02)  # (r, d): the dictionary
        self.norm = nn.RMSNorm(d_model)  # a decoder's states have large, uneven scales: normalise the queries
        self.q, self.k, self.v = (nn.Linear(d_model, d_model, bias=False) for _ in range(3))
        self.out = nn.Linear(d_model, d_model, bias=False)
        self.ff1, self.ff2 = nn.Linear(d_model, d_ff), nn.Linear(d_ff, d_model)
        self.ff_norm = nn.RMSNorm(d_model)
        for lin in (self.q, self.k, self.v, self.ff1):
            nn.init.normal_(lin.weight, std=d_model ** -0.5)
        nn.init.zeros_(self.ff1.bias)
        # Zero output layers: both residual branches add nothing at first, so training starts at mean pooling.
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.ff2.weight)
        nn.init.zeros_(self.ff2.bias)

    def token_states(self, hidden: torch.Tensor) -> torch.Tensor:
        """The transformed token states ``(B, T, d)`` before the mean."""
        q = split_heads(self.q(self.norm(hidden)), self.n_heads)  # (B, H, T, dh)
        lat = self.latents[None].to(hidden.dtype)  # (1, r, d)
        k = split_heads(self.k(lat), self.n_heads)  # (1, H, r, dh): broadcast over the batch
        v = split_heads(self.v(lat), self.n_heads)
        o, _ = attention(q, k, v)  # (B, H, T, dh): every token reads the latent dictionary
        x = hidden + self.out(merge_heads(o))
        return x + self.ff2(F.gelu(self.ff1(self.ff_norm(x))))

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        mask = _mask(hidden, attention_mask, "LatentAttentionPooling")
        if hidden.shape[-1] != self.latents.shape[1]:
            raise ValueError(f"LatentAttentionPooling was built for d_model={self.latents.shape[1]}, "
                             f"got states of width {hidden.shape[-1]}")
        return pooling.mean(self.token_states(hidden), mask)


class MultiLayerPooling(nn.Module):
    """A trainable mix of layers, then the mean: ``forward(hidden_states, mask (B, T)) -> (B, d)``.

    ``hidden_states`` is the list a decoder returns with ``output_hidden_states=True`` (the
    embeddings, then each layer). The mix is ``gamma * sum_l softmax(s)_l H_l`` over the layers in
    ``layers`` (default: all ``n_states``), ELMo's scalar mix; ``s`` starts at zero (every layer
    weighs the same), ``gamma`` at 1. ``weights`` gives the current softmax.
    Defined in chapter 10.
    """

    def __init__(self, n_states: int, layers: Sequence[int] | None = None):
        super().__init__()
        if isinstance(n_states, bool) or not isinstance(n_states, int) or n_states < 1:
            raise ValueError(f"n_states must be the number of hidden states (n_layers + 1), got {n_states!r}")
        layers = list(range(n_states)) if layers is None else [int(i) for i in layers]
        if not layers or any(not -n_states <= i < n_states for i in layers):
            raise ValueError(f"layers must be indices into the {n_states} hidden states, got {layers}")
        self.n_states, self.layers = n_states, [i % n_states for i in layers]
        self.scores = nn.Parameter(torch.zeros(len(self.layers)))
        self.gamma = nn.Parameter(torch.ones(()))

    @property
    def weights(self) -> torch.Tensor:
        """The current layer weights ``softmax(s)``, one per entry of ``layers``: ``(L,)``, detached
        (``gamma`` left out)."""
        return self.scores.softmax(dim=0).detach()

    def forward(self, hidden_states: Sequence[torch.Tensor], attention_mask: torch.Tensor) -> torch.Tensor:
        if isinstance(hidden_states, torch.Tensor) or len(hidden_states) != self.n_states:
            got = "one tensor" if isinstance(hidden_states, torch.Tensor) else f"{len(hidden_states)} states"
            raise ValueError(f"MultiLayerPooling was built for {self.n_states} hidden states, got {got}: pass the "
                             "list the model returns with output_hidden_states=True")
        w = self.scores.softmax(dim=0)  # (L,)
        mixed = sum(w[j] * hidden_states[i] for j, i in enumerate(self.layers))  # (B, T, d)
        return self.gamma * mean(mixed, attention_mask)


# --- 3. the attention switch and the decoders ------------------------------------------------------


def visibility(attention_mask: torch.Tensor, bidirectional: bool = False) -> torch.Tensor:
    """``(B, T, T)`` bool: ``[b, t, s]`` is True where query ``t`` may read key ``s``.

    Keys must be real tokens; causal attention adds ``s <= t``. A decoder is trained with the
    causal pattern; LLM2Vec's first step simply drops the ``s <= t`` part. Defined in chapter 10.
    """
    if attention_mask.dim() != 2:
        raise ValueError(f"attention_mask must be (batch, seq), got {tuple(attention_mask.shape)}")
    keys = attention_mask.bool()[:, None, :]  # (B, 1, T)
    T = attention_mask.shape[1]
    if bidirectional:
        return keys.expand(-1, T, -1)
    return keys & torch.ones(T, T, dtype=torch.bool, device=attention_mask.device).tril()[None]


def attention_bias(attention_mask: torch.Tensor, bidirectional: bool,
                   dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The additive ``(B, 1, T, T)`` mask ``transformers`` accepts: 0 where :func:`visibility` allows, the
    most negative float elsewhere. A 4-D mask is used as given by every attention implementation
    that takes a mask ("eager", "sdpa"), which is how :class:`HFDecoder` turns a decoder
    bidirectional. Defined in chapter 10.
    """
    vis = visibility(attention_mask, bidirectional)[:, None]  # (B, 1, T, T)
    bias = torch.zeros(vis.shape, dtype=dtype, device=attention_mask.device)
    return bias.masked_fill(~vis, torch.finfo(dtype).min)


class Decoder(nn.Module):
    """One interface to a causal language model and its tokenizer, for :class:`DecoderEmbedder`.

    ``forward(ids (B, T), attention_mask (B, T), bidirectional=False, output_hidden_states=False)``
    returns ``(last (B, T, d), hidden_states)`` (``hidden_states`` a list of ``n_layers + 1`` tensors,
    or None); ``logits(last) -> (B, T, V)`` applies the LM head; ``encode(text) -> list[int]``
    tokenizes without special tokens. Attributes: ``d_model``, ``n_layers``, ``vocab_size``,
    ``max_len``, ``eos_id``, ``pad_id``, ``mask_id`` (the token MNTP writes over masked positions),
    ``special_ids``. Subclasses: :class:`MinilibDecoder`, :class:`HFDecoder`. Defined in chapter 10.
    """

    d_model: int
    n_layers: int
    vocab_size: int
    max_len: int
    eos_id: int | None
    pad_id: int
    mask_id: int
    special_ids: tuple[int, ...]

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``, without special tokens (the embedders add their own)."""
        raise NotImplementedError

    def logits(self, last: torch.Tensor) -> torch.Tensor:
        """The LM head applied to the last states: ``(B, T, d) -> (B, T, V)``."""
        raise NotImplementedError

    def set_dropout(self, p: float) -> int:
        """Set the model's dropout rate to ``p``; returns how many places were set."""
        raise NotImplementedError

    def dropout_rate(self) -> float:
        """The largest dropout rate in the model (0.0 if it has none)."""
        raise NotImplementedError


def _is_hf_tokenizer(tokenizer) -> bool:
    return callable(tokenizer) and hasattr(tokenizer, "all_special_ids") and hasattr(tokenizer, "convert_tokens_to_ids")


def _hf_encode(tokenizer, text: str) -> list[int]:
    """Token ids of ``text`` from a ``transformers`` tokenizer, without BOS/EOS (the embedders add their own)."""
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _hf_token_ids(tokenizer) -> tuple[int | None, int, int, tuple[int, ...]]:
    """``(eos_id, pad_id, mask_id, special_ids)`` of a ``transformers`` tokenizer: padding falls back
    to EOS (then 0); the MNTP mask to the tokenizer's mask token, else ``"_"`` (LLM2Vec's choice for
    Llama and Mistral), else the unknown token, else padding."""
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id
    pad = int(pad if pad is not None else (eos if eos is not None else 0))
    mask = tokenizer.mask_token_id
    if mask is None:
        mask = tokenizer.convert_tokens_to_ids("_")
        if mask is None or mask == tokenizer.unk_token_id:
            mask = tokenizer.unk_token_id if tokenizer.unk_token_id is not None else pad
    return eos, pad, int(mask), tuple(sorted({int(i) for i in tokenizer.all_special_ids}))


class MinilibDecoder(Decoder):
    """Chapter 06's :class:`~minilib.transformer.CausalLM` and its tokenizer as a :class:`Decoder`.

    The tokenizer is the book's ``ByteBPE`` or, for a real model copied into our code with
    ``transformer.from_transformers(..., head=True)`` (SmolLM2), that model's ``transformers``
    tokenizer. ``bidirectional=True`` flips ``config.causal`` for the duration of the call: the
    :class:`~minilib.transformer.Transformer` then builds its mask from the padding alone (positions
    count from the first column, which is right for the right padding of :class:`DecoderEmbedder`).
    Defined in chapter 10.
    """

    def __init__(self, lm: CausalLM, tokenizer):
        super().__init__()
        if isinstance(lm, Transformer):
            raise TypeError("pass the CausalLM (the decoder with its LM head, as transformer.book_models('decoder') "
                            "returns it), not its .decoder: MNTP needs the head")
        if not isinstance(lm, CausalLM):
            raise TypeError(f"MinilibDecoder takes a minilib.transformer.CausalLM, got {type(lm).__name__}")
        self._hf = _is_hf_tokenizer(tokenizer)
        if not self._hf and (not hasattr(tokenizer, "encode") or getattr(tokenizer, "pad_id", None) is None):
            raise TypeError("tokenizer must be the decoder's ByteBPE (encode(text) and a pad_id) or the "
                            "transformers tokenizer of the checkpoint the CausalLM was copied from")
        self.lm, self.tokenizer = lm, tokenizer
        c = lm.config
        self.d_model, self.n_layers, self.vocab_size, self.max_len = c.d_model, c.n_layers, c.vocab_size, c.max_len
        if self._hf:
            self.eos_id, self.pad_id, self.mask_id, self.special_ids = _hf_token_ids(tokenizer)
        else:
            self.eos_id, self.pad_id = tokenizer.eos_id, tokenizer.pad_id
            self.mask_id = tokenizer.mask_id if tokenizer.mask_id is not None else tokenizer.pad_id
            self.special_ids = tuple(i for i in (tokenizer.pad_id, tokenizer.mask_id, tokenizer.bos_id,
                                                 tokenizer.eos_id) if i is not None)

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` from the ``ByteBPE`` or ``transformers`` tokenizer, without special tokens."""
        return _hf_encode(self.tokenizer, text) if self._hf else self.tokenizer.encode(text)

    def forward(self, ids: torch.Tensor, attention_mask: torch.Tensor, bidirectional: bool = False,
                output_hidden_states: bool = False):
        dec = self.lm.decoder
        was = dec.config.causal
        dec.config.causal = not bidirectional  # read by Transformer.attention_mask on every call
        try:
            out = dec(ids, attention_mask=attention_mask, output_hidden_states=output_hidden_states)
        finally:
            dec.config.causal = was
        return out if output_hidden_states else (out, None)

    def logits(self, last: torch.Tensor) -> torch.Tensor:
        """The tied LM head (the token embeddings, no bias): ``(B, T, d) -> (B, T, V)``."""
        return F.linear(last, self.lm.decoder.tok.weight)  # the tied head of CausalLM

    def set_dropout(self, p: float) -> int:
        """Set every dropout of the ``CausalLM`` (layers and attention weights) to ``p`` with
        :func:`minilib.contrastive.set_dropout`; returns how many places were set."""
        from .contrastive import set_dropout

        return set_dropout(self.lm, p)

    def dropout_rate(self) -> float:
        """The largest dropout rate in the ``CausalLM`` (0.0 if it has none)."""
        from .contrastive import dropout_rate

        return dropout_rate(self.lm)


class HFDecoder(Decoder):
    """A ``transformers`` causal LM (``AutoModelForCausalLM``) and its tokenizer as a :class:`Decoder`.

    Causal calls pass the usual 2-D padding mask, so the model builds its own causal mask.
    Bidirectional calls pass a 4-D additive mask from :func:`attention_bias` (0 for every real key),
    which ``transformers`` uses as given; the unit tests check on a random Llama that a token's
    state then depends on later tokens, and does not under the causal mask. (Setting
    ``model.config.is_causal = False`` also works in ``transformers`` 5, but it depends on the
    version's mask code; the explicit mask does not.) Position ids count real tokens, so left
    padding is safe too. The masked-token id for MNTP is the tokenizer's mask token if it has
    one, else ``"_"``, the token LLM2Vec uses for Llama and Mistral. Defined in chapter 10.
    """

    def __init__(self, lm: nn.Module, tokenizer):
        super().__init__()
        if not (hasattr(lm, "config") and hasattr(lm, "base_model") and hasattr(lm, "get_output_embeddings")):
            raise TypeError(f"HFDecoder takes a transformers causal LM (AutoModelForCausalLM), got {type(lm).__name__}")
        if not callable(tokenizer):
            raise TypeError("tokenizer must be the model's transformers tokenizer (AutoTokenizer.from_pretrained)")
        self.lm, self.tokenizer = lm, tokenizer
        c = lm.config
        self.d_model, self.n_layers, self.vocab_size = c.hidden_size, c.num_hidden_layers, c.vocab_size
        self.max_len = int(getattr(c, "max_position_embeddings", 2048))
        self.eos_id, self.pad_id, self.mask_id, self.special_ids = _hf_token_ids(tokenizer)

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` from the ``transformers`` tokenizer, without BOS/EOS."""
        return _hf_encode(self.tokenizer, text)

    def forward(self, ids: torch.Tensor, attention_mask: torch.Tensor, bidirectional: bool = False,
                output_hidden_states: bool = False):
        base = self.lm.base_model
        dtype = next(self.lm.parameters()).dtype
        mask = attention_bias(attention_mask, True, dtype) if bidirectional else attention_mask
        positions = (attention_mask.long().cumsum(dim=1) - 1).clamp_min(0)  # (B, T): 0, 1, ... over real tokens
        out = base(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=False,
                   output_hidden_states=output_hidden_states)
        hidden = list(out.hidden_states) if output_hidden_states else None
        if hidden is not None and hidden[-1].shape == out.last_hidden_state.shape:
            hidden[-1] = out.last_hidden_state  # the last entry after the final norm, as in minilib.transformer
        return out.last_hidden_state, hidden

    def logits(self, last: torch.Tensor) -> torch.Tensor:
        """The model's own LM head (``get_output_embeddings()``): ``(B, T, d) -> (B, T, V)``."""
        return self.lm.get_output_embeddings()(last)

    def set_dropout(self, p: float) -> int:
        """Set every ``nn.Dropout`` and attention-weight dropout (and ``config.attention_dropout``) to ``p``;
        returns how many modules were set. ``p`` outside ``[0, 1)`` raises a ``ValueError``."""
        # Llama-family models have no residual dropout, only dropout on the attention weights
        # (LLM2Vec's SimCSE stage sets it to 0.3).
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout p must lie in [0, 1), got {p}")
        n = 0
        for m in self.lm.modules():
            if isinstance(m, nn.Dropout):
                m.p, n = float(p), n + 1
            elif isinstance(getattr(m, "attention_dropout", None), float):
                m.attention_dropout, n = float(p), n + 1
        if hasattr(self.lm.config, "attention_dropout"):
            self.lm.config.attention_dropout = float(p)
        return n

    def dropout_rate(self) -> float:
        """The largest ``nn.Dropout`` or attention-weight dropout rate in the model (0.0 if it has none)."""
        rates = [m.p for m in self.lm.modules() if isinstance(m, nn.Dropout)]
        rates += [m.attention_dropout for m in self.lm.modules()
                  if isinstance(getattr(m, "attention_dropout", None), float)]
        return float(max(rates, default=0.0))


def as_decoder(model, tokenizer=None) -> Decoder:
    """``model`` as a :class:`Decoder`: a minilib ``CausalLM`` or a ``transformers`` causal LM, with its
    tokenizer (a :class:`Decoder` is returned as is). Defined in chapter 10."""
    if isinstance(model, Decoder):
        return model
    if tokenizer is None:
        raise ValueError("give the model's tokenizer too: as_decoder(model, tokenizer)")
    if isinstance(model, (CausalLM, Transformer)):
        return MinilibDecoder(model, tokenizer)
    return HFDecoder(model, tokenizer)


def load_decoder(name_or_path: str | Path, gguf_file: str | None = None, dtype: torch.dtype = torch.float32,
                 device: str | torch.device | None = None):
    """``(model, tokenizer)`` of any ``transformers`` causal LM, in eval mode.

    ``name_or_path`` is a local folder or, online, a hub name ("HuggingFaceTB/SmolLM2-135M-Instruct",
    "mistralai/Mistral-7B-v0.1"); ``gguf_file`` names a GGUF file in that folder, which
    ``transformers`` de-quantizes to ``dtype`` (it needs the ``gguf`` package). A tokenizer
    without a padding token gets its EOS token as padding. Defined in chapter 10.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kw = {"gguf_file": gguf_file} if gguf_file else {}
    tok = AutoTokenizer.from_pretrained(str(name_or_path), **kw)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    lm = AutoModelForCausalLM.from_pretrained(str(name_or_path), dtype=dtype, **kw)
    if device is not None:
        lm = lm.to(device)
    return lm.eval(), tok


def load_smollm2(device: str | torch.device | None = None):
    """``(model, tokenizer)``: SmolLM2-135M-Instruct from the GGUF file ``minilib.data`` verifies
    (30 layers, 576 wide, de-quantized to float32). Online, ``load_decoder("HuggingFaceTB/SmolLM2-135M-Instruct")``
    loads the same model from the hub. Defined in chapter 10."""
    from . import data

    p = Path(data.load("smollm2"))
    return load_decoder(p.parent, gguf_file=p.name, device=device)


# --- 4. prompts ------------------------------------------------------------------------------------

#: Templates: "{text}" marks where the text goes. PromptEOL (Jiang et al. 2023) asks the model to
#: compress the sentence into the next word and reads the last token; echo (Springer et al. 2024)
#: repeats the text so that its second copy is read by tokens that have seen all of it.
PROMPTS = {
    "prompteol": 'This sentence : "{text}" means in one word:"',
    "echo": "Rewrite the sentence: {text}, rewritten sentence: {text}",
}


def segments(text: str, prompt: str | None = None, instruction: str | None = None) -> list[tuple[str, bool, bool]]:
    """The pieces of ``text`` wrapped in a prompt: ``[(piece, is_text, pooled), ...]``.

    ``prompt`` is None (the text alone), a name of :data:`PROMPTS`, or a template with ``{text}``.
    ``is_text`` marks the copies of the text (truncated when too long; the template never is);
    ``pooled`` the piece whose tokens the averaging poolings read: the text, or its *last* copy
    for echo. An ``instruction`` is prefixed as ``"Instruct: {instruction}\\nQuery: "`` (E5-Mistral,
    NV-Embed) and never pooled. Defined in chapter 10.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    template = PROMPTS.get(prompt, prompt) if prompt is not None else "{text}"
    if not isinstance(template, str) or "{text}" not in template:
        raise ValueError(f"unknown prompt {prompt!r}: use None, one of {sorted(PROMPTS)}, or a template containing "
                         "'{text}'")
    parts = template.split("{text}")
    out: list[tuple[str, bool, bool]] = []
    if instruction:
        out.append((f"Instruct: {instruction}\nQuery: ", False, False))
    n = len(parts) - 1  # copies of the text
    for i, fixed in enumerate(parts):
        if fixed:
            out.append((fixed, False, False))
        if i < n:
            out.append((text, True, i == n - 1))
    return out


# --- 5. the embedder -------------------------------------------------------------------------------


class DecoderEmbedder(nn.Module):
    """A text embedder from a causal decoder: prompt -> decoder (causal or bidirectional) -> pooling.

    ``model`` is a minilib ``CausalLM`` (chapter 06's, ``transformer.book_models("decoder")``) or a
    ``transformers`` causal LM (:func:`load_smollm2`, :func:`load_decoder`), with its ``tokenizer``.
    ``pooling`` is a name of :data:`POOLINGS` or a trainable :class:`LatentAttentionPooling` /
    :class:`MultiLayerPooling`. ``prompt`` and ``instruction`` as in :func:`segments`. ``add_eos``
    appends the EOS token after the text (default: when there is no prompt, as LLM2Vec and
    NV-Embed do); it is read by ``last_token`` and left out of the means. Texts are cut to
    ``max_len`` tokens in all (default: 512, or the model's limit if smaller), the text's copies
    shortened, never the template.

    ``forward(ids, attention_mask, pool_mask=None, output="embedding")`` is differentiable:
    ``(B, d)`` pooled vectors (not normalised), or ``output="logits"`` the LM head's ``(B, T, V)``
    for MNTP. ``encode(texts, batch_size=16) -> (n, d)`` float32, L2-normalised if ``normalize``;
    ``encode([])`` is ``(0, d)``; NaN or inf raises a ``FloatingPointError``. :meth:`pooled_many`
    returns several parameter-free poolings from one run of the model. Defined in chapter 10.
    """

    def __init__(self, model, tokenizer=None, pooling: str | nn.Module = "mean", bidirectional: bool = False,
                 prompt: str | None = None, instruction: str | None = None, max_len: int | None = None,
                 normalize: bool = True, add_eos: bool | None = None, device: str | torch.device | None = None):
        super().__init__()
        self.decoder = as_decoder(model, tokenizer)
        if isinstance(pooling, str):
            if pooling not in POOLINGS:
                raise ValueError(f"unknown pooling {pooling!r}: choose one of {POOLINGS}, or pass a "
                                 "LatentAttentionPooling / MultiLayerPooling module")
            self.pooler = None
        elif isinstance(pooling, (LatentAttentionPooling, MultiLayerPooling)):
            self.pooler = pooling
            d, n = self.decoder.d_model, self.decoder.n_layers + 1
            if isinstance(pooling, LatentAttentionPooling) and pooling.latents.shape[1] != d:
                raise ValueError(f"the LatentAttentionPooling is {pooling.latents.shape[1]} wide, the decoder {d}: "
                                 f"build it with LatentAttentionPooling({d})")
            if isinstance(pooling, MultiLayerPooling) and pooling.n_states != n:
                raise ValueError(f"the MultiLayerPooling mixes {pooling.n_states} states, the decoder has {n}: "
                                 f"build it with MultiLayerPooling({n})")
        else:
            raise TypeError(f"pooling must be a name {POOLINGS} or a LatentAttentionPooling / MultiLayerPooling, "
                            f"got {type(pooling).__name__}")
        segments("", prompt)  # checks the prompt now, not at the first encode
        if max_len is not None and (isinstance(max_len, bool) or not isinstance(max_len, int) or max_len < 2):
            raise ValueError(f"max_len must be an int >= 2 or None, got {max_len!r}")
        self.pooling = pooling if isinstance(pooling, str) else type(pooling).__name__
        self.bidirectional, self.prompt, self.instruction = bool(bidirectional), prompt, instruction
        self.normalize = normalize
        self.add_eos = (prompt is None) if add_eos is None else bool(add_eos)
        if self.add_eos and self.decoder.eos_id is None:
            raise ValueError("add_eos=True but the tokenizer has no EOS token: pass add_eos=False")
        self.max_len = min(max_len or 512, self.decoder.max_len)
        self.device = torch.device(device) if device is not None else next(self.decoder.parameters()).device
        if device is not None:
            self.to(self.device)

    @property
    def dim(self) -> int:
        """The width ``d`` of the text vectors: the decoder's ``d_model``."""
        return self.decoder.d_model

    # -- tokens ----------------------------------------------------------------------------------

    def token_ids(self, text: str) -> tuple[list[int], list[int]]:
        """``(ids, pooled)`` of one text in its prompt: token ids and a 0/1 flag per token."""
        pieces = [(self.decoder.encode(s), pooled, is_text)
                  for s, is_text, pooled in segments(text, self.prompt, self.instruction)]
        fixed = sum(len(ids) for ids, _, is_text in pieces if not is_text) + int(self.add_eos)
        copies = sum(1 for _, _, is_text in pieces if is_text)
        budget = (self.max_len - fixed) // max(copies, 1)
        if copies and budget < 1:
            raise ValueError(f"max_len={self.max_len} leaves no room for the text after the prompt's {fixed} "
                             "tokens: raise max_len or shorten the prompt / instruction")
        ids, flags = [], []
        for piece, pooled, is_text in pieces:
            piece = piece[:budget] if is_text else piece  # truncate the text, never the template
            ids += piece
            flags += [int(pooled)] * len(piece)
        if self.add_eos:
            ids.append(self.decoder.eos_id)
            flags.append(0)
        if not ids:
            raise ValueError("a text gave no tokens at all (an empty text without prompt or EOS): "
                             "drop empty texts or keep add_eos=True")
        return ids, flags

    def tokenize(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(ids, attention_mask, pool_mask)``, each ``(n, T)`` long, right-padded to the longest text."""
        texts = text_list(texts)
        if not texts:
            raise ValueError("tokenize got no texts")
        rows = [self.token_ids(t) for t in texts]
        T = max(len(ids) for ids, _ in rows)
        ids = torch.full((len(rows), T), self.decoder.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), T), dtype=torch.long)
        pooled = torch.zeros((len(rows), T), dtype=torch.long)
        for r, (row, flags) in enumerate(rows):
            ids[r, :len(row)] = torch.tensor(row)
            mask[r, :len(row)] = 1
            pooled[r, :len(row)] = torch.tensor(flags)
        return ids, mask, pooled

    # -- model -----------------------------------------------------------------------------------

    def forward(self, ids: torch.Tensor, attention_mask: torch.Tensor, pool_mask: torch.Tensor | None = None,
                output: str = "embedding") -> torch.Tensor:
        if output not in ("embedding", "logits"):
            raise ValueError(f"output must be 'embedding' or 'logits', got {output!r}")
        want_all = isinstance(self.pooler, MultiLayerPooling)
        last, hidden = self.decoder(ids, attention_mask, bidirectional=self.bidirectional,
                                    output_hidden_states=want_all)
        if output == "logits":
            return self.decoder.logits(last)  # (B, T, V)
        pm = _pool_mask(attention_mask, pool_mask)
        if self.pooler is None:
            return pool(self.pooling, last, attention_mask, pool_mask)
        if want_all:
            return self.pooler(hidden, pm)
        return self.pooler(last, pm)

    def _batches(self, texts: list[str], batch_size: int):
        # Texts of similar length in one batch (longest first): less padding, the same vectors.
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            ids, mask, pm = self.tokenize([texts[i] for i in idx])
            yield idx, ids.to(self.device), mask.to(self.device), pm.to(self.device)

    @torch.no_grad()
    def pooled_many(self, texts: Sequence[str], poolings: Sequence[str] = POOLINGS,
                    batch_size: int = 16) -> dict[str, np.ndarray]:
        """Several parameter-free poolings of the same texts from one run of the decoder:
        ``{name: (n, d)}`` float32, not normalised. ``"trained"`` names this embedder's own
        trainable pooling, if it has one."""
        texts = text_list(texts)
        for name in poolings:
            if name not in POOLINGS and not (name == "trained" and self.pooler is not None):
                raise ValueError(f"unknown pooling {name!r}: choose from {POOLINGS}"
                                 + (" or 'trained'" if self.pooler is not None else ""))
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if not texts:
            return {name: np.zeros((0, self.dim), dtype=np.float32) for name in poolings}
        want_all = isinstance(self.pooler, MultiLayerPooling) and "trained" in poolings
        was_training = self.training
        self.eval()  # no dropout: the same text always gets the same vector
        out = {name: np.zeros((len(texts), self.dim), dtype=np.float32) for name in poolings}
        try:
            for idx, ids, mask, pm in self._batches(texts, batch_size):
                last, hidden = self.decoder(ids, mask, bidirectional=self.bidirectional, output_hidden_states=want_all)
                for name in poolings:
                    if name == "trained":
                        z = self.pooler(hidden if want_all else last, _pool_mask(mask, pm))
                    else:
                        z = pool(name, last, mask, pm)
                    out[name][idx] = z.float().cpu().numpy()
        finally:
            self.train(was_training)
        for name, X in out.items():
            pooling.check_finite(X, f"DecoderEmbedder ({name} pooling)", texts)
        return out

    def encode(self, texts: Sequence[str], batch_size: int = 16) -> np.ndarray:
        """``(n, d)`` float32 text vectors, L2-normalised if ``normalize``."""
        name = "trained" if self.pooler is not None else self.pooling
        X = self.pooled_many(texts, [name], batch_size)[name]
        if self.normalize and len(X):
            X = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
        pooling.check_finite(X, "DecoderEmbedder.encode")
        return X.astype(np.float32)

    def extra_repr(self) -> str:
        return (f"pooling={self.pooling!r}, bidirectional={self.bidirectional}, prompt={self.prompt!r}, "
                f"instruction={self.instruction!r}, add_eos={self.add_eos}, max_len={self.max_len}")


class Lookup:
    """Fixed vectors of known texts behind the ``encode(texts)`` interface: ``Lookup(texts, X (n, d))``.

    A benchmark (``minilib.bench``) then scores vectors computed once, e.g. the several poolings of
    one decoder run (:func:`precompute`). Asking for a text it does not hold raises a ``KeyError``.
    Defined in chapter 10.
    """

    def __init__(self, texts: Sequence[str], X, normalize: bool = True):
        texts = text_list(texts)
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or len(X) != len(texts):
            raise ValueError(f"X must be (n_texts, d) = ({len(texts)}, d), got {X.shape}")
        if normalize:
            X = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
        self.row = {t: i for i, t in enumerate(texts)}
        self.X = X

    def encode(self, texts: Sequence[str], batch_size: int | None = None) -> np.ndarray:
        """The stored rows of ``texts``: ``(n, d)`` float32 (``batch_size`` is accepted for the common
        interface and ignored). A text that was not given at construction raises a ``KeyError``."""
        texts = text_list(texts)
        missing = [t for t in texts if t not in self.row]
        if missing:
            raise KeyError(f"{len(missing)} text(s) were not precomputed, e.g. {missing[0][:60]!r}: include every "
                           "task's texts (bench.all_texts(tasks)) when you precompute")
        return self.X[[self.row[t] for t in texts]] if texts else np.zeros((0, self.X.shape[1]), np.float32)


def precompute(embedder: DecoderEmbedder, texts: Sequence[str], poolings: Sequence[str] = POOLINGS,
               batch_size: int = 16) -> dict[str, Lookup]:
    """``{pooling: Lookup}``: every pooling of ``texts`` from a single run of the embedder's decoder
    (:meth:`DecoderEmbedder.pooled_many`), ready for ``minilib.bench``. Defined in chapter 10."""
    texts = list(dict.fromkeys(text_list(texts)))
    out = embedder.pooled_many(texts, poolings, batch_size)
    return {name: Lookup(texts, X, normalize=embedder.normalize) for name, X in out.items()}


# --- 6. LLM2Vec: masked next-token prediction and SimCSE ------------------------------------------


def mntp_inputs(ids: torch.Tensor, attention_mask: torch.Tensor, *, mask_id: int, vocab_size: int,
                special_ids: Sequence[int] = (), p: float = 0.2,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(inputs, labels)`` of one MNTP batch: BERT's masking (:func:`minilib.train.mask_tokens`, a
    share ``p`` of the tokens, 80/10/10) with the first real token of each row never chosen, since
    MNTP reads token ``i``'s prediction at position ``i - 1`` and the first token has none.
    ``labels`` holds the original ids at the chosen positions, -100 elsewhere. Defined in chapter 10.
    """
    if ids.shape != attention_mask.shape or ids.dim() != 2:
        raise ValueError(f"ids and attention_mask must both be (batch, seq), got {tuple(ids.shape)} and "
                         f"{tuple(attention_mask.shape)}")
    m = attention_mask.bool().clone()
    first = m.to(torch.uint8).argmax(dim=1)  # (B,) first real token of each row
    m[torch.arange(m.shape[0]), first] = False
    if not m.any():
        raise ValueError("no maskable token: MNTP needs rows of at least 2 tokens")
    return train.mask_tokens(ids, m.long(), mask_id=mask_id, vocab_size=vocab_size, special_ids=special_ids, p=p,
                             generator=generator)


def mntp_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Masked next-token prediction (LLM2Vec): masked token ``i`` is predicted from the output at
    position ``i - 1``, the position a decoder's head was trained to predict it from.

    ``logits (B, T, V)``, ``labels (B, T)`` from :func:`mntp_inputs`; the mean cross-entropy over the
    masked tokens, in float32. (A masked LM, chapter 06, reads the prediction at ``i`` itself.)
    Defined in chapter 10.
    """
    if logits.dim() != 3 or labels.shape != logits.shape[:2]:
        raise ValueError(f"logits must be (B, T, V) and labels (B, T), got {tuple(logits.shape)} and "
                         f"{tuple(labels.shape)}")
    if (labels[:, 0] != train.IGNORE_INDEX).any():
        raise ValueError("a label at position 0 cannot be predicted (no position before it): make the inputs with "
                         "mntp_inputs, which never masks a row's first token")
    target = labels[:, 1:]  # (B, T-1): the token masked at i...
    if not (target != train.IGNORE_INDEX).any():
        raise ValueError("labels predict no position (all -100): nothing was masked")
    pred = logits[:, :-1].float()  # (B, T-1, V): ...is read at i - 1
    return F.cross_entropy(pred.reshape(-1, pred.shape[-1]), target.reshape(-1), ignore_index=train.IGNORE_INDEX)


@torch.no_grad()
def mntp_eval(embedder: DecoderEmbedder, texts: Sequence[str], p: float = 0.2, seed: int = 0,
              batch_size: int = 32) -> dict[str, float]:
    """How well ``embedder``'s decoder fills in masked tokens MNTP-style (its attention as set):
    ``{"loss", "accuracy", "n"}`` over ``texts``, the same masks for a given ``seed`` (so a model
    before and after training is scored on the same gaps). ``accuracy`` is the share of masked
    tokens whose top-1 prediction, read at the previous position, is right. Defined in chapter 10.
    """
    texts = text_list(texts)
    if not texts:
        raise ValueError("mntp_eval got no texts")
    gen = torch.Generator().manual_seed(seed)
    d = embedder.decoder
    was_training = embedder.training
    embedder.eval()
    total, right, n = 0.0, 0, 0
    try:
        for start in range(0, len(texts), batch_size):
            ids, mask, _ = embedder.tokenize(texts[start:start + batch_size])
            inputs, labels = mntp_inputs(ids, mask, mask_id=d.mask_id, vocab_size=d.vocab_size,
                                         special_ids=d.special_ids, p=p, generator=gen)
            logits = embedder(inputs.to(embedder.device), mask.to(embedder.device), output="logits").float().cpu()
            pred, target = logits[:, :-1], labels[:, 1:]
            chosen = target != train.IGNORE_INDEX
            k = int(chosen.sum())
            total += float(mntp_loss(logits, labels)) * k
            right += int((pred.argmax(dim=-1)[chosen] == target[chosen]).sum())
            n += k
    finally:
        embedder.train(was_training)
    return {"loss": total / n, "accuracy": right / n, "n": float(n)}


def _trim3(batch):
    if not isinstance(batch, (tuple, list)) or len(batch) not in (2, 3):
        raise ValueError("expected batches (ids, attention_mask[, pool_mask]) from text_batches(embedder, texts, ...)")
    ids, mask = batch[0], batch[1]
    pm = batch[2] if len(batch) == 3 else mask
    used = mask.any(dim=0)
    T = int(used.nonzero().max()) + 1 if used.any() else 1
    return ids[:, :T], mask[:, :T], pm[:, :T]


def mntp_loss_fn(p: float = 0.2, seed: int = 0):
    """MNTP as a ``loss_fn(model, batch)`` for ``minilib.train.fit``: ``model`` a :class:`DecoderEmbedder`
    (its attention as set, bidirectional in LLM2Vec), ``batch`` from :func:`text_batches`.
    LLM2Vec masks ``p = 0.2`` of the tokens for Mistral. Defined in chapter 10.
    """
    gen = torch.Generator().manual_seed(seed)

    def loss_fn(model: DecoderEmbedder, batch) -> torch.Tensor:
        ids, mask, _ = _trim3(batch)
        d = model.decoder
        inputs, labels = mntp_inputs(ids.cpu(), mask.cpu(), mask_id=d.mask_id, vocab_size=d.vocab_size,
                                     special_ids=d.special_ids, p=p, generator=gen)
        logits = model(inputs.to(ids.device), mask, output="logits")
        return mntp_loss(logits, labels.to(ids.device))

    return loss_fn


def simcse_loss_fn(temperature: float = 0.05, require_dropout: bool = True):
    """Unsupervised SimCSE (Gao et al. 2021) as a ``loss_fn(model, batch)`` for ``minilib.train.fit``.

    The batch goes through the :class:`DecoderEmbedder` twice (stacked): dropout makes two views of
    every text, the positives; the rest of the batch are negatives, scored by
    ``minilib.contrastive.info_nce``. A model without dropout raises (turn it on with
    ``embedder.decoder.set_dropout(p)``). Defined in chapter 10.
    """
    def loss_fn(model: DecoderEmbedder, batch) -> torch.Tensor:
        ids, mask, pm = _trim3(batch)
        if require_dropout and model.training and model.decoder.dropout_rate() == 0.0:
            raise ValueError("the decoder has no dropout: SimCSE's two views would be identical. Turn it on with "
                             "embedder.decoder.set_dropout(0.1) (LLM2Vec uses 0.3 attention dropout)")
        z = model(torch.cat([ids, ids]), torch.cat([mask, mask]), torch.cat([pm, pm]))  # (2B, d)
        z1, z2 = z.chunk(2)
        return info_nce(z1, z2, temperature)

    return loss_fn


def text_batches(embedder: DecoderEmbedder, texts: Sequence[str], batch_size: int, seed: int = 0) -> train.Batches:
    """An endless seeded stream of ``(ids, attention_mask, pool_mask)`` batches of ``texts``, each
    text in the embedder's prompt and cut to its ``max_len`` (batches are trimmed to their longest
    row by the losses). Defined in chapter 10.
    """
    texts = text_list(texts)
    if not texts:
        raise ValueError("text_batches got no texts")
    return train.Batches(embedder.tokenize(texts), batch_size, seed=seed)


def train_mntp(embedder: DecoderEmbedder, texts: Sequence[str], steps: int, batch_size: int = 32, lr: float = 1e-4,
               p: float = 0.2, seed: int = 0, **fit_kw) -> dict[str, list[float]]:
    """LLM2Vec's second step: train ``embedder``'s decoder with :func:`mntp_loss_fn` on ``texts`` for
    ``steps`` steps of ``minilib.train.fit`` (extra keyword arguments go to ``fit``). The embedder's
    attention is used as set: bidirectional, as LLM2Vec does, teaches the decoder to use the right
    context it never saw in pretraining. The embedder is left in eval mode. Returns ``fit``'s
    history. Defined in chapter 10.
    """
    try:
        return train.fit(embedder, text_batches(embedder, texts, batch_size, seed), mntp_loss_fn(p, seed),
                         steps=steps, lr=lr, **fit_kw)
    finally:
        embedder.eval()


def train_simcse(embedder: DecoderEmbedder, texts: Sequence[str], steps: int, batch_size: int = 32,
                 lr: float = 1e-4, dropout: float = 0.3, temperature: float = 0.05, seed: int = 0,
                 **fit_kw) -> dict[str, list[float]]:
    """LLM2Vec's third step (and NV-Embed's training, without labels): unsupervised SimCSE on
    ``texts`` with the decoder's dropout set to ``dropout`` during training (LLM2Vec: 0.3) and put
    back afterwards. A trainable pooling in the embedder is trained with it. The embedder is left
    in eval mode. Returns ``fit``'s history. Defined in chapter 10.
    """
    before = embedder.decoder.dropout_rate()
    embedder.decoder.set_dropout(dropout)
    try:
        return train.fit(embedder, text_batches(embedder, texts, batch_size, seed), simcse_loss_fn(temperature),
                         steps=steps, lr=lr, **fit_kw)
    finally:
        embedder.decoder.set_dropout(before)
        embedder.eval()
