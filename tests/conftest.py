"""Shared set-up of the unit tests: offline Hugging Face libraries and one torch thread."""
import os

# Everything the tests load comes from pip packages (minilib.data): never reach for the model hub.
for key, value in {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
                   "TRANSFORMERS_VERBOSITY": "error"}.items():
    os.environ.setdefault(key, value)

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # The tests' tensors are small: one thread is as fast, and it keeps the suite fast when other jobs
    # (or the other pytest-xdist worker) share the CPU; two threads on a busy machine mostly wait.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


class WordTokenizer:
    """A toy tokenizer for the tests: one id per word (1 + a hash of the word, mod 30), right padding,
    no special tokens; ``encode_batch(texts, max_len) -> (ids, mask)`` like the book's tokenizers."""

    def encode_batch(self, texts, max_len, truncate=True):
        rows = [[1 + (sum(map(ord, w)) % 30) for w in t.split()][:max_len] for t in texts]
        T = max(1, max(len(r) for r in rows))
        ids, mask = torch.zeros(len(rows), T, dtype=torch.long), torch.zeros(len(rows), T, dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, :len(r)], mask[i, :len(r)] = torch.tensor(r, dtype=torch.long), 1
        return ids, mask


@pytest.fixture
def word_tokenizer():
    return WordTokenizer()


class BrokenTokenizer:
    """A tokenizer whose ``encode_batch`` always fails: for checking that an encoder cleans up after an error."""

    def encode_batch(self, texts, max_len=16, truncate=True):
        raise RuntimeError("tokenizer broke")


@pytest.fixture
def broken_tokenizer():
    return BrokenTokenizer()


class TableModule(torch.nn.Module):
    """A sentence-transformers module whose sentence embedding of input ``idx`` is row ``idx`` of a fixed
    table; with ``texts``, ``tokenize`` maps text ``i`` to row ``i``, so the model also encodes strings."""

    def __init__(self, emb, texts=()):
        super().__init__()
        self.emb = torch.nn.Parameter(emb)
        self.row = {t: i for i, t in enumerate(texts)}

    def tokenize(self, texts, **kw):
        return {"idx": torch.tensor([self.row[t] for t in texts])}

    def forward(self, features):
        return {**features, "sentence_embedding": self.emb[features["idx"]]}


@pytest.fixture
def table_model():
    """``table_model(emb, texts=())``: a SentenceTransformer made of one :class:`TableModule`."""
    from sentence_transformers import SentenceTransformer

    return lambda emb, texts=(): SentenceTransformer(modules=[TableModule(emb, texts)], device="cpu")
