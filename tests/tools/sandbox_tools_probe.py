"""Runs each kind of tool through a ToolRunner and prints one JSON line of what happened.

Meant to run under the daemon unit's own [Service] sandbox (test_tools_sandbox.py): seccomp filter,
NoNewPrivileges, MemoryDenyWriteExecute, ProtectSystem=strict, the unit's user and its credential, so
the tools are shown to work (and to clean up after themselves) where the daemon really runs them.
"""

from __future__ import annotations

import json
import os
import queue
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from pivoice.settings import Section
from pivoice.tools.config import read_tools
from pivoice.tools.registry import build_registry
from pivoice.tools.runner import ToolRunner
from pivoice.tools.timers import TimerService

SECRET = (Path(os.environ["CREDENTIALS_DIRECTORY"]) / "device-secret").read_text().strip()
BG_PID = Path("/tmp/bg.pid")
STUCK_PID = Path("/tmp/stuck.pid")


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        ok = self.headers.get("Authorization") == f"Bearer {SECRET}"
        answer = json.dumps({"got": json.loads(body)} if ok else {"message": "bad token"}).encode()
        self.send_response(200 if ok else 401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)


def gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):   # reaped between open() and read(): ESRCH
        return True


def wait_gone(pid: int, timeout_s: float = 2.0) -> bool:
    """The kill is sent when the call is answered; the process may take a moment to die on a loaded machine."""
    deadline = time.monotonic() + timeout_s
    while not gone(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    return gone(pid)


def wait_file(path: Path, timeout_s: float = 5.0) -> int:
    deadline = time.monotonic() + timeout_s
    while not (path.exists() and path.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.01)
    return int(path.read_text())


def main() -> int:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    fn = lambda name, **kw: {"name": name, "description": name, **kw}   # noqa: E731
    config = {"builtin": {"time": True, "timers": True}, "functions": [
        fn("env", command={"argv": ["/usr/bin/env"], "env": {"MPD_HOST": "localhost"}}),
        fn("group", command={"argv": ["/bin/sh", "-c", f"/bin/sleep 30 & echo $! > {BG_PID}; wait"],
                             "timeout_s": 0.5}),
        fn("stubborn", command={"argv": ["/bin/sh", "-c", "trap '' TERM; /bin/sleep 30"], "timeout_s": 0.3}),
        fn("flood", command={"argv": [sys.executable, "-c", "print('x' * 100000)"], "max_output_bytes": 4096}),
        fn("stuck", command={"argv": ["/bin/sh", "-c", f"echo $$ > {STUCK_PID}; exec /bin/sleep 30"],
                             "timeout_s": 20}),
        fn("lamp", parameters={"type": "object", "required": ["entity_id"],
                               "properties": {"entity_id": {"type": "string"}}},
           http={"method": "POST", "url": f"http://127.0.0.1:{server.server_address[1]}/api/services/light/turn_on",
                 "body": {"entity_id": "{entity_id}"}, "bearer_token_credential": "device-secret"})]}
    fired = queue.Queue()
    timers = TimerService(fired.put)
    results: queue.Queue = queue.Queue()
    runner = ToolRunner(build_registry(read_tools(Section(config, "probe", "tools")), timers=timers), results.put)
    report: dict = {"uid": os.getuid()}

    def call(name: str, arguments: dict | None = None) -> dict:
        started = time.monotonic()
        runner.start(f"call_{name}", name, json.dumps(arguments or {}))
        result = results.get(timeout=10)
        return {"elapsed_s": round(time.monotonic() - started, 3), **json.loads(result.output)}

    report["get_time"] = call("get_time")
    report["env"] = call("env")
    report["group"] = call("group")
    report["group_child_gone"] = wait_gone(int(BG_PID.read_text()))
    report["stubborn"] = call("stubborn")
    report["flood"] = call("flood")
    report["lamp"] = call("lamp", {"entity_id": "light.kitchen"})
    runner.start("call_stuck", "stuck", "{}")
    pid = wait_file(STUCK_PID)
    runner.cancel("call_stuck")
    report["stuck"] = json.loads(results.get(timeout=5).output)
    report["stuck_gone"] = wait_gone(pid)
    report["set_timer"] = call("set_timer", {"seconds": 1})
    started = time.monotonic()
    timer = fired.get(timeout=5)
    report["timer_fired_after_s"] = round(time.monotonic() - started, 3)
    report["timer_id"] = timer.id
    runner.close()
    timers.close()
    server.shutdown()
    print("TOOLS-PROBE " + json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
