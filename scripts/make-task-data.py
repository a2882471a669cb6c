#!/usr/bin/env python3
"""Converts the bundled public datasets in ../shared/data into the files under data/ that esft reads.

TinyStories: plain text with `<|endoftext|>` lines between stories -> JSON lines {"text": story}.
The tasks (Plan-B's; shared/spec/VARIANTS.md §3), each as three files:
  train.jsonl.gz  {"prompt", "completion"}  training records (labels on the completion)
  valid.jsonl.gz  {"prompt", "completion"}  held-out records of the same form, for the validation loss
  eval.jsonl.gz   {"prompt", "answers"}     the same held-out records for `esft-host eval` (generation metrics)
  SST-2 (classification, accuracy by exact match of "positive"/"negative"): 8000 train sentences, the 872 dev ones.
  SQuAD (extractive QA, f1 and exact): the dev set's questions, by context: the first 90% train, the rest held out
    (eval only where the prompt is at most 700 characters, so that small models can read it).
  CNN/DailyMail (summarisation as language modelling, rouge-l): 12 train articles, 3 held out; articles cut to
    their first 800 characters so the prompt fits a small model.
All files are gzip-compressed with mtime 0 (the same input gives the same bytes).
Run from the repository root: `python3 scripts/make-task-data.py [--shared ../shared/data]`. Standard library only.
"""
import argparse
import gzip
import json
import pathlib


def write_jsonl_gz(path, records):
    path.parent.mkdir(parents=True, exist_ok=True)
    # mtime=0: the same input gives the same bytes.
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as f:
        for r in records:
            f.write((json.dumps(r, ensure_ascii=False) + "\n").encode("utf-8"))
    print(f"{path}: {len(records)} records")


def stories(path):
    text = gzip.open(path, "rt", encoding="utf-8").read()
    out = []
    for story in text.split("<|endoftext|>"):
        story = story.strip()
        if story:
            out.append({"text": story})
    return out


def read_jsonl_gz(path):
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def write_task(out, name, train, held_out):
    """train / held_out: lists of (prompt, completion, answers)."""
    write_jsonl_gz(out / name / "train.jsonl.gz", [{"prompt": p, "completion": c} for p, c, _ in train])
    write_jsonl_gz(out / name / "valid.jsonl.gz", [{"prompt": p, "completion": c} for p, c, _ in held_out])
    write_jsonl_gz(out / name / "eval.jsonl.gz", [{"prompt": p, "answers": a} for p, _, a in held_out])


def sst2(shared):
    def record(r):
        label = "positive" if r["label"] == 1 else "negative"
        return (f"Review: {r['text']}\nSentiment:", " " + label, [label])
    train = [record(r) for r in read_jsonl_gz(shared / "sst2" / "train.jsonl.gz")[:8000]]
    dev = [record(r) for r in read_jsonl_gz(shared / "sst2" / "dev.jsonl.gz")]
    return train, dev


def squad(shared):
    rows = read_jsonl_gz(shared / "squad" / "dev.jsonl.gz")
    contexts = []
    for r in rows:
        if not contexts or contexts[-1] != r["context"]:
            contexts.append(r["context"])
    cut = contexts[int(len(contexts) * 0.9)]
    split = next(i for i, r in enumerate(rows) if r["context"] == cut)

    def record(r):
        prompt = f"Context: {r['context']}\nQuestion: {r['question']}\nAnswer:"
        return (prompt, " " + r["answers"][0], r["answers"])
    train = [record(r) for r in rows[:split]]
    held = [record(r) for r in rows[split:] if len(record(r)[0]) <= 700]
    return train, held


def cnndm(shared):
    rows = read_jsonl_gz(shared / "cnndm" / "validation.jsonl.gz")

    def record(r):
        article = r["article"][:800].rsplit(" ", 1)[0]
        highlights = " ".join(r["highlights"].split())
        return (f"Article: {article}\nSummary:", " " + highlights, [highlights])
    return [record(r) for r in rows[:12]], [record(r) for r in rows[12:]]


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--shared", default="../shared/data")
    ap.add_argument("--out", default="data")
    a = ap.parse_args()
    shared, out = pathlib.Path(a.shared), pathlib.Path(a.out)
    for split in ("train", "valid"):
        write_jsonl_gz(out / "tinystories" / f"{split}.jsonl.gz", stories(shared / "tinystories" / f"{split}.txt.gz"))
    write_task(out, "sst2", *sst2(shared))
    write_task(out, "squad", *squad(shared))
    write_task(out, "cnndm", *cnndm(shared))


if __name__ == "__main__":
    main()
