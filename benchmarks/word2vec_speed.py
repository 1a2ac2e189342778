"""Words per second: minilib's word2vec / fastText against gensim, same corpus, same machine.

    .venv/bin/python benchmarks/word2vec_speed.py                         # CPU, quick corpus, skip-gram
    .venv/bin/python benchmarks/word2vec_speed.py --corpus full --device cuda --batch-size 16384
    .venv/bin/python benchmarks/word2vec_speed.py --model fasttext --repeat 2

gensim always runs on the CPU with ``--workers`` threads (default: every core); ours runs on
``--device``. Both train the same model (same vocabulary, hyper-parameters and epochs) on the book
corpus; speed is corpus words x epochs / wall-clock seconds of training (vocabulary building
excluded for both), the unit gensim reports. Accuracy is printed next to speed, because speed at
lower accuracy proves nothing: Google-analogy accuracy (3CosAdd, 30,000 words) and WordSim353 rho.
The last line is a Markdown table row for the chapter (chapter 03, "Speed").
"""
from __future__ import annotations

import argparse
import os
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", choices=["quick", "full"], default="quick", help="which book corpus")
    ap.add_argument("--model", choices=["sg", "cbow", "fasttext"], default="sg")
    ap.add_argument("--device", default="cpu", help="device for ours: cpu, cuda, mps")
    ap.add_argument("--dim", type=int, default=100)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=None, help="ours: pairs per step (default 2048 on CPU, 16384 on GPU)")
    ap.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)), help="gensim threads (default: all cores)")
    ap.add_argument("--cpu-threads", type=int, default=1, help="torch threads for ours on the CPU")
    ap.add_argument("--bucket", type=int, default=2_000_000, help="fastText n-gram buckets")
    ap.add_argument("--repeat", type=int, default=1, help="time each side this many times")
    args = ap.parse_args()

    from gensim.models import FastText as GFastText
    from gensim.models import Word2Vec as GWord2Vec

    from minilib import data, evaluate, profile
    from minilib.fasttext import FastText
    from minilib.text import Vocab
    from minilib.word2vec import Word2Vec, split_long

    device = profile.pick_device(args.device)
    batch = args.batch_size or (16_384 if device.type == "cuda" else 2048)
    docs = split_long(data.load("book_corpus", profile=args.corpus))
    n_words = sum(map(len, docs))
    vocab = Vocab.build(docs, min_count=5)
    analogies, ws353 = data.load("google_analogies"), data.load("wordsim353")
    hp = dict(window=5, negative=5, sample=1e-3, alpha=0.025, min_alpha=1e-4, epochs=args.epochs)
    sg = args.model != "cbow"

    def score(X, words):
        return (evaluate.analogy(X, words, analogies)["accuracy"], evaluate.similarity(X, words, ws353)["rho"])

    print(f"corpus {args.corpus}: {n_words:,} words, vocabulary {len(vocab):,}; model {args.model}, dim {args.dim}, "
          f"{args.epochs} epochs; ours on {profile.describe_device(device)} (batch {batch}), "
          f"gensim on {args.workers} CPU threads")
    rows = []
    for r in range(args.repeat):
        t0 = time.perf_counter()
        cls, extra = (GFastText, dict(bucket=args.bucket)) if args.model == "fasttext" else (GWord2Vec, {})
        g = cls(vector_size=args.dim, sg=int(sg), min_count=5, workers=args.workers, seed=r, **hp, **extra)
        g.build_vocab(docs)
        t0 = time.perf_counter()
        g.train(docs, total_examples=len(docs), epochs=args.epochs)
        g_s = time.perf_counter() - t0
        G = g.wv.vectors[[g.wv.key_to_index[w] for w in vocab.itos]]

        ocls, oextra = (FastText, dict(bucket=args.bucket)) if args.model == "fasttext" else (Word2Vec, dict(sg=sg))
        ours = ocls(vocab, args.dim, batch_size=batch, seed=r, device=device, **hp, **oextra)
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        ours.fit(docs, progress=False, cpu_threads=args.cpu_threads)
        if device.type == "cuda":
            torch.cuda.synchronize()
        o_s = time.perf_counter() - t0
        (ga, gw), (oa, ow) = score(G, vocab.itos), score(ours.vectors(), vocab.itos)
        g_wps, o_wps = args.epochs * n_words / g_s, args.epochs * n_words / o_s
        print(f"run {r + 1}: gensim {g_wps:,.0f} words/s ({g_s:.1f} s, analogy {ga:.3f}, ws353 {gw:.3f}) | "
              f"ours {o_wps:,.0f} words/s ({o_s:.1f} s, analogy {oa:.3f}, ws353 {ow:.3f}) | ours/gensim {o_wps / g_wps:.2f}")
        rows.append((g_wps, o_wps, ga, oa, gw, ow))
    print("\n| model | corpus | ours on | gensim threads | gensim words/s | ours words/s | ours / gensim | analogy gensim / ours | WS353 gensim / ours |")
    print("|---|---|---|---|---|---|---|---|---|")
    for g_wps, o_wps, ga, oa, gw, ow in rows:
        print(f"| {args.model} {args.dim}d | {args.corpus} | {profile.describe_device(device)} | {args.workers} | {g_wps:,.0f} | "
              f"{o_wps:,.0f} | {o_wps / g_wps:.2f} | {ga:.3f} / {oa:.3f} | {gw:.3f} / {ow:.3f} |")


if __name__ == "__main__":
    main()
