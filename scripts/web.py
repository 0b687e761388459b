#!/usr/bin/env python3
"""Serves the web demo and drives it in headless Chromium (issue 22).

Python standard library only. Chromium is driven over its DevTools protocol
on a pipe (--remote-debugging-pipe), which needs no extra package.

  web.py serve [--port 8000]
      Serves target-web/www (scripts/web_build.sh builds it) and the
      crate's models/ at /models/, for a browser of your own.
  web.py test --expect FILE --model FILE [--prompt TEXT] [-n N] [--no-subgroups]
      Loads the page in headless Chromium with WebGPU on SwiftShader,
      has the browser's WGSL compiler check every matvec variant (one it
      rejects fails the test), fetches the model, decodes N greedy tokens after the prompt, and
      compares the prompt's ids and the tokens with FILE (JSON with
      "prompt_ids" and "ids", the native CPU reference's). Exit status 0
      only when they are equal; otherwise the page's console is printed.
  web.py shot --out FILE.png [--model URL] [--chat TEXT] [--max N]
      Loads the demo, fetches the model (default: the shipped SmolLM2
      Q4_1 from models/), sends one chat message and saves a screenshot.

Environment: CHROMIUM (default: chromium), WEB_TIMEOUT (seconds, default 600).
"""

import argparse
import base64
import functools
import http.server
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WWW = os.path.join(ROOT, "target-web", "www")
MODELS = os.path.join(ROOT, "models")

# WebGPU on SwiftShader (Vulkan on the CPU): no GPU needed. Headless
# Chromium keeps WebGPU off without these.
CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-extensions",
    "--enable-unsafe-webgpu",
    "--enable-unsafe-swiftshader",
    "--use-webgpu-adapter=swiftshader",
    "--use-angle=swiftshader",
    "--enable-features=Vulkan",
    "--window-size=1000,800",
    # A headless page counts as hidden: unthrottled, WebGPU's callbacks
    # come at once instead of on throttled timer ticks.
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
]


class Handler(http.server.SimpleHTTPRequestHandler):
    """target-web/www at /, models/ at /models/, one extra file at /test-model.gguf."""

    extra_file = None

    def translate_path(self, path):
        p = urllib.parse.unquote(urllib.parse.urlsplit(path).path)
        if p == "/test-model.gguf" and self.extra_file:
            return self.extra_file
        if p.startswith("/models/"):
            name = os.path.basename(p)
            return os.path.join(MODELS, name)
        return super().translate_path(path)

    def end_headers(self):
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, fmt, *args):
        pass


Handler.extensions_map = dict(
    http.server.SimpleHTTPRequestHandler.extensions_map,
    **{".wasm": "application/wasm", ".js": "text/javascript", ".gguf": "application/octet-stream"},
)


def start_server(port, extra_file=None):
    if not os.path.exists(os.path.join(WWW, "index.html")):
        sys.exit(f"error: {WWW}/index.html is missing: run scripts/web_build.sh first")
    Handler.extra_file = extra_file
    handler = functools.partial(Handler, directory=WWW)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class Browser:
    """Headless Chromium and one page, over the DevTools protocol on a pipe
    (messages are JSON, each ended by a NUL byte; Chromium reads fd 3 and
    writes fd 4)."""

    def __init__(self):
        self.profile = tempfile.mkdtemp(prefix="q4gpu-chromium-")
        self.log_path = os.path.join(self.profile, "chromium.log")
        # Our ends and Chromium's, moved above fd 10 so dup2 onto 3 and 4
        # cannot clobber one another.
        to_chrome_r, self.to_chrome = os.pipe()
        self.from_chrome, from_chrome_w = os.pipe()
        cr = os.dup2(to_chrome_r, 20, inheritable=True)
        cw = os.dup2(from_chrome_w, 21, inheritable=True)
        os.close(to_chrome_r)
        os.close(from_chrome_w)

        def child_fds():
            os.dup2(cr, 3)
            os.dup2(cw, 4)

        cmd = [os.environ.get("CHROMIUM", "chromium"), *CHROMIUM_FLAGS,
               "--remote-debugging-pipe", f"--user-data-dir={self.profile}", "about:blank"]
        self.log = open(self.log_path, "wb")
        try:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self.log,
                                         stderr=subprocess.STDOUT, pass_fds=(3, 4, cr, cw),
                                         preexec_fn=child_fds)
        except FileNotFoundError:
            sys.exit(f"error: {cmd[0]} not found (Debian: apt-get install chromium)")
        os.close(cr)
        os.close(cw)
        self.next_id = 0
        self.replies = {}
        self.cond = threading.Condition()
        self.console = []
        self.session = None
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        buf = b""
        while True:
            chunk = os.read(self.from_chrome, 1 << 16)
            if not chunk:
                with self.cond:
                    self.replies["closed"] = True
                    self.cond.notify_all()
                return
            buf += chunk
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                msg = json.loads(raw)
                with self.cond:
                    if "id" in msg:
                        self.replies[msg["id"]] = msg
                        self.cond.notify_all()
                    else:
                        self._event(msg)

    def _event(self, msg):
        m, p = msg.get("method"), msg.get("params", {})
        if m == "Runtime.consoleAPICalled":
            parts = [a.get("value", a.get("description", "")) for a in p.get("args", [])]
            self.console.append(f"console.{p.get('type')}: " + " ".join(map(str, parts)))
        elif m == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            text = d.get("exception", {}).get("description") or d.get("text")
            self.console.append(f"exception: {text}")
        elif m == "Log.entryAdded":
            e = p.get("entry", {})
            self.console.append(f"log.{e.get('level')} ({e.get('source')}): {e.get('text')}")

    def call(self, method, params=None, timeout=60, page=True):
        with self.cond:
            self.next_id += 1
            i = self.next_id
        msg = {"id": i, "method": method, "params": params or {}}
        if page and self.session:
            msg["sessionId"] = self.session
        os.write(self.to_chrome, json.dumps(msg).encode() + b"\0")
        deadline = time.time() + timeout
        with self.cond:
            while i not in self.replies:
                if "closed" in self.replies:
                    raise RuntimeError(f"Chromium exited during {method}")
                left = deadline - time.time()
                if left <= 0:
                    raise RuntimeError(f"no answer to {method} in {timeout}s")
                self.cond.wait(left)
            reply = self.replies.pop(i)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def open(self, url):
        target = self.call("Target.createTarget", {"url": "about:blank"}, page=False)
        att = self.call("Target.attachToTarget",
                        {"targetId": target["targetId"], "flatten": True}, page=False)
        self.session = att["sessionId"]
        for domain in ("Runtime", "Log", "Page"):
            self.call(f"{domain}.enable")
        self.call("Page.navigate", {"url": url})

    def evaluate(self, expr, timeout=60):
        r = self.call("Runtime.evaluate", {"expression": expr, "returnByValue": True},
                      timeout=timeout)
        return r.get("result", {}).get("value")

    def wait_result(self, timeout):
        """The page's window.q4gpuResult once set (or None after `timeout` s).
        A page busy for longer than one poll (compiling kernels) is waited for."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                text = self.evaluate("JSON.stringify(window.q4gpuResult ?? null)",
                                     timeout=max(1, deadline - time.time()))
            except RuntimeError as e:
                if "no answer" in str(e):
                    continue
                raise
            if text and text != "null":
                return json.loads(text)
            time.sleep(0.5)
        return None

    def screenshot(self, path):
        data = self.call("Page.captureScreenshot", {"format": "png"})["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))

    def dump(self):
        """The page's console and the end of Chromium's own log."""
        print("---- page console ----", file=sys.stderr)
        for line in self.console:
            print(line, file=sys.stderr)
        self.log.flush()
        with open(self.log_path, "rb") as f:
            tail = f.read()[-4000:].decode(errors="replace")
        print("---- chromium output (end) ----", file=sys.stderr)
        print(tail, file=sys.stderr)

    def close(self):
        try:
            self.call("Browser.close", page=False, timeout=10)
        except RuntimeError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()
        subprocess.run(["rm", "-rf", self.profile], check=False)


def run_page(query, extra_file=None, shot=None, timeout=None):
    """Opens the demo with `query`, waits for its result, optionally saves a
    screenshot; returns (result or None, browser console lines)."""
    timeout = timeout or float(os.environ.get("WEB_TIMEOUT", "600"))
    server = start_server(0, extra_file)
    url = f"http://127.0.0.1:{server.server_address[1]}/index.html?{urllib.parse.urlencode(query)}"
    browser = Browser()
    try:
        browser.open(url)
        result = browser.wait_result(timeout)
        if shot:
            browser.screenshot(shot)
        if result is None or not result.get("ok"):
            print(f"error: the page gave {'no result' if result is None else 'an error'} "
                  f"({url})", file=sys.stderr)
            browser.dump()
        return result, browser.console
    finally:
        browser.close()
        server.shutdown()


def cmd_test(a):
    with open(a.expect) as f:
        want = json.load(f)
    t0 = time.time()
    query = {"kernels": 1, "model": "test-model.gguf", "greedy": a.n, "prompt": a.prompt}
    if a.no_subgroups:
        query["subgroups"] = "0"
    got, _ = run_page(query, extra_file=os.path.abspath(a.model), shot=a.shot)
    if not got or not got.get("ok"):
        if got:
            print(f"page error: {got.get('error')}", file=sys.stderr)
        return 1
    print(f"adapter: {got['adapter']}")
    print(f"kernels: {got.get('kernels')}")
    print(f"milliseconds per decode step: {got.get('step_ms')}")
    ok = True
    for key in ("prompt_ids", "ids"):
        same = got[key] == want[key]
        ok &= same
        print(f"{key}: {len(got[key])} in the page, {len(want[key])} native: "
              f"{'equal' if same else 'DIFFERENT'}")
        if not same:
            print(f"  page:   {got[key]}\n  native: {want[key]}")
    print(f"SwiftShader (functional check, not a speed claim): "
          f"{got['decode_tok_s']:.2f} tok/s decode, first token after {got['first_token_ms']:.0f} ms; "
          f"page run {time.time() - t0:.1f}s")
    print("PASS: the page's greedy ids equal the native CPU reference's" if ok else
          "FAIL: the page's greedy ids differ from the native CPU reference's")
    return 0 if ok else 1


def cmd_shot(a):
    got, console = run_page({"model": a.model, "chat": a.chat, "max": a.max}, shot=a.out)
    if not got or not got.get("ok"):
        return 1
    print(f"adapter: {got['adapter']}")
    print(f"reply ({got['tokens']} tokens, {got['decode_tok_s']:.2f} tok/s, "
          f"first token after {got['first_token_ms']:.0f} ms): {got['text']!r}")
    print(f"screenshot: {a.out}")
    return 0


def cmd_serve(a):
    server = start_server(a.port)
    print(f"serving {WWW} (and models/ at /models/) on http://127.0.0.1:{server.server_address[1]}/")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--port", type=int, default=8000)
    t = sub.add_parser("test")
    t.add_argument("--expect", required=True)
    t.add_argument("--model", required=True)
    t.add_argument("--prompt", default="The capital of France is")
    t.add_argument("-n", type=int, default=16)
    t.add_argument("--shot", help="also save a screenshot here")
    t.add_argument("--no-subgroups", action="store_true",
                   help="the workgroup-memory kernels even where the browser has subgroups")
    c = sub.add_parser("shot")
    c.add_argument("--out", required=True)
    c.add_argument("--model", default="models/SmolLM2-135M-Instruct.Q4_1.gguf")
    c.add_argument("--chat", default="What is the capital of France?")
    c.add_argument("--max", type=int, default=32, help="reply tokens at most")
    a = p.parse_args()
    return {"serve": cmd_serve, "test": cmd_test, "shot": cmd_shot}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
