"""minilib.word2vec: gensim's definitions (vocabulary, subsampling, noise table), the pair
generator, training on tiny data, parity with gensim on a slice of the book corpus, save/load."""
import math

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from minilib.text import Vocab
from minilib.word2vec import (
    MIN_TOKENS, Word2Vec, cbow_windows, encode_corpus, keep_probabilities, noise_distribution, noise_table,
    skipgram_pairs, split_long, subsample,
)

gensim_models = pytest.importorskip("gensim.models")


def _toy_corpus(n_docs=200, seed=0):
    """Two topics that never share a sentence: animals and vehicles, plus shared filler words."""
    rng = np.random.default_rng(seed)
    animals = ["cat", "dog", "horse", "cow", "sheep", "goat"]
    vehicles = ["car", "bus", "train", "truck", "plane", "boat"]
    filler = ["the", "a", "and", "of"]
    docs = []
    for i in range(n_docs):
        topic = animals if i % 2 == 0 else vehicles
        docs.append([str(rng.choice(topic)) if rng.random() < 0.7 else str(rng.choice(filler)) for _ in range(30)])
    return docs, animals, vehicles


@pytest.fixture(scope="module")
def slice_corpus():
    from minilib import data

    return data.load("book_corpus", profile="quick")[:12]


def test_split_long_keeps_every_token():
    docs = [list("abcdefghij"), list("xy")]
    out = split_long(docs, max_len=4)
    assert [len(d) for d in out] == [4, 4, 2, 2]
    assert sum(out, []) == sum(docs, [])
    with pytest.raises(TypeError, match="tokenize"):
        split_long(["a string"])


def test_vocabulary_is_gensims(slice_corpus):
    vocab = Vocab.build(slice_corpus, min_count=5)
    g = gensim_models.Word2Vec(min_count=5)
    g.build_vocab(slice_corpus)
    assert set(vocab.itos) == set(g.wv.index_to_key)
    assert all(vocab.counts[vocab.stoi[w]] == g.wv.get_vecattr(w, "count") for w in vocab.itos)


def test_keep_probabilities_match_gensim(slice_corpus):
    vocab = Vocab.build(slice_corpus, min_count=5)
    g = gensim_models.Word2Vec(min_count=5, sample=1e-3)
    g.build_vocab(slice_corpus)
    ours = keep_probabilities(vocab.counts, 1e-3)
    theirs = np.array([g.wv.get_vecattr(w, "sample_int") / 2**32 for w in vocab.itos])
    np.testing.assert_allclose(ours, theirs, atol=1e-9)
    assert ours.min() < 0.2 and ours.max() == 1.0  # frequent words are really dropped, rare ones kept
    assert (keep_probabilities(vocab.counts, 0) == 1).all()
    with pytest.raises(ValueError, match="positive"):
        keep_probabilities([3, 0, 1])


def test_noise_table_matches_gensims_cum_table(slice_corpus):
    vocab = Vocab.build(slice_corpus, min_count=5)
    g = gensim_models.Word2Vec(min_count=5)
    g.build_vocab(slice_corpus)
    order = [g.wv.key_to_index[w] for w in vocab.itos]
    theirs = np.diff(np.concatenate([[0], g.cum_table]))[order] / g.cum_table[-1]
    np.testing.assert_allclose(noise_distribution(vocab.counts), theirs, atol=1e-8)
    # Our own cum table: the same integers when both vocabularies are in the same order.
    counts_g = np.array([g.wv.get_vecattr(w, "count") for w in g.wv.index_to_key])
    assert np.abs(noise_table(counts_g) - g.cum_table).max() <= 1
    p = noise_distribution([1, 16])
    assert p[1] / p[0] == pytest.approx(16**0.75)  # 0.75 flattens: 16x more frequent, 8x more likely


def test_skipgram_pairs_respect_window_and_sentences():
    ids = np.arange(20)
    sentence = np.repeat([0, 1], 10)
    c, x = skipgram_pairs(ids, sentence, window=3, rng=np.random.default_rng(0))
    assert len(c) == len(x) > 0
    assert (np.abs(c - x) <= 3).all() and (c != x).all()
    assert (sentence[c] == sentence[x]).all()  # never across documents
    # window=1: the effective window is always 1, so the pairs are exactly the neighbours.
    c1, x1 = skipgram_pairs(ids, sentence, window=1, rng=np.random.default_rng(0))
    expect = {(i, j) for i in range(20) for j in (i - 1, i + 1) if 0 <= j < 20 and i // 10 == j // 10}
    assert set(zip(c1.tolist(), x1.tolist())) == expect and len(c1) == len(expect)


def test_dynamic_window_weights_near_words_more():
    ids = np.arange(100_000) % 1000
    c, x = skipgram_pairs(ids, np.zeros(len(ids), dtype=np.int64), window=5, rng=np.random.default_rng(0))
    share = np.bincount(np.abs((c - x + 500) % 1000 - 500), minlength=6)[1:6] / len(c)
    # Offset o survives with probability (window - o + 1) / window: 5/15, 4/15, ... 1/15 of pairs.
    np.testing.assert_allclose(share, np.arange(5, 0, -1) / 15, atol=0.005)


def test_cbow_windows_match_skipgram_pairs():
    ids = np.arange(30)
    sentence = np.repeat([0, 1, 2], 10)
    c, x = skipgram_pairs(ids, sentence, 4, np.random.default_rng(1))
    centres, ctx, mask = cbow_windows(ids, sentence, 4, np.random.default_rng(1))
    from_cbow = {(int(a), int(b)) for a, row, m in zip(centres, ctx, mask) for b in row[m]}
    assert from_cbow == set(zip(c.tolist(), x.tolist()))  # same draws -> the same contexts


def test_subsample_drops_frequent_words():
    rng = np.random.default_rng(0)
    keep = np.array([0.1, 1.0])
    ids = np.repeat([0, 1], 10_000)
    m = subsample(ids, keep, rng)
    assert abs(m[:10_000].mean() - 0.1) < 0.02 and m[10_000:].all()


@pytest.mark.parametrize("sg", [True, False])
def test_training_separates_topics_and_loss_falls(sg):
    docs, animals, vehicles = _toy_corpus()
    vocab = Vocab.build(docs, min_count=1)
    m = Word2Vec(vocab, 16, sg=sg, window=3, epochs=5, sample=0, batch_size=256, seed=0)
    hist = m.fit(docs, progress=False, log_every=5)
    assert hist["loss"][-1] < 0.8 * hist["loss"][0]
    X = m.vectors()
    X = X / np.linalg.norm(X, axis=1, keepdims=True)
    a = X[[vocab.index(w) for w in animals]]
    v = X[[vocab.index(w) for w in vehicles]]
    within = (a @ a.T).mean() + (v @ v.T).mean()
    across = 2 * (a @ v.T).mean()
    assert within - across > 0.5
    assert m.most_similar("cat", k=3)[0][0] in animals


def test_training_is_deterministic():
    docs, _, _ = _toy_corpus(40)
    vocab = Vocab.build(docs)
    runs = [Word2Vec(vocab, 8, epochs=2, batch_size=64, seed=3).fit(docs, progress=False) for _ in range(2)]
    m1, m2 = (Word2Vec(vocab, 8, epochs=2, batch_size=64, seed=3) for _ in range(2))
    m1.fit(docs, progress=False)
    m2.fit(docs, progress=False)
    assert torch.equal(m1.W_in, m2.W_in) and runs[0] == runs[1]


@pytest.mark.parametrize("sg", [True, False])
def test_training_reads_the_device_only_when_it_logs(sg, monkeypatch):
    """On a GPU every float(tensor) or int(tensor) makes the host wait for the device. Training may
    read the device when it logs (every log_every batches) and once per epoch, not at every batch."""
    docs, _, _ = _toy_corpus(200)
    vocab = Vocab.build(docs, min_count=1)
    reads = []
    for name in ("__float__", "__int__", "item"):
        real = getattr(torch.Tensor, name)
        monkeypatch.setattr(torch.Tensor, name,
                            lambda self, *a, _real=real, _name=name: reads.append(_name) or _real(self, *a))
    m = Word2Vec(vocab, 8, sg=sg, epochs=2, batch_size=16, seed=0)
    hist = m.fit(docs, progress=False, log_every=50)
    assert len(hist["loss"]) >= 2
    assert len(reads) <= len(hist["loss"]) + 2 * m.config["epochs"] + 2, (len(reads), len(hist["loss"]))


def _neighbour_overlap(A, B, n_query=200, k=10):
    """Mean share of common words among the k nearest neighbours of the n_query first words."""
    def knn(X):
        X = X / np.linalg.norm(X, axis=1, keepdims=True)
        S = X[:n_query] @ X.T
        S[np.arange(n_query), np.arange(n_query)] = -np.inf
        return np.argsort(-S, axis=1)[:, :k]
    return np.mean([len(set(a) & set(b)) / k for a, b in zip(knn(A), knn(B))])


def _similarity_structure(A, B, n=300):
    """Spearman correlation of the pairwise cosines of the n most frequent words in two spaces."""
    def cos(X):
        X = X[:n] / np.linalg.norm(X[:n], axis=1, keepdims=True)
        return (X @ X.T)[np.triu_indices(n, 1)]
    return spearmanr(cos(A), cos(B)).statistic


@pytest.mark.parametrize("sg", [1, 0])
def test_parity_with_gensim_on_a_corpus_slice(slice_corpus, sg):
    """Ours agrees with gensim about as well as gensim agrees with itself under another seed."""
    docs = split_long(slice_corpus)
    vocab = Vocab.build(docs, min_count=5)
    kw = dict(vector_size=32, sg=sg, window=5, negative=5, min_count=5, epochs=4, workers=1)
    g0 = gensim_models.Word2Vec(docs, seed=0, **kw)
    g1 = gensim_models.Word2Vec(docs, seed=1, **kw)
    ours = Word2Vec(vocab, 32, sg=bool(sg), window=5, negative=5, epochs=4, seed=0)
    ours.fit(docs, progress=False)
    rows = [g0.wv.key_to_index[w] for w in vocab.itos]  # gensim's rows in our word order
    G0, G1, O = g0.wv.vectors[rows], g1.wv.vectors[[g1.wv.key_to_index[w] for w in vocab.itos]], ours.vectors()
    base_nn, ours_nn = _neighbour_overlap(G0, G1), _neighbour_overlap(G0, O)
    base_s, ours_s = _similarity_structure(G0, G1), _similarity_structure(G0, O)
    assert ours_nn > 0.7 * base_nn and base_nn > 0.1, (ours_nn, base_nn)
    assert ours_s > base_s - 0.1 and base_s > 0.3, (ours_s, base_s)


def test_bad_input_gives_clear_errors(tmp_path):
    docs, _, _ = _toy_corpus(10)
    vocab = Vocab.build(docs)
    m = Word2Vec(vocab, 8, epochs=1)
    with pytest.raises(ValueError, match=f"at least {MIN_TOKENS}"):
        m.fit([["cat", "dog"]], progress=False)
    with pytest.raises(ValueError, match="empty"):
        encode_corpus([], vocab)
    with pytest.raises(KeyError, match="out of vocabulary.*fasttext"):
        m.vector("zebra")
    with pytest.raises(KeyError, match="out of vocabulary"):
        m.most_similar("zebra")
    with pytest.raises(TypeError, match="Vocab"):
        Word2Vec(["cat", "dog"], 8)
    with pytest.raises(ValueError, match="window"):
        Word2Vec(vocab, 8, window=0)
    with pytest.raises(ValueError, match="kind"):
        m.vectors("both")


def test_save_load_roundtrip_and_mismatch(tmp_path):
    docs, _, _ = _toy_corpus(20)
    vocab = Vocab.build(docs)
    m = Word2Vec(vocab, 8, epochs=1, batch_size=64)
    m.fit(docs, progress=False)
    m.save(tmp_path / "a")
    m2 = Word2Vec.load(tmp_path / "a")
    assert torch.equal(m.W_in, m2.W_in) and torch.equal(m.W_out, m2.W_out) and m2.vocab.itos == vocab.itos
    np.testing.assert_array_equal(m.vectors("in+out"), m2.vectors("in+out"))
    # Tensors of one model next to the vocabulary of another: refused with a clear message.
    other = Word2Vec(Vocab.build([["x", "y", "z"]]), 8)
    other.save(tmp_path / "b")
    (tmp_path / "b" / "model.safetensors").write_bytes((tmp_path / "a" / "model.safetensors").read_bytes())
    with pytest.raises(ValueError, match="mismatch"):
        Word2Vec.load(tmp_path / "b")
    with pytest.raises(FileNotFoundError, match="save"):
        Word2Vec.load(tmp_path / "missing")


def test_divergence_stops_with_advice():
    # Eight words and batches of 4,096 pairs: every vector gets hundreds of updates at once and blows up.
    rng = np.random.default_rng(0)
    docs = [[str(w) for w in rng.integers(0, 8, 20)] for _ in range(3000)]
    model = Word2Vec(Vocab.build(docs, min_count=1), dim=16, epochs=3, seed=0, batch_size=4096)
    with pytest.raises(FloatingPointError, match="Lower batch_size"):
        model.fit(docs, progress=False)
    small = Word2Vec(Vocab.build(docs, min_count=1), dim=16, epochs=3, seed=0, batch_size=64)
    assert small.fit(docs, progress=False)["loss"][-1] < (5 + 1) * math.log(2)  # the fix works: below random vectors


def test_repr_names_the_class_and_its_settings():
    vocab = Vocab(["the", "cat", "sat"], [5, 3, 2])
    m = Word2Vec(vocab, 8, sg=False, window=2, negative=3, epochs=2)
    assert repr(m) == "Word2Vec(3 words, dim=8, CBOW, window=2, negative=3, epochs=2)"
    from minilib.fasttext import FastText
    assert repr(FastText(vocab, 8, window=2, negative=3, epochs=2)).startswith("FastText(3 words, dim=8, skip-gram,")


def test_counts_and_window_errors_name_the_fix():
    with pytest.raises(ValueError, match=r"sample must be >= 0 \(0 switches subsampling off\), got -0.1"):
        keep_probabilities([3, 1], sample=-0.1)
    for bad in ([], [0, 0], [2, -1], [[1, 2]]):
        with pytest.raises(ValueError, match="non-empty 1-D array of non-negative counts with a positive sum"):
            noise_distribution(bad)
    ids, sentence, rng = np.arange(5), np.zeros(5, dtype=np.int64), np.random.default_rng(0)
    with pytest.raises(ValueError, match="window must be >= 1, got 0"):
        skipgram_pairs(ids, sentence, 0, rng)
    with pytest.raises(ValueError, match="window must be >= 1, got -2"):
        cbow_windows(ids, sentence, -2, rng)


def test_tiny_vocabulary_and_corpus_errors_name_the_fix():
    with pytest.raises(ValueError, match=r"the vocabulary has 1 word\(s\); word2vec needs at least 2 \(lower min_count"):
        Word2Vec(Vocab(["cat"], [5]), 8)
    vocab = Vocab(["cat", "dog"], [20, 10])
    m = Word2Vec(vocab, 8, epochs=1, sample=0)
    with pytest.raises(ValueError, match="only one distinct vocabulary word: there is nothing to contrast"):
        m.fit([["cat"] * 20, ["zebra"] * 5], progress=False)
    # Enough tokens, but every sentence is one word long: no (centre, context) pair exists.
    for sg in (True, False):
        m = Word2Vec(vocab, 8, sg=sg, epochs=1, sample=0)
        with pytest.raises(ValueError, match=f"epoch 0 produced no training pairs.*at least {MIN_TOKENS} tokens "
                                             "in sentences longer than one word"):
            m.fit([["cat"], ["dog"]] * 10, progress=False)
