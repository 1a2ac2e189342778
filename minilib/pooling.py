"""From token vectors to one vector per text: pooling, SIF weights, whitening, and two embedders.

Read it top to bottom, as chapter 07 builds it:

1. four ways to pool a transformer's token states ``(B, T, d)`` into ``(B, d)``, every one of
   them blind to padding: :func:`mean` (the mean of the tokens), :func:`max` (the largest value
   per dimension), :func:`cls` (the first token) and :func:`first_last` (the mean of the first and
   the last layer's token states, averaged), plus :func:`weighted_mean` (a mean with a weight per
   token, e.g. SIF's);
2. SIF (Arora et al. 2017): :func:`sif_weights` gives a word of probability ``p(w)`` the weight
   ``a / (a + p(w))``, and :func:`principal_components` / :func:`remove_components` take the
   common direction out of a set of text vectors;
3. :class:`Whitening` (Su et al. 2021): subtract the mean and multiply by ``W = U Lambda^{-1/2}``, so
   the vectors of the fit data have identity covariance (optionally keeping only ``k`` dimensions);
4. two embedders with the book's ``encode(texts) -> (n, d)`` interface: :class:`WordVectorEmbedder`
   (averaged, or SIF-weighted, static word vectors) and :class:`TransformerEmbedder` (a
   ``minilib.transformer.Transformer``, its tokenizer and one of the poolings above).

The pooling functions take torch tensors; the SIF helpers, :class:`Whitening` and the embedders'
outputs are NumPy. Every embedder checks its output: a NaN or an infinity raises a
``FloatingPointError`` that names the texts and the likely cause instead of flowing silently into
a similarity matrix.

Defined in chapter 07.
"""
from __future__ import annotations

import builtins
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from .text import text_list, tokenize
from .transformer import Transformer, mean_pool

__all__ = [
    "POOLINGS", "mean", "weighted_mean", "max", "cls", "first_last", "pool", "check_finite", "sif_weights",
    "principal_components", "remove_components", "Whitening", "WordVectorEmbedder", "TransformerEmbedder",
]

#: The names :func:`pool` accepts: mean, max, [CLS] and the average of the first and last layers' means.
POOLINGS = ("mean", "max", "cls", "first_last")


# --- checks -----------------------------------------------------------------------------------


def _check(hidden: torch.Tensor, attention_mask: torch.Tensor, name: str) -> torch.Tensor:
    """Validate ``hidden (B, T, d)`` and ``attention_mask (B, T)``; return the mask as bool."""
    if not isinstance(hidden, torch.Tensor) or not isinstance(attention_mask, torch.Tensor):
        raise TypeError(f"{name} takes torch tensors; got {type(hidden).__name__} and {type(attention_mask).__name__} "
                        "(convert with torch.as_tensor)")
    if hidden.dim() != 3:
        raise ValueError(f"{name} expects hidden states of shape (batch, seq, dim), got {tuple(hidden.shape)}; "
                         "for one text use hidden[None] and mask[None]")
    if tuple(attention_mask.shape) != tuple(hidden.shape[:2]):
        raise ValueError(f"{name}: attention_mask must be (batch, seq) = {tuple(hidden.shape[:2])}, got "
                         f"{tuple(attention_mask.shape)}; pass the mask the tokenizer returned with these ids")
    mask = attention_mask.to(hidden.device).bool()
    # Only real tokens matter: padding positions may hold anything.
    if not torch.isfinite(hidden.masked_fill(~mask[:, :, None], 0.0)).all():
        raise FloatingPointError(f"{name}: the hidden states hold NaN or inf at real (non-padding) tokens. Likely "
                                 "cause: the model's weights are not finite (a diverged training run: check "
                                 "all(torch.isfinite(p).all() for p in model.parameters())) or a half-precision "
                                 "overflow (run the model in float32)")
    return mask


def check_finite(X, what: str = "embeddings", texts: Sequence[str] | None = None) -> None:
    """Raise a ``FloatingPointError`` if the array ``X (n, d)`` holds a NaN or an infinity.

    The message names the first offending rows (and their texts, if given) and the usual causes.
    Defined in chapter 07.
    """
    X = X.detach().cpu().numpy() if isinstance(X, torch.Tensor) else np.asarray(X)
    bad = ~np.isfinite(X)
    if not bad.any():
        return
    rows = np.flatnonzero(bad.reshape(len(X), -1).any(axis=1)) if X.ndim > 1 else np.flatnonzero(bad)
    shown = ", ".join(str(int(r)) + (f" ({texts[r][:40]!r})" if texts is not None else "") for r in rows[:5])
    raise FloatingPointError(
        f"{what}: {len(rows)} row(s) hold NaN or inf, e.g. row {shown}. Likely causes: word or model weights "
        "that are not finite (a training run that diverged: lower the learning rate and retrain), a whitening "
        "fitted on too few or duplicated vectors, or a half-precision overflow (compute in float32)")


# --- pooling token states -------------------------------------------------------------------------


def mean(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of the token vectors, padding left out: ``(B, T, d), (B, T) -> (B, d)``.

    Equals :func:`minilib.transformer.mean_pool` (chapter 06), which sentence-transformers also
    uses; a row without any token gives zeros. Defined in chapter 07.
    """
    mask = _check(hidden, attention_mask, "pooling.mean")
    # Zero the padding first: mean_pool multiplies it by 0, and 0 * NaN would still be NaN.
    return mean_pool(hidden.masked_fill(~mask[:, :, None], 0.0), attention_mask.to(hidden.device))


def weighted_mean(hidden: torch.Tensor, attention_mask: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``sum_t w_t h_t / sum_t w_t`` over the real tokens: ``(B, T, d), (B, T), (B, T) -> (B, d)``.

    With SIF weights ``a / (a + p(token))`` per token this is Arora et al.'s weighted average
    applied to contextual token vectors; with all weights 1 it is :func:`mean`. A row whose
    tokens all weigh 0 gives zeros. Defined in chapter 07.
    """
    mask = _check(hidden, attention_mask, "pooling.weighted_mean")
    if tuple(weights.shape) != tuple(mask.shape):
        raise ValueError(f"weights must be (batch, seq) = {tuple(mask.shape)}, one per token, got {tuple(weights.shape)}")
    w = weights.to(hidden.device, hidden.dtype).masked_fill(~mask, 0.0).unsqueeze(-1)  # (B, T, 1)
    return (hidden.masked_fill(~mask[:, :, None], 0.0) * w).sum(dim=1) / w.sum(dim=1).clamp_min(1e-12)


def max(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:  # noqa: A001 (the pooling's name)
    """Largest value of each dimension over the tokens: ``(B, T, d), (B, T) -> (B, d)``.

    Padding positions are set to ``-inf`` first, so padding never wins, however large its values;
    a row without any token gives zeros. Defined in chapter 07.
    """
    mask = _check(hidden, attention_mask, "pooling.max")
    out = hidden.masked_fill(~mask[:, :, None], float("-inf")).amax(dim=1)  # (B, d)
    return out.masked_fill(~mask.any(dim=1, keepdim=True), 0.0)


def cls(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The vector of each row's first real token: ``(B, T, d), (B, T) -> (B, d)``.

    With a BERT tokenizer that token is ``[CLS]``, which BERT's next-sentence objective trained
    as a summary; a tokenizer without one (chapter 06's byte-level BPE) gives the first word
    piece. Left padding is handled: the first position whose mask is 1 is used. A row without any
    token gives zeros. Defined in chapter 07.
    """
    mask = _check(hidden, attention_mask, "pooling.cls")
    first = mask.to(torch.uint8).argmax(dim=1)  # (B,) index of the first 1 (argmax returns the first maximum)
    out = hidden[torch.arange(hidden.shape[0], device=hidden.device), first]  # (B, d)
    return out.masked_fill(~mask.any(dim=1, keepdim=True), 0.0)


def first_last(hidden_states: Sequence[torch.Tensor], attention_mask: torch.Tensor, first: int = 1) -> torch.Tensor:
    """Mean pooling of ``(hidden_states[first] + hidden_states[-1]) / 2``: ``-> (B, d)``.

    ``hidden_states`` is the list a :class:`~minilib.transformer.Transformer` returns with
    ``output_hidden_states=True``: the embedding output, then each layer's output, all
    ``(B, T, d)``. Su et al. (2021) call this "first-last avg". Which "first"? We use
    ``first=1``, the output of the first transformer layer, the literal meaning and what
    SimCSE's code uses since it was corrected; the STS-B numbers published for BERT
    "first-last avg" (53.9 in SimCSE's table, BERT-flow's "last2avg") were computed with
    ``hidden_states[0]``, the embedding output, a bug found later. ``first=0`` gives that variant.
    Defined in chapter 07.
    """
    if isinstance(hidden_states, torch.Tensor) or len(hidden_states) < 2:
        raise ValueError("first_last needs the list of hidden states (embedding output, layer 1, ..., layer L): "
                         "call the model with output_hidden_states=True and pass its second output")
    if not -len(hidden_states) <= first < len(hidden_states):
        raise ValueError(f"first={first} is not a layer index: hidden_states has {len(hidden_states)} entries")
    a, b = hidden_states[first], hidden_states[-1]
    if a.shape != b.shape:
        raise ValueError(f"first_last: layers {first} and -1 have different shapes {tuple(a.shape)}, {tuple(b.shape)}")
    return mean((a + b) / 2, attention_mask)


def pool(name: str, hidden: torch.Tensor, hidden_states: Sequence[torch.Tensor] | None,
         attention_mask: torch.Tensor, first: int = 1, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Dispatch to the pooling called ``name`` (one of :data:`POOLINGS`): ``-> (B, d)``.

    ``weights (B, T)``, if given, turn the two averaging poolings (``mean``, ``first_last``) into
    :func:`weighted_mean`; ``max`` and ``cls`` do not average and refuse them. Defined in chapter 07.
    """
    if name not in POOLINGS:
        raise ValueError(f"unknown pooling {name!r}: choose one of {POOLINGS}")
    if weights is not None and name in ("max", "cls"):
        raise ValueError(f"token weights apply to the averaging poolings 'mean' and 'first_last', not {name!r}")
    if name == "first_last":
        if hidden_states is None or isinstance(hidden_states, torch.Tensor) or len(hidden_states) < 2:
            raise ValueError("pooling 'first_last' needs hidden_states (output_hidden_states=True)")
        if weights is None:
            return first_last(hidden_states, attention_mask, first=first)
        hidden = (hidden_states[first] + hidden_states[-1]) / 2
    if weights is not None:
        return weighted_mean(hidden, attention_mask, weights)
    return {"mean": mean, "max": max, "cls": cls}[name](hidden, attention_mask)


# --- SIF: smooth inverse frequency -----------------------------------------------------------------


def sif_weights(counts: Mapping[str, int] | np.ndarray, a: float = 1e-3) -> dict[str, float] | np.ndarray:
    """Arora et al.'s (2017) word weights ``a / (a + p(w))``, with ``p(w) = count(w) / total``.

    ``counts`` is a mapping word -> count (returns a dict word -> weight) or an array of counts
    ``(V,)`` (returns an array ``(V,)``). A frequent word (``p >> a``) weighs about ``a / p``, a
    rare one (``p << a``) about 1. ``a`` is usually between 1e-4 and 1e-3. Defined in chapter 07.
    """
    if not a > 0:
        raise ValueError(f"a must be > 0 (typical values 1e-4 .. 1e-3), got {a}")
    if isinstance(counts, Mapping):
        if not counts:
            raise ValueError("counts is empty: give word counts from a corpus, e.g. collections.Counter(tokens)")
        words = list(counts)
        w = sif_weights(np.array([counts[k] for k in words], dtype=np.float64), a)
        return dict(zip(words, w.tolist()))
    c = np.asarray(counts, dtype=np.float64)
    if c.ndim != 1 or len(c) == 0 or (c < 0).any() or c.sum() == 0:
        raise ValueError("counts must be a non-empty 1-D array of non-negative counts with a positive sum")
    return a / (a + c / c.sum())


def principal_components(X, n: int = 1) -> np.ndarray:
    """The ``n`` top right singular vectors of ``X (m, d)``, *not* centred, as rows: ``(n, d)``.

    This is SIF's "common component": Arora et al. take the first singular vector of the
    matrix of sentence vectors as it is (their code runs scikit-learn's ``TruncatedSVD``, which
    does not subtract the mean). Rows of zeros (texts without a known word) are ignored. The sign
    of each direction is fixed (largest entry positive) so results are repeatable.
    Defined in chapter 07.
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"X must be (n_texts, dim), got shape {X.shape}")
    if not 1 <= n <= min(X.shape):
        raise ValueError(f"n must be between 1 and min(n_texts, dim) = {min(X.shape)}, got {n}")
    X = X[np.abs(X).sum(axis=1) > 0]
    if len(X) < n:
        raise ValueError(f"only {len(X)} non-zero rows to find {n} component(s) from: fit on more texts")
    _, _, Vt = np.linalg.svd(X, full_matrices=False)
    top = Vt[:n]
    signs = np.sign(top[np.arange(n), np.abs(top).argmax(axis=1)])
    return top * signs[:, None]


def remove_components(X, components) -> np.ndarray:
    """``X - X U^T U`` for orthonormal rows ``U (k, d)``: project the directions out of ``X (n, d)``.

    Defined in chapter 07.
    """
    X = np.asarray(X, dtype=np.float64)
    U = np.atleast_2d(np.asarray(components, dtype=np.float64))
    if X.ndim != 2 or U.shape[1] != X.shape[1]:
        raise ValueError(f"X (n, d) and components (k, d) must share d, got {X.shape} and {U.shape}")
    return X - (X @ U.T) @ U


# --- whitening --------------------------------------------------------------------------------------


class Whitening:
    """Su et al.'s (2021) whitening: ``x -> (x - mu) W`` with ``W = U Lambda^{-1/2}`` (first ``k`` columns).

    :meth:`fit` takes the vectors ``X (n, d)`` to whiten, computes their mean ``mu (d,)`` and
    covariance ``Sigma = (X - mu)^T (X - mu) / n``, and its eigen-decomposition (SVD)
    ``Sigma = U Lambda U^T``. Then :meth:`transform` maps any ``(m, d)`` to ``(m, k)``; on the fit data
    the result has zero mean and identity covariance. ``k < d`` keeps the ``k`` directions of
    largest variance (Su et al.'s dimension reduction). Directions with (near) zero variance
    cannot be scaled to unit variance: :meth:`fit` refuses them and says to lower ``k`` or fit on
    more vectors. Attributes after fit: ``mu (d,)``, ``W (d, k)``, ``eigenvalues (d,)``.

    Defined in chapter 07.
    """

    def __init__(self):
        self.mu: np.ndarray | None = None
        self.W: np.ndarray | None = None
        self.eigenvalues: np.ndarray | None = None

    @staticmethod
    def _array(X, name: str) -> np.ndarray:
        X = X.detach().cpu().numpy() if isinstance(X, torch.Tensor) else np.asarray(X)
        if X.ndim != 2:
            raise ValueError(f"{name} must be a matrix (n, d), got shape {X.shape}")
        check_finite(X, name)
        return X.astype(np.float64)

    def fit(self, X, k: int | None = None) -> "Whitening":
        """Compute ``mu``, ``W`` and ``eigenvalues`` from ``X (n, d)``, keeping ``k`` dimensions (default: all
        ``d``); returns ``self``. Needs ``n >= 2``; a kept direction of (near) zero variance raises a ``ValueError``."""
        X = self._array(X, "Whitening.fit input")
        n, d = X.shape
        k = d if k is None else k
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= d:
            raise ValueError(f"k must be an int between 1 and dim = {d}, got {k!r}")
        if n < 2:
            raise ValueError(f"whitening needs at least 2 vectors to estimate a covariance, got {n}")
        self.mu = X.mean(axis=0)
        Xc = X - self.mu
        cov = Xc.T @ Xc / n  # (d, d)
        U, S, _ = np.linalg.svd(cov)  # cov is symmetric PSD: its SVD is its eigen-decomposition, sorted
        # The smallest kept variance must be clearly above round-off, or 1/sqrt(S) explodes.
        floor = S[0] * 1e-10
        if S[k - 1] <= floor:
            rank = int((S > floor).sum())
            raise ValueError(f"the fit vectors span only {rank} of {d} dimensions (n = {n} vectors): whitening "
                             f"cannot give the other directions unit variance. Fit on more (n > {d}) vectors, "
                             f"or keep fewer dimensions: fit(X, k={rank}) or less")
        self.eigenvalues = S
        self.W = U[:, :k] / np.sqrt(S[:k])  # (d, k): rotate to the principal axes, then rescale each
        return self

    @property
    def k(self) -> int:
        """The output width ``k`` (columns of ``W``); a ``RuntimeError`` before :meth:`fit`."""
        if self.W is None:
            raise RuntimeError("Whitening is not fitted: call fit(X) first")
        return self.W.shape[1]

    def transform(self, X) -> np.ndarray:
        """``(X - mu) W``: ``(m, d) -> (m, k)`` float32."""
        if self.W is None:
            raise RuntimeError("Whitening is not fitted: call fit(X) first, with the vectors to whiten")
        X = self._array(X, "Whitening.transform input")
        if X.shape[1] != self.W.shape[0]:
            raise ValueError(f"X has dimension {X.shape[1]}, the whitening was fitted on {self.W.shape[0]}")
        return ((X - self.mu) @ self.W).astype(np.float32)

    def fit_transform(self, X, k: int | None = None) -> np.ndarray:
        """:meth:`fit` on ``X (n, d)``, then :meth:`transform` it: ``(n, k)`` float32."""
        return self.fit(X, k).transform(X)


# --- averaged word vectors --------------------------------------------------------------------------


class WordVectorEmbedder:
    """A text's vector as the (weighted) average of its words' static vectors.

    ``vectors (V, d)`` and ``words`` (``V`` strings) are any word vectors (GloVe, chapter 03's
    word2vec). ``weighting="mean"`` averages the vectors of the known words of a text;
    ``"sif"`` weighs each by ``a / (a + p(w))`` (:func:`sif_weights`), with ``p`` from ``counts``
    (a mapping word -> count, or an array aligned with ``words``; a word without a count gets
    ``p = 0``, weight 1). Both divide by the number of known words, as Arora et al. do.
    ``remove_pc=1`` then projects out the first principal component of the texts given to
    :meth:`fit` (SIF's "common discourse" direction). ``tokenizer`` maps a text to tokens
    (default: the book's :func:`minilib.text.tokenize`).

    ``encode(texts) -> (n, d)`` float32 (L2-normalised rows if ``normalize``); a text with no known
    word gives a zero row and is counted in ``last_unknown``; ``encode([])`` is ``(0, d)``.

    Defined in chapter 07.
    """

    WEIGHTINGS = ("mean", "sif")

    def __init__(self, vectors, words: Sequence[str], weighting: str = "mean",
                 counts: Mapping[str, int] | np.ndarray | None = None, a: float = 1e-3, remove_pc: int = 0,
                 tokenizer: Callable[[str], list[str]] = tokenize, normalize: bool = False):
        V = vectors.detach().cpu().numpy() if isinstance(vectors, torch.Tensor) else np.asarray(vectors)
        if V.ndim != 2 or V.shape[0] == 0:
            raise ValueError(f"vectors must be a non-empty (V, dim) matrix, got shape {V.shape}")
        words = list(words)
        if len(words) != V.shape[0]:
            raise ValueError(f"{len(words)} words but {V.shape[0]} vectors: words[i] must name row i of vectors")
        check_finite(V, "word vectors")
        if weighting not in self.WEIGHTINGS:
            raise ValueError(f"unknown weighting {weighting!r}: choose one of {self.WEIGHTINGS}")
        if isinstance(remove_pc, bool) or not isinstance(remove_pc, (int, np.integer)) or remove_pc < 0:
            raise ValueError(f"remove_pc must be an int >= 0 (0 = none, 1 = SIF's first component), got {remove_pc!r}")
        if not callable(tokenizer):
            raise TypeError("tokenizer must be a function text -> list of tokens")
        self.vectors = V.astype(np.float32)
        self.words = words
        self.index: dict[str, int] = {}
        for i, w in enumerate(words):
            self.index.setdefault(w, i)  # a repeated word keeps its first row
        self.weighting, self.a, self.remove_pc = weighting, float(a), int(remove_pc)
        self.tokenizer, self.normalize = tokenizer, normalize
        self.weights = np.ones(len(words), dtype=np.float64)  # (V,) weight of each row
        if weighting == "sif":
            if counts is None:
                raise ValueError("weighting='sif' needs counts: word frequencies from a corpus, e.g. "
                                 "collections.Counter(token for doc in docs for token in doc), or vocab.counts "
                                 "aligned with words")
            if isinstance(counts, Mapping):
                values = np.array(list(counts.values()), dtype=np.float64)
                if (values < 0).any() or not np.isfinite(values).all() or values.sum() <= 0:
                    bad = next((w for w, c in counts.items() if not 0 <= c < np.inf), None)
                    raise ValueError("counts must be non-negative word counts with a positive total"
                                     + (f"; got {counts[bad]!r} for {bad!r}" if bad is not None else ""))
                total = float(values.sum())
                p = np.array([counts.get(w, 0) for w in words], dtype=np.float64) / total
                self.weights = self.a / (self.a + p)
            else:
                c = np.asarray(counts)
                if c.shape != (len(words),):
                    raise ValueError(f"counts as an array must be aligned with words: shape ({len(words)},), "
                                     f"got {c.shape}; or pass a mapping word -> count")
                self.weights = sif_weights(c, self.a)
        self.components_: np.ndarray | None = None
        self.last_unknown = 0

    @property
    def dim(self) -> int:
        """The width ``d`` of the word vectors, and so of the text vectors."""
        return self.vectors.shape[1]

    def average(self, texts: Sequence[str]) -> np.ndarray:
        """The weighted averages before any component removal: ``(n, d)`` float64."""
        texts = text_list(texts)
        rows, cols, vals, unknown = [], [], [], 0
        for r, t in enumerate(texts):
            ids = [self.index[w] for w in self.tokenizer(t) if w in self.index]
            if not ids:
                unknown += 1
                continue
            rows += [r] * len(ids)
            cols += ids
            vals += (self.weights[ids] / len(ids)).tolist()  # sum_w weight(w) v_w / |known words|
        self.last_unknown = unknown
        S = sp.csr_matrix((vals, (rows, cols)), shape=(len(texts), len(self.words)))  # (n, V), repeats summed
        return np.asarray(S @ self.vectors.astype(np.float64))

    def fit(self, texts: Sequence[str]) -> "WordVectorEmbedder":
        """Learn the ``remove_pc`` common direction(s) from these texts; a no-op when ``remove_pc=0``."""
        if self.remove_pc:
            X = self.average(texts)
            if (np.abs(X).sum(axis=1) > 0).sum() < self.remove_pc:
                raise ValueError(f"fit needs at least {self.remove_pc} text(s) with a known word")
            self.components_ = principal_components(X, self.remove_pc)
        return self

    def encode(self, texts: Sequence[str], batch_size: int = 1024) -> np.ndarray:
        """``(n, d)`` float32 text vectors (``batch_size`` is accepted for the common interface)."""
        texts = text_list(texts)
        if not texts:
            self.last_unknown = 0
            return np.zeros((0, self.dim), dtype=np.float32)
        if self.remove_pc and self.components_ is None:
            raise RuntimeError(f"remove_pc={self.remove_pc}: call fit(texts) first to find the common component "
                               "(e.g. on the texts you will encode, as Arora et al. do)")
        X = self.average(texts)
        if self.components_ is not None:
            X = remove_components(X, self.components_)  # zero rows stay zero
        if self.normalize:
            X = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
        check_finite(X, "WordVectorEmbedder.encode", texts)
        return X.astype(np.float32)

    def __repr__(self) -> str:
        return (f"WordVectorEmbedder({len(self.words)} words, dim={self.dim}, weighting={self.weighting!r}, "
                f"remove_pc={self.remove_pc})")


# --- pooled transformer states ----------------------------------------------------------------------


class TransformerEmbedder:
    """A text embedder from a :class:`~minilib.transformer.Transformer`, its tokenizer and a pooling.

    ``model`` is any minilib ``Transformer`` (the real MiniLM from ``transformer.load_minilm()``, or
    chapter 06's encoder ``transformer.book_models("encoder")[0].encoder``); ``tokenizer`` has
    ``encode_batch(texts, max_len=..., truncate=True) -> (ids, attention_mask)``. ``pooling`` is one of
    :data:`POOLINGS` (``first`` picks the "first" layer of ``first_last``). ``token_weights``, an array
    ``(vocab_size,)`` of per-token weights (e.g. SIF's ``a / (a + p(token))``), turns ``mean`` and
    ``first_last`` into weighted means. Texts longer than ``max_len`` tokens (default: the model's) are
    truncated, as sentence-transformers does; with ``long_texts="chunk"`` they are cut at spaces into
    windows of at most ``max_len`` tokens, each window is encoded, and the windows' pooled vectors are
    combined (a token-weighted mean for mean and first-last, the maximum for max, the first window for
    cls). A fitted :class:`Whitening` is applied after pooling (:meth:`fit_whitening` fits one), then
    rows are L2-normalised if ``normalize``.

    ``encode(texts, batch_size=32) -> (n, d)`` float32 (``(n, k)`` with a ``k``-dimensional whitening);
    ``encode([])`` is ``(0, d)``; NaN or inf in the output raises a ``FloatingPointError``.
    :meth:`pooled_many` runs the model once and returns several poolings of the same texts.

    Defined in chapter 07.
    """

    LONG_TEXTS = ("truncate", "chunk")

    def __init__(self, model: Transformer, tokenizer, pooling: str = "mean", normalize: bool = True,
                 max_len: int | None = None, device: str | torch.device | None = None,
                 whitening: Whitening | None = None, first: int = 1, long_texts: str = "truncate",
                 token_weights=None):
        if not isinstance(model, Transformer):
            hint = " (for a MaskedLM pass model.encoder)" if hasattr(model, "encoder") else ""
            raise TypeError(f"model must be a minilib.transformer.Transformer, got {type(model).__name__}{hint}")
        if not hasattr(tokenizer, "encode_batch"):
            raise TypeError("tokenizer needs an encode_batch(texts, max_len=..., truncate=True) method "
                            "(minilib.bpe.WordPiece or ByteBPE)")
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}: choose one of {POOLINGS}")
        if long_texts not in self.LONG_TEXTS:
            raise ValueError(f"long_texts must be one of {self.LONG_TEXTS}, got {long_texts!r}")
        if whitening is not None and not isinstance(whitening, Whitening):
            raise TypeError(f"whitening must be a fitted minilib.pooling.Whitening or None, got {type(whitening).__name__}")
        if whitening is not None and whitening.W is None:
            raise ValueError("whitening is not fitted: call whitening.fit(X) on vectors of this embedder first")
        if max_len is not None and (isinstance(max_len, bool) or not isinstance(max_len, int) or max_len < 2):
            raise ValueError(f"max_len must be an int >= 2 or None, got {max_len!r}")
        if not -(model.config.n_layers + 1) <= first <= model.config.n_layers:
            raise ValueError(f"first={first} is not a layer of this {model.config.n_layers}-layer model")
        if token_weights is not None:
            token_weights = np.asarray(token_weights, dtype=np.float64)
            if token_weights.shape != (model.config.vocab_size,) or (token_weights < 0).any():
                raise ValueError(f"token_weights must be non-negative, one per token id: shape "
                                 f"({model.config.vocab_size},), got {token_weights.shape}")
            if pooling in ("max", "cls"):
                raise ValueError(f"token_weights apply to the averaging poolings 'mean' and 'first_last', not {pooling!r}")
            token_weights = torch.from_numpy(token_weights)
        self.model, self.tokenizer, self.pooling = model, tokenizer, pooling
        self.normalize, self.whitening, self.first, self.long_texts = normalize, whitening, first, long_texts
        self.token_weights = token_weights
        self.max_len = builtins.min(max_len or model.config.max_len, model.config.max_len)
        self.device = torch.device(device) if device is not None else next(model.parameters()).device

    @property
    def dim(self) -> int:
        """The width of the text vectors: the whitening's ``k`` if a fitted one is set, else the model's ``d_model``."""
        return self.whitening.k if self.whitening is not None and self.whitening.W is not None \
            else self.model.config.d_model

    def _pieces(self, texts: list[str]) -> tuple[list[str], np.ndarray]:
        """The texts, or their windows with ``long_texts="chunk"``, and the text each piece belongs to."""
        if self.long_texts == "truncate":
            return texts, np.arange(len(texts))
        pieces, owner = [], []
        budget = self.max_len - 2  # room for a tokenizer's [CLS]/[SEP]
        for i, t in enumerate(texts):
            words = t.split()
            n_tok = len(self.tokenizer.encode(t))
            if n_tok <= budget or len(words) <= 1:
                pieces.append(t)
                owner.append(i)
                continue
            # Words per window from this text's own tokens-per-word ratio, with a 10 % margin; a window
            # that still runs over is truncated by encode_batch (a few tokens lost, never an error).
            per = builtins.max(1, int(0.9 * budget * len(words) / n_tok))
            for s in range(0, len(words), per):
                pieces.append(" ".join(words[s:s + per]))
                owner.append(i)
        return pieces, np.array(owner)

    @torch.no_grad()
    def pooled_many(self, texts: Sequence[str], poolings: Sequence[str] = POOLINGS,
                    batch_size: int = 32) -> dict[str, np.ndarray]:
        """Several poolings of the same texts from one run of the model: ``{name: (n, d_model)}`` float32,
        before whitening and normalisation (``token_weights`` and ``first`` apply as in :meth:`encode`)."""
        texts = text_list(texts)
        for name in poolings:
            if name not in POOLINGS:
                raise ValueError(f"unknown pooling {name!r}: choose one of {POOLINGS}")
            if self.token_weights is not None and name in ("max", "cls"):
                raise ValueError(f"token_weights apply to 'mean' and 'first_last', not {name!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        d = self.model.config.d_model
        if not texts:
            return {name: np.zeros((0, d), dtype=np.float32) for name in poolings}
        pieces, owner = self._pieces(texts)
        want_all = "first_last" in poolings
        was_training = self.model.training
        self.model.eval()  # no dropout: the same text always gets the same vector
        vecs: dict[str, list[torch.Tensor]] = {name: [] for name in poolings}
        sizes = []
        # Batch pieces of similar length together (longest first): less padding, the same vectors.
        order = sorted(range(len(pieces)), key=lambda j: -len(pieces[j]))
        try:
            for start in range(0, len(pieces), batch_size):
                batch = [pieces[j] for j in order[start:start + batch_size]]
                ids, mask = self.tokenizer.encode_batch(batch, max_len=self.max_len, truncate=True)
                ids, mask = ids.to(self.device), mask.to(self.device)
                out = self.model(ids, attention_mask=mask, output_hidden_states=want_all)
                last, hidden = out if want_all else (out, None)
                w = self.token_weights[ids.cpu()].to(self.device) if self.token_weights is not None else None
                for name in poolings:
                    vecs[name].append(pool(name, last, hidden, mask, first=self.first, weights=w).float().cpu())
                # A window's weight in the combination: its number of tokens (or their total weight).
                sizes.append((w.cpu() * mask.cpu()).sum(dim=1) if w is not None else mask.sum(dim=1).cpu())
        finally:
            self.model.train(was_training)
        back = np.argsort(order)  # undo the sort
        size = torch.cat(sizes).double().numpy()[back]  # (n_pieces,)
        result = {}
        for name in poolings:
            V = torch.cat(vecs[name]).double().numpy()[back]  # (n_pieces, d)
            if len(pieces) == len(texts):
                X = V
            else:  # combine each text's windows
                X = np.zeros((len(texts), d))
                for i in range(len(texts)):
                    rows = np.flatnonzero(owner == i)
                    if name == "max":
                        X[i] = V[rows].max(axis=0)
                    elif name == "cls":
                        X[i] = V[rows[0]]
                    else:  # a size-weighted mean of window means = the mean over all the text's tokens
                        X[i] = size[rows] @ V[rows] / builtins.max(size[rows].sum(), 1e-12)
            check_finite(X, f"TransformerEmbedder ({name} pooling)", texts)
            result[name] = X.astype(np.float32)
        return result

    def pooled(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """Pooled vectors before whitening and normalisation: ``(n, d_model)`` float32."""
        return self.pooled_many(texts, [self.pooling], batch_size)[self.pooling]

    def fit_whitening(self, texts: Sequence[str], k: int | None = None, batch_size: int = 32) -> "TransformerEmbedder":
        """Fit a :class:`Whitening` on the pooled vectors of ``texts`` and use it from now on."""
        self.whitening = Whitening().fit(self.pooled(texts, batch_size), k)
        return self

    def encode(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """``(n, d)`` float32 text vectors: pooled, whitened (if a whitening is set), normalised (if asked)."""
        texts = text_list(texts)
        X = self.pooled(texts, batch_size)
        if self.whitening is not None:
            X = self.whitening.transform(X) if len(X) else np.zeros((0, self.dim), dtype=np.float32)
        if self.normalize and len(X):
            X = F.normalize(torch.from_numpy(X).double(), dim=1).numpy()
        check_finite(X, "TransformerEmbedder.encode", texts)
        return np.asarray(X, dtype=np.float32)

    def __repr__(self) -> str:
        c = self.model.config
        return (f"TransformerEmbedder({c.n_layers} layers, d={c.d_model}, pooling={self.pooling!r}, "
                f"whitening={'k=%d' % self.whitening.k if self.whitening is not None else None}, "
                f"normalize={self.normalize})")
