"""Judging word vectors: similarity benchmarks (Spearman rho) and analogies (3CosAdd / 3CosMul).

The book's one analogy protocol, used unchanged in chapters 02-04:

1. ``words`` is the model's vocabulary in frequency order. Keep its ``restrict_vocab`` most
   frequent words (30,000 by default); they are both the candidate answers and the only words a
   question may use.
2. A question ``a : b :: c : d`` with any word outside that restricted vocabulary is *skipped*
   (counted, not scored).
3. Vectors are L2-normalised; the prediction is the candidate ``x`` that maximises
   ``cos(x, b - a + c)`` (3CosAdd), excluding ``a``, ``b`` and ``c`` themselves.
4. accuracy = correct / answered; coverage = answered / total. Sections whose name starts with
   ``gram`` are syntactic, the others semantic.

This is gensim's ``KeyedVectors.evaluate_word_analogies`` protocol (checked in
``tests/test_evaluate.py``), batched with torch so 19,544 questions x 30,000 words take seconds.

Defined in chapter 02; chapter 04 extends it.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from scipy.stats import spearmanr

from .similarity import normalize

__all__ = ["as_matrix", "word_index", "unit_rows", "similarity", "analogy"]


def as_matrix(vectors, words: Sequence[str], name: str = "") -> np.ndarray:
    """``vectors`` (NumPy or torch) as a ``(V, dim)`` array whose ``V`` rows are labelled by ``words``;
    a clear error otherwise. ``name`` ("source", "target") goes into the messages. Defined in chapter 02."""
    label = f"{name} " if name else ""
    X = vectors.detach().cpu().numpy() if isinstance(vectors, torch.Tensor) else np.asarray(vectors)
    if X.ndim != 2:
        raise ValueError(f"{label}vectors must be a (V, dim) matrix, got shape {X.shape}")
    if len(words) != X.shape[0]:
        raise ValueError(f"{len(words)} {label}words but {label}vectors has shape {X.shape}: "
                         "pass one word per row, in row order")
    if X.shape[0] == 0:
        raise ValueError(f"{label}vectors is empty: no words to evaluate")
    return X


def word_index(words: Sequence[str], limit: int | None = None) -> dict[str, int]:
    """word -> row for the first ``limit`` words; the first (most frequent) row wins on duplicates.
    Defined in chapter 02."""
    words = words if limit is None else words[:limit]
    index: dict[str, int] = {}
    for i, w in enumerate(words):
        index.setdefault(w, i)
    return index


def unit_rows(M) -> np.ndarray:
    """``M`` as float64 with every row (or the one vector) scaled to unit length; zero rows stay zero.
    Defined in chapter 02."""
    return normalize(np.asarray(M, dtype=np.float64))


def similarity(vectors, words: Sequence[str], pairs: Sequence[tuple[str, str, float]]) -> dict:
    """Spearman correlation between cosine similarities and human scores.

    ``vectors`` is ``(V, dim)`` (NumPy or torch), ``words`` its ``V`` row labels, ``pairs`` a list
    of ``(word1, word2, human_score)`` such as ``data.load("wordsim353")``. Pairs with a word not in
    ``words`` are skipped and counted. Returns ``dict(rho, n_used, n_skipped)``.
    Defined in chapter 02.
    """
    X = as_matrix(vectors, words)
    if len(pairs) == 0:
        raise ValueError("no pairs given: pass e.g. data.load('wordsim353')")
    index = word_index(words)
    rows1, rows2, gold = [], [], []
    for w1, w2, score in pairs:
        if w1 in index and w2 in index:
            rows1.append(index[w1])
            rows2.append(index[w2])
            gold.append(float(score))
    n_used = len(gold)
    if n_used < 2:
        raise ValueError(f"only {n_used} of {len(pairs)} pairs have both words in the vocabulary: cannot correlate")
    A, B = X[rows1].astype(np.float64), X[rows2].astype(np.float64)
    norms = np.linalg.norm(A, axis=1) * np.linalg.norm(B, axis=1)
    cos = (A * B).sum(axis=1) / np.maximum(norms, 1e-12)
    rho = spearmanr(cos, gold).statistic
    return dict(rho=float(rho), n_used=n_used, n_skipped=len(pairs) - n_used)


def analogy(
    vectors,
    words: Sequence[str],
    questions: Mapping[str, Sequence[tuple[str, str, str, str]]] | Sequence[tuple[str, str, str, str]],
    restrict_vocab: int = 30000,
    method: str = "3cosadd",
    batch_size: int = 1024,
    device: str | torch.device | None = None,
) -> dict:
    """Accuracy on analogy questions ``a : b :: c : d`` under the book's protocol (module docstring).

    ``vectors`` ``(V, dim)`` with row labels ``words`` in frequency order; ``questions`` a dict
    section -> list of ``(a, b, c, d)`` (``data.load("google_analogies")``) or one plain list.
    ``method`` is ``"3cosadd"`` (argmax cos(x, b - a + c)) or ``"3cosmul"`` (Levy & Goldberg 2014:
    argmax cos'(x,b) cos'(x,c) / (cos'(x,a) + 0.001) with cos' = (1 + cos) / 2).

    Returns ``dict(accuracy, correct, answered, skipped, total, coverage, semantic, syntactic,
    by_section={name: (correct, answered)})``; ``semantic``/``syntactic`` are accuracies over the
    sections whose name does not / does start with ``gram`` (NaN if none answered).
    Defined in chapter 02.
    """
    if method not in ("3cosadd", "3cosmul"):
        raise ValueError(f"method must be '3cosadd' or '3cosmul', got {method!r}")
    if restrict_vocab < 1:
        raise ValueError("restrict_vocab must be >= 1")
    X = as_matrix(vectors, words)
    if not isinstance(questions, Mapping):
        questions = {"all": questions}
    total = sum(len(q) for q in questions.values())
    if total == 0:
        raise ValueError("no analogy questions given: pass e.g. data.load('google_analogies')")
    n = min(restrict_vocab, X.shape[0])
    index = word_index(words, n)
    dev = torch.device(device) if device is not None else torch.device("cpu")
    W = normalize(torch.as_tensor(np.ascontiguousarray(X[:n]), dtype=torch.float32, device=dev))  # (n, dim) unit rows

    by_section: dict[str, tuple[int, int]] = {}
    for name, qs in questions.items():
        rows = [[index[w] for w in q] for q in qs if all(w in index for w in q)]
        if not rows:
            by_section[name] = (0, 0)
            continue
        Q = torch.as_tensor(rows, dtype=torch.long, device=dev)  # (m, 4) ids of a, b, c, d
        correct = 0
        for start in range(0, len(Q), batch_size):
            q = Q[start : start + batch_size]
            a, b, c, d = q.unbind(1)
            if method == "3cosadd":
                target = W[b] - W[a] + W[c]  # (m, dim); argmax is scale-free, no need to normalise
                scores = target @ W.T  # (m, n)
            else:
                cos = lambda i: (1.0 + W[i] @ W.T) / 2.0  # (m, n), shifted to [0, 1]
                scores = cos(b) * cos(c) / (cos(a) + 1e-3)
            # The question words themselves are never the answer.
            scores.scatter_(1, q[:, :3], float("-inf"))
            correct += int((scores.argmax(dim=1) == d).sum())
        by_section[name] = (correct, len(rows))

    def acc(names):
        c = sum(by_section[s][0] for s in names)
        a = sum(by_section[s][1] for s in names)
        return c / a if a else float("nan")

    correct = sum(c for c, _ in by_section.values())
    answered = sum(a for _, a in by_section.values())
    sem = [s for s in by_section if not s.startswith("gram")]
    syn = [s for s in by_section if s.startswith("gram")]
    return dict(
        accuracy=correct / answered if answered else float("nan"),
        correct=correct,
        answered=answered,
        skipped=total - answered,
        total=total,
        coverage=answered / total,
        semantic=acc(sem),
        syntactic=acc(syn),
        by_section=by_section,
    )


# ----------------------------------------------------------------------------------------------
# Chapter 04: nearest neighbours, hubness, anisotropy, "all-but-the-top" and a numeracy probe.
# (Appended to the chapter-02 module above, which these functions reuse.)

__all__ += ["nearest_neighbours", "k_occurrence", "hubness", "anisotropy", "all_but_the_top", "numeracy_probe"]


def _unit_rows(X: np.ndarray) -> torch.Tensor:
    """``(V, dim)`` NumPy matrix -> float32 torch tensor with unit-length rows (zero rows stay zero)."""
    return normalize(torch.as_tensor(np.ascontiguousarray(X), dtype=torch.float32))


def nearest_neighbours(vectors, words: Sequence[str], queries: Sequence[str], k: int = 10) -> dict:
    """The ``k`` cosine-nearest words of each query word, the query itself excluded.

    ``vectors`` ``(V, dim)`` with row labels ``words``; ``queries`` a list of words. Returns
    ``{query: [(word, cosine), ...]}`` best first, ready for :func:`minilib.plots.neighbours_table`.
    A query outside ``words`` raises a ``KeyError`` (out of vocabulary) naming every such query.
    Defined in chapter 04.
    """
    X = as_matrix(vectors, words)
    if isinstance(queries, str):
        queries = [queries]
    if len(queries) == 0:
        raise ValueError("no query words given: pass a list such as ['king', 'paris']")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    index = word_index(words)
    missing = [q for q in queries if q not in index]
    if missing:
        raise KeyError(f"out of vocabulary: {missing}; query only words that have a vector (check spelling and case)")
    U = _unit_rows(X)
    rows = torch.tensor([index[q] for q in queries])
    S = U[rows] @ U.T  # (n_queries, V) cosines
    S[torch.arange(len(rows)), rows] = float("-inf")  # a word is not its own neighbour
    scores, ids = S.topk(min(k, X.shape[0] - 1), dim=1)
    return {q: [(words[int(j)], round(float(s), 6)) for s, j in zip(scores[r], ids[r])] for r, q in enumerate(queries)}


def k_occurrence(vectors, k: int = 10, batch_size: int = 1024) -> np.ndarray:
    """``N_k``: how many times each row appears among the ``k`` nearest neighbours of the other rows.

    ``vectors`` ``(V, dim)``; neighbours by cosine, a row never counts as its own neighbour.
    Returns an int64 array ``(V,)`` that sums to ``V * k``. Radovanovic et al. (2010) call rows
    with a large ``N_k`` *hubs* and rows with ``N_k = 0`` *anti-hubs*. Defined in chapter 04.
    """
    X = np.asarray(vectors.detach().cpu() if isinstance(vectors, torch.Tensor) else vectors)
    if X.ndim != 2:
        raise ValueError(f"vectors must be a (V, dim) matrix, got shape {X.shape}")
    V = X.shape[0]
    if not 1 <= k < V:
        raise ValueError(f"k must be between 1 and V - 1 = {V - 1} (the number of other rows), got {k}")
    U = _unit_rows(X)
    counts = torch.zeros(V, dtype=torch.long)
    for start in range(0, V, batch_size):
        S = U[start : start + batch_size] @ U.T  # (b, V)
        rows = torch.arange(start, min(start + batch_size, V))
        S[rows - start, rows] = float("-inf")
        ids = S.topk(k, dim=1).indices  # (b, k)
        counts += torch.bincount(ids.reshape(-1), minlength=V)
    return counts.numpy()


def hubness(vectors, words: Sequence[str], k: int = 10, top: int = 10, batch_size: int = 1024) -> dict:
    """Hubness of a vector space: the skewness of its ``N_k`` distribution and its top hubs.

    ``vectors`` ``(V, dim)`` with row labels ``words``. Returns ``dict(k, n_k (V,), skewness,
    top_hubs=[(word, N_k), ...] (the ``top`` largest), antihub_fraction (share of rows with
    N_k = 0), max_n_k)``. Skewness is the standardised third moment ``E[(N_k - k)^3] / sd^3``
    (Radovanovic et al. 2010): 0 for a symmetric distribution; large and positive when a few
    words are everybody's neighbour. Defined in chapter 04.
    """
    from scipy.stats import skew

    X = as_matrix(vectors, words)
    n_k = k_occurrence(X, k=k, batch_size=batch_size)
    order = np.argsort(-n_k, kind="stable")[:top]
    return dict(
        k=k,
        n_k=n_k,
        skewness=float(skew(n_k.astype(np.float64))),
        top_hubs=[(words[int(i)], int(n_k[i])) for i in order],
        antihub_fraction=float((n_k == 0).mean()),
        max_n_k=int(n_k.max()),
    )


def anisotropy(vectors, n_pairs: int = 10000, seed: int = 0) -> dict:
    """Mean cosine between random pairs of distinct rows: about 0 for an isotropic space.

    ``vectors`` ``(V, dim)``. Pairs ``(i, j)``, ``i != j``, are drawn uniformly with a NumPy
    generator seeded by ``seed``, so the estimate is reproducible. Returns ``dict(mean, std,
    n_pairs)`` (``std`` of the pair cosines; the mean's standard error is ``std / sqrt(n_pairs)``).
    Ethayarajh (2019) uses this as the baseline to subtract from contextual similarities.
    Defined in chapter 04.
    """
    X = np.asarray(vectors.detach().cpu() if isinstance(vectors, torch.Tensor) else vectors)
    if X.ndim != 2 or X.shape[0] < 2:
        raise ValueError(f"vectors must be a (V, dim) matrix with V >= 2 rows, got shape {X.shape}")
    if n_pairs < 1:
        raise ValueError(f"n_pairs must be >= 1, got {n_pairs}")
    V = X.shape[0]
    rng = np.random.default_rng(seed)
    i = rng.integers(0, V, n_pairs)
    j = (i + rng.integers(1, V, n_pairs)) % V  # uniform over the other V - 1 rows: never i itself
    U = _unit_rows(X)
    cos = (U[i] * U[j]).sum(dim=1).double().numpy()
    return dict(mean=float(cos.mean()), std=float(cos.std()), n_pairs=int(n_pairs))


def all_but_the_top(vectors, n_components: int = 1) -> np.ndarray:
    """Mu & Viswanath's (2018) post-processing: remove the mean, then the top principal directions.

    ``vectors`` ``(V, dim)``; ``n_components`` ``D`` (they suggest about ``dim / 100``). Returns a
    float32 ``(V, dim)`` array ``x - mu - sum_{i<=D} (u_i . (x - mu)) u_i``. The common mean and the
    few dominant directions carry word frequency more than meaning; removing them makes the
    space less anisotropic. Defined in chapter 04.
    """
    X = np.asarray(vectors.detach().cpu() if isinstance(vectors, torch.Tensor) else vectors, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] < 2:
        raise ValueError(f"vectors must be a (V, dim) matrix with V >= 2 rows, got shape {X.shape}")
    if not 0 <= n_components < X.shape[1]:
        raise ValueError(f"n_components must be between 0 and dim - 1 = {X.shape[1] - 1}, got {n_components}")
    Xc = X - X.mean(axis=0)
    if n_components == 0:
        return Xc.astype(np.float32)
    _, _, Vt = np.linalg.svd(Xc, full_matrices=False)
    top = Vt[:n_components]  # (D, dim) principal directions
    return (Xc - (Xc @ top.T) @ top).astype(np.float32)


def numeracy_probe(vectors, words: Sequence[str], numbers: Mapping[str, float], folds: int = 5,
                   alpha: float = 1.0, seed: int = 0) -> dict:
    """Can a linear probe read a number's magnitude from its word vector?

    ``numbers`` maps number words to their values (``{"7": 7, "seven": 7, ...}``); words outside
    ``words`` are skipped and counted. A ridge regression (scikit-learn, penalty ``alpha``) learns
    ``log10(value)`` from the vector; ``folds``-fold cross-validation (shuffled with ``seed``) gives
    a held-out prediction for every number. Returns ``dict(r2, spearman, n_used, n_skipped,
    words, target, predicted)`` with ``r2`` and Spearman ``rho`` of the held-out predictions
    (Naik et al. 2019; Wallace et al. 2019). Values must be positive. Defined in chapter 04.
    """
    from sklearn.linear_model import Ridge
    from sklearn.metrics import r2_score
    from sklearn.model_selection import KFold, cross_val_predict

    X = as_matrix(vectors, words)
    if len(numbers) == 0:
        raise ValueError("numbers is empty: pass e.g. {str(n): n for n in range(1, 1001)}")
    index = word_index(words)
    used = [w for w in numbers if w in index]
    if len(used) < 2 * folds:
        raise ValueError(f"only {len(used)} of {len(numbers)} numbers have a vector; need at least "
                         f"2 * folds = {2 * folds} (add numbers or lower folds)")
    values = np.array([float(numbers[w]) for w in used])
    if (values <= 0).any():
        raise ValueError("numbers must have positive values (the probe predicts log10(value))")
    A = X[[index[w] for w in used]].astype(np.float64)  # (n, dim)
    y = np.log10(values)
    pred = cross_val_predict(Ridge(alpha=alpha), A, y, cv=KFold(folds, shuffle=True, random_state=seed))
    return dict(r2=float(r2_score(y, pred)), spearman=float(spearmanr(y, pred).statistic), n_used=len(used),
                n_skipped=len(numbers) - len(used), words=used, target=y, predicted=pred)
