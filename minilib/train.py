"""The book's one training loop, and the small pieces language-model pretraining needs.

Every model from chapter 06 on is trained by :func:`fit`: AdamW (no weight decay on biases and
normalisation weights), a learning rate that warms up and then decays, gradient clipping, a
progress bar, and a history of plain floats to plot. ``fit`` runs on ``accelerate`` when it is
installed, so the same notebook line uses mixed precision on a GPU (bf16 where the GPU supports
it, else fp16 with a loss scaler) and full precision on a CPU; without ``accelerate`` it runs the
same steps in a plain PyTorch loop. On a CPU both paths give the same numbers for a seed.

The module knows nothing about transformers: a model is any ``nn.Module`` and a loss is any
function ``loss_fn(model, batch) -> scalar tensor``. What it adds for language models is model
agnostic too: cutting a token stream into blocks (:func:`lm_blocks`), an endless seeded stream
of mini-batches (:class:`Batches`), BERT's masking rule (:func:`mask_tokens`), the two losses
(:func:`masked_lm_loss`, :func:`causal_lm_loss`) and :func:`perplexity`.

Defined in chapter 06.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from . import profile

try:  # accelerate is optional: without it fit() runs the same steps in a plain loop
    import accelerate
except ImportError:  # pragma: no cover - exercised only where accelerate is missing
    accelerate = None

__all__ = [
    "IGNORE_INDEX", "mask_tokens", "lm_blocks", "Batches", "to_device", "masked_lm_loss", "causal_lm_loss",
    "warmup_linear", "warmup_cosine", "param_groups", "fit", "perplexity",
]

IGNORE_INDEX = -100  # label of a position that is not predicted (PyTorch's cross_entropy default)


# --------------------------------------------------------------------------------------------
# Data: masking, blocks, batches
# --------------------------------------------------------------------------------------------

def mask_tokens(ids: torch.Tensor, attention_mask: torch.Tensor | None = None, *, mask_id: int, vocab_size: int,
                special_ids: Iterable[int] = (), p: float = 0.15,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's masking rule: the inputs and labels of one masked-LM batch.

    ``ids`` (B, T) are token ids; ``attention_mask`` (B, T) is 1 for a token and 0 for padding
    (``None``: no padding). In every row we choose ``round(p * n)`` of its ``n`` maskable
    positions (at least one when ``n > 0``), where maskable means not padding and not one of
    ``special_ids``. Of the chosen positions, 80 % become ``mask_id``, 10 % a random non-special
    token and 10 % stay unchanged (Devlin et al., 2019), so the model cannot learn that only
    ``[MASK]`` positions matter. Returns ``(inputs, labels)``, both (B, T) LongTensors, with
    ``labels`` the original id at chosen positions and ``-100`` everywhere else. ``generator``
    (a ``torch.Generator``) makes the choice reproducible. Defined in chapter 06.
    """
    if not isinstance(ids, torch.Tensor) or ids.dim() != 2:
        raise ValueError(f"ids must be a (batch, seq) tensor of token ids, got "
                         f"{tuple(ids.shape) if isinstance(ids, torch.Tensor) else type(ids).__name__}")
    if ids.numel() == 0:
        raise ValueError("ids is empty: mask a batch with at least one token")
    if not 0.0 < p <= 1.0:
        raise ValueError(f"p={p} must be in (0, 1]: BERT masks p=0.15 of the tokens")
    if attention_mask is None:
        attention_mask = torch.ones_like(ids)
    if attention_mask.shape != ids.shape:
        raise ValueError(f"attention_mask has shape {tuple(attention_mask.shape)} but ids has {tuple(ids.shape)}")
    special = torch.tensor(sorted({int(s) for s in special_ids} | {int(mask_id)}), dtype=torch.long)
    if int(ids.max()) >= vocab_size or int(ids.min()) < 0:
        raise ValueError(f"ids must lie in [0, vocab_size={vocab_size}); found {int(ids.min())}..{int(ids.max())}")
    # Any token may replace a chosen one except the specials (and [MASK] itself).
    allowed = torch.ones(vocab_size, dtype=torch.bool)
    allowed[special[special < vocab_size]] = False
    replacements = allowed.nonzero().squeeze(1)  # (n_allowed,)
    if replacements.numel() == 0:
        raise ValueError("every id is special: there is no ordinary token to use as a random replacement")

    # Random numbers come from the generator's device, then move to the data.
    gen_device = generator.device if generator is not None else torch.device("cpu")
    B, T = ids.shape

    def rand(*shape):
        return torch.rand(*shape, generator=generator, device=gen_device).to(ids.device)

    maskable = attention_mask.bool() & ~torch.isin(ids, special.to(ids.device))  # (B, T)
    n = maskable.sum(1)  # (B,)
    k = torch.where(n > 0, torch.clamp(torch.round(n * p), min=1), torch.zeros_like(n))  # how many to choose per row
    # Choose k random maskable positions per row: rank positions by a random score, with the
    # unmaskable ones pushed past the end, and keep the k best ranks.
    score = torch.where(maskable, rand(B, T), torch.full((B, T), 2.0, device=ids.device))
    order = score.argsort(dim=1)  # (B, T)
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(T, device=ids.device).expand(B, T))
    chosen = (rank < k[:, None]) & maskable  # (B, T)

    labels = torch.where(chosen, ids, torch.full_like(ids, IGNORE_INDEX))
    u = rand(B, T)
    to_mask = chosen & (u < 0.8)
    to_random = chosen & (u >= 0.8) & (u < 0.9)  # the last 10 % keep their token
    pick = (rand(B, T) * replacements.numel()).long().clamp_(max=replacements.numel() - 1)
    random_ids = replacements.to(ids.device)[pick]  # (B, T)
    inputs = torch.where(to_mask, torch.full_like(ids, mask_id), ids)
    inputs = torch.where(to_random, random_ids, inputs)
    return inputs, labels


def lm_blocks(token_ids: Sequence[int] | torch.Tensor | np.ndarray, block_size: int) -> torch.Tensor:
    """Cut one long token stream into consecutive training blocks: LongTensor (N, block_size).

    Block ``i`` is ``token_ids[i * block_size : (i + 1) * block_size]``; the ragged end that does
    not fill a block is dropped. A causal LM learns from every position of a block (the loss
    shifts by one itself), so blocks do not overlap. Defined in chapter 06.
    """
    if block_size < 1:
        raise ValueError(f"block_size={block_size} must be at least 1")
    stream = torch.as_tensor(np.asarray(token_ids), dtype=torch.long).reshape(-1)
    n = stream.numel() // block_size
    if n == 0:
        raise ValueError(f"{stream.numel()} tokens do not fill one block of {block_size}: "
                         "use more text or a smaller block_size")
    return stream[: n * block_size].view(n, block_size).clone()


class Batches:
    """An endless, seeded stream of random mini-batches of rows.

    ``data`` is a tensor, or a tuple / dict of tensors with the same number of rows (e.g.
    ``(ids, attention_mask)``); every batch has the same structure with ``batch_size`` rows.
    Rows are drawn epoch by epoch in a fresh random order (so every row is seen once before any
    is seen twice); a batch that crosses an epoch boundary continues into the next order, so all
    batches have the same size. Each ``iter(batches)`` starts again from ``seed``: the same seed
    gives the same stream. ``len(batches)`` is the number of batches in one pass over the rows.

        >>> it = iter(Batches(torch.arange(10).view(5, 2), batch_size=2, seed=0))
        >>> next(it).shape
        torch.Size([2, 2])

    Defined in chapter 06.
    """

    def __init__(self, data, batch_size: int, seed: int = 0):
        tensors = list(data.values()) if isinstance(data, Mapping) else \
            list(data) if isinstance(data, (tuple, list)) else [data]
        if not tensors or not all(isinstance(t, torch.Tensor) for t in tensors):
            raise TypeError("Batches takes a tensor or a tuple/dict of tensors (e.g. lm_blocks(...))")
        n = tensors[0].shape[0] if tensors[0].dim() else 0
        if n == 0:
            raise ValueError("Batches got no rows: the data is empty (check the corpus and the block size)")
        rows = [t.shape[0] if t.dim() else 0 for t in tensors]  # a 0-d tensor has no rows
        if any(r != n for r in rows):
            raise ValueError(f"all tensors need the same number of rows, got {rows}")
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be at least 1")
        self.data, self.batch_size, self.seed, self.n_rows = data, int(batch_size), int(seed), n

    def __len__(self) -> int:
        return math.ceil(self.n_rows / self.batch_size)

    def _take(self, idx: torch.Tensor):
        if isinstance(self.data, Mapping):
            return {k: v[idx] for k, v in self.data.items()}
        if isinstance(self.data, (tuple, list)):
            return type(self.data)(t[idx] for t in self.data)
        return self.data[idx]

    def __iter__(self):
        gen = torch.Generator().manual_seed(self.seed)
        pending = torch.empty(0, dtype=torch.long)
        while True:
            while pending.numel() < self.batch_size:  # top up with the next epoch's order
                pending = torch.cat([pending, torch.randperm(self.n_rows, generator=gen)])
            idx, pending = pending[: self.batch_size], pending[self.batch_size:]
            yield self._take(idx)


def to_device(batch, device):
    """Move a tensor, or a tuple / list / dict of them, to ``device`` (other values unchanged)."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (tuple, list)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


# --------------------------------------------------------------------------------------------
# Losses
# --------------------------------------------------------------------------------------------

def masked_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the predicted positions of a masked-LM batch.

    ``logits`` (B, T, V), ``labels`` (B, T) from :func:`mask_tokens` (``-100`` = not predicted).
    Computed in float32 even under mixed precision. Defined in chapter 06.
    """
    if logits.dim() != 3 or labels.shape != logits.shape[:2]:
        raise ValueError(f"logits must be (B, T, V) and labels (B, T); got {tuple(logits.shape)} and "
                         f"{tuple(labels.shape)}")
    if not (labels != IGNORE_INDEX).any():
        raise ValueError("labels predict no position (all -100): the batch has no maskable token; "
                         "check special_ids and the attention mask given to mask_tokens")
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1),
                           ignore_index=IGNORE_INDEX)


def causal_lm_loss(logits: torch.Tensor, ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean next-token cross-entropy: position ``t`` predicts ``ids[:, t + 1]``.

    ``logits`` (B, T, V) are the model's outputs for ``ids`` (B, T); the shift by one is done
    here, so pass the same ``ids`` the model saw. With an ``attention_mask`` (B, T), a pair
    counts only when both the predicting and the predicted position are tokens, not padding
    (with left or right padding alike). Computed in float32. Defined in chapter 06.
    """
    if logits.dim() != 3 or ids.shape != logits.shape[:2]:
        raise ValueError(f"logits must be (B, T, V) and ids (B, T); got {tuple(logits.shape)} and {tuple(ids.shape)}")
    if ids.shape[1] < 2:
        raise ValueError("a causal LM loss needs sequences of at least 2 tokens (one to read, one to predict)")
    pred = logits[:, :-1].float()  # (B, T-1, V): the prediction made at each position...
    target = ids[:, 1:]  # (B, T-1): ...is scored against the next token
    if attention_mask is not None:
        if attention_mask.shape != ids.shape:
            raise ValueError(f"attention_mask has shape {tuple(attention_mask.shape)} but ids has {tuple(ids.shape)}")
        keep = attention_mask[:, 1:].bool() & attention_mask[:, :-1].bool()
        if not keep.any():
            raise ValueError("the attention mask leaves no (token, next token) pair to predict")
        target = torch.where(keep, target, torch.full_like(target, IGNORE_INDEX))
    return F.cross_entropy(pred.reshape(-1, pred.shape[-1]), target.reshape(-1), ignore_index=IGNORE_INDEX)


# --------------------------------------------------------------------------------------------
# Optimiser and schedules
# --------------------------------------------------------------------------------------------

def _check_schedule(warmup_steps: int, total_steps: int) -> None:
    if total_steps < 1:
        raise ValueError(f"total_steps={total_steps} must be at least 1")
    if not 0 <= warmup_steps <= total_steps:
        raise ValueError(f"warmup_steps={warmup_steps} must lie in [0, total_steps={total_steps}]")


def warmup_linear(optimizer: torch.optim.Optimizer, warmup_steps: int,
                  total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Learning rate rising linearly from 0 to its peak over ``warmup_steps``, then falling
    linearly to 0 at ``total_steps`` (BERT's schedule). The factor at step ``s`` is
    ``s / warmup_steps`` during warm-up and ``(total - s) / (total - warmup)`` after it. Defined
    in chapter 06.
    """
    _check_schedule(warmup_steps, total_steps)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return step / warmup_steps
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def warmup_cosine(optimizer: torch.optim.Optimizer, warmup_steps: int,
                  total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up to the peak, then half a cosine down to 0 at ``total_steps`` (GPT-style):
    factor ``0.5 * (1 + cos(pi * progress))`` with ``progress`` going from 0 to 1 after the
    warm-up. Defined in chapter 06.
    """
    _check_schedule(warmup_steps, total_steps)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return step / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


SCHEDULES = {"linear": warmup_linear, "cosine": warmup_cosine}


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW parameter groups: weight decay on the weight matrices and embeddings only.

    Decay pulls a parameter towards zero. That regularises a matrix, but for a bias or the
    gain of a LayerNorm (1-D parameters) zero is not a sensible prior, so BERT and GPT-2 leave
    them out; we do the same by rule: any parameter with fewer than 2 dimensions, or whose
    name says it is a bias or a norm. Tied parameters appear once. Defined in chapter 06.
    """
    decay, no_decay = [], []
    for name, param in model.named_parameters():  # de-duplicates tied weights
        if not param.requires_grad:
            continue
        lowered = name.lower()
        if param.dim() < 2 or lowered.endswith("bias") or "norm" in lowered:
            no_decay.append(param)
        else:
            decay.append(param)
    if not decay and not no_decay:
        raise ValueError("the model has no trainable parameter")
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


# --------------------------------------------------------------------------------------------
# The training loop
# --------------------------------------------------------------------------------------------

def _scalar_loss(out, step: int) -> torch.Tensor:
    """The loss tensor from a loss_fn's return value (a scalar, or ``(scalar, n_tokens)``)."""
    loss = out[0] if isinstance(out, tuple) else out
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
        raise ValueError(f"loss_fn must return a scalar tensor (e.g. the mean loss of the batch), got {shape} "
                         f"at step {step}: reduce it with .mean()")
    return loss.reshape(())


def _nan_error(step: int, lr: float) -> FloatingPointError:
    return FloatingPointError(
        f"the loss is NaN or infinite at step {step} (learning rate {lr:.3g}): training diverged. "
        "Try a lower lr (e.g. half), a longer warmup, or grad_clip=1.0.")


def _batch_stream(batches):
    """Yield batches forever: restart a finite re-iterable (a list, a DataLoader) when it ends."""
    seen_any = False
    while True:
        got = False
        for batch in batches:
            got = seen_any = True
            yield batch
        if not got:
            raise ValueError("batches is empty" if not seen_any else
                             "batches ran out and cannot be restarted (an iterator was passed): "
                             "pass Batches(...), a list or a DataLoader")


def _make_accelerator(device: torch.device, mixed_precision: str | None):
    """An ``accelerate.Accelerator`` for ``device``: bf16 on a CUDA GPU that has it, else fp16;
    full precision elsewhere."""
    if mixed_precision is None:
        if device.type == "cuda":
            mixed_precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        else:
            mixed_precision = "no"
    kwargs = dict(cpu=device.type == "cpu", mixed_precision=mixed_precision)
    try:
        return accelerate.Accelerator(**kwargs)
    except ValueError:
        # accelerate keeps one global state per process; a second fit() with other settings
        # (another device or precision) must reset it first.
        from accelerate.state import AcceleratorState

        AcceleratorState._reset_state(reset_partial_state=True)
        return accelerate.Accelerator(**kwargs)


def fit(model: nn.Module, batches, loss_fn: Callable, *, steps: int, lr: float, weight_decay: float = 0.01,
        warmup: float | int = 0.1, grad_clip: float | None = 1.0, device=None, eval_fn: Callable | None = None,
        eval_every: int | None = None, use_accelerate: bool = True, progress: bool = True, desc: str = "train",
        schedule: str = "linear", grad_accum: int = 1, betas: tuple[float, float] = (0.9, 0.999),
        mixed_precision: str | None = None) -> dict[str, list[float]]:
    """Train ``model`` for ``steps`` optimiser steps; return the history as lists of floats.

    ``batches`` yields batches (tensors, or tuples / dicts of them) forever, like
    :class:`Batches`; a finite list or DataLoader is restarted when it runs out.
    ``loss_fn(model, batch)`` returns the scalar loss of one batch (or ``(loss, n_tokens)``).
    Each step: AdamW on :func:`param_groups` (``weight_decay`` on matrices only), learning rate
    from ``schedule`` (``"linear"`` or ``"cosine"``, after ``warmup``: a fraction of ``steps``
    if a float, a number of steps if an int), gradients clipped to norm ``grad_clip`` (None:
    no clipping), ``grad_accum`` batches per step. ``eval_fn(model) -> float`` runs in eval
    mode without gradients every ``eval_every`` steps and after the last step.

    ``device`` defaults to the profile's. With ``use_accelerate`` and ``accelerate`` installed,
    the loop runs through ``accelerate.Accelerator`` (mixed precision on CUDA: bf16 where
    supported, else fp16 with a loss scaler; ``mixed_precision`` overrides); otherwise the same
    steps in plain PyTorch. On a CPU both give identical results for a seed.

    Returns ``{"step", "loss", "lr"}`` (one entry per step: the step number from 1, the mean
    loss of its batches, the learning rate it used) plus ``{"eval_step", "eval"}`` with an
    ``eval_fn``. Raises ``FloatingPointError`` naming the step when the loss becomes NaN.
    The model is left on ``device``, in train mode. Defined in chapter 06.
    """
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps={steps!r} must be an int >= 1 (the number of optimiser steps)")
    if lr <= 0:
        raise ValueError(f"lr={lr} must be positive")
    if grad_accum < 1:
        raise ValueError(f"grad_accum={grad_accum} must be at least 1")
    if eval_every is not None and eval_every < 1:
        raise ValueError(f"eval_every={eval_every} must be at least 1 (or None: evaluate only at the end)")
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}: use one of {sorted(SCHEDULES)}")
    if isinstance(warmup, bool) or not (isinstance(warmup, int) and 0 <= warmup <= steps
                                        or isinstance(warmup, float) and 0.0 <= warmup <= 1.0):
        raise ValueError(f"warmup={warmup!r}: give a fraction of steps in [0, 1] (float) or a number of "
                         f"steps in [0, {steps}] (int)")
    warmup_steps = warmup if isinstance(warmup, int) else int(round(warmup * steps))
    if device is None:  # the profile's device; without a profile.setup() the best one present
        device = profile._current.device if profile._current is not None else profile.pick_device()
    device = torch.device(device)

    optimizer = torch.optim.AdamW(param_groups(model, weight_decay), lr=lr, betas=betas)
    scheduler = SCHEDULES[schedule](optimizer, warmup_steps, steps)

    accelerator = None
    if use_accelerate and accelerate is not None:
        accelerator = _make_accelerator(device, mixed_precision)
        model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
        device = accelerator.device
    else:
        model = model.to(device)

    def backward(loss):
        accelerator.backward(loss) if accelerator is not None else loss.backward()

    def clip():
        params = [p for g in optimizer.param_groups for p in g["params"]]
        if accelerator is not None:
            accelerator.clip_grad_norm_(params, grad_clip)  # unscales fp16 gradients first
        else:
            torch.nn.utils.clip_grad_norm_(params, grad_clip)

    def evaluate():
        model.eval()
        with torch.no_grad():
            value = eval_fn(model)
        model.train()
        history["eval_step"].append(float(step))
        history["eval"].append(float(value))

    history: dict[str, list[float]] = {"step": [], "loss": [], "lr": []}
    if eval_fn is not None:
        history.update(eval_step=[], eval=[])
    stream = _batch_stream(batches)
    model.train()
    bar = tqdm(range(1, steps + 1), desc=desc, disable=not progress, leave=True)
    smooth = None
    try:
        for step in bar:
            current_lr = optimizer.param_groups[0]["lr"]
            total = 0.0
            for _ in range(grad_accum):
                loss = _scalar_loss(loss_fn(model, to_device(next(stream), device)), step)
                value = float(loss.detach())
                if not math.isfinite(value):
                    raise _nan_error(step, current_lr)
                backward(loss / grad_accum)
                total += value / grad_accum
            if grad_clip is not None:
                clip()
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            history["step"].append(float(step))
            history["loss"].append(total)
            history["lr"].append(float(current_lr))
            smooth = total if smooth is None else 0.98 * smooth + 0.02 * total
            if progress and (step % 10 == 0 or step == steps):
                bar.set_postfix(loss=f"{smooth:.3f}", refresh=False)
            if eval_fn is not None and ((eval_every and step % eval_every == 0) or step == steps):
                evaluate()
    finally:
        bar.close()
        if accelerator is not None:
            # Undo accelerate's mixed-precision wrapper on forward, so later use of the model
            # (inference, another fit) sees the plain module.
            accelerator.unwrap_model(model, keep_fp32_wrapper=False)
    return history


def perplexity(model: nn.Module, batches_or_tensor, loss_fn: Callable, max_batches: int | None = None,
               batch_size: int = 32) -> float:
    """``exp`` of the mean per-token loss over some batches, in eval mode without gradients.

    ``batches_or_tensor`` is a tensor of rows (e.g. held-out :func:`lm_blocks`, read once in
    order, ``batch_size`` rows at a time), a :class:`Batches` (one pass: ``len(batches)``
    batches unless ``max_batches``) or any iterable of batches. ``loss_fn(model, batch)``
    returns a batch's mean token loss, or ``(mean loss, n_tokens)``; batches are weighted by
    ``n_tokens`` when given, else by the number of elements of the batch's first tensor (right
    for equal-length rows). A uniform predictor over ``V`` tokens scores exactly ``V``.
    Defined in chapter 06.
    """
    if isinstance(batches_or_tensor, torch.Tensor):
        rows = batches_or_tensor
        if rows.shape[0] == 0:
            raise ValueError("no rows to evaluate")
        source: Iterable = (rows[i : i + batch_size] for i in range(0, rows.shape[0], batch_size))
    else:
        source = batches_or_tensor
        if max_batches is None:
            if isinstance(source, Batches):
                max_batches = len(source)
            elif not hasattr(source, "__len__"):
                raise ValueError("an endless stream of batches needs max_batches")
    try:
        device = next(model.parameters()).device
    except StopIteration:
        device = torch.device("cpu")
    was_training = model.training
    model.eval()
    total, count = 0.0, 0.0
    with torch.no_grad():
        for i, batch in enumerate(source):
            if max_batches is not None and i >= max_batches:
                break
            batch = to_device(batch, device)
            out = loss_fn(model, batch)
            loss = _scalar_loss(out, i)
            if isinstance(out, tuple):
                n = float(out[1])
            else:
                first = batch if isinstance(batch, torch.Tensor) else \
                    next(iter(batch.values())) if isinstance(batch, Mapping) else batch[0]
                n = float(first.numel())
            total += float(loss) * n
            count += n
    model.train(was_training)
    if count == 0:
        raise ValueError("perplexity got no batches (or no tokens) to evaluate")
    return math.exp(total / count)
