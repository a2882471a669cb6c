#!/usr/bin/env python3
"""Render conversations with the DeepSeek-V2 chat template through transformers, for the chat-format test.

What: writes tests/data/tok/deepseek_v2.chat.jsonl, one {"messages", "add_generation_prompt", "rendered", "ids"}
record per line, rendered and tokenized by transformers' own apply_chat_template with the template string of
DeepSeek-V2-Chat and DeepSeek-V2-Lite-Chat (their tokenizer_config.json) and their BOS/EOS strings.

Why: the deepseek_v2 plugin's chat format must give exactly what transformers renders, to the token. The fixtures
hold no DeepSeek tokenizer; the tiny deepseek_v2 example's (examples/tiny-deepseek-v2/model, byte-level BPE with
DeepSeek's BOS and EOS as special tokens) tokenizes here.

Usage (the project's venv; nothing is downloaded):
    .venv/bin/python scripts/make-deepseek-chat-fixture.py [--out tests/data/tok/deepseek_v2.chat.jsonl]
"""

import argparse
import json
import sys
from pathlib import Path

# DeepSeek-V2(-Lite)-Chat's chat_template, as in its tokenizer_config.json.
TEMPLATE = (
    "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}{{ bos_token }}"
    "{% for message in messages %}{% if message['role'] == 'user' %}{{ 'User: ' + message['content'] + '\\n\\n' }}"
    "{% elif message['role'] == 'assistant' %}{{ 'Assistant: ' + message['content'] + eos_token }}"
    "{% elif message['role'] == 'system' %}{{ message['content'] + '\\n\\n' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}")
BOS = "<\uff5cbegin\u2581of\u2581sentence\uff5c>"
EOS = "<\uff5cend\u2581of\u2581sentence\uff5c>"

CONVERSATIONS = [
    [{"role": "user", "content": "Hi"}],
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "2+2?"}],
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}],
    [{"role": "system", "content": "S"}, {"role": "user", "content": "U1"}, {"role": "assistant", "content": "A1"},
     {"role": "user", "content": "U2"}],
    [{"role": "user", "content": "multi\nline\n\ninput "}, {"role": "assistant", "content": " spaced  answer\n"}],
    [{"role": "user", "content": "日本語とemoji 🙂"}, {"role": "assistant", "content": "{\"intent\": \"x\"}"},
     {"role": "user", "content": ""}],
]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("tests/data/tok/deepseek_v2.chat.jsonl"))
    parser.add_argument("--tokenizer", type=Path, default=Path("examples/tiny-deepseek-v2/model/tokenizer.json"))
    args = parser.parse_args()
    from transformers import PreTrainedTokenizerFast
    tok = PreTrainedTokenizerFast(tokenizer_file=str(args.tokenizer), bos_token=BOS, eos_token=EOS,
                                  chat_template=TEMPLATE)
    lines = []
    for messages in CONVERSATIONS:
        for prompt in (False, True):
            rendered = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=prompt)
            ids = tok.apply_chat_template(messages, tokenize=True, add_generation_prompt=prompt, return_dict=False)
            if isinstance(ids, dict) or hasattr(ids, "keys"):
                ids = ids["input_ids"]
            lines.append(json.dumps({"messages": messages, "add_generation_prompt": prompt, "rendered": rendered,
                                     "ids": list(ids)}, ensure_ascii=False))
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {len(lines)} renderings to {args.out}")


if __name__ == "__main__":
    sys.exit(main())
