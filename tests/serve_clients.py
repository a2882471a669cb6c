"""`esft-host serve` as the tools around it meet it: the OpenAI Python client (models, chat and text completions,
whole and streamed, its error classes) and curl, against `esft-host generate` at temperature 0.

usage: serve_clients.py ESFT_HOST MODEL_DIR   (run by tests/check_serve_clients.sh)
"""
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

import openai

host, model = sys.argv[1], sys.argv[2]
KEY = "local-test-key"
failures = []


def check(condition, what):
    print(("ok    " if condition else "FAIL  ") + what)
    if not condition:
        failures.append(what)


def generate(args):
    out = subprocess.run([host, "generate", "--model", model, *args], check=True, capture_output=True, text=True).stdout
    return out[:-1]  # its line, without the newline


def start_server():
    log = tempfile.NamedTemporaryFile(prefix="esft-serve-", suffix=".log", delete=False)
    process = subprocess.Popen([host, "serve", "--model", model, "--port", "0", "--api-key-env", "ESFT_SERVE_KEY"],
                               stdout=subprocess.DEVNULL, stderr=log, env={**os.environ, "ESFT_SERVE_KEY": KEY})
    deadline = time.time() + 120
    while time.time() < deadline:
        found = re.search(r"at http://127\.0\.0\.1:(\d+)/", open(log.name).read())
        if found:
            return process, int(found.group(1)), log.name
        if process.poll() is not None:
            sys.exit("esft-host serve ended: " + open(log.name).read())
        time.sleep(0.05)
    process.kill()
    sys.exit("esft-host serve did not start")


messages = [{"role": "user", "content": "switch off the bedroom fan"}]
with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
    json.dump(messages, f)
expected_chat = generate(["--messages", f.name, "--max-new-tokens", "16"])
expected_text = generate(["--prompt", "Intent of: open the blinds", "--max-new-tokens", "10"])

process, port, log_path = start_server()
base = f"http://127.0.0.1:{port}/v1"
try:
    client = openai.OpenAI(base_url=base, api_key=KEY, max_retries=0)
    ids = [m.id for m in client.models.list()]
    check(ids == ["tiny-model"], f"openai: models.list gives {ids}")

    reply = client.chat.completions.create(model="tiny-model", messages=messages, temperature=0, max_tokens=16)
    check(reply.choices[0].message.content == expected_chat, "openai: chat completion equals generate --messages")
    check(reply.usage.completion_tokens <= 16 and reply.usage.prompt_tokens > 0, "openai: usage is reported")

    stream = client.chat.completions.create(model="tiny-model", messages=messages, temperature=0, max_tokens=16,
                                            stream=True, stream_options={"include_usage": True})
    pieces, usage = [], None
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
    check("".join(pieces) == expected_chat, f"openai: streamed chat ({len(pieces)} pieces) equals generate --messages")
    check(usage is not None and usage.completion_tokens == reply.usage.completion_tokens, "openai: stream usage")

    text = client.completions.create(model="tiny-model", prompt="Intent of: open the blinds", temperature=0,
                                     max_tokens=10)
    check(text.choices[0].text == expected_text, "openai: text completion equals generate --prompt")
    streamed = "".join(c.choices[0].text for c in client.completions.create(
        model="tiny-model", prompt="Intent of: open the blinds", temperature=0, max_tokens=10, stream=True)
        if c.choices)
    check(streamed == expected_text, "openai: streamed text completion equals generate --prompt")

    try:
        client.chat.completions.create(model="tiny-model", messages=messages, temperature=7)
        check(False, "openai: temperature 7 is refused")
    except openai.BadRequestError as e:
        check(e.status_code == 400 and "temperature" in str(e), "openai: temperature 7 is a BadRequestError")
    try:
        openai.OpenAI(base_url=base, api_key="wrong", max_retries=0).models.list()
        check(False, "openai: a wrong key is refused")
    except openai.AuthenticationError as e:
        check(e.status_code == 401, "openai: a wrong key is an AuthenticationError")
    try:
        client.chat.completions.create(model="another-model", messages=messages)
        check(False, "openai: another model's name is refused")
    except openai.NotFoundError:
        check(True, "openai: another model's name is a NotFoundError")

    body = json.dumps({"model": "tiny-model", "messages": messages, "temperature": 0, "max_tokens": 16})
    curl = ["curl", "-sS", "--fail-with-body", "-H", "Authorization: Bearer " + KEY, "-H",
            "Content-Type: application/json", base + "/chat/completions", "-d"]
    whole = json.loads(subprocess.run(curl + [body], check=True, capture_output=True, text=True).stdout)
    check(whole["choices"][0]["message"]["content"] == expected_chat, "curl: chat completion equals generate")
    events = subprocess.run(["curl", "-sSN", "-H", "Authorization: Bearer " + KEY, base + "/chat/completions", "-d",
                             json.dumps({**json.loads(body), "stream": True})],
                            check=True, capture_output=True, text=True).stdout
    data = [line[6:] for line in events.split("\n") if line.startswith("data: ")]
    joined = "".join(json.loads(d)["choices"][0]["delta"].get("content", "") for d in data[:-1]
                     if json.loads(d)["choices"])
    check(data[-1] == "[DONE]" and joined == expected_chat, "curl -N: the event stream ends with [DONE] and equals generate")
    refused = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", base + "/models"],
                             capture_output=True, text=True).stdout
    check(refused == "401", f"curl without the key: {refused}")
finally:
    process.send_signal(signal.SIGTERM)
    code = process.wait(timeout=60)
log = open(log_path).read()
os.unlink(log_path)
check(code == 0, f"SIGTERM: esft-host serve exits {code}")
check(log.count('"POST /v1/chat/completions" 200') >= 3, "the access log has a line per request")
if failures:
    print(f"{len(failures)} checks failed")
    sys.exit(1)
print("every check passed")
