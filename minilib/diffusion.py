"""Diffusion models conditioned on embeddings: DDPM training, DDPM and DDIM sampling, guidance.

A denoising diffusion probabilistic model (Ho et al., 2020) destroys an image ``x0`` in ``T``
small Gaussian steps, ``q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1}, beta_t I)``, and learns
to undo them. Three facts make it cheap to train:

* the forward process has a closed form, ``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps`` with
  ``abar_t = prod_{s<=t} (1 - beta_s)`` (:func:`q_sample`), so any ``t`` is one line away;
* the network only has to predict the noise ``eps`` that was added (a mean-squared error,
  :func:`diffusion_loss`): the weighted ELBO reduces to that regression;
* the reverse step given a noise estimate is Gaussian with a known mean and variance
  (:func:`ddpm_sample`); DDIM (Song et al., 2021) reuses the same network with a deterministic,
  non-Markovian update that keeps its quality at a few dozen steps (:func:`ddim_sample`).

The network is a small U-Net (Ronneberger et al., 2015) that reads the time step as a
sinusoidal embedding (chapter 05's frequencies) and a condition in one of two ways: a vector
(a class embedding, or an image embedding from chapter 14's image tower) added to the time
embedding, or a sequence of tokens (chapter 14's text tower) read by cross-attention (Rombach
et al., 2022). Training drops the condition now and then so one network also knows the
unconditional score, which classifier-free guidance (Ho & Salimans, 2022) extrapolates from:
``eps = eps_uncond + s * (eps_cond - eps_uncond)``; ``s = 1`` is the plain conditional model,
``s = 0`` the unconditional one. :func:`frechet_distance` scores samples as FID does (Heusel
et al., 2017), in the feature space of any classifier, such as :class:`AttributeCNN`.

Indexing: time steps run ``t = 0 .. T-1``; ``x_t`` has had ``t + 1`` noise steps, so
``abar[0] = 1 - beta[0]`` and ``abar[T-1]`` is close to 0. Images live in ``[-1, 1]``.

Defined in chapter 15.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .positions import frequencies

__all__ = [
    "Schedule", "linear_schedule", "cosine_schedule", "q_sample", "q_step", "timestep_embedding",
    "ResBlock", "CrossAttention", "UNet", "diffusion_loss", "sample_timesteps", "guided_eps",
    "ddpm_sample", "ddim_sample", "AttributeCNN", "frechet_distance", "slerp", "to_image", "from_image", "image_grid",
]


# --------------------------------------------------------------------------------------------
# Noise schedules and the forward process
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Schedule:
    """A noise schedule: ``betas`` (T,) and the products the samplers need, float64 on the CPU.

    ``alphas = 1 - betas``; ``alpha_bar[t] = prod_{s<=t} alphas[s]`` is the fraction of signal
    variance left after ``t + 1`` steps. Defined in chapter 15.
    """
    betas: torch.Tensor
    name: str = "custom"

    def __post_init__(self):
        b = self.betas
        if not isinstance(b, torch.Tensor) or b.dim() != 1 or b.numel() < 1:
            raise ValueError("betas must be a non-empty 1-D tensor (one beta per time step)")
        if not bool(((b > 0) & (b < 1)).all()):
            raise ValueError("every beta must lie in (0, 1): a step adds some noise and keeps some signal")

    @property
    def T(self) -> int:
        """Number of noise steps, ``len(betas)``."""
        return self.betas.numel()

    @property
    def alphas(self) -> torch.Tensor:
        """``1 - betas``, ``(T,)``: the fraction of signal variance each step keeps."""
        return 1.0 - self.betas

    @property
    def alpha_bar(self) -> torch.Tensor:
        """``(T,)``: ``alpha_bar[t] = alphas[0] * ... * alphas[t]``, the signal variance left after ``t + 1`` steps."""
        return torch.cumprod(self.alphas, 0)

    def __len__(self) -> int:
        return self.T


def linear_schedule(T: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> Schedule:
    """DDPM's schedule (Ho et al., 2020): betas rise linearly from ``beta_start`` to ``beta_end``.

    The defaults are the paper's for ``T = 1000``; for another ``T`` the betas are rescaled by
    ``1000 / T`` so that the total noise (and ``alpha_bar[T-1]``) stays about the same.
    Defined in chapter 15.
    """
    if isinstance(T, bool) or not isinstance(T, int) or T < 2:
        raise ValueError(f"T must be an int >= 2 (the number of noise steps), got {T!r}")
    scale = 1000.0 / T
    b = torch.linspace(beta_start * scale, beta_end * scale, T, dtype=torch.float64)
    if float(b[-1]) >= 1:
        raise ValueError(f"T={T} is too small for beta_end={beta_end}: the rescaled last beta reaches 1; "
                         "use a larger T or a smaller beta_end")
    return Schedule(b, name="linear")


def cosine_schedule(T: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> Schedule:
    """Nichol & Dhariwal's (2021) schedule: ``alpha_bar`` follows ``cos^2`` from 1 to 0.

    ``f(u) = cos(((u + s) / (1 + s)) * pi / 2) ** 2``; ``alpha_bar[t] = f((t+1)/T) / f(0)`` and
    ``beta_t = 1 - alpha_bar[t] / alpha_bar[t-1]``, clipped at ``max_beta`` so the last step
    stays finite. It destroys information more evenly than the linear schedule, which spends
    its last hundreds of steps on images that are already pure noise. Defined in chapter 15.
    """
    if isinstance(T, bool) or not isinstance(T, int) or T < 2:
        raise ValueError(f"T must be an int >= 2 (the number of noise steps), got {T!r}")
    u = torch.arange(T + 1, dtype=torch.float64) / T
    f = torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2
    abar = f / f[0]
    betas = (1 - abar[1:] / abar[:-1]).clamp(min=1e-8, max=max_beta)
    return Schedule(betas, name="cosine")


def _gather(values: torch.Tensor, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``values[t]`` shaped (B, 1, 1, ...) to broadcast over ``x``, in ``x``'s dtype and device."""
    return values.to(x.device)[t.to(x.device)].to(x.dtype).view(-1, *([1] * (x.dim() - 1)))


def _check_t(t, x: torch.Tensor, schedule: Schedule) -> torch.Tensor:
    t = torch.as_tensor(t, dtype=torch.long, device=x.device)
    if t.dim() == 0:
        t = t.expand(x.shape[0])
    if t.shape != (x.shape[0],):
        raise ValueError(f"t must hold one time step per image: shape ({x.shape[0]},), got {tuple(t.shape)}")
    if int(t.min()) < 0 or int(t.max()) >= schedule.T:
        raise ValueError(f"time steps must lie in [0, T={schedule.T}), got {int(t.min())}..{int(t.max())}")
    return t


def q_sample(x0: torch.Tensor, t, noise: torch.Tensor, schedule: Schedule) -> torch.Tensor:
    """Jump straight to step ``t``: ``sqrt(abar_t) x0 + sqrt(1 - abar_t) noise``, same shape as x0.

    ``t`` is an int or a LongTensor (B,); ``noise`` is standard normal, shaped like ``x0``.
    Defined in chapter 15.
    """
    if noise.shape != x0.shape:
        raise ValueError(f"noise has shape {tuple(noise.shape)} but x0 has {tuple(x0.shape)}: draw torch.randn_like(x0)")
    t = _check_t(t, x0, schedule)
    abar = _gather(schedule.alpha_bar, t, x0)
    return abar.sqrt() * x0 + (1 - abar).sqrt() * noise


def q_step(x_prev: torch.Tensor, t, noise: torch.Tensor, schedule: Schedule) -> torch.Tensor:
    """One forward step: ``x_t = sqrt(1 - beta_t) x_{t-1} + sqrt(beta_t) noise``.

    Iterating it from ``x0`` (``t = 0, 1, ...``) gives the same distribution as :func:`q_sample`:
    the closed form the tests check. Defined in chapter 15.
    """
    if noise.shape != x_prev.shape:
        raise ValueError(f"noise has shape {tuple(noise.shape)} but x has {tuple(x_prev.shape)}: "
                         "draw it with torch.randn_like(x)")
    t = _check_t(t, x_prev, schedule)
    beta = _gather(schedule.betas, t, x_prev)
    return (1 - beta).sqrt() * x_prev + beta.sqrt() * noise


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of (possibly fractional) time steps: (B,) -> (B, dim), float32.

    The table of chapter 05 (Vaswani et al., 2017) evaluated at ``t`` instead of a token
    position: ``[sin(t theta_0), cos(t theta_0), sin(t theta_1), ...]``. Defined in chapter 15.
    """
    # float64 on the CPU (as chapter 05's table; MPS has no float64), then to t's device.
    theta = frequencies(dim)  # (ceil(dim/2),) float64
    angles = t.detach().cpu().double()[:, None] * theta[None, :]  # (B, ceil(dim/2))
    emb = torch.empty(t.shape[0], dim, dtype=torch.float64)
    emb[:, 0::2] = torch.sin(angles)
    emb[:, 1::2] = torch.cos(angles[:, : dim // 2])
    return emb.float().to(t.device)


# --------------------------------------------------------------------------------------------
# The U-Net
# --------------------------------------------------------------------------------------------

def _groups(ch: int) -> int:
    # GroupNorm with 8 groups where the channels allow it (as in DDPM), else one group (LayerNorm-like).
    return 8 if ch % 8 == 0 else 1


class ResBlock(nn.Module):
    """Two 3x3 convolutions with a residual path; the embedding ``emb`` (B, emb_dim) is added
    as a per-channel bias between them, so every block knows the time step and the condition.
    (B, in_ch, H, W) -> (B, out_ch, H, W). Defined in chapter 15.
    """

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, dropout: float = 0.0):
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(in_ch), in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.emb = nn.Linear(emb_dim, out_ch)
        self.norm2 = nn.GroupNorm(_groups(out_ch), out_ch)
        self.drop = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(F.silu(emb))[:, :, None, None]
        h = self.conv2(self.drop(F.silu(self.norm2(h))))
        return self.skip(x) + h


class CrossAttention(nn.Module):
    """Pixels attend to a context: queries from the feature map (B, ch, H, W), keys and values
    from context tokens (B, L, context_dim) where ``mask`` (B, L) is True. A learned null token
    is always present, so a row with no context (all-False mask: the dropped condition of
    classifier-free guidance) attends to it alone. Residual: returns (B, ch, H, W).
    Defined in chapter 15.
    """

    def __init__(self, ch: int, context_dim: int, heads: int = 4):
        super().__init__()
        if ch % heads:
            raise ValueError(f"channels {ch} must be divisible by heads={heads}")
        self.heads = heads
        self.norm = nn.GroupNorm(_groups(ch), ch)
        self.q = nn.Linear(ch, ch)
        self.kv = nn.Linear(context_dim, 2 * ch)
        self.null = nn.Parameter(torch.randn(1, 1, context_dim) * 0.02)
        self.out = nn.Linear(ch, ch)
        nn.init.zeros_(self.out.weight)  # the block starts as the identity: training adds the text gradually
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, context: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        ctx = torch.cat([self.null.expand(B, -1, -1).to(context.dtype), context], 1)  # (B, 1+L, cd)
        keep = torch.cat([torch.ones(B, 1, dtype=torch.bool, device=x.device), mask.bool()], 1)  # (B, 1+L)
        q = self.q(self.norm(x).flatten(2).transpose(1, 2))  # (B, HW, C)
        k, v = self.kv(ctx).chunk(2, dim=-1)  # (B, 1+L, C) each
        split = lambda z: z.view(B, z.shape[1], self.heads, C // self.heads).transpose(1, 2)  # noqa: E731
        att = F.scaled_dot_product_attention(split(q), split(k), split(v),
                                             attn_mask=keep[:, None, None, :])  # (B, heads, HW, C/heads)
        att = att.transpose(1, 2).reshape(B, H * W, C)
        return x + self.out(att).transpose(1, 2).view(B, C, H, W)


class UNet(nn.Module):
    """A small U-Net that predicts the noise in ``x_t``: (B, in_ch, H, W) -> (B, in_ch, H, W).

    Encoder: one :class:`ResBlock` per level (channels ``base * mults[i]``) then a stride-2
    convolution; middle: ResBlock, [cross-attention], ResBlock; decoder: the mirror image, each
    level reading its encoder's output through a skip connection. H and W must be divisible by
    ``2 ** (len(mults) - 1)``.

    Conditioning (any combination, all optional):

    * ``num_classes``: ``cond`` is a LongTensor (B,) of class ids, looked up in a table of
      class embeddings (one extra row is the "no class" embedding) and added to the time
      embedding;
    * ``cond_dim``: ``cond`` is a float vector (B, cond_dim) (e.g. a CLIP image embedding),
      mapped by an MLP and added to the time embedding; a learned null vector stands for "none";
    * ``context_dim``: ``context`` (B, L, context_dim) with ``context_mask`` (B, L) is read by
      cross-attention in the middle and in the lowest-resolution decoder level.

    ``drop`` (B,) bool replaces the condition of those rows by "none" (classifier-free
    guidance); ``cond=None`` / ``context=None`` means "none" for every row.
    Defined in chapter 15.
    """

    def __init__(self, in_ch: int = 3, base: int = 32, mults: Sequence[int] = (1, 2), time_dim: int | None = None,
                 num_classes: int | None = None, cond_dim: int | None = None, context_dim: int | None = None,
                 heads: int = 4, dropout: float = 0.0):
        super().__init__()
        if not mults or any(int(m) < 1 for m in mults):
            raise ValueError(f"mults must be a non-empty list of positive channel multipliers, got {mults!r}")
        if num_classes is not None and cond_dim is not None:
            raise ValueError("give num_classes (class ids) or cond_dim (vectors), not both")
        self.in_ch, self.base, self.mults = in_ch, base, tuple(int(m) for m in mults)
        self.num_classes, self.cond_dim, self.context_dim = num_classes, cond_dim, context_dim
        td = time_dim or 4 * base
        self.time_dim = td
        self.time_mlp = nn.Sequential(nn.Linear(base, td), nn.SiLU(), nn.Linear(td, td))
        if num_classes is not None:
            self.class_emb = nn.Embedding(num_classes + 1, td)  # row num_classes = "no class"
        if cond_dim is not None:
            self.cond_mlp = nn.Sequential(nn.Linear(cond_dim, td), nn.SiLU(), nn.Linear(td, td))
            self.null_cond = nn.Parameter(torch.zeros(cond_dim))
        chans = [base * m for m in self.mults]
        self.inp = nn.Conv2d(in_ch, base, 3, padding=1)
        self.down, self.downsample = nn.ModuleList(), nn.ModuleList()
        ch = base
        for i, c in enumerate(chans):
            self.down.append(ResBlock(ch, c, td, dropout))
            self.downsample.append(nn.Conv2d(c, c, 3, stride=2, padding=1) if i < len(chans) - 1 else nn.Identity())
            ch = c
        self.mid1 = ResBlock(ch, ch, td, dropout)
        self.mid_attn = CrossAttention(ch, context_dim, heads) if context_dim else None
        self.mid2 = ResBlock(ch, ch, td, dropout)
        self.up, self.upsample = nn.ModuleList(), nn.ModuleList()
        for i, c in reversed(list(enumerate(chans))):
            self.up.append(ResBlock(ch + c, c, td, dropout))  # input: decoder features + skip
            # Going up a level: double the resolution, then match the channels of that level's skip.
            self.upsample.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                                               nn.Conv2d(c, chans[i - 1], 3, padding=1)) if i > 0 else nn.Identity())
            ch = c if i == 0 else chans[i - 1]
        self.up_attn = CrossAttention(chans[-1], context_dim, heads) if context_dim else None
        self.out_norm = nn.GroupNorm(_groups(ch), ch)
        self.out = nn.Conv2d(ch, in_ch, 3, padding=1)
        nn.init.zeros_(self.out.weight)  # predict eps = 0 at the start: a stable first loss of about 1
        nn.init.zeros_(self.out.bias)

    # -- conditioning ---------------------------------------------------------------------------
    def _embed(self, x, t, cond, drop) -> torch.Tensor:
        B = x.shape[0]
        t = torch.as_tensor(t, device=x.device)
        t = t.expand(B) if t.dim() == 0 else t
        if t.shape != (B,):
            raise ValueError(f"t must hold one time step per image: shape ({B},), got {tuple(t.shape)}")
        emb = self.time_mlp(timestep_embedding(t, self.base).to(x.dtype))  # (B, time_dim)
        if self.num_classes is None and self.cond_dim is None:
            if cond is not None:
                raise ValueError("this U-Net takes no cond: build it with num_classes=... or cond_dim=...")
            return emb
        none = torch.ones(B, dtype=torch.bool, device=x.device) if cond is None else \
            torch.zeros(B, dtype=torch.bool, device=x.device)
        if drop is not None:
            none = none | drop.to(x.device).bool()
        if self.num_classes is not None:
            if cond is None:
                ids = torch.full((B,), self.num_classes, dtype=torch.long, device=x.device)
            else:
                ids = cond.to(x.device)
                if ids.shape != (B,) or ids.dtype != torch.long:
                    raise ValueError(f"cond must be class ids: a LongTensor ({B},), got {tuple(ids.shape)} {ids.dtype}")
                if int(ids.min()) < 0 or int(ids.max()) >= self.num_classes:
                    raise ValueError(f"class ids must lie in [0, {self.num_classes})")
            ids = torch.where(none, torch.full_like(ids, self.num_classes), ids)
            return emb + self.class_emb(ids)
        vec = self.null_cond.expand(B, -1) if cond is None else cond
        if vec.shape != (B, self.cond_dim):
            raise ValueError(f"cond must be vectors of shape ({B}, {self.cond_dim}), got {tuple(vec.shape)}")
        vec = torch.where(none[:, None], self.null_cond.to(vec.dtype).expand(B, -1), vec.to(x.dtype))
        return emb + self.cond_mlp(vec)

    def _context(self, x, context, context_mask, drop):
        if self.context_dim is None:
            if context is not None:
                raise ValueError("this U-Net takes no context: build it with context_dim=...")
            return None, None
        B = x.shape[0]
        if context is None:  # no text: one dummy token that the mask hides
            return x.new_zeros(B, 1, self.context_dim), torch.zeros(B, 1, dtype=torch.bool, device=x.device)
        if context.dim() != 3 or context.shape[0] != B or context.shape[2] != self.context_dim:
            raise ValueError(f"context must be ({B}, L, {self.context_dim}) token vectors, got {tuple(context.shape)}")
        mask = torch.ones(context.shape[:2], dtype=torch.bool, device=x.device) if context_mask is None \
            else context_mask.to(x.device).bool()
        if mask.shape != context.shape[:2]:
            raise ValueError(f"context_mask must be {tuple(context.shape[:2])}, got {tuple(mask.shape)}")
        if drop is not None:
            mask = mask & ~drop.to(x.device).bool()[:, None]
        return context.to(x.dtype), mask

    # -- the network ----------------------------------------------------------------------------
    def _run(self, x, t, cond=None, context=None, context_mask=None, drop=None):
        if x.dim() != 4 or x.shape[1] != self.in_ch:
            raise ValueError(f"x must be images (B, {self.in_ch}, H, W), got {tuple(x.shape)}")
        f = 2 ** (len(self.mults) - 1)
        if x.shape[2] % f or x.shape[3] % f:
            raise ValueError(f"H and W must be divisible by {f} for {len(self.mults)} levels, got {tuple(x.shape[2:])}")
        emb = self._embed(x, t, cond, drop)
        ctx, mask = self._context(x, context, context_mask, drop)
        h = self.inp(x)
        skips, pooled = [], []
        for block, down in zip(self.down, self.downsample):
            h = block(h, emb)
            skips.append(h)
            h = down(h)
        h = self.mid1(h, emb)
        if self.mid_attn is not None:
            h = self.mid_attn(h, ctx, mask)
        h = self.mid2(h, emb)
        pooled.append(h.mean((2, 3)))
        for j, (block, up) in enumerate(zip(self.up, self.upsample)):
            h = block(torch.cat([h, skips.pop()], 1), emb)
            if j == 0 and self.up_attn is not None:
                h = self.up_attn(h, ctx, mask)
            pooled.append(h.mean((2, 3)))
            h = up(h)
        return self.out(F.silu(self.out_norm(h))), pooled

    def forward(self, x: torch.Tensor, t, cond=None, context=None, context_mask=None, drop=None) -> torch.Tensor:
        """Predicted noise (B, in_ch, H, W) for images ``x_t`` at time steps ``t`` (int or (B,))."""
        return self._run(x, t, cond, context, context_mask, drop)[0]

    def features(self, x: torch.Tensor, t, cond=None, context=None, context_mask=None) -> torch.Tensor:
        """Diffusion features for a linear probe: the spatially averaged activations of the middle
        block and every decoder level, concatenated, (B, F). Defined in chapter 15."""
        return torch.cat(self._run(x, t, cond, context, context_mask)[1], 1)


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------

def diffusion_loss(model: nn.Module, x0: torch.Tensor, schedule: Schedule, cond=None, context=None,
                   context_mask=None, p_uncond: float = 0.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """The simplified DDPM objective: ``E_{t, eps} || eps - eps_theta(x_t, t) ||^2`` (a scalar).

    ``t`` is drawn uniformly from ``0..T-1`` and ``eps`` from N(0, I) per image; with
    ``p_uncond > 0`` each image's condition is dropped with that probability so the same model
    learns the unconditional noise too (needed by classifier-free guidance).
    Defined in chapter 15.
    """
    if not 0.0 <= p_uncond < 1.0:
        raise ValueError(f"p_uncond={p_uncond} must be in [0, 1) (0.1 to 0.2 is usual)")
    if x0.dim() != 4 or x0.shape[0] == 0:
        raise ValueError(f"x0 must be a non-empty batch of images (B, C, H, W), got {tuple(x0.shape)}")
    B = x0.shape[0]
    gdev = generator.device if generator is not None else torch.device("cpu")
    t = torch.randint(0, schedule.T, (B,), generator=generator, device=gdev).to(x0.device)
    noise = torch.randn(x0.shape, generator=generator, device=gdev).to(x0.device, x0.dtype)
    drop = (torch.rand(B, generator=generator, device=gdev) < p_uncond).to(x0.device) if p_uncond > 0 else None
    eps_hat = model(q_sample(x0, t, noise, schedule), t, cond=cond, context=context, context_mask=context_mask,
                    drop=drop)
    return F.mse_loss(eps_hat, noise)


# --------------------------------------------------------------------------------------------
# Sampling
# --------------------------------------------------------------------------------------------

def sample_timesteps(T: int, steps: int) -> list[int]:
    """The ``steps`` time steps a shortened sampler visits, evenly spaced from ``T-1`` down to 0.

    A sampler with fewer steps than ``T`` jumps between these steps; the schedule restricted
    to them is itself a valid (coarser) diffusion with ``abar`` unchanged at the visited steps.
    Defined in chapter 15.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= T:
        raise ValueError(f"steps={steps!r} must be an int in [1, T={T}]: a sampler cannot visit more steps "
                         "than the schedule has")
    # From T-1 down: even a one-step sampler starts from (almost) pure noise.
    return sorted({int(round(v)) for v in np.linspace(T - 1, 0, steps)}, reverse=True)


def guided_eps(model: nn.Module, x: torch.Tensor, t: torch.Tensor, cond=None, context=None, context_mask=None,
               guidance: float = 1.0) -> torch.Tensor:
    """Classifier-free guidance: ``eps_u + s (eps_c - eps_u)``, (B, C, H, W).

    ``s = guidance``: 1 is the plain conditional model (one forward pass), 0 the unconditional
    one, ``s > 1`` pushes samples towards what distinguishes the condition. The conditional and
    unconditional passes run as one batch of 2B. Defined in chapter 15.
    """
    has_cond = cond is not None or context is not None
    if guidance != 1.0 and not has_cond:
        raise ValueError(f"guidance={guidance} needs a condition (cond= or context=): guidance mixes a "
                         "conditional and an unconditional prediction")
    if guidance == 1.0 or not has_cond:
        return model(x, t, cond=cond, context=context, context_mask=context_mask)
    B = x.shape[0]
    two = lambda z: None if z is None else torch.cat([z, z], 0)  # noqa: E731
    drop = torch.cat([torch.zeros(B, dtype=torch.bool), torch.ones(B, dtype=torch.bool)]).to(x.device)
    eps = model(two(x), two(t), cond=two(cond), context=two(context), context_mask=two(context_mask), drop=drop)
    eps_c, eps_u = eps[:B], eps[B:]
    return eps_u + guidance * (eps_c - eps_u)


def _start(shape, schedule, steps, noise, generator, device):
    shape = tuple(int(s) for s in shape)
    if len(shape) != 4 or min(shape) < 1:
        raise ValueError(f"shape must be (B, C, H, W) with positive sizes, got {shape}")
    steps = schedule.T if steps is None else steps
    ts = sample_timesteps(schedule.T, steps)
    gdev = generator.device if generator is not None else torch.device("cpu")
    if noise is None:
        noise = torch.randn(shape, generator=generator, device=gdev)
    elif tuple(noise.shape) != shape:
        raise ValueError(f"noise has shape {tuple(noise.shape)} but shape is {shape}")
    return ts, noise.to(device).float(), gdev


def ddpm_sample(model: nn.Module, shape, schedule: Schedule, steps: int | None = None, cond=None, context=None,
                context_mask=None, guidance: float = 1.0, generator: torch.Generator | None = None,
                noise: torch.Tensor | None = None, clip_x0: bool = True, progress: bool = False) -> torch.Tensor:
    """Ancestral DDPM sampling (Ho et al., 2020): images (B, C, H, W) in about [-1, 1].

    From ``x_T ~ N(0, I)`` (or ``noise``), each step draws ``x_prev`` from the Gaussian posterior
    ``q(x_prev | x_t, x0_hat)`` with ``x0_hat`` read off the predicted noise:
    mean ``sqrt(abar_prev) beta x0_hat / (1 - abar_t) + sqrt(alpha) (1 - abar_prev) x_t / (1 - abar_t)``,
    variance ``beta (1 - abar_prev) / (1 - abar_t)``, where ``alpha = abar_t / abar_prev`` and
    ``beta = 1 - alpha`` are the step's (so ``steps < T`` jumps between :func:`sample_timesteps`).
    ``guidance`` is the classifier-free guidance scale (:func:`guided_eps`).
    Defined in chapter 15.
    """
    return _run_sampler(model, shape, schedule, steps, None, cond, context, context_mask, guidance, generator,
                        noise, clip_x0, progress, "DDPM")


def ddim_sample(model: nn.Module, shape, schedule: Schedule, steps: int | None = None, eta: float = 0.0, cond=None,
                context=None, context_mask=None, guidance: float = 1.0, generator: torch.Generator | None = None,
                noise: torch.Tensor | None = None, clip_x0: bool = True, progress: bool = False) -> torch.Tensor:
    """DDIM sampling (Song et al., 2021): images (B, C, H, W).

    ``x_prev = sqrt(abar_prev) x0_hat + sqrt(1 - abar_prev - sigma^2) eps_hat + sigma z`` with
    ``sigma = eta sqrt((1 - abar_prev) / (1 - abar_t)) sqrt(1 - abar_t / abar_prev)``.
    ``eta = 0`` is deterministic (the same noise gives the same image, which makes
    interpolation in noise or condition smooth); ``eta = 1`` is exactly :func:`ddpm_sample`.
    Defined in chapter 15.
    """
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta={eta} must lie in [0, 1]: 0 is deterministic DDIM, 1 is DDPM")
    return _run_sampler(model, shape, schedule, steps, float(eta), cond, context, context_mask, guidance, generator,
                        noise, clip_x0, progress, "DDIM")


def _run_sampler(model, shape, schedule, steps, eta, cond, context, context_mask, guidance, generator, noise,
                 clip_x0, progress, desc):
    device = next(model.parameters()).device
    ts, x, gdev = _start(shape, schedule, steps, noise, generator, device)
    B = x.shape[0]
    for name, c in (("cond", cond), ("context", context), ("context_mask", context_mask)):
        if c is not None and c.shape[0] != B:
            raise ValueError(f"{name} has {c.shape[0]} rows but shape asks for {B} images: give one per image")
    abar = schedule.alpha_bar
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for i, t in enumerate(tqdm(ts, desc=desc, disable=not progress, leave=False)):
                a_t = float(abar[t])
                a_prev = float(abar[ts[i + 1]]) if i + 1 < len(ts) else 1.0  # after the last step: x0 itself
                tt = torch.full((B,), t, dtype=torch.long, device=device)
                eps = guided_eps(model, x, tt, cond, context, context_mask, guidance)
                x0_hat = (x - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t)
                if clip_x0:  # images live in [-1, 1]; keep eps consistent with the clipped x0_hat
                    x0_hat = x0_hat.clamp(-1, 1)
                    eps = (x - math.sqrt(a_t) * x0_hat) / math.sqrt(1 - a_t)
                if i + 1 == len(ts):
                    x = x0_hat  # the last step lands on abar_prev = 1: no noise left to add
                    break
                beta = 1 - a_t / a_prev  # the (respaced) step's beta
                var = beta * (1 - a_prev) / (1 - a_t)  # the posterior variance, beta-tilde
                z = torch.randn(x.shape, generator=generator, device=gdev).to(device)
                if eta is None:  # DDPM: the posterior mean in terms of x0_hat and x_t
                    mean = (math.sqrt(a_prev) * beta / (1 - a_t)) * x0_hat \
                        + (math.sqrt(1 - beta) * (1 - a_prev) / (1 - a_t)) * x
                    x = mean + math.sqrt(var) * z
                else:  # DDIM: move x0_hat to the noise level of a_prev along eps
                    sigma2 = eta ** 2 * var
                    x = math.sqrt(a_prev) * x0_hat + math.sqrt(max(1 - a_prev - sigma2, 0.0)) * eps \
                        + math.sqrt(sigma2) * z
    finally:
        model.train(was_training)
    return x


# --------------------------------------------------------------------------------------------
# Scoring samples
# --------------------------------------------------------------------------------------------

class AttributeCNN(nn.Module):
    """A small CNN that reads attributes off an image, one classification head per attribute.

    ``heads`` maps an attribute name to its number of classes, e.g. ``{"shape": 3, "colour": 4}``.
    ``forward(x)`` (B, C, H, W) in [-1, 1] -> ``{name: logits (B, n)}``; ``features(x)`` -> (B, 4 *
    width), the penultimate layer, in which :func:`frechet_distance` compares sample sets.
    Defined in chapter 15.
    """

    def __init__(self, heads: dict[str, int], in_ch: int = 3, width: int = 32):
        super().__init__()
        if not heads:
            raise ValueError("heads is empty: name at least one attribute and its number of classes")
        w = width
        self.body = nn.Sequential(
            nn.Conv2d(in_ch, w, 3, padding=1), nn.GroupNorm(_groups(w), w), nn.SiLU(),
            nn.Conv2d(w, 2 * w, 3, stride=2, padding=1), nn.GroupNorm(_groups(2 * w), 2 * w), nn.SiLU(),
            nn.Conv2d(2 * w, 4 * w, 3, stride=2, padding=1), nn.GroupNorm(_groups(4 * w), 4 * w), nn.SiLU(),
            nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16 * w, 4 * w), nn.SiLU())
        self.heads = nn.ModuleDict({k: nn.Linear(4 * w, int(n)) for k, n in heads.items()})

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate-layer features ``(B, 4 * width)`` of images ``x`` ``(B, C, H, W)``, what every head reads."""
        return self.body(x)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.body(x)
        return {k: head(h) for k, head in self.heads.items()}


def frechet_distance(feats_a, feats_b, eps: float = 1e-10) -> float:
    """The Fréchet distance between Gaussians fitted to two feature sets (FID's formula).

    ``||mu_a - mu_b||^2 + tr(S_a + S_b - 2 (S_a S_b)^{1/2})`` for rows of ``feats_a`` (n, d) and
    ``feats_b`` (m, d), computed in float64. The trace of the matrix square root is taken as
    ``sum sqrt(eig(S_a^{1/2} S_b S_a^{1/2}))``, a symmetric form that stays real and stable.
    Heusel et al. (2017) use Inception-v3 features; any fixed feature extractor works, but the
    number depends on it (and on the sample size), so compare only numbers from the same one.
    Defined in chapter 15.
    """
    a = np.asarray(feats_a.detach().cpu() if isinstance(feats_a, torch.Tensor) else feats_a, dtype=np.float64)
    b = np.asarray(feats_b.detach().cpu() if isinstance(feats_b, torch.Tensor) else feats_b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"give two (n, d) feature matrices with the same d, got {a.shape} and {b.shape}")
    if min(len(a), len(b)) < 2:
        raise ValueError("each feature set needs at least 2 rows to estimate a covariance")
    mu_a, mu_b = a.mean(0), b.mean(0)
    S_a, S_b = np.cov(a, rowvar=False).reshape(a.shape[1], -1), np.cov(b, rowvar=False).reshape(b.shape[1], -1)
    w, V = np.linalg.eigh(S_a)
    root_a = (V * np.sqrt(np.clip(w, 0, None))) @ V.T  # S_a^{1/2}
    M = root_a @ S_b @ root_a
    tr_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((M + M.T) / 2), 0, None)).sum()
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(S_a) + np.trace(S_b) - 2 * tr_sqrt)


# --------------------------------------------------------------------------------------------
# Small helpers for embeddings and pictures
# --------------------------------------------------------------------------------------------

def slerp(a: torch.Tensor, b: torch.Tensor, w) -> torch.Tensor:
    """Spherical interpolation between vectors ``a`` and ``b`` (d,) at weights ``w`` (k,) -> (k, d).

    Follows the great circle, so unit vectors stay unit vectors (a straight line would pass
    through shorter vectors that no image embeds to). Falls back to a straight line when ``a``
    and ``b`` are (anti)parallel in direction up to 1e-7. Defined in chapter 15.
    """
    if a.shape != b.shape or a.dim() != 1:
        raise ValueError(f"a and b must be two vectors of the same size, got {tuple(a.shape)} and {tuple(b.shape)}")
    w = torch.as_tensor(w, dtype=a.dtype, device=a.device).reshape(-1, 1)  # (k, 1)
    cos = (F.normalize(a, dim=0) @ F.normalize(b, dim=0)).clamp(-1, 1)
    omega = torch.arccos(cos)
    if float(torch.sin(omega)) < 1e-7:
        return (1 - w) * a + w * b
    return (torch.sin((1 - w) * omega) * a + torch.sin(w * omega) * b) / torch.sin(omega)


def from_image(x: torch.Tensor) -> torch.Tensor:
    """Pixels in [0, 1] -> the diffusion model's range [-1, 1]. Defined in chapter 15."""
    return x * 2 - 1


def to_image(x: torch.Tensor) -> torch.Tensor:
    """The diffusion model's range [-1, 1] -> pixels in [0, 1] (clamped). Defined in chapter 15."""
    return ((x + 1) / 2).clamp(0, 1)


def image_grid(images: torch.Tensor, nrow: int, pad: int = 1) -> np.ndarray:
    """Tile images (N, C, H, W) in [0, 1] into one picture for ``plt.imshow``: (rows*(H+pad)-pad,
    nrow*(W+pad)-pad, C) float array, row-major, white padding. Defined in chapter 15."""
    if images.dim() != 4 or images.shape[0] == 0:
        raise ValueError(f"images must be a non-empty (N, C, H, W) batch, got {tuple(images.shape)}")
    if nrow < 1:
        raise ValueError(f"nrow={nrow} must be at least 1")
    N, C, H, W = images.shape
    rows = -(-N // nrow)
    out = np.ones((rows * (H + pad) - pad, nrow * (W + pad) - pad, C), dtype=np.float32)
    pics = images.detach().float().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()
    for i in range(N):
        r, c = divmod(i, nrow)
        out[r * (H + pad): r * (H + pad) + H, c * (W + pad): c * (W + pad) + W] = pics[i]
    return out
