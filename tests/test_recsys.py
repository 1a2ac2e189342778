"""minilib.recsys: planted baskets and item2vec's in/out vectors, ranking metrics by hand,
universal hashing and its collision formulas, hashed / multiplexed tables, the click task, and
next-latent prediction with and without the stop-gradient."""
import numpy as np
import pytest
import torch

from minilib import recsys
from minilib.similarity import normalize


# --- baskets and item2vec -----------------------------------------------------------------------

def test_baskets_plant_substitutes_and_complements():
    B = recsys.baskets(n_sessions=300, n_missions=3, categories_per_mission=3, items_per_category=4, noise=0.0, seed=0)
    assert B.n_items == 36 and B.substitutes.shape == (36, 36)
    assert (B.substitutes == B.substitutes.T).all() and (B.complements == B.complements.T).all()
    assert not (B.substitutes & B.complements).any() and not B.substitutes.diagonal().any()
    assert B.substitutes.sum(1).tolist() == [3] * 36 and B.complements.sum(1).tolist() == [8] * 36
    for s in B.sessions:
        items = [int(t) for t in s]
        assert len(items) >= 2 and len({B.category[i] for i in items}) == len(items)  # one item per category
        assert len({B.mission[B.category[i]] for i in items}) == 1  # one mission per basket
    with pytest.raises(ValueError, match="categories_per_mission"):
        recsys.baskets(categories_per_mission=1)


def test_item2vec_in_vectors_find_substitutes_and_in_out_complements():
    B = recsys.baskets(n_sessions=1500, n_missions=4, categories_per_mission=3, items_per_category=5, seed=0)
    model = recsys.item2vec(B.sessions, dim=16, epochs=10, seed=0)
    W_in, W_out = recsys.item_vectors(model, B.n_items)
    assert W_in.shape == (60, 16)
    in_in, in_out = normalize(W_in) @ normalize(W_in).T, W_in @ W_out.T
    k = 3
    assert recsys.precision_at_k(in_in, B.substitutes, k) > 0.8
    assert recsys.precision_at_k(in_out, B.complements, k) > 0.8
    assert recsys.precision_at_k(in_out, B.substitutes, k) < 0.2  # substitutes are never bought together
    assert recsys.precision_at_k(in_in, B.complements, k) < 0.2


def test_precision_at_k_by_hand():
    S = np.array([[9, 3, 2, 1], [3, 9, 1, 2], [0, 1, 9, 5], [1, 0, 5, 9.0]])
    truth = np.array([[0, 1, 0, 0], [0, 0, 0, 1], [0, 0, 0, 0], [1, 0, 1, 0]], dtype=bool)
    # row 0: top-2 (self excluded) = 1, 2 -> 1/2; row 1: 0, 3 -> 1/2; row 2 has no relevant item; row 3: 2, 0 -> 1
    assert recsys.precision_at_k(S, truth, 2) == pytest.approx((0.5 + 0.5 + 1.0) / 3)
    with pytest.raises(ValueError, match="k="):
        recsys.precision_at_k(S, truth, 4)


# --- user-item data and ranking metrics ---------------------------------------------------------

def test_taste_interactions_and_holdout():
    d = recsys.taste_interactions(n_users=200, n_items=100, n_clusters=5, per_user=6, p_taste=0.8, seed=0)
    assert len(d["users"]) == 1200
    in_taste = d["item_genre"][d["items"]] == d["user_taste"][d["users"]]
    assert 0.75 < in_taste.mean() < 0.92  # 0.8 from the taste + a share of the random draws
    tu, ti, su, si = recsys.holdout(d["users"], d["items"], 0.34, seed=0)
    assert len(tu) + len(su) == 1200 and np.bincount(su, minlength=200).tolist() == [2] * 200
    train = set(zip(tu.tolist(), ti.tolist()))
    assert not train & set(zip(su.tolist(), si.tolist()))
    with pytest.raises(ValueError, match="per_user"):
        recsys.taste_interactions(n_items=10, n_clusters=5, per_user=3)


def test_ranking_metrics_by_hand():
    scores = np.array([[0.9, 0.8, 0.1, 0.5], [0.1, 0.2, 0.3, 0.4]])
    # user 0 trained on item 0 (never recommended again), holds out items 2 and 3;
    # top-2 of the rest = items 1, 3 -> one hit at rank 2. User 1 holds out item 3, ranked first.
    m = recsys.ranking_metrics(scores, [0], [0], [0, 0, 1], [2, 3, 3], k=2)
    assert m["recall@2"] == pytest.approx((1 / 2 + 1) / 2)
    ndcg0 = (1 / np.log2(3)) / (1 + 1 / np.log2(3))
    assert m["ndcg@2"] == pytest.approx((ndcg0 + 1) / 2)
    pop = recsys.popularity_scores([1, 1, 2], 2, 4)
    assert pop.shape == (2, 4) and pop[1].tolist() == [0, 2, 1, 0]
    with pytest.raises(ValueError, match="no held-out"):
        recsys.ranking_metrics(scores, [0], [0], [], [], k=2)


# --- hashing ------------------------------------------------------------------------------------

def test_hash_ids_is_the_universal_formula():
    ids = torch.arange(0, 5000)
    h = recsys.hash_ids(ids, 97, salt=3)
    a1, b1, a2, b2 = recsys._hash_params(3)
    P = 2**31 - 1

    def by_hand(i):
        x = (a1 * i + b1) % P
        x ^= x >> 16
        return (a2 * x + b2) % P % 97

    assert h.tolist() == [by_hand(i) for i in range(5000)]
    assert torch.equal(h, recsys.hash_ids(ids, 97, salt=3)) and not torch.equal(h, recsys.hash_ids(ids, 97, salt=4))
    counts = torch.bincount(h, minlength=97).float()
    assert counts.min() > 0.6 * counts.mean() and counts.max() < 1.4 * counts.mean()  # close to uniform
    with pytest.raises(TypeError, match="integers"):
        recsys.hash_ids(torch.tensor([1.5]), 10)
    with pytest.raises(ValueError, match="non-negative"):
        recsys.hash_ids(torch.tensor([-1]), 10)


def test_collision_formulas_match_simulation():
    n, B = 3000, 1000
    stats = recsys.collision_stats(n, B)
    occupied, pairs, alone = [], [], []
    for salt in range(20):
        h = recsys.hash_ids(torch.arange(n) * 7919 + 11, B, salt=salt)
        c = torch.bincount(h, minlength=B)
        occupied.append(int((c > 0).sum()))
        pairs.append(float((c * (c - 1) / 2).sum()))
        alone.append(float((c[h] == 1).float().mean()))
    assert abs(np.mean(occupied) / stats["occupied"] - 1) < 0.02
    assert abs(np.mean(pairs) / stats["pairs"] - 1) < 0.05
    assert abs(np.mean(alone) - stats["alone"]) < 0.02


def test_hashed_and_multiplexed_embeddings():
    emb = recsys.HashedEmbedding(50, 4, n_hashes=2, seed=0)
    ids = torch.tensor([[1, 2], [3, 1]])
    out = emb(ids)
    rows = emb.buckets(ids)
    assert out.shape == (2, 2, 4) and rows.shape == (2, 2, 2)
    torch.testing.assert_close(out[0, 0], emb.weight[rows[0, 0]].sum(0))
    torch.testing.assert_close(out[0, 0], out[1, 1])  # same id, same vector
    out.sum().backward()
    assert emb.weight.grad is not None

    mux = recsys.MultiplexedEmbedding(1000, 4, n_features=3, seed=0)
    X = torch.arange(30).view(10, 3) % 4  # small ids repeat across features
    assert mux(X).shape == (10, 3, 4)
    b = mux.buckets(torch.tensor([[7, 7, 7]]))[0, :, 0]
    assert len(set(b.tolist())) == 3  # equal ids of different features use different rows
    with pytest.raises(ValueError, match="n_features=3"):
        mux(torch.zeros(2, 2, dtype=torch.long))


def test_feature_embedding_budgets():
    V = [1000, 200, 10]
    full = recsys.FeatureEmbedding("full", V, dim=4)
    hashed = recsys.FeatureEmbedding("hashed", V, dim=4, n_rows=300)
    mux = recsys.FeatureEmbedding("multiplexed", V, dim=4, n_rows=300)
    assert (full.rows, hashed.rows, mux.rows) == (1210, 300, 300)
    assert recsys._waterfill(V, 300) == [145, 145, 10] and recsys._waterfill(V, 1000) == [790, 200, 10]
    X = torch.tensor([[999, 199, 9], [0, 0, 0]])
    for e in (full, hashed, mux):
        assert e(X).shape == (2, 3, 4)
    with pytest.raises(ValueError, match="unseen value"):
        full(torch.tensor([[1000, 0, 0]]))
    assert hashed(torch.tensor([[10**6, 0, 0]])).shape == (1, 3, 4)  # hashing takes any id
    with pytest.raises(ValueError, match="kind must be"):
        recsys.FeatureEmbedding("bloom", V, 4, 100)


def test_click_model_learns_the_planted_weights():
    V = (500, 50, 5)
    d = recsys.click_data(V, n_samples=12000, seed=0)
    assert d["X"].shape == (12000, 3) and d["X"][:, 2].max() < 5
    tr, te = slice(0, 10000), slice(10000, None)
    model = recsys.ClickModel(recsys.FeatureEmbedding("multiplexed", V, 4, n_rows=256, seed=0), 4)
    hist = recsys.fit_click_model(model, d["X"][tr], d["y"][tr], steps=150, batch_size=256, lr=0.05, device="cpu")
    assert np.mean(hist["loss"][-10:]) < hist["loss"][0] - 0.05
    learned = recsys.click_auc(model, d["X"][te], d["y"][te])
    lt, y = d["logit"][te], d["y"][te]
    from minilib.graph import auc
    oracle = auc(lt[y == 1], lt[y == 0])
    assert 0.65 < learned <= oracle + 0.02


# --- next-latent prediction ---------------------------------------------------------------------

def test_record_sequences_follow_the_chain():
    d = recsys.record_sequences(n_sequences=400, length=10, n_states=5, record_dim=6, nuisance_dim=3,
                                p_advance=0.7, p_jump=0.0, seed=0)
    assert d["X"].shape == (400, 10, 9) and d["state"].shape == (400, 10)
    step = (d["state"][:, 1:] - d["state"][:, :-1]) % 5
    assert set(np.unique(step)) <= {0, 1} and abs((step == 1).mean() - 0.7) < 0.03
    with pytest.raises(ValueError, match="length >= 2"):
        recsys.record_sequences(length=1)


def test_jepa_loss_and_ema():
    torch.manual_seed(0)
    m = recsys.NextLatentJEPA(record_dim=5, dim=3, hidden=8, ema=0.9, seed=0)
    X = torch.randn(4, 6, 5)
    pred = torch.nn.functional.normalize(m.predictor(m.encoder(X[:, :-1])), dim=-1)
    tgt = torch.nn.functional.normalize(m.target_encoder(X[:, 1:]), dim=-1)
    expected = (2 - 2 * (pred * tgt).sum(-1)).mean()
    torch.testing.assert_close(m.loss(X), expected)
    before = [p.clone() for p in m.target_encoder.parameters()]
    with torch.no_grad():
        for p in m.encoder.parameters():
            p.add_(1.0)
    m.update_target()
    for b, t, o in zip(before, m.target_encoder.parameters(), m.encoder.parameters()):
        torch.testing.assert_close(t, 0.9 * b + 0.1 * o)
    assert all(not p.requires_grad for p in m.target_encoder.parameters())
    with pytest.raises(ValueError, match="time >= 2"):
        m.loss(torch.randn(4, 1, 5))


def test_without_stop_gradient_the_embeddings_collapse():
    d = recsys.record_sequences(n_sequences=300, length=8, n_states=4, record_dim=8, nuisance_dim=4, seed=0)
    X = torch.as_tensor(d["X"])
    stats = {}
    for sg in (True, False):
        m = recsys.NextLatentJEPA(12, dim=4, hidden=32, stop_gradient=sg, seed=0)
        m.fit(d["X"], steps=150, batch_size=64, device="cpu")
        with torch.no_grad():
            stats[sg] = recsys.collapse_stats(m.encode(X).reshape(-1, 4))
    assert stats[False]["std"] < 0.05 < 0.2 < stats[True]["std"]
    assert stats[True]["effective_rank"] > 2.0


def test_collapse_stats_extremes():
    assert recsys.collapse_stats(np.ones((10, 4))) == {"std": 0.0, "effective_rank": 0.0}
    iso = recsys.collapse_stats(np.random.default_rng(0).normal(size=(5000, 8)))
    assert iso["effective_rank"] > 7.5 and abs(iso["std"] - 1 / np.sqrt(8)) < 0.02
    with pytest.raises(ValueError, match="n >= 2"):
        recsys.collapse_stats(np.ones(3))


def test_click_model_counts_its_parameters():
    emb = recsys.FeatureEmbedding("full", [10, 5], dim=4)
    model = recsys.ClickModel(emb, dim=4)
    assert model.n_parameters() == (10 + 5) * 4 + (2 * 4 + 1)       # the tables, then the linear head
    small = recsys.ClickModel(recsys.FeatureEmbedding("multiplexed", [10, 5], dim=4, n_rows=6), dim=4)
    assert small.n_parameters() == 6 * 4 + 9


# --- errors name the fix ------------------------------------------------------------------------

def test_basket_and_ranking_errors_name_the_fix():
    with pytest.raises(ValueError, match=r"p_category=0 must be in \(0, 1\]"):
        recsys.baskets(p_category=0)
    with pytest.raises(ValueError, match=r"noise=1.5 in \[0, 1\]"):
        recsys.baskets(noise=1.5)
    with pytest.raises(ValueError, match="no sessions given: pass baskets"):
        recsys.item2vec([[], []])
    with pytest.raises(ValueError, match=r"square matrices of one shape, got \(2, 3\) and \(2, 3\)"):
        recsys.precision_at_k(np.ones((2, 3)), np.ones((2, 3), dtype=bool))
    with pytest.raises(ValueError, match="one entry per interaction"):
        recsys.holdout([0, 1, 2], [0, 1])
    with pytest.raises(ValueError, match="non-empty arrays"):
        recsys.holdout([], [])
    with pytest.raises(ValueError, match=r"k=5 must be in 1\.\.4"):
        recsys.ranking_metrics(np.zeros((2, 4)), [0], [0], [1], [2], k=5)


def test_hashing_and_feature_embedding_errors_name_the_fix():
    with pytest.raises(ValueError, match="n_buckets=0 must be at least 1"):
        recsys.hash_ids(torch.tensor([1, 2]), 0)
    with pytest.raises(ValueError, match="n_values=0 and n_buckets=10"):
        recsys.collision_stats(0, 10)
    with pytest.raises(ValueError, match="n_buckets=10, dim=0 and n_hashes=1 must be positive"):
        recsys.HashedEmbedding(10, 0)
    with pytest.raises(ValueError, match="n_features=0 must be at least 1"):
        recsys.MultiplexedEmbedding(10, 4, n_features=0)
    with pytest.raises(ValueError, match="at least one feature, each with >= 1 value"):
        recsys.FeatureEmbedding("full", [], dim=4)
    with pytest.raises(ValueError, match="at least one feature, each with >= 1 value"):
        recsys.FeatureEmbedding("full", [10, 0], dim=4)
    with pytest.raises(ValueError, match=r"kind='hashed' needs n_rows >= the number of features \(3\)"):
        recsys.FeatureEmbedding("hashed", [10, 10, 10], dim=4, n_rows=2)
    with pytest.raises(ValueError, match=r"kind='multiplexed' needs n_rows"):
        recsys.FeatureEmbedding("multiplexed", [10, 10], dim=4)
    # A misspelt kind is reported as such, not as a missing n_rows.
    with pytest.raises(ValueError, match="kind must be 'full', 'hashed' or 'multiplexed', got 'hash'"):
        recsys.FeatureEmbedding("hash", [10, 10], dim=4)
    with pytest.raises(ValueError, match="at least one feature with >= 1 value, and n_samples >= 1"):
        recsys.click_data((), n_samples=10)
    with pytest.raises(ValueError, match="n_samples >= 1"):
        recsys.click_data((5,), n_samples=0)


def test_sequence_and_jepa_errors_name_the_fix():
    with pytest.raises(ValueError, match="p_advance=0.8 and p_jump=0.3 must be probabilities with a sum <= 1"):
        recsys.record_sequences(n_sequences=2, p_advance=0.8, p_jump=0.3)
    with pytest.raises(ValueError, match="p_jump=-0.1"):
        recsys.record_sequences(n_sequences=2, p_jump=-0.1)
    with pytest.raises(ValueError, match=r"ema=1.0 must be in \[0, 1\)"):
        recsys.NextLatentJEPA(record_dim=3, ema=1.0)
