"""Predictive word vectors: word2vec's skip-gram and CBOW with negative sampling.

Mikolov et al. (2013) train two tables of vectors, ``W_in`` (the word vectors everyone uses)
and ``W_out`` (the "context" vectors), so that ``sigmoid(W_in[w] . W_out[c])`` is high for a
word ``w`` and a context word ``c`` seen within a few positions of it, and low for ``k`` noise
words drawn from the unigram distribution raised to the power 0.75. Three tricks make it work:

* **subsampling**: frequent words are dropped at random before windows are formed, keeping a
  word of relative frequency ``f`` with probability ``sqrt(t/f) + t/f`` (``t = sample = 1e-3``);
* **dynamic window**: each centre word uses a window drawn uniformly from ``1..window``, so near
  neighbours count more than far ones;
* **linear learning-rate decay** from ``alpha`` to ``min_alpha`` over the whole run.

Every definition here is gensim's (``gensim.models.Word2Vec``), checked in
``tests/test_word2vec.py``, so the two train comparable vectors from the same corpus. The one
difference is the schedule: gensim updates the vectors after every single pair on several CPU
threads; we build all pairs of an epoch at once with NumPy and apply plain SGD to shuffled
batches of thousands of pairs with PyTorch, which runs unchanged on a CPU or a GPU.

Shuffling also changes the *order*: gensim reads the documents front to back in every epoch, we
mix the whole corpus, which is what gensim does on shuffled documents. When a corpus is several
sources one after another (the full book corpus ends with 4.2M tokens of dictionary entries),
the order alone moves gensim's CBOW by about 4.5 points of WordSim353 (full profile, 3 seeds):
shuffle the documents before training gensim to compare like with like.

Defined in chapter 03.
"""
from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch

from .text import Vocab

__all__ = [
    "MAX_SENTENCE", "MIN_TOKENS", "split_long", "keep_probabilities", "noise_distribution", "noise_table",
    "encode_corpus", "subsample", "skipgram_pairs", "cbow_windows", "Word2Vec",
]

MAX_SENTENCE = 10_000  # gensim truncates longer "sentences"; we split them so both see every token
MIN_TOKENS = 10  # the smallest corpus (in-vocabulary tokens) that makes any pair to train on
_NOISE_DOMAIN = 2**31 - 1  # gensim's cum_table scale


def split_long(docs: Iterable[Sequence[str]], max_len: int = MAX_SENTENCE) -> list[list[str]]:
    """Cut every document longer than ``max_len`` tokens into consecutive pieces.

    gensim silently truncates a sentence after 10,000 tokens; cutting instead keeps every token
    and gives ours and gensim exactly the same sentences. Defined in chapter 03.
    """
    out = []
    for doc in docs:
        if isinstance(doc, str):
            raise TypeError("docs must be token lists, got a str: tokenize(text) first")
        doc = list(doc)
        out.extend(doc[i : i + max_len] for i in range(0, max(len(doc), 1), max_len))
    return out


def keep_probabilities(counts, sample: float = 1e-3) -> np.ndarray:
    """Probability of keeping each word when subsampling: shape ``(V,)``, values in ``(0, 1]``.

    gensim's formula: with threshold ``T = sample * total`` (``total`` = sum of ``counts``),
    a word seen ``n`` times is kept with probability ``min(1, (sqrt(n / T) + 1) * T / n)``,
    i.e. ``sqrt(t/f) + t/f`` for relative frequency ``f = n / total``. ``sample=0`` keeps all.
    Defined in chapter 03.
    """
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 1 or len(counts) == 0 or (counts <= 0).any():
        raise ValueError("counts must be a non-empty 1-D array of positive word counts (vocab.counts)")
    if sample < 0:
        raise ValueError(f"sample must be >= 0 (0 switches subsampling off), got {sample}")
    if sample == 0:
        return np.ones_like(counts)
    threshold = sample * counts.sum() if sample < 1.0 else float(sample)  # gensim: sample >= 1 is a count
    return np.minimum(1.0, (np.sqrt(counts / threshold) + 1.0) * threshold / counts)


def noise_distribution(counts, power: float = 0.75) -> np.ndarray:
    """The negative-sampling distribution ``P_n(w) = n_w^power / sum_v n_v^power``: shape ``(V,)``.

    ``power=0.75`` (Mikolov et al. 2013b) flattens the unigram distribution: rare words are drawn
    more often than their frequency, frequent ones less. Defined in chapter 03.
    """
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 1 or len(counts) == 0 or (counts < 0).any() or counts.sum() == 0:
        raise ValueError("counts must be a non-empty 1-D array of non-negative counts with a positive sum")
    w = counts**power
    return w / w.sum()


def noise_table(counts, power: float = 0.75) -> np.ndarray:
    """gensim's ``cum_table``: cumulative noise probabilities scaled to integers ``<= 2**31 - 1``.

    A negative is drawn as ``searchsorted(table, r, side="right")`` for ``r`` uniform in
    ``[0, table[-1])``: binary search instead of a 100M-entry table. Shape ``(V,)``, int64.
    Defined in chapter 03.
    """
    cum = np.cumsum(noise_distribution(counts, power))
    return np.round(cum * _NOISE_DOMAIN).astype(np.int64)


def encode_corpus(docs: Iterable[Sequence[str]], vocab: Vocab) -> tuple[np.ndarray, np.ndarray]:
    """Token lists -> ``(ids, sentence)``: two int arrays of the same length.

    ``ids`` holds the vocabulary ids of all in-vocabulary tokens of the corpus, concatenated
    (out-of-vocabulary tokens are dropped *before* windows are formed, as gensim does);
    ``sentence[i]`` is the index of the (split) document that token ``i`` came from, so that
    windows never cross documents. Defined in chapter 03.
    """
    docs = split_long(docs)
    ids, sent = [], []
    for s, doc in enumerate(docs):
        e = vocab.encode(doc)
        ids.append(e)
        sent.append(np.full(len(e), s, dtype=np.int64))
    if not ids:
        raise ValueError("the corpus is empty: pass a list of token lists (data.load('book_corpus'))")
    return np.concatenate(ids), np.concatenate(sent)


def subsample(ids: np.ndarray, keep: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A boolean mask over ``ids``: token ``i`` survives with probability ``keep[ids[i]]``.

    Drawn afresh every epoch, so over the run every occurrence is used some of the time.
    Defined in chapter 03.
    """
    return rng.random(len(ids)) < keep[ids]


def _reduced_windows(n: int, window: int, rng: np.random.Generator) -> np.ndarray:
    # gensim draws b uniformly in 0..window-1 and uses window - b: an effective window in 1..window.
    return window - rng.integers(0, window, size=n)


def skipgram_pairs(ids: np.ndarray, sentence: np.ndarray, window: int, rng: np.random.Generator):
    """All (centre, context) pairs of one epoch, vectorised: two int64 arrays of equal length.

    Each position ``i`` gets an effective window ``b_i`` uniform in ``1..window``; every position
    ``j != i`` of the same sentence with ``|i - j| <= b_i`` is a context of ``i``. ``ids`` and
    ``sentence`` are the (already subsampled) corpus from :func:`encode_corpus`. The pairs come
    out grouped by offset; shuffle them before batching. Defined in chapter 03.
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    n = len(ids)
    eff = _reduced_windows(n, window, rng)
    centres, contexts = [], []
    for o in range(1, window + 1):  # one vectorised pass per offset, not a loop over words
        same = sentence[:-o] == sentence[o:] if o < n else np.zeros(0, bool)
        left = np.flatnonzero(same & (eff[:-o] >= o))  # centre i, context i + o
        right = np.flatnonzero(same & (eff[o:] >= o))  # centre i + o, context i
        centres += [ids[left], ids[right + o]]
        contexts += [ids[left + o], ids[right]]
    return np.concatenate(centres), np.concatenate(contexts)


def cbow_windows(ids: np.ndarray, sentence: np.ndarray, window: int, rng: np.random.Generator):
    """CBOW examples of one epoch: ``(centres (N,), contexts (N, 2*window), mask (N, 2*window))``.

    Row ``r`` holds the ids of the context words around centre ``r`` (the same dynamic window as
    :func:`skipgram_pairs`); ``mask`` marks the real ones (padding has id 0). Centres without any
    context word (a one-word sentence) are dropped. Defined in chapter 03.
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    n = len(ids)
    eff = _reduced_windows(n, window, rng)
    pos = np.arange(n)
    offsets = np.concatenate([np.arange(-window, 0), np.arange(1, window + 1)])  # (2w,)
    j = pos[:, None] + offsets[None, :]  # (n, 2w) context positions
    inside = (j >= 0) & (j < n)
    jc = np.clip(j, 0, max(n - 1, 0))
    mask = inside & (np.abs(offsets)[None, :] <= eff[:, None]) & (sentence[jc] == sentence[:, None])
    ctx = np.where(mask, ids[jc], 0)
    has = mask.any(axis=1)
    return ids[has], ctx[has], mask[has]


class Word2Vec(torch.nn.Module):
    """word2vec with negative sampling: skip-gram (``sg=True``) or CBOW (``sg=False``).

    Hyper-parameters and their defaults are gensim's: ``dim=100`` (gensim's ``vector_size``),
    ``window=5``, ``negative=5``, ``sample=1e-3``, ``alpha=0.025`` decayed linearly to
    ``min_alpha=1e-4``, ``epochs=5``, ``ns_exponent=0.75``; CBOW averages its context vectors
    (gensim's ``cbow_mean=1``). ``batch_size`` pairs (skip-gram) or windows (CBOW) are updated
    at once with plain SGD. ``vocab`` is a :class:`~minilib.text.Vocab` built from the
    training corpus (its ``counts`` drive subsampling and the noise distribution).

    After :meth:`fit`, ``W_in`` ``(V, dim)`` holds the word vectors and ``W_out`` ``(V, dim)`` the
    context vectors. Defined in chapter 03.
    """

    def __init__(self, vocab: Vocab, dim: int = 100, *, sg: bool = True, window: int = 5, negative: int = 5,
                 sample: float = 1e-3, alpha: float = 0.025, min_alpha: float = 1e-4, epochs: int = 5,
                 ns_exponent: float = 0.75, batch_size: int = 4096, seed: int = 0, device=None):
        super().__init__()
        if not isinstance(vocab, Vocab):
            raise TypeError(f"vocab must be a minilib.text.Vocab, got {type(vocab).__name__}: use Vocab.build(docs, min_count=5)")
        if len(vocab) < 2:
            raise ValueError(f"the vocabulary has {len(vocab)} word(s); word2vec needs at least 2 (lower min_count or add text)")
        for name, v in dict(dim=dim, window=window, negative=negative, epochs=epochs, batch_size=batch_size).items():
            if int(v) != v or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        self.vocab = vocab
        self.config = dict(dim=int(dim), sg=bool(sg), window=int(window), negative=int(negative), sample=float(sample),
                           alpha=float(alpha), min_alpha=float(min_alpha), epochs=int(epochs),
                           ns_exponent=float(ns_exponent), batch_size=int(batch_size), seed=int(seed))
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        g = torch.Generator().manual_seed(seed)
        # word2vec.c's initialisation: input vectors uniform in [-0.5/dim, 0.5/dim], output vectors zero
        # (gensim 4 draws them from twice that range; for CBOW that moved the scores by less than seed noise).
        W_in = (torch.rand(len(vocab), dim, generator=g) - 0.5) / dim
        self.W_in = torch.nn.Parameter(W_in.to(self.device), requires_grad=False)
        self.W_out = torch.nn.Parameter(torch.zeros(len(vocab), dim, device=self.device), requires_grad=False)
        self.history: dict[str, list[float]] = {"loss": []}

    # --- training -----------------------------------------------------------------------

    def _examples(self, ids, sentence, rng):
        """One epoch of shuffled training examples as torch tensors on the device."""
        c = self.config
        keep = subsample(ids, keep_probabilities(self.vocab.counts, c["sample"]), rng)
        ids, sentence = ids[keep], sentence[keep]
        if c["sg"]:
            centre, context = skipgram_pairs(ids, sentence, c["window"], rng)
            order = rng.permutation(len(centre))
            return (torch.from_numpy(centre[order]).to(self.device), torch.from_numpy(context[order]).to(self.device))
        centre, ctx, mask = cbow_windows(ids, sentence, c["window"], rng)
        order = rng.permutation(len(centre))
        return (torch.from_numpy(centre[order]).to(self.device), torch.from_numpy(ctx[order]).to(self.device),
                torch.from_numpy(mask[order]).to(self.device))

    def _inputs(self, words: torch.Tensor) -> torch.Tensor:
        """Input vectors of a batch of word ids ``(B,) -> (B, dim)`` (fastText overrides this)."""
        return torch.nn.functional.embedding(words, self.W_in)  # a faster gather than W_in[words] on CPU

    def _apply_input_grad(self, words: torch.Tensor, grad: torch.Tensor, lr: float) -> None:
        """SGD step on the input vectors: ``W_in[words] -= lr * grad`` with repeats summed."""
        self.W_in.index_add_(0, words, grad, alpha=-lr)

    def _negatives(self, n: int, k: int, gen: torch.Generator) -> torch.Tensor:
        # _table_total: the table's last entry as a Python int, read once per fit; reading it here
        # would make a GPU wait for the host at every batch.
        r = torch.randint(0, self._table_total, (n, k), generator=gen, device=self.device)
        return torch.searchsorted(self._table, r, right=True)  # (n, k) ids drawn from P_n

    def _step(self, v: torch.Tensor, target: torch.Tensor, negs: torch.Tensor, lr: float):
        """One negative-sampling update of the output vectors; returns (grad of v, summed loss as a
        0-d tensor on the device: turning it into a Python float would stall a GPU every batch).

        ``v`` (B, dim) input vectors, ``target`` (B,) true words, ``negs`` (B, k) noise words.
        Loss per example: -log s(v.u_target) - sum_j log s(-v.u_j); its gradients (chapter 03,
        eq. 03-grad) are (s(x) - label) times the other vector.
        """
        rows = torch.cat([target[:, None], negs], dim=1)  # (B, 1 + k)
        U = torch.nn.functional.embedding(rows, self.W_out)  # (B, 1 + k, dim)
        scores = (U * v[:, None, :]).sum(2)  # (B, 1 + k) dot products; faster than bmm for tiny matrices
        label = torch.zeros_like(scores)
        label[:, 0] = 1.0
        # gensim skips a noise word that happens to be the true word: give it zero weight.
        weight = torch.ones_like(scores)
        weight[:, 1:] = (negs != target[:, None]).to(scores.dtype)
        g = (torch.sigmoid(scores) - label) * weight  # (B, 1 + k) dLoss/dscore
        grad_v = torch.bmm(g[:, None, :], U).squeeze(1)  # (B, dim)
        self.W_out.index_add_(0, rows.reshape(-1), (g[:, :, None] * v[:, None, :]).reshape(-1, v.shape[1]), alpha=-lr)
        sign = 1.0 - 2.0 * label  # -log s(x) for the target, -log s(-x) for noise
        loss = (torch.nn.functional.softplus(sign * scores) * weight).sum()
        return grad_v, loss.detach()

    def fit(self, docs: Iterable[Sequence[str]], progress: bool = True, log_every: int = 50,
            cpu_threads: int | None = 1) -> dict:
        """Train on ``docs`` (token lists, e.g. ``data.load("book_corpus")``); returns ``history``.

        ``history["loss"]`` holds the mean loss per example over every ``log_every`` batches.
        On the CPU, torch runs with ``cpu_threads`` threads during training (``None``: torch's
        setting): our batches are many small operations, for which one thread is usually faster
        than several that wait for each other, and far faster when other programs share the cores.
        Training is deterministic for a given seed on the CPU. Defined in chapter 03.
        """
        before = torch.get_num_threads()
        if self.device.type == "cpu" and cpu_threads:
            torch.set_num_threads(cpu_threads)
        try:
            return self._fit(docs, progress, log_every)
        finally:
            torch.set_num_threads(before)

    def _fit(self, docs, progress, log_every):
        from tqdm.auto import tqdm

        c = self.config
        ids, sentence = encode_corpus(docs, self.vocab)
        if len(ids) < MIN_TOKENS:
            raise ValueError(f"the corpus has {len(ids)} in-vocabulary tokens; word2vec needs at least {MIN_TOKENS} "
                             "(give more text, or lower min_count when building the Vocab)")
        if len(np.unique(ids)) < 2:
            raise ValueError("the corpus holds only one distinct vocabulary word: there is nothing to contrast")
        self._table = torch.as_tensor(noise_table(self.vocab.counts, c["ns_exponent"]), device=self.device)
        self._table_total = int(self._table[-1])
        rng = np.random.default_rng(c["seed"])
        gen = torch.Generator(device=self.device).manual_seed(c["seed"])
        bs, k = c["batch_size"], c["negative"]
        self.history = {"loss": []}
        self.words_trained = 0
        bar = tqdm(total=c["epochs"], desc="word2vec" + (" sg" if c["sg"] else " cbow"), disable=not progress)
        for epoch in range(c["epochs"]):
            ex = self._examples(ids, sentence, rng)
            n = len(ex[0])
            if n == 0:
                raise ValueError(f"epoch {epoch} produced no training pairs: the corpus is too small "
                                 f"(at least {MIN_TOKENS} tokens in sentences longer than one word)")
            # The running loss stays on the device (float64, so the sum is the one Python floats
            # would give) and is read only every log_every batches.
            run_loss, run_n = torch.zeros((), dtype=torch.float64, device=self.device), 0
            for b, start in enumerate(range(0, n, bs)):
                # Linear decay over the whole run, measured in examples (gensim: in words).
                lr = c["alpha"] - (c["alpha"] - c["min_alpha"]) * (epoch + start / n) / c["epochs"]
                batch = [t[start : start + bs] for t in ex]
                if c["sg"]:
                    centre, context = batch
                    v = self._inputs(centre)  # (B, dim)
                    grad_v, loss = self._step(v, context, self._negatives(len(centre), k, gen), lr)
                    self._apply_input_grad(centre, grad_v, lr)
                else:
                    centre, ctx, mask = batch  # (B,), (B, 2w), (B, 2w)
                    m = mask.to(self.W_in.dtype)
                    count = m.sum(1, keepdim=True)  # (B, 1) context words per window
                    h = (torch.nn.functional.embedding(ctx, self.W_in) * m[:, :, None]).sum(1) / count  # (B, dim) mean of the context
                    grad_h, loss = self._step(h, centre, self._negatives(len(centre), k, gen), lr)
                    # gensim's cbow_mean=1 adds the full error to every context word (not divided by count).
                    g = (grad_h[:, None, :] * m[:, :, None]).reshape(-1, h.shape[1])
                    self.W_in.index_add_(0, ctx.reshape(-1), g, alpha=-lr)
                run_loss += loss
                run_n += len(centre)
                if (b + 1) % log_every == 0:
                    mean = float(run_loss) / run_n
                    self._check_diverged(mean, epoch, b)
                    self.history["loss"].append(mean)
                    run_loss, run_n = torch.zeros_like(run_loss), 0
            self._check_diverged(float(run_loss) / max(run_n, 1), epoch, b)
            self.words_trained += len(ids)
            bar.update(1)
        bar.close()
        if not self.history["loss"]:  # tiny corpora: fewer batches than log_every
            self.history["loss"].append(float(run_loss) / max(run_n, 1))
        return self.history

    def _check_diverged(self, mean_loss: float, epoch: int, batch: int) -> None:
        """Stop with advice when training has diverged.

        Random vectors score every pair near 0, a loss of ``(negative + 1) log 2`` per example;
        training lowers it. A mean ten times higher (or NaN) means the updates blew up.
        """
        c = self.config
        bound = 10 * (c["negative"] + 1) * math.log(2)
        if math.isfinite(mean_loss) and mean_loss <= bound:
            return
        raise FloatingPointError(
            f"word2vec diverged (mean loss {mean_loss:.3g} per example, random vectors give "
            f"{bound / 10:.2f}) by epoch {epoch}, batch {batch}: a batch of {c['batch_size']} examples updates "
            f"each of the {len(self.vocab)} words' vectors many times at once. Lower batch_size (to about "
            f"8 x the vocabulary size) or alpha (now {c['alpha']}).")

    # --- using the vectors ---------------------------------------------------------------

    def _id(self, word: str) -> int:
        try:
            return self.vocab.index(word)
        except KeyError as e:
            raise KeyError(f"{word!r} is out of vocabulary: word2vec has no vector for a word it never saw "
                           f"(or saw fewer than min_count times). {e.args[0]} For unseen words use "
                           "minilib.fasttext.FastText, whose .vector(word) builds one from character n-grams.") from None

    def vectors(self, kind: str = "in") -> np.ndarray:
        """The word vectors as a NumPy ``(V, dim)`` array: ``"in"`` (``W_in``, the usual choice),
        ``"out"`` (``W_out``) or ``"in+out"`` (their sum, Pennington et al. / "Two is better than one")."""
        if kind == "in":
            W = self.W_in
        elif kind == "out":
            W = self.W_out
        elif kind == "in+out":
            W = self.W_in + self.W_out
        else:
            raise ValueError(f"kind must be 'in', 'out' or 'in+out', got {kind!r}")
        return W.detach().cpu().numpy().copy()

    def vector(self, word: str) -> np.ndarray:
        """The ``(dim,)`` input vector of ``word``; a ``KeyError`` saying it is out of vocabulary otherwise."""
        return self.W_in[self._id(word)].detach().cpu().numpy().copy()

    def most_similar(self, word: str, k: int = 10, kind: str = "in") -> list[tuple[str, float]]:
        """The ``k`` nearest words by cosine, ``[(word, cosine), ...]``, ``word`` itself excluded."""
        from .similarity import nearest_words

        self._id(word)  # the out-of-vocabulary message of this chapter
        return nearest_words(word, self.vectors(kind), self.vocab, k=k)

    # --- saving ---------------------------------------------------------------------------

    def save(self, folder) -> Path:
        """Write ``model.safetensors`` (``W_in``, ``W_out``) and ``vocab.json`` (words, counts, config)."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().cpu().contiguous() for k, v in self._tensors().items()}, str(folder / "model.safetensors"))
        meta = dict(kind=type(self).__name__, config=self.config, words=self.vocab.itos,
                    counts=[int(x) for x in self.vocab.counts])
        (folder / "vocab.json").write_text(json.dumps(meta))
        return folder

    def _tensors(self) -> dict[str, torch.Tensor]:
        return {"W_in": self.W_in, "W_out": self.W_out}

    @classmethod
    def load(cls, folder, device=None) -> "Word2Vec":
        """Read a model written by :meth:`save`; a ``ValueError`` if the vocabulary and the
        tensors do not match (e.g. the files of two different models)."""
        from safetensors.torch import load_file

        folder = Path(folder)
        for f in ("model.safetensors", "vocab.json"):
            if not (folder / f).exists():
                raise FileNotFoundError(f"{folder / f} is missing: save a model with model.save({str(folder)!r})")
        meta = json.loads((folder / "vocab.json").read_text())
        if meta.get("kind") != cls.__name__:
            raise ValueError(f"{folder} holds a {meta.get('kind')} model; load it with that class")
        tensors = load_file(str(folder / "model.safetensors"))
        vocab = Vocab(meta["words"], meta["counts"])
        model = cls(vocab, **{k: v for k, v in meta["config"].items()}, device=device)
        expected = {k: tuple(v.shape) for k, v in model._tensors().items()}
        got = {k: tuple(v.shape) for k, v in tensors.items()}
        if expected != got:
            raise ValueError(f"vocabulary/embedding mismatch in {folder}: vocab.json describes tensors {expected} "
                             f"({len(vocab)} words) but model.safetensors holds {got}. The two files come from "
                             "different models: save them again together with model.save(folder).")
        with torch.no_grad():
            for k, v in model._tensors().items():
                v.copy_(tensors[k].to(v.device))
        return model

    def __repr__(self) -> str:
        c = self.config
        return (f"{type(self).__name__}({len(self.vocab)} words, dim={c['dim']}, {'skip-gram' if c['sg'] else 'CBOW'}, "
                f"window={c['window']}, negative={c['negative']}, epochs={c['epochs']})")
