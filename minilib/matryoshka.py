"""Matryoshka embeddings: one vector whose prefixes are embeddings too, and 2D Matryoshka.

Read it top to bottom, as chapter 11 builds it:

1. :func:`truncate`: keep the first ``d`` coordinates of each vector and renormalise them;
2. :func:`matryoshka_loss`: Matryoshka representation learning (Kusupati et al., 2022): a base
   loss (e.g. ``contrastive.info_nce``) applied to the prefixes ``[:m]`` of the embeddings for
   every ``m`` in a list of nested sizes, weighted and summed, so each prefix is trained to be an
   embedding on its own;
3. 2D Matryoshka (Li et al., 2024; Zhuang et al., 2024): the loss also over *shallower layers*.
   :data:`STARBUCKS_PAIRS` is Starbucks' fixed list of (layer, dims) pairs for a 12-layer,
   768-d BERT; :func:`scaled_pairs` scales it to another depth and width (MiniLM: 6 layers, 384
   dims); :func:`matryoshka_2d_loss` sums the base loss over the pairs; :func:`layer_embeddings`
   mean-pools every layer of a ``minilib.transformer.Transformer``;
4. :func:`retention_curve`: the score of truncated vectors on a ``minilib.bench`` task, as a share
   of the full vector's score.

Defined in chapter 11.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .llm_embed import Lookup
from .transformer import Transformer, mean_pool

__all__ = ["truncate", "check_dims", "matryoshka_loss", "STARBUCKS_PAIRS", "scaled_pairs", "matryoshka_2d_loss",
           "layer_embeddings", "retention_curve"]


# --- 1. truncation ----------------------------------------------------------------------------


def truncate(emb, d: int, normalize: bool = True):
    """The first ``d`` coordinates of each row, L2-normalised again if ``normalize``.

    ``emb`` ``(n, D)`` tensor or array -> the same type, ``(n, d)``. A Matryoshka model is used
    exactly so: keep a prefix, renormalise, compare by cosine. Defined in chapter 11.
    """
    is_np = isinstance(emb, np.ndarray)
    if not is_np and not isinstance(emb, torch.Tensor):
        raise TypeError(f"emb must be a torch tensor or a NumPy array, got {type(emb).__name__}")
    if emb.ndim != 2:
        raise ValueError(f"emb must be a (n, dim) matrix, got shape {tuple(emb.shape)}; for one vector use emb[None]")
    D = emb.shape[1]
    if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or not 1 <= d <= D:
        raise ValueError(f"d must be an int between 1 and the embedding width {D}, got {d!r}")
    out = emb[:, :d]
    if not normalize:
        return out
    if is_np:
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    return F.normalize(out, dim=-1)


def check_dims(dims: Sequence[int], width: int | None = None) -> tuple[int, ...]:
    """``dims`` as a tuple of distinct positive ints in increasing order; each at most ``width`` if
    given. Raises a ``ValueError`` naming the fix otherwise. Defined in chapter 11."""
    dims = tuple(dims)
    if not dims:
        raise ValueError("dims is empty: give the nested sizes, e.g. (32, 64, 128, 256, 384)")
    if any(isinstance(m, bool) or not isinstance(m, (int, np.integer)) or m < 1 for m in dims):
        raise ValueError(f"every dim must be a positive int, got {dims}")
    if len(set(dims)) != len(dims):
        raise ValueError(f"dims holds a size twice: {dims}")
    if width is not None and max(dims) > width:
        raise ValueError(f"dims {dims} exceed the embedding width {width}: drop the sizes above {width}")
    return tuple(sorted(int(m) for m in dims))


# --- 2. the Matryoshka loss -----------------------------------------------------------------


def _weights(weights, n: int, what: str) -> list[float]:
    if weights is None:
        return [1.0] * n
    weights = [float(w) for w in weights]
    if len(weights) != n:
        raise ValueError(f"give one weight per {what}: {n} {what}s, {len(weights)} weights")
    if any(not np.isfinite(w) or w < 0 for w in weights):
        raise ValueError(f"weights must be finite and >= 0, got {weights}")
    return weights


def matryoshka_loss(base_loss: Callable, dims: Sequence[int], weights: Sequence[float] | None = None) -> Callable:
    """MRL: ``loss(q, k) = sum_m w_m * base_loss(q[:, :m], k[:, :m])`` over the nested sizes ``dims``.

    ``base_loss(queries (B, D), keys (B + M, D)) -> scalar`` is any embedding loss, e.g.
    ``functools.partial(contrastive.info_nce, temperature=0.05)`` (it normalises the prefixes
    itself, so a prefix is scored by its own cosine). ``weights`` default to 1 for every size, as
    Kusupati et al. and sentence-transformers' ``MatryoshkaLoss`` do; weight ``i`` belongs to
    ``dims[i]`` in the order given (``loss.dims`` and ``loss.weights`` hold them sorted by size).
    Returns the wrapped loss; the widths are checked at each call. Defined in chapter 11.
    """
    if not callable(base_loss):
        raise TypeError("base_loss must be a function loss(queries, keys) -> scalar, e.g. contrastive.info_nce")
    given = tuple(dims)
    dims = check_dims(given)                                   # sorted, so the weights follow their sizes
    w = _weights(weights, len(given), "dim")
    w = [w[i] for i in sorted(range(len(given)), key=lambda i: int(given[i]))]

    def loss(queries: torch.Tensor, keys: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        for name, x in (("queries", queries), ("keys", keys)):
            if x.dim() != 2:
                raise ValueError(f"{name} must be (n, dim), got shape {tuple(x.shape)}")
        check_dims(dims, min(queries.shape[1], keys.shape[1]))
        return sum(wm * base_loss(queries[:, :m], keys[:, :m], *args, **kwargs) for m, wm in zip(dims, w))

    loss.dims, loss.weights = dims, w
    return loss


# --- 3. 2D Matryoshka ---------------------------------------------------------------------------

#: Starbucks (Zhuang et al., 2024) trains and evaluates a 12-layer, 768-d BERT on these fixed
#: (layer, dims) pairs only: one diagonal from small-and-shallow to the full model, instead of
#: 2DMSE's random layer and random width at every step.
STARBUCKS_PAIRS: tuple[tuple[int, int], ...] = ((2, 32), (4, 64), (6, 128), (8, 256), (10, 512), (12, 768))


def scaled_pairs(n_layers: int, width: int, pairs: Sequence[tuple[int, int]] = STARBUCKS_PAIRS,
                 ref_layers: int = 12, ref_width: int = 768) -> tuple[tuple[int, int], ...]:
    """Starbucks' (layer, dims) pairs scaled from a ``ref_layers``-layer, ``ref_width``-d model to
    ``n_layers`` and ``width``: layer ``l * n_layers / ref_layers`` and dims ``m * width /
    ref_width``, rounded, at least 1, duplicates dropped. For MiniLM (6 layers, 384 d) every pair
    is halved: (1, 16), (2, 32), (3, 64), (4, 128), (5, 256), (6, 384). Defined in chapter 11."""
    if n_layers < 1 or width < 1:
        raise ValueError(f"n_layers and width must be >= 1, got {n_layers} and {width}")
    out = []
    for layer, m in pairs:
        if not (1 <= layer <= ref_layers and 1 <= m <= ref_width):
            raise ValueError(f"pair {(layer, m)} lies outside the reference model ({ref_layers} layers, {ref_width} d)")
        p = (max(1, round(layer * n_layers / ref_layers)), max(1, round(m * width / ref_width)))
        if p not in out:
            out.append(p)
    return tuple(out)


def matryoshka_2d_loss(base_loss: Callable, pairs: Sequence[tuple[int, int]],
                       weights: Sequence[float] | None = None) -> Callable:
    """2D Matryoshka: ``loss(q_layers, k_layers) = sum_(l, m) w * base_loss(q_l[:, :m], k_l[:, :m])``.

    ``q_layers`` ``(L, B, D)`` and ``k_layers`` ``(L, B + M, D)`` stack the pooled embeddings of
    layers 1..L (index ``l - 1`` holds layer ``l``, e.g. from :func:`layer_embeddings`, or a head
    applied to them); ``pairs`` are (layer, dims), e.g. ``scaled_pairs(6, 384)``. With the single
    pair ``(L, D)`` it is the base loss on the last layer. Defined in chapter 11.
    """
    if not callable(base_loss):
        raise TypeError("base_loss must be a function loss(queries, keys) -> scalar, e.g. contrastive.info_nce")
    pairs = [tuple(int(v) for v in p) for p in pairs]
    if not pairs:
        raise ValueError("pairs is empty: give (layer, dims) pairs, e.g. matryoshka.scaled_pairs(6, 384)")
    if any(len(p) != 2 or p[0] < 1 or p[1] < 1 for p in pairs):
        raise ValueError(f"every pair must be (layer >= 1, dims >= 1), got {pairs}")
    w = _weights(weights, len(pairs), "pair")

    def loss(q_layers: torch.Tensor, k_layers: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        if q_layers.dim() != 3 or k_layers.dim() != 3 or q_layers.shape[0] != k_layers.shape[0]:
            raise ValueError(f"q_layers and k_layers must be (layers, n, dim) with the same layers, got "
                             f"{tuple(q_layers.shape)} and {tuple(k_layers.shape)}")
        L, D = q_layers.shape[0], min(q_layers.shape[2], k_layers.shape[2])
        bad = [p for p in pairs if p[0] > L or p[1] > D]
        if bad:
            raise ValueError(f"pairs {bad} exceed the {L} layers x {D} dims given: scale them with scaled_pairs")
        return sum(wp * base_loss(q_layers[l - 1, :, :m], k_layers[l - 1, :, :m], *args, **kwargs)
                   for (l, m), wp in zip(pairs, w))

    loss.pairs, loss.weights = tuple(pairs), w
    return loss


@torch.no_grad()
def layer_embeddings(model: Transformer, tokenizer, texts: Sequence[str], max_len: int = 256,
                     batch_size: int = 32) -> torch.Tensor:
    """Mean-pooled hidden states of every layer: ``(L, n, d)`` float32 (index ``l - 1`` = layer ``l``).

    ``model`` a ``minilib.transformer.Transformer`` (e.g. ``transformer.load_minilm()``),
    ``tokenizer`` with ``encode_batch``. Not normalised; the last layer's rows, normalised, are
    the model's sentence vectors. Defined in chapter 11.
    """
    if not isinstance(model, Transformer):
        raise TypeError(f"model must be a minilib.transformer.Transformer, got {type(model).__name__}")
    if isinstance(texts, str):
        raise TypeError("texts must be a list of texts, got one str: wrap it, [text]")
    texts = list(texts)
    if not texts:
        raise ValueError("texts is empty: give at least one text")
    was = model.training
    model.eval()
    device = next(model.parameters()).device
    # Batches of similar length waste little on padding; the rows go back to the input order.
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = []
    for s in range(0, len(texts), batch_size):
        chunk = [texts[i] for i in order[s:s + batch_size]]
        ids, mask = tokenizer.encode_batch(chunk, max_len=max_len, truncate=True)
        ids, mask = ids.to(device), mask.to(device)
        _, hidden = model(ids, attention_mask=mask, output_hidden_states=True)  # L + 1 of (b, T, d)
        out.append(torch.stack([mean_pool(h, mask) for h in hidden[1:]]).float().cpu())  # (L, b, d)
    model.train(was)
    X = torch.empty_like(torch.cat(out, dim=1))
    X[:, order] = torch.cat(out, dim=1)
    return X


# --- 4. retention -------------------------------------------------------------------------------


def retention_curve(texts: Sequence[str], X, task, dims: Sequence[int]) -> dict[int, dict[str, float]]:
    """How much of a task's score truncated vectors keep: ``{d: {"score", "retention"}}``.

    ``texts`` and their vectors ``X`` ``(n, D)`` must cover the task's texts
    (``task.texts``); ``task`` is a ``minilib.bench`` task. ``retention = score(d) / score(D)``,
    the full width ``D`` always measured. Defined in chapter 11.
    """
    X = X.detach().cpu().numpy() if isinstance(X, torch.Tensor) else np.asarray(X, dtype=np.float32)
    if X.ndim != 2 or len(X) != len(texts):
        raise ValueError(f"X must be (len(texts), dim) = ({len(texts)}, dim), got {X.shape}")
    dims = check_dims(dims, X.shape[1])
    full = task.run(Lookup(texts, X))["score"]
    if not full > 0:
        raise ValueError(f"the full-width score is {full}: retention is only defined for a positive score")
    out = {}
    for d in sorted(set(dims) | {X.shape[1]}, reverse=True):
        s = full if d == X.shape[1] else task.run(Lookup(texts, truncate(X, d)))["score"]
        out[d] = {"score": float(s), "retention": float(s / full)}
    return out
