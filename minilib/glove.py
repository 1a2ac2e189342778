"""GloVe (Pennington, Socher & Manning 2014) from scratch in PyTorch.

GloVe fits word vectors ``w_i``, context vectors ``w~_j`` and two biases to the logarithm of the
co-occurrence counts ``X_ij``, by weighted least squares over the nonzero entries only::

    J = sum_{X_ij > 0} f(X_ij) (w_i . w~_j + b_i + b~_j - log X_ij)^2
    f(x) = min(1, (x / x_max)^alpha),   x_max = 100, alpha = 0.75

and is trained with AdaGrad, as in the paper (the update is written out by hand below, so the
gradients of ``J`` are visible). The word vectors it returns are ``W + W~``.

    C = count.cooccurrence(docs_ids, len(vocab), window=15)     # harmonic weighting, as GloVe
    vectors, history = train_glove(C, dim=50, epochs=15)

Defined in chapter 02.
"""
from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

__all__ = ["GloVe", "glove_weight", "train_glove"]


def glove_weight(x: torch.Tensor, x_max: float = 100.0, alpha: float = 0.75) -> torch.Tensor:
    """GloVe's weighting ``f(x) = min(1, (x / x_max)^alpha)``: rare pairs count less, frequent
    pairs are capped at 1 so that "of the" does not dominate. Same shape as ``x``.
    Defined in chapter 02."""
    return torch.clamp(x / x_max, max=1.0) ** alpha


class GloVe(nn.Module):
    """The GloVe parameters: word vectors ``W`` and context vectors ``W~`` ``(V, dim)``, biases
    ``b`` and ``b~`` ``(V,)``.

    ``forward(i, j)`` returns the model's estimate of ``log X_ij``, ``w_i . w~_j + b_i + b~_j``,
    for index tensors ``i``, ``j`` of shape ``(batch,)``. Initialised uniformly in
    ``[-0.5, 0.5] / dim`` like the reference C code. Defined in chapter 02.
    """

    def __init__(self, vocab_size: int, dim: int):
        super().__init__()
        if vocab_size < 1 or dim < 1:
            raise ValueError(f"vocab_size and dim must be positive, got {vocab_size}, {dim}")
        self.W = nn.Parameter((torch.rand(vocab_size, dim) - 0.5) / dim)
        self.W_ctx = nn.Parameter((torch.rand(vocab_size, dim) - 0.5) / dim)
        self.b = nn.Parameter((torch.rand(vocab_size) - 0.5) / dim)
        self.b_ctx = nn.Parameter((torch.rand(vocab_size) - 0.5) / dim)

    def forward(self, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        return (self.W[i] * self.W_ctx[j]).sum(dim=1) + self.b[i] + self.b_ctx[j]  # (batch,)

    def vectors(self) -> np.ndarray:
        """The final word vectors ``W + W~`` as a ``(V, dim)`` float32 NumPy array."""
        return (self.W + self.W_ctx).detach().cpu().numpy().astype(np.float32)


def _check_matrix(C) -> sp.coo_matrix:
    if not sp.issparse(C):
        C = np.asarray(C, dtype=np.float64)
        if C.ndim != 2:
            raise ValueError(f"expected a (V, V) co-occurrence matrix, got shape {C.shape}")
    if C.shape[0] != C.shape[1]:
        raise ValueError(f"the co-occurrence matrix must be square (V, V), got shape {C.shape}")
    C = sp.coo_matrix(C, dtype=np.float64)
    if C.nnz and C.data.min() < 0:
        raise ValueError("co-occurrence counts must be non-negative; log X is undefined for a negative entry")
    keep = C.data > 0
    if not keep.any():
        raise ValueError("the co-occurrence matrix has no positive entry: nothing to fit (corpus or window too small?)")
    return sp.coo_matrix((C.data[keep], (C.row[keep], C.col[keep])), shape=C.shape)


def train_glove(
    C,
    dim: int,
    epochs: int,
    lr: float = 0.05,
    batch_size: int = 16384,
    x_max: float = 100.0,
    alpha: float = 0.75,
    device: str | torch.device | None = None,
    seed: int = 0,
    progress: bool = True,
    return_model: bool = False,
):
    """Fit GloVe to the co-occurrence matrix ``C`` ``(V, V)`` (sparse or dense, non-negative).

    Each epoch visits every nonzero ``X_ij`` once in a fresh random order (seeded), in
    mini-batches of ``batch_size``. The update is the reference C code's AdaGrad, written out:
    for one entry with error ``e = f(X_ij) (w_i . w~_j + b_i + b~_j - log X_ij)`` the gradients are
    ``e w~_j`` (for ``w_i``), ``e w_i`` (for ``w~_j``) and ``e`` (for both biases); every parameter
    moves by ``-lr * g / sqrt(G)`` and its accumulator ``G`` (started at 1) grows by ``g^2``.
    A batch applies the updates of all its entries at once (like the C code's parallel threads),
    so a frequent word gets one step per entry it takes part in, not one per batch.
    Returns ``vectors = W + W~`` as a ``(V, dim)`` float32 array and ``history`` =
    ``dict(loss=[mean of f(X) (prediction - log X)^2 per epoch], seconds=[...])``; with
    ``return_model=True`` also the trained :class:`GloVe` module, third.
    Defined in chapter 02.
    """
    if dim < 1 or epochs < 1 or batch_size < 1:
        raise ValueError(f"dim, epochs and batch_size must be positive, got {dim}, {epochs}, {batch_size}")
    if lr <= 0 or x_max <= 0 or alpha <= 0:
        raise ValueError(f"lr, x_max and alpha must be positive, got {lr}, {x_max}, {alpha}")
    C = _check_matrix(C)
    dev = torch.device(device) if device is not None else torch.device("cpu")
    torch.manual_seed(seed)
    model = GloVe(C.shape[0], dim).to(dev)
    i = torch.as_tensor(C.row, dtype=torch.long, device=dev)  # (nnz,) word ids
    j = torch.as_tensor(C.col, dtype=torch.long, device=dev)  # (nnz,) context ids
    x = torch.as_tensor(C.data, dtype=torch.float32, device=dev)
    log_x = torch.log(x)  # (nnz,) regression target
    f = glove_weight(x, x_max, alpha)  # (nnz,) per-entry weight
    W, W_ctx, b, b_ctx = (p.data for p in (model.W, model.W_ctx, model.b, model.b_ctx))
    # AdaGrad accumulators, one per parameter entry, started at 1 so the first step is lr * g.
    G, G_ctx, Gb, Gb_ctx = (torch.ones_like(p) for p in (W, W_ctx, b, b_ctx))
    gen = torch.Generator().manual_seed(seed)  # CPU generator: same order on every device
    nnz = len(x)

    def adagrad_(param, acc, rows, grad):
        # Every entry's step uses the accumulator as it stood before the batch, then all the
        # squared gradients are added: index_add_ sums the rows that repeat within the batch.
        param.index_add_(0, rows, -lr * grad / acc[rows].sqrt())
        acc.index_add_(0, rows, grad * grad)

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=epochs, desc="GloVe", unit="epoch")
    history: dict[str, list[float]] = {"loss": [], "seconds": []}
    for _ in range(epochs):
        t0 = time.perf_counter()
        order = torch.randperm(nnz, generator=gen).to(dev)
        total = torch.zeros((), dtype=torch.float64, device=dev)
        for start in range(0, nnz, batch_size):
            idx = order[start : start + batch_size]
            ii, jj = i[idx], j[idx]
            wi, wj = W[ii], W_ctx[jj]  # (batch, dim)
            diff = (wi * wj).sum(dim=1) + b[ii] + b_ctx[jj] - log_x[idx]  # (batch,)
            err = f[idx] * diff  # (batch,) gradient of 0.5 f diff^2 w.r.t. the prediction
            total += (err * diff).sum().double()
            adagrad_(W, G, ii, err[:, None] * wj)
            adagrad_(W_ctx, G_ctx, jj, err[:, None] * wi)
            adagrad_(b, Gb, ii, err)
            adagrad_(b_ctx, Gb_ctx, jj, err)
        history["loss"].append(float(total) / nnz)
        history["seconds"].append(time.perf_counter() - t0)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{history['loss'][-1]:.4f}")
    if bar is not None:
        bar.close()
    if return_model:
        return model.vectors(), history, model
    return model.vectors(), history
