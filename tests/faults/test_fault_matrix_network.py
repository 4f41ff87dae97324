"""The fault matrix, network rows: the daemon's real `RealtimeConnection` against a raw WebSocket
server on 127.0.0.1 (support/ws_peer.py) or a name that cannot resolve, in the in-process runtime.
Each row: the end code and level, the reply audio that arrived played, and a next press that works."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pivoice.realtime.scripted import reply_events, session_created
from pivoice.realtime.session import RealtimeConnector
from support.fault_rig import FaultRig, check_end, next_press_works, tone
from support.ws_peer import WsPeer

REPLY_S = 0.6
HEARD_SLACK_MS = 30


@pytest.fixture(autouse=True)
def _log_info(caplog):
    caplog.set_level(logging.INFO)


def test_network_tcp_reset_mid_reply(tmp_path, caplog):
    def reset_mid_reply(link):
        link.accept()
        link.send(session_created())
        link.wait_for("session.update")
        link.send_all(reply_events("resp_1", "item_1", tone(REPLY_S), done=False))
        time.sleep(0.2)
        link.drop()
    with WsPeer() as ws:
        ws.queue(reset_mid_reply)
        with FaultRig(tmp_path, connector=RealtimeConnector(ws.url, "gpt-realtime", connect_timeout_s=2)) as rig:
            mark = rig.press()
            check_end(rig, caplog, mark, "link_lost", "warning", "connection to the server lost",
                      f"reply cut off after {REPLY_S * 1000:.0f} ms", "what arrived was played")
            assert rig.heard_ms() >= REPLY_S * 1000 - HEARD_SLACK_MS
            next_press_works(rig, ws=ws)


class Connectors:
    """One connector per connection, in order (the first faulty, the next healthy)."""

    def __init__(self, *connectors):
        self._connectors = list(connectors)
        self.url = self._connectors[0].url

    def connect(self, bearer, on_event):
        connector = self._connectors.pop(0) if len(self._connectors) > 1 else self._connectors[0]
        return connector.connect(bearer, on_event)


def test_network_realtime_server_down(tmp_path, caplog):
    """Nothing listens on the Realtime port (the server or a proxy restarting): connection refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    with WsPeer() as ws:
        down = RealtimeConnector(f"ws://127.0.0.1:{closed_port}/v1/realtime", "gpt-realtime", connect_timeout_s=2)
        healthy = RealtimeConnector(ws.url, "gpt-realtime", connect_timeout_s=2)
        with FaultRig(tmp_path, connector=Connectors(down, healthy)) as rig:
            mark = rig.press()
            check_end(rig, caplog, mark, "connect_failed", "error",
                      f"cannot connect to ws://127.0.0.1/v1/realtime?model=gpt-realtime: ", "refused")
            next_press_works(rig, ws=ws)


def test_network_tls_to_a_plain_tcp_port(tmp_path, caplog):
    def plain_http(link):
        link.sock.recv(4096)   # the TLS ClientHello
        link.sock.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        link.sock.close()
    with WsPeer() as ws:
        ws.queue(plain_http)
        tls = RealtimeConnector(f"wss://127.0.0.1:{ws.port}/v1/realtime", "gpt-realtime", connect_timeout_s=2)
        plain = RealtimeConnector(ws.url, "gpt-realtime", connect_timeout_s=2)
        with FaultRig(tmp_path, connector=Connectors(tls, plain)) as rig:
            mark = rig.press()
            note = check_end(rig, caplog, mark, "connect_failed", "error",
                             f"cannot connect to wss://127.0.0.1/v1/realtime")
            assert "SSL" in note.text or "ssl" in note.text, note.text
            next_press_works(rig, ws=ws)


IN_NETNS = "PIVOICE_FAULTS_IN_NETNS"   # conftest.py runs the inner half only when this is set


def test_network_dns_failure(tmp_path):
    """Run in a network namespace of its own with only loopback, so the lookup of an unresolvable
    name fails here and sends nothing to the real resolver."""
    if os.geteuid() != 0 or not Path("/usr/bin/unshare").exists():
        pytest.skip("needs root and unshare for a private network namespace")
    here = Path(__file__)
    cmd = (f"ip link set lo up && exec {sys.executable} -m pytest -q -p no:cacheprovider "
           f"{here}::test_dns_failure_inside_a_private_netns --basetemp={tmp_path / 'inner'}")
    result = subprocess.run(["unshare", "--net", "sh", "-c", cmd], env={**os.environ, IN_NETNS: "1"},
                            cwd=here.parents[2], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "1 passed" in result.stdout


def test_dns_failure_inside_a_private_netns(tmp_path, caplog):
    with WsPeer() as ws:
        unresolvable = RealtimeConnector("ws://nonexistent.invalid/v1/realtime", "gpt-realtime", connect_timeout_s=2)
        healthy = RealtimeConnector(ws.url, "gpt-realtime", connect_timeout_s=2)
        with FaultRig(tmp_path, connector=Connectors(unresolvable, healthy)) as rig:
            mark = rig.press()
            note = check_end(rig, caplog, mark, "connect_failed", "error",
                             "cannot connect to ws://nonexistent.invalid/v1/realtime")
            assert "name resolution" in note.text or "Name or service" in note.text, note.text
            next_press_works(rig, ws=ws)
