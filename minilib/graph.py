"""Graph embeddings: random walks read as sentences (DeepWalk, node2vec) and LightGCN propagation.

A graph has no word order, but a random walk over it is a sequence of nodes, and nodes that
co-occur on short walks are close in the graph. DeepWalk (Perozzi et al., 2014) therefore feeds
uniform random walks to skip-gram with negative sampling, and every node gets the vector of a
"word". node2vec (Grover & Leskovec, 2016) biases the walk with two numbers: ``p`` (how likely a
walk steps straight back) and ``q`` (how likely it moves away from where it came from), which
moves the walk between a breadth-first and a depth-first exploration. We sample the second-order
walk exactly, by rejection, for all walkers at once, and train chapter 03's
:class:`~minilib.word2vec.Word2Vec` on the walks.

The second half is the recommender view of a graph: users and items are the two sides of a
bipartite graph and LightGCN (He et al., 2020) smooths a table of ID embeddings over it,
``E_(l+1) = D^-1/2 A D^-1/2 E_l``, averaging the layers and training with the BPR loss. With
zero layers it is plain matrix factorisation.

Evaluation: link prediction (held-out edges against sampled non-edges, scored by AUC, which we
write as the Mann-Whitney statistic) and node classification with a logistic-regression probe.

Defined in chapter 16.
"""
from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from .text import Vocab
from .word2vec import Word2Vec

__all__ = [
    "Adjacency", "adjacency", "transition_probabilities", "random_walks", "embed_walks", "node2vec",
    "planted_partition", "EdgeSplit", "split_edges", "auc", "pair_scores", "heuristic_scores",
    "link_prediction_auc", "node_classification", "normalized_adjacency", "propagate", "LightGCN", "fit_bpr",
    "limit_cpu_threads", "default_device",
]


# --------------------------------------------------------------------------------------------
# The graph as arrays
# --------------------------------------------------------------------------------------------

@dataclass
class Adjacency:
    """A graph in compressed sparse row form: the neighbours of node ``i`` are
    ``indices[indptr[i]:indptr[i + 1]]`` (sorted), with edge weights ``weights`` (same slice).
    ``nodes[i]`` is the original label of row ``i``. Defined in chapter 16."""

    indptr: np.ndarray  # (n + 1,) int64
    indices: np.ndarray  # (nnz,) int64
    weights: np.ndarray  # (nnz,) float64, all > 0
    nodes: list

    @property
    def n(self) -> int:
        """Number of nodes, ``len(nodes)``."""
        return len(self.nodes)

    def degrees(self) -> np.ndarray:
        """Number of neighbours of every node, ``(n,)``."""
        return np.diff(self.indptr)

    def has_edges(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Boolean ``(m,)``: is there an edge ``a[k] -> b[k]``? A binary search in the sorted keys."""
        keys = self._keys()
        query = np.asarray(a, dtype=np.int64) * self.n + np.asarray(b, dtype=np.int64)
        pos = np.minimum(np.searchsorted(keys, query), len(keys) - 1)
        return keys[pos] == query

    def _keys(self) -> np.ndarray:
        # Row-major edge keys i * n + j; sorted because rows are in order and indices sorted in each row.
        if not hasattr(self, "_key_cache"):
            rows = np.repeat(np.arange(self.n, dtype=np.int64), self.degrees())
            self._key_cache = rows * self.n + self.indices
        return self._key_cache

    def index(self, node) -> int:
        """Row of the node labelled ``node``; a ``KeyError`` naming the fix otherwise."""
        if not hasattr(self, "_index_cache"):
            self._index_cache = {v: i for i, v in enumerate(self.nodes)}
        try:
            return self._index_cache[node]
        except KeyError:
            raise KeyError(f"node {node!r} is not in the graph ({self.n} nodes, e.g. {self.nodes[:3]}); "
                           "use the graph's own node labels") from None


def adjacency(G, weight: str | None = None) -> Adjacency:
    """Any graph as an :class:`Adjacency`: a networkx graph, or an ``(n, n)`` NumPy / SciPy matrix.

    ``weight`` names the networkx edge attribute to use as weight (``None``: every edge weighs
    1); a matrix gives its entries as weights (zero = no edge). Rows follow ``list(G)``.
    Raises ``ValueError`` for an empty graph or negative weights. Defined in chapter 16.
    """
    if isinstance(G, Adjacency):
        return G
    if hasattr(G, "nodes") and hasattr(G, "edges"):  # networkx, imported lazily
        import networkx as nx

        nodes = list(G)
        if not nodes:
            raise ValueError("the graph has no nodes: build or load a graph first (e.g. nx.karate_club_graph())")
        A = nx.to_scipy_sparse_array(G, nodelist=nodes, weight=weight, format="csr")
    else:
        if isinstance(G, torch.Tensor):
            G = G.detach().cpu().numpy()
        A = sp.csr_matrix(G)
        if A.shape[0] != A.shape[1]:
            raise ValueError(f"an adjacency matrix must be square (n, n), got shape {A.shape}")
        if A.shape[0] == 0:
            raise ValueError("the adjacency matrix is empty (0 x 0): give a graph with at least one edge")
        nodes = list(range(A.shape[0]))
    A = sp.csr_matrix(A, dtype=np.float64)
    A.eliminate_zeros()
    A.sort_indices()
    if A.nnz == 0:
        raise ValueError(f"the graph has {A.shape[0]} nodes but no edges: a random walk cannot start anywhere")
    if (A.data < 0).any():
        raise ValueError("edge weights must be positive: a walk picks a neighbour with probability proportional to them")
    return Adjacency(A.indptr.astype(np.int64), A.indices.astype(np.int64), A.data.astype(np.float64), nodes)


# --------------------------------------------------------------------------------------------
# Random walks: DeepWalk (p = q = 1) and node2vec (second order)
# --------------------------------------------------------------------------------------------

def _check_pq(p: float, q: float) -> None:
    for name, v in (("p", p), ("q", q)):
        if not (isinstance(v, (int, float)) and np.isfinite(v) and v > 0):
            raise ValueError(f"{name}={v!r} must be a positive number (p = q = 1 is DeepWalk's uniform walk)")


def _bias(A: Adjacency, prev: np.ndarray, cand: np.ndarray, p: float, q: float) -> np.ndarray:
    """node2vec's search bias alpha for stepping to ``cand`` after coming from ``prev``: 1/p back to
    ``prev`` (distance 0), 1 to a common neighbour of both (distance 1), 1/q further away (distance 2)."""
    alpha = np.full(len(cand), 1.0 / q)
    alpha[A.has_edges(prev, cand)] = 1.0
    alpha[cand == prev] = 1.0 / p
    return alpha


def transition_probabilities(G, prev, cur, p: float = 1.0, q: float = 1.0, weight: str | None = None) -> dict:
    """The exact node2vec distribution of the next node, having walked ``prev -> cur``.

    Returns ``{neighbour label: probability}``: each neighbour ``x`` of ``cur`` gets weight
    ``w(cur, x) * alpha(prev, x)`` with ``alpha`` = 1/p if ``x == prev``, 1 if ``x`` is a
    neighbour of ``prev``, 1/q otherwise, normalised to sum to 1. (The reference the sampler in
    :func:`random_walks` is tested against.) Defined in chapter 16.
    """
    _check_pq(p, q)
    A = adjacency(G, weight)
    t, v = A.index(prev), A.index(cur)
    if not A.has_edges(np.array([t]), np.array([v]))[0]:
        raise ValueError(f"{prev!r} -> {cur!r} is not an edge: a walk only steps along edges")
    lo, hi = A.indptr[v], A.indptr[v + 1]
    nb = A.indices[lo:hi]
    w = A.weights[lo:hi] * _bias(A, np.full(len(nb), t), nb, p, q)
    return {A.nodes[x]: float(wi / w.sum()) for x, wi in zip(nb, w)}


def _first_order_step(A: Adjacency, cum: np.ndarray, cur: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One neighbour of every node in ``cur``, drawn in proportion to the edge weights (vectorised).

    ``cum`` is the cumulative sum of all edge weights; the neighbours of node v own the interval
    ``(cum[lo - 1], cum[hi - 1]]``, so one uniform draw in it and a binary search pick the edge."""
    lo, hi = A.indptr[cur], A.indptr[cur + 1]
    base = np.where(lo > 0, cum[np.maximum(lo - 1, 0)], 0.0)
    target = base + rng.random(len(cur)) * (cum[hi - 1] - base)
    edge = np.clip(np.searchsorted(cum, target, side="right"), lo, hi - 1)  # clip guards float round-off
    return A.indices[edge]


def random_walks(G, n_walks: int = 10, walk_length: int = 40, p: float = 1.0, q: float = 1.0, seed: int = 0,
                 weight: str | None = None, start: Sequence | None = None) -> list[list[str]]:
    """``n_walks`` random walks of ``walk_length`` nodes from every node: a corpus of "sentences".

    Each walk is a list of node labels as strings (``str(label)``), ready for
    :class:`~minilib.text.Vocab` and :class:`~minilib.word2vec.Word2Vec`. The first step goes to a
    neighbour with probability proportional to the edge weight; every later step, having come
    from ``t`` to ``v``, multiplies that weight by node2vec's bias (1/p back to ``t``, 1 to a
    neighbour of ``t``, 1/q further away; see :func:`transition_probabilities`). ``p = q = 1``
    is DeepWalk's uniform walk. The biased step is sampled exactly by rejection: propose a
    neighbour by weight, accept it with probability ``alpha / max(alpha)``, retry the rejected.
    All walkers move together, one vectorised step at a time. ``start``: the start nodes
    (labels; default: every node). Walks come in rounds, each round in a fresh random node order
    (DeepWalk's shuffling). Deterministic for a ``seed``. Defined in chapter 16.
    """
    _check_pq(p, q)
    if int(n_walks) != n_walks or n_walks < 1 or int(walk_length) != walk_length or walk_length < 1:
        raise ValueError(f"n_walks={n_walks!r} and walk_length={walk_length!r} must be positive integers")
    A = adjacency(G, weight)
    names = [str(v) for v in A.nodes]
    if len(set(names)) != len(names):
        raise ValueError("two nodes have the same str() label; relabel them (nx.convert_node_labels_to_integers(G))")
    starts = np.arange(A.n) if start is None else np.array([A.index(s) for s in start], dtype=np.int64)
    if len(starts) == 0:
        raise ValueError("start is empty: give at least one start node (or None for every node)")
    deg = A.degrees()
    if (deg[starts] == 0).any():
        bad = A.nodes[int(starts[deg[starts] == 0][0])]
        raise ValueError(f"node {bad!r} has no neighbours, so no walk can start there: remove isolated nodes "
                         "first (G.remove_nodes_from(list(nx.isolates(G))))")
    rng = np.random.default_rng(seed)
    cum = np.cumsum(A.weights)
    alpha_max = max(1.0 / p, 1.0, 1.0 / q)
    rounds = []
    for _ in range(int(n_walks)):
        cur = rng.permutation(starts)
        walk = np.empty((len(cur), int(walk_length)), dtype=np.int64)  # (walkers, length)
        walk[:, 0] = cur
        for s in range(1, int(walk_length)):
            cur = walk[:, s - 1]
            if (deg[cur] == 0).any():  # only possible in a directed graph: a node with no way out
                bad = A.nodes[int(cur[deg[cur] == 0][0])]
                raise ValueError(f"a walk reached node {bad!r}, which has no outgoing edge; make the graph "
                                 "undirected (G.to_undirected()) or remove such dead ends")
            if s == 1 or (p == 1 and q == 1):
                walk[:, s] = _first_order_step(A, cum, cur, rng)
                continue
            prev = walk[:, s - 2]
            nxt = np.empty_like(cur)
            todo = np.arange(len(cur))
            while len(todo):  # rejection sampling: expected retries are few (alpha_max / mean alpha)
                cand = _first_order_step(A, cum, cur[todo], rng)
                ok = rng.random(len(todo)) * alpha_max < _bias(A, prev[todo], cand, p, q)
                nxt[todo[ok]] = cand[ok]
                todo = todo[~ok]
            walk[:, s] = nxt
        rounds.append(walk)
    walks = np.concatenate(rounds)
    return [[names[i] for i in row] for row in walks]


def embed_walks(walks: Sequence[Sequence[str]], nodes: Sequence, dim: int = 64, window: int = 5, negative: int = 5,
                epochs: int = 1, sample: float = 0.0, seed: int = 0, return_model: bool = False, **w2v_kwargs):
    """Skip-gram with negative sampling (chapter 03) on walks: node vectors ``(len(nodes), dim)``.

    Row ``i`` is the input vector of ``str(nodes[i])``; a node that no walk visits has no vector
    (``ValueError``). Defaults follow the node2vec paper (window 10 there, 5 here for small
    graphs) and switch subsampling off (``sample=0``): in a walk corpus the frequent "words" are
    the hubs, and dropping them would cut the walks. Extra keywords go to
    :class:`~minilib.word2vec.Word2Vec` (``alpha``, ``device``...); ``batch_size`` defaults to
    8 pairs per node (at most 4096), small enough that summed updates of a node stay stable, and
    ``device`` to the profile's (``minilib.profile``).
    ``return_model=True`` returns ``(vectors, model)``. Defined in chapter 16.
    """
    walks = [list(w) for w in walks]
    if not walks or not any(walks):
        raise ValueError("no walks given: make them with random_walks(G, ...)")
    vocab = Vocab.build(walks, min_count=1)
    missing = [v for v in nodes if str(v) not in vocab]
    if missing:
        raise ValueError(f"{len(missing)} node(s) never appear in the walks (e.g. {missing[0]!r}): start walks from "
                         "every node (random_walks(..., start=None))")
    # Chapter 03's trainer sums the updates of a row that occurs many times in one batch. A graph
    # has few "words", so with a text-sized batch every node would appear hundreds of times per
    # batch and the summed, stale steps diverge (exercise 03-3): keep about 8 pairs per node.
    w2v_kwargs.setdefault("batch_size", int(min(4096, max(64, 8 * len(vocab)))))
    w2v_kwargs.setdefault("device", default_device())
    model = Word2Vec(vocab, dim=dim, sg=True, window=window, negative=negative, sample=sample, epochs=epochs,
                     seed=seed, **w2v_kwargs)
    model.fit(walks, progress=False)
    rows = [vocab.index(str(v)) for v in nodes]
    X = model.vectors("in")[rows]  # (n, dim) in the graph's node order
    return (X, model) if return_model else X


def node2vec(G, dim: int = 64, n_walks: int = 10, walk_length: int = 40, p: float = 1.0, q: float = 1.0,
             window: int = 5, negative: int = 5, epochs: int = 1, seed: int = 0, weight: str | None = None,
             **w2v_kwargs) -> np.ndarray:
    """node2vec (DeepWalk for ``p = q = 1``): :func:`random_walks` then :func:`embed_walks`.

    Returns ``(n, dim)`` node vectors, row ``i`` for the ``i``-th node of ``list(G)``.
    Defined in chapter 16.
    """
    A = adjacency(G, weight)
    walks = random_walks(A, n_walks, walk_length, p=p, q=q, seed=seed)
    return embed_walks(walks, A.nodes, dim=dim, window=window, negative=negative, epochs=epochs, seed=seed, **w2v_kwargs)


# --------------------------------------------------------------------------------------------
# Graphs with a known answer, and held-out edges
# --------------------------------------------------------------------------------------------

def planted_partition(n_communities: int, size: int, p_in: float, p_out: float, seed: int = 0):
    """A random graph with planted communities: ``(G, labels)``.

    ``n_communities`` groups of ``size`` nodes; each pair of nodes is an edge with probability
    ``p_in`` inside a group and ``p_out`` across (the planted-partition model, a stochastic
    block model). Nodes are ``0..n-1``; ``labels`` ``(n,)`` gives each node's group. Isolated
    nodes are possible when ``p_in`` is small; :func:`random_walks` reports them.
    Defined in chapter 16.
    """
    import networkx as nx

    if n_communities < 1 or size < 1:
        raise ValueError(f"n_communities={n_communities} and size={size} must be at least 1")
    if not (0 <= p_out <= 1 and 0 <= p_in <= 1):
        raise ValueError(f"p_in={p_in} and p_out={p_out} are probabilities: keep them in [0, 1]")
    rng = np.random.default_rng(seed)
    n = n_communities * size
    labels = np.repeat(np.arange(n_communities), size)
    i, j = np.triu_indices(n, k=1)  # every unordered pair once
    prob = np.where(labels[i] == labels[j], p_in, p_out)
    keep = rng.random(len(i)) < prob
    G = nx.Graph()
    G.add_nodes_from(range(n))
    G.add_edges_from(zip(i[keep].tolist(), j[keep].tolist()))
    return G, labels


@dataclass
class EdgeSplit:
    """Held-out edges for link prediction. Pairs are ``(m, 2)`` arrays of node rows (positions in
    ``list(G)``). ``train_graph`` is ``G`` without the test edges (same nodes, same order);
    ``train_neg`` and ``test_neg`` are non-edges of the *full* graph, disjoint from each other.
    Edges of ``train_graph`` keep their attributes (weights). Defined in chapter 16."""

    train_graph: object
    train_pos: np.ndarray
    train_neg: np.ndarray
    test_pos: np.ndarray
    test_neg: np.ndarray


def _find(parent: np.ndarray, x: int) -> int:
    while parent[x] != x:  # path halving keeps the union-find trees flat
        parent[x] = parent[parent[x]]
        x = parent[x]
    return x


def split_edges(G, test_fraction: float = 0.1, seed: int = 0) -> EdgeSplit:
    """Hide ``test_fraction`` of the edges of an undirected networkx graph, keeping it connected.

    A random spanning forest (Kruskal's algorithm on shuffled edges) is never hidden, so every
    connected component of ``G`` stays connected in the training graph and every node keeps an
    edge; the test edges are drawn from the remaining edges. Non-edges are drawn uniformly among
    the pairs that are not edges of ``G``: as many as the test edges (``test_neg``) and as many as
    the training edges (``train_neg``, for a classifier trained on edge features).
    Defined in chapter 16.
    """
    import networkx as nx

    if G.is_directed():
        raise ValueError("split_edges takes an undirected graph: use G.to_undirected()")
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction={test_fraction} must be in (0, 1)")
    nodes = list(G)
    row = {v: i for i, v in enumerate(nodes)}
    edges = np.array(sorted({tuple(sorted((row[a], row[b]))) for a, b in G.edges() if a != b}), dtype=np.int64)
    n, m = len(nodes), len(edges)
    if m < 2:
        raise ValueError(f"the graph has {m} edge(s): link prediction needs at least two")
    rng = np.random.default_rng(seed)
    edges = edges[rng.permutation(m)]
    parent = np.arange(n)
    in_tree = np.zeros(m, dtype=bool)
    for k, (a, b) in enumerate(edges):  # Kruskal: an edge joining two components is a tree edge
        ra, rb = _find(parent, a), _find(parent, b)
        if ra != rb:
            parent[ra] = rb
            in_tree[k] = True
    n_test = int(round(test_fraction * m))
    spare = np.flatnonzero(~in_tree)
    if n_test < 1 or n_test > len(spare):
        raise ValueError(f"cannot hide {n_test} of {m} edges and keep the graph connected: only {len(spare)} edges "
                         f"are outside a spanning tree; choose test_fraction <= {len(spare) / m:.2f} (and > {0.5 / m:.3f})")
    test_mask = np.zeros(m, dtype=bool)
    test_mask[spare[:n_test]] = True  # edges are already shuffled
    test_pos, train_pos = edges[test_mask], edges[~test_mask]
    if n * (n - 1) // 2 - m < n_test + len(train_pos):
        raise ValueError("the graph is too dense to sample as many non-edges as edges")
    known = set((edges[:, 0] * n + edges[:, 1]).tolist())
    neg = []
    while len(neg) < n_test + len(train_pos):  # rejection: for sparse graphs nearly every draw is a non-edge
        a, b = rng.integers(0, n, 2)
        a, b = min(a, b), max(a, b)
        if a != b and a * n + b not in known:
            known.add(a * n + b)
            neg.append((a, b))
    neg = np.array(neg, dtype=np.int64)
    H = nx.Graph()
    H.add_nodes_from(nodes)
    H.add_edges_from((nodes[a], nodes[b], G.edges[nodes[a], nodes[b]]) for a, b in train_pos)  # keeps weights
    return EdgeSplit(H, train_pos, neg[n_test:], test_pos, neg[:n_test])


# --------------------------------------------------------------------------------------------
# Link prediction and node classification
# --------------------------------------------------------------------------------------------

def auc(pos_scores, neg_scores) -> float:
    """Area under the ROC curve = P(a random positive outscores a random negative), ties count 1/2.

    Computed as the Mann-Whitney U statistic from average ranks of all scores together:
    ``(sum of positive ranks - n_pos (n_pos + 1) / 2) / (n_pos n_neg)``; equals scikit-learn's
    ``roc_auc_score``. Defined in chapter 16.
    """
    pos = np.asarray(pos_scores, dtype=np.float64).ravel()
    neg = np.asarray(neg_scores, dtype=np.float64).ravel()
    if len(pos) == 0 or len(neg) == 0:
        raise ValueError(f"AUC needs at least one positive and one negative score, got {len(pos)} and {len(neg)}")
    if not (np.isfinite(pos).all() and np.isfinite(neg).all()):
        raise ValueError("scores must be finite (no NaN or inf)")
    s = np.concatenate([pos, neg])
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s))
    ranks[order] = np.arange(1, len(s) + 1)
    # Tied scores share the mean of their ranks.
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    ranks = (np.bincount(inverse, weights=ranks) / counts)[inverse]
    n_pos, n_neg = len(pos), len(neg)
    return float((ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def pair_scores(emb, pairs, score: str = "cosine") -> np.ndarray:
    """Similarity of the two nodes of every pair: ``emb (n, d)``, ``pairs (m, 2)`` -> ``(m,)``.

    ``score``: ``"dot"`` or ``"cosine"``. Defined in chapter 16.
    """
    X = np.asarray(emb, dtype=np.float64)
    pairs = _check_pairs(pairs, len(X))
    a, b = X[pairs[:, 0]], X[pairs[:, 1]]
    if score == "dot":
        return (a * b).sum(1)
    if score == "cosine":
        return (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
    raise ValueError(f"score must be 'dot' or 'cosine' (or 'hadamard' in link_prediction_auc), got {score!r}")


def _check_pairs(pairs, n: int) -> np.ndarray:
    pairs = np.asarray(pairs, dtype=np.int64)
    if pairs.ndim != 2 or pairs.shape[1] != 2:
        raise ValueError(f"pairs must have shape (m, 2) (node rows), got {pairs.shape}")
    if len(pairs) and (pairs.min() < 0 or pairs.max() >= n):
        raise ValueError(f"pairs hold node rows outside 0..{n - 1}: use positions in list(G)")
    return pairs


def heuristic_scores(G, pairs, method: str = "adamic_adar") -> np.ndarray:
    """Classic link-prediction scores from the graph alone, the baseline embeddings must beat.

    ``"common"``: number of common neighbours; ``"jaccard"``: common / union of the two
    neighbourhoods; ``"adamic_adar"``: common neighbours weighted by ``1 / log(degree)`` (a
    shared neighbour with few friends says more); ``"preferential"``: product of degrees.
    ``pairs (m, 2)`` are node rows of ``list(G)``; returns ``(m,)``. Defined in chapter 16.
    """
    A = adjacency(G)
    M = sp.csr_matrix((np.ones_like(A.weights), A.indices, A.indptr), shape=(A.n, A.n))
    pairs = _check_pairs(pairs, A.n)
    deg = A.degrees().astype(np.float64)
    a, b = pairs[:, 0], pairs[:, 1]
    both = M[a].multiply(M[b])  # (m, n): 1 where a node is a neighbour of both
    if method == "common":
        return np.asarray(both.sum(1)).ravel()
    if method == "jaccard":
        common = np.asarray(both.sum(1)).ravel()
        return common / np.maximum(deg[a] + deg[b] - common, 1)
    if method == "adamic_adar":
        w = np.where(deg > 1, 1.0 / np.log(np.maximum(deg, 2)), 0.0)  # a common neighbour has degree >= 2
        return np.asarray(both @ w).ravel()
    if method == "preferential":
        return deg[a] * deg[b]
    raise ValueError(f"unknown method {method!r}: use 'common', 'jaccard', 'adamic_adar' or 'preferential'")


def link_prediction_auc(emb, split: EdgeSplit, score: str = "cosine") -> float:
    """AUC of held-out edges against held-out non-edges for node vectors ``emb (n, d)``.

    ``score`` = ``"dot"`` / ``"cosine"`` rank the test pairs by similarity; ``"hadamard"`` trains a
    logistic regression on the element-wise product of the two vectors of the *training* edges
    and non-edges (node2vec's edge features) and ranks the test pairs by its probability.
    Train ``emb`` on ``split.train_graph`` only, or the test edges leak. Defined in chapter 16.
    """
    X = np.asarray(emb, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"emb must be (n_nodes, dim), got shape {X.shape}")
    if score == "hadamard":
        from sklearn.linear_model import LogisticRegression

        def feats(pairs):
            pairs = _check_pairs(pairs, len(X))
            return X[pairs[:, 0]] * X[pairs[:, 1]]  # (m, d): symmetric in the two nodes

        Xtr = np.concatenate([feats(split.train_pos), feats(split.train_neg)])
        ytr = np.r_[np.ones(len(split.train_pos)), np.zeros(len(split.train_neg))]
        clf = LogisticRegression(max_iter=2000).fit(Xtr, ytr)
        return auc(clf.decision_function(feats(split.test_pos)), clf.decision_function(feats(split.test_neg)))
    return auc(pair_scores(X, split.test_pos, score), pair_scores(X, split.test_neg, score))


def node_classification(emb, labels, train_fraction: float = 0.5, seed: int = 0, repeats: int = 10) -> dict:
    """Logistic-regression probe on node vectors: ``{"accuracy", "macro_f1"}`` (means over splits).

    ``emb (n, d)`` is L2-normalised row-wise (the probe should read directions, not lengths);
    ``labels (n,)`` are the classes. Each of ``repeats`` stratified splits trains on
    ``train_fraction`` of the nodes and scores the rest; small graphs (34 nodes in the karate
    club) need the average. Also returns ``accuracy_std``. Defined in chapter 16.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score
    from sklearn.model_selection import StratifiedShuffleSplit

    X = np.asarray(emb, dtype=np.float64)
    y = np.asarray(labels)
    if X.ndim != 2 or len(X) != len(y):
        raise ValueError(f"emb must be (n, d) with one label per row; got emb {X.shape} and {len(y)} labels")
    if len(np.unique(y)) < 2:
        raise ValueError("labels hold a single class: node classification needs at least two")
    X = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
    splitter = StratifiedShuffleSplit(n_splits=repeats, train_size=train_fraction, random_state=seed)
    acc, f1 = [], []
    for tr, te in splitter.split(X, y):
        clf = LogisticRegression(C=10.0, max_iter=2000).fit(X[tr], y[tr])
        pred = clf.predict(X[te])
        acc.append(float((pred == y[te]).mean()))
        f1.append(float(f1_score(y[te], pred, average="macro")))
    return {"accuracy": float(np.mean(acc)), "macro_f1": float(np.mean(f1)), "accuracy_std": float(np.std(acc))}


# --------------------------------------------------------------------------------------------
# LightGCN: embedding propagation on the user-item graph
# --------------------------------------------------------------------------------------------

def normalized_adjacency(n_users: int, n_items: int, users, items) -> tuple[torch.Tensor, torch.Tensor]:
    """The symmetric normalised adjacency ``D^-1/2 A D^-1/2`` of the user-item graph, as edges.

    Nodes ``0..n_users-1`` are users, ``n_users..n_users+n_items-1`` items; every interaction
    ``(users[k], items[k])`` is an undirected edge (duplicates count once). Returns
    ``(edge_index (2, 2m), edge_weight (2m,))``: row ``0`` receives from row ``1`` with weight
    ``1 / sqrt(deg(u) deg(i))``. Defined in chapter 16.
    """
    users = torch.as_tensor(np.asarray(users), dtype=torch.long).reshape(-1)
    items = torch.as_tensor(np.asarray(items), dtype=torch.long).reshape(-1)
    if len(users) != len(items) or len(users) == 0:
        raise ValueError(f"give one item per user interaction (got {len(users)} users, {len(items)} items, need > 0)")
    if users.min() < 0 or users.max() >= n_users or items.min() < 0 or items.max() >= n_items:
        raise ValueError(f"user ids must be in 0..{n_users - 1} and item ids in 0..{n_items - 1}")
    pairs = torch.unique(users * n_items + items)  # drop repeated interactions
    u, i = pairs // n_items, pairs % n_items + n_users
    src = torch.cat([u, i])
    dst = torch.cat([i, u])
    deg = torch.bincount(src, minlength=n_users + n_items).to(torch.float32)
    w = deg[src].rsqrt() * deg[dst].rsqrt()
    return torch.stack([dst, src]), w


def propagate(E0: torch.Tensor, edge_index: torch.Tensor, edge_weight: torch.Tensor, n_layers: int) -> torch.Tensor:
    """LightGCN's layer combination: ``mean(E0, A E0, A^2 E0, ..., A^L E0)`` with ``A`` given as edges.

    ``E0`` is ``(N, dim)``; each layer sends every node's vector along its edges, scaled by the
    edge weight, and sums what arrives (no weight matrix, no non-linearity: the LightGCN
    simplification of NGCF). ``n_layers=0`` returns ``E0`` (matrix factorisation). Defined in chapter 16.
    """
    if n_layers < 0:
        raise ValueError(f"n_layers={n_layers} must be >= 0 (0 is plain matrix factorisation)")
    dst, src = edge_index
    E, total = E0, E0
    for _ in range(n_layers):
        E = torch.zeros_like(E).index_add_(0, dst, E[src] * edge_weight[:, None])  # (N, dim) = A @ E
        total = total + E
    return total / (n_layers + 1)


class LightGCN(nn.Module):
    """User and item embeddings smoothed over the interaction graph (He et al., 2020).

    One table ``embedding`` ``(n_users + n_items, dim)``; after :meth:`set_graph`,
    :meth:`propagate` returns the layer-averaged embeddings and the score of a (user, item) pair
    is their dot product. ``n_layers=0`` is BPR matrix factorisation with the same code.
    Train with :meth:`bpr_loss` (e.g. through ``minilib.train.fit``). Defined in chapter 16.
    """

    def __init__(self, n_users: int, n_items: int, dim: int = 64, n_layers: int = 3, init_std: float = 0.1,
                 seed: int = 0):
        super().__init__()
        if n_users < 1 or n_items < 1 or dim < 1:
            raise ValueError(f"n_users={n_users}, n_items={n_items} and dim={dim} must be positive")
        if n_layers < 0:
            raise ValueError(f"n_layers={n_layers} must be >= 0 (0 is plain matrix factorisation)")
        self.n_users, self.n_items, self.n_layers = n_users, n_items, n_layers
        g = torch.Generator().manual_seed(seed)
        self.embedding = nn.Parameter(torch.randn(n_users + n_items, dim, generator=g) * init_std)
        self.register_buffer("edge_index", torch.zeros(2, 0, dtype=torch.long))
        self.register_buffer("edge_weight", torch.zeros(0))

    def set_graph(self, users, items) -> "LightGCN":
        """Use the training interactions ``(users[k], items[k])`` as the propagation graph."""
        ei, ew = normalized_adjacency(self.n_users, self.n_items, users, items)
        self.edge_index, self.edge_weight = ei.to(self.embedding.device), ew.to(self.embedding.device)
        return self

    def propagate(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Final ``(users (n_users, dim), items (n_items, dim))`` after ``n_layers`` of smoothing."""
        if self.n_layers > 0 and self.edge_index.shape[1] == 0:
            raise RuntimeError("no graph to propagate over: call model.set_graph(train_users, train_items) first")
        E = propagate(self.embedding, self.edge_index, self.edge_weight, self.n_layers)
        return E[: self.n_users], E[self.n_users :]

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Scores of (user, item) pairs: ``(B,)``."""
        U, I = self.propagate()
        return (U[users] * I[items]).sum(-1)

    def bpr_loss(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, reg: float = 1e-4) -> torch.Tensor:
        """Bayesian personalised ranking: ``-log sigmoid(s(u, pos) - s(u, neg))``, averaged, plus
        ``reg / 2`` times the squared norm of the batch's *layer-0* embeddings divided by the batch size
        (LightGCN's regulariser; PyTorch Geometric's ``lambda_reg`` is ``reg / 2``)."""
        U, I = self.propagate()
        diff = (U[users] * (I[pos] - I[neg])).sum(-1)  # (B,)
        ego = self.embedding
        l2 = (ego[users].pow(2).sum() + ego[self.n_users + pos].pow(2).sum() + ego[self.n_users + neg].pow(2).sum())
        return -torch.nn.functional.logsigmoid(diff).mean() + reg * l2 / (2 * len(users))

    @torch.no_grad()
    def scores(self) -> torch.Tensor:
        """Every user's score for every item: ``(n_users, n_items)``."""
        U, I = self.propagate()
        return U @ I.T


def default_device() -> torch.device:
    """The device ``profile.setup()`` chose; without a set-up, the best one present (no seeding).
    Defined in chapter 16."""
    from . import profile

    return profile._current.device if profile._current is not None else profile.pick_device()


@contextlib.contextmanager
def limit_cpu_threads(device, n: int | None = 1):
    """Run the enclosed training with ``n`` torch CPU threads when ``device`` is the CPU.

    The models of this chapter are small: each step is many tiny operations, for which one
    thread beats two that wait for each other, by far when other programs share the cores
    (chapter 03's ``Word2Vec.fit`` does the same). ``n=None`` keeps torch's setting.
    Defined in chapter 16.
    """
    if device is None:
        device = default_device()
    before = torch.get_num_threads()
    if torch.device(device).type == "cpu" and n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def fit_bpr(model: LightGCN, users, items, steps: int = 300, batch_size: int = 1024, lr: float = 0.01,
            reg: float = 1e-4, seed: int = 0, progress: bool = True, device=None, cpu_threads: int | None = 1) -> dict:
    """Train ``model`` with the BPR loss on interactions ``(users[k], items[k])`` via ``train.fit``.

    Sets the model's graph to these interactions, then each step draws ``batch_size`` observed
    pairs and one uniformly random item per pair as the negative (a random item is almost never
    a positive in sparse data; LightGCN's code samples the same way). Adam at ``lr`` (warmed up over 5 % of
    the steps, then decayed linearly), no decoupled weight decay (``reg`` is the BPR L2 term).
    Training on the CPU uses ``cpu_threads`` threads (:func:`limit_cpu_threads`). Returns
    ``fit``'s history. Defined in chapter 16.
    """
    from . import train

    users = torch.as_tensor(np.asarray(users), dtype=torch.long)
    items = torch.as_tensor(np.asarray(items), dtype=torch.long)
    model.set_graph(users, items)
    gen = torch.Generator().manual_seed(seed)

    def loss_fn(m, batch):
        u, pos = batch
        neg = torch.randint(0, m.n_items, (len(u),), generator=gen).to(u.device)
        return m.bpr_loss(u, pos, neg, reg=reg)

    with limit_cpu_threads(device, cpu_threads):
        return train.fit(model, train.Batches((users, items), batch_size, seed=seed), loss_fn, steps=steps, lr=lr,
                         weight_decay=0.0, warmup=0.05, grad_clip=None, schedule="linear", progress=progress,
                         desc=f"BPR, {model.n_layers} layers", device=device)
