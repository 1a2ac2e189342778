"""Embeddings for recommenders and records: item2vec, ranking metrics, the hashing trick, feature
multiplexing, and next-latent (JEPA-style) prediction on sequences of records.

Everything here is trained on data generated with a seed and a *planted* structure, so each
claim is measured against the truth that made the data:

* **item2vec** (Barkan & Koenigstein, 2016) is chapter 03's skip-gram over shopping baskets. Its
  input vectors put interchangeable items (substitutes) together; the product of an input and
  an output vector scores items bought *with* each other (complements).
* **Ranking metrics** (recall@k, nDCG@k) for the user-item models of ``minilib.graph``.
* **The hashing trick** (Weinberger et al., 2009) maps an unbounded vocabulary into a fixed
  number of rows; **feature multiplexing** (Unified Embedding, Coleman et al., 2023) lets many
  categorical features share one hashed table.
* **Next-latent prediction** (JEPA, Assran et al., 2023): an encoder learns by predicting the
  embedding of the next record of a sequence, computed by a slowly moving copy of itself.

Defined in chapter 16.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .graph import auc, default_device, limit_cpu_threads
from .text import Vocab
from .word2vec import Word2Vec

__all__ = [
    "Baskets", "baskets", "item2vec", "item_vectors", "precision_at_k",
    "taste_interactions", "holdout", "ranking_metrics", "popularity_scores",
    "hash_ids", "collision_stats", "HashedEmbedding", "MultiplexedEmbedding", "FeatureEmbedding", "ClickModel",
    "click_data", "fit_click_model", "click_auc",
    "record_sequences", "NextLatentJEPA", "collapse_stats",
]


# --------------------------------------------------------------------------------------------
# item2vec: substitutes and complements in shopping baskets
# --------------------------------------------------------------------------------------------

@dataclass
class Baskets:
    """Generated shopping baskets and the truth that made them. Defined in chapter 16.

    ``sessions``: baskets as lists of item tokens (``str(item)``); ``category (n_items,)`` and
    ``mission (n_categories,)``: which category an item belongs to and which shopping mission a
    category serves. ``substitutes[i, j]`` is true for two different items of one category
    (never bought together, interchangeable); ``complements[i, j]`` for items of two different
    categories of one mission (bought together)."""

    sessions: list
    category: np.ndarray
    mission: np.ndarray
    substitutes: np.ndarray  # (n_items, n_items) bool
    complements: np.ndarray  # (n_items, n_items) bool

    @property
    def n_items(self) -> int:
        """The number of items in the catalogue."""
        return len(self.category)


def baskets(n_sessions: int = 4000, n_missions: int = 8, categories_per_mission: int = 3, items_per_category: int = 8,
            p_category: float = 0.8, popularity: float = 0.5, noise: float = 0.2, seed: int = 0) -> Baskets:
    """Shopping baskets with planted substitutes and complements.

    The catalogue has ``n_missions * categories_per_mission`` categories of
    ``items_per_category`` items (item ``i`` is in category ``i // items_per_category``; category
    ``c`` serves mission ``c // categories_per_mission``: think *phone*, *case*, *charger* for
    the mission "new phone"). A basket picks a mission uniformly, keeps each of its categories
    with probability ``p_category`` (at least two), and buys **one** item of each kept category,
    the ``r``-th item of a category with probability proportional to ``r ** -popularity``. So
    items of one category share their companions but not a basket (substitutes), and items of
    the other categories of a mission share baskets (complements). With probability ``noise`` a
    basket also gets one item drawn from the whole catalogue (an impulse buy, or a second phone
    looked at: it blurs both relations). The item order in a basket is random.
    Defined in chapter 16.
    """
    if min(n_sessions, n_missions, items_per_category) < 1 or categories_per_mission < 2:
        raise ValueError("need n_sessions, n_missions, items_per_category >= 1 and categories_per_mission >= 2")
    if not 0 < p_category <= 1 or not 0 <= noise <= 1:
        raise ValueError(f"p_category={p_category} must be in (0, 1] and noise={noise} in [0, 1]")
    rng = np.random.default_rng(seed)
    n_cat = n_missions * categories_per_mission
    n_items = n_cat * items_per_category
    category = np.arange(n_items) // items_per_category
    mission = np.arange(n_cat) // categories_per_mission
    pop = np.arange(1, items_per_category + 1, dtype=np.float64) ** -popularity
    pop /= pop.sum()
    sessions = []
    for _ in range(n_sessions):
        m = rng.integers(n_missions)
        cats = m * categories_per_mission + np.flatnonzero(rng.random(categories_per_mission) < p_category)
        while len(cats) < 2:  # a basket of one item teaches skip-gram nothing
            cats = m * categories_per_mission + np.flatnonzero(rng.random(categories_per_mission) < p_category)
        picks = [c * items_per_category + rng.choice(items_per_category, p=pop) for c in cats]
        if rng.random() < noise:
            picks.append(rng.integers(n_items))
        sessions.append([str(i) for i in rng.permutation(picks)])
    same_cat = category[:, None] == category[None, :]
    same_mission = mission[category][:, None] == mission[category][None, :]
    subs = same_cat & ~np.eye(n_items, dtype=bool)
    return Baskets(sessions, category, mission, subs, same_mission & ~same_cat)


def item2vec(sessions: Sequence[Sequence[str]], dim: int = 32, epochs: int = 10, negative: int = 5, seed: int = 0,
             window: int | None = None, **w2v_kwargs) -> Word2Vec:
    """item2vec: skip-gram with negative sampling where a basket is a sentence. Returns the model.

    ``window`` defaults to the longest basket, so every pair of items in a basket is a (centre,
    context) pair: a basket is a set, its order means nothing. Subsampling is off by default
    (``sample=0``) and the batch holds about 8 pairs per item, as in ``graph.embed_walks``; it
    trains on the profile's device. Read the vectors with :func:`item_vectors`.
    Defined in chapter 16.
    """
    sessions = [list(s) for s in sessions if len(s) > 0]
    if not sessions:
        raise ValueError("no sessions given: pass baskets as lists of item tokens")
    window = window or max(len(s) for s in sessions)
    vocab = Vocab.build(sessions, min_count=1)
    w2v_kwargs.setdefault("sample", 0.0)
    # A catalogue is a small vocabulary: keep the batch near 8 pairs per item (see graph.embed_walks).
    w2v_kwargs.setdefault("batch_size", int(min(4096, max(64, 8 * len(vocab)))))
    w2v_kwargs.setdefault("device", default_device())
    model = Word2Vec(vocab, dim=dim, sg=True, window=max(window, 1), negative=negative,
                     epochs=epochs, seed=seed, **w2v_kwargs)
    model.fit(sessions, progress=False)
    return model


def item_vectors(model: Word2Vec, n_items: int) -> tuple[np.ndarray, np.ndarray]:
    """``(W_in, W_out)``, each ``(n_items, dim)``, rows in item order ``0..n_items-1``.

    An item that no basket contains gets zero rows in both. Defined in chapter 16.
    """
    W_in, W_out = model.vectors("in"), model.vectors("out")
    A, B = np.zeros((n_items, W_in.shape[1]), np.float32), np.zeros((n_items, W_in.shape[1]), np.float32)
    for i in range(n_items):
        if str(i) in model.vocab:
            A[i], B[i] = W_in[model.vocab.index(str(i))], W_out[model.vocab.index(str(i))]
    return A, B


def precision_at_k(S, truth, k: int = 5) -> float:
    """Mean over items of the share of their ``k`` highest-scoring other items that are relevant.

    ``S (n, n)``: item-to-item scores (row = query); ``truth (n, n)`` bool: the relevant items of
    each query. The query itself is excluded; queries with no relevant item are skipped.
    Defined in chapter 16.
    """
    S = np.array(S, dtype=np.float64)
    truth = np.asarray(truth, dtype=bool)
    if S.ndim != 2 or S.shape[0] != S.shape[1] or S.shape != truth.shape:
        raise ValueError(f"S and truth must be square matrices of one shape, got {S.shape} and {truth.shape}")
    if not 1 <= k < len(S):
        raise ValueError(f"k={k} must be in 1..{len(S) - 1}")
    np.fill_diagonal(S, -np.inf)
    top = np.argsort(-S, axis=1, kind="stable")[:, :k]  # (n, k)
    hits = np.take_along_axis(truth, top, axis=1).mean(1)
    has = truth.any(1)
    return float(hits[has].mean())


# --------------------------------------------------------------------------------------------
# User-item data with planted tastes, and ranking metrics
# --------------------------------------------------------------------------------------------

def taste_interactions(n_users: int = 1000, n_items: int = 500, n_clusters: int = 10, per_user: int = 10,
                       p_taste: float = 0.8, popularity: float = 0.8, seed: int = 0) -> dict:
    """Implicit feedback (who interacted with what) with planted taste clusters.

    Items are split evenly into ``n_clusters`` genres and each user gets one favourite genre.
    A user makes ``per_user`` distinct interactions; each comes from the favourite genre with
    probability ``p_taste`` and from the whole catalogue otherwise, an item of rank ``r`` in its
    pool being drawn with probability proportional to ``r ** -popularity`` (a few hits, a long
    tail). Returns ``{"users", "items"}`` (int arrays, one entry per interaction) and the truth
    ``{"user_taste" (n_users,), "item_genre" (n_items,)}``. Defined in chapter 16.
    """
    if n_items < n_clusters or per_user > n_items // n_clusters:
        raise ValueError(f"need n_items >= n_clusters and per_user <= items per genre ({n_items // max(n_clusters, 1)})")
    rng = np.random.default_rng(seed)
    genre = rng.permutation(np.arange(n_items) % n_clusters)
    taste = rng.integers(0, n_clusters, n_users)
    # A fixed popularity order of the items: rank among all items and within the genre.
    order = rng.permutation(n_items)
    w_all = np.empty(n_items)
    w_all[order] = np.arange(1, n_items + 1, dtype=np.float64) ** -popularity
    users, items = [], []
    for u in range(n_users):
        in_genre = np.flatnonzero(genre == taste[u])
        w_in = w_all[in_genre] / w_all[in_genre].sum()
        chosen: set[int] = set()
        while len(chosen) < per_user:
            if rng.random() < p_taste:
                chosen.add(int(rng.choice(in_genre, p=w_in)))
            else:
                chosen.add(int(rng.choice(n_items, p=w_all / w_all.sum())))
        users += [u] * per_user
        items += sorted(chosen)
    return {"users": np.array(users), "items": np.array(items), "user_taste": taste, "item_genre": genre}


def holdout(users, items, test_fraction: float = 0.2, seed: int = 0):
    """Hide ``test_fraction`` of every user's interactions (at least one, and at least one kept).

    Returns ``(train_users, train_items, test_users, test_items)``. Defined in chapter 16.
    """
    users, items = np.asarray(users), np.asarray(items)
    if len(users) != len(items) or len(users) == 0:
        raise ValueError("users and items must be non-empty arrays of one length (one entry per interaction)")
    rng = np.random.default_rng(seed)
    test = np.zeros(len(users), dtype=bool)
    for u in np.unique(users):
        idx = np.flatnonzero(users == u)
        if len(idx) < 2:
            continue  # a user with one interaction keeps it for training
        n_test = min(max(1, int(round(test_fraction * len(idx)))), len(idx) - 1)
        test[rng.choice(idx, n_test, replace=False)] = True
    return users[~test], items[~test], users[test], items[test]


def popularity_scores(train_items, n_users: int, n_items: int) -> np.ndarray:
    """The baseline every recommender must beat: score every item by its training count, the
    same list for every user. ``(n_users, n_items)``. Defined in chapter 16."""
    counts = np.bincount(np.asarray(train_items), minlength=n_items).astype(np.float64)
    return np.broadcast_to(counts, (n_users, n_items))


def ranking_metrics(scores, train_users, train_items, test_users, test_items, k: int = 20) -> dict:
    """Recall@k and nDCG@k of top-``k`` recommendations against held-out interactions.

    ``scores (n_users, n_items)``; items a user had in training are never recommended again.
    For a user with held-out set ``T``: recall = ``|top-k ∩ T| / min(k, |T|)``; nDCG = DCG / ideal
    DCG with gains ``1 / log2(rank + 1)``. Means over users with held-out items.
    Defined in chapter 16.
    """
    S = scores.detach().cpu().numpy() if isinstance(scores, torch.Tensor) else np.array(scores, dtype=np.float64)
    S = S.astype(np.float64, copy=True)
    n_users, n_items = S.shape
    if not 1 <= k <= n_items:
        raise ValueError(f"k={k} must be in 1..{n_items}")
    S[np.asarray(train_users, dtype=np.int64), np.asarray(train_items, dtype=np.int64)] = -np.inf  # seen: not a recommendation
    top = np.argsort(-S, axis=1, kind="stable")[:, :k]  # (n_users, k)
    relevant = np.zeros((n_users, n_items), dtype=bool)
    relevant[np.asarray(test_users, dtype=np.int64), np.asarray(test_items, dtype=np.int64)] = True
    n_rel = relevant.sum(1)
    has = n_rel > 0
    if not has.any():
        raise ValueError("no held-out interactions: give test_users / test_items from holdout()")
    hit = np.take_along_axis(relevant, top, axis=1)  # (n_users, k)
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = (hit * discount).sum(1)
    idcg = np.array([discount[: min(r, k)].sum() for r in n_rel])
    recall = hit.sum(1) / np.minimum(n_rel, k).clip(min=1)
    return {f"recall@{k}": float(recall[has].mean()), f"ndcg@{k}": float((dcg[has] / idcg[has]).mean())}


# --------------------------------------------------------------------------------------------
# The hashing trick and feature multiplexing
# --------------------------------------------------------------------------------------------

_PRIME = 2**31 - 1  # a Mersenne prime: (a * x + b) stays below 2**62, safe in int64


def _hash_params(salt: int) -> tuple[int, int, int, int]:
    """The ``(a1, b1, a2, b2)`` of one hash function, drawn from ``salt``."""
    rng = np.random.default_rng([int(salt), 16])
    return tuple(int(v) for v in (rng.integers(1, _PRIME), rng.integers(0, _PRIME), rng.integers(1, _PRIME),
                                  rng.integers(0, _PRIME)))


def hash_ids(ids, n_buckets: int, salt: int = 0) -> torch.Tensor:
    """Hash non-negative integer ids into ``0..n_buckets-1``, the same way on every device.

    Two rounds of the Carter-Wegman universal hash ``x -> (a x + b) mod P`` with the prime
    ``P = 2**31 - 1`` and an xor-shift between them, then ``mod n_buckets``. One round alone is
    universal (two given ids collide with probability about ``1 / n_buckets`` over the choice of
    ``a, b``) but maps an arithmetic progression of ids (sequential ids!) to a regular pattern,
    for some ``a`` onto a fraction of the buckets; the xor-shift breaks the pattern. ``salt``
    picks ``(a1, b1, a2, b2)``, so two salts give two unrelated hash functions (one per feature,
    or per hash of a multi-hash embedding). All products stay below ``2**62``: exact in int64.
    Same shape as ``ids``. Defined in chapter 16.
    """
    ids = torch.as_tensor(ids)
    if ids.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8, torch.int8):
        raise TypeError(f"ids must be integers, got {ids.dtype}: map strings to ints first (e.g. a Vocab)")
    if n_buckets < 1:
        raise ValueError(f"n_buckets={n_buckets} must be at least 1")
    ids = ids.long()
    if ids.numel() and int(ids.min()) < 0:
        raise ValueError("ids must be non-negative")
    a1, b1, a2, b2 = _hash_params(salt)
    x = ((ids % _PRIME) * a1 + b1) % _PRIME
    x = x ^ (x >> 16)  # x < 2**31, so this shift is a logical one
    return ((x * a2 + b2) % _PRIME) % n_buckets


def collision_stats(n_values: int, n_buckets: int) -> dict:
    """What to expect when ``n_values`` distinct values are hashed uniformly into ``n_buckets``.

    ``pairs``: expected colliding pairs ``C(n, 2) / B ~ n^2 / 2B``; ``occupied``: expected used
    buckets ``B (1 - (1 - 1/B)^n)``; ``alone``: expected share of values with a bucket to
    themselves ``(1 - 1/B)^(n - 1)``. Defined in chapter 16.
    """
    n, B = int(n_values), int(n_buckets)
    if n < 1 or B < 1:
        raise ValueError(f"n_values={n_values} and n_buckets={n_buckets} must be at least 1")
    return {"pairs": n * (n - 1) / (2 * B), "occupied": B * (1 - (1 - 1 / B) ** n), "alone": (1 - 1 / B) ** (n - 1)}


class HashedEmbedding(nn.Module):
    """An embedding table of ``n_buckets`` rows for an unbounded vocabulary of integer ids.

    ``forward(ids (...,)) -> (..., dim)``: the row ``hash(id)`` (the hashing trick). With
    ``n_hashes = k > 1`` the vector is the sum of ``k`` rows chosen by ``k`` salted hashes, so two
    ids share their whole vector only if all ``k`` hashes collide (probability ``B^-k``), the
    idea of hash embeddings. ``salt`` separates tables that should hash differently.
    Defined in chapter 16.
    """

    def __init__(self, n_buckets: int, dim: int, n_hashes: int = 1, salt: int = 0, seed: int = 0):
        super().__init__()
        if n_buckets < 1 or dim < 1 or n_hashes < 1:
            raise ValueError(f"n_buckets={n_buckets}, dim={dim} and n_hashes={n_hashes} must be positive")
        self.n_buckets, self.n_hashes, self.salt = n_buckets, n_hashes, salt
        g = torch.Generator().manual_seed(seed)
        # Summing k rows multiplies the variance by k: scale the start down to keep vectors comparable.
        self.weight = nn.Parameter(torch.randn(n_buckets, dim, generator=g) * 0.01 / math.sqrt(n_hashes))

    def buckets(self, ids) -> torch.Tensor:
        """The rows an id uses: ``(..., n_hashes)``."""
        ids = torch.as_tensor(ids, device=self.weight.device)
        return torch.stack([hash_ids(ids, self.n_buckets, salt=1000 * self.salt + k) for k in range(self.n_hashes)], -1)

    def forward(self, ids) -> torch.Tensor:
        return self.weight[self.buckets(ids)].sum(-2)


class MultiplexedEmbedding(nn.Module):
    """One shared table for many categorical features (feature multiplexing, Unified Embedding).

    ``forward(ids (B, n_features)) -> (B, n_features, dim)``: value ``x`` of feature ``f`` uses
    row ``hash_f(x)`` of one table of ``n_buckets`` rows, each feature hashing with its own salt
    (so equal ids of two features land in different rows). The model downstream still knows
    which feature a vector came from by its position, which lets one row serve two colliding
    values of different features in different directions. Defined in chapter 16.
    """

    def __init__(self, n_buckets: int, dim: int, n_features: int, n_hashes: int = 1, seed: int = 0):
        super().__init__()
        if n_features < 1:
            raise ValueError(f"n_features={n_features} must be at least 1")
        self.n_features = n_features
        self.table = HashedEmbedding(n_buckets, dim, n_hashes=n_hashes, seed=seed)

    def buckets(self, ids) -> torch.Tensor:
        """The rows every value uses: ``(B, n_features, n_hashes)``."""
        ids = _check_features(ids, self.n_features, self.table.weight.device)
        cols = [torch.stack([hash_ids(ids[:, f], self.table.n_buckets, salt=1000 * (f + 1) + k)
                             for k in range(self.table.n_hashes)], -1) for f in range(self.n_features)]
        return torch.stack(cols, 1)

    def forward(self, ids) -> torch.Tensor:
        return self.table.weight[self.buckets(ids)].sum(-2)


def _check_features(ids, n_features: int, device) -> torch.Tensor:
    ids = torch.as_tensor(ids, device=device)
    if ids.dim() != 2 or ids.shape[1] != n_features:
        raise ValueError(f"ids must be (batch, n_features={n_features}) integer values, got shape {tuple(ids.shape)}")
    return ids.long()


def _waterfill(vocab_sizes: Sequence[int], n_rows: int) -> list[int]:
    """Split ``n_rows`` between features: a feature whose vocabulary fits its fair share gets a
    full table, the rest share what is left equally."""
    sizes = [0] * len(vocab_sizes)
    left, open_ = n_rows, sorted(range(len(vocab_sizes)), key=lambda f: vocab_sizes[f])
    while open_:
        share = left // len(open_)
        f = open_[0]
        if vocab_sizes[f] <= share:
            sizes[f] = vocab_sizes[f]
            left -= vocab_sizes[f]
            open_.pop(0)
        else:
            for g in open_:
                sizes[g] = max(1, left // len(open_))
            break
    return sizes


class _Lookup(nn.Module):
    """A plain table with one row per value (ids must be in range)."""

    def __init__(self, n: int, dim: int, g: torch.Generator):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n, dim, generator=g) * 0.01)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= len(self.weight)):
            raise ValueError(f"an id is outside 0..{len(self.weight) - 1}: a full table has no row for an unseen "
                             "value (that is what hashing is for)")
        return self.weight[ids]


class FeatureEmbedding(nn.Module):
    """Embeddings for ``n_features`` categorical features, three ways. Defined in chapter 16.

    ``forward(ids (B, F)) -> (B, F, dim)``. ``kind``:

    * ``"full"``: one ``nn.Embedding`` per feature with a row per value (``n_rows`` ignored);
    * ``"hashed"``: one :class:`HashedEmbedding` per feature; the ``n_rows`` budget is split by
      water-filling (a small vocabulary gets a plain full table, the big ones share the rest);
    * ``"multiplexed"``: one :class:`MultiplexedEmbedding` of ``n_rows`` rows for all features.

    ``n_hashes`` applies to the hashed kinds. ``rows`` tells how many rows were used.
    """

    def __init__(self, kind: str, vocab_sizes: Sequence[int], dim: int, n_rows: int | None = None, n_hashes: int = 1,
                 seed: int = 0):
        super().__init__()
        self.kind, self.vocab_sizes = kind, [int(v) for v in vocab_sizes]
        if not self.vocab_sizes or min(self.vocab_sizes) < 1:
            raise ValueError("vocab_sizes must list at least one feature, each with >= 1 value")
        if kind in ("hashed", "multiplexed") and (n_rows is None or n_rows < len(self.vocab_sizes)):
            raise ValueError(f"kind={kind!r} needs n_rows >= the number of features ({len(self.vocab_sizes)})")
        g = torch.Generator().manual_seed(seed)
        if kind == "full":
            self.tables = nn.ModuleList([_Lookup(v, dim, g) for v in self.vocab_sizes])
            self.rows = sum(self.vocab_sizes)
        elif kind == "hashed":
            sizes = _waterfill(self.vocab_sizes, n_rows)
            # A feature whose whole vocabulary fits gets a plain table: hashing it would only add collisions.
            self.tables = nn.ModuleList([
                _Lookup(v, dim, g) if b >= v else HashedEmbedding(b, dim, n_hashes, salt=f + 1, seed=seed + f)
                for f, (v, b) in enumerate(zip(self.vocab_sizes, sizes))])
            self.rows = sum(sizes)
        elif kind == "multiplexed":
            self.shared = MultiplexedEmbedding(n_rows, dim, len(self.vocab_sizes), n_hashes, seed=seed)
            self.rows = n_rows
        else:
            raise ValueError(f"kind must be 'full', 'hashed' or 'multiplexed', got {kind!r}")

    def forward(self, ids) -> torch.Tensor:
        device = next(self.parameters()).device
        ids = _check_features(ids, len(self.vocab_sizes), device)
        if self.kind == "multiplexed":
            return self.shared(ids)
        return torch.stack([self.tables[f](ids[:, f]) for f in range(len(self.vocab_sizes))], 1)


class ClickModel(nn.Module):
    """Click probability from categorical features: embed each feature, concatenate, one linear
    layer to a logit. ``forward(ids (B, F)) -> logits (B,)``. Defined in chapter 16."""

    def __init__(self, embedding: FeatureEmbedding, dim: int):
        super().__init__()
        self.embedding = embedding
        self.head = nn.Linear(len(embedding.vocab_sizes) * dim, 1)

    def forward(self, ids) -> torch.Tensor:
        e = self.embedding(ids)  # (B, F, dim)
        return self.head(e.flatten(1)).squeeze(-1)

    def n_parameters(self) -> int:
        """The number of parameters: embedding tables and the linear head."""
        return sum(p.numel() for p in self.parameters())


def click_data(vocab_sizes: Sequence[int] = (100_000, 10_000, 1_000, 100), n_samples: int = 200_000,
               zipf: float = 1.1, scale: float = 1.0, seed: int = 0) -> dict:
    """Clicks generated by a planted logistic model over high-cardinality categorical features.

    Feature ``f`` takes values ``0..vocab_sizes[f]-1`` with Zipf frequencies (value of rank
    ``r`` with probability proportional to ``r ** -zipf``: a few values are everywhere, most are
    rare); every value has a true weight ``w_f[x] ~ N(0, scale^2)``, and a sample clicks with
    probability ``sigmoid(b + sum_f w_f[x_f])``. Values are shuffled ids, so the id says nothing.
    Returns ``{"X" (n, F) int64, "y" (n,) float32, "logit" (n,) the true logit}``.
    Defined in chapter 16.
    """
    if not vocab_sizes or min(vocab_sizes) < 1 or n_samples < 1:
        raise ValueError("give at least one feature with >= 1 value, and n_samples >= 1")
    rng = np.random.default_rng(seed)
    cols, logit = [], np.full(n_samples, -1.0)
    for V in vocab_sizes:
        p = np.arange(1, V + 1, dtype=np.float64) ** -zipf
        ranks = rng.choice(V, size=n_samples, p=p / p.sum())
        x = rng.permutation(V)[ranks]  # which id is frequent is random
        w = rng.normal(0.0, scale, V)
        cols.append(x)
        logit += w[x]
    y = (rng.random(n_samples) < 1 / (1 + np.exp(-logit))).astype(np.float32)
    return {"X": np.stack(cols, 1).astype(np.int64), "y": y, "logit": logit}


def click_auc(model: ClickModel, X, y, batch_size: int = 65536) -> float:
    """AUC of a click model's logits on ``(X, y)`` (``minilib.graph.auc``). Defined in chapter 16."""
    device = next(model.parameters()).device
    model.eval()
    with torch.no_grad():
        s = torch.cat([model(torch.as_tensor(X[i : i + batch_size], device=device)).float().cpu()
                       for i in range(0, len(X), batch_size)]).numpy()
    model.train()
    y = np.asarray(y)
    return auc(s[y == 1], s[y == 0])


def fit_click_model(model: ClickModel, X, y, steps: int = 400, batch_size: int = 1024, lr: float = 0.01,
                    seed: int = 0, progress: bool = False, device=None, cpu_threads: int | None = 1) -> dict:
    """Train a :class:`ClickModel` with binary cross-entropy through ``minilib.train.fit`` (Adam,
    no weight decay; ``cpu_threads`` threads on a CPU). Returns the history. Defined in chapter 16."""
    from . import train

    X = torch.as_tensor(np.asarray(X), dtype=torch.long)
    y = torch.as_tensor(np.asarray(y), dtype=torch.float32)

    def loss_fn(m, batch):
        xb, yb = batch
        return nn.functional.binary_cross_entropy_with_logits(m(xb), yb)

    with limit_cpu_threads(device, cpu_threads):
        return train.fit(model, train.Batches((X, y), batch_size, seed=seed), loss_fn, steps=steps, lr=lr,
                         weight_decay=0.0, warmup=0.05, grad_clip=None, progress=progress, desc=model.embedding.kind,
                         device=device)


# --------------------------------------------------------------------------------------------
# Sequences of records: next-latent prediction (JEPA-style)
# --------------------------------------------------------------------------------------------

def record_sequences(n_sequences: int = 2000, length: int = 12, n_states: int = 6, record_dim: int = 16,
                     nuisance_dim: int = 16, noise: float = 0.5, nuisance_scale: float = 2.0, p_advance: float = 0.7,
                     p_jump: float = 0.1, seed: int = 0) -> dict:
    """Sequences of records (think: the visits of a patient) driven by a hidden state.

    The state follows a Markov chain over ``n_states`` stages: it advances to the next stage
    (cyclically) with probability ``p_advance``, jumps to a random stage with ``p_jump`` and
    stays otherwise. A record has ``record_dim`` measurements that depend on the stage (a
    random prototype per stage plus Gaussian noise of std ``noise``) and ``nuisance_dim`` fields
    of pure noise with the larger std ``nuisance_scale`` (unpredictable, irrelevant detail).
    Returns ``{"X" (n, length, record_dim + nuisance_dim) float32, "state" (n, length) int64}``.
    Defined in chapter 16.
    """
    if min(n_sequences, length - 1, n_states, record_dim) < 1 or nuisance_dim < 0:
        raise ValueError("need n_sequences, n_states, record_dim >= 1, length >= 2 and nuisance_dim >= 0")
    if not (0 <= p_advance and 0 <= p_jump and p_advance + p_jump <= 1):
        raise ValueError(f"p_advance={p_advance} and p_jump={p_jump} must be probabilities with a sum <= 1")
    rng = np.random.default_rng(seed)
    proto = rng.normal(0.0, 1.0, (n_states, record_dim))
    state = np.empty((n_sequences, length), dtype=np.int64)
    state[:, 0] = rng.integers(0, n_states, n_sequences)
    for t in range(1, length):
        u = rng.random(n_sequences)
        nxt = np.where(u < p_advance, (state[:, t - 1] + 1) % n_states, state[:, t - 1])
        jump = u >= 1 - p_jump
        nxt[jump] = rng.integers(0, n_states, int(jump.sum()))
        state[:, t] = nxt
    signal = proto[state] + noise * rng.normal(size=(n_sequences, length, record_dim))
    nuisance = nuisance_scale * rng.normal(size=(n_sequences, length, nuisance_dim))
    return {"X": np.concatenate([signal, nuisance], -1).astype(np.float32), "state": state}


def _mlp(d_in: int, hidden: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, hidden), nn.GELU(), nn.Linear(hidden, d_out))


class NextLatentJEPA(nn.Module):
    """Learn record embeddings by predicting the *embedding* of the next record (JEPA-style).

    ``encoder`` maps a record ``(..., record_dim) -> (..., dim)``; ``predictor`` maps the
    embedding of record ``t`` to a guess of the embedding of record ``t + 1``. The target
    embedding comes from ``target_encoder``, a copy of the encoder that receives no gradient and
    follows it by an exponential moving average (``ema``) after every step (:meth:`update_target`).
    :meth:`loss` is ``|| n(pred) - n(target) ||^2`` with ``n`` the L2 normalisation
    (``= 2 - 2 cos``). With ``stop_gradient=False`` the target is the online encoder itself,
    gradient included: then a constant embedding makes the loss zero, and training collapses.
    Defined in chapter 16.
    """

    def __init__(self, record_dim: int, dim: int = 8, hidden: int = 64, ema: float = 0.99, stop_gradient: bool = True,
                 seed: int = 0):
        super().__init__()
        if not 0 <= ema < 1:
            raise ValueError(f"ema={ema} must be in [0, 1): the target keeps this share of its old weights each step")
        with torch.random.fork_rng(devices=[]):  # seed the two MLPs without touching the global RNG
            torch.manual_seed(seed)
            self.encoder = _mlp(record_dim, hidden, dim)
            self.predictor = _mlp(dim, hidden, dim)
        self.target_encoder = copy.deepcopy(self.encoder).requires_grad_(False)
        self.ema, self.stop_gradient = ema, stop_gradient

    def encode(self, X) -> torch.Tensor:
        """Embeddings of records ``(..., record_dim) -> (..., dim)`` from the online encoder,
        computed on the model's device and returned on the input's (CPU for NumPy input)."""
        back = X.device if isinstance(X, torch.Tensor) else torch.device("cpu")
        X = torch.as_tensor(X, dtype=torch.float32, device=next(self.parameters()).device)
        return self.encoder(X).to(back)

    def loss(self, X: torch.Tensor) -> torch.Tensor:
        """Next-latent loss of a batch of sequences ``X (B, T, record_dim)``: a scalar."""
        if X.dim() != 3 or X.shape[1] < 2:
            raise ValueError(f"X must be (batch, time >= 2, record_dim), got shape {tuple(X.shape)}")
        pred = self.predictor(self.encoder(X[:, :-1]))  # (B, T-1, dim): the guess for t + 1
        if self.stop_gradient:
            with torch.no_grad():
                target = self.target_encoder(X[:, 1:])
        else:
            target = self.encoder(X[:, 1:])
        diff = nn.functional.normalize(pred, dim=-1) - nn.functional.normalize(target, dim=-1)
        return diff.pow(2).sum(-1).mean()

    @torch.no_grad()
    def update_target(self) -> None:
        """``target <- ema * target + (1 - ema) * online`` (a no-op without stop-gradient)."""
        if not self.stop_gradient:
            return
        for t, o in zip(self.target_encoder.parameters(), self.encoder.parameters()):
            t.mul_(self.ema).add_(o.detach(), alpha=1 - self.ema)

    def fit(self, X, steps: int = 500, batch_size: int = 128, lr: float = 3e-3, seed: int = 0, progress: bool = False,
            device=None, cpu_threads: int | None = 1) -> dict:
        """Train on sequences ``X (n, T, record_dim)`` with ``minilib.train.fit``; returns its history.

        The target is moved by EMA at the start of each step, i.e. right after the previous
        optimiser step. ``cpu_threads`` threads on a CPU. Defined in chapter 16."""
        from . import train

        X = torch.as_tensor(np.asarray(X), dtype=torch.float32)

        def loss_fn(m, batch):
            m.update_target()
            return m.loss(batch)

        with limit_cpu_threads(device, cpu_threads):
            return train.fit(self, train.Batches(X, batch_size, seed=seed), loss_fn, steps=steps, lr=lr,
                             weight_decay=0.0, warmup=0.05, grad_clip=1.0, progress=progress, desc="next-latent",
                             device=device)


def collapse_stats(Z) -> dict:
    """How collapsed are embeddings ``Z (n, dim)``?

    ``std``: the standard deviation of the L2-normalised embeddings, averaged over dimensions
    (0 when every input gets the same direction; about ``1 / sqrt(dim)`` when they spread over
    the sphere); ``effective_rank``: ``exp`` of the entropy of the normalised singular values of
    the centred ``Z`` (1 when all variance lies along one direction, ``dim`` when spread evenly).
    Defined in chapter 16.
    """
    Z = Z.detach().cpu().double().numpy() if isinstance(Z, torch.Tensor) else np.asarray(Z, dtype=np.float64)
    if Z.ndim != 2 or len(Z) < 2:
        raise ValueError(f"Z must be (n >= 2, dim) embeddings, got shape {Z.shape}")
    N = Z / np.maximum(np.linalg.norm(Z, axis=1, keepdims=True), 1e-12)
    s = np.linalg.svd(Z - Z.mean(0), compute_uv=False)
    if s.sum() <= 1e-12 * max(1.0, np.abs(Z).max()):
        return {"std": float(N.std(0).mean()), "effective_rank": 0.0}
    p = s / s.sum()
    p = p[p > 0]
    return {"std": float(N.std(0).mean()), "effective_rank": float(np.exp(-(p * np.log(p)).sum()))}
