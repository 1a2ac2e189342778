"""Tests for minilib.clip: the symmetric loss, the learnable temperature, the towers' shapes,
the caption tokenizer, training, zero-shot, retrieval and the binding probe (tiny sizes)."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from minilib import clip, shapes


def _tiny(dim=16, tower="vit"):
    tok = clip.CaptionTokenizer.default()
    image = clip.ImageViT(16, 8, 16, 1, 2, dim) if tower == "vit" else clip.ImageCNN(16, 8, dim)
    return clip.CLIP(image, clip.TextTower(tok.vocab_size, 16, 1, 2, dim, max_len=16), tok)


def _reference_loss(img, txt, scale):
    # The loss written as CLIP's paper pseudo-code does, one row at a time.
    img, txt = F.normalize(img, dim=-1), F.normalize(txt, dim=-1)
    logits = scale * img @ txt.T
    B = len(img)
    i2t = -sum(torch.log_softmax(logits[i], 0)[i] for i in range(B)) / B
    t2i = -sum(torch.log_softmax(logits[:, j], 0)[j] for j in range(B)) / B
    return (i2t + t2i) / 2


def test_clip_loss_matches_reference_and_is_symmetric():
    g = torch.Generator().manual_seed(0)
    img, txt = torch.randn(6, 8, generator=g), torch.randn(6, 8, generator=g)
    scale = torch.tensor(10.0)
    loss = clip.clip_loss(img, txt, scale)
    torch.testing.assert_close(loss, _reference_loss(img, txt, scale))
    # Swapping the roles of images and texts gives the same loss (the two directions are averaged).
    torch.testing.assert_close(loss, clip.clip_loss(txt, img, scale))
    # Permuting the pairs together changes nothing.
    perm = torch.randperm(6, generator=g)
    torch.testing.assert_close(loss, clip.clip_loss(img[perm], txt[perm], scale))


def test_clip_loss_matches_transformers_clip_model():
    """transformers' CLIPModel computes its training loss from its own towers' embeddings and its
    learnt log-temperature; ours, given those embeddings and exp(logit_scale), gives the same."""
    from transformers import CLIPConfig, CLIPModel
    torch.manual_seed(0)
    cfg = CLIPConfig(
        text_config=dict(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=8),
        vision_config=dict(image_size=16, patch_size=8, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                           num_attention_heads=2),
        projection_dim=8, logit_scale_init_value=2.0)
    ref = CLIPModel(cfg).eval()
    ids = torch.randint(1, 50, (5, 8))
    with torch.no_grad():
        out = ref(input_ids=ids, pixel_values=torch.randn(5, 3, 16, 16), return_loss=True)
        ours = clip.clip_loss(out.image_embeds, out.text_embeds, ref.logit_scale.exp())
    torch.testing.assert_close(ours, out.loss, atol=1e-5, rtol=1e-5)


def _vit_name_map(ours: "clip.ImageViT", hf_keys) -> dict[str, str]:
    """Our ImageViT's parameter names -> transformers ViTModel's (both of its namings: the
    attention.attention.query of transformers 4 and the attention.q_proj of 5)."""
    hf_keys = set(hf_keys)

    def pick(*names):
        found = [n for n in names if n in hf_keys]
        assert len(found) == 1, f"none or several of {names} in ViTModel's state dict"
        return found[0]

    m = {"cls": "embeddings.cls_token", "pos": "embeddings.position_embeddings",
         "to_patches.weight": "embeddings.patch_embeddings.projection.weight",
         "to_patches.bias": "embeddings.patch_embeddings.projection.bias"}
    for i in range(len(ours.blocks)):
        for w in ("weight", "bias"):
            new, old = f"layers.{i}.", f"encoder.layer.{i}."
            m[f"blocks.{i}.attn.q.{w}"] = pick(f"{new}attention.q_proj.{w}", f"{old}attention.attention.query.{w}")
            m[f"blocks.{i}.attn.k.{w}"] = pick(f"{new}attention.k_proj.{w}", f"{old}attention.attention.key.{w}")
            m[f"blocks.{i}.attn.v.{w}"] = pick(f"{new}attention.v_proj.{w}", f"{old}attention.attention.value.{w}")
            m[f"blocks.{i}.attn.out.{w}"] = pick(f"{new}attention.o_proj.{w}", f"{old}attention.output.dense.{w}")
            m[f"blocks.{i}.norm1.{w}"] = pick(f"{new}layernorm_before.{w}", f"{old}layernorm_before.{w}")
            m[f"blocks.{i}.norm2.{w}"] = pick(f"{new}layernorm_after.{w}", f"{old}layernorm_after.{w}")
            m[f"blocks.{i}.ff1.{w}"] = pick(f"{new}mlp.fc1.{w}", f"{old}intermediate.dense.{w}")
            m[f"blocks.{i}.ff2.{w}"] = pick(f"{new}mlp.fc2.{w}", f"{old}output.dense.{w}")
    for w in ("weight", "bias"):
        m[f"norm.{w}"] = "layernorm." + w
    return m


def test_image_vit_matches_transformers_vit_model():
    """Our ViT tower is Dosovitskiy et al.'s ViT: with transformers' ViTModel's weights copied in
    (every one randomised, so no LayerNorm is the identity), its [cls] output, through our
    projection, is ours. Only the projection to the joint space is CLIP's own."""
    from transformers import ViTConfig, ViTModel
    torch.manual_seed(0)
    ours = clip.ImageViT(image_size=16, patch=4, width=32, depth=2, heads=4, dim=8).eval()
    cfg = ViTConfig(image_size=16, patch_size=4, num_channels=3, hidden_size=32, num_hidden_layers=2,
                    num_attention_heads=4, intermediate_size=128, hidden_act="gelu", qkv_bias=True,
                    hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, layer_norm_eps=1e-12)
    ref = ViTModel(cfg, add_pooling_layer=False).eval()
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    hf = ref.state_dict()
    names = _vit_name_map(ours, hf)
    assert set(names) | {"proj.weight"} == set(ours.state_dict()), "every weight of ours but the projection is ViT's"
    ours.load_state_dict({**{k: hf[v] for k, v in names.items()}, "proj.weight": ours.proj.weight})
    # Our final LayerNorm keeps PyTorch's eps = 1e-5 (ViT: 1e-12); the same here, to compare exactly.
    ours.norm.eps = cfg.layer_norm_eps
    x = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        want = ours.proj(ref(pixel_values=x).last_hidden_state[:, 0])
        torch.testing.assert_close(ours(x), want, atol=1e-5, rtol=1e-5)


def test_clip_loss_equals_chapter_08_info_nce_symmetric():
    contrastive = pytest.importorskip("minilib.contrastive")
    g = torch.Generator().manual_seed(1)
    img, txt = torch.randn(5, 8, generator=g), torch.randn(5, 8, generator=g)
    ours = clip.clip_loss(img, txt, torch.tensor(1 / 0.07))
    theirs = contrastive.info_nce(img, txt, temperature=0.07, symmetric=True)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def test_clip_loss_hard_negatives_only_raise_the_image_to_text_term():
    g = torch.Generator().manual_seed(2)
    img, txt, neg = torch.randn(4, 8, generator=g), torch.randn(4, 8, generator=g), torch.randn(3, 8, generator=g)
    scale = torch.tensor(5.0)
    plain = clip.clip_loss(img, txt, scale)
    with_neg = clip.clip_loss(img, txt, scale, neg)
    assert with_neg > plain
    # By hand: the image->text softmax runs over B + M captions, the text->image one over B images.
    i, t, n = (F.normalize(x, dim=-1) for x in (img, txt, neg))
    logits = scale * i @ torch.cat([t, n]).T
    target = torch.arange(4)
    expected = (F.cross_entropy(logits, target) + F.cross_entropy(logits[:, :4].T, target)) / 2
    torch.testing.assert_close(with_neg, expected)


def test_clip_loss_bad_input():
    with pytest.raises(ValueError, match="same shape"):
        clip.clip_loss(torch.randn(4, 8), torch.randn(4, 6), torch.tensor(1.0))
    with pytest.raises(ValueError, match="at least 2"):
        clip.clip_loss(torch.randn(1, 8), torch.randn(1, 8), torch.tensor(1.0))


def test_temperature_is_learnable_log_parametrised_and_clamped():
    model = _tiny()
    assert model.logit_scale.requires_grad
    assert math.isclose(model.temperature(), 0.07, rel_tol=1e-5)
    images = shapes.make_dataset(4, seed=0, size=16).images
    texts = ["a small red circle on the left", "a large blue square on the right",
             "a small green triangle on the left", "a large yellow diamond on the right"]
    loss = clip.clip_loss(model.image_tower(images), model._text_features(texts), model.scale())
    loss.backward()
    assert model.logit_scale.grad is not None and model.logit_scale.grad.abs() > 0
    with torch.no_grad():
        model.logit_scale.fill_(10.0)       # exp(10) > 100: clamped like CLIP
    assert float(model.scale().detach()) == 100.0
    with pytest.raises(ValueError, match="init_temperature"):
        clip.CLIP(model.image_tower, model.text_tower, model.tokenizer, init_temperature=0.0)


@pytest.mark.parametrize("tower", ["vit", "cnn"])
def test_encoder_shapes_and_unit_rows(tower):
    model = _tiny(tower=tower).eval()
    images = torch.rand(3, 3, 16, 16)
    e = model.encode_image(images)
    assert e.shape == (3, 16) and model.dim == 16
    torch.testing.assert_close(e.norm(dim=1), torch.ones(3))
    t = model.encode_text(["a red circle", "a handwritten seven"])
    assert t.shape == (2, 16)
    torch.testing.assert_close(t.norm(dim=1), torch.ones(2))
    hidden, mask = model.encode_text_tokens(["a red circle", "a large blue square left of a small red circle"])
    assert hidden.shape == (2, mask.shape[1], 16) and mask.tolist()[0][:4] == [1, 1, 1, 1] and mask[0, -1] == 0
    with pytest.raises(ValueError, match=r"\(B, C, 16, 16\)"):
        model.encode_image(torch.rand(3, 16, 16))
    with pytest.raises(TypeError, match="wrap it"):
        model.encode_text("a red circle")


def test_vit_rejects_a_patch_that_does_not_divide_the_image():
    with pytest.raises(ValueError, match="multiple of patch"):
        clip.ImageViT(30, 8)


def test_caption_tokenizer():
    tok = clip.CaptionTokenizer.from_texts(["a red circle", "a blue square"])
    ids, mask = tok.encode_batch(["a red circle", "a square"])
    assert ids.shape == mask.shape == (2, 4)
    assert ids[:, 0].tolist() == [tok.cls_id] * 2 and ids[1, 3] == tok.pad_id and mask[1].tolist() == [1, 1, 1, 0]
    with pytest.raises(KeyError, match="from_texts"):
        tok.encode("a green circle")
    default = clip.CaptionTokenizer.default()
    default.encode_batch(["a photo of a t-shirt", "a handwritten nine", "a small red circle above a large blue square"])


def test_training_lowers_the_loss_learns_the_temperature_and_is_deterministic():
    data = shapes.make_dataset(64, seed=0, size=16, n_objects=2)

    def run():
        torch.manual_seed(0)
        model = _tiny()
        h = clip.train_clip(model, data, steps=12, batch_size=16, lr=3e-3, seed=0, device="cpu", progress=False,
                            hard_negatives=True)
        return model, h

    model, h = run()
    assert len(h["loss"]) == len(h["temperature"]) == 12
    assert sum(h["loss"][-3:]) / 3 < sum(h["loss"][:3]) / 3
    assert h["temperature"][-1] != pytest.approx(0.07, abs=1e-6)
    _, h2 = run()
    assert h2["loss"] == h["loss"]
    with pytest.raises(ValueError, match="two objects"):
        clip.train_clip(_tiny(), shapes.make_dataset(8, seed=0, size=16), steps=1, batch_size=4, lr=1e-3,
                        device="cpu", progress=False, hard_negatives=True)
    with pytest.raises(ValueError, match="batch_size"):
        clip.train_clip(_tiny(), (data.images, data.captions), steps=1, batch_size=1, lr=1e-3, device="cpu",
                        progress=False)


class _Oracle(torch.nn.Module):
    """A 'model' whose image and text vectors are one-hot codes of the caption: perfect by construction."""

    def __init__(self, captions):
        super().__init__()
        self.codes = {c: i for i, c in enumerate(dict.fromkeys(captions))}
        self.dim = len(self.codes)
        self.logit_scale = torch.nn.Parameter(torch.tensor(0.0))

    def eval(self):
        return self

    def encode_image(self, images):
        # Images carry their caption's code in pixel [0, 0, 0].
        return F.one_hot(images[:, 0, 0, 0].long(), self.dim).float()

    def encode_text(self, texts):
        return torch.stack([F.one_hot(torch.tensor(self.codes.get(t, 0)), self.dim).float()
                            if t in self.codes else torch.zeros(self.dim) for t in texts])


def test_retrieval_recall_and_zero_shot_on_an_oracle():
    captions = ["a", "b", "c", "a"]
    oracle = _Oracle(captions)
    images = torch.zeros(4, 1, 2, 2)
    images[:, 0, 0, 0] = torch.tensor([0.0, 1.0, 2.0, 0.0])
    r = clip.retrieval_recall(oracle, images, captions, ks=(1, 2))
    assert r == {"i2t@1": 1.0, "t2i@1": 1.0, "i2t@2": 1.0, "t2i@2": 1.0}
    assert clip.zero_shot_accuracy(oracle, images, [0, 1, 2, 0], ["a", "b", "c"], template="{}") == 1.0
    assert clip.zero_shot_accuracy(oracle, images, [1, 1, 1, 1], ["a", "b", "c"], template="{}") == 0.25
    with pytest.raises(ValueError, match="'{}'"):
        clip.zero_shot_accuracy(oracle, images, [0, 1, 2, 0], ["a", "b", "c"], template="a photo")


def test_binding_probe_is_chance_for_a_bag_of_words_model():
    data = shapes.make_dataset(40, seed=0, size=16, n_objects=2)

    class BagOfWords(_Oracle):
        # Text vector = sum of word vectors: a hard negative (same words) gets the true caption's vector.
        def encode_text(self, texts):
            g = torch.Generator().manual_seed(0)
            table = torch.randn(100, 8, generator=g)
            vocab = {w: i for i, w in enumerate(sorted({w for t in data.captions for w in t.split()}))}
            return F.normalize(torch.stack([table[[vocab[w] for w in sorted(t.split())]].sum(0) for t in texts]), dim=-1)

        def encode_image(self, images):
            return F.normalize(images.flatten(1)[:, :8] + 1.0, dim=-1)

    bow = BagOfWords(data.captions)
    # Ties (equal scores) count as failures, so a bag-of-words text tower scores 0 here, not 0.5.
    assert clip.binding_probe(bow, data, "swap_attributes") == 0.0
    assert clip.binding_probe(bow, data, "swap_order") == 0.0
    with pytest.raises(ValueError, match="n_objects=2"):
        clip.binding_probe(bow, shapes.make_dataset(4, seed=0, size=16))


def test_mnist_images():
    images, labels, captions = clip.mnist_images("test", size=32, n=20)
    assert images.shape == (20, 3, 32, 32) and labels.shape == (20,) and images.dtype == torch.float32
    assert 0.0 <= images.min() and images.max() <= 1.0
    assert images[:, :, :2].abs().sum() == 0          # 28x28 padded with a 2-pixel black border
    assert torch.equal(images[:, 0], images[:, 2])    # grey: the three channels are equal
    assert captions[0] == "a handwritten seven" and labels[0] == 7     # MNIST's first test image is a 7
    clip.CaptionTokenizer.default().encode_batch(captions)
    small, _, _ = clip.mnist_images("test", size=16, n=2)
    assert small.shape == (2, 3, 16, 16)
    with pytest.raises(ValueError, match="28x28"):
        clip._grey_to_rgb(np.zeros((2, 8, 8), np.uint8), 32)


def test_shapes_clip_trains_once_then_loads_from_the_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("MINILIB_CACHE", str(tmp_path))
    tiny = dict(n_one=16, n_two=16, size=16, patch=8, width=16, depth=1, heads=2, dim=16,
                text_width=16, text_depth=1, steps=3, batch_size=8, lr=1e-3)
    monkeypatch.setitem(clip.SHAPES_RECIPE, "quick", tiny)
    a = clip.shapes_clip("quick", device="cpu", hard_negatives=True, progress=False)
    assert len(a.history["loss"]) == 3 and len(a.history["temperature"]) == 3
    assert len(list((tmp_path / "derived").glob("ch14-clip-cnn-neg-quick-*.safetensors"))) == 1
    b = clip.shapes_clip("quick", device="cpu", hard_negatives=True, progress=False)
    for (k, v), (_, w) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(v, w), k
    with pytest.raises(ValueError, match="profile"):
        clip.shapes_clip("huge")


@pytest.fixture(scope="module")
def locked():
    pytest.importorskip("safetensors")
    try:
        torch.manual_seed(0)
        return clip.LockedTextCLIP(clip.ImageViT(16, 8, 16, 1, 2, 16))
    except Exception as e:  # the real MiniLM weights are a declared dependency; say why if they are absent
        pytest.skip(f"MiniLM not available: {e}")


def test_locked_text_clip_freezes_minilm_and_trains_the_rest(locked):
    frozen = [p for p in locked.text_tower.minilm.parameters()]
    assert frozen and not any(p.requires_grad for p in frozen)
    assert locked.text_tower.proj.weight.requires_grad and locked.logit_scale.requires_grad
    locked.train()
    assert not locked.text_tower.minilm.training        # locked: stays in eval mode
    t = locked.encode_text(["a small red circle on the left", "a large blue square on the right"])
    assert t.shape == (2, 16)
    torch.testing.assert_close(t.norm(dim=1), torch.ones(2))
    hidden, mask = locked.encode_text_tokens(["a red circle"])
    assert hidden.shape == (1, mask.shape[1], 384)
    data = shapes.make_dataset(16, seed=0, size=16)
    before = {k: v.clone() for k, v in locked.text_tower.minilm.state_dict().items()}
    clip.train_clip(locked, data, steps=2, batch_size=8, lr=1e-3, device="cpu", progress=False)
    after = locked.text_tower.minilm.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_fashion_images():
    from pathlib import Path
    if not Path("/usr/share/datasets/fashion-mnist").exists():
        pytest.skip("Debian dataset-fashion-mnist not installed")
    images, labels, captions = clip.fashion_images("test", size=32, n=20)
    assert images.shape == (20, 3, 32, 32) and labels.shape == (20,)
    assert images[:, :, :2].abs().sum() == 0          # the 2-pixel black border
    assert captions[0].startswith("a photo of a ")
    clip.CaptionTokenizer.default().encode_batch(captions)


def test_forward_is_the_scaled_cosine_matrix():
    torch.manual_seed(0)
    model = _tiny(tower="cnn").eval()
    images = torch.rand(3, 3, 16, 16)
    texts = ["a red circle on the left", "a small blue square on the right", "a green triangle"]
    with torch.no_grad():
        logits = model(images, texts)
        u, v = model.encode_image(images), model.encode_text(texts)
    assert logits.shape == (3, 3)
    torch.testing.assert_close(logits, model.scale() * F.normalize(u, dim=-1) @ F.normalize(v, dim=-1).T)
    torch.testing.assert_close(logits.diagonal() / model.scale(), F.cosine_similarity(u, v))


def test_caption_tokenizer_cuts_or_refuses_long_captions():
    tok = clip.CaptionTokenizer.from_texts(["a red circle left of a blue square"])
    ids, mask = tok.encode_batch(["a red circle left of a blue square", "a square"], max_len=4)
    assert ids.shape == (2, 4) and ids[0].tolist() == tok.encode("a red circle left of a blue square")[:4]
    assert mask.tolist() == [[1, 1, 1, 1], [1, 1, 1, 0]]
    with pytest.raises(ValueError, match="longer than max_len=4"):
        tok.encode_batch(["a red circle left of a blue square"], max_len=4, truncate=False)


def test_clip_errors_name_the_fix():
    with pytest.raises(ValueError, match=r"hard_negative_emb must be \(M, 8\), got \(3, 6\)"):
        clip.clip_loss(torch.randn(4, 8), torch.randn(4, 8), torch.tensor(1.0), torch.randn(3, 6))
    with pytest.raises(ValueError, match="needs at least one word"):
        clip.CaptionTokenizer([clip.CaptionTokenizer.PAD, clip.CaptionTokenizer.CLS])
    tok = clip.CaptionTokenizer.from_texts(["a red circle"])
    with pytest.raises(TypeError, match="one str: wrap it in a list"):
        tok.encode_batch("a red circle")
    with pytest.raises(ValueError, match="encode_batch got no texts"):
        tok.encode_batch([])
    with pytest.raises(ValueError, match=r"image_size=20 must be a multiple of 8 \(three 2x2 poolings\)"):
        clip.ImageCNN(20)
    model = _tiny()
    with pytest.raises(ValueError, match="the towers must output the same dim, got image 16 and text 8"):
        clip.CLIP(model.image_tower, clip.TextTower(model.tokenizer.vocab_size, 16, 1, 2, 8), model.tokenizer)
    with pytest.raises(ValueError, match="encode_text got no texts"):
        model.encode_text([])
    ids = torch.ones(2, 20, dtype=torch.long)
    with pytest.raises(ValueError, match=r"same \(B, T\) shape, got \(2, 20\) and \(2, 19\)"):
        model.text_tower.tokens(ids, torch.ones(2, 19, dtype=torch.long))
    with pytest.raises(ValueError, match="captions of 20 tokens exceed the text tower's max_len=16"):
        model.text_tower(ids, torch.ones_like(ids))
    with pytest.raises(ValueError, match="tower must be 'vit' or 'cnn', got 'rnn'"):
        clip.shapes_model(tower="rnn")
    with pytest.raises(ValueError, match="text_position must be 'learned' or 'sinusoidal', got 'rope'"):
        clip.shapes_clip(text_position="rope")


def test_training_and_evaluation_refuse_mismatched_data():
    data = shapes.make_dataset(8, seed=0, size=16, n_objects=2)
    with pytest.raises(ValueError, match="8 images but 7 captions"):
        clip.train_clip(_tiny(), (data.images, data.captions[:7]), steps=1, batch_size=4, lr=1e-3, device="cpu",
                        progress=False)
    with pytest.raises(ValueError, match="hard_negatives=True needs a ShapesData with two-object scenes"):
        clip.train_clip(_tiny(), (data.images, data.captions), steps=1, batch_size=4, lr=1e-3, device="cpu",
                        progress=False, hard_negatives=True)
    captions = ["a", "b", "c", "a"]
    oracle = _Oracle(captions)
    images = torch.zeros(4, 1, 2, 2)
    with pytest.raises(ValueError, match="4 images but 3 labels"):
        clip.zero_shot_accuracy(oracle, images, [0, 1, 2], ["a", "b", "c"], template="{}")
    with pytest.raises(ValueError, match="4 images but 3 captions"):
        clip.retrieval_recall(oracle, images, captions[:3])


def test_token_features_refuse_a_single_string():
    model = _tiny(tower="cnn")
    with pytest.raises(TypeError, match=r"one str: wrap it, encode_text_tokens\(\[text\]\)"):
        model.encode_text_tokens("a red circle")
    hidden, mask = model.encode_text_tokens(["a red circle"])
    assert hidden.shape[:2] == mask.shape and mask.shape[0] == 1
