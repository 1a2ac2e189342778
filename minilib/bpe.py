"""Subword tokenizers: byte-level BPE (GPT-2) trained from scratch, and BERT's WordPiece.

A word-level vocabulary cannot name every word (chapter 03 met the *out-of-vocabulary* problem);
characters or bytes can spell anything but make sequences long. Subword tokenizers sit in
between: frequent words are one token, rare words are spelled from a few pieces.

**Byte-level BPE** (Sennrich et al. 2016; Radford et al. 2019) works on the UTF-8 bytes of the
text, so its 256 base symbols spell *any* string and nothing is ever unknown. Training:

1. *pre-tokenize*: cut the text into chunks with GPT-2's pattern (contractions, runs of letters,
   runs of digits, runs of other symbols, each with at most one leading space, and whitespace),
   so that merges never cross a word boundary;
2. write each chunk as bytes, each byte as one printable character (GPT-2's byte->unicode
   alphabet, :func:`bytes_to_unicode`), and count the distinct chunks;
3. repeatedly merge the most frequent adjacent pair of symbols into a new symbol, updating the
   pair counts only in the chunks that contain the merged pair.

Vocabulary ids: the special tokens first, then the 256 byte symbols in the order of their
characters (the printable bytes ``!``..``ÿ`` keep their order, the 68 moved ones follow), then
one id per new merged string. Ties between equally frequent pairs go to the pair with the
smaller ids, left symbol first (older symbols win), so training is deterministic; this is also
Hugging Face's rule, and training gives the very merges its ``BpeTrainer`` learns. Encoding
applies the learned merges to each chunk, lowest rank (earliest learned) first.

**WordPiece** (Wu et al. 2016; Devlin et al. 2019) is BERT's tokenizer: normalise (clean control
characters, lowercase, strip accents, space out CJK characters), split on whitespace and
punctuation, then cut each word greedily into the longest pieces found in a fixed vocabulary,
``##`` marking pieces that continue a word. We read it from a ``vocab.txt`` (chapter 06 runs
the real all-MiniLM-L6-v2 with it).

Both match Hugging Face ``tokenizers`` id for id (tests/test_bpe.py): ``ByteBPE.to_hf()`` builds
the same tokenizer there, and WordPiece reproduces MiniLM's ``tokenizer.json``.

Defined in chapter 05.
"""
from __future__ import annotations

import heapq
import json
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path

import torch

# --- pre-tokenization ----------------------------------------------------------------------
# GPT-2's pattern. Alternatives are tried left to right: English contractions; letters, digits,
# or other symbols, each with at most one leading space; whitespace that is not followed by a
# non-space (so "a  b" gives "a", " ", " b": the last space stays with the next word); other
# whitespace. \p{L} and \p{N} are the Unicode letter and number categories.
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""

# Unicode's White_Space property: what `regex` and Hugging Face's regex engine call \s.
# (Python's `re` would also count \x1c-\x1f, which tokenizers does not.)
_WHITESPACE = "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"


def _category_class(first_letter: str) -> str:
    """A character class (for ``re``) of every code point whose Unicode category starts with
    ``first_letter`` ("L" letters, "N" numbers), built from :mod:`unicodedata`."""
    import re

    ranges, start = [], None
    for cp in range(0x110000):
        inside = unicodedata.category(chr(cp))[0] == first_letter
        if inside and start is None:
            start = cp
        elif not inside and start is not None:
            ranges.append((start, cp - 1))
            start = None
    if start is not None:
        ranges.append((start, 0x10FFFF))
    return "".join(re.escape(chr(a)) if a == b else f"{re.escape(chr(a))}-{re.escape(chr(b))}" for a, b in ranges)


@lru_cache(maxsize=None)
def _pattern(engine: str = "auto"):
    """The compiled GPT-2 pattern: with the `regex` module if it is installed (it knows \\p{L}),
    else an equivalent `re` pattern whose letter/number classes come from unicodedata (0.2 s)."""
    if engine not in ("auto", "regex", "re"):
        raise ValueError(f"unknown engine {engine!r}: use 'auto' (regex if installed, else re), 'regex' or 're'")
    if engine in ("auto", "regex"):
        try:
            import regex

            return regex.compile(GPT2_PATTERN)
        except ImportError:
            if engine == "regex":
                raise ImportError("engine='regex' needs the regex package: pip install regex, "
                                  "or use engine='re' (the same chunks, a little slower)") from None
    import re

    L, N = _category_class("L"), _category_class("N")
    return re.compile(
        rf"""'s|'t|'re|'ve|'m|'ll|'d| ?[{L}]+| ?[{N}]+| ?[^{_WHITESPACE}{L}{N}]+"""
        rf"""|[{_WHITESPACE}]+(?![^{_WHITESPACE}])|[{_WHITESPACE}]+"""
    )


def pretokenize(text: str, engine: str = "auto") -> list[str]:
    """Cut ``text`` into GPT-2's chunks: ``"I'll pay 30 dollars!"`` ->
    ``["I", "'ll", " pay", " 30", " dollars", "!"]``. Joined, the chunks give back ``text``.

    ``engine`` is ``"auto"`` (the `regex` module when installed), ``"regex"`` or ``"re"``
    (the standard library, with Python's own Unicode tables). Defined in chapter 05.
    """
    if not isinstance(text, str):
        raise TypeError(f"pretokenize expects a str, got {type(text).__name__}")
    return _pattern(engine).findall(text)


@lru_cache(maxsize=None)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's map from the 256 byte values to 256 printable characters.

    Printable Latin-1 bytes (``!``..``~``, ``¡``..``¬``, ``®``..``ÿ``) stand for themselves; the
    other 68 (controls, space, DEL, NBSP, soft hyphen) are moved to ``chr(256 + n)``, so a space
    is written ``Ġ`` and a newline ``Ċ``. Every byte is now a visible symbol that a vocabulary
    file can store. Defined in chapter 05.
    """
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    out, n = {b: chr(b) for b in keep}, 0
    for b in range(256):
        if b not in out:
            out[b] = chr(256 + n)
            n += 1
    return dict(sorted(out.items()))


_BYTE_TO_CHAR = bytes_to_unicode()
_CHAR_TO_BYTE = {c: b for b, c in _BYTE_TO_CHAR.items()}


def _to_symbols(chunk: str) -> str:
    """A text chunk as its UTF-8 bytes, one alphabet character per byte."""
    try:
        raw = chunk.encode("utf-8")
    except UnicodeEncodeError as e:  # a lone surrogate (U+D800-U+DFFF) is not a character
        raise ValueError(
            f"the text holds {chunk[e.start:e.end]!r}, a lone surrogate code point, which is not valid Unicode "
            "and has no UTF-8 bytes; it usually comes from decoding bytes with errors='surrogateescape'. "
            "Decode the source with errors='replace' (or fix the text) before tokenizing"
        ) from None
    return "".join(_BYTE_TO_CHAR[b] for b in raw)


# --- byte-level BPE ------------------------------------------------------------------------

DEFAULT_SPECIALS = ("<pad>", "<mask>", "<bos>", "<eos>")


class ByteBPE:
    """Byte-level BPE: ``ByteBPE.train(texts, vocab_size)``, then ``encode`` / ``decode``.

    ``merges`` is the list of learned pairs in rank order; ids are the special tokens, then the
    256 byte symbols (in character order), then the merged strings (see the module docstring).
    Special tokens are never read from text (a document containing ``<mask>`` is encoded as those
    characters); insert their ids yourself, or with ``encode_batch(..., bos=True, eos=True)``.
    Defined in chapter 05.
    """

    def __init__(self, merges: Sequence[tuple[str, str]], special_tokens: Sequence[str] = DEFAULT_SPECIALS):
        self.special_tokens = tuple(special_tokens)
        if len(set(self.special_tokens)) != len(self.special_tokens) or not all(
                isinstance(s, str) and s for s in self.special_tokens):
            raise ValueError(f"special tokens must be distinct non-empty strings, got {self.special_tokens}")
        self.itos: list[str] = [*self.special_tokens, *sorted(_BYTE_TO_CHAR.values())]
        self.stoi: dict[str, int] = {}
        for i, s in enumerate(self.itos):
            if s in self.stoi:
                raise ValueError(f"special token {s!r} is also a byte symbol: choose another, e.g. '<{s}>'")
            self.stoi[s] = i
        self.merges: list[tuple[str, str]] = []
        for a, b in merges:
            if a not in self.stoi or b not in self.stoi or a in self.special_tokens or b in self.special_tokens:
                raise ValueError(f"merge {(a, b)!r} uses a symbol that no earlier merge or byte produced")
            ab = a + b
            if ab in self.special_tokens:
                raise ValueError(f"merge {(a, b)!r} produces the special token {ab!r}")
            if ab not in self.stoi:  # two merges can make the same string ("a"+"bc", "ab"+"c"): one id
                self.stoi[ab] = len(self.itos)
                self.itos.append(ab)
            self.merges.append((a, b))
        # A pair can be learned twice (it can reappear after a merge remakes an existing string);
        # like Hugging Face's BPE model, the later rank wins.
        self.ranks: dict[tuple[str, str], int] = {m: r for r, m in enumerate(self.merges)}
        self._special_ids = {self.stoi[s] for s in self.special_tokens}
        self._cache: dict[str, tuple[int, ...]] = {}
        for name in ("pad", "mask", "bos", "eos", "unk"):
            tok = f"<{name}>"
            setattr(self, f"{name}_id", self.stoi.get(tok))

    # -- training ---------------------------------------------------------------------------

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int, min_frequency: int = 2,
              special_tokens: Sequence[str] = DEFAULT_SPECIALS) -> "ByteBPE":
        """Learn merges from ``texts`` until the vocabulary holds ``vocab_size`` tokens or no pair
        occurs ``min_frequency`` times. The vocabulary counts the special tokens and the 256 bytes,
        so ``vocab_size`` must be at least ``len(special_tokens) + 256``. Defined in chapter 05."""
        if isinstance(texts, str):
            raise TypeError("ByteBPE.train expects an iterable of texts, got one str: wrap it in a list")
        minimum = len(tuple(special_tokens)) + 256
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < minimum:
            raise ValueError(
                f"vocab_size={vocab_size!r} is too small: the {len(tuple(special_tokens))} special tokens and the "
                f"256 byte symbols alone take {minimum} ids; use vocab_size >= {minimum}"
            )
        if min_frequency < 1:
            raise ValueError(f"min_frequency must be >= 1, got {min_frequency}")

        # 1-2. Count distinct chunks, then spell each one in byte symbols once.
        chunk_counts: Counter[str] = Counter()
        for t in texts:
            if not isinstance(t, str):
                raise TypeError(f"ByteBPE.train expects texts as str, got {type(t).__name__}")
            chunk_counts.update(pretokenize(t))
        if not chunk_counts:
            raise ValueError("cannot train BPE on an empty corpus: the texts contain no characters")
        tok = cls([], special_tokens)  # vocabulary of specials + bytes; merges are added below
        words: list[list[int]] = [[tok.stoi[c] for c in _to_symbols(ch)] for ch in chunk_counts]
        freqs: list[int] = list(chunk_counts.values())

        # Pair counts over the corpus, and for each pair the chunks it occurs in.
        counts: dict[tuple[int, int], int] = {}
        where: dict[tuple[int, int], set[int]] = {}
        for w, (word, f) in enumerate(zip(words, freqs)):
            for p in zip(word, word[1:]):
                counts[p] = counts.get(p, 0) + f
                where.setdefault(p, set()).add(w)

        def key(p):  # heap order: highest count first, ties by the smaller ids (older symbols)
            return (-counts[p], p)

        heap = [key(p) for p in counts]
        heapq.heapify(heap)
        merges: list[tuple[str, str]] = []
        forbidden = set(tok.special_tokens)
        while len(tok.itos) < vocab_size and heap:
            neg, pair = heapq.heappop(heap)
            c = counts.get(pair, 0)
            if c != -neg:  # stale entry: the count changed since it was pushed
                if c > 0:
                    heapq.heappush(heap, key(pair))
                continue
            if c < min_frequency:
                break
            a, b = tok.itos[pair[0]], tok.itos[pair[1]]
            if a + b in forbidden:  # never let text produce a special token
                del counts[pair]
                continue
            merges.append((a, b))
            if a + b not in tok.stoi:
                tok.stoi[a + b] = len(tok.itos)
                tok.itos.append(a + b)
            new = tok.stoi[a + b]
            # 3. Rewrite only the chunks that contain the pair, and update their pair counts.
            grown: set[tuple[int, int]] = set()
            for w in where.pop(pair):
                word, f = words[w], freqs[w]
                merged, i = [], 0
                while i < len(word):
                    if i + 1 < len(word) and word[i] == pair[0] and word[i + 1] == pair[1]:
                        merged.append(new)
                        i += 2
                    else:
                        merged.append(word[i])
                        i += 1
                if len(merged) == len(word):
                    continue  # the pair left this chunk earlier (where[] is not pruned)
                for p in zip(word, word[1:]):
                    counts[p] -= f
                for p in zip(merged, merged[1:]):
                    counts[p] = counts.get(p, 0) + f
                    where.setdefault(p, set()).add(w)
                    grown.add(p)
                words[w] = merged
            counts.pop(pair, None)
            for p in grown:  # a pair whose count rose needs a fresh heap entry
                if counts.get(p, 0) > 0 and p != pair:
                    heapq.heappush(heap, key(p))
            for p in [p for p in grown if counts.get(p) == 0]:
                del counts[p]
        return cls(merges, special_tokens)

    def truncated(self, vocab_size: int) -> "ByteBPE":
        """The tokenizer with only the first merges, up to ``vocab_size`` tokens.

        Training is greedy, so this is exactly what ``train`` on the same texts with this
        ``vocab_size`` returns: one training run gives a whole range of vocabulary sizes."""
        minimum = len(self.special_tokens) + 256
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < minimum:
            raise ValueError(f"vocab_size must be an int >= {minimum} (specials + 256 bytes), got {vocab_size!r}")
        seen, n = set(self.itos[:minimum]), 0
        for a, b in self.merges:  # training stops as soon as the vocabulary is full
            if len(seen) >= vocab_size:
                break
            seen.add(a + b)  # a merge that remakes an existing string adds no token
            n += 1
        return type(self)(self.merges[:n], self.special_tokens)

    # -- the vocabulary ---------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        """Number of ids: specials + 256 bytes + distinct merged strings."""
        return len(self.itos)

    def __len__(self) -> int:
        return len(self.itos)

    def __repr__(self) -> str:
        return f"ByteBPE(vocab_size={self.vocab_size}, merges={len(self.merges)}, specials={list(self.special_tokens)})"

    def token_to_id(self, token: str) -> int:
        """The id of a token string (in the byte alphabet: a space is ``Ġ``); ``KeyError`` if absent."""
        try:
            return self.stoi[token]
        except KeyError:
            raise KeyError(f"{token!r} is not a token of this BPE vocabulary ({self.vocab_size} tokens). Tokens are "
                           "written in the byte alphabet (a leading space is 'Ġ'): try encode(text) instead") from None

    def id_to_token(self, i: int) -> str:
        """The token string of id ``i``."""
        self._check_id(i)
        return self.itos[i]

    def _check_id(self, i) -> None:
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < len(self.itos):
            raise ValueError(f"token id {i!r} is out of range: ids run from 0 to {len(self.itos) - 1}")

    # -- encoding ---------------------------------------------------------------------------

    def _bpe(self, symbols: str) -> tuple[int, ...]:
        """Apply the merges to one chunk written in byte symbols, lowest rank first."""
        parts = list(symbols)
        while len(parts) > 1:
            ranked = [(self.ranks.get(p, len(self.ranks)), i) for i, p in enumerate(zip(parts, parts[1:]))]
            rank, _ = min(ranked)
            if rank == len(self.ranks):
                break  # no adjacent pair was ever merged
            a, b = self.merges[rank]
            out, i = [], 0
            while i < len(parts):  # merge every occurrence, left to right
                if i + 1 < len(parts) and parts[i] == a and parts[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(parts[i])
                    i += 1
            parts = out
        return tuple(self.stoi[p] for p in parts)

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (no special tokens added). Any valid Unicode string can be encoded
        (a lone surrogate code point raises a ``ValueError``)."""
        if not isinstance(text, str):
            raise TypeError(f"encode expects a str, got {type(text).__name__}")
        ids: list[int] = []
        for chunk in pretokenize(text):
            hit = self._cache.get(chunk)
            if hit is None:
                if len(self._cache) > 200_000:  # bound the memory of long runs
                    self._cache.clear()
                hit = self._cache[chunk] = self._bpe(_to_symbols(chunk))
            ids.extend(hit)
        return ids

    def tokenize(self, text: str) -> list[str]:
        """The token strings of ``text``, in the byte alphabet (``" the"`` is ``"Ġthe"``)."""
        return [self.itos[i] for i in self.encode(text)]

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = False) -> str:
        """The text of ``ids``: tokens' bytes joined and read as UTF-8 (invalid byte sequences,
        possible when decoding a slice, become U+FFFD). ``decode(encode(s)) == s`` for every valid str."""
        if torch.is_tensor(ids):
            ids = ids.tolist()
        out = bytearray()
        for i in ids:
            i = int(i) if not isinstance(i, bool) and hasattr(i, "__index__") else i
            self._check_id(i)
            if i in self._special_ids:
                if not skip_special_tokens:
                    out += self.itos[i].encode("utf-8")
            else:
                out += bytes(_CHAR_TO_BYTE[c] for c in self.itos[i])
        return out.decode("utf-8", errors="replace")

    def encode_batch(self, texts: Sequence[str], max_len: int | None = None, pad: bool = True,
                     truncate: bool = False, bos: bool = False, eos: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode several texts into a padded ``(B, T)`` long tensor of ids and its attention mask
        (1 = token, 0 = padding with ``pad_id``).

        ``bos`` / ``eos`` add those tokens at the ends (they count towards ``max_len``). A text
        longer than ``max_len`` raises a ``ValueError``, or is cut to its first ``max_len`` tokens
        with ``truncate=True`` (keeping the ``eos`` if asked for). With ``pad=True`` and a
        ``max_len``, every row has ``max_len`` positions; otherwise rows are padded to the longest.
        Defined in chapter 05.
        """
        if isinstance(texts, str):
            raise TypeError("encode_batch expects a list of texts, got one str: wrap it in a list")
        if len(texts) == 0:
            raise ValueError("encode_batch got no texts")
        least = 1 + int(bos) + int(eos)
        if max_len is not None and (isinstance(max_len, bool) or not isinstance(max_len, int) or max_len < least):
            raise ValueError(f"max_len must be an int >= {least} (room for bos/eos and a token), got {max_len!r}")
        for flag, wanted, tid in (("bos", bos, self.bos_id), ("eos", eos, self.eos_id)):
            if wanted and tid is None:
                raise ValueError(f"{flag}=True needs a '<{flag}>' special token; "
                                 f"this tokenizer has {self.special_tokens}")
        if self.pad_id is None:
            raise ValueError(f"padding needs a '<pad>' special token; this tokenizer has {self.special_tokens}")
        rows = []
        for n, t in enumerate(texts):
            ids = self.encode(t)
            extra = int(bos) + int(eos)
            if max_len is not None and len(ids) + extra > max_len:
                if not truncate:
                    raise ValueError(
                        f"text {n} has {len(ids) + extra} tokens, more than max_len={max_len}: pass truncate=True to "
                        f"keep its first {max_len} tokens, or raise max_len"
                    )
                ids = ids[: max_len - extra]
            rows.append(([self.bos_id] if bos else []) + ids + ([self.eos_id] if eos else []))
        T = max_len if (pad and max_len is not None) else max(map(len, rows))
        out = torch.full((len(rows), T), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), T), dtype=torch.long)
        for r, ids in enumerate(rows):
            out[r, : len(ids)] = torch.tensor(ids, dtype=torch.long)
            mask[r, : len(ids)] = 1
        return out, mask

    # -- saving and Hugging Face ------------------------------------------------------------

    def save(self, path) -> None:
        """Write the tokenizer as JSON: special tokens, merges, and the vocabulary (for reading)."""
        payload = {"type": "minilib.ByteBPE", "version": 1, "special_tokens": list(self.special_tokens),
                   "merges": [list(m) for m in self.merges], "vocab": self.itos}
        Path(path).write_text(json.dumps(payload, ensure_ascii=False, indent=0), encoding="utf-8")

    @classmethod
    def load(cls, path) -> "ByteBPE":
        """Read a tokenizer written by :meth:`save` (the vocabulary is rebuilt and checked)."""
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"{p} does not exist: save a tokenizer there first with ByteBPE.save")
        payload = json.loads(p.read_text(encoding="utf-8"))
        if payload.get("type") != "minilib.ByteBPE":
            raise ValueError(f"{p} is not a minilib ByteBPE file (type={payload.get('type')!r})")
        tok = cls([tuple(m) for m in payload["merges"]], payload["special_tokens"])
        if tok.itos != payload["vocab"]:
            raise ValueError(f"{p}: the stored vocabulary does not follow from its merges; the file is corrupt")
        return tok

    def to_hf(self):
        """The same tokenizer in Hugging Face ``tokenizers``: a BPE model with our vocabulary and
        merges, the ByteLevel pre-tokenizer (GPT-2 pattern, no added prefix space) and decoder.
        Special tokens are plain vocabulary entries there too, so both encode every text alike."""
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers

        hf = Tokenizer(models.BPE(vocab=dict(self.stoi), merges=list(self.merges)))
        hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        hf.decoder = decoders.ByteLevel()
        return hf


# --- WordPiece (BERT) ---------------------------------------------------------------------

BERT_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def _is_cjk(cp: int) -> bool:
    """CJK Unified Ideographs (and extensions, compatibility ideographs): BERT spaces them out.

    These are BERT's ranges, kept as they are for parity: they leave out U+2B820-U+2B91F."""
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF
            or 0x2A700 <= cp <= 0x2B73F or 0x2B740 <= cp <= 0x2B81F or 0x2B920 <= cp <= 0x2CEAF
            or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F)


def _is_whitespace(c: str) -> bool:
    return c in "\t\n\r " or unicodedata.category(c) == "Zs"


def _is_control(c: str) -> bool:
    # Control, format, private-use and surrogate characters; unassigned code points (Cn) are kept,
    # as Hugging Face's BertNormalizer does (they end up as [UNK]).
    return c not in "\t\n\r" and unicodedata.category(c) in ("Cc", "Cf", "Co", "Cs")


def _is_punctuation(c: str) -> bool:
    # ASCII symbols such as $ ^ ` are not Unicode punctuation, but BERT splits them too.
    cp = ord(c)
    ascii_symbol = 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126
    return ascii_symbol or unicodedata.category(c).startswith("P")


class WordPiece:
    """BERT's WordPiece tokenizer over a fixed vocabulary (``vocab.txt``: one token per line, id =
    line number). ``tokenize(text)`` gives pieces, ``encode(text)`` ids with ``[CLS] ... [SEP]``.

    The special tokens ``[PAD] [UNK] [CLS] [SEP] [MASK]`` written in the text are kept whole (so
    ``"Paris is the [MASK] of France"`` works for masked-LM demos). Defined in chapter 05.
    """

    def __init__(self, vocab: Sequence[str], lowercase: bool = True, unk_token: str = "[UNK]",
                 prefix: str = "##", max_chars: int = 100):
        self.itos = list(vocab)
        self.stoi = {t: i for i, t in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise ValueError("WordPiece vocabulary entries must be unique")
        if unk_token not in self.stoi:
            raise ValueError(f"the vocabulary has no unknown token {unk_token!r}: WordPiece needs one")
        self.lowercase, self.unk_token, self.prefix, self.max_chars = lowercase, unk_token, prefix, max_chars
        self.special_tokens = tuple(t for t in BERT_SPECIALS if t in self.stoi)
        self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id = (self.stoi.get(t) for t in BERT_SPECIALS)
        self.unk_id = self.stoi[unk_token]
        self._cache: dict[str, list[str]] = {}

    @classmethod
    def from_vocab(cls, path, lowercase: bool = True) -> "WordPiece":
        """Read a BERT ``vocab.txt`` (e.g. ``data.load("minilm") / "vocab.txt"``)."""
        p = Path(path)
        if p.is_dir():
            p = p / "vocab.txt"
        if not p.is_file():
            raise FileNotFoundError(f"{p} does not exist: pass a BERT vocab.txt or the model folder holding one")
        with open(p, encoding="utf-8") as f:
            vocab = [line.rstrip("\n").rstrip("\r") for line in f]
        while vocab and vocab[-1] == "":
            vocab.pop()
        if not vocab:
            raise ValueError(f"{p} is empty: a vocab.txt has one token per line")
        return cls(vocab, lowercase=lowercase)

    @property
    def vocab_size(self) -> int:
        """Number of pieces in the vocabulary (30,522 for BERT and MiniLM)."""
        return len(self.itos)

    def __len__(self) -> int:
        return len(self.itos)

    def __repr__(self) -> str:
        return f"WordPiece(vocab_size={self.vocab_size}, lowercase={self.lowercase})"

    def token_to_id(self, token: str) -> int:
        """The id of a piece (``"play"``, ``"##ing"``); ``KeyError`` if it is not in the vocabulary."""
        try:
            return self.stoi[token]
        except KeyError:
            raise KeyError(f"{token!r} is not in the WordPiece vocabulary ({self.vocab_size} pieces); "
                           f"continuation pieces start with {self.prefix!r}") from None

    def id_to_token(self, i: int) -> str:
        """The piece with id ``i``; ``ValueError`` if the id is out of range."""
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < len(self.itos):
            raise ValueError(f"token id {i!r} is out of range: ids run from 0 to {len(self.itos) - 1}")
        return self.itos[i]

    # -- the pipeline -----------------------------------------------------------------------

    def normalize(self, text: str) -> str:
        """BERT's normaliser: drop NUL, U+FFFD and control characters, turn whitespace into spaces,
        put spaces around CJK ideographs, then (``lowercase=True``) strip accents (NFD, drop
        combining marks) and lowercase."""
        out = []
        for c in text:
            cp = ord(c)
            if cp == 0 or cp == 0xFFFD or _is_control(c):
                continue
            if _is_whitespace(c):
                out.append(" ")
            elif _is_cjk(cp):
                out.append(f" {c} ")
            else:
                out.append(c)
        text = "".join(out)
        if self.lowercase:
            text = "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")
            text = "".join(c.lower() for c in text)  # per character, like tokenizers: no final-sigma rule
        return text

    @staticmethod
    def pre_tokenize(text: str) -> list[str]:
        """Split normalised text into words: on whitespace (dropped) and around every punctuation
        character (kept as its own word)."""
        words, cur = [], []
        for c in text:
            if c.isspace():
                if cur:
                    words.append("".join(cur))
                    cur = []
            elif _is_punctuation(c):
                if cur:
                    words.append("".join(cur))
                    cur = []
                words.append(c)
            else:
                cur.append(c)
        if cur:
            words.append("".join(cur))
        return words

    def _word_pieces(self, word: str) -> list[str]:
        """Greedy longest-match-first: the longest vocabulary prefix, then the longest ``##`` piece
        of the rest, and so on. A word that cannot be covered (or is too long) is ``[UNK]``."""
        if len(word) > self.max_chars:
            return [self.unk_token]
        pieces, start = [], 0
        while start < len(word):
            end, piece = len(word), None
            while start < end:
                sub = word[start:end] if start == 0 else self.prefix + word[start:end]
                if sub in self.stoi:
                    piece = sub
                    break
                end -= 1
            if piece is None:
                return [self.unk_token]
            pieces.append(piece)
            start = end
        return pieces

    def _split_specials(self, text: str) -> list[tuple[str, bool]]:
        """``text`` cut around literal special tokens: ``[(part, is_special), ...]``."""
        parts, i = [], 0
        while self.special_tokens:
            hits = [(text.find(s, i), s) for s in self.special_tokens]
            hits = [(j, s) for j, s in hits if j >= 0]
            if not hits:
                break
            j, s = min(hits, key=lambda h: (h[0], -len(h[1])))
            parts.append((text[i:j], False))
            parts.append((s, True))
            i = j + len(s)
        parts.append((text[i:], False))
        return [(p, sp) for p, sp in parts if p]

    def tokenize(self, text: str) -> list[str]:
        """The WordPiece tokens of ``text`` (no ``[CLS]`` / ``[SEP]``)."""
        if not isinstance(text, str):
            raise TypeError(f"tokenize expects a str, got {type(text).__name__}")
        out = []
        for part, special in self._split_specials(text):
            if special:
                out.append(part)
                continue
            for word in self.pre_tokenize(self.normalize(part)):
                hit = self._cache.get(word)
                if hit is None:
                    if len(self._cache) > 200_000:
                        self._cache.clear()
                    hit = self._cache[word] = self._word_pieces(word)
                out.extend(hit)
        return out

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """Ids of ``text``; with ``add_special_tokens`` wrapped as ``[CLS] ... [SEP]``."""
        ids = [self.stoi[t] for t in self.tokenize(text)]
        if add_special_tokens:
            if self.cls_id is None or self.sep_id is None:
                raise ValueError("this vocabulary has no [CLS]/[SEP]: call encode(text, add_special_tokens=False)")
            ids = [self.cls_id, *ids, self.sep_id]
        return ids

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = True) -> str:
        """Readable text from ids: pieces joined, ``##`` pieces glued to the previous one. (Lossy:
        case, accents and spacing around punctuation are gone.)"""
        if torch.is_tensor(ids):
            ids = ids.tolist()
        words: list[str] = []
        for i in ids:
            tok = self.id_to_token(int(i))
            if skip_special_tokens and tok in self.special_tokens and tok != self.unk_token:
                continue
            if tok.startswith(self.prefix) and words:
                words[-1] += tok[len(self.prefix):]
            else:
                words.append(tok)
        return " ".join(words)

    def encode_batch(self, texts: Sequence[str], max_len: int = 512,
                     truncate: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """``[CLS] text [SEP]`` for each text, padded with ``[PAD]`` to the longest: ``(ids, attention_mask)``,
        both ``(B, T)`` long. A text longer than ``max_len`` (counting ``[CLS]``/``[SEP]``) keeps its
        first ``max_len - 2`` pieces with ``truncate=True``, else raises a ``ValueError``."""
        if isinstance(texts, str):
            raise TypeError("encode_batch expects a list of texts, got one str: wrap it in a list")
        if len(texts) == 0:
            raise ValueError("encode_batch got no texts")
        if isinstance(max_len, bool) or not isinstance(max_len, int) or max_len < 2:
            raise ValueError(f"max_len must be an int >= 2 (room for [CLS] and [SEP]), got {max_len!r}")
        if self.pad_id is None:
            raise ValueError("this vocabulary has no [PAD] token to pad with")
        rows = []
        for n, t in enumerate(texts):
            ids = self.encode(t)
            if len(ids) > max_len:
                if not truncate:
                    raise ValueError(f"text {n} has {len(ids)} tokens with [CLS]/[SEP], more than max_len={max_len}: "
                                     "pass truncate=True to cut it, or raise max_len")
                ids = ids[: max_len - 1] + [self.sep_id]
            rows.append(ids)
        T = max(map(len, rows))
        out = torch.full((len(rows), T), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), T), dtype=torch.long)
        for r, ids in enumerate(rows):
            out[r, : len(ids)] = torch.tensor(ids, dtype=torch.long)
            mask[r, : len(ids)] = 1
        return out, mask
