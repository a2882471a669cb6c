#!/usr/bin/env python3
"""Converts the bundled public datasets in ../shared/data into the files under data/ that esft reads.

TinyStories: plain text with `<|endoftext|>` lines between stories -> JSON lines {"text": story}, gzip-compressed.
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


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--shared", default="../shared/data")
    ap.add_argument("--out", default="data")
    a = ap.parse_args()
    shared, out = pathlib.Path(a.shared), pathlib.Path(a.out)
    for split in ("train", "valid"):
        write_jsonl_gz(out / "tinystories" / f"{split}.jsonl.gz", stories(shared / "tinystories" / f"{split}.txt.gz"))


if __name__ == "__main__":
    main()
