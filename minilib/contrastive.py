"""Contrastive sentence embedders: InfoNCE, SimCSE, bi- and cross-encoders, distillation.

Read it top to bottom, as chapter 08 builds it:

1. :func:`info_nce`: each query's positive key must beat every other key of the batch (the
   in-batch negatives, plus any hard negatives appended) in a softmax over cosine similarities
   divided by a temperature;
2. :func:`alignment` and :func:`uniformity` (Wang & Isola, 2020): how close positive pairs are,
   and how evenly the vectors spread over the sphere; :class:`AlignUniform` logs both during
   training;
3. :class:`BiEncoder`: a ``minilib.transformer.Transformer`` and a pooling, one vector per text;
   :func:`set_dropout` turns on the noise SimCSE needs;
4. the training losses for ``minilib.train.fit``: :func:`simcse_loss` (unsupervised SimCSE: the
   same batch twice, dropout makes two views) and :func:`pair_loss` (supervised pairs with
   optional hard negatives);
5. :class:`CrossEncoder`: both texts in one sequence, one relevance score per pair, trained with
   :func:`cross_encoder_loss`;
6. distillation: :func:`distill_loss` (KL between the softmaxes of teacher and student scores, or
   Hofstaetter et al.'s margin-MSE) and :func:`distillation_loss` to train a bi-encoder on a
   cross-encoder's scores;
7. small helpers: :func:`split_sentences`, :func:`tokenize_texts`, :func:`tokenize_pairs`,
   :func:`trim`, :func:`ranking_metrics`.

Batches are tuples of tensors, so :class:`minilib.train.Batches` serves them and ``fit`` trains
every model here with the same loop as chapter 06. A NaN or infinite embedding raises a
``FloatingPointError`` naming the likely cause; ``fit`` names the step of a NaN loss.

Defined in chapter 08.
"""
from __future__ import annotations

import copy
import re
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import pooling, train
from .text import text_list
from .transformer import MultiHeadAttention, Transformer

__all__ = [
    "info_nce", "alignment", "uniformity", "AlignUniform", "split_sentences", "tokenize_texts", "trim",
    "set_dropout", "dropout_rate", "BiEncoder", "simcse_loss", "SIMCSE_RECIPE", "train_simcse", "pair_loss", "tokenize_pairs", "CrossEncoder",
    "cross_encoder_loss", "distill_loss", "distillation_loss", "ranking_metrics",
]


# --- checks ---------------------------------------------------------------------------------


def _as_tensor(x, name: str) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch tensor or a NumPy array, got {type(x).__name__}")
    if x.dim() != 2:
        raise ValueError(f"{name} must be a (n, dim) matrix of embeddings, got shape {tuple(x.shape)}; "
                         "for one vector use x[None]")
    if x.shape[0] == 0:
        raise ValueError(f"{name} is empty: give at least one embedding")
    return x


def _check_finite(x: torch.Tensor, name: str) -> None:
    bad = ~torch.isfinite(x.detach())
    if bad.any():
        rows = torch.nonzero(bad.reshape(x.shape[0], -1).any(dim=1)).flatten()[:5].tolist()
        raise FloatingPointError(
            f"{name} holds NaN or inf (rows {rows}...): the encoder diverged or its weights are not finite. "
            "Lower the learning rate, keep grad_clip=1.0, and train in float32 if half precision overflowed.")


# --- 1. InfoNCE -----------------------------------------------------------------------------


def info_nce(queries, keys, temperature: float = 0.05, symmetric: bool = False) -> torch.Tensor:
    """InfoNCE with in-batch negatives: the mean of ``-log softmax(cos(q_i, k) / t)[i]``.

    ``queries`` ``(B, d)``, ``keys`` ``(B + M, d)``: row ``i``'s positive is key ``i``; every
    other key, the other ``B - 1`` positives and the ``M`` extra (hard) negatives appended after
    them, is a negative. Similarities are cosines (rows are L2-normalised here) divided by
    ``temperature``. With ``symmetric=True`` the loss is averaged with the same loss read the
    other way (each of the first ``B`` keys must find its query among the queries), as CLIP does.
    Equals sentence-transformers' ``MultipleNegativesRankingLoss`` with ``scale = 1 / temperature``.
    Returns a scalar tensor (float32). Defined in chapter 08.
    """
    q, k = _as_tensor(queries, "queries"), _as_tensor(keys, "keys")
    B = q.shape[0]
    if q.shape[1] != k.shape[1]:
        raise ValueError(f"queries and keys must have the same width, got {q.shape[1]} and {k.shape[1]}")
    if k.shape[0] < B:
        raise ValueError(f"keys needs at least one row per query: {B} positives first (row i for query i), "
                         f"then any hard negatives; got {k.shape[0]} keys for {B} queries")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature} (SimCSE uses 0.05)")
    if symmetric and k.shape[0] != B:
        raise ValueError("symmetric=True reads the batch both ways and needs exactly one key per query "
                         f"(no extra negatives); got {k.shape[0]} keys for {B} queries")
    _check_finite(q, "queries")
    _check_finite(k, "keys")
    q, k = F.normalize(q.float(), dim=-1), F.normalize(k.float(), dim=-1)
    logits = q @ k.T / temperature  # (B, B + M): row i scores query i against every key
    target = torch.arange(B, device=q.device)  # the positive of row i sits in column i
    loss = F.cross_entropy(logits, target)
    if symmetric:
        loss = (loss + F.cross_entropy(logits.T, target)) / 2
    return loss


# --- 2. alignment and uniformity ----------------------------------------------------------


def alignment(x, y, alpha: float = 2.0) -> torch.Tensor:
    """Wang & Isola's alignment: the mean of ``||f(x_i) - f(y_i)||^alpha`` over positive pairs.

    ``x``, ``y`` ``(n, d)`` (tensors or arrays), row ``i`` of each a positive pair; rows are
    L2-normalised first, so the value lies in ``[0, 2^alpha]`` (0: every pair coincides).
    Lower is better. Returns a scalar tensor. Defined in chapter 08.
    """
    x, y = _as_tensor(x, "x"), _as_tensor(y, "y")
    if x.shape != y.shape:
        raise ValueError(f"x and y must be paired row by row, got shapes {tuple(x.shape)} and {tuple(y.shape)}")
    if alpha <= 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    _check_finite(x, "x")
    _check_finite(y, "y")
    x, y = F.normalize(x.double(), dim=-1), F.normalize(y.double(), dim=-1)
    return (x - y).norm(dim=1).pow(alpha).mean().float()


def uniformity(x, t: float = 2.0) -> torch.Tensor:
    """Wang & Isola's uniformity: ``log`` of the mean of ``exp(-t ||f(x_i) - f(x_j)||^2)`` over pairs ``i < j``.

    ``x`` ``(n, d)``, ``n >= 2``, rows L2-normalised first. Lower (more negative) is better: the
    vectors spread evenly over the sphere. All vectors equal gives 0; its minimum for large ``d``
    and ``t = 2`` approaches ``-4``. Returns a scalar tensor. Defined in chapter 08.
    """
    x = _as_tensor(x, "x")
    if x.shape[0] < 2:
        raise ValueError("uniformity compares pairs of vectors: give at least 2 rows")
    if t <= 0:
        raise ValueError(f"t must be > 0, got {t}")
    _check_finite(x, "x")
    x = F.normalize(x.double(), dim=-1)
    sq = torch.pdist(x, p=2).pow(2)  # (n (n - 1) / 2,) squared distances of the pairs i < j
    # log-mean-exp, computed stably
    return (torch.logsumexp(-t * sq, dim=0) - np.log(sq.numel())).float()


# --- text helpers ---------------------------------------------------------------------------

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])")


def split_sentences(text: str, min_chars: int = 20, max_chars: int = 400) -> list[str]:
    """The sentences of a running text: cut after ``.``, ``!`` or ``?`` followed by a space and a
    capital or a digit; whitespace collapsed; pieces shorter than ``min_chars`` or longer than
    ``max_chars`` characters dropped (headings, lists, run-ons). A rule, not a parser: "Dr. Smith"
    is cut in two. Defined in chapter 08.
    """
    if not isinstance(text, str):
        raise TypeError(f"split_sentences takes one str, got {type(text).__name__}")
    if not 0 <= min_chars <= max_chars:
        raise ValueError(f"need 0 <= min_chars <= max_chars, got {min_chars} and {max_chars}")
    return [s for s in _SENTENCE_END.split(" ".join(text.split())) if min_chars <= len(s) <= max_chars]


def tokenize_texts(tokenizer, texts: Sequence[str], max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ids, attention_mask)``, both ``(n, T)`` long, for a whole training set at once.

    Each text is cut to ``max_len`` tokens; rows are padded (right) to the longest row.
    :func:`trim` later cuts each batch to its own longest row. Defined in chapter 08.
    """
    texts = text_list(texts, "texts", allow_empty=False)
    ids, mask = tokenizer.encode_batch(texts, max_len=max_len, truncate=True)
    return trim(ids, mask)


def trim(ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Drop the trailing columns that are padding in every row: ``(B, T) -> (B, T')``.

    Right padding assumed. A batch of short texts padded to a long ``T`` then costs only its own
    length (attention is quadratic in it). Defined in chapter 08.
    """
    if ids.shape != attention_mask.shape or ids.dim() < 2:
        raise ValueError(f"ids and attention_mask must have the same (..., T) shape, got {tuple(ids.shape)} "
                         f"and {tuple(attention_mask.shape)}")
    used = attention_mask.reshape(-1, attention_mask.shape[-1]).any(dim=0)  # (T,) columns with a token somewhere
    T = int(used.nonzero().max()) + 1 if used.any() else 1
    return ids[..., :T], attention_mask[..., :T]


# --- 3. the bi-encoder ---------------------------------------------------------------------


def set_dropout(model: nn.Module, p: float) -> int:
    """Set the dropout rate of every ``nn.Dropout`` and attention-weight dropout in ``model`` to ``p``.

    Unsupervised SimCSE needs ``p > 0``: dropout is its only augmentation. Chapter 06's quick
    encoder was pretrained with ``p = 0``. Also updates ``model.config.dropout`` where there is
    one. Returns how many places were set. Defined in chapter 08.
    """
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout p must lie in [0, 1), got {p}")
    n = 0
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.p, n = float(p), n + 1
        elif isinstance(m, MultiHeadAttention):
            m.dropout, n = float(p), n + 1
        if hasattr(m, "config") and hasattr(m.config, "dropout"):
            m.config.dropout = float(p)
    return n


def dropout_rate(model: nn.Module) -> float:
    """The largest dropout rate in ``model`` (0.0 if it has none). Defined in chapter 08."""
    rates = [m.p for m in model.modules() if isinstance(m, nn.Dropout)]
    rates += [m.dropout for m in model.modules() if isinstance(m, MultiHeadAttention)]
    return float(max(rates, default=0.0))


class BiEncoder(nn.Module):
    """Each text encoded on its own: a :class:`~minilib.transformer.Transformer`, then a pooling.

    ``forward(ids (B, T), attention_mask (B, T)) -> (B, d)``, differentiable, L2-normalised rows
    if ``normalize``; ``pooling`` is ``"mean"``, ``"max"``, ``"cls"`` or ``"first_last"``
    (``minilib.pooling``). With a ``tokenizer``, :meth:`encode` maps texts to a float32 array
    through ``minilib.pooling.TransformerEmbedder`` (eval mode: no dropout), and
    :meth:`score_candidates` scores each query against its own list of candidates. Two texts
    are compared by the cosine of their vectors, so a collection is encoded once and searched
    with a matrix product. Defined in chapter 08.
    """

    def __init__(self, encoder: Transformer, tokenizer=None, pooling: str = "mean", normalize: bool = True,
                 max_len: int | None = None):
        super().__init__()
        if not isinstance(encoder, Transformer):
            hint = " (for a MaskedLM pass model.encoder)" if hasattr(encoder, "encoder") else ""
            raise TypeError(f"encoder must be a minilib.transformer.Transformer, got {type(encoder).__name__}{hint}")
        if pooling not in ("mean", "max", "cls", "first_last"):
            raise ValueError(f"unknown pooling {pooling!r}: use 'mean', 'max', 'cls' or 'first_last'")
        if tokenizer is not None and not hasattr(tokenizer, "encode_batch"):
            raise TypeError("tokenizer needs an encode_batch(texts, max_len=..., truncate=True) method")
        self.encoder, self.tokenizer, self.pooling, self.normalize = encoder, tokenizer, pooling, normalize
        self.max_len = min(max_len or encoder.config.max_len, encoder.config.max_len)

    @property
    def dim(self) -> int:
        """Width ``d`` of the vectors: the encoder's ``d_model`` (every pooling keeps it)."""
        return self.encoder.config.d_model

    def forward(self, ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if self.pooling == "first_last":
            _, hidden = self.encoder(ids, attention_mask, output_hidden_states=True)
            z = pooling.first_last(hidden, attention_mask)
        else:
            h = self.encoder(ids, attention_mask)  # (B, T, d)
            z = {"mean": pooling.mean, "max": pooling.max, "cls": pooling.cls}[self.pooling](h, attention_mask)
        return F.normalize(z, dim=-1) if self.normalize else z  # (B, d)

    def embedder(self, **kwargs) -> pooling.TransformerEmbedder:
        """A ``minilib.pooling.TransformerEmbedder`` on this encoder (keyword arguments passed on)."""
        if self.tokenizer is None:
            raise ValueError("this BiEncoder has no tokenizer: build it with BiEncoder(encoder, tokenizer)")
        kwargs = {"pooling": self.pooling, "normalize": self.normalize, "max_len": self.max_len, **kwargs}
        return pooling.TransformerEmbedder(self.encoder, self.tokenizer, **kwargs)

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """``(n, d)`` float32 vectors of ``texts`` (texts past ``max_len`` tokens are truncated)."""
        return self.embedder().encode(texts, batch_size=batch_size)

    def score_candidates(self, queries: Sequence[str], candidates: Sequence[Sequence[str]],
                         batch_size: int = 64) -> np.ndarray:
        """Cosine of each query with each of its candidates: ``(n, N)``, every distinct text encoded once."""
        queries, cands = _candidate_lists(queries, candidates)
        unique = list(dict.fromkeys(t for row in cands for t in row))
        where = {t: i for i, t in enumerate(unique)}
        Q = self.encode(queries, batch_size).astype(np.float64)  # (n, d)
        D = self.encode(unique, batch_size).astype(np.float64)  # (distinct candidates, d)
        Q /= np.maximum(np.linalg.norm(Q, axis=1, keepdims=True), 1e-12)
        D /= np.maximum(np.linalg.norm(D, axis=1, keepdims=True), 1e-12)
        idx = np.array([[where[t] for t in row] for row in cands])  # (n, N)
        return np.einsum("nd,nkd->nk", Q, D[idx])


def _candidate_lists(queries, candidates) -> tuple[list[str], list[list[str]]]:
    queries = text_list(queries, "queries", allow_empty=False)
    cands = [text_list(row, "each candidate list", allow_empty=False) for row in candidates]
    if len(cands) != len(queries):
        raise ValueError(f"give one candidate list per query: {len(queries)} queries, {len(cands)} lists")
    if len({len(row) for row in cands}) != 1:
        raise ValueError("every query needs the same number of candidates (pad the lists, or group by length)")
    return queries, cands


# --- 4. training losses for train.fit -----------------------------------------------------


def simcse_loss(temperature: float = 0.05, require_dropout: bool = True):
    """Unsupervised SimCSE as a ``loss_fn(model, batch)`` for ``minilib.train.fit``.

    ``batch`` is ``(ids, attention_mask)`` of ``B`` texts; ``model`` a :class:`BiEncoder`. The
    batch goes through the model twice, stacked as one ``2B`` batch: dropout draws a different
    mask for every row, so text ``i`` gets two different vectors ``z_i`` and ``z'_i``, a positive
    pair; the other texts of the batch are the negatives: :func:`info_nce` of ``z`` against
    ``z'``. Without dropout the two views are identical and the loss only pushes texts apart,
    so a model with no dropout raises an error (``require_dropout=False`` allows it, for the
    ablation). Defined in chapter 08.
    """
    def loss_fn(model: nn.Module, batch) -> torch.Tensor:
        if not isinstance(batch, (tuple, list)) or len(batch) != 2:
            raise ValueError("simcse_loss expects batches (ids, attention_mask): "
                             "train.Batches(tokenize_texts(tokenizer, texts, max_len), batch_size)")
        if require_dropout and model.training and dropout_rate(model) == 0.0:
            raise ValueError("the model has no dropout: SimCSE's two views would be identical. Turn it on with "
                             "contrastive.set_dropout(model, 0.1), or pass require_dropout=False for the ablation")
        ids, mask = trim(*batch)
        z = model(torch.cat([ids, ids]), torch.cat([mask, mask]))  # (2B, d): two dropout views of each text
        z1, z2 = z.chunk(2)
        return info_nce(z1, z2, temperature)

    return loss_fn


# Chapter 08's unsupervised SimCSE on chapter 06's encoder, one recipe per profile, so that chapter 09
# can put the same model in its table. (Chapter 08's notebook spells the same values out in its cfg.)
SIMCSE_RECIPE = {
    "quick": dict(max_len=32, steps=100, batch_size=64, lr=3e-4, temperature=0.05, dropout=0.1, max_sentences=None),
    "full": dict(max_len=64, steps=1000, batch_size=128, lr=5e-5, temperature=0.05, dropout=0.1,
                 max_sentences=128_000),
}


def train_simcse(encoder: Transformer, tokenizer, sentences: Sequence[str], *, steps: int, batch_size: int,
                 lr: float, max_len: int, temperature: float = 0.05, dropout: float = 0.1,
                 max_sentences: int | None = None, seed: int = 0, device=None, progress: bool = True,
                 eval_fn=None, eval_every: int | None = None) -> tuple[BiEncoder, dict]:
    """Unsupervised SimCSE on a copy of ``encoder``: ``(bi_encoder, history)``; ``encoder`` is left as it was.

    ``sentences`` are the unlabelled training texts (at most ``max_sentences`` of them, a seeded
    sample, are used), cut to ``max_len`` tokens; :func:`set_dropout` turns on the noise,
    :func:`simcse_loss` trains through ``minilib.train.fit``. The bi-encoder comes back in eval
    mode with dropout off, ready to :meth:`BiEncoder.encode`. ``SIMCSE_RECIPE[profile]`` holds
    the book's settings: ``train_simcse(enc, tok, sents, **SIMCSE_RECIPE["quick"])``.
    Defined in chapter 08.
    """
    sentences = text_list(sentences, "sentences", allow_empty=False)
    if max_sentences is not None and len(sentences) > max_sentences:
        keep = np.sort(np.random.default_rng(seed).choice(len(sentences), max_sentences, replace=False))
        sentences = [sentences[i] for i in keep]
    if len(sentences) < 2:
        raise ValueError(f"SimCSE needs at least 2 sentences (each batch's other sentences are the negatives), "
                         f"got {len(sentences)}")
    tokens = tokenize_texts(tokenizer, sentences, max_len)
    torch.manual_seed(seed)
    model = BiEncoder(copy.deepcopy(encoder), tokenizer)
    set_dropout(model, dropout)
    history = train.fit(model, train.Batches(tokens, min(batch_size, len(sentences)), seed=seed),
                        simcse_loss(temperature), steps=steps, lr=lr, device=device, progress=progress,
                        desc="unsupervised SimCSE", eval_fn=eval_fn, eval_every=eval_every)
    model.eval()
    set_dropout(model, 0.0)
    return model, history


def pair_loss(temperature: float = 0.05, symmetric: bool = False):
    """Supervised contrastive training on pairs, with optional hard negatives, for ``train.fit``.

    ``batch`` is ``(a_ids, a_mask, p_ids, p_mask)`` (anchor, positive) or
    ``(a_ids, a_mask, p_ids, p_mask, n_ids, n_mask)`` with one hard negative per anchor; ``model``
    a :class:`BiEncoder`. Each anchor must pick its positive among all ``B`` positives and ``B``
    hard negatives of the batch (:func:`info_nce` with the negatives appended to the keys), as in
    supervised SimCSE. Defined in chapter 08.
    """
    def loss_fn(model: nn.Module, batch) -> torch.Tensor:
        if not isinstance(batch, (tuple, list)) or len(batch) not in (4, 6):
            raise ValueError("pair_loss expects batches (a_ids, a_mask, p_ids, p_mask) or with a hard negative "
                             "(..., n_ids, n_mask)")
        parts = [trim(batch[i], batch[i + 1]) for i in range(0, len(batch), 2)]
        anchors = model(*parts[0])  # (B, d)
        keys = torch.cat([model(*p) for p in parts[1:]])  # (B, d) positives, then (B, d) hard negatives
        return info_nce(anchors, keys, temperature, symmetric=symmetric and len(parts) == 2)

    return loss_fn


# --- 5. the cross-encoder -----------------------------------------------------------------


def _pair_specials(tokenizer) -> tuple[list[int], int]:
    """(ids before text a, separator id) for a tokenizer: BERT's [CLS]/[SEP] or our BPE's <bos>/<eos>."""
    if getattr(tokenizer, "cls_id", None) is not None and getattr(tokenizer, "sep_id", None) is not None:
        return [tokenizer.cls_id], tokenizer.sep_id
    if getattr(tokenizer, "eos_id", None) is not None:
        bos = getattr(tokenizer, "bos_id", None)
        return ([bos] if bos is not None else []), tokenizer.eos_id
    raise ValueError("the tokenizer needs a separator token to join two texts: [SEP] (WordPiece) or <eos> (ByteBPE)")


def _piece_ids(tokenizer, text: str) -> list[int]:
    try:
        return list(tokenizer.encode(text, add_special_tokens=False))  # WordPiece adds [CLS]/[SEP] otherwise
    except TypeError:
        return list(tokenizer.encode(text))


def tokenize_pairs(tokenizer, texts_a: Sequence[str], texts_b: Sequence[str],
                   max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One sequence per pair, ``[bos] a <sep> b <sep>``: ``(ids, attention_mask)``, both ``(n, T)``.

    ``<sep>`` is ``[SEP]`` for a WordPiece tokenizer (with ``[CLS]`` in front) and ``<eos>`` for
    chapter 05's byte-level BPE (with ``<bos>``). Pairs longer than ``max_len`` are cut
    longest-first: a token comes off the end of the longer text until the pair fits, so a long
    document cannot crowd out a short query. Padded right to the longest pair. Defined in chapter 08.
    """
    a, b = text_list(texts_a, "texts_a", allow_empty=False), text_list(texts_b, "texts_b", allow_empty=False)
    if len(a) != len(b):
        raise ValueError(f"texts_a and texts_b must be paired: {len(a)} and {len(b)} texts")
    head, sep = _pair_specials(tokenizer)
    budget = max_len - len(head) - 2
    if budget < 2:
        raise ValueError(f"max_len={max_len} leaves no room for two texts and the special tokens")
    rows = []
    for x, y in zip(a, b):
        ix, iy = _piece_ids(tokenizer, x), _piece_ids(tokenizer, y)
        while len(ix) + len(iy) > budget:  # longest first
            if len(ix) >= len(iy):
                ix.pop()
            else:
                iy.pop()
        rows.append(head + ix + [sep] + iy + [sep])
    T = max(map(len, rows))
    pad = getattr(tokenizer, "pad_id", None) or 0
    ids = torch.full((len(rows), T), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), T), dtype=torch.long)
    for r, row in enumerate(rows):
        ids[r, : len(row)] = torch.tensor(row, dtype=torch.long)
        mask[r, : len(row)] = 1
    return ids, mask


class CrossEncoder(nn.Module):
    """Both texts in one sequence, every token of one attending to every token of the other: a score per pair.

    ``forward(ids (B, T), attention_mask (B, T)) -> (B,)`` relevance scores of pairs made by
    :func:`tokenize_pairs`. ``head`` says how the joint token states become a score:

    * ``"pair"`` (default): mean-pool the tokens of text a and of text b separately (each has
      already attended to the other) and score ``scale * cos(u, v) + bias``, ``scale`` learned
      from ``1 / 0.05``. The comparison is built in; what training adds is what the tokens
      read across the separator.
    * ``"mean"`` / ``"first"``: BERT's cross-encoder, a linear layer on the mean of all tokens or
      on the first (``<bos>`` / ``[CLS]``) token; the encoder must learn to compare by itself.

    :meth:`score` scores pairs of texts, :meth:`score_candidates` each query against its own
    list of candidates, in eval mode. Nothing can be cached: ``n`` queries against ``m``
    documents cost ``n * m`` forward passes, where a :class:`BiEncoder` needs ``n + m``.
    Defined in chapter 08.
    """

    HEADS = ("pair", "mean", "first")

    def __init__(self, encoder: Transformer, tokenizer, head: str = "pair", max_len: int | None = None):
        super().__init__()
        if not isinstance(encoder, Transformer):
            hint = " (for a MaskedLM pass model.encoder)" if hasattr(encoder, "encoder") else ""
            raise TypeError(f"encoder must be a minilib.transformer.Transformer, got {type(encoder).__name__}{hint}")
        if head not in self.HEADS:
            raise ValueError(f"head must be one of {self.HEADS}, got {head!r}")
        self.head_ids, self.sep_id = _pair_specials(tokenizer)  # fails early for a tokenizer without a separator
        self.encoder, self.tokenizer, self.head_kind = encoder, tokenizer, head
        self.max_len = min(max_len or encoder.config.max_len, encoder.config.max_len)
        if head == "pair":
            self.scale = nn.Parameter(torch.tensor(20.0))  # 1 / temperature, learned
            self.bias = nn.Parameter(torch.zeros(()))
        else:
            self.head = nn.Linear(encoder.config.d_model, 1)
            nn.init.normal_(self.head.weight, std=0.02)
            nn.init.zeros_(self.head.bias)

    def segments(self, ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Masks ``(B, T)`` of the tokens of text a and of text b (special tokens and padding excluded)."""
        is_sep = ids == self.sep_id
        after_first_sep = (torch.cumsum(is_sep.long(), dim=1) - is_sep.long()) > 0
        words = attention_mask.bool() & ~is_sep
        if self.head_ids:
            words &= ids != self.head_ids[0]
        return (words & ~after_first_sep).long(), (words & after_first_sep).long()

    def forward(self, ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        h = self.encoder(ids, attention_mask)  # (B, T, d): every token has seen both texts
        if self.head_kind == "pair":
            in_a, in_b = self.segments(ids, attention_mask)
            u = F.normalize(pooling.mean(h, in_a), dim=-1)  # (B, d) text a, read in the light of b
            v = F.normalize(pooling.mean(h, in_b), dim=-1)  # (B, d) text b, read in the light of a
            return self.scale * (u * v).sum(-1) + self.bias  # (B,)
        z = pooling.mean(h, attention_mask) if self.head_kind == "mean" else pooling.cls(h, attention_mask)
        return self.head(z).squeeze(-1)  # (B,)

    @torch.no_grad()
    def score(self, texts_a: Sequence[str], texts_b: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Relevance logits of the pairs ``(texts_a[i], texts_b[i])``: ``(n,)`` float32."""
        ids, mask = tokenize_pairs(self.tokenizer, texts_a, texts_b, self.max_len)
        device = next(self.parameters()).device
        was_training = self.training
        self.eval()
        try:
            out = [self(*(t.to(device) for t in trim(ids[s:s + batch_size], mask[s:s + batch_size]))).float().cpu()
                   for s in range(0, len(ids), batch_size)]
        finally:
            self.train(was_training)
        scores = torch.cat(out).numpy()
        _check_finite(torch.from_numpy(scores)[:, None], "cross-encoder scores")
        return scores

    def score_candidates(self, queries: Sequence[str], candidates: Sequence[Sequence[str]],
                         batch_size: int = 64) -> np.ndarray:
        """Scores of each query with each of its ``N`` candidates: ``(n, N)``, one forward pass per pair."""
        queries, cands = _candidate_lists(queries, candidates)
        N = len(cands[0])
        flat_q = [q for q in queries for _ in range(N)]
        flat_c = [c for row in cands for c in row]
        return self.score(flat_q, flat_c, batch_size).reshape(len(queries), N)


def cross_encoder_loss(kind: str = "listwise"):
    """A ``loss_fn(model, batch)`` training a :class:`CrossEncoder` on candidate lists.

    ``batch`` is ``(ids, attention_mask)``, both ``(B, N, T)``: query ``b`` paired with each of its
    ``N`` candidates (:func:`tokenize_pairs` reshaped), the relevant one first. ``"listwise"``:
    cross-entropy of the softmax over the ``N`` scores, target 0 (the cross-encoder form of
    InfoNCE); ``"pointwise"``: binary cross-entropy, label 1 for candidate 0 and 0 for the others.
    Defined in chapter 08.
    """
    if kind not in ("listwise", "pointwise"):
        raise ValueError(f"kind must be 'listwise' or 'pointwise', got {kind!r}")

    def loss_fn(model: nn.Module, batch) -> torch.Tensor:
        ids, mask = batch
        if ids.dim() != 3 or ids.shape != mask.shape or ids.shape[1] < 2:
            raise ValueError(f"cross_encoder_loss expects ids and attention_mask of shape (batch, candidates >= 2, "
                             f"seq), got {tuple(ids.shape)} and {tuple(mask.shape)}")
        ids, mask = trim(ids, mask)
        B, N, T = ids.shape
        logits = model(ids.reshape(B * N, T), mask.reshape(B * N, T)).float().reshape(B, N)
        _check_finite(logits, "cross-encoder scores")
        if kind == "listwise":
            return F.cross_entropy(logits, torch.zeros(B, dtype=torch.long, device=logits.device))
        labels = torch.zeros_like(logits)
        labels[:, 0] = 1.0
        return F.binary_cross_entropy_with_logits(logits, labels)

    return loss_fn


# --- 6. distillation --------------------------------------------------------------------------


def distill_loss(student_scores: torch.Tensor, teacher_scores: torch.Tensor, kind: str = "kl",
                 student_temperature: float = 0.05, teacher_temperature: float = 1.0) -> torch.Tensor:
    """How far a student's scores are from a teacher's, over each query's ``N`` candidates.

    ``student_scores``, ``teacher_scores`` ``(B, N)``; the teacher's are constants (detached).
    ``"kl"``: ``KL(p_teacher || p_student)`` with ``p = softmax(scores / temperature)`` row by row,
    averaged over the ``B`` rows: the student must reproduce the teacher's *ranking
    distribution*, whatever the scale of its raw scores (cosines in [-1, 1] against
    unbounded logits). sentence-transformers' ``DistillKLDivLoss`` is this times
    ``student_temperature ** 2``. ``"margin_mse"``: Hofstaetter et al.'s margin-MSE, the mean
    squared difference between the student's and the teacher's margins ``s_0 - s_j`` of
    candidate 0 over each other candidate (raw scores; temperatures unused). Defined in chapter 08.
    """
    s, t = _as_tensor(student_scores, "student_scores"), _as_tensor(teacher_scores, "teacher_scores")
    if s.shape != t.shape:
        raise ValueError(f"student and teacher scores must have the same (batch, candidates) shape, got "
                         f"{tuple(s.shape)} and {tuple(t.shape)}")
    if s.shape[1] < 2:
        raise ValueError("distillation compares candidates: give at least 2 per query (a softmax over 1 is constant)")
    if not (student_temperature > 0 and teacher_temperature > 0):
        raise ValueError("temperatures must be > 0")
    _check_finite(s, "student scores")
    _check_finite(t, "teacher scores")
    s, t = s.float(), t.detach().float().to(s.device)
    if kind == "kl":
        log_p_student = F.log_softmax(s / student_temperature, dim=1)
        p_teacher = F.softmax(t / teacher_temperature, dim=1)
        return F.kl_div(log_p_student, p_teacher, reduction="batchmean")
    if kind == "margin_mse":
        return F.mse_loss(s[:, :1] - s[:, 1:], t[:, :1] - t[:, 1:])
    raise ValueError(f"kind must be 'kl' or 'margin_mse', got {kind!r}")


def distillation_loss(kind: str = "kl", student_temperature: float = 0.05, teacher_temperature: float = 1.0,
                      contrastive_weight: float = 0.0, temperature: float = 0.05):
    """A ``loss_fn(model, batch)`` that trains a :class:`BiEncoder` on a teacher's scores.

    ``batch`` is ``(q_ids, q_mask, c_ids, c_mask, teacher)``: ``B`` queries ``(B, Tq)``, their
    ``N`` candidates each ``(B, N, Tc)`` and the teacher's scores of those pairs ``(B, N)``
    (computed once, e.g. with :meth:`CrossEncoder.score_candidates`). The student's scores are
    the cosines of the query with each candidate; the loss is :func:`distill_loss`. With
    ``contrastive_weight > 0`` the in-batch :func:`info_nce` of the queries against all the
    batch's candidates (candidate 0 of each query relevant) is added with that weight.
    Defined in chapter 08.
    """
    if contrastive_weight < 0:
        raise ValueError(f"contrastive_weight must be >= 0, got {contrastive_weight}")

    def loss_fn(model: nn.Module, batch) -> torch.Tensor:
        if not isinstance(batch, (tuple, list)) or len(batch) != 5:
            raise ValueError("distillation_loss expects batches (q_ids, q_mask, c_ids, c_mask, teacher_scores)")
        q_ids, q_mask, c_ids, c_mask, teacher = batch
        if c_ids.dim() != 3 or teacher.shape != c_ids.shape[:2] or q_ids.shape[0] != c_ids.shape[0]:
            raise ValueError(f"shapes do not fit: queries {tuple(q_ids.shape)}, candidates {tuple(c_ids.shape)} "
                             f"(B, N, T), teacher {tuple(teacher.shape)} (B, N)")
        B, N, _ = c_ids.shape
        q = model(*trim(q_ids, q_mask))  # (B, d)
        c_ids, c_mask = trim(c_ids, c_mask)
        c = model(c_ids.reshape(B * N, -1), c_mask.reshape(B * N, -1))  # (B N, d)
        qn, cn = F.normalize(q.float(), dim=-1), F.normalize(c.float(), dim=-1)
        student = (qn[:, None, :] * cn.reshape(B, N, -1)).sum(-1)  # (B, N) cosines
        loss = distill_loss(student, teacher, kind, student_temperature, teacher_temperature)
        if contrastive_weight > 0:
            # keys: candidate 0 of every query first (the positives), then all other candidates
            c3 = c.reshape(B, N, -1)
            keys = torch.cat([c3[:, 0], c3[:, 1:].reshape(B * (N - 1), -1)])
            loss = loss + contrastive_weight * info_nce(q, keys, temperature)
        return loss

    return loss_fn


# --- monitoring and evaluation ------------------------------------------------------------


class AlignUniform:
    """An ``eval_fn`` for ``train.fit`` that records alignment and uniformity as a model trains.

    Built from positive pairs ``(texts_a[i], texts_b[i])`` (alignment) and ``texts`` (uniformity;
    default: ``texts_a + texts_b``), tokenized once. Each call ``monitor(model)`` encodes them with
    the :class:`BiEncoder` ``model`` (``fit`` calls it in eval mode, without gradients), appends
    both numbers to ``monitor.history`` and returns the one named by ``returns``. Defined in chapter 08.
    """

    def __init__(self, tokenizer, texts_a: Sequence[str], texts_b: Sequence[str], texts: Sequence[str] | None = None,
                 max_len: int = 64, batch_size: int = 128, returns: str = "uniformity"):
        a, b = text_list(texts_a, "texts_a", allow_empty=False), text_list(texts_b, "texts_b", allow_empty=False)
        if len(a) != len(b):
            raise ValueError(f"texts_a and texts_b must be paired: {len(a)} and {len(b)} texts")
        if returns not in ("alignment", "uniformity"):
            raise ValueError(f"returns must be 'alignment' or 'uniformity', got {returns!r}")
        texts = a + b if texts is None else text_list(texts, "texts", allow_empty=False)
        self.a, self.b, self.u = (tokenize_texts(tokenizer, x, max_len) for x in (a, b, texts))
        self.batch_size, self.returns = batch_size, returns
        self.history: dict[str, list[float]] = {"alignment": [], "uniformity": []}

    def _encode(self, model: nn.Module, data) -> torch.Tensor:
        ids, mask = data
        device = next(model.parameters()).device
        out = [model(*(t.to(device) for t in trim(ids[s:s + self.batch_size], mask[s:s + self.batch_size])))
               for s in range(0, len(ids), self.batch_size)]
        return torch.cat(out).float().cpu()

    @torch.no_grad()
    def measure(self, model: nn.Module) -> dict[str, float]:
        """``{"alignment", "uniformity"}`` of ``model`` now, without recording them."""
        was_training = model.training
        model.eval()
        try:
            za, zb, zu = (self._encode(model, d) for d in (self.a, self.b, self.u))
        finally:
            model.train(was_training)
        return {"alignment": float(alignment(za, zb)), "uniformity": float(uniformity(zu))}

    def __call__(self, model: nn.Module) -> float:
        m = self.measure(model)
        for k, v in m.items():
            self.history[k].append(v)
        return m[self.returns]


def ranking_metrics(scores) -> dict[str, float]:
    """Accuracy@1 and MRR of candidate lists whose relevant candidate is column 0.

    ``scores`` ``(n, N)``. The relevant candidate's rank counts every other candidate scored
    higher *or equal* (ties count against the model: a constant scorer gets rank ``N``).
    Defined in chapter 08.
    """
    S = np.asarray(scores, dtype=np.float64)
    if S.ndim != 2 or S.shape[1] < 2 or S.shape[0] == 0:
        raise ValueError(f"scores must be (n queries, N >= 2 candidates), got shape {S.shape}")
    if not np.isfinite(S).all():
        raise FloatingPointError("scores hold NaN or inf: check the model that produced them")
    rank = 1 + (S[:, 1:] >= S[:, :1]).sum(axis=1)  # (n,)
    return {"accuracy@1": float((rank == 1).mean()), "mrr": float((1.0 / rank).mean())}
