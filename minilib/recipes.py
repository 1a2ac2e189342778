"""Training recipes of modern embedders: hard negatives, focal InfoNCE, soups, distillation, filters.

Read it top to bottom, as chapter 11 builds it:

1. :func:`mine_hard_negatives`: for each query, the documents a current model ranks highest that
   are not its positive, after a *false-negative filter*: a candidate scoring above
   ``relative`` x the positive's score (NV-Retriever's "TopK-PercPos"), or within ``margin`` of
   it, is probably another right answer and is dropped;
2. :func:`focal_info_nce`: InfoNCE with Lin et al.'s focal factor ``(1 - p)^gamma`` on each
   query's positive probability ``p``: pairs the model already gets right weigh less;
3. :func:`soup` and :func:`greedy_soup`: model soups (Wortsman et al., 2022), the average of the
   weights of several fine-tuned runs from one start;
4. teacher-aligned distillation (LEAF): :func:`distill_embeddings_loss` makes a small
   :class:`StudentEncoder` reproduce a teacher's *vectors*, so the student can encode queries
   against documents the teacher encoded (:class:`Asymmetric`, :func:`asymmetric_search`);
5. the embedding filter: :func:`token_frequencies`, :func:`unembedding` and
   :func:`embedding_filter` build a projector that removes the directions along which a decoder's
   hidden state writes its most frequent tokens; :func:`apply_projector` applies it;
6. the chapter's cheap fine-tuning: a :class:`VectorHead` (a linear map started at the identity)
   trained with :func:`head_loss` on vectors a frozen encoder computed once.

Defined in chapter 11.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .contrastive import _as_tensor, _check_finite, trim
from .llm_embed import Decoder, DecoderEmbedder
from .transformer import CausalLM

__all__ = ["score_matrix", "mine_hard_negatives", "focal_info_nce", "soup", "greedy_soup", "distill_embeddings_loss",
           "distill_loss_fn", "StudentEncoder", "Asymmetric", "asymmetric_search", "token_frequencies",
           "unembedding", "embedding_filter", "apply_projector", "VectorHead", "head_loss"]


# --- 1. hard negatives with a false-negative filter ---------------------------------------------


def score_matrix(query_emb, doc_emb) -> torch.Tensor:
    """Cosine similarities ``(n_q, n_d)`` of ``query_emb (n_q, d)`` and ``doc_emb (n_d, d)``
    (tensors or arrays). Defined in chapter 11."""
    q, d = _as_tensor(query_emb, "query_emb"), _as_tensor(doc_emb, "doc_emb")
    if q.shape[1] != d.shape[1]:
        raise ValueError(f"queries and documents must have the same width, got {q.shape[1]} and {d.shape[1]}")
    _check_finite(q, "query_emb")
    _check_finite(d, "doc_emb")
    return F.normalize(q.double(), dim=-1) @ F.normalize(d.double(), dim=-1).T


def mine_hard_negatives(query_emb, doc_emb, positives, k: int = 1, relative: float | None = 0.95,
                        margin: float | None = None, exclude: Mapping[int, Sequence[int]] | None = None,
                        return_dropped: bool = False):
    """The ``k`` highest-scoring non-positive documents of each query, after a false-negative filter.

    ``query_emb`` ``(n_q, d)``, ``doc_emb`` ``(n_d, d)``; ``positives`` ``(n_q,)`` the index of each
    query's positive document. A candidate is dropped when its cosine ``s`` is at least
    ``relative * s_pos`` (NV-Retriever's TopK-PercPos; ``relative=None`` turns it off) or, with
    ``margin``, at least ``s_pos - margin`` (TopK-MarginPos); ``exclude[i]`` lists documents never
    to use for query ``i`` (e.g. its other known positives). Ties go to the lower index, so the
    result is deterministic. Returns a ``LongTensor (n_q, k)``; with ``return_dropped`` also
    ``(n_q, k)`` of the candidates the filter removed from the top of the ranking (``-1`` pads).
    Defined in chapter 11.
    """
    S = score_matrix(query_emb, doc_emb)  # (n_q, n_d) float64
    n_q, n_d = S.shape
    pos = torch.as_tensor(np.asarray(positives), dtype=torch.long).reshape(-1)
    if pos.numel() != n_q:
        raise ValueError(f"give one positive per query: {n_q} queries, {pos.numel()} positives")
    if ((pos < 0) | (pos >= n_d)).any():
        raise ValueError(f"positives must index the {n_d} documents (0..{n_d - 1})")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be an int >= 1, got {k!r}")
    if relative is not None and not 0 < relative:
        raise ValueError(f"relative must be > 0 (NV-Retriever uses 0.95), or None, got {relative}")
    if margin is not None and margin < 0:
        raise ValueError(f"margin must be >= 0, or None, got {margin}")
    rows = torch.arange(n_q)
    s_pos = S[rows, pos]  # (n_q,)
    allowed = torch.ones_like(S, dtype=torch.bool)
    allowed[rows, pos] = False  # never the positive itself
    for i, docs in (exclude or {}).items():
        allowed[int(i), list(docs)] = False
    # The filter: a candidate at least as close as (a share of) the positive is more likely an
    # unlabelled right answer than a useful negative.
    suspicious = torch.zeros_like(allowed)
    if relative is not None:
        suspicious |= S >= relative * s_pos[:, None]
    if margin is not None:
        suspicious |= S >= (s_pos - margin)[:, None]
    kept = allowed & ~suspicious
    short = torch.nonzero(kept.sum(1) < k).flatten()
    if len(short):
        raise ValueError(f"{len(short)} quer(ies) (e.g. {short[:3].tolist()}) have fewer than k={k} candidates "
                         "left after the filter: lower k, or loosen relative/margin")
    # Stable descending sort: equal scores keep index order.
    order = torch.sort(torch.where(kept, S, -torch.inf), dim=1, descending=True, stable=True).indices
    negatives = order[:, :k]
    if not return_dropped:
        return negatives
    dropped = torch.full((n_q, k), -1, dtype=torch.long)
    ranked = torch.sort(torch.where(allowed, S, -torch.inf), dim=1, descending=True, stable=True).indices[:, :k]
    for i in range(n_q):
        hit = [int(j) for j in ranked[i] if suspicious[i, j]]
        dropped[i, :len(hit)] = torch.tensor(hit, dtype=torch.long)
    return negatives, dropped


# --- 2. focal reweighting -----------------------------------------------------------------------


def focal_info_nce(queries, keys, temperature: float = 0.05, gamma: float = 1.0) -> torch.Tensor:
    """InfoNCE with a focal factor: the mean of ``-(1 - p_i)^gamma log p_i``.

    ``queries`` ``(B, d)``, ``keys`` ``(B + M, d)``, row ``i``'s positive is key ``i`` as in
    ``contrastive.info_nce``; ``p_i`` is the softmax probability of the positive. ``gamma = 0`` is
    exactly ``info_nce``; a larger ``gamma`` scales down the loss (and gradient) of pairs the
    model already ranks confidently, so the hard ones dominate (Lin et al., 2017). Returns a
    scalar tensor. Defined in chapter 11.
    """
    q, k = _as_tensor(queries, "queries"), _as_tensor(keys, "keys")
    B = q.shape[0]
    if q.shape[1] != k.shape[1]:
        raise ValueError(f"queries and keys must have the same width, got {q.shape[1]} and {k.shape[1]}")
    if k.shape[0] < B:
        raise ValueError(f"keys needs at least one row per query ({B} positives first), got {k.shape[0]}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if not gamma >= 0:
        raise ValueError(f"gamma must be >= 0 (0 is plain InfoNCE; Lin et al. use 2), got {gamma}")
    _check_finite(q, "queries")
    _check_finite(k, "keys")
    q, k = F.normalize(q.float(), dim=-1), F.normalize(k.float(), dim=-1)
    logits = q @ k.T / temperature  # (B, B + M)
    log_p = F.log_softmax(logits, dim=1)[torch.arange(B), torch.arange(B)]  # (B,) log p of each positive
    if gamma == 0:
        return -log_p.mean()
    return (-(1 - log_p.exp()).pow(gamma) * log_p).mean()


# --- 3. model soups -----------------------------------------------------------------------------


def soup(state_dicts: Sequence[Mapping[str, torch.Tensor]], weights: Sequence[float] | None = None) -> dict:
    """The weighted average of several state dicts of one architecture (uniform by default).

    Every dict must have the same keys and shapes. Floating-point tensors are averaged;
    integer buffers (counters, ids) must be equal in every dict and are copied. ``weights`` are
    normalised to sum to 1. Returns a new dict of tensors. Defined in chapter 11.
    """
    sds = list(state_dicts)
    if not sds:
        raise ValueError("state_dicts is empty: give the state_dict() of at least one fine-tuned model")
    keys = list(sds[0].keys())
    for i, sd in enumerate(sds[1:], 1):
        if set(sd.keys()) != set(keys):
            diff = sorted(set(sd.keys()) ^ set(keys))[:3]
            raise KeyError(f"state dict {i} has different keys from state dict 0 (e.g. {diff}): a soup averages "
                           "models of one architecture")
    if weights is None:
        w = [1.0 / len(sds)] * len(sds)
    else:
        w = [float(x) for x in weights]
        if len(w) != len(sds) or any(x < 0 or not np.isfinite(x) for x in w) or sum(w) <= 0:
            raise ValueError(f"give one weight >= 0 per state dict ({len(sds)}), not all zero; got {weights}")
        w = [x / sum(w) for x in w]
    out = {}
    for key in keys:
        ts = [sd[key] for sd in sds]
        if any(t.shape != ts[0].shape for t in ts):
            raise ValueError(f"{key!r} has different shapes {[tuple(t.shape) for t in ts]}: not one architecture")
        if ts[0].is_floating_point():
            out[key] = sum(wi * t.detach().double() for wi, t in zip(w, ts)).to(ts[0].dtype)
        else:
            if any(not torch.equal(t, ts[0]) for t in ts):
                raise ValueError(f"integer tensor {key!r} differs between the models: it cannot be averaged")
            out[key] = ts[0].clone()
    return out


def greedy_soup(candidates: Sequence[Mapping[str, torch.Tensor]], evaluate: Callable[[dict], float]):
    """Wortsman et al.'s greedy soup: add models in order of their held-out score, keep an
    ingredient only if the soup's held-out score does not drop.

    ``evaluate(state_dict) -> float`` (higher is better) must use held-out data, not the test
    set. Returns ``(state_dict, chosen indices, {"scores": each candidate's score, "soup": the
    soup's score})``. Defined in chapter 11.
    """
    cands = list(candidates)
    if not cands:
        raise ValueError("candidates is empty: give the state dicts of the fine-tuned runs")
    scores = [float(evaluate(dict(sd))) for sd in cands]
    order = sorted(range(len(cands)), key=lambda i: (-scores[i], i))
    chosen, best = [order[0]], scores[order[0]]
    for i in order[1:]:
        trial = soup([cands[j] for j in chosen + [i]])
        s = float(evaluate(trial))
        if s >= best:
            chosen, best = chosen + [i], s
    return soup([cands[j] for j in chosen]), chosen, {"scores": scores, "soup": best}


# --- 4. teacher-aligned distillation ---------------------------------------------------------------


def distill_embeddings_loss(student, teacher, kind: str = "mse") -> torch.Tensor:
    """How far a student's vectors are from a teacher's, row by row: ``(B, d), (B, d) -> scalar``.

    ``"mse"``: the mean over rows of ``||s_i - t_i||^2`` (LEAF's loss; give unit vectors, so it is
    ``2 - 2 cos``); ``"cosine"``: the mean of ``1 - cos(s_i, t_i)``. The teacher is a constant
    (detached). The student lives in the teacher's space afterwards: its vectors can be compared
    with the teacher's. Defined in chapter 11.
    """
    s, t = _as_tensor(student, "student"), _as_tensor(teacher, "teacher")
    if s.shape != t.shape:
        raise ValueError(f"student and teacher vectors must have the same (batch, dim) shape, got "
                         f"{tuple(s.shape)} and {tuple(t.shape)}: give the student the teacher's width")
    _check_finite(s, "student vectors")
    _check_finite(t, "teacher vectors")
    s, t = s.float(), t.detach().float().to(s.device)
    if kind == "mse":
        return (s - t).pow(2).sum(dim=1).mean()
    if kind == "cosine":
        return (1 - F.cosine_similarity(s, t, dim=1)).mean()
    raise ValueError(f"kind must be 'mse' or 'cosine', got {kind!r}")


def distill_loss_fn(kind: str = "mse"):
    """A ``loss_fn(model, batch)`` for ``train.fit``: ``batch = (ids, attention_mask, teacher (B, d))``.
    Defined in chapter 11."""
    def loss_fn(model: nn.Module, batch) -> torch.Tensor:
        if not isinstance(batch, (tuple, list)) or len(batch) != 3:
            raise ValueError("distill_loss_fn expects batches (ids, attention_mask, teacher_vectors)")
        ids, mask = trim(batch[0], batch[1])
        return distill_embeddings_loss(model(ids, mask), batch[2], kind)

    return loss_fn


class StudentEncoder(nn.Module):
    """A tiny, fast student: token vectors -> masked mean -> linear map -> unit vector.

    ``embeddings`` ``(V, d_in)`` initialises the trainable token table (e.g. the teacher's own
    input embeddings: the student starts from the teacher's vocabulary and its token
    geometry); ``dim`` is the output width (the teacher's, to align with it). No attention: a
    text costs one table lookup per token and one matrix product, so it encodes orders of
    magnitude faster than a Transformer, at the price of word order. ``forward(ids (B, T),
    attention_mask (B, T)) -> (B, dim)``; with a ``tokenizer`` (``encode_batch``), ``encode(texts)
    -> (n, dim)`` float32. Defined in chapter 11.
    """

    def __init__(self, embeddings: torch.Tensor, dim: int, tokenizer=None, max_len: int = 256, normalize: bool = True):
        super().__init__()
        if not isinstance(embeddings, torch.Tensor) or embeddings.dim() != 2:
            raise ValueError("embeddings must be a (vocab_size, d_in) tensor, e.g. the teacher's token table")
        if tokenizer is not None and not hasattr(tokenizer, "encode_batch"):
            raise TypeError("tokenizer needs an encode_batch(texts, max_len=..., truncate=True) method")
        V, d_in = embeddings.shape
        self.tok = nn.Embedding(V, d_in)
        self.tok.weight.data.copy_(embeddings.detach().float())
        self.proj = nn.Linear(d_in, dim)
        if d_in == dim:  # start from "the mean of the token vectors" itself
            nn.init.eye_(self.proj.weight)
            nn.init.zeros_(self.proj.bias)
        self.tokenizer, self.max_len, self.normalize, self.dim = tokenizer, int(max_len), normalize, int(dim)

    def forward(self, ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if ids.shape != attention_mask.shape or ids.dim() != 2:
            raise ValueError(f"ids and attention_mask must both be (B, T), got {tuple(ids.shape)} and "
                             f"{tuple(attention_mask.shape)}")
        m = attention_mask.unsqueeze(-1).float()  # (B, T, 1)
        h = (self.tok(ids) * m).sum(1) / m.sum(1).clamp_min(1.0)  # (B, d_in) mean of the real tokens
        z = self.proj(h)  # (B, dim)
        return F.normalize(z, dim=-1) if self.normalize else z

    @torch.no_grad()
    def encode(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """``(n, dim)`` float32 text vectors (unit rows if ``normalize``), in eval mode; ``encode([])`` is
        ``(0, dim)``. Without a ``tokenizer`` it raises a ``ValueError``."""
        if self.tokenizer is None:
            raise ValueError("this StudentEncoder has no tokenizer: build it with StudentEncoder(emb, dim, tokenizer)")
        if isinstance(texts, str):
            raise TypeError("encode takes a list of texts, got one str: wrap it, encode([text])")
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        was = self.training
        self.eval()
        device = self.tok.weight.device
        out = []
        try:
            for s in range(0, len(texts), batch_size):
                ids, mask = self.tokenizer.encode_batch(texts[s:s + batch_size], max_len=self.max_len, truncate=True)
                out.append(self(ids.to(device), mask.to(device)).float().cpu().numpy())
        finally:   # an error must not leave a student in training in eval mode
            self.train(was)
        return np.concatenate(out)


class Asymmetric:
    """One ``encode(texts)`` from two models: ``query_model`` for the texts in ``queries``,
    ``doc_model`` for every other text, so a ``minilib.bench`` retrieval task scores student
    queries against teacher documents. Both must output vectors of one space (same width).
    Defined in chapter 11."""

    def __init__(self, query_model, doc_model, queries: Sequence[str]):
        for name, m in (("query_model", query_model), ("doc_model", doc_model)):
            if not hasattr(m, "encode"):
                raise TypeError(f"{name} needs an encode(texts) method")
        if isinstance(queries, str):
            raise TypeError("queries must be a list of texts, got one str")
        self.query_model, self.doc_model, self.queries = query_model, doc_model, set(queries)

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """``(n, d)`` float32: the rows of query texts from ``query_model``, the others from ``doc_model``
        (``batch_size`` is not passed on). Different widths raise a ``ValueError``."""
        texts = list(texts)
        is_q = np.array([t in self.queries for t in texts], dtype=bool)
        parts = {}
        for flag, model in ((True, self.query_model), (False, self.doc_model)):
            sel = [t for t, f in zip(texts, is_q) if f == flag]
            if sel:
                parts[flag] = np.asarray(model.encode(sel), dtype=np.float32)
        widths = {p.shape[1] for p in parts.values()}
        if len(widths) > 1:
            raise ValueError(f"query and document vectors have different widths {sorted(widths)}: "
                             "distil the student to the teacher's width")
        if not widths:  # no texts: an empty (0, d) array of the document model's width
            return np.asarray(self.doc_model.encode([]), dtype=np.float32)
        out = np.zeros((len(texts), widths.pop()), dtype=np.float32)
        for flag, p in parts.items():
            out[is_q == flag] = p
        return out


def asymmetric_search(query_vectors, doc_vectors, k: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` cosine search of queries ``(n_q, d)`` (e.g. a student's) in documents ``(n_d, d)``
    (e.g. a teacher's, encoded once). Returns ``(scores, indices)``, both ``(n_q, k)``.
    Defined in chapter 11."""
    S = score_matrix(query_vectors, doc_vectors)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= S.shape[1]:
        raise ValueError(f"k must be an int between 1 and the {S.shape[1]} documents, got {k!r}")
    top = torch.topk(S, k, dim=1)
    return top.values.float(), top.indices


# --- 5. the embedding filter ---------------------------------------------------------------------


def token_frequencies(encode: Callable[[str], Sequence[int]], texts: Sequence[str], vocab_size: int) -> np.ndarray:
    """How often each token id occurs when ``encode`` tokenizes ``texts``: ``(vocab_size,)`` float64
    counts. Defined in chapter 11."""
    if isinstance(texts, str):
        raise TypeError("texts must be a list of texts, got one str: wrap it, [text]")
    texts = list(texts)
    if not texts:
        raise ValueError("texts is empty: count token frequencies on some running text")
    counts = Counter(i for t in texts for i in encode(t))
    f = np.zeros(vocab_size, dtype=np.float64)
    for i, c in counts.items():
        if not 0 <= i < vocab_size:
            raise ValueError(f"token id {i} is outside the vocabulary of {vocab_size}")
        f[i] = c
    return f


def unembedding(model) -> torch.Tensor:
    """The output (unembedding) matrix ``(V, d)`` of a decoder: a ``llm_embed.DecoderEmbedder``, a
    ``llm_embed.Decoder``, or a minilib ``CausalLM``. Row ``v`` turns a final hidden state into
    token ``v``'s logit. Defined in chapter 11."""
    if isinstance(model, DecoderEmbedder):
        model = model.decoder
    lm = model.lm if isinstance(model, Decoder) else model
    if isinstance(lm, CausalLM):
        return lm.decoder.tok.weight.detach().float()  # CausalLM ties its head to the input table
    if hasattr(lm, "get_output_embeddings") and lm.get_output_embeddings() is not None:
        return lm.get_output_embeddings().weight.detach().float()
    raise TypeError(f"cannot find an unembedding matrix in {type(model).__name__}: give a DecoderEmbedder, "
                    "a llm_embed.Decoder, a minilib CausalLM or a transformers causal LM")


def embedding_filter(unembedding_matrix, token_freq, k: int = 1, n_tokens: int | None = None,
                     special_ids: Sequence[int] = ()) -> torch.Tensor:
    """A projector ``(d, d)`` removing the ``k`` directions that write the most frequent tokens.

    ``unembedding_matrix`` ``W (V, d)`` (:func:`unembedding`), ``token_freq`` ``(V,)`` counts.
    With ``p`` the token distribution (restricted to the ``n_tokens`` most frequent, and without
    ``special_ids``), the directions ``u`` maximising ``sum_v p_v (w_v . u)^2``, the expected
    squared change of a frequent token's logit when a hidden state moves along ``u``, are the top
    right singular vectors ``U (d, k)`` of ``diag(sqrt(p)) W``. The projector is ``I - U U^T``
    (symmetric, idempotent); ``X @ P`` keeps everything of ``X`` except its coordinates along
    ``U``. Defined in chapter 11.
    """
    W = _as_tensor(unembedding_matrix, "unembedding_matrix").double()
    f = torch.as_tensor(np.asarray(token_freq, dtype=np.float64)).reshape(-1)
    V, d = W.shape
    if f.numel() != V:
        raise ValueError(f"token_freq must have one count per vocabulary row ({V}), got {f.numel()}")
    if (f < 0).any() or not torch.isfinite(f).all():
        raise ValueError("token_freq must hold finite counts >= 0")
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k < d:
        raise ValueError(f"k must be an int between 1 and {d - 1} (the width minus one), got {k!r}")
    f = f.clone()
    if special_ids:
        f[list(special_ids)] = 0  # padding / EOS counts say nothing about the text
    if n_tokens is not None:
        if n_tokens < 1:
            raise ValueError(f"n_tokens must be >= 1, got {n_tokens}")
        f[torch.argsort(f, descending=True, stable=True)[n_tokens:]] = 0
    if f.sum() <= 0:
        raise ValueError("no token has a positive count: count frequencies on text the decoder's tokenizer reads")
    p = f / f.sum()
    M = p.sqrt()[:, None] * W  # (V, d): each row weighted by how often its token occurs
    _, _, Vh = torch.linalg.svd(M[p > 0], full_matrices=False)
    U = Vh[:k].T  # (d, k) orthonormal
    return (torch.eye(d, dtype=torch.float64) - U @ U.T).float()


def apply_projector(X, P) -> np.ndarray:
    """``X (n, d) @ P (d, d)`` as a float32 array (rows are not renormalised: cosine does it).
    Defined in chapter 11."""
    X = X.detach().cpu().numpy() if isinstance(X, torch.Tensor) else np.asarray(X)
    P = P.detach().cpu().numpy() if isinstance(P, torch.Tensor) else np.asarray(P)
    if X.ndim != 2 or P.shape != (X.shape[1], X.shape[1]):
        raise ValueError(f"X must be (n, d) and P (d, d); got {X.shape} and {P.shape}")
    return (X.astype(np.float64) @ P.astype(np.float64)).astype(np.float32)


# --- a trainable head on frozen vectors (the chapter's cheap fine-tuning) -----------------------


class VectorHead(nn.Module):
    """A linear map ``(..., d_in) -> (..., d_out)`` trained on top of a frozen encoder's vectors.

    Starts as the identity when ``d_in == d_out`` (training begins from the encoder itself).
    Every recipe of chapter 11 fine-tunes one on precomputed MiniLM vectors: the encoder runs
    once, and each training step costs a matrix product, so a CPU can compare recipes.
    Defined in chapter 11.
    """

    def __init__(self, d_in: int, d_out: int | None = None):
        super().__init__()
        d_out = d_in if d_out is None else d_out
        self.linear = nn.Linear(d_in, d_out)
        if d_in == d_out:
            nn.init.eye_(self.linear.weight)
            nn.init.zeros_(self.linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.linear.in_features:
            raise ValueError(f"the head reads {self.linear.in_features}-d vectors, got shape {tuple(x.shape)}")
        return self.linear(x)

    @torch.no_grad()
    def transform(self, X) -> np.ndarray:
        """The head applied to a matrix of vectors ``(n, d_in)`` (array or tensor) -> ``(n, d_out)`` array."""
        was = self.training
        self.eval()
        X = torch.as_tensor(np.asarray(X, dtype=np.float32)) if not isinstance(X, torch.Tensor) else X.float()
        out = self(X.to(self.linear.weight.device)).cpu().numpy()
        self.train(was)
        return out


def head_loss(base_loss: Callable, layers: bool = False):
    """A ``loss_fn(head, batch)`` for ``train.fit`` on precomputed vectors.

    ``batch`` is ``(queries, positives)`` or ``(queries, positives, negatives)``: ``(B, d)``
    tensors, or ``(B, k, d)`` negatives (k hard negatives per query). The keys are the
    positives, then every negative; the loss is ``base_loss(head(queries), keys)``. With
    ``layers=True`` each tensor is ``(B, L, d)`` (one vector per layer) and the base loss, e.g.
    ``matryoshka.matryoshka_2d_loss``, receives ``(L, B, d)`` and ``(L, B + M, d)``.
    Defined in chapter 11.
    """
    def loss_fn(head: nn.Module, batch) -> torch.Tensor:
        if not isinstance(batch, (tuple, list)) or len(batch) not in (2, 3):
            raise ValueError("head_loss expects batches (queries, positives) or (queries, positives, negatives)")
        q, pos = head(batch[0]), head(batch[1])
        keys = [pos]
        if len(batch) == 3:
            neg = head(batch[2])
            if not layers and neg.dim() == 3:  # (B, k, d) -> (B k, d)
                neg = neg.reshape(-1, neg.shape[-1])
            keys.append(neg)
        if layers:
            return base_loss(q.transpose(0, 1), torch.cat(keys).transpose(0, 1))
        return base_loss(q, torch.cat(keys))

    return loss_fn
