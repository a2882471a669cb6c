#!/usr/bin/env python3
"""Builds examples/tiny-tokenizer/tokenizer.json: a byte-level BPE tokenizer small enough for the bundled tiny
models (vocabulary 384), with Qwen's pre-tokenizer regex and ChatML special tokens, so the tiny models can run
the text side of the pipeline. Merges are learned from examples/*.jsonl and examples/chat.json. Deterministic.

Usage: python3 scripts/make-tiny-tokenizer.py  (rewrites the file; the result is committed)
"""
import collections
import json
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent
VOCAB = 384
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]
SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
         r"\s*[\r\n]+|\s+(?!\S)|\s+")


def byte_alphabet():
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    table, extra = {}, 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def words(texts):
    # A rough stand-in for the regex (Python's re lacks \p{L}): letters, digits and the rest, with a leading space.
    for text in texts:
        for w in re.findall(r" ?[A-Za-z]+| ?[0-9]| ?[^\sA-Za-z0-9]+|\s+", text):
            yield w


def main():
    texts = []
    for path in sorted((ROOT / "examples").glob("*.jsonl")) + [ROOT / "examples" / "chat.json"]:
        texts.append(path.read_text(encoding="utf-8"))
    alphabet = byte_alphabet()
    vocab = {alphabet[b]: b for b in range(256)}
    corpus = collections.Counter("".join(alphabet[b] for b in w.encode("utf-8")) for w in words(texts))
    seqs = {w: list(w) for w in corpus}
    merges = []
    while len(vocab) < VOCAB - len(SPECIAL):
        pairs = collections.Counter()
        for w, n in corpus.items():
            s = seqs[w]
            for a, b in zip(s, s[1:]):
                pairs[(a, b)] += n
        if not pairs:
            break
        (a, b), _ = min(pairs.items(), key=lambda kv: (-kv[1], kv[0]))
        merges.append([a, b])
        vocab[a + b] = len(vocab)
        for w in seqs:
            s, out, i = seqs[w], [], 0
            while i < len(s):
                if i + 1 < len(s) and s[i] == a and s[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(s[i])
                    i += 1
            seqs[w] = out
    added = []
    for token in SPECIAL:
        added.append({"id": len(vocab) + len(added), "content": token, "single_word": False, "lstrip": False,
                      "rstrip": False, "normalized": False, "special": token.startswith("<|")})
    tokenizer = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": SPLIT}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}]},
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                  "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": merges},
    }
    out = ROOT / "examples" / "tiny-tokenizer"
    out.mkdir(parents=True, exist_ok=True)
    (out / "tokenizer.json").write_text(json.dumps(tokenizer, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    config = {"bos_token": None, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "add_bos_token": False}
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    print(f"{len(vocab) + len(added)} tokens, {len(merges)} merges -> {out}")


if __name__ == "__main__":
    main()
