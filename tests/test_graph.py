"""minilib.graph: node2vec walks (exact bias, only along edges, seeded), node vectors that find
planted communities, held-out edges, AUC against scikit-learn, link heuristics against networkx,
LightGCN propagation against the dense matrix formula and PyTorch Geometric, and BPR training."""
import networkx as nx
import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from minilib import graph


@pytest.fixture(scope="module")
def two_groups():
    G, labels = graph.planted_partition(2, 15, 0.5, 0.03, seed=1)
    return G, labels


def _kite():
    # 0 - 1, 1 - 2, 0 - 2 (a triangle), 1 - 3, 3 - 4: from 0 -> 1 the next node is 0 (back),
    # 2 (a neighbour of 0) or 3 (two steps from 0).
    G = nx.Graph([(0, 1), (1, 2), (0, 2), (1, 3), (3, 4)])
    return G


# --- adjacency --------------------------------------------------------------------------------

def test_adjacency_from_networkx_and_matrix_agree():
    G = _kite()
    A = graph.adjacency(G)
    B = graph.adjacency(nx.to_numpy_array(G, nodelist=list(G)))
    assert A.n == 5 and A.degrees().tolist() == [2, 3, 2, 2, 1]
    np.testing.assert_array_equal(A.indices, B.indices)
    assert A.has_edges(np.array([0, 0, 3]), np.array([1, 3, 4])).tolist() == [True, False, True]


def test_adjacency_errors():
    with pytest.raises(ValueError, match="no nodes"):
        graph.adjacency(nx.Graph())
    G = nx.Graph()
    G.add_nodes_from([0, 1])
    with pytest.raises(ValueError, match="no edges"):
        graph.adjacency(G)
    with pytest.raises(ValueError, match="square"):
        graph.adjacency(np.ones((2, 3)))
    with pytest.raises(ValueError, match="positive"):
        graph.adjacency(np.array([[0, -1.0], [-1.0, 0]]))


# --- walks --------------------------------------------------------------------------------------

def test_walks_follow_edges_and_have_the_asked_shape(two_groups):
    G, _ = two_groups
    walks = graph.random_walks(G, n_walks=3, walk_length=12, p=0.5, q=2.0, seed=0)
    assert len(walks) == 3 * G.number_of_nodes() and all(len(w) == 12 for w in walks)
    assert all(isinstance(t, str) for t in walks[0])
    for w in walks:
        for a, b in zip(w, w[1:]):
            assert G.has_edge(int(a), int(b))
    # every node starts exactly n_walks walks
    starts = [w[0] for w in walks]
    assert all(starts.count(str(v)) == 3 for v in G)


def test_walks_are_deterministic_for_a_seed(two_groups):
    G, _ = two_groups
    a = graph.random_walks(G, 2, 10, p=0.25, q=4, seed=3)
    assert a == graph.random_walks(G, 2, 10, p=0.25, q=4, seed=3)
    assert a != graph.random_walks(G, 2, 10, p=0.25, q=4, seed=4)


def test_transition_probabilities_are_node2vecs_formula():
    probs = graph.transition_probabilities(_kite(), prev=0, cur=1, p=0.5, q=2.0)
    # weights: back to 0 -> 1/p = 2; to 2 (neighbour of 0) -> 1; to 3 (distance 2) -> 1/q = 0.5
    assert probs == pytest.approx({0: 2 / 3.5, 2: 1 / 3.5, 3: 0.5 / 3.5})
    with pytest.raises(ValueError, match="not an edge"):
        graph.transition_probabilities(_kite(), prev=0, cur=4)


@pytest.mark.parametrize("p,q", [(0.25, 4.0), (4.0, 0.25), (1.0, 1.0)])
def test_rejection_sampler_matches_the_exact_distribution(p, q):
    G = _kite()
    walks = graph.random_walks(G, n_walks=6000, walk_length=3, p=p, q=q, seed=0, start=[0])
    nxt = [w[2] for w in walks if w[1] == "1"]  # walks that went 0 -> 1
    exact = graph.transition_probabilities(G, 0, 1, p, q)
    for node, prob in exact.items():
        assert abs(nxt.count(str(node)) / len(nxt) - prob) < 0.03, (node, prob)


def test_return_probability_follows_one_over_p_on_a_cycle():
    # On a cycle the two choices are "back" (weight 1/p) and "onward" (distance 2: weight 1/q).
    G = nx.cycle_graph(10)
    for p, q in [(0.5, 2.0), (2.0, 0.5), (1.0, 1.0)]:
        W = np.array([[int(t) for t in w] for w in graph.random_walks(G, 200, 20, p=p, q=q, seed=1)])
        returned = (W[:, 2:] == W[:, :-2]).mean()
        expected = (1 / p) / (1 / p + 1 / q)
        assert abs(returned - expected) < 0.02, (p, q, returned, expected)


def test_first_step_follows_edge_weights():
    G = nx.Graph()
    G.add_edge("hub", "a", weight=1.0)
    G.add_edge("hub", "b", weight=3.0)
    walks = graph.random_walks(G, 4000, 2, seed=0, weight="weight", start=["hub"])
    share_b = np.mean([w[1] == "b" for w in walks])
    assert abs(share_b - 0.75) < 0.03


def test_walk_errors():
    G = _kite()
    G.add_node(99)  # isolated
    with pytest.raises(ValueError, match="no neighbours"):
        graph.random_walks(G, 1, 5)
    with pytest.raises(ValueError, match="positive number"):
        graph.random_walks(_kite(), 1, 5, p=0)
    with pytest.raises(ValueError, match="positive number"):
        graph.random_walks(_kite(), 1, 5, q=-1)
    with pytest.raises(KeyError, match="not in the graph"):
        graph.random_walks(_kite(), 1, 5, start=["nope"])
    with pytest.raises(ValueError, match="positive integers"):
        graph.random_walks(_kite(), 0, 5)


# --- node vectors -------------------------------------------------------------------------------

def test_node2vec_finds_planted_communities(two_groups):
    G, labels = two_groups
    X = graph.node2vec(G, dim=16, n_walks=10, walk_length=20, seed=0)
    assert X.shape == (30, 16)
    res = graph.node_classification(X, labels, 0.5, seed=0, repeats=5)
    assert res["accuracy"] > 0.9 and res["macro_f1"] > 0.9
    np.testing.assert_array_equal(X, graph.node2vec(G, dim=16, n_walks=10, walk_length=20, seed=0))


def test_embed_walks_needs_every_node():
    with pytest.raises(ValueError, match="never appear"):
        graph.embed_walks([["0", "1", "0", "1", "0", "1", "0", "1", "0", "1"]], [0, 1, 2], dim=4)
    with pytest.raises(ValueError, match="no walks"):
        graph.embed_walks([], [0], dim=4)


def test_planted_partition_densities():
    G, labels = graph.planted_partition(3, 40, 0.3, 0.02, seed=0)
    assert G.number_of_nodes() == 120 and np.bincount(labels).tolist() == [40, 40, 40]
    inside = sum(labels[a] == labels[b] for a, b in G.edges())
    across = G.number_of_edges() - inside
    assert abs(inside / (3 * 40 * 39 / 2) - 0.3) < 0.03 and abs(across / (3 * 40 * 40) - 0.02) < 0.01
    assert nx.utils.graphs_equal(G, graph.planted_partition(3, 40, 0.3, 0.02, seed=0)[0])
    with pytest.raises(ValueError, match="probabilities"):
        graph.planted_partition(2, 5, 1.5, 0.1)


# --- held-out edges and AUC ---------------------------------------------------------------------

def test_split_edges_keeps_the_graph_connected(two_groups):
    G, _ = two_groups
    s = graph.split_edges(G, 0.3, seed=0)
    assert nx.is_connected(s.train_graph) and list(s.train_graph) == list(G)
    m = G.number_of_edges()
    assert len(s.test_pos) == round(0.3 * m) and len(s.train_pos) == m - len(s.test_pos)
    assert len(s.test_neg) == len(s.test_pos) and len(s.train_neg) == len(s.train_pos)
    nodes = list(G)
    for a, b in s.test_pos:
        assert G.has_edge(nodes[a], nodes[b]) and not s.train_graph.has_edge(nodes[a], nodes[b])
    neg = {tuple(e) for e in np.concatenate([s.train_neg, s.test_neg])}
    assert len(neg) == len(s.train_neg) + len(s.test_neg)  # disjoint, no repeats
    assert not any(G.has_edge(nodes[a], nodes[b]) or a == b for a, b in neg)


def test_split_edges_refuses_to_cut_a_tree():
    with pytest.raises(ValueError, match="connected"):
        graph.split_edges(nx.path_graph(6), 0.3)
    with pytest.raises(ValueError, match="undirected"):
        graph.split_edges(nx.DiGraph([(0, 1), (1, 2)]), 0.3)


def test_auc_equals_sklearn_with_ties():
    rng = np.random.default_rng(0)
    pos, neg = rng.integers(0, 5, 40).astype(float), rng.integers(0, 4, 60).astype(float)  # many ties
    ref = roc_auc_score(np.r_[np.ones(40), np.zeros(60)], np.r_[pos, neg])
    assert graph.auc(pos, neg) == pytest.approx(ref, abs=1e-12)
    assert graph.auc([2.0, 3.0], [1.0]) == 1.0 and graph.auc([1.0], [1.0]) == 0.5
    with pytest.raises(ValueError, match="at least one"):
        graph.auc([], [1.0])
    with pytest.raises(ValueError, match="finite"):
        graph.auc([np.nan], [1.0])


def test_heuristics_equal_networkx():
    G = nx.karate_club_graph()
    nodes = list(G)
    pairs = np.array([(0, 33), (1, 2), (5, 16), (8, 30), (24, 25)])
    named = [(nodes[a], nodes[b]) for a, b in pairs]
    np.testing.assert_allclose(graph.heuristic_scores(G, pairs, "jaccard"), [s for *_, s in nx.jaccard_coefficient(G, named)])
    np.testing.assert_allclose(graph.heuristic_scores(G, pairs, "adamic_adar"), [s for *_, s in nx.adamic_adar_index(G, named)])
    np.testing.assert_allclose(graph.heuristic_scores(G, pairs, "preferential"),
                               [s for *_, s in nx.preferential_attachment(G, named)])
    np.testing.assert_allclose(graph.heuristic_scores(G, pairs, "common"),
                               [len(list(nx.common_neighbors(G, a, b))) for a, b in named])
    with pytest.raises(ValueError, match="unknown method"):
        graph.heuristic_scores(G, pairs, "katz")


def test_link_prediction_scores(two_groups):
    G, labels = two_groups
    s = graph.split_edges(G, 0.2, seed=0)
    onehot = np.eye(2)[labels] + 0.01 * np.random.default_rng(0).normal(size=(30, 2))  # the planted truth
    for score in ("dot", "cosine", "hadamard"):
        # The truth itself reaches only about 0.8: some edges cross groups, most same-group pairs are no edge.
        assert graph.link_prediction_auc(onehot, s, score) > 0.7, score
    with pytest.raises(ValueError, match="score must be"):
        graph.link_prediction_auc(onehot, s, "euclid")
    with pytest.raises(ValueError, match="outside"):
        graph.pair_scores(onehot, [[0, 99]])


def test_node_classification_errors():
    with pytest.raises(ValueError, match="one label per row"):
        graph.node_classification(np.zeros((4, 2)), [0, 1, 0])
    with pytest.raises(ValueError, match="single class"):
        graph.node_classification(np.ones((4, 2)), [0, 0, 0, 0])


# --- LightGCN -----------------------------------------------------------------------------------

def test_propagation_equals_the_dense_formula():
    rng = np.random.default_rng(0)
    n_u, n_i = 5, 4
    users, items = rng.integers(0, n_u, 12), rng.integers(0, n_i, 12)
    R = np.zeros((n_u, n_i))
    R[users, items] = 1
    A = np.block([[np.zeros((n_u, n_u)), R], [R.T, np.zeros((n_i, n_i))]])
    d = A.sum(1)
    inv = np.where(d > 0, 1 / np.sqrt(np.maximum(d, 1e-12)), 0)
    A_hat = inv[:, None] * A * inv[None, :]  # D^-1/2 A D^-1/2
    E0 = rng.normal(size=(n_u + n_i, 3))
    expected = np.mean([np.linalg.matrix_power(A_hat, k) @ E0 for k in range(4)], axis=0)
    ei, ew = graph.normalized_adjacency(n_u, n_i, users, items)
    got = graph.propagate(torch.tensor(E0, dtype=torch.float64), ei, ew.double(), 3)
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-6)  # edge weights are float32
    assert torch.equal(graph.propagate(torch.ones(3, 2), ei, ew, 0), torch.ones(3, 2))  # 0 layers = MF


def test_lightgcn_matches_pytorch_geometric():
    """PyTorch Geometric's LightGCN (LGConv layers, gcn_norm, layer mean) with our table copied in
    gives our propagated embeddings, pair scores and BPR loss (its lambda_reg is our reg / 2:
    ours halves the squared norm, as He et al. write the regulariser)."""
    from torch_geometric.nn.models import LightGCN as PyGLightGCN
    rng = np.random.default_rng(0)
    n_u, n_i = 7, 5
    users, items = rng.integers(0, n_u, 30), rng.integers(0, n_i, 30)  # repeats, and users with no item
    ours = graph.LightGCN(n_u, n_i, dim=4, n_layers=3, seed=1).set_graph(users, items)
    ref = PyGLightGCN(num_nodes=n_u + n_i, embedding_dim=4, num_layers=3)
    with torch.no_grad():
        ref.embedding.weight.copy_(ours.embedding)
    pairs = np.unique(np.stack([users, items + n_u]), axis=1)             # (2, m) user -> item node
    edge_index = torch.as_tensor(np.concatenate([pairs, pairs[::-1]], axis=1))  # both directions
    U, I = ours.propagate()
    torch.testing.assert_close(torch.cat([U, I]), ref.get_embedding(edge_index), atol=1e-6, rtol=1e-6)
    u, pos, neg = torch.tensor([0, 3, 3, 6]), torch.tensor([1, 4, 0, 2]), torch.tensor([2, 2, 1, 4])
    rank_pos = ref(edge_index, torch.stack([u, pos + n_u]))
    rank_neg = ref(edge_index, torch.stack([u, neg + n_u]))
    torch.testing.assert_close(ours(u, pos), rank_pos, atol=1e-6, rtol=1e-6)
    node_id = torch.cat([u, pos + n_u, neg + n_u])
    want = ref.recommendation_loss(rank_pos, rank_neg, node_id=node_id, lambda_reg=0.5e-2)
    torch.testing.assert_close(ours.bpr_loss(u, pos, neg, reg=1e-2), want, atol=1e-6, rtol=1e-6)


def test_lightgcn_bpr_training_learns_the_planted_blocks():
    # Users 0-9 like items 0-4, users 10-19 like items 5-9.
    users = np.repeat(np.arange(20), 4)
    rng = np.random.default_rng(0)
    items = np.array([rng.choice(5, 4, replace=False) + (5 if u >= 10 else 0) for u in range(20)]).ravel()
    model = graph.LightGCN(20, 10, dim=8, n_layers=2, seed=0)
    hist = graph.fit_bpr(model, users, items, steps=120, batch_size=32, lr=0.05, progress=False, device="cpu")
    assert np.mean(hist["loss"][-10:]) < 0.5 * hist["loss"][0]
    S = model.scores().numpy()
    own = np.r_[S[:10, :5].mean() - S[:10, 5:].mean(), S[10:, 5:].mean() - S[10:, :5].mean()]
    assert (own > 0).all()
    again = graph.LightGCN(20, 10, dim=8, n_layers=2, seed=0)
    graph.fit_bpr(again, users, items, steps=120, batch_size=32, lr=0.05, progress=False, device="cpu")
    torch.testing.assert_close(again.embedding, model.embedding, rtol=0, atol=0)


def test_lightgcn_errors():
    with pytest.raises(RuntimeError, match="set_graph"):
        graph.LightGCN(3, 3, 4, n_layers=1).propagate()
    with pytest.raises(ValueError, match="n_layers"):
        graph.LightGCN(3, 3, 4, n_layers=-1)
    with pytest.raises(ValueError, match="item ids"):
        graph.normalized_adjacency(3, 3, [0, 1], [0, 5])


# --- errors name the fix ------------------------------------------------------------------------

def test_walk_input_errors_name_the_fix():
    with pytest.raises(ValueError, match=r"empty \(0 x 0\): give a graph with at least one edge"):
        graph.adjacency(np.zeros((0, 0)))
    with pytest.raises(ValueError, match=r"same str\(\) label; relabel them \(nx.convert_node_labels_to_integers"):
        graph.random_walks(nx.Graph([(1, "1"), (1, 2)]), 1, 3)
    with pytest.raises(ValueError, match=r"start is empty: give at least one start node \(or None"):
        graph.random_walks(_kite(), 1, 3, start=[])
    # A directed graph with a dead end: 0 -> 1, and nothing leaves 1.
    with pytest.raises(ValueError, match=r"reached node 1, which has no outgoing edge; make the graph undirected"):
        graph.random_walks(nx.DiGraph([(0, 1)]), 1, 3, start=[0])


def test_split_and_scoring_errors_name_the_fix():
    with pytest.raises(ValueError, match="n_communities=0 and size=5 must be at least 1"):
        graph.planted_partition(0, 5, 0.5, 0.1)
    with pytest.raises(ValueError, match=r"test_fraction=0 must be in \(0, 1\)"):
        graph.split_edges(_kite(), 0)
    with pytest.raises(ValueError, match=r"test_fraction=1.5 must be in \(0, 1\)"):
        graph.split_edges(_kite(), 1.5)
    with pytest.raises(ValueError, match=r"has 1 edge\(s\): link prediction needs at least two"):
        graph.split_edges(nx.Graph([(0, 1)]), 0.5)
    with pytest.raises(ValueError, match="too dense to sample as many non-edges as edges"):
        graph.split_edges(nx.complete_graph(5), 0.3)
    with pytest.raises(ValueError, match=r"pairs must have shape \(m, 2\) \(node rows\), got \(2,\)"):
        graph.pair_scores(np.eye(3), [0, 1])
    with pytest.raises(ValueError, match=r"pairs must have shape \(m, 2\)"):
        graph.heuristic_scores(_kite(), [[0, 1, 2]])
    s = graph.split_edges(_kite(), 0.2, seed=0)
    with pytest.raises(ValueError, match=r"emb must be \(n_nodes, dim\), got shape \(5,\)"):
        graph.link_prediction_auc(np.zeros(5), s)


def test_lightgcn_input_errors_name_the_fix():
    with pytest.raises(ValueError, match=r"one item per user interaction \(got 2 users, 1 items, need > 0\)"):
        graph.normalized_adjacency(3, 3, [0, 1], [0])
    with pytest.raises(ValueError, match=r"got 0 users, 0 items"):
        graph.normalized_adjacency(3, 3, [], [])
    ei, ew = graph.normalized_adjacency(2, 2, [0, 1], [1, 0])
    with pytest.raises(ValueError, match=r"n_layers=-1 must be >= 0 \(0 is plain matrix factorisation\)"):
        graph.propagate(torch.ones(4, 2), ei, ew, -1)
    with pytest.raises(ValueError, match="n_users=0, n_items=3 and dim=4 must be positive"):
        graph.LightGCN(0, 3, 4)
    with pytest.raises(ValueError, match="dim=0 must be positive"):
        graph.LightGCN(3, 3, 0)
