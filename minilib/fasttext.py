"""fastText: skip-gram over words *and* their character n-grams, with hashed n-gram buckets.

Bojanowski et al. (2017) represent a word as the bag of its character n-grams (3 to 6 letters of
``<word>``, with ``<`` and ``>`` marking the edges) plus the word itself. The input vector of a
word is the mean of those vectors; training is word2vec's skip-gram with negative sampling
(:mod:`minilib.word2vec`). Two consequences matter for this chapter:

* words that share pieces (``walk``, ``walking``, ``walked``) share parameters, which helps
  syntactic analogies most;
* a word never seen in training still has n-grams, hence a vector (misspellings, rare forms).

There are far too many n-grams to give each its own row, so each is *hashed* (FNV-1a, as in
fastText and gensim) into one of ``bucket`` rows; unrelated n-grams may collide and share a row.
The hash and the n-gram rules are gensim's (``gensim.models.FastText``), checked in
``tests/test_fasttext.py``, so a word gets the same bucket ids in both.

Defined in chapter 03.
"""
from __future__ import annotations

import numpy as np
import torch

from .text import Vocab
from .word2vec import Word2Vec

__all__ = ["char_ngrams", "ft_hash", "ngram_buckets", "FastText"]


def char_ngrams(word: str, min_n: int = 3, max_n: int = 6) -> list[str]:
    """The character n-grams of ``<word>`` with ``min_n <= n <= max_n``, in order, repeats kept.

    ``char_ngrams("where", 3, 3)`` is ``['<wh', 'whe', 'her', 'ere', 're>']``. As in gensim the
    whole ``<word>`` is one of them when it is short enough. Defined in chapter 03.
    """
    if not isinstance(word, str) or not word:
        raise ValueError(f"word must be a non-empty str, got {word!r}")
    if not 1 <= min_n <= max_n:
        raise ValueError(f"need 1 <= min_n <= max_n, got min_n={min_n}, max_n={max_n}")
    w = f"<{word}>"
    # gensim's order: by start position, then by length (the order does not change the mean).
    return [w[i : i + n] for i in range(len(w)) for n in range(min_n, max_n + 1) if i + n <= len(w)]


def ft_hash(s: str) -> int:
    """fastText's 32-bit FNV-1a hash of the UTF-8 bytes of ``s``.

    fastText reads bytes as signed ``char``: a byte >= 128 is sign-extended before the XOR.
    gensim reproduces that quirk, and so do we. Defined in chapter 03.
    """
    h = 2166136261
    for b in s.encode("utf-8"):
        h ^= (b - 256 if b >= 128 else b) & 0xFFFFFFFF
        h = (h * 16777619) & 0xFFFFFFFF
    return h


def ngram_buckets(word: str, min_n: int = 3, max_n: int = 6, bucket: int = 2_000_000) -> list[int]:
    """The bucket ids (``hash % bucket``) of ``word``'s character n-grams. Defined in chapter 03."""
    if bucket < 1:
        raise ValueError(f"bucket must be >= 1, got {bucket}")
    return [ft_hash(g) % bucket for g in char_ngrams(word, min_n, max_n)]


class FastText(Word2Vec):
    """fastText skip-gram with negative sampling: a word's input vector is the mean of its own
    row and its n-gram bucket rows.

    Same hyper-parameters as :class:`~minilib.word2vec.Word2Vec` (gensim's defaults) plus
    ``min_n=3``, ``max_n=6`` and ``bucket=2_000_000`` n-gram rows. ``E`` ``(V + bucket, dim)``
    stacks the word rows (``0..V-1``) and the bucket rows; ``W_out`` ``(V, dim)`` as in word2vec.
    :meth:`vector` works for any word, seen or not. Only skip-gram is implemented (``sg=True``),
    the variant of the fastText paper. Defined in chapter 03.
    """

    def __init__(self, vocab: Vocab, dim: int = 100, *, min_n: int = 3, max_n: int = 6, bucket: int = 2_000_000,
                 sg: bool = True, seed: int = 0, device=None, **kw):
        if not sg:
            raise ValueError("minilib.fasttext.FastText implements skip-gram only (sg=True); use Word2Vec(sg=False) for CBOW")
        super().__init__(vocab, dim, sg=True, seed=seed, device=device, **kw)
        if bucket < 1:
            raise ValueError(f"bucket must be >= 1, got {bucket}")
        self.config.update(min_n=int(min_n), max_n=int(max_n), bucket=int(bucket))
        g = torch.Generator().manual_seed(seed + 1)
        # gensim's initialisation for both word and n-gram rows: uniform in [-1/dim, 1/dim].
        E = (torch.rand(len(vocab) + bucket, dim, generator=g) * 2 - 1) / dim
        del self.W_in  # fastText's input table is E; W_in becomes a computed property
        self.E = torch.nn.Parameter(E.to(self.device), requires_grad=False)
        # The rows of E that make up each vocabulary word, stored flat (CSR): word i owns
        # rows flat[start[i] : start[i] + n_pieces[i]]: its own row, then its n-gram buckets.
        pieces = [[i] + [len(vocab) + b for b in ngram_buckets(w, min_n, max_n, bucket)] for i, w in enumerate(vocab.itos)]
        n_pieces = np.array([len(p) for p in pieces], dtype=np.int64)
        self._flat = torch.as_tensor(np.concatenate(pieces), device=self.device)  # (total pieces,)
        self._start = torch.as_tensor(np.concatenate([[0], np.cumsum(n_pieces)[:-1]]), device=self.device)  # (V,)
        self._n_pieces = torch.as_tensor(n_pieces, device=self.device)  # (V,)

    @property
    def W_in(self) -> torch.Tensor:
        """Every vocabulary word's input vector, the mean of its rows of ``E``: ``(V, dim)``."""
        out = torch.empty(len(self.vocab), self.E.shape[1], device=self.device)
        for s in range(0, len(self.vocab), 8192):
            ids = torch.arange(s, min(s + 8192, len(self.vocab)), device=self.device)
            out[s : s + len(ids)] = self._mean_rows(ids, *self._rows_of(ids))
        return out

    def _rows_of(self, words: torch.Tensor):
        """For vocabulary ids ``words`` ``(n,)``: ``(rows, owner)``, the E rows of all their pieces
        and, for each, the position in ``words`` of the word it belongs to. Both ``(total,)``."""
        counts = self._n_pieces[words]  # (n,)
        owner = torch.repeat_interleave(torch.arange(len(words), device=words.device), counts)
        first = torch.cumsum(counts, 0) - counts  # where each word's run starts in the output
        offset = torch.arange(len(owner), device=words.device) - first[owner]  # 0, 1, ... within a word
        return self._flat[self._start[words][owner] + offset], owner

    def _mean_rows(self, words: torch.Tensor, rows: torch.Tensor, owner: torch.Tensor) -> torch.Tensor:
        """The mean of each word's rows of ``E``: ``(n, dim)``."""
        total = torch.zeros(len(words), self.E.shape[1], device=self.E.device)
        total.index_add_(0, owner, torch.nn.functional.embedding(rows, self.E))
        return total / self._n_pieces[words][:, None].to(total.dtype)

    def _inputs(self, words: torch.Tensor) -> torch.Tensor:
        # A batch repeats frequent words many times: build each distinct word's vector once.
        self._uniq, self._inv = torch.unique(words, return_inverse=True)
        self._rows, self._owner = self._rows_of(self._uniq)
        return self._mean_rows(self._uniq, self._rows, self._owner)[self._inv]  # (B, dim)

    def _apply_input_grad(self, words: torch.Tensor, grad: torch.Tensor, lr: float) -> None:
        g = torch.zeros(len(self._uniq), grad.shape[1], device=grad.device).index_add_(0, self._inv, grad)  # (U, dim)
        # fastText (and gensim) add the *whole* gradient of the mean to each of its m rows, not
        # 1/m of it: a larger step than the exact gradient, which trains the n-grams much faster.
        self.E.index_add_(0, self._rows, g[self._owner], alpha=-lr)

    def vector(self, word: str) -> np.ndarray:
        """The ``(dim,)`` vector of any word: the trained one for a vocabulary word, else the
        mean of its n-gram buckets (gensim's rule). A ``KeyError`` only if the word has no n-gram
        at all (shorter than ``min_n - 2`` letters)."""
        if word in self.vocab:
            return self.W_in[self.vocab.index(word)].detach().cpu().numpy().copy()
        return self.oov_vector(word)

    def oov_vector(self, word: str) -> np.ndarray:
        """The subword vector of ``word`` ignoring its own row: the mean of its n-gram buckets, ``(dim,)``."""
        c = self.config
        b = ngram_buckets(word, c["min_n"], c["max_n"], c["bucket"])
        if not b:
            raise KeyError(f"{word!r} is out of vocabulary and too short to have a character n-gram "
                           f"(min_n={c['min_n']}): fastText cannot build a vector for it")
        rows = torch.as_tensor([len(self.vocab) + x for x in b], device=self.device)
        return self.E[rows].mean(0).detach().cpu().numpy().copy()

    def most_similar(self, word: str, k: int = 10, kind: str = "in") -> list[tuple[str, float]]:
        """Nearest vocabulary words to any word (unseen words use their n-gram vector)."""
        from .similarity import topk

        q = torch.as_tensor(self.vector(word))
        X = self.vectors(kind)
        scores, ids = topk(q.numpy(), X, min(k + 1, len(self.vocab)), metric="cosine")
        out = [(self.vocab.itos[int(j)], float(s)) for s, j in zip(scores, ids) if self.vocab.itos[int(j)] != word]
        return out[:k]

    def _tensors(self) -> dict[str, torch.Tensor]:
        return {"E": self.E, "W_out": self.W_out}
