"""minilib.fasttext: n-grams and hashes identical to gensim's, vectors for unseen words,
training on tiny data, parity with gensim's FastText on unseen words, save/load."""
import numpy as np
import pytest
import torch

from minilib.fasttext import FastText, char_ngrams, ft_hash, ngram_buckets
from minilib.text import Vocab
from minilib.word2vec import split_long

gensim_ft = pytest.importorskip("gensim.models.fasttext")


def test_char_ngrams():
    assert char_ngrams("where", 3, 3) == ["<wh", "whe", "her", "ere", "re>"]
    grams = char_ngrams("of")  # "<of>" is short: 3-grams plus the whole word
    assert grams == ["<of", "<of>", "of>"]
    assert all(3 <= len(g) <= 6 for g in char_ngrams("international"))
    with pytest.raises(ValueError, match="non-empty"):
        char_ngrams("")
    with pytest.raises(ValueError, match="min_n"):
        char_ngrams("word", 4, 2)


@pytest.mark.parametrize("word", ["walking", "of", "zeitgeist", "naïve", "x"])
def test_ngrams_and_hashes_match_gensim(word):
    assert [g.encode() for g in char_ngrams(word, 3, 6)] == gensim_ft.compute_ngrams_bytes(word, 3, 6)
    assert ngram_buckets(word, 3, 6, 2_000_000) == list(gensim_ft.ft_ngram_hashes(word, 3, 6, 2_000_000))
    assert ft_hash(word) == gensim_ft.ft_hash_bytes(word.encode())


def _toy():
    rng = np.random.default_rng(0)
    stems = ["walk", "talk", "jump", "play", "climb", "paint"]
    docs = []
    for _ in range(150):
        s = str(rng.choice(stems))
        docs.append([s, s + "ing", "is", "fun", s + "ed", "yesterday", s + "s", "daily"])
    return docs


def test_training_loss_falls_and_unseen_words_get_vectors():
    docs = _toy()
    vocab = Vocab.build(docs)
    m = FastText(vocab, 16, bucket=5000, window=2, epochs=10, sample=0, batch_size=128, seed=0)
    hist = m.fit(docs, progress=False, log_every=5)
    assert hist["loss"][-1] < 0.8 * hist["loss"][0]
    assert m.vectors().shape == (len(vocab), 16)
    # An unseen inflection is built from n-grams it shares with seen words of the same stem.
    v = m.vector("jumper")
    X = m.vectors()
    cos = X @ v / (np.linalg.norm(X, axis=1) * np.linalg.norm(v))
    jump = np.array([w.startswith("jump") for w in vocab.itos])
    assert cos[jump].mean() > cos[~jump].mean() + 0.05, (cos[jump].mean(), cos[~jump].mean())
    assert m.most_similar("walkng", k=3)  # a misspelling still has neighbours
    assert m.vector("a").shape == (16,)  # "<a>" is itself a 3-gram
    with pytest.raises(KeyError, match="too short"):
        FastText(vocab, 4, min_n=5, bucket=100).vector("ab")  # "<ab>" has no 5-gram


def test_input_vector_is_mean_of_word_and_ngram_rows():
    vocab = Vocab.build([["walking", "talking", "walking"]])
    m = FastText(vocab, 4, bucket=100, seed=0)
    i = vocab.index("walking")
    rows = [i] + [len(vocab) + b for b in ngram_buckets("walking", 3, 6, 100)]
    torch.testing.assert_close(m.W_in[i], m.E[rows].mean(0))
    oov = [len(vocab) + b for b in ngram_buckets("walked", 3, 6, 100)]
    np.testing.assert_allclose(m.vector("walked"), m.E[oov].mean(0).numpy(), rtol=1e-6)


def test_oov_vectors_agree_with_gensim_given_the_same_weights():
    """Load gensim's trained tables into ours: every word, seen or unseen, gets gensim's vector."""
    docs = split_long(_toy())
    g = gensim_ft.FastText(docs, vector_size=8, min_count=1, bucket=1000, epochs=1, workers=1, seed=0)
    vocab = Vocab.build(docs)
    m = FastText(vocab, 8, bucket=1000)
    order = [g.wv.key_to_index[w] for w in vocab.itos]
    with torch.no_grad():
        m.E[: len(vocab)] = torch.as_tensor(g.wv.vectors_vocab[order])
        m.E[len(vocab):] = torch.as_tensor(g.wv.vectors_ngrams)
    for w in ["walking", "talked", "jumpy", "paintings", "clmbing"]:
        np.testing.assert_allclose(m.vector(w), g.wv[w], rtol=1e-5, atol=1e-6)


def test_cbow_is_refused_and_save_load_roundtrip(tmp_path):
    vocab = Vocab.build(_toy())
    with pytest.raises(ValueError, match="skip-gram only"):
        FastText(vocab, 8, sg=False)
    m = FastText(vocab, 8, bucket=500, epochs=1)
    m.fit(_toy(), progress=False)
    m.save(tmp_path / "ft")
    m2 = FastText.load(tmp_path / "ft")
    np.testing.assert_array_equal(m.vector("walkd"), m2.vector("walkd"))
    with pytest.raises(ValueError, match="FastText"):
        from minilib.word2vec import Word2Vec

        Word2Vec.load(tmp_path / "ft")


def test_bucket_errors_name_the_fix():
    with pytest.raises(ValueError, match="bucket must be >= 1, got 0"):
        ngram_buckets("word", bucket=0)
    with pytest.raises(ValueError, match="bucket must be >= 1, got -3"):
        FastText(Vocab(["the", "cat", "sat"], [5, 3, 2]), 8, bucket=-3)
