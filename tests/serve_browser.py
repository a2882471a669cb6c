"""The web chat page of `esft-host serve` in a real browser: headless Chromium driven through WebDriver (Debian's
chromium-driver, spoken to over HTTP with the standard library) sets temperature 0, types a message, waits for the
streamed answer, and checks it equals `esft-host generate` for the same conversation; a second turn checks the page
keeps the conversation. A screenshot is written to OUT_DIR/chat.png.

usage: serve_browser.py ESFT_HOST MODEL_DIR OUT_DIR   (run by tests/check_serve_browser.sh)
"""
import base64
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

host, model, out_dir = sys.argv[1], sys.argv[2], sys.argv[3]
os.makedirs(out_dir, exist_ok=True)
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"  # the W3C WebDriver element reference key


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what, predicate, seconds=60):
    deadline = time.time() + seconds
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    sys.exit("timed out waiting for " + what)


def generate(conversation, max_tokens):
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(conversation, f)
    out = subprocess.run([host, "generate", "--model", model, "--messages", f.name, "--max-new-tokens", str(max_tokens)],
                         check=True, capture_output=True, text=True).stdout
    os.unlink(f.name)
    return out[:-1]


class WebDriver:
    def __init__(self, port):
        self.base = f"http://127.0.0.1:{port}"
        options = {"binary": "/usr/bin/chromium",
                   "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                            "--window-size=1100,760", "--no-first-run", "--disable-extensions"]}
        reply = self.call("POST", "/session", {"capabilities": {"alwaysMatch": {
            "browserName": "chrome", "goog:chromeOptions": options}}})
        self.session = reply["sessionId"]

    def call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as reply:
                return json.loads(reply.read())["value"]
        except urllib.error.HTTPError as e:
            sys.exit(f"WebDriver {method} {path}: {e.code} {e.read().decode()[:500]}")

    def s(self, method, path, body=None):
        return self.call(method, f"/session/{self.session}{path}", body)

    def element(self, css):
        return self.s("POST", "/element", {"using": "css selector", "value": css})[ELEMENT]

    def type_into(self, css, text, clear=True):
        e = self.element(css)
        if clear:
            self.s("POST", f"/element/{e}/clear", {})
        self.s("POST", f"/element/{e}/value", {"text": text})

    def script(self, source):
        return self.s("POST", "/execute/sync", {"script": source, "args": []})


LAST_ANSWER = """const m = document.querySelectorAll('.msg.assistant'); const last = m[m.length - 1];
return m.length === %d && last.dataset.done ? last.querySelector('.text').textContent : null;"""

log = tempfile.NamedTemporaryFile(prefix="esft-serve-", suffix=".log", delete=False)
server = subprocess.Popen([host, "serve", "--model", model, "--port", "0"], stdout=subprocess.DEVNULL, stderr=log)
port = int(wait_for("the server", lambda: (re.search(r"at http://127\.0\.0\.1:(\d+)/", open(log.name).read()) or [0, 0])[1], 120))
driver_port = free_port()
chromedriver = subprocess.Popen(["chromedriver", f"--port={driver_port}"], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
failures = []
try:
    wait_for("chromedriver", lambda: socket.socket().connect_ex(("127.0.0.1", driver_port)) == 0, 30)
    browser = WebDriver(driver_port)
    browser.s("POST", "/url", {"url": f"http://127.0.0.1:{port}/"})
    wait_for("the model name on the page",
             lambda: browser.script("return document.getElementById('model').textContent") == "tiny-model")
    browser.type_into("#temperature", "0")
    browser.type_into("#max_tokens", "16")

    first = "turn the hallway lights off"
    browser.type_into("#message", first)
    browser.s("POST", f"/element/{browser.element('#send')}/click", {})
    answer = wait_for("the first answer", lambda: browser.script(LAST_ANSWER % 1))
    expected = generate([{"role": "user", "content": first}], 16)
    print("page:     " + repr(answer))
    print("generate: " + repr(expected))
    if answer != expected:
        failures.append("the streamed answer differs from generate's")

    second = "and lock the door"
    browser.type_into("#message", second)
    browser.s("POST", f"/element/{browser.element('#send')}/click", {})
    answer2 = wait_for("the second answer", lambda: browser.script(LAST_ANSWER % 2))
    expected2 = generate([{"role": "user", "content": first}, {"role": "assistant", "content": expected},
                          {"role": "user", "content": second}], 16)
    print("page, turn 2:     " + repr(answer2))
    print("generate, turn 2: " + repr(expected2))
    if answer2 != expected2:
        failures.append("the second turn differs from generate's on the whole conversation")
    stats = browser.script("return document.getElementById('stats').textContent")
    print("stats line: " + stats)
    if "tokens/s" not in stats:
        failures.append("no tokens/s on the page")
    png = base64.b64decode(browser.s("GET", "/screenshot"))
    with open(os.path.join(out_dir, "chat.png"), "wb") as f:
        f.write(png)
    print(f"screenshot: {os.path.join(out_dir, 'chat.png')} ({len(png)} bytes)")
    browser.call("DELETE", f"/session/{browser.session}")
finally:
    chromedriver.terminate()
    chromedriver.wait(timeout=30)
    server.send_signal(signal.SIGTERM)
    server.wait(timeout=60)
    os.unlink(log.name)
if failures:
    sys.exit("FAILED: " + "; ".join(failures))
print("the page's answers equal generate's")
