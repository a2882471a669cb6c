#!/usr/bin/env python3
"""Writes the bundled tiny task in the ESFT reference's own file formats, for the tiny deepseek_v2 example.

What: examples/tiny-deepseek-v2/task/train.jsonl ({"id", "dataset", "messages"}, as the reference's
datasets/train/*.jsonl) and eval.jsonl ({"idx", "prompt", "raw_answers", "answers"}, as its datasets/eval/*.jsonl:
the prompt already rendered as "User: ...\\n\\nAssistant:", and `answers` as the string of a Python list, as some
exports hold it), from examples/tiny-task; and corpus.txt, the rendered conversations the example's tokenizer is
learned from (see examples/tiny-deepseek-v2/README.md).

Why: the example runs esft on the reference's formats as they are, on the same smart-home requests as the main
demo. Deterministic; the results are committed.

Usage: python3 scripts/make-tiny-deepseek-task.py
"""
import json
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
SOURCE = ROOT / "examples" / "tiny-task"
OUT = ROOT / "examples" / "tiny-deepseek-v2" / "task"


def read(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    train = read(SOURCE / "train.jsonl")
    with open(OUT / "train.jsonl", "w") as f:
        for i, record in enumerate(train):
            f.write(json.dumps({"id": f"TINY{i:05d}", "dataset": "tiny_intent", "messages": record["messages"]},
                               ensure_ascii=False) + "\n")
    with open(OUT / "eval.jsonl", "w") as f:
        for i, record in enumerate(read(SOURCE / "eval.jsonl")):
            question = record["messages"][0]["content"].strip()
            f.write(json.dumps({"idx": i, "prompt": f"User: {question}\n\nAssistant:",
                                "raw_answers": record["answers"], "answers": repr(record["answers"])},
                               ensure_ascii=False) + "\n")
    with open(OUT / "corpus.txt", "w") as f:
        for record in train:
            user, assistant = (m["content"] for m in record["messages"])
            f.write(f"User: {user}\n\nAssistant: {assistant}\n")
    print(f"wrote {OUT}/train.jsonl, eval.jsonl and corpus.txt")


if __name__ == "__main__":
    main()
