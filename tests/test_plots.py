"""Tests for minilib.plots: the returned objects, not the pixels."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from minilib import plots  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_neighbours_table():
    df = plots.neighbours_table({"king": [("queen", 0.91234), ("prince", 0.8)], "cat": [("dog", 0.9)]})
    assert isinstance(df, pd.DataFrame)
    assert list(df.columns) == ["king", "cat"] and list(df.index) == [1, 2] and df.index.name == "rank"
    assert df.loc[1, "king"] == "queen 0.912" and df.loc[2, "cat"] == ""
    assert "prince 0.800" in df.to_string()
    with pytest.raises(ValueError, match="non-empty"):
        plots.neighbours_table({})
    with pytest.raises(ValueError, match="pairs"):
        plots.neighbours_table({"a": [("b", 0.1, 3)]})


@pytest.mark.parametrize("method", ["pca", "tsne"])
def test_vector_map_places_every_label(method):
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(0, 1, (6, 10)), rng.normal(5, 1, (6, 10))])
    labels = [f"w{i}" for i in range(12)]
    groups = ["a"] * 6 + ["b"] * 6
    fast = {"max_iter": 250} if method == "tsne" else None  # the fewest iterations t-SNE allows
    ax = plots.vector_map(X, labels, groups=groups, method=method, title="map", tsne_kwargs=fast)
    assert [t.get_text() for t in ax.texts] == labels
    assert len(ax.collections) == 2  # one scatter per group
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a", "b"]
    assert ax.get_title() == "map"


def test_vector_map_pca_is_real_pca_and_labels_spread():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(20, 5)) * np.array([10, 3, 0.1, 0.1, 0.1])
    Y = plots._pca_2d(X)
    from sklearn.decomposition import PCA

    ref = PCA(2).fit_transform(X)
    np.testing.assert_allclose(np.abs(Y), np.abs(ref), atol=1e-8)  # same up to the sign of each axis
    # labels of coincident points are pushed apart
    P = np.array([[0.5, 0.5]] * 3)
    L = plots._spread_labels(P)
    gaps = [np.linalg.norm(L[i] - L[j]) for i in range(3) for j in range(i + 1, 3)]
    assert min(gaps) > 0.02


def test_vector_map_torch_none_and_errors():
    fig, ax0 = plt.subplots()
    ax = plots.vector_map(torch.tensor([[0.0, 0.0], [1.0, 1.0]]), ["a", "b"], method="none", ax=ax0)
    assert ax is ax0 and len(ax.texts) == 2 and ax.get_legend() is None
    with pytest.raises(ValueError, match="one label per row"):
        plots.vector_map(np.zeros((3, 4)), ["a"])
    with pytest.raises(ValueError, match="unknown method"):
        plots.vector_map(np.zeros((3, 4)), list("abc"), method="umap")
    with pytest.raises(ValueError, match=r"\(n, 2\)"):
        plots.vector_map(np.zeros((3, 4)), list("abc"), method="none")


def test_training_curve():
    ax = plots.training_curve({"train": [3, 2, 1.5], "val": [3.2, 2.5]}, xlabel="epoch", logy=True)
    assert len(ax.lines) == 2
    assert list(ax.lines[1].get_xdata()) == [1, 2] and list(ax.lines[0].get_ydata()) == [3, 2, 1.5]
    assert ax.get_xlabel() == "epoch" and ax.get_yscale() == "log"
    with pytest.raises(ValueError, match="non-empty"):
        plots.training_curve({"loss": []})


def test_heatmap():
    M = np.arange(6).reshape(2, 3) / 5
    ax = plots.heatmap(M, ["r1", "r2"], ["a", "b", "c"])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["r1", "r2"]
    assert len(ax.texts) == 6 and ax.texts[1].get_text() == "0.20"
    assert len(plots.heatmap(np.zeros((20, 20)), list(range(20)), list(range(20))).texts) == 0
    with pytest.raises(ValueError, match="row labels"):
        plots.heatmap(M, ["r1"], ["a", "b", "c"])


def test_plot_input_errors_name_the_fix():
    with pytest.raises(ValueError, match=r"X must be a matrix \(n, d\), got shape \(3,\)"):
        plots.vector_map(np.zeros(3), list("abc"))
    with pytest.raises(ValueError, match="3 vectors but 2 groups: give one group per row of X"):
        plots.vector_map(np.zeros((3, 4)), list("abc"), groups=["g1", "g2"])
    with pytest.raises(ValueError, match="PCA needs at least 2 vectors"):
        plots.vector_map(np.zeros((1, 4)), ["a"])
    with pytest.raises(ValueError, match="t-SNE needs at least 5 vectors, got 3; use method='pca'"):
        plots.vector_map(np.zeros((3, 4)), list("abc"), method="tsne")
    for bad in ({}, [1.0, 2.0]):
        with pytest.raises(ValueError, match=r"history must be a non-empty dict \{name: \[values\.\.\.\]\}"):
            plots.training_curve(bad)
    with pytest.raises(ValueError, match=r"M must be a matrix \(r, c\), got shape \(3,\)"):
        plots.heatmap(np.zeros(3), ["r"], list("abc"))
