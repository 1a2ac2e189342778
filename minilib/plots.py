"""The book's four pictures: neighbour tables, 2-D vector maps, training curves, heatmaps.

Small and boring on purpose: every chapter draws the same few kinds of figure, so they live
here once and look the same everywhere. Each function draws into ``ax`` (a new figure if
``None``) and returns the matplotlib ``Axes`` (or, for tables, a pandas ``DataFrame``); the
notebook calls ``plt.show()``.

Defined in chapter 01; used by every chapter.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd


def neighbours_table(neighbours: Mapping[str, Sequence[tuple[str, float]]], digits: int = 3) -> pd.DataFrame:
    """A table of nearest neighbours: one column per query word, one row per rank.

    ``neighbours`` maps each query to its ``[(neighbour, score), ...]`` list, best first (what
    :func:`minilib.similarity.nearest_words` returns). Cells read ``"paris 0.843"``; columns
    shorter than the longest are padded with ``""``. The rows are numbered from 1, so the
    frame prints as a readable text table as well as an HTML one.

    Defined in chapter 01.
    """
    if not isinstance(neighbours, Mapping) or not neighbours:
        raise ValueError("neighbours must be a non-empty dict {query: [(word, score), ...]}")
    depth = max(len(v) for v in neighbours.values())
    cols = {}
    for query, pairs in neighbours.items():
        cells = []
        for pair in pairs:
            if len(pair) != 2:
                raise ValueError(f"neighbours[{query!r}] must hold (word, score) pairs, got {pair!r}")
            word, score = pair
            cells.append(f"{word} {float(score):.{digits}f}")
        cols[query] = cells + [""] * (depth - len(cells))
    return pd.DataFrame(cols, index=pd.RangeIndex(1, depth + 1, name="rank"))


def _pca_2d(X: np.ndarray) -> np.ndarray:
    """Project rows of ``X`` on their first two principal components: ``(n, 2)``."""
    Xc = X - X.mean(axis=0)
    _, _, Vt = np.linalg.svd(Xc, full_matrices=False)
    Y = Xc @ Vt[:2].T
    # SVD fixes each axis only up to sign; make the largest coordinate positive so that
    # the same data always gives the same picture.
    signs = np.sign(Y[np.abs(Y).argmax(axis=0), range(Y.shape[1])])
    return Y * np.where(signs == 0, 1, signs)


def _spread_labels(P: np.ndarray, widths=None, height: float = 0.035, steps: int = 200) -> np.ndarray:
    """Label positions near the points ``P`` (``(n, 2)``, axis-scaled to [0, 1]) but apart.

    Each label is a box ``widths[i]`` wide and ``height`` tall (axis fractions) whose lower-left
    corner starts just above-right of its point. For a few hundred rounds, every pair of
    overlapping boxes is pushed apart along the axis where they overlap least (usually
    vertically, since words are wider than tall), and each box is pulled back a little
    towards its point. Not a layout engine: enough to keep a few dozen words readable.
    """
    n = len(P)
    widths = np.full(n, 0.06) if widths is None else np.asarray(widths, dtype=np.float64)
    # A slightly different start per label gives coincident points a direction to part in.
    angle = np.arange(n) * 2.4
    home = P + np.array([0.01, 0.01])
    L = home + 1e-3 * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    for _ in range(steps):
        dx = L[:, None, 0] - L[None, :, 0]  # (n, n): >0 when label i is right of label j
        dy = L[:, None, 1] - L[None, :, 1]
        # overlap along x of boxes [x, x + w): depends on which one is on the left
        ox = np.where(dx >= 0, widths[None, :] - dx, widths[:, None] + dx)
        oy = height - np.abs(dy)
        hit = (ox > 0) & (oy > 0) & ~np.eye(n, dtype=bool)
        vertical = oy <= ox  # push along the axis with less overlap
        sy = np.where(dy == 0, np.sign(np.arange(n)[:, None] - np.arange(n)[None, :]), np.sign(dy))
        sx = np.where(dx == 0, 1.0, np.sign(dx))
        push_y = np.where(hit & vertical, 0.5 * oy * sy, 0).sum(axis=1)
        push_x = np.where(hit & ~vertical, 0.5 * ox * sx, 0).sum(axis=1)
        L = L + 0.5 * np.stack([push_x, push_y], axis=1) + 0.02 * (home - L)
    return L


def vector_map(
    X,
    labels: Sequence[str],
    groups: Sequence[str] | None = None,
    method: str = "pca",
    ax=None,
    seed: int = 0,
    title: str | None = None,
    tsne_kwargs: dict | None = None,
):
    """Scatter vectors in 2-D with a text label per point, coloured by group.

    ``X`` is ``(n, d)`` (NumPy or torch); ``method`` maps it to 2-D: ``"pca"`` (the first two
    principal components: distances along them are real), ``"tsne"`` (scikit-learn's t-SNE,
    seeded: keeps neighbourhoods, distorts global distances) or ``"none"`` (``X`` is already
    ``(n, 2)``). ``labels`` names the points; ``groups`` (optional, one per point) picks the
    colours and the legend. Labels are nudged apart so they overlap less. ``tsne_kwargs`` go to
    scikit-learn's ``TSNE`` (e.g. ``{"perplexity": 5}``).

    Defined in chapter 01.
    """
    import matplotlib.pyplot as plt

    X = X.detach().cpu().numpy() if hasattr(X, "detach") else np.asarray(X)
    X = X.astype(np.float64)
    if X.ndim != 2:
        raise ValueError(f"X must be a matrix (n, d), got shape {X.shape}")
    n = len(X)
    if len(labels) != n:
        raise ValueError(f"{n} vectors but {len(labels)} labels: give one label per row of X")
    if groups is not None and len(groups) != n:
        raise ValueError(f"{n} vectors but {len(groups)} groups: give one group per row of X")
    if method == "pca":
        if n < 2:
            raise ValueError("PCA needs at least 2 vectors")
        Y = _pca_2d(X)
    elif method == "tsne":
        from sklearn.manifold import TSNE

        if n < 5:
            raise ValueError(f"t-SNE needs at least 5 vectors, got {n}; use method='pca'")
        # Exact t-SNE is faster than Barnes-Hut for the few hundred points a readable map holds.
        kw = dict(perplexity=min(30.0, (n - 1) / 3), init="pca", random_state=seed,
                  method="exact" if n <= 500 else "barnes_hut") | (tsne_kwargs or {})
        Y = TSNE(2, **kw).fit_transform(X)
    elif method == "none":
        if X.shape[1] != 2:
            raise ValueError(f"method='none' needs 2-D points (n, 2), got shape {X.shape}; use 'pca' or 'tsne'")
        Y = X
    else:
        raise ValueError(f"unknown method {method!r}: use 'pca', 'tsne' or 'none'")

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 6))
    groups = list(groups) if groups is not None else [None] * n
    names = list(dict.fromkeys(groups))  # groups in first-seen order
    cmap = plt.get_cmap("tab10")
    for gi, g in enumerate(names):
        idx = [i for i in range(n) if groups[i] == g]
        ax.scatter(Y[idx, 0], Y[idx, 1], s=25, color=cmap(gi % 10), label=g)

    # Place labels in axis-fraction units so that spreading works whatever the data's scale.
    lo, hi = Y.min(axis=0), Y.max(axis=0)
    span = np.where(hi - lo > 0, hi - lo, 1.0)
    # Sizes of the labels as fractions of the data's span (the axes show 1 + 3 * 0.08 spans).
    w_in, h_in = ax.get_figure().get_size_inches() * np.array([0.78, 0.77])  # axes size, roughly
    grow = 1 + 3 * 0.08
    char = 9 * 0.6 / 72 / w_in * grow  # width of a 9-point character
    L = _spread_labels((Y - lo) / span, widths=[char * len(str(t)) + 0.01 for t in labels],
                       height=9 * 1.3 / 72 / h_in * grow) * span + lo
    for i in range(n):
        colour = cmap(names.index(groups[i]) % 10)
        ax.annotate(str(labels[i]), xy=Y[i], xytext=L[i], fontsize=9, color=colour,
                    arrowprops=dict(arrowstyle="-", color="0.7", lw=0.5))
    pad = 0.08 * span
    ax.set_xlim(lo[0] - pad[0], hi[0] + 2 * pad[0])
    ax.set_ylim(lo[1] - pad[1], hi[1] + 2 * pad[1])
    ax.set_xlabel(f"{method.upper()} 1" if method != "none" else "x")
    ax.set_ylabel(f"{method.upper()} 2" if method != "none" else "y")
    if names != [None]:
        ax.legend(loc="best", fontsize=8)
    if title:
        ax.set_title(title)
    return ax


def training_curve(history: Mapping[str, Sequence[float]], ax=None, xlabel: str = "step", logy: bool = False,
                   title: str | None = None):
    """One line per entry of ``history`` (e.g. ``{"train loss": [...], "val loss": [...]}``).

    Series may have different lengths; each is plotted against 1, 2, ... Returns the Axes.

    Defined in chapter 01.
    """
    import matplotlib.pyplot as plt

    if not isinstance(history, Mapping) or not history:
        raise ValueError("history must be a non-empty dict {name: [values...]}")
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    for name, values in history.items():
        values = np.asarray(values, dtype=np.float64)
        if values.ndim != 1 or len(values) == 0:
            raise ValueError(f"history[{name!r}] must be a non-empty list of numbers")
        ax.plot(np.arange(1, len(values) + 1), values, label=name)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.legend()
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title)
    return ax


def heatmap(M, row_labels: Sequence[str], col_labels: Sequence[str], ax=None, cmap: str = "viridis",
            annotate: bool | None = None, digits: int = 2, title: str | None = None):
    """Matrix ``M`` (``(r, c)``) as a coloured grid with labelled rows and columns.

    ``annotate`` writes each value in its cell (default: only when the grid has at most 15x15
    cells, where the numbers stay readable). Returns the Axes.

    Defined in chapter 01.
    """
    import matplotlib.pyplot as plt

    M = M.detach().cpu().numpy() if hasattr(M, "detach") else np.asarray(M)
    if M.ndim != 2:
        raise ValueError(f"M must be a matrix (r, c), got shape {M.shape}")
    if len(row_labels) != M.shape[0] or len(col_labels) != M.shape[1]:
        raise ValueError(f"M has shape {M.shape} but there are {len(row_labels)} row labels and {len(col_labels)} column labels")
    if ax is None:
        _, ax = plt.subplots(figsize=(1 + 0.5 * M.shape[1], 0.8 + 0.45 * M.shape[0]))
    im = ax.imshow(M, cmap=cmap, aspect="auto")
    ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(M.shape[1]), [str(c) for c in col_labels], rotation=45, ha="right")
    ax.set_yticks(range(M.shape[0]), [str(r) for r in row_labels])
    if annotate is None:
        annotate = max(M.shape) <= 15
    if annotate:
        mid = (np.nanmax(M) + np.nanmin(M)) / 2
        for i in range(M.shape[0]):
            for j in range(M.shape[1]):
                ax.text(j, i, f"{M[i, j]:.{digits}f}", ha="center", va="center", fontsize=8,
                        color="black" if M[i, j] > mid else "white")
    if title:
        ax.set_title(title)
    return ax
