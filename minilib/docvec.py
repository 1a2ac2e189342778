"""Document vectors trained for documents: PV-DBOW paragraph vectors and LDA topic proportions.

Chapter 07 turns word vectors into document vectors by averaging. This module learns a vector
for each document directly, in two very different ways:

1. :class:`PVDBOW`, the "distributed bag of words" paragraph vector of Le & Mikolov (2014): skip-gram
   with negative sampling (chapter 03) in which the *document* plays the centre word and predicts
   every word it contains. The noise distribution and frequent-word subsampling are chapter 03's
   (``minilib.word2vec``); training is batched PyTorch SGD, like our word2vec. A new document gets
   its vector by :meth:`PVDBOW.infer`: the same objective with the word weights frozen.
2. :class:`LDA`, latent Dirichlet allocation (Blei et al. 2003) fitted by batch variational Bayes
   (Hoffman et al. 2010 with the whole corpus as one batch): the algorithm of scikit-learn's
   ``LatentDirichletAllocation(learning_method="batch")``, written with whole-corpus array
   operations instead of a loop over documents. A document's vector is its topic proportions.

Defined in chapter 07.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
import torch
from scipy.special import gammaln, logsumexp, psi

from .text import Vocab, tokenize
from .word2vec import keep_probabilities, noise_table, subsample

__all__ = ["PVDBOW", "LDA", "digamma_series", "dirichlet_expectation"]


# --- PV-DBOW -------------------------------------------------------------------------------------


class PVDBOW:
    """Paragraph vectors, distributed bag of words: each document's vector predicts its words.

    For a document ``d`` with vector ``D[d]`` and a word ``w`` in it, the loss is chapter 03's
    negative-sampling loss with the document in the centre word's place::

        -log s(D[d] . U[w]) - sum_{j=1..negative} log s(-D[d] . U[n_j]),   n_j ~ P_n (unigram^0.75)

    ``U (V, dim)`` are output word vectors, learned with the documents. There is no context window:
    every (subsampled) word of the document is a target, which is gensim's ``Doc2Vec(dm=0)`` with
    its default ``dbow_words=0``. Hyper-parameters and defaults are gensim's: ``dim`` (gensim's
    ``vector_size``), ``negative=5``, ``sample=1e-3``, ``min_count=5``, ``alpha=0.025`` decayed
    linearly to ``min_alpha=1e-4``, ``epochs=10``. ``batch_size`` (document, word) pairs are updated at
    once with plain SGD.

    ``fit(docs)`` takes token lists; then ``docvecs (n_docs, dim)`` holds the documents' vectors and
    ``W_out (V, dim)`` the word output vectors. ``infer(docs)`` trains vectors for new documents
    with ``W_out`` frozen; ``encode(texts)`` tokenizes (``minilib.text.tokenize``) and infers, the
    book's embedder interface. Deterministic on the CPU for a given ``seed``.

    Defined in chapter 07.
    """

    def __init__(self, dim: int = 100, *, negative: int = 5, sample: float = 1e-3, min_count: int = 5,
                 alpha: float = 0.025, min_alpha: float = 1e-4, epochs: int = 10, ns_exponent: float = 0.75,
                 batch_size: int = 256, seed: int = 0, device=None):
        for name, v in dict(dim=dim, negative=negative, min_count=min_count, epochs=epochs,
                            batch_size=batch_size).items():
            if isinstance(v, bool) or int(v) != v or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if not 0 < min_alpha <= alpha:
            raise ValueError(f"need 0 < min_alpha <= alpha, got alpha={alpha}, min_alpha={min_alpha}")
        self.config = dict(dim=int(dim), negative=int(negative), sample=float(sample), min_count=int(min_count),
                           alpha=float(alpha), min_alpha=float(min_alpha), epochs=int(epochs),
                           ns_exponent=float(ns_exponent), batch_size=int(batch_size), seed=int(seed))
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.vocab: Vocab | None = None
        self.D: torch.Tensor | None = None  # (n_docs, dim) document vectors
        self.W_out: torch.Tensor | None = None  # (V, dim) output word vectors
        self.history: dict[str, list[float]] = {"loss": []}
        self.last_unknown = 0

    # --- the pieces ------------------------------------------------------------------------

    def _init_vectors(self, n: int, gen: torch.Generator) -> torch.Tensor:
        # gensim 4 starts document vectors uniform in [-1/dim, 1/dim]: small, random, not zero.
        d = self.config["dim"]
        return ((torch.rand(n, d, generator=gen, dtype=torch.float32) * 2 - 1) / d).to(self.device)

    def _encode(self, docs: Sequence[Sequence[str]]) -> tuple[np.ndarray, np.ndarray]:
        """All in-vocabulary tokens, concatenated, and the document each came from: two ``(N,)`` arrays."""
        ids, owner = [], []
        for d, doc in enumerate(docs):
            if isinstance(doc, str):
                raise TypeError("docs must be token lists, got a str: use text.tokenize(doc), or encode(texts)")
            e = self.vocab.encode(doc)
            ids.append(e)
            owner.append(np.full(len(e), d, dtype=np.int64))
        return np.concatenate(ids), np.concatenate(owner)

    def _pairs(self, ids, owner, rng) -> tuple[torch.Tensor, torch.Tensor]:
        """One epoch of shuffled (document, word) pairs after subsampling, as tensors on the device."""
        keep = subsample(ids, self._keep, rng)
        order = rng.permutation(int(keep.sum()))
        return (torch.from_numpy(owner[keep][order]).to(self.device), torch.from_numpy(ids[keep][order]).to(self.device))

    def _negatives(self, n: int, gen: torch.Generator) -> torch.Tensor:
        # _table_total is read once per fit: reading the table here would stall a GPU every batch.
        r = torch.randint(0, self._table_total, (n, self.config["negative"]), generator=gen, device=self.device)
        return torch.searchsorted(self._table, r, right=True)  # (n, k) word ids drawn from P_n

    def _step(self, D: torch.Tensor, docs: torch.Tensor, words: torch.Tensor, negs: torch.Tensor, lr: float,
              update_words: bool) -> torch.Tensor:
        """One SGD step on a batch of pairs; returns the summed loss (a 0-d tensor on the device).
        ``D`` is updated in place."""
        v = torch.nn.functional.embedding(docs, D)  # (B, dim) document vectors
        rows = torch.cat([words[:, None], negs], dim=1)  # (B, 1 + k): the true word, then the noise
        U = torch.nn.functional.embedding(rows, self.W_out)  # (B, 1 + k, dim)
        scores = (U * v[:, None, :]).sum(2)  # (B, 1 + k)
        label = torch.zeros_like(scores)
        label[:, 0] = 1.0
        weight = torch.ones_like(scores)
        weight[:, 1:] = (negs != words[:, None]).to(scores.dtype)  # a noise draw of the true word is skipped
        g = (torch.sigmoid(scores) - label) * weight  # dLoss/dscore, chapter 03's gradient
        grad_v = torch.bmm(g[:, None, :], U).squeeze(1)  # (B, dim)
        if update_words:
            self.W_out.index_add_(0, rows.reshape(-1), (g[:, :, None] * v[:, None, :]).reshape(-1, v.shape[1]), alpha=-lr)
        D.index_add_(0, docs, grad_v, alpha=-lr)  # a document seen twice in the batch gets both updates
        return (torch.nn.functional.softplus((1.0 - 2.0 * label) * scores) * weight).sum().detach()

    # --- training ---------------------------------------------------------------------------

    def fit(self, docs: Sequence[Sequence[str]], progress: bool = True, log_every: int = 20,
            cpu_threads: int | None = 1) -> "PVDBOW":
        """Learn a vector for each of ``docs`` (token lists) and the output word vectors.

        ``history["loss"]`` holds the mean loss per pair over every ``log_every`` batches. On the
        CPU torch runs with ``cpu_threads`` threads (small batches run best on one). Returns ``self``.
        """
        from tqdm.auto import tqdm

        docs = list(docs)
        if not docs:
            raise ValueError("fit got no documents: pass a list of token lists")
        c = self.config
        self.vocab = Vocab.build(docs, min_count=c["min_count"])  # raises on an empty corpus
        ids, owner = self._encode(docs)
        if len(ids) < 2:
            raise ValueError(f"the documents hold {len(ids)} in-vocabulary token(s): give more text or lower min_count")
        self._keep = keep_probabilities(self.vocab.counts, c["sample"])
        self._table = torch.as_tensor(noise_table(self.vocab.counts, c["ns_exponent"]), device=self.device)
        self._table_total = int(self._table[-1])
        rng = np.random.default_rng(c["seed"])
        gen = torch.Generator().manual_seed(c["seed"])
        self.D = self._init_vectors(len(docs), gen)
        self.W_out = torch.zeros(len(self.vocab), c["dim"], device=self.device)  # word2vec.c: output vectors start at 0
        dgen = torch.Generator(device=self.device).manual_seed(c["seed"])
        self.history = {"loss": []}
        before = torch.get_num_threads()
        if self.device.type == "cpu" and cpu_threads:
            torch.set_num_threads(cpu_threads)
        try:
            # Summed on the device in float64 (the sum Python floats would give), read every log_every batches.
            zero = torch.zeros((), dtype=torch.float64, device=self.device)
            run_loss, run_n = zero.clone(), 0
            for epoch in tqdm(range(c["epochs"]), desc="PV-DBOW", disable=not progress):
                d_ids, w_ids = self._pairs(ids, owner, rng)
                n = len(d_ids)
                for b, start in enumerate(range(0, n, c["batch_size"])):
                    # Linear decay over the whole run, measured in pairs.
                    lr = c["alpha"] - (c["alpha"] - c["min_alpha"]) * (epoch + start / n) / c["epochs"]
                    sl = slice(start, start + c["batch_size"])
                    run_loss += self._step(self.D, d_ids[sl], w_ids[sl], self._negatives(len(d_ids[sl]), dgen), lr,
                                           update_words=True)
                    run_n += len(d_ids[sl])
                    if (b + 1) % log_every == 0:
                        self.history["loss"].append(float(run_loss) / run_n)
                        run_loss, run_n = zero.clone(), 0
            if run_n and not self.history["loss"]:
                self.history["loss"].append(float(run_loss) / run_n)
        finally:
            torch.set_num_threads(before)
        return self

    def _fitted(self) -> None:
        if self.D is None:
            raise RuntimeError("PVDBOW is not trained: call fit(docs) first")

    @property
    def docvecs(self) -> np.ndarray:
        """The training documents' vectors, ``(n_docs, dim)`` float32, in the order given to :meth:`fit`."""
        self._fitted()
        return self.D.detach().cpu().numpy().copy()

    def infer(self, docs: Sequence[str] | Sequence[Sequence[str]], epochs: int | None = None,
              alpha: float | None = None, min_alpha: float | None = None, seed: int | None = None,
              cpu_threads: int | None = 1) -> np.ndarray:
        """Vectors for new documents, trained with the output word vectors frozen.

        ``docs`` is one token list (returns ``(dim,)``) or a list of token lists (returns
        ``(n, dim)``, float32). Each new vector starts random (seeded by ``seed``, default the
        model's) and is trained for ``epochs`` passes (default: the model's) with a learning rate
        going linearly from ``alpha`` to ``min_alpha`` across the passes, as gensim's
        ``infer_vector``. A document without any known word gets a zero vector (counted in
        ``last_unknown``). ``cpu_threads`` as in :meth:`fit`.
        """
        self._fitted()
        if isinstance(docs, str):
            raise TypeError("infer takes tokens (text.tokenize(doc)) or a list of token lists, got a str")
        docs = list(docs)
        one = bool(docs) and all(isinstance(t, str) for t in docs)
        batch = [docs] if one else docs
        c = self.config
        epochs = c["epochs"] if epochs is None else int(epochs)
        alpha = c["alpha"] if alpha is None else float(alpha)
        min_alpha = c["min_alpha"] if min_alpha is None else float(min_alpha)
        if epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {epochs}")
        seed = c["seed"] if seed is None else int(seed)
        if not batch:
            self.last_unknown = 0
            return np.zeros((0, c["dim"]), dtype=np.float32)
        gen = torch.Generator().manual_seed(seed)
        D = self._init_vectors(len(batch), gen)
        ids, owner = self._encode(batch)
        empty = np.setdiff1d(np.arange(len(batch)), owner)
        self.last_unknown = len(empty)
        before = torch.get_num_threads()
        if self.device.type == "cpu" and cpu_threads:
            torch.set_num_threads(cpu_threads)
        try:
            rng = np.random.default_rng(seed)
            dgen = torch.Generator(device=self.device).manual_seed(seed)
            for e in range(epochs if len(ids) else 0):
                lr = alpha - (alpha - min_alpha) * e / max(epochs - 1, 1)  # gensim's per-pass decay
                d_ids, w_ids = self._pairs(ids, owner, rng)
                for start in range(0, len(d_ids), c["batch_size"]):
                    sl = slice(start, start + c["batch_size"])
                    self._step(D, d_ids[sl], w_ids[sl], self._negatives(len(d_ids[sl]), dgen), lr, update_words=False)
        finally:
            torch.set_num_threads(before)
        D[torch.as_tensor(empty, dtype=torch.long, device=self.device)] = 0.0
        out = D.cpu().numpy()
        if not np.isfinite(out).all():
            raise FloatingPointError("PV-DBOW inferred NaN/inf vectors: the learning rate is too high for these "
                                     "documents (lower alpha) or the model's weights diverged in training")
        return out[0] if one else out

    def encode(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """``(n, dim)`` vectors of raw texts: :func:`minilib.text.tokenize`, then :meth:`infer`."""
        if isinstance(texts, str):
            raise TypeError("encode takes a list of texts, got one str: wrap it, encode([text])")
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.config["dim"]), dtype=np.float32)
        return self.infer([tokenize(t) for t in texts])

    def __repr__(self) -> str:
        c = self.config
        state = f"{len(self.D)} docs, {len(self.vocab)} words" if self.D is not None else "not trained"
        return f"PVDBOW({state}, dim={c['dim']}, negative={c['negative']}, epochs={c['epochs']})"


# --- LDA -----------------------------------------------------------------------------------------


def digamma_series(x) -> np.ndarray:
    """The digamma function by recurrence and asymptotic series, elementwise (float64).

    ``psi(x) = psi(x + 1) - 1/x`` moves ``x`` up to at least 6, where
    ``psi(x) ~ log x - 1/(2x) - 1/(12x^2) + 1/(120x^4) - 1/(252x^6)`` is accurate to about 1e-9;
    ``psi(x) ~ -gamma_Euler - 1/x`` for ``x <= 1e-6``. This is the fast approximation scikit-learn's
    compiled LDA code uses; ``scipy.special.psi`` is exact to round-off. Defined in chapter 07.
    """
    x0 = np.asarray(x, dtype=np.float64)
    x = x0.copy()
    out = np.zeros_like(x)
    low = x < 6
    while low.any():
        out[low] -= 1.0 / x[low]
        x[low] += 1.0
        low = x < 6
    r = 1.0 / x
    out += np.log(x) - 0.5 * r
    r = r * r
    out -= r * (1.0 / 12 - r * (1.0 / 120 - r / 252))
    return np.where(x0 <= 1e-6, -np.euler_gamma - 1.0 / np.maximum(x0, 1e-300), out)


DIGAMMA = {"exact": psi, "series": digamma_series}


def dirichlet_expectation(x: np.ndarray, digamma: str = "exact") -> np.ndarray:
    """``E[log theta]`` for ``theta ~ Dirichlet(x)``, row by row: ``psi(x) - psi(sum(x))``. ``(n, k) -> (n, k)``.

    ``digamma="exact"`` uses ``scipy.special.psi``, ``"series"`` :func:`digamma_series`. Defined in chapter 07.
    """
    if digamma not in DIGAMMA:
        raise ValueError(f"digamma must be one of {sorted(DIGAMMA)}, got {digamma!r}")
    f = DIGAMMA[digamma]
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        return f(x) - f(np.array([x.sum()]))[0]
    return f(x) - f(x.sum(axis=1))[:, None]


class LDA:
    """Latent Dirichlet allocation fitted by batch variational Bayes.

    The model (Blei et al. 2003): topic ``k`` is a distribution ``beta_k ~ Dirichlet(eta)`` over
    the ``V`` words; document ``d`` has topic proportions ``theta_d ~ Dirichlet(alpha)``, and each of
    its words picks a topic ``z ~ theta_d`` and then a word ``w ~ beta_z``. Variational Bayes
    (Hoffman et al. 2010) approximates the posterior with ``q(theta_d) = Dirichlet(gamma_d)``,
    ``q(beta_k) = Dirichlet(lambda_k)`` and per-word topic responsibilities ``phi``, alternating:

    * E-step, per document until its ``gamma_d`` changes by less than ``mean_change_tol`` (mean
      absolute change) or ``max_doc_update_iter`` passes: ``phi_dwk ∝ exp(E[log theta_dk] +
      E[log beta_kw])`` and ``gamma_dk = alpha + sum_w n_dw phi_dwk``;
    * M-step: ``lambda_kw = eta + sum_d n_dw phi_dwk``.

    ``alpha`` and ``eta`` default to ``1 / n_topics``; the initial ``lambda`` is
    ``RandomState(seed).gamma(100, 1/100, (n_topics, V))`` and every E-step of :meth:`fit` starts
    each ``gamma_d`` from the same generator's ``gamma(100, 1/100)`` draws, exactly as scikit-learn's
    ``LatentDirichletAllocation(learning_method="batch", random_state=seed)`` does, so both give the
    same numbers, up to one detail: scikit-learn's compiled code computes the digamma function
    ``psi`` with a fast series (:func:`digamma_series`, about 1e-9 from the exact value), we use
    SciPy's exact ``psi``; ``digamma="series"`` switches to the series and the two agree to round-off.
    After :meth:`fit`: ``components_ (n_topics, V)`` is ``lambda``; :meth:`transform`
    gives topic proportions ``(n_docs, n_topics)`` (rows sum to 1); :meth:`perplexity` is
    ``exp(-bound / n_words)`` from the variational lower bound; ``history["perplexity"]`` has one
    value per iteration if ``evaluate_every`` is set.

    ``X`` is a document-term count matrix ``(n_docs, V)`` (SciPy sparse or dense), the transpose of
    chapter 02's ``count.term_document``.

    Defined in chapter 07.
    """

    def __init__(self, n_topics: int = 10, alpha: float | None = None, eta: float | None = None, max_iter: int = 10,
                 seed: int = 0, max_doc_update_iter: int = 100, mean_change_tol: float = 1e-3,
                 evaluate_every: int = 0, digamma: str = "exact"):
        if digamma not in DIGAMMA:
            raise ValueError(f"digamma must be one of {sorted(DIGAMMA)}, got {digamma!r}")
        if isinstance(n_topics, bool) or int(n_topics) != n_topics or n_topics < 1:
            raise ValueError(f"n_topics must be a positive integer, got {n_topics!r}")
        if int(max_iter) != max_iter or max_iter < 1 or int(max_doc_update_iter) != max_doc_update_iter \
                or max_doc_update_iter < 1:
            raise ValueError("max_iter and max_doc_update_iter must be positive integers")
        self.n_topics, self.max_iter, self.seed = int(n_topics), int(max_iter), seed
        self.alpha = 1.0 / n_topics if alpha is None else float(alpha)
        self.eta = 1.0 / n_topics if eta is None else float(eta)
        if self.alpha <= 0 or self.eta <= 0:
            raise ValueError(f"alpha and eta must be > 0, got {self.alpha}, {self.eta}")
        self.max_doc_update_iter, self.mean_change_tol = int(max_doc_update_iter), float(mean_change_tol)
        self.evaluate_every, self.digamma = int(evaluate_every), digamma
        self.components_: np.ndarray | None = None
        self.history: dict[str, list[float]] = {"perplexity": []}

    @staticmethod
    def _counts(X) -> sp.csr_matrix:
        X = sp.csr_matrix(X, dtype=np.float64)
        if X.shape[0] == 0 or X.shape[1] == 0:
            raise ValueError(f"X must be a non-empty (n_docs, n_words) count matrix, got shape {X.shape}")
        if X.nnz and (X.data < 0).any():
            raise ValueError("X must hold non-negative word counts (a document-term matrix)")
        if X.nnz and not np.isfinite(X.data).all():
            raise ValueError("X holds NaN or inf: it must be word counts")
        X.sum_duplicates()
        X.eliminate_zeros()
        return X

    def _e_step(self, X: sp.csr_matrix, exp_beta: np.ndarray, gamma0: np.ndarray, sstats: bool):
        """Variational E-step for all documents at once; returns ``(gamma (n, k), sstats (k, V) or None)``.

        Each document stops on its own, after the pass in which its ``gamma`` moved by less than
        the tolerance: documents that are done are frozen while the others keep going.
        """
        n = X.shape[0]
        rows = np.repeat(np.arange(n), np.diff(X.indptr))  # (nnz,) the document of each stored count
        cols, cnts = X.indices, X.data
        eps = np.finfo(np.float64).eps  # keeps phi's normaliser away from 0, as scikit-learn does
        gamma = gamma0.copy()
        exp_theta = np.exp(dirichlet_expectation(gamma, self.digamma))  # (n, k) exp(E[log theta])
        beta_nz = np.ascontiguousarray(exp_beta[:, cols].T)  # (nnz, k) exp(E[log beta_kw]) of each stored count
        active = np.ones(n, dtype=bool)
        for _ in range(self.max_doc_update_iter):
            # norm_phi[d, w] = sum_k exp(E[log theta_dk]) exp(E[log beta_kw]), only where n_dw > 0
            norm = np.einsum("ik,ik->i", exp_theta[rows], beta_nz) + eps  # (nnz,)
            ratio = sp.csr_matrix((cnts / norm, cols, X.indptr), shape=X.shape)  # n_dw / norm_phi_dw
            new = exp_theta * (ratio @ exp_beta.T) + self.alpha  # (n, k): alpha + sum_w n_dw phi_dwk
            # Every document is recomputed (one sparse product is cheaper than slicing out the
            # active ones), but only those still moving take the new value.
            change = np.abs(new - gamma).mean(axis=1)
            gamma[active] = new[active]
            exp_theta[active] = np.exp(dirichlet_expectation(new[active], self.digamma))
            active &= change >= self.mean_change_tol
            if not active.any():
                break
        if not sstats:
            return gamma, None
        norm = np.einsum("ik,ik->i", exp_theta[rows], beta_nz) + eps  # (nnz,)
        ratio = sp.csr_matrix((cnts / norm, cols, X.indptr), shape=X.shape)
        # sum_d n_dw phi_dwk = exp(E[log beta_kw]) * sum_d exp(E[log theta_dk]) n_dw / norm_phi_dw
        return gamma, np.asarray((ratio.T @ exp_theta).T) * exp_beta  # (k, V)

    def fit(self, X) -> "LDA":
        """Fit on a document-term count matrix ``X (n_docs, V)``; returns ``self``."""
        X = self._counts(X)
        if X.nnz == 0:
            raise ValueError("X holds no words: every document is empty")
        rs = np.random.RandomState(self.seed)  # scikit-learn's generator, drawn in scikit-learn's order
        self.components_ = rs.gamma(100.0, 1.0 / 100.0, (self.n_topics, X.shape[1]))  # (k, V) lambda
        self.history = {"perplexity": []}
        for it in range(self.max_iter):
            exp_beta = np.exp(dirichlet_expectation(self.components_, self.digamma))
            gamma0 = rs.gamma(100.0, 1.0 / 100.0, (X.shape[0], self.n_topics))
            _, stats = self._e_step(X, exp_beta, gamma0, sstats=True)
            self.components_ = self.eta + stats  # M-step
            if self.evaluate_every and (it + 1) % self.evaluate_every == 0:
                self.history["perplexity"].append(self.perplexity(X))
        return self

    def _fitted(self, X) -> sp.csr_matrix:
        if self.components_ is None:
            raise RuntimeError("LDA is not fitted: call fit(X) first")
        X = self._counts(X)
        if X.shape[1] != self.components_.shape[1]:
            raise ValueError(f"X has {X.shape[1]} word columns, the model was fitted on {self.components_.shape[1]}: "
                             "build X with the same vocabulary")
        return X

    def unnormalized_transform(self, X) -> np.ndarray:
        """The variational ``gamma (n_docs, n_topics)`` of each document, starting from all ones."""
        X = self._fitted(X)
        exp_beta = np.exp(dirichlet_expectation(self.components_, self.digamma))
        return self._e_step(X, exp_beta, np.ones((X.shape[0], self.n_topics)), sstats=False)[0]

    def transform(self, X) -> np.ndarray:
        """Topic proportions ``E[theta_d]`` of each document: ``(n_docs, n_topics)``, rows summing to 1."""
        g = self.unnormalized_transform(X)
        return g / g.sum(axis=1, keepdims=True)

    def fit_transform(self, X) -> np.ndarray:
        """:meth:`fit` on ``X``, then :meth:`transform` of ``X``: topic proportions ``(n_docs, n_topics)``."""
        return self.fit(X).transform(X)

    def bound(self, X, gamma: np.ndarray | None = None) -> float:
        """The variational lower bound on ``log p(X)`` (Hoffman et al. 2010, eq. 3), for ``gamma`` (default:
        :meth:`unnormalized_transform`): the expected log-likelihood of the words, minus the divergence of
        ``q(theta)`` and ``q(beta)`` from their Dirichlet priors."""
        X = self._fitted(X)
        gamma = self.unnormalized_transform(X) if gamma is None else gamma
        e_theta = dirichlet_expectation(gamma, self.digamma)  # (n, k)
        e_beta = dirichlet_expectation(self.components_, self.digamma)  # (k, V)
        rows = np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))
        # E[log p(w)] per stored count: log sum_k exp(E[log theta_dk] + E[log beta_kw])
        score = float(X.data @ logsumexp(e_theta[rows] + e_beta[:, X.indices].T, axis=1))

        def prior_terms(prior, q, e_log, size):  # E[log p(x | prior) - log q(x)] for Dirichlet rows
            return float(np.sum((prior - q) * e_log) + np.sum(gammaln(q) - gammaln(prior))
                         + np.sum(gammaln(prior * size) - gammaln(q.sum(axis=1))))

        score += prior_terms(self.alpha, gamma, e_theta, self.n_topics)
        return score + prior_terms(self.eta, self.components_, e_beta, self.components_.shape[1])

    def perplexity(self, X) -> float:
        """``exp(-bound / total word count)``: lower is better."""
        X = self._fitted(X)
        return float(math.exp(-self.bound(X) / X.sum()))

    def top_words(self, words: Sequence[str], n: int = 8) -> list[list[str]]:
        """The ``n`` most probable words of each topic (by ``lambda``), ``words`` naming the columns."""
        if self.components_ is None:
            raise RuntimeError("LDA is not fitted: call fit(X) first")
        if len(words) != self.components_.shape[1]:
            raise ValueError(f"{len(words)} words for {self.components_.shape[1]} columns")
        return [[words[i] for i in np.argsort(-row, kind="stable")[:n]] for row in self.components_]

    def __repr__(self) -> str:
        return f"LDA(n_topics={self.n_topics}, alpha={self.alpha:.3g}, eta={self.eta:.3g}, max_iter={self.max_iter})"
