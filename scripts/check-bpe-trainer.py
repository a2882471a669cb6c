#!/usr/bin/env python3
"""Cross-checks our byte-level BPE trainer (core/src/tokenizer/bpe_trainer.cpp, `esft-host tokenizer train`)
against the Hugging Face `tokenizers` library's BpeTrainer.

fixture: writes tests/data/tok/bpe_trainer/ (the C++ test's reference): a ~200 KB slice of TinyStories
    (tinystories.txt.gz), the tokenizer.json that `tokenizers` trains on it (vocabulary 512, min_frequency 2,
    special token <|endoftext|>, all 256 bytes as the initial alphabet) and the ids that tokenizer gives a few
    held-out strings (encodings.jsonl). tests/test_bpe_trainer.cpp checks that our trainer learns the same vocabulary
    and merges and that our Tokenizer encodes the strings to the same ids.

compare DIR --input FILE[,FILE...] [--min-frequency N]: trains `tokenizers` on the input as `esft-host tokenizer
    train` reads it (plain text, or JSON lines with a "text" field; gzipped or not), with DIR's special tokens and
    vocabulary size, and checks that DIR/tokenizer.json holds the same vocabulary and merges; then loads DIR with
    `tokenizers` and with transformers' AutoTokenizer and checks that both give the ids of the reference tokenizer.
    Exits non-zero on any difference.

Both feed `tokenizers` the text cut at the special tokens (our trainer never lets a word span one; the Rust
trainer would split "<|endoftext|>" into ordinary words).

Usage (the project's venv; nothing is downloaded):
    .venv/bin/python scripts/check-bpe-trainer.py fixture
    .venv/bin/python scripts/check-bpe-trainer.py compare OUT_DIR --input /work/shared/data/tinystories/train.txt.gz
"""

import argparse
import gzip
import json
import re
import sys
import time
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "data" / "tok" / "bpe_trainer"
TINYSTORIES = Path("/work/shared/data/tinystories")
SPECIAL = "<|endoftext|>"
FIXTURE_BYTES = 200_000
FIXTURE_VOCAB = 512

# Held-out strings beyond the validation stories: what byte-level BPE must get right everywhere.
EXTRA_STRINGS = [
    "Hello, world! It's a test: don't panic, we'll see; they've gone, I'm here, you'd know.",
    "Multiple   spaces,\ttabs\t\tand\n\nnewlines\r\nwith CRLF  \n  and trailing spaces   ",
    "Unicode: café, naïve, Straße, Ελληνικά, русский, 日本語のテキスト, 한국어, עברית, العربية",
    "Emoji: 🙂👍🏽 👨‍👩‍👧‍👦 🇫🇷 ❤️ and combining e\u0301 marks",
    "Numbers 1234567890, 3.14159 and 1,000,000 items; dates like 2024-01-31.",
    "Two stories<|endoftext|>Once upon a time<|endoftext|><|endoftext|>the end",
    "   leading spaces and punctuation!!! ??? ... --- ''' \"quotes\" (parens) [brackets] {braces}",
    "\n",
    " ",
    "",
]


def read_texts(path):
    """The texts of one input file, as `esft-host tokenizer train` reads it."""
    raw = Path(path).read_bytes()
    content = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    content = content.decode("utf-8")
    lines = content.split("\n")
    first = next((line for line in lines if line.strip(" \t\r")), None)
    try:
        record = json.loads(first) if first is not None else None
    except json.JSONDecodeError:
        record = None
    if isinstance(record, dict) and isinstance(record.get("text"), str):
        return [json.loads(line)["text"] for line in lines if line.strip(" \t\r")]
    return [content]


def pieces(texts, specials):
    """The texts cut at special tokens (leftmost, then longest, as Tokenizer::encode matches them)."""
    pattern = re.compile("|".join(re.escape(s) for s in sorted(specials, key=len, reverse=True)))
    for text in texts:
        yield from (pattern.split(text) if specials else [text])


def train_reference(texts, vocab_size, min_frequency, specials):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(pieces(texts, specials), trainer)
    return tok


def whole_stories(text, limit):
    """The stories of `text` that end within its first `limit` characters (each story ends with its
    <|endoftext|> line)."""
    end = text.rfind(SPECIAL + "\n", 0, limit)
    if end < 0:
        sys.exit("no complete story in the first %d characters" % limit)
    return text[: end + len(SPECIAL) + 1]


def make_fixture():
    train = gzip.decompress((TINYSTORIES / "train.txt.gz").read_bytes()).decode("utf-8")
    valid = gzip.decompress((TINYSTORIES / "valid.txt.gz").read_bytes()).decode("utf-8")
    sample = whole_stories(train, FIXTURE_BYTES)
    held_out = [s.strip("\n") for s in valid.split(SPECIAL)[:3]]

    tok = train_reference([sample], FIXTURE_VOCAB, 2, [SPECIAL])
    FIXTURE.mkdir(parents=True, exist_ok=True)
    # mtime=0: the same input gives the same bytes.
    (FIXTURE / "tinystories.txt.gz").write_bytes(gzip.compress(sample.encode("utf-8"), mtime=0))
    (FIXTURE / "tokenizer.json").write_text(tok.to_str(pretty=True) + "\n", encoding="utf-8")
    with open(FIXTURE / "encodings.jsonl", "w", encoding="utf-8") as out:
        for text in held_out + EXTRA_STRINGS:
            out.write(json.dumps({"text": text, "ids": tok.encode(text).ids}, ensure_ascii=False) + "\n")
    for f in sorted(FIXTURE.iterdir()):
        print("%8d  %s" % (f.stat().st_size, f.relative_to(ROOT)))


def compare(directory, inputs, min_frequency):
    ours_path = Path(directory) / "tokenizer.json"
    ours = json.loads(ours_path.read_text(encoding="utf-8"))
    specials = [t["content"] for t in sorted(ours["added_tokens"], key=lambda t: t["id"])]
    vocab_size = len(ours["model"]["vocab"])
    texts = [t for path in inputs for t in read_texts(path)]
    start = time.time()
    reference = train_reference(texts, vocab_size, min_frequency, specials)
    print("tokenizers trained a vocabulary of %d in %.2f s" % (reference.get_vocab_size(), time.time() - start))
    expected = json.loads(reference.to_str())
    failures = []
    if ours["model"]["vocab"] != expected["model"]["vocab"]:
        failures.append("the vocabularies differ")
    merges, expected_merges = ours["model"]["merges"], expected["model"]["merges"]
    if merges != expected_merges:
        first = next((i for i, (a, b) in enumerate(zip(merges, expected_merges)) if a != b),
                     min(len(merges), len(expected_merges)))
        failures.append("merges differ from #%d (ours %d, tokenizers %d): %s vs %s" % (
            first, len(merges), len(expected_merges), merges[first:first + 1], expected_merges[first:first + 1]))

    # Both libraries load our file and encode as the reference does (held-out text: the inputs' last texts).
    loaded = Tokenizer.from_file(str(ours_path))
    from transformers import AutoTokenizer
    auto = AutoTokenizer.from_pretrained(str(directory))
    samples = EXTRA_STRINGS + [t[:4000] for t in texts[-3:]]
    for text in samples:
        want = reference.encode(text).ids
        if loaded.encode(text).ids != want:
            failures.append("tokenizers encodes %r differently with our file" % text[:40])
        if auto(text, add_special_tokens=False)["input_ids"] != want:
            failures.append("AutoTokenizer encodes %r differently" % text[:40])
        if loaded.decode(want, skip_special_tokens=False) != text:
            failures.append("%r does not decode back" % text[:40])
    if auto.eos_token != specials[0] or auto.eos_token_id != 0 or auto.pad_token_id != 0:
        failures.append("AutoTokenizer's eos/pad: %r %r %r" % (auto.eos_token, auto.eos_token_id, auto.pad_token_id))

    print("%d merges, %d tokens compared; %d strings encoded" % (len(merges), vocab_size, len(samples)))
    for f in failures:
        print("FAIL:", f)
    print("OK" if not failures else "%d failure(s)" % len(failures))
    return 1 if failures else 0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode", required=True)
    sub.add_parser("fixture", help="rewrite tests/data/tok/bpe_trainer/")
    c = sub.add_parser("compare", help="check a trained tokenizer directory against tokenizers' trainer")
    c.add_argument("dir")
    c.add_argument("--input", required=True, help="comma-separated files, as given to esft-host tokenizer train")
    c.add_argument("--min-frequency", type=int, default=2)
    args = parser.parse_args()
    if args.mode == "fixture":
        make_fixture()
        return 0
    return compare(args.dir, [p for p in args.input.split(",") if p], args.min_frequency)


if __name__ == "__main__":
    sys.exit(main())
