#!/usr/bin/env python3
"""Writes examples/select-moe/mix.jsonl.gz: Select-MoE's bundled data-selection example.

Half of the records are real TinyStories stories from the bundled held-out split (data/tinystories/valid.jsonl.gz;
the pre-training of the demo's model uses the train split), half are deliberately corrupted copies of other stories from it: a quarter with their words shuffled, a quarter
truncated to their first 30% of words. Each record is {"id", "text"}; the id says which kind it is
("good-N", "shuffled-N", "truncated-N"), so that the selection's precision can be counted from selected_data.jsonl.
Deterministic (seed 0).

  python3 scripts/make-select-moe-mix.py
"""
import gzip
import json
import os
import random

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    with gzip.open(os.path.join(ROOT, "data", "tinystories", "valid.jsonl.gz"), "rt") as f:
        stories = [json.loads(line)["text"] for line in f if line.strip()]
    rng = random.Random(0)
    rng.shuffle(stories)
    n = len(stories) // 4
    good, shuffled, truncated = stories[:2 * n], stories[2 * n:3 * n], stories[3 * n:4 * n]
    records = [{"id": f"good-{i}", "text": s} for i, s in enumerate(good)]
    for i, s in enumerate(shuffled):
        words = s.split()
        rng.shuffle(words)
        records.append({"id": f"shuffled-{i}", "text": " ".join(words)})
    for i, s in enumerate(truncated):
        words = s.split()
        records.append({"id": f"truncated-{i}", "text": " ".join(words[: max(1, int(len(words) * 0.3))])})
    rng.shuffle(records)
    out = os.path.join(ROOT, "examples", "select-moe", "mix.jsonl.gz")
    with gzip.GzipFile(out, "wb", mtime=0) as f:
        for r in records:
            f.write((json.dumps(r, ensure_ascii=False) + "\n").encode())
    print(f"wrote {out}: {len(records)} records ({len(good)} good, {len(shuffled)} shuffled, {len(truncated)} truncated)")


if __name__ == "__main__":
    main()
