"""Headless Chromium driven over the DevTools protocol (websocket-client), for pages served on loopback.

    with headless_chromium(tmp_path) as browser:
        browser.open(url, headers={"Authorization": "Bearer ..."})
        text = browser.evaluate("document.body.innerText")
        png = browser.screenshot(width=1500)

Chromium runs with a throwaway profile, every background service off, and a proxy on a closed
loopback port for anything that is not loopback (loopback bypasses proxies), so it sends no traffic
off this machine. It is killed when the block ends, whatever happened.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import websocket

START_TIMEOUT_S = 30.0
COMMAND_TIMEOUT_S = 20.0
_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
          "--disable-background-networking", "--disable-component-update", "--disable-sync",
          "--disable-default-apps", "--disable-extensions", "--no-pings", "--disable-domain-reliability",
          "--disable-client-side-phishing-detection", "--metrics-recording-only", "--hide-scrollbars",
          "--disable-features=Translate,OptimizationHints,MediaRouter,AutofillServerCommunication",
          "--proxy-server=http://127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1")


def chromium_binary() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


class Browser:
    """Test thread only: one command at a time on the page's DevTools socket."""

    def __init__(self, ws: websocket.WebSocket):
        self._ws = ws
        self._ids = itertools.count(1)

    def send(self, method: str, **params) -> dict:
        """Send a command and return its result; events that arrive meanwhile are dropped."""
        call_id = next(self._ids)
        self._ws.send(json.dumps({"id": call_id, "method": method, "params": params}))
        deadline = time.monotonic() + COMMAND_TIMEOUT_S
        while time.monotonic() < deadline:
            msg = json.loads(self._ws.recv())
            if msg.get("id") == call_id:
                if "error" in msg:
                    raise RuntimeError(f"DevTools {method}: {msg['error']}")
                return msg.get("result", {})
        raise TimeoutError(f"DevTools {method}: no answer in {COMMAND_TIMEOUT_S} s")

    def wait_event(self, method: str) -> dict:
        deadline = time.monotonic() + COMMAND_TIMEOUT_S
        while time.monotonic() < deadline:
            msg = json.loads(self._ws.recv())
            if msg.get("method") == method:
                return msg.get("params", {})
        raise TimeoutError(f"DevTools event {method} did not come in {COMMAND_TIMEOUT_S} s")

    def open(self, url: str, headers: dict | None = None) -> int:
        """Navigate and wait for the load event; returns the document's HTTP status."""
        self.send("Network.enable")
        self.send("Page.enable")
        if headers:
            self.send("Network.setExtraHTTPHeaders", headers=headers)
        self._ws.send(json.dumps({"id": next(self._ids), "method": "Page.navigate", "params": {"url": url}}))
        status = None
        deadline = time.monotonic() + COMMAND_TIMEOUT_S
        while time.monotonic() < deadline:
            msg = json.loads(self._ws.recv())
            if msg.get("method") == "Network.responseReceived" and msg["params"].get("type") == "Document":
                status = msg["params"]["response"]["status"]
            if msg.get("method") == "Page.loadEventFired":
                return status
        raise TimeoutError(f"{url} did not load in {COMMAND_TIMEOUT_S} s")

    def evaluate(self, expression: str):
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    def screenshot(self, width: int, height: int = 400) -> bytes:
        """PNG of the whole page at `width` CSS pixels (the height grows to fit the content)."""
        self.send("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1,
                  mobile=False)
        # the content's own extent (scrollHeight is never less than the viewport)
        size = self.evaluate("[Math.ceil(document.documentElement.scrollWidth), "
                             "Math.ceil(Math.max(...[...document.body.children].map("
                             "e => e.getBoundingClientRect().bottom)) + 24)]")
        self.send("Emulation.setDeviceMetricsOverride", width=max(width, size[0]), height=size[1],
                  deviceScaleFactor=1, mobile=False)
        return base64.b64decode(self.send("Page.captureScreenshot", format="png")["data"])


@contextlib.contextmanager
def headless_chromium(work: Path) -> Iterator[Browser]:
    binary = chromium_binary()
    if binary is None:
        raise RuntimeError("chromium not installed (scripts/lib/setup.sh installs it)")
    profile = Path(work) / "chromium-profile"
    profile.mkdir(parents=True, exist_ok=True)
    log = open(Path(work) / "chromium.log", "wb")
    process = subprocess.Popen([binary, *_FLAGS, "--remote-debugging-port=0", f"--user-data-dir={profile}",
                                "about:blank"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    ws = None
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + START_TIMEOUT_S
        while not (port_file.exists() and port_file.read_text().strip()):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"chromium did not start:\n{(Path(work) / 'chromium.log').read_text()[-2000:]}")
            time.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
                f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
            pages = [t for t in json.load(r) if t.get("type") == "page"]
        ws = websocket.create_connection(pages[0]["webSocketDebuggerUrl"], timeout=COMMAND_TIMEOUT_S,
                                         suppress_origin=True)
        yield Browser(ws)
    finally:
        if ws is not None:
            with contextlib.suppress(Exception):
                ws.close()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)   # its renderer and zygote children share its group
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(10)
        log.close()
