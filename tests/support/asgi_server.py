"""Serve an ASGI app built in the test (collaborators injected: a clock, a registry) with real uvicorn
on 127.0.0.1, in a thread of the test process:

    with serve_app(create_app(config, clock=clock)) as url:
        httpx.post(url + "/v1/devices/status", ...)

The server stops (lifespan shutdown included) when the block ends, also when it raises.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import Iterator

import uvicorn

START_TIMEOUT_S = 10.0


@contextlib.contextmanager
def serve_app(app) -> Iterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="test-uvicorn", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
