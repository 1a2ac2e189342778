"""minilib.index: exact and approximate vector search, checked against faiss on the same data.

Parity: exact search returns faiss's ids; IVF with the same centroids and nprobe scans the same
candidates; PQ, HNSW and 8-bit scalar quantization reach faiss's recall@10 within 0.02 at equal
parameters; binary codes give faiss's Hamming distances. Small clustered data keeps it fast.
"""
import numpy as np
import pytest
import torch

from minilib import index as ix

faiss = pytest.importorskip("faiss")
faiss.omp_set_num_threads(1)  # faiss builds HNSW in parallel otherwise, and not deterministically

FAISS_METRIC = {"l2": faiss.METRIC_L2, "ip": faiss.METRIC_INNER_PRODUCT}


def split(n, d, nq=200, seed=0, n_clusters=20, spread=1.0):
    X = ix.clustered_data(n + nq, d, n_clusters=n_clusters, spread=spread, seed=seed)
    return X[:n], X[n:]


def exact(xb, xq, k=10, metric="l2"):
    return ix.Flat(xb.shape[1], metric).add(xb).search(xq, k)[1]


# --- measuring -----------------------------------------------------------------------------------


def test_recall_at_k_counts_shared_ids():
    true = np.array([[0, 1, 2, 3], [4, 5, 6, 7]])
    assert ix.recall_at_k(true, true, 4) == 1.0
    found = np.array([[3, 2, 9, 9], [4, -1, -1, -1]])  # order does not matter; -1 is a miss
    assert ix.recall_at_k(found, true, 4) == pytest.approx((2 / 4 + 1 / 4) / 2)
    assert ix.recall_at_k(found, true, 2) == pytest.approx((0 / 2 + 1 / 2) / 2)
    # A query with fewer than k true neighbours (a strict filter) is scored on those it has.
    assert ix.recall_at_k(np.array([[5, 1]]), np.array([[1, -1]]), 2) == 1.0
    with pytest.raises(ValueError, match="columns"):
        ix.recall_at_k(found[:, :2], true, 4)
    with pytest.raises(ValueError, match="same nq"):
        ix.recall_at_k(found[:1], true, 2)


def test_clustered_data_is_seeded_and_clustered():
    a, b = ix.clustered_data(500, 8, n_clusters=5, seed=1), ix.clustered_data(500, 8, n_clusters=5, seed=1)
    assert a.dtype == np.float32 and a.shape == (500, 8) and np.array_equal(a, b)
    tight = ix.clustered_data(500, 8, n_clusters=5, spread=0.05, seed=1)
    km = ix.KMeans(5, seed=0).fit(tight)
    # Five tight clusters: what is left is the noise, 500 * 8 * spread^2 in expectation.
    assert km.objective[-1] < 1.3 * 500 * 8 * 0.05 ** 2


def test_evaluate_reports_recall_and_speed():
    xb, xq = split(500, 8)
    flat = ix.Flat(8).add(xb)
    r = ix.evaluate(flat, xq, exact(xb, xq))
    assert r["recall"] == 1.0 and r["qps"] > 0 and r["seconds"] > 0


def test_single_thread_restores_the_thread_counts():
    before = torch.get_num_threads(), faiss.omp_get_max_threads()
    with ix.single_thread():
        assert torch.get_num_threads() == 1 and faiss.omp_get_max_threads() == 1
    assert (torch.get_num_threads(), faiss.omp_get_max_threads()) == before


def test_read_bandwidth_is_positive():
    assert ix.read_bandwidth(mbytes=8, repeat=1) > 0.1  # GB/s: any machine reads faster than that


def test_wikipedia_sentences_are_clean_and_unique():
    sentences = ix.wikipedia_sentences()
    assert len(sentences) == 20_467 and len(set(sentences)) == len(sentences)
    assert sentences[0].startswith("Anarchism is a political philosophy")
    assert all(len(s.split()) >= 6 and "  " not in s and not s.startswith("*") for s in sentences)


def test_minilm_wikipedia_encodes_once_then_reads_the_cache(tmp_path, monkeypatch):
    # A stand-in encoder (the real one takes minutes): it counts calls and returns unit vectors.
    from minilib import transformer

    calls = []

    class FakeEncoder:
        def encode(self, texts, batch_size=32):
            calls.append(len(texts))
            v = np.array([[len(t), t.count("a"), 1.0] for t in texts], np.float32)
            return v / np.linalg.norm(v, axis=1, keepdims=True)

    monkeypatch.setenv("MINILIB_CACHE", str(tmp_path))
    monkeypatch.setattr(transformer, "load_minilm_encoder", lambda: FakeEncoder())
    monkeypatch.setattr(ix, "wikipedia_sentences", lambda: ["a cat sat", "a dog ran far", "the end"])
    s1, e1 = ix.minilm_wikipedia()
    s2, e2 = ix.minilm_wikipedia()
    assert calls == [3] and s1 == s2 and e1.shape == (3, 3) and np.array_equal(e1, e2)
    np.testing.assert_allclose(np.linalg.norm(e1, axis=1), 1, rtol=1e-6)


# --- exact search --------------------------------------------------------------------------------


@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_flat_returns_faiss_ids(metric):
    rng = np.random.default_rng(0)
    xb, xq = rng.standard_normal((3000, 24), dtype=np.float32), rng.standard_normal((100, 24), dtype=np.float32)
    D, I = ix.Flat(24, metric).add(xb).search(xq, 10)
    ref = faiss.IndexFlatL2(24) if metric == "l2" else faiss.IndexFlatIP(24)
    ref.add(xb)
    Df, If = ref.search(xq, 10)
    assert I.dtype == np.int64 and D.dtype == np.float32
    np.testing.assert_array_equal(I, If)
    np.testing.assert_allclose(D, Df, rtol=1e-4, atol=1e-4)


def test_flat_chunks_and_batches_give_the_same_result():
    rng = np.random.default_rng(1)
    xb, xq = rng.standard_normal((1000, 16), dtype=np.float32), rng.standard_normal((50, 16), dtype=np.float32)
    one = ix.Flat(16).add(xb).search(xq, 7)
    small = ix.Flat(16, query_batch=7, db_chunk=64)
    small.add(xb[:300]).add(xb[300:])  # two adds: ids continue
    many = small.search(xq, 7)
    np.testing.assert_array_equal(one[1], many[1])
    np.testing.assert_allclose(one[0], many[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_flat_pads_like_faiss_when_k_exceeds_ntotal(metric):
    x = np.random.default_rng(2).random((5, 8), dtype=np.float32)
    D, I = ix.Flat(8, metric).add(x).search(x[:2], 7)
    ref = faiss.IndexFlatL2(8) if metric == "l2" else faiss.IndexFlatIP(8)
    ref.add(x)
    Df, If = ref.search(x[:2], 7)
    np.testing.assert_array_equal(I, If)
    np.testing.assert_allclose(D, Df, rtol=1e-5, atol=1e-5)  # including +-FLT_MAX where missing


def test_flat_accepts_torch_input_and_reconstructs():
    x = torch.randn(20, 4)
    flat = ix.Flat(4).add(x)
    np.testing.assert_allclose(flat.reconstruct([3, 0]), x[[3, 0]].numpy())
    assert flat.search(x[:3], 1)[1][:, 0].tolist() == [0, 1, 2]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_flat_on_the_gpu_matches_the_cpu():
    xb, xq = split(2000, 16)
    cpu = ix.Flat(16).add(xb).search(xq, 10)
    gpu = ix.Flat(16, device="cuda").add(xb).search(xq, 10)
    assert ix.recall_at_k(gpu[1], cpu[1], 10) > 0.999


# --- k-means -------------------------------------------------------------------------------------


@pytest.mark.parametrize("init", ["k-means++", "random"])
def test_kmeans_objective_falls_and_is_close_to_sklearn(init):
    from sklearn.cluster import KMeans as SkKMeans

    x, _ = split(2000, 8, n_clusters=12, spread=0.5, seed=4)
    km = ix.KMeans(12, niter=25, init=init, seed=0).fit(x)
    assert km.centroids.shape == (12, 8) and km.centroids.dtype == np.float32
    assert all(b <= a * (1 + 1e-5) for a, b in zip(km.objective, km.objective[1:]))  # Lloyd never gets worse
    sk = SkKMeans(12, n_init=1, random_state=0).fit(x)
    assert km.objective[-1] < 1.15 * sk.inertia_
    dist, labels = km.assign(x)
    assert labels.shape == (2000,) and dist.min() >= 0


def test_kmeans_repairs_empty_clusters():
    # Two far-apart points repeated many times plus one outlier: random initialisation often puts
    # two centres on copies of the same point, leaving one cell empty.
    x = np.concatenate([np.zeros((60, 2)), np.ones((60, 2)) * 10, [[50.0, 50.0]]]).astype(np.float32)
    for seed in range(8):
        km = ix.KMeans(3, niter=5, init="random", seed=seed).fit(x)
        assert np.bincount(km.assign(x)[1], minlength=3).min() >= 1
        assert km.objective[-1] == pytest.approx(0, abs=1e-6)  # three exact clusters found


def test_kmeans_is_deterministic_and_checks_input():
    x, _ = split(600, 4)
    a, b = ix.KMeans(10, seed=3).fit(x), ix.KMeans(10, seed=3).fit(x)
    np.testing.assert_array_equal(a.centroids, b.centroids)
    with pytest.raises(ValueError, match="at least 10 points"):
        ix.KMeans(10).fit(x[:5])
    with pytest.raises(RuntimeError, match="fit"):
        ix.KMeans(3).assign(x)


# --- IVF -----------------------------------------------------------------------------------------


def faiss_ivf(centroids, xb, metric, nprobe):
    quantizer = faiss.IndexFlatL2(xb.shape[1]) if metric == "l2" else faiss.IndexFlatIP(xb.shape[1])
    quantizer.add(centroids)
    ref = faiss.IndexIVFFlat(quantizer, xb.shape[1], len(centroids), FAISS_METRIC[metric])
    assert ref.is_trained  # a quantizer holding nlist centroids needs no training
    ref.add(xb)
    ref.nprobe = nprobe
    return ref, quantizer  # the caller keeps the quantizer alive while faiss uses it


@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_ivf_scans_the_same_candidates_as_faiss(metric):
    xb, xq = split(4000, 16, seed=5)
    ours = ix.IVFFlat(16, nlist=50, nprobe=5, metric=metric).train(xb)
    ours.add(xb)
    ref, _quantizer = faiss_ivf(ours.centroids, xb, metric, 5)
    _, I = ref.search(xq, len(xb))  # k = everything: faiss returns every candidate it scanned
    theirs = [np.sort(row[row >= 0]) for row in I]
    for a, b in zip(ours.candidates(xq), theirs):
        np.testing.assert_array_equal(a, b)
    D, I = ours.search(xq, 10)
    Df, If = ref.search(xq, 10)
    np.testing.assert_array_equal(I, If)
    np.testing.assert_allclose(D, Df, rtol=1e-4, atol=1e-4)


def test_ivf_with_every_list_probed_is_exact():
    xb, xq = split(2000, 8, seed=6)
    ivf = ix.IVFFlat(8, nlist=16, nprobe=16).train(xb)
    ivf.add(xb)
    np.testing.assert_array_equal(ivf.search(xq, 10)[1], exact(xb, xq))
    assert ivf.list_sizes().sum() == 2000
    ivf.nprobe = 1
    assert ix.recall_at_k(ivf.search(xq, 10)[1], exact(xb, xq), 10) < 1.0


def test_ivf_recall_grows_with_nprobe():
    xb, xq = split(3000, 16, seed=7, spread=2.0)
    ivf = ix.IVFFlat(16, nlist=64).train(xb)
    ivf.add(xb)
    gt = exact(xb, xq)
    recalls = []
    for nprobe in (1, 4, 16, 64):
        ivf.nprobe = nprobe
        recalls.append(ix.recall_at_k(ivf.search(xq, 10)[1], gt, 10))
    assert recalls == sorted(recalls) and recalls[-1] == 1.0 and recalls[0] < 0.9


# --- product quantization ------------------------------------------------------------------------


@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_pq_recall_matches_faiss(metric):
    xb, xq = split(4000, 32, nq=300, seed=8, spread=0.6, n_clusters=30)
    gt = exact(xb, xq, metric=metric)
    ours = ix.PQ(32, m=8, nbits=6, metric=metric).train(xb)
    ours.add(xb)
    ref = faiss.IndexPQ(32, 8, 6, FAISS_METRIC[metric])
    ref.train(xb)
    ref.add(xb)
    r_ours, r_faiss = ix.evaluate(ours, xq, gt)["recall"], ix.evaluate(ref, xq, gt)["recall"]
    assert 0.2 < r_faiss < 0.9  # a setting where the codes do lose neighbours
    assert abs(r_ours - r_faiss) <= 0.02, (r_ours, r_faiss)


def test_pq_asymmetric_distance_is_the_distance_to_the_reconstruction():
    xb, xq = split(1000, 12, seed=9)
    pq = ix.PQ(12, m=3, nbits=4).train(xb)
    pq.add(xb)
    codes = pq.encode(xb)
    assert codes.shape == (1000, 3) and codes.dtype == np.uint8 and codes.max() < 16
    recon = pq.decode(codes)
    D, I = pq.search(xq[:5], 1000)  # every stored vector, sorted
    for q, d_row, i_row in zip(xq[:5], D, I):
        np.testing.assert_allclose(d_row, ((recon[i_row] - q) ** 2).sum(1), rtol=1e-4, atol=1e-4)
    # Each sub-vector is replaced by its nearest sub-centroid: no code has a closer alternative.
    sub = xb[:, :4]
    best = ((sub[:, None, :] - pq.codebooks[0][None]) ** 2).sum(-1).min(1)
    np.testing.assert_allclose(((sub - recon[:, :4]) ** 2).sum(1), best, rtol=1e-5, atol=1e-6)
    assert pq.memory_per_vector() == 1.5


def test_ivfpq_keys_are_distances_to_centre_plus_residual():
    xb, xq = split(2000, 16, seed=10)
    index = ix.IVFPQ(16, nlist=8, m=4, nbits=5, nprobe=8).train(xb)
    index.add(xb)
    D, I = index.search(xq[:3], 2000)
    lists = index.quantize(xb, 1)[:, 0]
    recon = index.centroids[lists] + index.pq.decode(index.pq.encode(xb - index.centroids[lists]))
    for q, d_row, i_row in zip(xq[:3], D, I):
        np.testing.assert_allclose(d_row, ((recon[i_row] - q) ** 2).sum(1), rtol=1e-4, atol=1e-3)
    assert index.memory_per_vector() == 4 * 5 / 8 + 8


def test_ivfpq_recall_is_close_to_faiss():
    xb, xq = split(4000, 32, nq=300, seed=11, spread=0.6, n_clusters=30)
    gt = exact(xb, xq)
    ours = ix.IVFPQ(32, nlist=32, m=8, nbits=6, nprobe=8).train(xb)
    ours.add(xb)
    quantizer = faiss.IndexFlatL2(32)
    ref = faiss.IndexIVFPQ(quantizer, 32, 32, 8, 6)
    ref.train(xb)
    ref.add(xb)
    ref.nprobe = 8
    r_ours, r_faiss = ix.evaluate(ours, xq, gt)["recall"], ix.evaluate(ref, xq, gt)["recall"]
    assert abs(r_ours - r_faiss) <= 0.03, (r_ours, r_faiss)
    # Residuals quantize better than the raw vectors at the same 8 bytes (the point of IVFPQ).
    pq = ix.PQ(32, m=8, nbits=6).train(xb)
    pq.add(xb)
    assert r_ours > ix.evaluate(pq, xq, gt)["recall"]


# --- HNSW ----------------------------------------------------------------------------------------


def test_hnsw_recall_matches_faiss():
    xb, xq = split(3000, 48, nq=300, seed=3)
    gt = exact(xb, xq)
    ours = ix.HNSW(48, M=16, ef_construction=40, ef_search=10).add(xb)
    ref = faiss.IndexHNSWFlat(48, 16)
    ref.hnsw.efConstruction, ref.hnsw.efSearch = 40, 10
    ref.add(xb)
    r_ours, r_faiss = ix.evaluate(ours, xq, gt)["recall"], ix.evaluate(ref, xq, gt)["recall"]
    assert 0.8 < r_faiss < 0.99  # not saturated: the comparison means something
    assert abs(r_ours - r_faiss) <= 0.02, (r_ours, r_faiss)
    ours.ef_search = 64  # a wider beam finds more
    assert ix.evaluate(ours, xq, gt)["recall"] > r_ours


def test_hnsw_graph_structure():
    xb, _ = split(1500, 8, seed=12)
    h = ix.HNSW(8, M=6, ef_construction=20, seed=1).add(xb[:700]).add(xb[700:])
    assert h.ntotal == 1500 and h.levels[h.entry] == h.max_level == h.levels[:1500].max()
    # Level l holds a share of about M^-l of the nodes.
    share1 = (h.levels[:1500] >= 1).mean()
    assert 0.5 / 6 < share1 < 2 / 6
    for node in range(1500):
        n0 = h.neighbours(node, 0)
        assert 0 < len(n0) <= 12 and node not in n0 and len(set(n0.tolist())) == len(n0)
        for lev in range(1, h.levels[node] + 1):
            up = h.neighbours(node, lev)
            assert len(up) <= 6 and (h.levels[up] >= lev).all()  # links stay on their level


def test_hnsw_is_deterministic_and_supports_ip():
    xb, xq = split(800, 8, seed=13)
    a = ix.HNSW(8, M=8, seed=5, metric="ip").add(xb).search(xq, 5)
    b = ix.HNSW(8, M=8, seed=5, metric="ip", progress=True).add(xb).search(xq, 5)  # a bar changes nothing
    np.testing.assert_array_equal(a[1], b[1])
    assert ix.recall_at_k(a[1], exact(xb, xq, 5, "ip"), 5) > 0.9
    assert (np.diff(a[0], axis=1) <= 1e-6).all()  # inner products, largest first


def test_hnsw_neighbour_heuristic_prefers_spread_out_links():
    h = ix.HNSW(2, M=2)
    pts = np.array([[0, 0], [1, 0], [1.1, 0], [0, -1.5], [3, 0]], np.float32)
    h._grow(5)
    h._x[:5], h._sq[:5] = pts, (pts ** 2).sum(1)
    ids = np.array([1, 2, 3, 4])
    keys = ((pts[ids] - pts[0]) ** 2).sum(1)
    # Node 2 is closer to node 1 than to the base node 0: it is dropped for node 3 (another direction).
    assert h._select(ids, keys, 2).tolist() == [1, 3]
    assert h._select(ids[:1], keys[:1], 2).tolist() == [1]  # short lists are kept whole


# --- scalar and binary quantization --------------------------------------------------------------


@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_int8_matches_faiss_sq8_and_rescoring_recovers(metric):
    xb, xq = split(4000, 32, seed=14, spread=0.6, n_clusters=30)
    gt = exact(xb, xq, metric=metric)
    ours = ix.Int8(32, metric).train(xb)
    ours.add(xb)
    ref = faiss.IndexScalarQuantizer(32, faiss.ScalarQuantizer.QT_8bit, FAISS_METRIC[metric])
    ref.train(xb)
    ref.add(xb)
    r_ours, r_faiss = ix.evaluate(ours, xq, gt)["recall"], ix.evaluate(ref, xq, gt)["recall"]
    assert abs(r_ours - r_faiss) <= 0.02, (r_ours, r_faiss)
    rescored = ix.Int8(32, metric, rescore=4).train(xb)
    rescored.add(xb)
    assert ix.evaluate(rescored, xq, gt)["recall"] >= max(r_ours, 0.99)
    # Rounding to the nearest level: the error per coordinate is at most half a step.
    err = np.abs(ours.decode(ours.encode(xb)) - xb)
    assert (err <= ours.step / 2 + 1e-6).all()
    assert ours.memory_per_vector() == 32 and rescored.memory_per_vector(with_rescore=True) == 32 + 128


def test_binary_hamming_matches_faiss_and_rescoring_helps():
    xb, xq = split(3000, 64, seed=15)
    ours = ix.Binary(64).train(xb)
    ours.add(xb)
    D, I = ours.search(xq, 10)
    ref = faiss.IndexBinaryFlat(64)
    ref.add(ours.codes.view(np.uint8))
    Df, _ = ref.search(ours.encode(xq).view(np.uint8), 10)
    np.testing.assert_array_equal(D, Df)  # Hamming distances (ids may differ among ties)
    # Our Hamming distance is the number of differing sign bits.
    bits = lambda x: x > ours.mean
    assert D[0, 0] == (bits(xq[:1]) != bits(xb[I[0, 0]][None])).sum()
    gt = exact(xb, xq)
    plain = ix.recall_at_k(I, gt, 10)
    rescored = ix.Binary(64, rescore=10).train(xb)
    rescored.add(xb)
    assert ix.evaluate(rescored, xq, gt)["recall"] > plain + 0.2
    assert ours.memory_per_vector() == 8


def test_binary_pads_dimensions_to_whole_words():
    x = np.random.default_rng(16).standard_normal((100, 70), dtype=np.float32)
    b = ix.Binary(70).train(x)
    b.add(x)
    assert b.codes.shape == (100, 2) and b.memory_per_vector() == 16
    assert (b.search(x[:5], 1)[0][:, 0] == 0).all()  # each vector is at Hamming distance 0 from itself


# --- filtered search -----------------------------------------------------------------------------


def make_indexes(xb):
    d = xb.shape[1]
    ivf = ix.IVFFlat(d, nlist=16, nprobe=4).train(xb)
    ivfpq = ix.IVFPQ(d, nlist=16, m=4, nbits=4, nprobe=4).train(xb)
    pq = ix.PQ(d, m=4, nbits=4).train(xb)
    i8 = ix.Int8(d, rescore=2).train(xb)
    b = ix.Binary(d, rescore=4).train(xb)
    out = [ix.Flat(d), ivf, ivfpq, pq, i8, b, ix.HNSW(d, M=8)]
    for index in out:
        index.add(xb)
    return out


def test_filter_never_returns_excluded_ids():
    xb, xq = split(1500, 16, seed=17)
    allowed = np.random.default_rng(0).random(1500) < 0.1
    for index in make_indexes(xb):
        for filt in (allowed, lambda ids: allowed[ids]):
            D, I = index.search(xq[:20], 10, filter=filt)
            found = I[I >= 0]
            assert allowed[found].all(), type(index).__name__
            assert len(found) > 0


def test_filtered_flat_is_exact_search_over_the_allowed_subset():
    xb, xq = split(2000, 16, seed=18)
    keep = np.flatnonzero(np.arange(2000) % 7 == 0)
    _, I = ix.Flat(16).add(xb).search(xq, 10, filter=lambda ids: ids % 7 == 0)
    sub = ix.Flat(16).add(xb[keep]).search(xq, 10)
    np.testing.assert_array_equal(I, keep[sub[1]])


def test_filtered_hnsw_keeps_recall_where_post_filtering_loses_it():
    xb, xq = split(2000, 16, nq=100, seed=19)
    allowed = np.random.default_rng(1).random(2000) < 0.05  # 5 % selectivity
    gt = ix.Flat(16).add(xb).search(xq, 10, filter=allowed)[1]
    h = ix.HNSW(16, M=16, ef_search=32).add(xb)
    in_graph = ix.recall_at_k(h.search(xq, 10, filter=allowed)[1], gt, 10)
    _, wide = h.search(xq, 40)  # post-filtering: search 4k, then drop what is not allowed
    post = np.array([np.concatenate([r[allowed[r]], -np.ones(10, np.int64)])[:10] for r in wide])
    assert in_graph > 0.9 and ix.recall_at_k(post, gt, 10) < in_graph - 0.3


def test_filter_that_allows_nothing_gives_minus_one():
    xb, xq = split(300, 8, seed=20)
    for index in make_indexes(xb):
        D, I = index.search(xq[:3], 4, filter=np.zeros(300, bool))
        assert (I == -1).all()
        assert (D == (ix.FLT_MAX if index.metric == "l2" or isinstance(index, ix.Binary) else -ix.FLT_MAX)).all()


# --- errors --------------------------------------------------------------------------------------


def test_errors_name_the_fix():
    xb, _ = split(300, 8, seed=21)
    flat = ix.Flat(8).add(xb)
    with pytest.raises(ValueError, match="expects d=8"):
        flat.search(np.zeros((2, 5), np.float32), 3)
    with pytest.raises(ValueError, match=r"q\[None, :\]"):
        flat.search(xb[0], 3)
    with pytest.raises(ValueError, match="positive int"):
        flat.search(xb[:2], 0)
    with pytest.raises(ValueError, match="empty"):
        ix.Flat(8).search(xb[:2], 3)
    with pytest.raises(ValueError, match="NaN or infinite values .* row 1"):
        flat.add(np.array([[0] * 8, [np.nan] * 8], np.float32))
    with pytest.raises(ValueError, match="no rows"):
        flat.add(np.zeros((0, 8), np.float32))
    with pytest.raises(ValueError, match="boolean mask of shape"):
        flat.search(xb[:2], 3, filter=np.ones(5, bool))
    with pytest.raises(ValueError, match="unknown metric"):
        ix.Flat(8, metric="cosine")
    for untrained in (ix.IVFFlat(8, 4), ix.PQ(8, 2), ix.IVFPQ(8, 4, 2), ix.Int8(8), ix.Binary(8)):
        with pytest.raises(RuntimeError, match="train"):
            untrained.add(xb)
        with pytest.raises(RuntimeError, match="train"):
            untrained.search(xb[:2], 3)
    with pytest.raises(ValueError, match="choose m among"):
        ix.PQ(10, m=3)
    with pytest.raises(ValueError, match="nbits"):
        ix.PQ(8, m=2, nbits=9)
    ivf = ix.IVFFlat(8, nlist=4, nprobe=9).train(xb)
    ivf.add(xb)
    with pytest.raises(ValueError, match="nprobe"):
        ivf.search(xb[:2], 3)
    with pytest.raises(ValueError, match="expected 4 centroids"):
        ix.IVFFlat(8, nlist=4).set_centroids(xb[:3])
    with pytest.raises(RuntimeError, match="set centroids first"):
        ivf.set_centroids(xb[:4])
    with pytest.raises(ValueError, match="rescore"):
        ix.Int8(8, rescore=0)


def test_memory_per_vector():
    xb, _ = split(400, 16, seed=22)
    assert ix.Flat(16).memory_per_vector() == 64
    assert ix.IVFFlat(16, 4).memory_per_vector() == 72
    assert ix.PQ(16, 8).memory_per_vector() == 8
    h = ix.HNSW(16, M=4).add(xb)
    # 64 bytes of vector, 2M = 8 four-byte slots on level 0 and M = 4 on each level above.
    upper = sum(4 * (h.levels[:400] >= lev).sum() for lev in range(1, h.max_level + 1))
    assert h.memory_per_vector() == pytest.approx(64 + 4 * (8 * 400 + upper) / 400)


def test_indexes_without_training_accept_train_and_check_its_shape():
    xb = np.random.default_rng(0).standard_normal((50, 8)).astype(np.float32)
    for idx in (ix.Flat(8), ix.HNSW(8, M=4)):
        assert idx.is_trained and idx.train(xb) is idx and idx.ntotal == 0   # training adds nothing
        with pytest.raises(ValueError):
            idx.train(xb[:, :4])
    flat = ix.Flat(8, "ip").add(xb)
    assert repr(flat) == "Flat(d=8, metric='ip', ntotal=50)"


def test_an_index_that_does_not_count_its_memory_says_so():
    class Bare(ix.Index):
        pass

    with pytest.raises(NotImplementedError, match="Bare does not report its memory"):
        Bare(4).memory_per_vector()


def test_ivfpq_inner_product_keys_and_recall_match_faiss():
    xb, xq = split(3000, 32, nq=200, seed=14, spread=0.6, n_clusters=30)
    # One table per query serves every cell: q.(c + r) = q.c + q.r; the keys are exact inner
    # products with the reconstructions.
    index = ix.IVFPQ(32, nlist=16, m=8, nbits=6, nprobe=16, metric="ip").train(xb)
    index.add(xb)
    D, I = index.search(xq[:3], 50)
    lists = index.quantize(xb, 1)[:, 0]
    recon = index.centroids[lists] + index.pq.decode(index.pq.encode(xb - index.centroids[lists]))
    for q, d_row, i_row in zip(xq[:3], D, I):
        np.testing.assert_allclose(d_row, recon[i_row] @ q, rtol=1e-4, atol=1e-3)
        assert np.array_equal(i_row, np.argsort(-(recon @ q), kind="stable")[:50])
    # Against faiss with faiss's cells: for the inner product faiss trains *spherical* k-means
    # (unit-length centroids), ours plain k-means, so we take its centroids and train our residual PQ on them.
    ref = faiss.IndexIVFPQ(faiss.IndexFlatIP(32), 32, 16, 8, 6, faiss.METRIC_INNER_PRODUCT)
    ref.train(xb)
    ref.add(xb)
    C = ref.quantizer.reconstruct_n(0, 16)
    ours = ix.IVFPQ(32, nlist=16, m=8, nbits=6, metric="ip").set_centroids(C).train(xb)   # keeps C
    np.testing.assert_array_equal(ours.centroids, C)
    manual = ix.PQ(32, 8, 6, metric="ip").train(xb - C[ours.quantize(xb, 1)[:, 0]])   # the residuals' codebooks
    np.testing.assert_array_equal(ours.pq.codebooks, manual.codebooks)
    ours.add(xb)
    gt = exact(xb, xq, 10, "ip")
    for nprobe in (1, 4):
        ours.nprobe = ref.nprobe = nprobe
        r_ours, r_faiss = ix.evaluate(ours, xq, gt)["recall"], ix.evaluate(ref, xq, gt)["recall"]
        assert abs(r_ours - r_faiss) <= 0.03, (nprobe, r_ours, r_faiss)


def test_kmeans_trains_on_a_sample_when_there_are_many_points():
    xb, _ = split(6000, 8, seed=15, n_clusters=4, spread=0.1)
    small = ix.KMeans(4, max_points_per_centroid=40, seed=0).fit(xb)
    full = ix.KMeans(4, max_points_per_centroid=0, seed=0).fit(xb)
    # 160 sampled points already find the 4 tight clusters: the same centres up to order
    d = ((small.centroids[:, None] - full.centroids[None]) ** 2).sum(-1)
    assert sorted(d.argmin(1).tolist()) == [0, 1, 2, 3] and d.min(1).max() < 0.05


def test_hnsw_built_one_vector_at_a_time_keeps_its_entry_on_top():
    xb, xq = split(400, 8, nq=50, seed=16)
    h = ix.HNSW(8, M=3, ef_construction=20, seed=2)      # small M: many levels, so the top moves often
    tops = set()
    for i in range(len(xb)):
        h.add(xb[i:i + 1])
        assert h.levels[h.entry] == h.max_level == h.levels[:i + 1].max()
        tops.add(h.entry)
    assert len(tops) > 1                                 # later vectors did take over the entry point
    h.ef_search = 64
    assert ix.recall_at_k(h.search(xq, 5)[1], exact(xb, xq, 5), 5) > 0.9


def test_argument_errors_name_the_fix():
    true = np.array([[0, 1], [2, 3]])
    with pytest.raises(ValueError, match="k must be a positive int, got 0"):
        ix.recall_at_k(true, true, 0)
    with pytest.raises(ValueError, match="k must be a positive int, got True"):
        ix.recall_at_k(true, true, True)
    with pytest.raises(ValueError, match="n, d and n_clusters must be positive, got 10, 0, 5"):
        ix.clustered_data(10, 0, n_clusters=5)
    with pytest.raises(TypeError, match="x must hold numbers, got dtype <U1"):
        ix.Flat(2).add(np.array([["a", "b"]]))
    with pytest.raises(ValueError, match=r"d must be a positive int \(the vectors' dimension\), got 0"):
        ix.Flat(0)
    with pytest.raises(ValueError, match=r"x must be a non-empty \(n, 2\) tensor, got shape \(3, 3\)"):
        ix.Flat(2).add(torch.zeros(3, 3))
    with pytest.raises(ValueError, match=r"got shape \(0, 2\)"):
        ix.Flat(2).add(torch.zeros(0, 2))
    with pytest.raises(ValueError, match="x holds NaN or infinite values: remove or repair them"):
        ix.Flat(2).add(torch.tensor([[0.0, 1.0], [float("inf"), 0.0]]))
    with pytest.raises(ValueError, match=r"k must be a positive int \(the number of centroids\), got 0"):
        ix.KMeans(0)
    with pytest.raises(ValueError, match="unknown init 'kmeans': use 'k-means\\+\\+' or 'random'"):
        ix.KMeans(2, init="kmeans")
    with pytest.raises(ValueError, match=r"nlist must be a positive int \(the number of cells\), got 0"):
        ix.IVFFlat(8, nlist=0)
    with pytest.raises(RuntimeError, match=r"IVFFlat must be trained before quantize: call index.train\(x\)"):
        ix.IVFFlat(8, nlist=4).quantize(np.zeros((2, 8), np.float32))
    with pytest.raises(ValueError, match=r"M must be an int >= 2 \(neighbours per node\), got 1"):
        ix.HNSW(8, M=1)


def test_minilm_wikipedia_refuses_a_cache_of_the_wrong_length(tmp_path, monkeypatch):
    from minilib import transformer

    class ShortEncoder:  # returns one vector too few, as a stale or truncated cache file would hold
        def encode(self, texts, batch_size=32):
            return np.ones((len(texts) - 1, 3), np.float32)

    monkeypatch.setenv("MINILIB_CACHE", str(tmp_path))
    monkeypatch.setattr(transformer, "load_minilm_encoder", lambda: ShortEncoder())
    monkeypatch.setattr(ix, "wikipedia_sentences", lambda: ["a cat sat", "a dog ran far", "the end"])
    with pytest.raises(RuntimeError, match="cached embeddings hold 2 rows for 3 sentences: delete .*minilm-wikipedia-"):
        ix.minilm_wikipedia()
