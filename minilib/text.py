"""Text to tokens to ids: the book's one tokenizer, a Wikipedia markup cleaner, and ``Vocab``.

Every chapter that reads text uses :func:`tokenize`, so every count, vector and score in the
book is measured on the same tokens. The rule is deliberately simple and close to the one
behind ``text8`` (the corpus most word-vector papers quote): lowercase, strip accents, keep
runs of letters and runs of digits, drop everything else. ``"Don't panic, 42!"`` becomes
``["don", "t", "panic", "42"]``.

Defined in chapter 01.
"""
from __future__ import annotations

import difflib
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:   # only for annotations: torch is imported where it is used
    import torch

_TOKEN = re.compile(r"[a-z]+|[0-9]+")


def text_list(texts, what: str = "texts", allow_empty: bool = True) -> list[str]:
    """``texts`` as a list of str, with a clear error for the usual mistakes: one str where a
    list was meant (iterating it would give characters), an item that is not a str, and (with
    ``allow_empty=False``) no texts at all. ``what`` names the argument in the messages.
    Shared by every ``encode``-style function of the library."""
    if isinstance(texts, str):
        raise TypeError(f"{what} must be a list of texts, got one str: wrap it, [text]")
    texts = list(texts)
    if not texts and not allow_empty:
        raise ValueError(f"{what} is empty")
    if not all(isinstance(t, str) for t in texts):
        raise TypeError(f"every item of {what} must be a str")
    return texts


def tokenize(text: str) -> list[str]:
    """Lowercase, strip accents, and split ``text`` into runs of letters or digits."""
    if not isinstance(text, str):
        raise TypeError(f"tokenize expects a str, got {type(text).__name__}")
    text = unicodedata.normalize("NFKD", text.lower())
    text = "".join(c for c in text if not unicodedata.combining(c))
    return _TOKEN.findall(text)


# --- Wikipedia markup -------------------------------------------------------------------
# MediaWiki text mixes prose with templates ({{...}}), tables ({|...|}), links ([[...]]),
# references and HTML. We keep the visible words of links and drop the rest.

_COMMENT = re.compile(r"<!--.*?-->", re.S)
_REF = re.compile(r"<ref[^>/]*/>|<ref[^>]*>.*?</ref>", re.S | re.I)
_DROP_TAGS = re.compile(r"<(math|gallery|timeline|score|syntaxhighlight|source|pre)[^>]*>.*?</\1>", re.S | re.I)
_TAG = re.compile(r"<[^>]+>")
_FILE_LINK = re.compile(r"\[\[(?:file|image|category|media):", re.I)
_INTERWIKI = re.compile(r"\[\[[a-z\-]{2,12}:[^\]]*\]\]")
_LINK = re.compile(r"\[\[(?:[^\]|]*\|)?([^\]]*)\]\]")
_EXT_LINK = re.compile(r"\[(?:https?|ftp)://[^\s\]]*\s*([^\]]*)\]")
_URL = re.compile(r"(?:https?|ftp)://\S+")
_HEADING = re.compile(r"^=+\s*(.*?)\s*=+\s*$", re.M)
_ENTITY = re.compile(r"&(?:nbsp|ndash|mdash|amp|quot|lt|gt|minus|#\d+);")


def _drop_nested(text: str, open_: str, close: str) -> str:
    """Remove every (possibly nested) ``open_ ... close`` span."""
    out, depth, i = [], 0, 0
    while i < len(text):
        if text.startswith(open_, i):
            depth += 1
            i += len(open_)
        elif depth and text.startswith(close, i):
            depth -= 1
            i += len(close)
        else:
            if not depth:
                out.append(text[i])
            i += 1
    return "".join(out)


def _drop_file_links(text: str) -> str:
    """Remove ``[[File:...]]``-style links, whose captions may hold nested links."""
    while (m := _FILE_LINK.search(text)) is not None:
        depth, i = 0, m.start()
        while i < len(text):
            if text.startswith("[[", i):
                depth += 1
                i += 2
            elif text.startswith("]]", i):
                depth -= 1
                i += 2
                if depth == 0:
                    break
            else:
                i += 1
        text = text[: m.start()] + text[i:]
    return text


def strip_wiki_markup(text: str) -> str:
    """The visible prose of a MediaWiki article: templates, tables, refs and tags removed,
    ``[[target|label]]`` replaced by ``label``."""
    text = _COMMENT.sub(" ", text)
    text = _REF.sub(" ", text)
    text = _DROP_TAGS.sub(" ", text)
    text = _drop_nested(text, "{{", "}}")
    text = _drop_nested(text, "{|", "|}")
    text = _drop_file_links(text)
    text = _INTERWIKI.sub(" ", text)
    text = _LINK.sub(r"\1", text)
    text = _EXT_LINK.sub(r"\1", text)
    text = _URL.sub(" ", text)
    text = _TAG.sub(" ", text)
    text = _HEADING.sub(r"\1", text)
    text = _ENTITY.sub(" ", text)
    return text.replace("'''", "").replace("''", "")


# --- vocabulary -------------------------------------------------------------------------


class Vocab:
    """Words <-> integer ids, most frequent first.

    ``Vocab.build(docs, min_count=1, max_size=None)`` counts the tokens of ``docs`` (an
    iterable of token lists), keeps words seen at least ``min_count`` times (at most
    ``max_size`` of them) and sorts them by count, ties alphabetically, so the same corpus
    always gives the same ids. ``counts[i]`` is the corpus count of word ``itos[i]``.
    """

    def __init__(self, words: Sequence[str], counts: Sequence[int] | None = None):
        self.itos: list[str] = list(words)
        if len(set(self.itos)) != len(self.itos):
            raise ValueError("Vocab words must be unique")
        self.stoi: dict[str, int] = {w: i for i, w in enumerate(self.itos)}
        self.counts = np.asarray(counts if counts is not None else np.ones(len(self.itos)), dtype=np.int64)
        if len(self.counts) != len(self.itos):
            raise ValueError(f"{len(self.itos)} words but {len(self.counts)} counts")

    @classmethod
    def build(cls, docs: Iterable[Sequence[str]], min_count: int = 1, max_size: int | None = None) -> "Vocab":
        """A :class:`Vocab` of the words of ``docs`` (token lists) seen at least ``min_count`` times, at most
        ``max_size`` of them, by count then alphabetically. A ``ValueError`` if no word is left."""
        counter: Counter[str] = Counter()
        for doc in docs:
            if isinstance(doc, str):
                raise TypeError("Vocab.build expects token lists, got a str: tokenize(text) first")
            counter.update(doc)
        if not counter:
            raise ValueError("cannot build a vocabulary from an empty corpus: no tokens were given")
        items = sorted(((w, c) for w, c in counter.items() if c >= min_count), key=lambda wc: (-wc[1], wc[0]))
        if max_size is not None:
            items = items[:max_size]
        if not items:
            raise ValueError(f"no word occurs at least min_count={min_count} times; lower min_count")
        words, counts = zip(*items)
        return cls(words, counts)

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, word: object) -> bool:
        return word in self.stoi

    def __iter__(self):
        return iter(self.itos)

    def __repr__(self) -> str:
        head = ", ".join(self.itos[:5])
        return f"Vocab({len(self)} words: {head}{', ...' if len(self) > 5 else ''})"

    def index(self, word: str) -> int:
        """The id of ``word``; a ``KeyError`` naming close matches if it is unknown."""
        try:
            return self.stoi[word]
        except KeyError:
            near = difflib.get_close_matches(word, self.itos[:20000], n=3)
            hint = f" Close words in the vocabulary: {', '.join(near)}." if near else ""
            raise KeyError(
                f"{word!r} is not in the vocabulary ({len(self)} words).{hint} "
                "Words are lowercase tokens (minilib.text.tokenize); rare words fall below min_count."
            ) from None

    def encode(self, tokens: Iterable[str], unknown: str = "skip") -> np.ndarray:
        """Ids of ``tokens``; unknown tokens are skipped (``unknown="skip"``) or raise (``"error"``)."""
        if unknown not in ("skip", "error"):
            raise ValueError("unknown must be 'skip' or 'error'")
        if unknown == "error":
            return np.array([self.index(t) for t in tokens], dtype=np.int64)
        return np.array([self.stoi[t] for t in tokens if t in self.stoi], dtype=np.int64)

    def decode(self, ids: Iterable[int]) -> list[str]:
        """The words of ``ids``, in order; an ``IndexError`` names an id outside ``0 .. len(vocab) - 1``."""
        words = []
        for i in ids:
            i = int(i)
            if not 0 <= i < len(self.itos):
                raise IndexError(f"id {i} is not in the vocabulary (ids 0..{len(self.itos) - 1})")
            words.append(self.itos[i])
        return words

    def frequencies(self) -> np.ndarray:
        """Relative frequencies p(w) = count / total, in id order."""
        return self.counts / self.counts.sum()


# --- sparse vectors: one-hot, bag-of-words, TF-IDF ---------------------------------------
# The first vectors of the book (chapter 01). They need no training: a word is a column of
# the vocabulary, a document is a count per column. Everything later in the book is measured
# against these baselines.


def one_hot(ids, vocab_size: int) -> "torch.Tensor":
    """One-hot rows for ``ids``: a float tensor of shape ``(n, vocab_size)``.

    Row ``i`` is all zeros except a 1 in column ``ids[i]``. ``ids`` is a sequence, NumPy
    array or 1-D tensor of integers in ``[0, vocab_size)``. ``one_hot(ids, V) @ W`` equals the
    embedding lookup ``W[ids]``: the point of chapter 01.

    Defined in chapter 01.
    """
    import torch

    if isinstance(vocab_size, bool) or not isinstance(vocab_size, (int, np.integer)) or vocab_size < 1:
        raise ValueError(f"vocab_size must be a positive int, got {vocab_size!r}")
    ids = torch.as_tensor(np.asarray(ids) if not isinstance(ids, torch.Tensor) else ids)
    if ids.dim() != 1:
        raise ValueError(f"one_hot expects a 1-D sequence of ids, got shape {tuple(ids.shape)}; flatten it first")
    if ids.dtype.is_floating_point or ids.dtype == torch.bool:
        raise TypeError(f"ids must be integers, got {ids.dtype}; use vocab.encode(tokens) to get ids")
    if len(ids) and (int(ids.min()) < 0 or int(ids.max()) >= vocab_size):
        raise ValueError(
            f"ids must lie in [0, {vocab_size}), got min {int(ids.min())} and max {int(ids.max())}; "
            "is vocab_size the length of the vocabulary that made the ids?"
        )
    out = torch.zeros(len(ids), int(vocab_size))  # (n, V)
    out[torch.arange(len(ids)), ids.long()] = 1.0
    return out


def _as_token_lists(docs) -> list:
    """Accept token lists or raw strings (tokenized with :func:`tokenize`)."""
    if isinstance(docs, str):
        raise TypeError("docs must be a list of documents, got a single str; wrap it: [text]")
    docs = list(docs)
    if not docs:
        raise ValueError("docs is empty: give at least one document")
    return [tokenize(d) if isinstance(d, str) else d for d in docs]


def bag_of_words(docs, vocab: Vocab):
    """Term counts: a ``scipy.sparse.csr_matrix`` of shape ``(n_docs, len(vocab))``, int64.

    Entry ``(d, w)`` counts how often word ``w`` occurs in document ``d``. ``docs`` holds token
    lists, or raw strings that are tokenized with :func:`tokenize`. Tokens not in ``vocab``
    are ignored, so a document made only of unknown words is an all-zero row.

    Defined in chapter 01.
    """
    import scipy.sparse as sp

    if not isinstance(vocab, Vocab):
        raise TypeError(f"vocab must be a minilib.text.Vocab, got {type(vocab).__name__}; build one with Vocab.build(docs)")
    docs = _as_token_lists(docs)
    indptr, indices = [0], []
    for doc in docs:
        indices.extend(vocab.stoi[t] for t in doc if t in vocab.stoi)
        indptr.append(len(indices))
    data = np.ones(len(indices), dtype=np.int64)
    X = sp.csr_matrix((data, np.asarray(indices, dtype=np.int64), np.asarray(indptr)), shape=(len(docs), len(vocab)))
    X.sum_duplicates()  # repeated words in a row become one entry holding their count
    return X


def idf_weights(docs, vocab: Vocab, smooth: bool = True) -> np.ndarray:
    """Inverse document frequency of every vocabulary word: shape ``(len(vocab),)``, float64.

    With ``n`` documents of which ``df(w)`` contain ``w``:

    * ``smooth=True`` (default, as scikit-learn):  ``idf(w) = ln((1 + n) / (1 + df(w))) + 1``,
      as if one extra document contained every word once; never divides by zero.
    * ``smooth=False``: ``idf(w) = ln(n / df(w)) + 1``; a word in no document gets the largest
      finite value, ``ln(n) + 1``, as if it had been seen once.

    The ``+ 1`` keeps words that occur in every document (``idf = 1``, not 0) from vanishing.

    Defined in chapter 01.
    """
    counts = bag_of_words(docs, vocab)
    n = counts.shape[0]
    df = np.bincount(counts.indices, minlength=counts.shape[1]).astype(np.float64)  # docs per word
    if smooth:
        return np.log((1.0 + n) / (1.0 + df)) + 1.0
    return np.log(n / np.maximum(df, 1.0)) + 1.0


def tfidf(
    docs,
    vocab: Vocab,
    *,
    smooth_idf: bool = True,
    sublinear_tf: bool = False,
    norm: str | None = "l2",
    idf: np.ndarray | None = None,
):
    """TF-IDF document vectors: a ``scipy.sparse.csr_matrix`` of shape ``(n_docs, len(vocab))``.

    ``tfidf(d, w) = tf(d, w) * idf(w)``, then each row is scaled to unit length (``norm="l2"``),
    unit sum (``"l1"``) or left alone (``None``). ``tf`` is the raw count, or
    ``1 + ln(count)`` with ``sublinear_tf=True``. ``idf`` comes from :func:`idf_weights` on
    ``docs`` themselves, or pass a precomputed vector (e.g. from a larger background corpus).

    The defaults (``smooth_idf=True, sublinear_tf=False, norm="l2"``) give exactly
    scikit-learn's ``TfidfVectorizer`` defaults on the same tokens and vocabulary.

    Defined in chapter 01.
    """
    import scipy.sparse as sp

    if norm not in ("l2", "l1", None):
        raise ValueError(f"norm must be 'l2', 'l1' or None, got {norm!r}")
    docs = _as_token_lists(docs)
    X = bag_of_words(docs, vocab).astype(np.float64)
    if sublinear_tf:
        X.data = 1.0 + np.log(X.data)  # dampens repeats: 10 occurrences weigh 3.3, not 10
    if idf is None:
        idf = idf_weights(docs, vocab, smooth=smooth_idf)
    idf = np.asarray(idf, dtype=np.float64)
    if idf.shape != (len(vocab),):
        raise ValueError(f"idf has shape {idf.shape} but the vocabulary has {len(vocab)} words; compute it with the same vocab")
    X = X @ sp.diags(idf)  # scale column w by idf(w)
    if norm is not None:
        lengths = np.sqrt(np.asarray(X.multiply(X).sum(axis=1))).ravel() if norm == "l2" else np.asarray(abs(X).sum(axis=1)).ravel()
        lengths[lengths == 0] = 1.0  # an all-zero row (only unknown words) stays zero
        X = sp.diags(1.0 / lengths) @ X
    return sp.csr_matrix(X)
