"""Tests for minilib.shapes: rendering, captions, held-out splits, hard negatives."""
import random

import pytest
import torch

from minilib import shapes
from minilib.shapes import Object, Scene


def test_render_shape_range_and_determinism():
    s = Scene((Object("circle", "red", "large", 0.5, 0.5),))
    img = shapes.render(s, size=16)
    assert img.shape == (3, 16, 16) and img.dtype == torch.float32
    assert 0.0 <= img.min() and img.max() <= 1.0
    assert torch.equal(img, shapes.render(s, size=16))
    # The centre pixel has the object's colour, the corner is background.
    assert torch.allclose(img[:, 8, 8], torch.tensor(shapes.RGB["red"]), atol=1e-6)
    assert img[:, 0, 0].abs().sum() == 0


def test_shapes_differ_and_large_covers_more_than_small():
    imgs = {sh: shapes.render(Scene((Object(sh, "blue", "large", 0.5, 0.5),)), 32) for sh in shapes.SHAPES}
    for a in shapes.SHAPES:
        for b in shapes.SHAPES:
            if a < b:
                assert (imgs[a] - imgs[b]).abs().sum() > 5, (a, b)
    small = shapes.render(Scene((Object("square", "blue", "small", 0.5, 0.5),)), 32)
    assert imgs["square"].sum() > 2 * small.sum()


def test_captions_one_and_two_objects():
    one = Scene((Object("triangle", "green", "small", 0.2, 0.5),))
    assert shapes.caption(one) == "a small green triangle on the left"
    two = Scene((Object("circle", "red", "small", 0.25, 0.5), Object("square", "blue", "large", 0.75, 0.5)))
    assert shapes.caption(two) == "a small red circle left of a large blue square"
    assert shapes.caption(two, order="reversed") == "a large blue square right of a small red circle"
    up = Scene((Object("circle", "red", "small", 0.5, 0.2), Object("square", "blue", "large", 0.5, 0.8)))
    assert shapes.caption(up) == "a small red circle above a large blue square"
    with pytest.raises(ValueError, match="canonical"):
        shapes.caption(two, order="backwards")


def test_hard_negatives_keep_the_words_and_change_the_meaning():
    two = Scene((Object("circle", "red", "small", 0.25, 0.5), Object("square", "blue", "large", 0.75, 0.5)))
    true = shapes.caption(two)
    order = shapes.hard_negative_caption(two, "swap_order")
    assert order == "a large blue square left of a small red circle"
    seen = {shapes.hard_negative_caption(two, "swap_attributes", random.Random(i)) for i in range(20)}
    assert seen == {"a small blue circle left of a large red square", "a large red circle left of a small blue square"}
    for neg in seen | {order}:
        assert sorted(neg.split()) == sorted(true.split()) and neg != true
    with pytest.raises(ValueError, match="n_objects=2"):
        shapes.hard_negative_caption(Scene((two.objects[0],)))
    with pytest.raises(ValueError, match="swap_order"):
        shapes.hard_negative_caption(two, "shuffle")


def test_bad_objects_raise_clear_errors():
    with pytest.raises(ValueError, match="unknown colour"):
        Object("circle", "mauve", "small", 0.5, 0.5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        Object("circle", "red", "small", 1.5, 0.5)


def test_make_dataset_shapes_labels_and_determinism():
    d = shapes.make_dataset(40, seed=3, size=16)
    assert d.images.shape == (40, 3, 16, 16) and len(d) == 40 and len(d.scenes) == 40
    for k in ("shape", "colour", "size", "position", "x"):
        assert d.labels[k].shape == (40,) and d.labels[k].dtype == torch.long
        assert int(d.labels[k].max()) < len(d.classes[k])
    for i in range(40):
        obj = d.scenes[i].objects[0]
        assert d.classes["shape"][d.labels["shape"][i]] == obj.shape
        assert obj.colour in d.captions[i]
    again = shapes.make_dataset(40, seed=3, size=16)
    assert torch.equal(d.images, again.images) and d.captions == again.captions
    assert shapes.make_dataset(40, seed=4, size=16).captions != d.captions
    sub = d.subset([0, 5])
    assert len(sub) == 2 and sub.captions == [d.captions[0], d.captions[5]]


def test_holdout_splits_are_disjoint():
    train = shapes.make_dataset(200, seed=0, size=8, holdout="train")
    test = shapes.make_dataset(50, seed=0, size=8, holdout="test")
    pairs = lambda d: {(o.shape, o.colour) for s in d.scenes for o in s.objects}  # noqa: E731
    assert not pairs(train) & set(shapes.HELD_OUT)
    assert pairs(test) == set(shapes.HELD_OUT)
    two = shapes.make_dataset(100, seed=0, size=8, n_objects=2, holdout="train")
    assert not pairs(two) & set(shapes.HELD_OUT)
    with pytest.raises(ValueError, match="holdout"):
        shapes.make_dataset(5, seed=0, holdout="val")


def test_two_object_scenes_have_distinct_colours_and_shapes():
    d = shapes.make_dataset(60, seed=1, size=8, n_objects=2)
    assert d.labels["relation"].shape == (60,)
    for s, c in zip(d.scenes, d.captions):
        a, b = s.objects
        assert a.colour != b.colour and a.shape != b.shape
        assert s.relation() in c
    with pytest.raises(ValueError, match="n_objects"):
        shapes.make_dataset(5, seed=0, n_objects=3)


def test_scene_render_and_sampling_errors_name_the_fix():
    a = Object("circle", "red", "small", 0.25, 0.5)
    b = Object("square", "blue", "large", 0.75, 0.5)
    with pytest.raises(ValueError, match="a Scene holds one or two objects, got 0"):
        Scene(())
    with pytest.raises(ValueError, match="one or two objects, got 3"):
        Scene((a, b, a))
    with pytest.raises(ValueError, match=r"relation\(\) needs a two-object scene"):
        Scene((a,)).relation()
    with pytest.raises(TypeError, match="render expects a Scene, got Object"):
        shapes.render(a)
    with pytest.raises(ValueError, match="size=4 is too small to draw a shape: use 8 or more pixels"):
        shapes.render(Scene((a,)), size=4)
    with pytest.raises(ValueError, match="n must be at least 1, got 0"):
        shapes.make_dataset(0, seed=0)


def test_hard_negative_errors_name_the_fix():
    two = Scene((Object("circle", "red", "small", 0.25, 0.5), Object("square", "blue", "large", 0.75, 0.5)))
    with pytest.raises(TypeError, match="rng must be a random.Random, an int seed or None, got str"):
        shapes.hard_negative_caption(two, "swap_attributes", rng="seed")
    twins = Scene((Object("circle", "red", "small", 0.25, 0.5), Object("circle", "red", "small", 0.75, 0.5)))
    with pytest.raises(ValueError, match="both objects have the same description"):
        shapes.hard_negative_caption(twins, "swap_order")
    alike = Scene((Object("circle", "red", "small", 0.25, 0.5), Object("square", "red", "small", 0.75, 0.5)))
    with pytest.raises(ValueError, match="the two objects share colour and size: no attribute to swap"):
        shapes.hard_negative_caption(alike, "swap_attributes")
    assert shapes.hard_negative_caption(alike, "swap_order") == "a small red square left of a small red circle"
