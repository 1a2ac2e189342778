"""Measuring and removing social bias in word vectors: WEAT and hard debiasing.

* **WEAT** (Caliskan, Bryson & Narayanan 2017), the Word Embedding Association Test: two sets of
  *target* words ``X``, ``Y`` (flowers, insects) and two sets of *attribute* words ``A``, ``B``
  (pleasant, unpleasant). Each word ``w`` gets an association
  ``s(w, A, B) = mean_a cos(w, a) - mean_b cos(w, b)``; the test statistic is
  ``S = sum_x s(x) - sum_y s(y)``, the *effect size* is
  ``(mean_x s(x) - mean_y s(y)) / std_{w in X u Y} s(w)``, and the one-sided p-value is the share
  of equal-size re-partitions ``(X_i, Y_i)`` of ``X u Y`` with ``S(X_i, Y_i) >= S(X, Y)``.
* **Hard debiasing** (Bolukbasi et al. 2016): a bias direction ``g`` is the first principal
  component of the centred definitional pairs (she/he, woman/man, ...); *neutralise* removes
  ``g`` from every word that should be neutral, *equalise* makes each pair (he, she) symmetric
  about the neutral subspace.
* **What survives** (Gonen & Goldberg 2019): after neutralising, the words that were most
  biased still cluster, and a classifier still tells them apart.

Defined in chapter 04.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import combinations

import numpy as np

from .evaluate import as_matrix as _matrix, unit_rows as _unit, word_index as _index

__all__ = [
    "WEAT_TESTS", "DEFINITIONAL_PAIRS", "EQUALIZE_PAIRS", "GENDER_SPECIFIC",
    "association", "weat", "bias_direction", "project", "neutralize", "equalize", "hard_debias", "residual_bias",
]

# Word lists of Caliskan et al. (2017), lowercased (their names and acronyms included).
WEAT_TESTS = {
    "flowers/insects vs pleasant/unpleasant (WEAT 1)": dict(
        X="aster clover hyacinth marigold poppy azalea crocus iris orchid rose bluebell daffodil lilac pansy tulip "
          "buttercup daisy lily peony violet carnation gladiola magnolia petunia zinnia".split(),
        Y="ant caterpillar flea locust spider bedbug centipede fly maggot tarantula bee cockroach gnat mosquito "
          "termite beetle cricket hornet moth wasp blackfly dragonfly horsefly roach weevil".split(),
        A="caress freedom health love peace cheer friend heaven loyal pleasure diamond gentle honest lucky rainbow "
          "diploma gift honor miracle sunrise family happy laughter paradise vacation".split(),
        B="abuse crash filth murder sickness accident death grief poison stink assault disaster hatred pollute "
          "tragedy divorce jail poverty ugly cancer kill rotten vomit agony prison".split(),
    ),
    "male/female names vs career/family (WEAT 6)": dict(
        X="john paul mike kevin steve greg jeff bill".split(),
        Y="amy joan lisa sarah diana kate ann donna".split(),
        A="executive management professional corporation salary office business career".split(),
        B="home parents children family cousins marriage wedding relatives".split(),
    ),
    "math/arts vs male/female terms (WEAT 7)": dict(
        X="math algebra geometry calculus equations computation numbers addition".split(),
        Y="poetry art dance literature novel symphony drama sculpture".split(),
        A="male man boy brother he him his son".split(),
        B="female woman girl sister she her hers daughter".split(),
    ),
    "science/arts vs male/female terms (WEAT 8)": dict(
        X="science technology physics chemistry einstein nasa experiment astronomy".split(),
        Y="poetry art shakespeare dance literature novel symphony drama".split(),
        A="brother father uncle grandfather son he his him".split(),
        B="sister mother aunt grandmother daughter she hers her".split(),
    ),
}

# Bolukbasi et al. (2016): the ten definitional pairs, (female, male) so that g points to "she".
DEFINITIONAL_PAIRS = [("woman", "man"), ("girl", "boy"), ("she", "he"), ("mother", "father"), ("daughter", "son"),
                      ("gal", "guy"), ("female", "male"), ("her", "his"), ("herself", "himself"), ("mary", "john")]
# Pairs that should differ *only* in gender after debiasing (a subset of their equalise list).
EQUALIZE_PAIRS = [("woman", "man"), ("girl", "boy"), ("she", "he"), ("mother", "father"), ("daughter", "son"),
                  ("female", "male"), ("her", "his"), ("herself", "himself"), ("sister", "brother"),
                  ("queen", "king"), ("wife", "husband"), ("aunt", "uncle"), ("niece", "nephew"),
                  ("grandmother", "grandfather"), ("lady", "gentleman"), ("women", "men"), ("girls", "boys"),
                  ("mothers", "fathers"), ("daughters", "sons"), ("sisters", "brothers")]
# Words whose gender is their meaning: hard debiasing leaves them alone (a short hand-made list;
# Bolukbasi et al. grow theirs with a classifier).
GENDER_SPECIFIC = sorted({w for pair in DEFINITIONAL_PAIRS + EQUALIZE_PAIRS for w in pair} | set(
    "actress actor bride groom businesswoman businessman chairwoman chairman congresswoman congressman "
    "countess count duchess duke empress emperor fiancee fiance granddaughter grandson heroine hero hers him "
    "housewife landlady landlord madam sir maid mom dad mum mr mrs ms nun monk princess prince sorority "
    "fraternity spokeswoman spokesman stepdaughter stepson stepmother stepfather waitress waiter widow widower "
    "witch wizard womb prostate ovarian testosterone estrogen feminine masculine femininity masculinity "
    "motherhood fatherhood sisterhood brotherhood maternal paternal maternity paternity".split()))


def association(W, A, B) -> np.ndarray:
    """``s(w, A, B) = mean_a cos(w, a) - mean_b cos(w, b)`` for each row ``w`` of ``W``.

    ``W`` ``(n, dim)``, ``A`` ``(n_a, dim)``, ``B`` ``(n_b, dim)``; returns ``(n,)``. Defined in chapter 04.
    """
    W, A, B = (np.atleast_2d(np.asarray(M, dtype=np.float64)) for M in (W, A, B))
    if not (W.shape[1] == A.shape[1] == B.shape[1]):
        raise ValueError(f"dimensions differ: W {W.shape}, A {A.shape}, B {B.shape}; all need the same number of columns")
    if len(A) == 0 or len(B) == 0:
        raise ValueError("attribute sets A and B must each hold at least one vector")
    W, A, B = _unit(W), _unit(A), _unit(B)
    return (W @ A.T).mean(axis=1) - (W @ B.T).mean(axis=1)


def weat(vectors, words: Sequence[str], X: Sequence[str], Y: Sequence[str], A: Sequence[str], B: Sequence[str],
         n_permutations: int = 10000, seed: int = 0) -> dict:
    """The Word Embedding Association Test: effect size and one-sided permutation p-value.

    ``vectors`` ``(V, dim)`` with row labels ``words``; ``X``, ``Y`` target word lists, ``A``, ``B``
    attribute word lists. Words without a vector are dropped (listed in ``dropped``); each set must
    keep at least one word (two for ``X u Y``), and ``X``, ``Y`` are then cut to the same size
    (the first words of the longer one) as the test assumes. If the number of equal-size
    partitions of ``X u Y`` is at most ``n_permutations`` they are all enumerated (exact test);
    otherwise ``n_permutations`` random partitions are drawn with ``seed`` and
    ``p = (1 + #{S_i >= S}) / (1 + n_permutations)``.

    Returns ``dict(effect_size, statistic, p_value, exact, null (the statistics S_i), n_x, n_y,
    n_a, n_b, dropped)``. Defined in chapter 04.
    """
    M = _matrix(vectors, words)
    index = _index(words)
    sets = dict(X=list(X), Y=list(Y), A=list(A), B=list(B))
    for name, ws in sets.items():
        if len(ws) == 0:
            raise ValueError(f"word set {name} is empty: WEAT needs words in X, Y, A and B")
    dropped = {name: [w for w in ws if w not in index] for name, ws in sets.items()}
    kept = {name: [w for w in ws if w in index] for name, ws in sets.items()}
    for name, ws in kept.items():
        if not ws:
            raise ValueError(f"none of the words of set {name} has a vector ({sets[name][:5]}...): "
                             "use a larger vocabulary or other words")
    n = min(len(kept["X"]), len(kept["Y"]))
    kept["X"], kept["Y"] = kept["X"][:n], kept["Y"][:n]
    vec = {name: M[[index[w] for w in ws]] for name, ws in kept.items()}

    s = association(np.vstack([vec["X"], vec["Y"]]), vec["A"], vec["B"])  # (2n,) s(w) of X then Y
    if len(s) < 2:
        raise ValueError("X and Y need at least one word each with a vector")
    sx, sy = s[:n], s[n:]
    statistic = float(sx.sum() - sy.sum())
    sd = s.std(ddof=1)
    effect = float((sx.mean() - sy.mean()) / sd) if sd > 0 else 0.0

    # S(X_i, Y_i) = sum_{X_i} s - sum_{Y_i} s = 2 sum_{X_i} s - sum_all s: only X_i matters.
    total = s.sum()
    n_partitions = math.comb(2 * n, n)
    exact = n_partitions <= n_permutations
    if exact:
        null = np.array([2 * s[list(c)].sum() - total for c in combinations(range(2 * n), n)])
        p = float((null >= statistic - 1e-12).mean())
    else:
        rng = np.random.default_rng(seed)
        picks = np.argsort(rng.random((n_permutations, 2 * n)), axis=1)[:, :n]  # (n_perm, n) random X_i
        null = 2 * s[picks].sum(axis=1) - total
        p = float((1 + (null >= statistic - 1e-12).sum()) / (1 + n_permutations))
    return dict(effect_size=effect, statistic=statistic, p_value=p, exact=exact, null=null,
                n_x=n, n_y=n, n_a=len(kept["A"]), n_b=len(kept["B"]),
                dropped={k: v for k, v in dropped.items() if v})


def bias_direction(vectors, words: Sequence[str], pairs: Sequence[tuple[str, str]] = DEFINITIONAL_PAIRS) -> np.ndarray:
    """The bias direction ``g`` ``(dim,)``, unit length, from definitional pairs (Bolukbasi et al. 2016).

    Each pair's two unit vectors are centred on the pair's mean; ``g`` is the first principal
    component of all the centred vectors, signed to point from the second word of each pair to
    the first (with the default pairs: from "he" towards "she"). Pairs with a word without a
    vector are skipped; at least one pair must remain. Defined in chapter 04.
    """
    M = _matrix(vectors, words)
    index = _index(words)
    used = [(a, b) for a, b in pairs if a in index and b in index]
    if not used:
        raise ValueError(f"none of the pairs {list(pairs)[:3]}... has both words in the vocabulary")
    rows = []
    for a, b in used:
        va, vb = _unit(M[index[a]]), _unit(M[index[b]])
        mid = (va + vb) / 2
        rows += [va - mid, vb - mid]  # the two halves of the difference, +-(va - vb) / 2
    _, _, Vt = np.linalg.svd(np.array(rows), full_matrices=False)
    g = Vt[0]
    mean_diff = np.mean([_unit(M[index[a]]) - _unit(M[index[b]]) for a, b in used], axis=0)
    return g if g @ mean_diff >= 0 else -g


def project(vectors, direction) -> np.ndarray:
    """Cosine of each row of ``vectors`` ``(n, dim)`` with ``direction`` ``(dim,)``: ``(n,)``. Defined in chapter 04."""
    M = np.atleast_2d(np.asarray(vectors, dtype=np.float64))
    g = np.asarray(direction, dtype=np.float64).reshape(-1)
    if M.shape[1] != g.shape[0]:
        raise ValueError(f"vectors have shape {M.shape} but direction has shape {g.shape}: dimensions must match")
    return _unit(M) @ _unit(g)


def neutralize(vectors, direction) -> np.ndarray:
    """Remove the component along ``direction`` from each row and re-normalise: ``(n, dim)`` unit rows.

    ``w <- (w - (w . g) g) / ||w - (w . g) g||`` with ``w`` the unit row and ``g`` the unit
    direction; afterwards every row is orthogonal to ``g``. Defined in chapter 04.
    """
    M = _unit(np.atleast_2d(np.asarray(vectors, dtype=np.float64)))
    g = _unit(np.asarray(direction, dtype=np.float64).reshape(-1))
    if M.shape[1] != g.shape[0]:
        raise ValueError(f"vectors have shape {M.shape} but direction has shape {g.shape}: dimensions must match")
    return _unit(M - np.outer(M @ g, g))


def equalize(va, vb, direction) -> tuple[np.ndarray, np.ndarray]:
    """Bolukbasi's equalise step for one pair: two unit vectors that differ only along ``direction``.

    ``va``, ``vb`` ``(dim,)``. Both get the pair's mean with its ``g`` component removed, ``nu``,
    plus ``+-sqrt(1 - ||nu||^2) g`` on the side each word was on; so a neutral word is equally
    close to both. Defined in chapter 04.
    """
    g = _unit(np.asarray(direction, dtype=np.float64).reshape(-1))
    va, vb = _unit(np.asarray(va, dtype=np.float64)), _unit(np.asarray(vb, dtype=np.float64))
    if not (va.shape == vb.shape == g.shape):
        raise ValueError(f"shapes differ: va {va.shape}, vb {vb.shape}, direction {g.shape}")
    mu = (va + vb) / 2
    nu = mu - (mu @ g) * g  # the shared, gender-free part
    scale = math.sqrt(max(1.0 - float(nu @ nu), 0.0))
    side = 1.0 if (va - vb) @ g >= 0 else -1.0
    return nu + side * scale * g, nu - side * scale * g


def hard_debias(vectors, words: Sequence[str], direction=None, gender_specific: Sequence[str] = GENDER_SPECIFIC,
                equalize_pairs: Sequence[tuple[str, str]] | None = EQUALIZE_PAIRS) -> np.ndarray:
    """Hard debiasing (Bolukbasi et al. 2016) of a whole vocabulary: a new ``(V, dim)`` float32 matrix.

    Every row is L2-normalised; rows of words not in ``gender_specific`` are neutralised (made
    orthogonal to ``direction``, by default :func:`bias_direction` of the definitional pairs);
    then each of ``equalize_pairs`` found in ``words`` is equalised (``None``: skip that step).
    Defined in chapter 04.
    """
    M = _matrix(vectors, words)
    g = bias_direction(M, words) if direction is None else _unit(np.asarray(direction, dtype=np.float64).reshape(-1))
    if g.shape[0] != M.shape[1]:
        raise ValueError(f"direction has shape {g.shape} but vectors have shape {M.shape}: dimensions must match")
    out = _unit(M)
    keep = set(gender_specific)
    neutral = np.array([w not in keep for w in words])
    out[neutral] = neutralize(out[neutral], g)
    index = _index(words)
    for a, b in equalize_pairs or []:
        if a in index and b in index:
            out[index[a]], out[index[b]] = equalize(out[index[a]], out[index[b]], g)
    return out.astype(np.float32)


def residual_bias(original, debiased, words: Sequence[str], direction, n: int = 500, restrict: int = 50000,
                  exclude: Sequence[str] = GENDER_SPECIFIC, seed: int = 0) -> dict:
    """Gonen & Goldberg's (2019) check: does gender survive in the words that were most biased?

    Takes, among the ``restrict`` first words (frequency order) that are alphabetic and not in
    ``exclude`` (the words hard debiasing leaves alone), the ``n``
    with the largest and the ``n`` with the smallest projection on ``direction`` in the
    *original* ``(V, dim)`` space (label 1 / 0), and asks of each space:

    * ``kmeans``: 2-means clustering (scikit-learn, seeded) of their unit vectors; accuracy of the
      clusters against the labels (the better of the two ways to name the clusters);
    * ``classifier``: 5-fold cross-validated accuracy of an RBF support-vector classifier.

    Returns ``dict(before=dict(kmeans, classifier, projection), after=..., n)`` where ``projection``
    is the mean absolute cosine of those words with ``direction``. Defined in chapter 04.
    """
    from sklearn.cluster import KMeans
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.svm import SVC

    A, D = _matrix(original, words), _matrix(debiased, words)
    if A.shape != D.shape:
        raise ValueError(f"original {A.shape} and debiased {D.shape} must have the same shape (same words, same rows)")
    skip = set(exclude)
    cand = [i for i, w in enumerate(words[:restrict]) if w.isalpha() and w not in skip]
    if len(cand) < 2 * n:
        raise ValueError(f"only {len(cand)} candidate words for 2 * n = {2 * n}: lower n or raise restrict")
    proj = project(A[cand], direction)
    order = np.argsort(proj, kind="stable")
    rows = np.array(cand)[np.concatenate([order[-n:], order[:n]])]
    y = np.r_[np.ones(n), np.zeros(n)]

    def measure(M):
        U = _unit(M[rows])
        clusters = KMeans(2, n_init=10, random_state=seed).fit_predict(U)
        acc = float((clusters == y).mean())
        folds = StratifiedKFold(5, shuffle=True, random_state=seed)
        clf = float(cross_val_score(SVC(kernel="rbf"), U, y, cv=folds).mean())
        return dict(kmeans=max(acc, 1 - acc), classifier=clf, projection=float(np.abs(project(U, direction)).mean()))

    return dict(before=measure(A), after=measure(D), n=n, words_female=[words[i] for i in rows[:n][::-1][:10]],
                words_male=[words[i] for i in rows[n:][:10]])
