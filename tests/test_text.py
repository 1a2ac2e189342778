"""Tests for minilib.text: tokenizer, Wikipedia cleaner, Vocab, one-hot, bag-of-words, TF-IDF."""
import numpy as np
import pytest
import scipy.sparse as sp
import torch

from minilib.text import Vocab, bag_of_words, idf_weights, one_hot, strip_wiki_markup, tfidf, tokenize

DOCS = [
    "The cat sat on the mat.",
    "The dog sat on the log, the dog barked!",
    "Cats and dogs: 2 pets, 2 friends.",
    "Zoë's café serves crème brûlée.",
    "Nothing in common here",
]


# --- the tokenizer and cleaner (written by the lead; behaviour stated in chapter 01) ------------


def test_tokenize_rule():
    assert tokenize("Don't panic, 42!") == ["don", "t", "panic", "42"]
    assert tokenize("Zoë's Café") == ["zoe", "s", "cafe"]
    assert tokenize("abc123def") == ["abc", "123", "def"]
    assert tokenize("") == []
    with pytest.raises(TypeError):
        tokenize(["not", "a", "string"])


def test_strip_wiki_markup_keeps_visible_words():
    raw = ("'''Anarchism''' is a [[political philosophy|philosophy]]{{sfn|Smith|2001}} "
           "<ref>Some book</ref>that [[Rejection|rejects]] [[File:A.jpg|thumb|a [[caption]]]] rulers.")
    assert tokenize(strip_wiki_markup(raw)) == ["anarchism", "is", "a", "philosophy", "that", "rejects", "rulers"]


def test_vocab_build_is_sorted_and_deterministic():
    v = Vocab.build([tokenize(d) for d in DOCS])
    assert v.itos[0] == "the" and v.counts[0] == 5
    assert list(v.counts) == sorted(v.counts, reverse=True)
    assert Vocab.build([tokenize(d) for d in DOCS]).itos == v.itos
    with pytest.raises(KeyError, match="not in the vocabulary"):
        v.index("elephant")


# --- one-hot ----------------------------------------------------------------------------------


def test_one_hot_rows():
    X = one_hot([2, 0, 2], 4)
    assert X.shape == (3, 4) and X.dtype == torch.float32
    assert torch.equal(X, torch.tensor([[0, 0, 1, 0], [1, 0, 0, 0], [0, 0, 1, 0]], dtype=torch.float32))
    assert one_hot(np.array([1]), 2).shape == (1, 2)
    assert one_hot(torch.tensor([], dtype=torch.long), 3).shape == (0, 3)


def test_one_hot_times_matrix_is_embedding_lookup():
    torch.manual_seed(0)
    W = torch.randn(10, 4)
    ids = torch.tensor([3, 7, 3, 0, 9])
    emb = torch.nn.Embedding.from_pretrained(W)
    # exact equality: each output entry is one product 1 * w plus zeros
    assert torch.equal(one_hot(ids, 10) @ W, emb(ids))
    assert torch.equal(one_hot(ids, 10) @ W, W[ids])


def test_one_hot_errors():
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        one_hot([0, 4], 4)
    with pytest.raises(ValueError, match="1-D"):
        one_hot([[0, 1]], 4)
    with pytest.raises(TypeError, match="integers"):
        one_hot([0.5], 4)
    with pytest.raises(ValueError, match="vocab_size"):
        one_hot([0], 0)


# --- bag of words and TF-IDF ------------------------------------------------------------------


@pytest.fixture
def vocab():
    return Vocab.build([tokenize(d) for d in DOCS])


def test_bag_of_words_counts(vocab):
    X = bag_of_words(DOCS, vocab)
    assert sp.isspmatrix_csr(X) and X.shape == (len(DOCS), len(vocab)) and X.dtype == np.int64
    assert X[1, vocab.index("the")] == 3 and X[1, vocab.index("dog")] == 2
    assert X[2, vocab.index("2")] == 2
    # token lists and strings give the same matrix; unknown words are ignored
    assert (bag_of_words([tokenize(d) for d in DOCS], vocab) != X).nnz == 0
    assert bag_of_words([["unicorn", "unicorn"]], vocab).nnz == 0
    assert np.array_equal(np.asarray(X.sum(axis=1)).ravel(), [len(tokenize(d)) for d in DOCS])


def test_bag_of_words_matches_sklearn(vocab):
    from sklearn.feature_extraction.text import CountVectorizer

    ref = CountVectorizer(tokenizer=tokenize, lowercase=False, token_pattern=None, vocabulary=vocab.stoi)
    assert (ref.fit_transform(DOCS) != bag_of_words(DOCS, vocab)).nnz == 0


def test_bag_of_words_errors(vocab):
    with pytest.raises(TypeError, match="single str"):
        bag_of_words("the cat", vocab)
    with pytest.raises(ValueError, match="empty"):
        bag_of_words([], vocab)
    with pytest.raises(TypeError, match="Vocab"):
        bag_of_words(DOCS, ["the", "cat"])


def test_idf_formula(vocab):
    n = len(DOCS)
    idf = idf_weights(DOCS, vocab)
    # "the" occurs in 2 of 5 documents
    assert idf[vocab.index("the")] == pytest.approx(np.log((1 + n) / (1 + 2)) + 1)
    raw = idf_weights(DOCS, vocab, smooth=False)
    assert raw[vocab.index("the")] == pytest.approx(np.log(n / 2) + 1)
    assert np.all(np.isfinite(idf_weights(DOCS[:1], vocab, smooth=False)))  # unseen words: finite


@pytest.mark.parametrize("smooth_idf", [True, False])
@pytest.mark.parametrize("sublinear_tf", [False, True])
@pytest.mark.parametrize("norm", ["l2", "l1", None])
def test_tfidf_matches_sklearn(vocab, smooth_idf, sublinear_tf, norm):
    from sklearn.feature_extraction.text import TfidfVectorizer

    ref = TfidfVectorizer(tokenizer=tokenize, lowercase=False, token_pattern=None, vocabulary=vocab.stoi,
                          smooth_idf=smooth_idf, sublinear_tf=sublinear_tf, norm=norm)
    Y = ref.fit_transform(DOCS)
    X = tfidf(DOCS, vocab, smooth_idf=smooth_idf, sublinear_tf=sublinear_tf, norm=norm)
    assert sp.isspmatrix_csr(X) and X.shape == Y.shape
    assert abs(X - Y).max() < 1e-10


def test_tfidf_rows_and_options(vocab):
    X = tfidf(DOCS + ["unicorn"], vocab)
    norms = np.sqrt(np.asarray(X.multiply(X).sum(axis=1)).ravel())
    assert np.allclose(norms[:-1], 1.0) and norms[-1] == 0  # all-unknown document stays zero
    # a precomputed idf (e.g. from a background corpus) is used as given
    ones = np.ones(len(vocab))
    X1 = tfidf(DOCS, vocab, idf=ones, norm=None)
    assert (X1 != bag_of_words(DOCS, vocab)).nnz == 0
    with pytest.raises(ValueError, match="idf has shape"):
        tfidf(DOCS, vocab, idf=np.ones(3))
    with pytest.raises(ValueError, match="norm"):
        tfidf(DOCS, vocab, norm="max")


def test_text_list_accepts_lists_and_names_the_usual_mistakes():
    from minilib.text import text_list

    assert text_list(("a", "b")) == ["a", "b"] and text_list([]) == []
    assert text_list(t for t in ["x"]) == ["x"]
    with pytest.raises(TypeError, match=r"queries must be a list of texts, got one str: wrap it, \[text\]"):
        text_list("one sentence", "queries")
    with pytest.raises(TypeError, match="every item of texts must be a str"):
        text_list(["ok", 3])
    with pytest.raises(ValueError, match="sentences is empty"):
        text_list([], "sentences", allow_empty=False)


def test_vocab_iterates_decodes_and_gives_frequencies():
    v = Vocab(["the", "cat", "sat"], [5, 3, 2])
    assert list(v) == ["the", "cat", "sat"]
    assert v.decode(np.array([2, 0])) == ["sat", "the"] and v.decode(v.encode(["cat", "zebra", "the"])) == ["cat", "the"]
    np.testing.assert_allclose(v.frequencies(), [0.5, 0.3, 0.2])
    assert repr(v) == "Vocab(3 words: the, cat, sat)"
    big = Vocab([f"w{i}" for i in range(7)], [7 - i for i in range(7)])
    assert repr(big) == "Vocab(7 words: w0, w1, w2, w3, w4, ...)"


def test_vocab_build_max_size_keeps_the_most_frequent():
    v = Vocab.build([["b", "a", "b", "c", "b", "a"]], min_count=1, max_size=2)
    assert list(v) == ["b", "a"] and v.counts.tolist() == [3, 2]


def test_vocab_errors_name_the_fix():
    with pytest.raises(ValueError, match="Vocab words must be unique"):
        Vocab(["the", "cat", "the"])
    with pytest.raises(ValueError, match="3 words but 2 counts"):
        Vocab(["the", "cat", "sat"], [5, 3])
    for empty in ([], [[], []]):
        with pytest.raises(ValueError, match="cannot build a vocabulary from an empty corpus: no tokens were given"):
            Vocab.build(empty)
    with pytest.raises(ValueError, match="no word occurs at least min_count=3 times; lower min_count"):
        Vocab.build([["a", "b", "a"]], min_count=3)
    with pytest.raises(ValueError, match="unknown must be 'skip' or 'error'"):
        Vocab(["the", "cat"]).encode(["cat"], unknown="ignore")


def test_vocab_decode_refuses_ids_outside_the_vocabulary():
    v = Vocab(["the", "cat", "sat"], [5, 3, 2])
    for bad in (-1, 3):
        with pytest.raises(IndexError, match=rf"id {bad} is not in the vocabulary \(ids 0\.\.2\)"):
            v.decode([0, bad])
