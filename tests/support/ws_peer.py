"""A scriptable WebSocket server on 127.0.0.1 for the fault matrix's network rows.

Written on raw sockets (RFC 6455 framing by hand) so a test controls what no real server library
lets it: refusing the upgrade with any HTTP status, not answering pings, dropping the TCP link with
a reset, or speaking plain HTTP to a TLS client. Each accepted connection runs the next queued
script `fn(link)` on its own thread; the daemon's real `RealtimeConnection` is the client.

    with WsPeer() as peer:
        peer.queue(lambda link: (link.accept(), link.send(session_created()), link.stall()))
        connector = RealtimeConnector(peer.url, "gpt-realtime", connect_timeout_s=2)
"""

from __future__ import annotations

import base64
import hashlib
import json
import queue
import select
import socket
import struct
import threading
import time
from typing import Callable

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
LINK_TIMEOUT_S = 10.0   # no script waits longer than this for the client


class PeerLink:
    """One accepted connection. Script thread: accept/refuse/send/close/drop/stall; its reader
    thread (after accept) records client events and answers pings when `pongs` is set."""

    def __init__(self, sock: socket.socket, pongs: bool = True):
        self.sock = sock
        self.pongs = pongs
        self.events: list[dict] = []
        self.pings = 0
        self.client_closed = threading.Event()
        self._cond = threading.Condition()
        self._send_lock = threading.Lock()
        self.request = b""
        self._dropping = threading.Event()
        self._reader_done = threading.Event()

    # ---- the upgrade ----

    def read_request(self) -> bytes:
        self.sock.settimeout(LINK_TIMEOUT_S)
        while b"\r\n\r\n" not in self.request:
            chunk = self.sock.recv(4096)
            if not chunk:
                break
            self.request += chunk
        return self.request

    def accept(self) -> None:
        key = ""
        for line in self.read_request().decode("latin-1").split("\r\n"):
            if line.lower().startswith("sec-websocket-key:"):
                key = line.split(":", 1)[1].strip()
        answer = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
        self.sock.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                           f"Sec-WebSocket-Accept: {answer}\r\n\r\n").encode())
        threading.Thread(target=self._read, name="ws-peer-reader", daemon=True).start()

    def refuse(self, status: int, body: dict | None = None, headers: str = "") -> None:
        self.read_request()
        data = json.dumps(body or {}).encode()
        self.sock.sendall(f"HTTP/1.1 {status} Refused\r\nContent-Type: application/json\r\n{headers}"
                          f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode() + data)
        self.sock.close()

    # ---- after the upgrade ----

    def send(self, event: dict | str) -> None:
        text = event if isinstance(event, str) else json.dumps(event)
        self._frame(0x1, text.encode())

    def send_all(self, events: list, gap_s: float = 0.0) -> None:
        for event in events:
            self.send(event)
            if gap_s:
                time.sleep(gap_s)

    def close(self, code: int, reason: str = "") -> None:
        self._frame(0x8, struct.pack("!H", code) + reason.encode())
        self.client_closed.wait(LINK_TIMEOUT_S)
        self.sock.close()

    def drop(self) -> None:
        """The TCP link dies: a reset, no close frame. The reader thread closes the socket (a close
        from here would not reach the kernel while that thread sits in recv)."""
        self._dropping.set()
        self._reader_done.wait(LINK_TIMEOUT_S)

    def stall(self, timeout_s: float = LINK_TIMEOUT_S) -> None:
        """Say nothing more until the client closes (pings answered only if `pongs`)."""
        self.client_closed.wait(timeout_s)
        self.sock.close()

    def wait_for(self, type_: str, timeout_s: float = LINK_TIMEOUT_S) -> dict:
        with self._cond:
            found = self._cond.wait_for(lambda: next((e for e in self.events if e.get("type") == type_), None),
                                        timeout_s)
        if not found:
            raise TimeoutError(f"the client sent no {type_} within {timeout_s} s")
        return found

    def _frame(self, opcode: int, payload: bytes) -> None:
        n = len(payload)
        header = bytes([0x80 | opcode]) + (bytes([n]) if n < 126 else
                                           struct.pack("!BH", 126, n) if n < 1 << 16 else struct.pack("!BQ", 127, n))
        with self._send_lock:
            self.sock.sendall(header + payload)

    def _recv_exact(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            while not select.select([self.sock], [], [], 0.05)[0]:
                if self._dropping.is_set():
                    self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.sock.close()
                    raise ConnectionError("dropped by the script")
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("client went away")
            data += chunk
        return data

    def _read(self) -> None:
        try:
            self.sock.settimeout(None)
            while True:
                b0, b1 = self._recv_exact(2)
                opcode, n = b0 & 0x0F, b1 & 0x7F
                if n == 126:
                    n = struct.unpack("!H", self._recv_exact(2))[0]
                elif n == 127:
                    n = struct.unpack("!Q", self._recv_exact(8))[0]
                mask = self._recv_exact(4) if b1 & 0x80 else b"\0\0\0\0"
                data = bytes(c ^ mask[i % 4] for i, c in enumerate(self._recv_exact(n))) if n else b""
                if opcode == 0x9:
                    self.pings += 1
                    if self.pongs:
                        self._frame(0xA, data)
                elif opcode == 0x8:
                    self.client_closed.set()
                    try:
                        self._frame(0x8, data[:2])
                    except OSError:
                        pass
                    return
                elif opcode == 0x1:
                    with self._cond:
                        self.events.append(json.loads(data))
                        self._cond.notify_all()
        except (OSError, ConnectionError, ValueError):
            self.client_closed.set()
        finally:
            self._reader_done.set()


class WsPeer:
    """Listens on 127.0.0.1; each connection gets the next queued script (none queued: refused 503)."""

    def __init__(self, *, pongs: bool = True):
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self.url = f"ws://127.0.0.1:{self.port}/v1/realtime"
        self._pongs = pongs
        self._scripts: queue.Queue = queue.Queue()
        self.links: list[PeerLink] = []
        self.errors: list[BaseException] = []
        self._threads: list[threading.Thread] = []
        threading.Thread(target=self._accept, name="ws-peer", daemon=True).start()

    def queue(self, script: Callable[[PeerLink], None], *, pongs: bool | None = None) -> None:
        self._scripts.put((script, self._pongs if pongs is None else pongs))

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._server.accept()
            except OSError:
                return
            try:
                script, pongs = self._scripts.get_nowait()
            except queue.Empty:
                script, pongs = (lambda link: link.refuse(503, {"error": {"message": "no script queued"}})), True
            link = PeerLink(sock, pongs)
            self.links.append(link)
            thread = threading.Thread(target=self._run, args=(script, link), name="ws-peer-script", daemon=True)
            self._threads.append(thread)
            thread.start()

    def _run(self, script, link: PeerLink) -> None:
        try:
            script(link)
        except BaseException as exc:   # kept for a failing row's message; the client sees a dead link
            self.errors.append(exc)
            link.sock.close()

    def close(self) -> None:
        self._server.close()
        for thread in self._threads:
            thread.join(LINK_TIMEOUT_S)

    def __enter__(self) -> "WsPeer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
