"""A world of coloured shapes, drawn by code, with captions that describe it.

No image-caption pairs ship with any package we can install offline, so chapter 14 makes its
own: scenes of one or two simple shapes (a colour, a size and a position each), rendered to
small RGB images, with captions written from the same scene (``"a small red circle left of a
large blue square"``). Because we know exactly what each caption says, we can build what real
data sets cannot give us cleanly:

* **held-out combinations** -- four (shape, colour) pairs never appear in training
  (:data:`HELD_OUT`), so a zero-shot test asks for combinations the model has never seen;
* **compositional hard negatives** -- a caption with the same words but the attributes bound
  to the wrong objects, or the objects in the wrong order (:func:`hard_negative_caption`).

Everything is deterministic: the same ``seed`` gives the same pixels and the same captions.

Defined in chapter 14.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np
import torch

__all__ = [
    "SHAPES", "COLOURS", "SIZES", "POSITIONS", "RELATIONS", "HELD_OUT", "RGB",
    "Object", "Scene", "ShapesData", "render", "caption", "hard_negative_caption",
    "make_dataset", "caption_words",
]

SHAPES = ("circle", "square", "triangle", "diamond")
COLOURS = ("red", "green", "blue", "yellow")
SIZES = ("small", "large")
POSITIONS = ("left", "right")             # one-object scenes: which half the shape sits in
RELATIONS = ("left of", "right of", "above", "below")   # two-object scenes
_INVERSE = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}

#: One held-out (shape, colour) pair per shape and per colour (a "Latin diagonal"), so every
#: shape and every colour is still seen in training, just never in these four pairings.
HELD_OUT = (("circle", "blue"), ("square", "yellow"), ("triangle", "red"), ("diamond", "green"))

RGB = {
    "red": (0.90, 0.12, 0.12),
    "green": (0.15, 0.75, 0.20),
    "blue": (0.15, 0.35, 0.95),
    "yellow": (0.95, 0.85, 0.10),
}
# Radius of a shape as a fraction of the image side.
_RADIUS = {"small": 0.12, "large": 0.19}
_SUPERSAMPLE = 4   # draw at 4x and average 4x4 blocks: cheap anti-aliasing, still deterministic


@dataclass(frozen=True)
class Object:
    """One shape in a scene: its shape, colour, size, and centre ``(x, y)`` as fractions of
    the image side (``x`` grows to the right, ``y`` grows downwards, as in image rows).

    Defined in chapter 14."""
    shape: str
    colour: str
    size: str
    x: float
    y: float

    def __post_init__(self):
        for value, allowed, what in ((self.shape, SHAPES, "shape"), (self.colour, COLOURS, "colour"),
                                     (self.size, SIZES, "size")):
            if value not in allowed:
                raise ValueError(f"unknown {what} {value!r}: choose one of {allowed}")
        if not (0.0 <= self.x <= 1.0 and 0.0 <= self.y <= 1.0):
            raise ValueError(f"x and y are fractions of the image side in [0, 1], got ({self.x}, {self.y})")

    def phrase(self) -> str:
        """``"small red circle"``."""
        return f"{self.size} {self.colour} {self.shape}"


@dataclass(frozen=True)
class Scene:
    """A scene: a tuple of one or two :class:`Object`.

    Defined in chapter 14."""
    objects: tuple[Object, ...]

    def __post_init__(self):
        if not 1 <= len(self.objects) <= 2:
            raise ValueError(f"a Scene holds one or two objects, got {len(self.objects)}")

    def relation(self) -> str:
        """Where the first object is relative to the second (two-object scenes): the axis with
        the larger separation decides between left/right and above/below."""
        if len(self.objects) != 2:
            raise ValueError("relation() needs a two-object scene")
        a, b = self.objects
        if abs(a.x - b.x) >= abs(a.y - b.y):
            return "left of" if a.x < b.x else "right of"
        return "above" if a.y < b.y else "below"


def _mask(shape: str, cx: float, cy: float, r: float, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Boolean mask of a shape centred at (cx, cy) with radius r on the grid (xs, ys)."""
    dx, dy = xs - cx, ys - cy
    if shape == "circle":
        return dx * dx + dy * dy <= r * r
    if shape == "square":   # a square of the same area as the circle would look too small: 0.85 r
        return np.maximum(np.abs(dx), np.abs(dy)) <= 0.85 * r
    if shape == "diamond":
        return np.abs(dx) + np.abs(dy) <= 1.15 * r
    if shape == "triangle":  # upright isosceles: apex at the top, base at the bottom
        top, bottom = cy - r, cy + 0.8 * r
        half_width = (ys - top) / (bottom - top) * 1.05 * r   # grows linearly from apex to base
        return (ys >= top) & (ys <= bottom) & (np.abs(dx) <= half_width)
    raise ValueError(f"unknown shape {shape!r}: choose one of {SHAPES}")


def render(scene: Scene, size: int = 32) -> torch.Tensor:
    """Draw ``scene`` on a black background: a ``(3, size, size)`` float32 tensor in [0, 1].

    Shapes are drawn at 4x resolution and averaged down (anti-aliased edges); later objects
    are painted over earlier ones. Deterministic.

    Defined in chapter 14."""
    if not isinstance(scene, Scene):
        raise TypeError(f"render expects a Scene, got {type(scene).__name__}")
    if size < 8:
        raise ValueError(f"size={size} is too small to draw a shape: use 8 or more pixels")
    s = size * _SUPERSAMPLE
    coords = (np.arange(s, dtype=np.float64) + 0.5) / s       # pixel centres in [0, 1]
    canvas = np.zeros((3, s, s), dtype=np.float64)
    for obj in scene.objects:
        # Only the window around the object can change: test those (sub)pixels and no others.
        r = _RADIUS[obj.size] * 1.2
        r0, r1 = max(0, int((obj.y - r) * s)), min(s, int(np.ceil((obj.y + r) * s)) + 1)
        c0, c1 = max(0, int((obj.x - r) * s)), min(s, int(np.ceil((obj.x + r) * s)) + 1)
        xs, ys = np.meshgrid(coords[c0:c1], coords[r0:r1])     # ys indexes rows
        m = _mask(obj.shape, obj.x, obj.y, _RADIUS[obj.size], xs, ys)
        window = canvas[:, r0:r1, c0:c1]
        window[:, m] = np.asarray(RGB[obj.colour])[:, None]
    img = canvas.reshape(3, size, _SUPERSAMPLE, size, _SUPERSAMPLE).mean(axis=(2, 4))
    return torch.from_numpy(img.astype(np.float32))


def caption(scene: Scene, order: str = "canonical") -> str:
    """The caption of ``scene``.

    One object: ``"a small red circle on the left"``. Two objects: ``"a small red circle left
    of a large blue square"`` (``order="canonical"``: first object first) or the same fact told
    from the other object, ``"a large blue square right of a small red circle"``
    (``order="reversed"``): a paraphrase, true of the same image.

    Defined in chapter 14."""
    if order not in ("canonical", "reversed"):
        raise ValueError(f"order must be 'canonical' or 'reversed', got {order!r}")
    if len(scene.objects) == 1:
        obj = scene.objects[0]
        side = "left" if obj.x < 0.5 else "right"
        return f"a {obj.phrase()} on the {side}"
    a, b = scene.objects
    rel = scene.relation()
    if order == "canonical":
        return f"a {a.phrase()} {rel} a {b.phrase()}"
    return f"a {b.phrase()} {_INVERSE[rel]} a {a.phrase()}"


def _as_rng(rng) -> random.Random:
    if rng is None:
        return random.Random(0)
    if isinstance(rng, random.Random):
        return rng
    if isinstance(rng, (int, np.integer)):
        return random.Random(int(rng))
    raise TypeError(f"rng must be a random.Random, an int seed or None, got {type(rng).__name__}")


def hard_negative_caption(scene: Scene, kind: str = "swap_attributes", rng=None) -> str:
    """A caption with exactly the words of the true one that is false of ``scene``.

    ``kind="swap_attributes"``: exchange one attribute between the two objects (their colours,
    or their sizes when those differ; ``rng`` picks) -- "a small *blue* circle left of a large
    *red* square". ``kind="swap_order"``: exchange the two noun phrases around the relation --
    "a large blue square left of a small red circle". Both keep the bag of words, so a model
    that reads captions as bags of words cannot tell them from the truth.
    ``rng``: a ``random.Random``, an int seed, or None (seed 0).

    Defined in chapter 14."""
    if len(scene.objects) != 2:
        raise ValueError("hard negatives need a two-object scene: make_dataset(..., n_objects=2)")
    a, b = scene.objects
    rel = scene.relation()
    if kind == "swap_order":
        if a.phrase() == b.phrase():
            raise ValueError("both objects have the same description: swapping them changes nothing")
        return f"a {b.phrase()} {rel} a {a.phrase()}"
    if kind == "swap_attributes":
        r = _as_rng(rng)
        choices = [attr for attr in ("colour", "size") if getattr(a, attr) != getattr(b, attr)]
        if not choices:
            raise ValueError("the two objects share colour and size: no attribute to swap")
        attr = r.choice(choices)
        pa = {"size": a.size, "colour": a.colour, "shape": a.shape}
        pb = {"size": b.size, "colour": b.colour, "shape": b.shape}
        pa[attr], pb[attr] = pb[attr], pa[attr]
        phrase = lambda p: f"{p['size']} {p['colour']} {p['shape']}"   # noqa: E731
        return f"a {phrase(pa)} {rel} a {phrase(pb)}"
    raise ValueError(f"kind must be 'swap_attributes' or 'swap_order', got {kind!r}")


def caption_words() -> list[str]:
    """Every word the caption grammar can produce (for a caption tokenizer's vocabulary)."""
    words = ["a", "on", "the", "of"] + list(SIZES) + list(COLOURS) + list(SHAPES) + list(POSITIONS)
    for rel in RELATIONS:
        words += rel.split()
    return list(dict.fromkeys(words))


@dataclass
class ShapesData:
    """A rendered shapes data set.

    ``images``: (n, 3, size, size) float32 in [0, 1]; ``captions``: n strings; ``scenes``: the n
    :class:`Scene`; ``labels[name]``: LongTensor (n,) indexing ``classes[name]``. Labels are
    "shape", "colour", "size" (of the first object) and, for one-object scenes, "position"
    (left/right; "x" is the same labels under the name chapter 15 may use), for two-object
    scenes "relation".

    Defined in chapter 14."""
    images: torch.Tensor
    captions: list[str]
    scenes: list[Scene]
    labels: dict[str, torch.Tensor]
    classes: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.captions)

    def subset(self, idx) -> "ShapesData":
        """The examples at positions ``idx`` (a list, range or LongTensor)."""
        idx = torch.as_tensor(list(idx) if not torch.is_tensor(idx) else idx, dtype=torch.long)
        return ShapesData(self.images[idx], [self.captions[i] for i in idx.tolist()],
                          [self.scenes[i] for i in idx.tolist()],
                          {k: v[idx] for k, v in self.labels.items()}, dict(self.classes))


def _combos(holdout: str | None) -> list[tuple[str, str]]:
    every = [(s, c) for s in SHAPES for c in COLOURS]
    if holdout is None:
        return every
    if holdout == "train":
        return [sc for sc in every if sc not in HELD_OUT]
    if holdout == "test":
        return list(HELD_OUT)
    raise ValueError(f"holdout must be None, 'train' or 'test', got {holdout!r}")


def _sample_scene(r: np.random.Generator, n_objects: int, holdout: str | None) -> Scene:
    first = _combos(holdout)
    sh, co = first[r.integers(len(first))]
    size0 = SIZES[r.integers(2)]
    if n_objects == 1:
        side = r.integers(2)                        # 0 = left half, 1 = right half
        x = (0.27 if side == 0 else 0.73) + r.uniform(-0.05, 0.05)
        y = 0.5 + r.uniform(-0.2, 0.2)
        return Scene((Object(sh, co, size0, float(x), float(y)),))
    # Second object: a different shape and a different colour (so swapping either changes the
    # meaning), and a (shape, colour) pair allowed by the split ("test" only constrains the first).
    second = [sc for sc in _combos("train" if holdout == "train" else None) if sc[0] != sh and sc[1] != co]
    sh2, co2 = second[r.integers(len(second))]
    size1 = SIZES[r.integers(2)]
    horizontal = r.integers(2) == 0
    lo, hi = 0.27 + r.uniform(-0.03, 0.03), 0.73 + r.uniform(-0.03, 0.03)
    if r.integers(2):                               # which object sits first along the axis
        lo, hi = hi, lo
    off = r.uniform(-0.08, 0.08, size=2)
    if horizontal:
        p0, p1 = (lo, 0.5 + off[0]), (hi, 0.5 + off[1])
    else:
        p0, p1 = (0.5 + off[0], lo), (0.5 + off[1], hi)
    return Scene((Object(sh, co, size0, float(p0[0]), float(p0[1])),
                  Object(sh2, co2, size1, float(p1[0]), float(p1[1]))))


def make_dataset(n: int, *, seed: int, size: int = 32, n_objects: int = 1,
                 holdout: str | None = None) -> ShapesData:
    """``n`` random scenes, rendered at ``size`` pixels, with their canonical captions.

    ``n_objects``: 1 or 2. ``holdout``: None (every (shape, colour) pair), ``"train"`` (never a
    pair of :data:`HELD_OUT`: circle/blue, square/yellow, triangle/red, diamond/green) or
    ``"test"`` (the first -- for one-object scenes the only -- object is a held-out pair).
    The same arguments always give the same data.

    Defined in chapter 14."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if n_objects not in (1, 2):
        raise ValueError(f"n_objects must be 1 or 2, got {n_objects}")
    _combos(holdout)   # validates holdout
    r = np.random.default_rng(seed)
    scenes = [_sample_scene(r, n_objects, holdout) for _ in range(n)]
    images = torch.stack([render(s, size) for s in scenes])      # (n, 3, size, size)
    first = [s.objects[0] for s in scenes]
    classes: dict[str, tuple[str, ...]] = {"shape": SHAPES, "colour": COLOURS, "size": SIZES}
    labels = {
        "shape": torch.tensor([SHAPES.index(o.shape) for o in first]),
        "colour": torch.tensor([COLOURS.index(o.colour) for o in first]),
        "size": torch.tensor([SIZES.index(o.size) for o in first]),
    }
    if n_objects == 1:
        pos = torch.tensor([0 if o.x < 0.5 else 1 for o in first])
        labels["position"], labels["x"] = pos, pos.clone()
        classes["position"] = classes["x"] = POSITIONS
    else:
        labels["relation"] = torch.tensor([RELATIONS.index(s.relation()) for s in scenes])
        classes["relation"] = RELATIONS
    return ShapesData(images, [caption(s) for s in scenes], scenes, labels, classes)
