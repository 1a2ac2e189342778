"""Tests for minilib.bpe: byte-level BPE (hand-worked training, round trip for any Unicode string,
id-for-id parity with Hugging Face tokenizers) and WordPiece (parity with the real MiniLM tokenizer)."""
import json
import os
import re

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minilib import data, text
from minilib.bpe import ByteBPE, WordPiece, bytes_to_unicode, pretokenize

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

TRICKY = [
    "", " ", "  ", "\n", "\r\n", "a\r\nb", "\x00", "nul\x00byte", "   leading spaces", "trailing spaces   ",
    "tab\tseparated\tvalues", "I'll say it's 'quoted' -- don't", "ALL CAPS'S", "e\u0301 (e + combining acute)",
    "naïve café Zoë façade", "Ελληνικά κείμενο", "Русский текст", "日本語のテキスト", "中文文本", "한국어",
    "emoji 🙂👍🏽 family 👨‍👩‍👧 flag 🇫🇷", "math ∑ x² ≤ ∞", "price: $3.50, 12% off; 1,000,000 units",
    "2023-01-01T12:00:00Z", "x\u200by (zero-width space)", "non\u00a0breaking", "\u2028line separator",
    "<mask> is not special in text <pad>", "<|endoftext|>", "hello\n\n\nworld", "a  b   c    d",
    "ǅungla ǈ", "İstanbul", "\ufeffBOM", "\U0001F600" * 5, "1234567890" * 3, "...!!!???", "\t \n\t",
]


def wiki_sentences(n_articles=None):
    """Running text from the Wikipedia sample, cut into sentences (case and punctuation kept)."""
    arts = data.load("enwiki_sample")[: n_articles]
    out = []
    for _, markup in arts:
        clean = re.sub(r"[ \t]+", " ", text.strip_wiki_markup(markup))
        out += [s.strip() for s in re.split(r"(?<=[.!?])\s+|\n+", clean) if len(s.strip()) > 20]
    return out


@pytest.fixture(scope="module")
def sentences():
    return wiki_sentences()


@pytest.fixture(scope="module")
def tok(sentences):
    return ByteBPE.train(sentences[:3000] + TRICKY, vocab_size=1000)


# --- the byte alphabet and pre-tokenization ------------------------------------------------


def test_byte_alphabet_is_a_bijection_onto_printable_characters():
    m = bytes_to_unicode()
    assert sorted(m) == list(range(256)) and len(set(m.values())) == 256
    assert m[ord("a")] == "a" and m[ord(" ")] == "Ġ" and m[ord("\n")] == "Ċ"
    assert all(c.isprintable() and not c.isspace() for c in m.values())


def test_pretokenize_follows_gpt2():
    assert pretokenize("I'll pay 30 dollars!") == ["I", "'ll", " pay", " 30", " dollars", "!"]
    assert pretokenize("a  b") == ["a", " ", " b"]  # the last space goes with the next word
    assert pretokenize("end.\n\n") == ["end", ".", "\n\n"]
    for s in TRICKY:
        assert "".join(pretokenize(s)) == s


def test_re_fallback_equals_the_regex_module(sentences):
    pytest.importorskip("regex")
    for s in sentences[:300] + TRICKY:
        assert pretokenize(s, engine="re") == pretokenize(s, engine="regex"), s


# Characters assigned in Python's Unicode database (unassigned code points are classified by
# each regex engine's own, newer or older, Unicode tables).
ASSIGNED = st.characters(exclude_categories=("Cn", "Cs"))


@settings(max_examples=200, deadline=None)
@given(st.text(ASSIGNED, max_size=40))
def test_re_fallback_equals_the_regex_module_on_random_text(s):
    pytest.importorskip("regex")
    assert pretokenize(s, engine="re") == pretokenize(s, engine="regex")


# --- training by hand --------------------------------------------------------------------

# The corpus of the worked example in the chapter: 10 x hug, 5 x pug, 12 x pun, 4 x bun, 5 x hugs.
HUGS = ["hug"] * 10 + ["pug"] * 5 + ["pun"] * 12 + ["bun"] * 4 + ["hugs"] * 5


def test_training_by_hand():
    # Initial pair counts: u-g 20 (hug, pug, hugs), p-u 17, u-n 16, h-u 15, g-s 5, b-u 4.
    # 1. (u, g) 20 -> h ug, p ug, p u n, b u n, h ug s: h-ug 15, p-u 12, u-n 16, ...
    # 2. (u, n) 16 -> p un, b un: h-ug 15, p-un 12, p-ug 5, ug-s 5, b-un 4
    # 3. (h, ug) 15 -> hug, hug s: p-un 12, p-ug 5, hug-s 5, b-un 4
    # 4. (p, un) 12
    # 5. tie at 5 between (p, ug) and (hug, s): p is a byte symbol, older (smaller id) than the
    #    merged "hug" (id 262) -> (p, ug) first
    # 6. (hug, s) 5
    # 7. (b, un) 4
    expected = [("u", "g"), ("u", "n"), ("h", "ug"), ("p", "un"), ("p", "ug"), ("hug", "s"), ("b", "un")]
    tok = ByteBPE.train(HUGS, vocab_size=4 + 256 + 7, min_frequency=1)
    assert tok.merges == expected
    assert tok.vocab_size == 267 and tok.itos[260:] == ["ug", "un", "hug", "pun", "pug", "hugs", "bun"]
    # min_frequency stops before (b, un), seen 4 times; vocab_size stops after 3 merges.
    assert ByteBPE.train(HUGS, vocab_size=1000, min_frequency=5).merges == expected[:6]
    assert ByteBPE.train(HUGS, vocab_size=263).merges == expected[:3]
    # Encoding applies merges by rank: "bugs" -> b ug s (u-g is rank 0; no merge makes "bug").
    assert tok.tokenize("bugs") == ["b", "ug", "s"]
    assert tok.tokenize("hugs pun") == ["hugs", "Ġ", "pun"]  # " pun" was never seen with its space


def test_specials_come_first_then_bytes():
    tok = ByteBPE.train(HUGS, vocab_size=270)
    assert (tok.pad_id, tok.mask_id, tok.bos_id, tok.eos_id) == (0, 1, 2, 3) and tok.unk_id is None
    # Byte symbols in character order: the printable bytes "!".."~" first, in byte order.
    assert tok.itos[4:260] == sorted(bytes_to_unicode().values())
    assert tok.token_to_id("!") == 4 and tok.token_to_id("a") == 4 + ord("a") - ord("!")
    custom = ByteBPE.train(HUGS, vocab_size=270, special_tokens=("<pad>", "<unk>"))
    assert custom.unk_id == 1 and custom.mask_id is None and custom.token_to_id("!") == 2


def test_training_is_deterministic(sentences):
    a = ByteBPE.train(sentences[:500], 600)
    b = ByteBPE.train(list(reversed(sentences[:500])), 600)  # document order must not matter either
    assert a.merges == b.merges


def test_truncated_equals_training_to_the_smaller_size(sentences, tok):
    big = ByteBPE.train(sentences[:600], vocab_size=700)
    for size in (260, 333, 699):
        assert big.truncated(size).merges == ByteBPE.train(sentences[:600], vocab_size=size).merges
        assert big.truncated(size).vocab_size == size
    assert tok.truncated(5000).merges == tok.merges  # asking for more than there is: all of it
    with pytest.raises(ValueError, match=">= 260"):
        tok.truncated(100)


def test_same_string_from_two_merges_gets_one_id():
    tok = ByteBPE([("a", "b"), ("b", "c"), ("ab", "c"), ("a", "bc")])
    assert tok.vocab_size == 4 + 256 + 3 and tok.itos[-1] == "abc"
    assert tok.truncated(262).merges == tok.merges[:2] and tok.truncated(263).merges == tok.merges[:3]
    hf = tok.to_hf()
    for s in ["abc", "abcabc", "aabbcc", "bcabc", "xabcy"]:
        assert tok.encode(s) == hf.encode(s).ids


def test_a_pair_learned_twice_uses_its_later_rank_like_tokenizers():
    tok = ByteBPE([("x", "y"), ("y", "z"), ("w", "x"), ("x", "y")])
    hf = tok.to_hf()
    for s in ["xyz", "wxyz", "xyzz", "wxy", "yxyz"]:
        assert tok.encode(s) == hf.encode(s).ids, s
    assert tok.tokenize("xyz") == ["x", "yz"]


# --- errors --------------------------------------------------------------------------------


def test_training_errors_name_the_fix():
    with pytest.raises(ValueError, match="empty corpus"):
        ByteBPE.train([], 1000)
    with pytest.raises(ValueError, match="empty corpus"):
        ByteBPE.train(["", ""], 1000)
    with pytest.raises(ValueError, match="vocab_size >= 260"):
        ByteBPE.train(["some text"], 259)
    with pytest.raises(ValueError, match="vocab_size >= 258"):
        ByteBPE.train(["some text"], 100, special_tokens=("<pad>", "<eos>"))
    with pytest.raises(TypeError, match="wrap it in a list"):
        ByteBPE.train("one long string", 1000)
    with pytest.raises(ValueError, match="byte symbol"):
        ByteBPE([], special_tokens=("a",))
    with pytest.raises(ValueError, match="no earlier merge"):
        ByteBPE([("ab", "c")])


def test_lone_surrogates_are_refused_clearly(tok):
    with pytest.raises(ValueError, match="lone surrogate"):
        tok.encode("bad \udc80 byte")
    with pytest.raises(ValueError, match="errors='replace'"):
        ByteBPE.train(["ok", "x\ud800"], 300)


def test_vocab_lookup_errors(tok):
    with pytest.raises(KeyError, match="byte alphabet"):
        tok.token_to_id(" the")
    with pytest.raises(ValueError, match="ids run from 0 to 999"):
        tok.decode([1000])
    with pytest.raises(ValueError, match="out of range"):
        tok.id_to_token(-1)


# --- round trip --------------------------------------------------------------------------


def test_round_trip_on_tricky_strings(tok):
    for s in TRICKY:
        assert tok.decode(tok.encode(s)) == s, s


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=60) | st.text(st.sampled_from(" \t\r\n\x00aé\u0301🙂👍🏽\u200d'sA1."), max_size=30))
def test_round_trip_any_unicode(tok, s):
    ids = tok.encode(s)
    assert all(0 <= i < tok.vocab_size for i in ids)
    assert tok.decode(ids) == s


def test_decode_handles_specials_and_tensors(tok):
    ids = [tok.bos_id, *tok.encode("Hello world"), tok.eos_id]
    assert tok.decode(ids) == "<bos>Hello world<eos>"
    assert tok.decode(torch.tensor(ids), skip_special_tokens=True) == "Hello world"
    assert tok.encode("<mask>") != [tok.mask_id]  # special tokens are never read from text


def test_merges_compress_text(tok, sentences):
    held_out = " ".join(sentences[-200:])
    n = len(tok.encode(held_out))
    assert n < 0.5 * len(held_out.encode("utf-8"))  # 1000 tokens already halve the byte count


# --- parity with Hugging Face tokenizers -----------------------------------------------------


def test_parity_with_tokenizers_on_wikipedia_and_tricky_strings(tok, sentences):
    hf = tok.to_hf()
    held_out = sentences[3000:3600] + TRICKY  # sentences not seen in training, and the odd ones
    ours = [tok.encode(s) for s in held_out]
    theirs = [e.ids for e in hf.encode_batch(held_out)]
    assert len(held_out) > 600 and ours == theirs
    assert [hf.decode(i) for i in theirs] == held_out


@pytest.fixture(scope="module")
def hf_tok(tok):
    return tok.to_hf()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(ASSIGNED, max_size=40))
def test_parity_with_tokenizers_on_random_text(tok, hf_tok, s):
    assert tok.encode(s) == hf_tok.encode(s).ids


@pytest.mark.parametrize("min_frequency", [2, 25])
def test_training_equals_the_tokenizers_trainer(sentences, min_frequency):
    # Hugging Face's BpeTrainer on the same text, with the same specials and alphabet, learns the
    # same merges in the same order (same tie rule) and the same vocabulary ids.
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    specials = ["<pad>", "<mask>", "<bos>", "<eos>"]
    hf = Tokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.train_from_iterator(sentences[:1200], trainers.BpeTrainer(
        vocab_size=1000, min_frequency=min_frequency, special_tokens=specials, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    model = json.loads(hf.to_str())["model"]
    theirs = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    ours = ByteBPE.train(sentences[:1200], vocab_size=1000, min_frequency=min_frequency, special_tokens=specials)
    assert len(ours.merges) > 300 and ours.merges == theirs
    assert ours.stoi == model["vocab"]


# --- batches -------------------------------------------------------------------------------


def test_encode_batch_pads_and_masks(tok):
    texts = ["a short one", "a somewhat longer sentence than the first", ""]
    ids, mask = tok.encode_batch(texts)
    lens = [len(tok.encode(t)) for t in texts]
    assert ids.dtype == mask.dtype == torch.long and ids.shape == (3, max(lens))
    assert mask.sum(1).tolist() == lens
    for r, t in enumerate(texts):
        assert ids[r, : lens[r]].tolist() == tok.encode(t)
        assert torch.all(ids[r, lens[r]:] == tok.pad_id)
    ids, mask = tok.encode_batch(texts, max_len=32)
    assert ids.shape == (3, 32)
    ids, _ = tok.encode_batch(texts, max_len=32, pad=False)
    assert ids.shape == (3, max(lens))
    ids, mask = tok.encode_batch(["hi"], bos=True, eos=True)
    assert ids[0].tolist() == [tok.bos_id, *tok.encode("hi"), tok.eos_id]


def test_encode_batch_refuses_or_truncates_long_input(tok):
    long = "word " * 50
    with pytest.raises(ValueError, match="max_len=8") as e:
        tok.encode_batch(["ok", long], max_len=8)
    assert "truncate=True" in str(e.value)
    ids, mask = tok.encode_batch(["ok", long], max_len=8, truncate=True, eos=True)
    assert ids.shape == (2, 8) and mask[1].sum() == 8 and ids[1, -1] == tok.eos_id
    assert ids[1, :7].tolist() == tok.encode(long)[:7]
    with pytest.raises(ValueError, match="no texts"):
        tok.encode_batch([])
    with pytest.raises(TypeError, match="wrap it in a list"):
        tok.encode_batch("a text")
    with pytest.raises(ValueError, match="max_len"):
        tok.encode_batch(["x"], max_len=1, bos=True)


# --- save / load -------------------------------------------------------------------------------


def test_save_load_round_trip(tok, tmp_path, sentences):
    p = tmp_path / "bpe.json"
    tok.save(p)
    back = ByteBPE.load(p)
    assert back.merges == tok.merges and back.itos == tok.itos and back.special_tokens == tok.special_tokens
    assert back.encode(sentences[-1]) == tok.encode(sentences[-1])
    with pytest.raises(FileNotFoundError, match="save a tokenizer"):
        ByteBPE.load(tmp_path / "missing.json")
    p.write_text('{"type": "something else"}')
    with pytest.raises(ValueError, match="not a minilib ByteBPE"):
        ByteBPE.load(p)


# --- WordPiece: parity with all-MiniLM-L6-v2's tokenizer.json ---------------------------------


@pytest.fixture(scope="module")
def minilm():
    from tokenizers import Tokenizer

    folder = data.load("minilm")
    hf = Tokenizer.from_file(str(folder / "tokenizer.json"))
    hf.no_truncation()
    hf.no_padding()
    return WordPiece.from_vocab(folder / "vocab.txt"), hf


WP_TRICKY = [
    "Hello, world!", "The café's crème brûlée costs €4.50 (tax incl.)", "naïve coöperation Zoë", "ÅNGSTRÖM",
    "日本語のテキストと中文", "Tokyo 東京 is big", "한국어 문장", "Ελληνικά", "Москва",
    "unaffable antidisestablishmentarianism", "supercalifragilisticexpialidocious", "xqzvbnmrtplk",
    "a" * 100, "a" * 101, "🙂 emoji 👍🏽", "email: someone@example.com, url: http://x.y/z?q=1",
    "tabs\tand\nnewlines\r\nand\x00nul and \x07bell", "zero\u200bwidth", "non\u00a0breaking space",
    "Paris is the [MASK] of France.", "[CLS] already [SEP] here", "[mask] lowercase is not special",
    "don't won't it's", "U.S.A. 3.14159 1,000", "ＦＵＬＬＷＩＤＴＨ ｔｅｘｔ", "", "   ", "Σίσυφος ΣΑΣ",
]


def test_wordpiece_parity_with_minilm(minilm, sentences):
    wp, hf = minilm
    texts = sentences[:400] + WP_TRICKY
    for s in texts:
        enc = hf.encode(s)
        assert wp.encode(s) == enc.ids, s
        assert [wp.itos[i] for i in wp.encode(s)] == enc.tokens


def test_wordpiece_pieces_and_unknowns(minilm):
    wp, _ = minilm
    assert wp.tokenize("Unaffable!") == ["una", "##ffa", "##ble", "!"]  # greedy, not morphology
    assert wp.tokenize("a" * 101) == ["[UNK]"]  # longer than max_chars
    assert wp.tokenize("🙂") == ["[UNK]"]  # no piece covers it
    assert wp.encode("hi")[0] == wp.cls_id and wp.encode("hi")[-1] == wp.sep_id
    assert wp.encode("hi", add_special_tokens=False) == [wp.token_to_id("hi")]
    assert (wp.pad_id, wp.unk_id, wp.cls_id, wp.sep_id, wp.mask_id) == (0, 100, 101, 102, 103)
    assert wp.decode(wp.encode("Unaffable people")) == "unaffable people"
    with pytest.raises(KeyError, match="##"):
        wp.token_to_id("Unaffable")


def test_wordpiece_batches_match_tokenizers(minilm, sentences):
    wp, hf = minilm
    texts = sentences[:20] + ["short", ""]
    hf.enable_truncation(16)
    hf.enable_padding(pad_id=0, pad_token="[PAD]")
    try:
        encs = hf.encode_batch(texts)
    finally:
        hf.no_truncation()
        hf.no_padding()
    ids, mask = wp.encode_batch(texts, max_len=16)
    assert ids.tolist() == [e.ids for e in encs]
    assert mask.tolist() == [e.attention_mask for e in encs]
    with pytest.raises(ValueError, match="max_len=16"):
        wp.encode_batch(texts, max_len=16, truncate=False)
    with pytest.raises(ValueError, match="no texts"):
        wp.encode_batch([])


def test_wordpiece_from_vocab_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="vocab.txt"):
        WordPiece.from_vocab(tmp_path / "nope.txt")
    (tmp_path / "vocab.txt").write_text("[PAD]\nhello\n")
    with pytest.raises(ValueError, match="unknown token"):
        WordPiece.from_vocab(tmp_path)
    (tmp_path / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\nhello\n##s\n")
    wp = WordPiece.from_vocab(tmp_path)
    assert wp.tokenize("Hellos HELLO bye") == ["hello", "##s", "hello", "[UNK]"]


def test_len_and_repr_count_the_vocabulary():
    bpe = ByteBPE([("Ġ", "t"), ("Ġt", "h")])
    assert len(bpe) == bpe.vocab_size == 4 + 256 + 2
    assert repr(bpe) == "ByteBPE(vocab_size=262, merges=2, specials=['<pad>', '<mask>', '<bos>', '<eos>'])"
    wp = WordPiece(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "play", "##ing"])
    assert len(wp) == wp.vocab_size == 7
    assert repr(wp) == "WordPiece(vocab_size=7, lowercase=True)"


def test_bpe_errors_name_the_fix(tmp_path, monkeypatch):
    import sys

    from minilib import bpe as bpe_mod

    with pytest.raises(TypeError, match="pretokenize expects a str, got bytes"):
        pretokenize(b"bytes")
    with pytest.raises(ValueError, match="distinct non-empty strings"):
        ByteBPE([], special_tokens=("<pad>", "<pad>"))
    with pytest.raises(ValueError, match="distinct non-empty strings"):
        ByteBPE([], special_tokens=("<pad>", ""))
    with pytest.raises(ValueError, match="produces the special token 'ab'"):
        ByteBPE([("a", "b")], special_tokens=("<pad>", "ab"))
    with pytest.raises(ValueError, match="min_frequency must be >= 1, got 0"):
        ByteBPE.train(HUGS, 300, min_frequency=0)
    with pytest.raises(TypeError, match="texts as str, got bytes"):
        ByteBPE.train(["ok", b"raw bytes"], 300)
    tok = ByteBPE.train(HUGS, vocab_size=267, min_frequency=1)
    with pytest.raises(TypeError, match="encode expects a str, got list"):
        tok.encode(["hug"])
    pad_only = ByteBPE([], special_tokens=("<pad>",))
    for flag in ("bos", "eos"):
        with pytest.raises(ValueError, match=f"{flag}=True needs a '<{flag}>' special token"):
            pad_only.encode_batch(["hug"], **{flag: True})
    with pytest.raises(ValueError, match="padding needs a '<pad>' special token"):
        ByteBPE([], special_tokens=("<eos>",)).encode_batch(["hug"])
    # a saved file whose vocabulary does not follow from its merges
    p = tmp_path / "bpe.json"
    tok.save(p)
    payload = json.loads(p.read_text(encoding="utf-8"))
    payload["vocab"][-1] = "tampered"
    p.write_text(json.dumps(payload), encoding="utf-8")
    with pytest.raises(ValueError, match="does not follow from its merges; the file is corrupt"):
        ByteBPE.load(p)
    # engine="regex" without the regex module: the ImportError is not swallowed
    monkeypatch.setitem(sys.modules, "regex", None)
    bpe_mod._pattern.cache_clear()
    try:
        with pytest.raises(ImportError, match="needs the regex package: pip install regex, or use engine='re'"):
            pretokenize("hug", engine="regex")
        assert pretokenize("hug it", engine="auto") == ["hug", " it"]    # auto falls back to re
    finally:
        bpe_mod._pattern.cache_clear()
    with pytest.raises(ValueError, match="unknown engine 'bogus'"):
        pretokenize("hug", engine="bogus")


def test_wordpiece_errors_name_the_fix(tmp_path):
    with pytest.raises(ValueError, match="entries must be unique"):
        WordPiece(["[UNK]", "hello", "hello"])
    (tmp_path / "vocab.txt").write_text("\n\n")
    with pytest.raises(ValueError, match="is empty: a vocab.txt has one token per line"):
        WordPiece.from_vocab(tmp_path)
    wp = WordPiece(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "hello"])
    for bad in (5, -1, True, "2"):
        with pytest.raises(ValueError, match="ids run from 0 to 4"):
            wp.id_to_token(bad)
    with pytest.raises(ValueError, match="ids run from 0 to 4"):
        wp.decode([0, 9])
    with pytest.raises(TypeError, match="tokenize expects a str, got NoneType"):
        wp.tokenize(None)
    with pytest.raises(TypeError, match="one str: wrap it in a list"):
        wp.encode_batch("hello")
    for bad in (1, 2.5, True):
        with pytest.raises(ValueError, match=r"max_len must be an int >= 2 \(room for \[CLS\] and \[SEP\]\)"):
            wp.encode_batch(["hello"], max_len=bad)
    no_specials = WordPiece(["[UNK]", "hello"])
    with pytest.raises(ValueError, match="no \\[CLS\\]/\\[SEP\\]: call encode\\(text, add_special_tokens=False\\)"):
        no_specials.encode("hello")
    assert no_specials.encode("hello", add_special_tokens=False) == [1]
    with pytest.raises(ValueError, match="no \\[PAD\\] token to pad with"):
        WordPiece(["[UNK]", "[CLS]", "[SEP]", "hello"]).encode_batch(["hello"])
