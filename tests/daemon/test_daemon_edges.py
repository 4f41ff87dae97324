"""The small edges: control socket, Realtime URL/handshake errors, start-up errors (the button: test_daemon_button.py)."""

from __future__ import annotations

import json
import os
import socket
import stat

import pytest

from pivoice import control
from pivoice.realtime.session import error_detail, session_url


@pytest.fixture
def server(tmp_path):
    presses = []
    srv = control.ControlServer(str(tmp_path / "run" / "control.sock"), on_press=lambda: presses.append("p"),
                                on_release=lambda: presses.append("r"), get_status=lambda: {"state": "idle"})
    srv.start()
    yield srv, presses
    srv.close()


def test_control_socket_is_owner_and_group_only_and_speaks_json_lines(server):
    srv, presses = server
    assert stat.S_IMODE(os.stat(srv.path).st_mode) == 0o660
    assert control.request(srv.path, "press") == {"ok": True}
    assert control.request(srv.path, "release") == {"ok": True}
    assert presses == ["p", "r"]
    assert control.request(srv.path, "status") == {"ok": True, "status": {"state": "idle"}}


def test_control_socket_rejects_bad_requests_without_dying(server):
    srv, presses = server
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(srv.path)
        stream = sock.makefile("rwb")
        for line, expected in ((b"not json\n", "not JSON"), (b'{"cmd": "explode"}\n', "unknown cmd 'explode'"),
                               (b"[1, 2]\n", "unknown cmd None")):
            stream.write(line)
            stream.flush()
            reply = json.loads(stream.readline())
            assert reply["ok"] is False and expected in reply["error"]
    assert control.request(srv.path, "press") == {"ok": True} and presses == ["p"]


def test_ctl_command_reports_an_absent_daemon(tmp_path, capsys):
    assert control.main(["status", "--socket", str(tmp_path / "nobody.sock")]) == 1
    assert "cannot reach the daemon" in capsys.readouterr().err


def test_a_stale_socket_file_is_replaced(tmp_path):
    path = tmp_path / "control.sock"
    path.write_text("left over from a crash")
    srv = control.ControlServer(str(path), on_press=lambda: None, on_release=lambda: None, get_status=dict)
    srv.start()
    try:
        assert control.request(str(path), "status")["ok"]
    finally:
        srv.close()
    assert not path.exists()


@pytest.mark.parametrize("base,expected", [
    ("wss://api.openai.com/v1/realtime", "wss://api.openai.com/v1/realtime?model=gpt-realtime"),
    ("ws://127.0.0.1:9/v1/realtime?model=old", "ws://127.0.0.1:9/v1/realtime?model=gpt-realtime"),
    ("wss://h/v1/realtime?intent=realtime", "wss://h/v1/realtime?intent=realtime&model=gpt-realtime"),
])
def test_session_url_sends_the_model(base, expected):
    assert session_url(base, "gpt-realtime") == expected


def test_refused_handshake_names_the_server_error_code():
    body = json.dumps({"error": {"code": "invalid_api_key", "message": "expired ephemeral key"}}).encode()
    assert error_detail(body) == ": invalid_api_key (expired ephemeral key)"
    assert error_detail(b"<html>") == "" and error_detail(None) == ""


@pytest.mark.integration
def test_a_refused_key_closes_with_the_http_status_and_server_code(tmp_path):
    import queue
    from support.devserver import run_dev_server
    from pivoice import messages as m
    from pivoice.realtime.session import RealtimeConnector
    with run_dev_server(tmp_path) as dev:
        events: queue.Queue = queue.Queue()
        RealtimeConnector(dev.ws_url, "gpt-realtime", connect_timeout_s=5).connect("ek_not_issued", events.put)
        closed = events.get(timeout=10)
        assert isinstance(closed, m.SocketClosed) and closed.code is None
        assert "HTTP 401" in closed.reason and "ek_not_issued" not in closed.reason

        RealtimeConnector(dev.ws_url, "gpt-realtime", connect_timeout_s=5).connect(dev.api_key, events.put)
        assert isinstance(events.get(timeout=10), m.SocketOpened)
        first = events.get(timeout=10)
        assert isinstance(first, m.ServerEvent) and first.type == "session.created"


@pytest.mark.parametrize("tokens,expected", [
    ({"backend_url": "http://127.0.0.1:9", "secret_file": "{tmp}/missing"},
     "tokens.secret_file: secret file {tmp}/missing: does not exist"),
    ({"backend_url": "http://tokens.example.com", "secret_file": "{tmp}/secret"},
     "tokens: token backend URL 'http://tokens.example.com:80': https is required"),
])
def test_start_up_errors_name_the_config_key(tmp_path, tokens, expected):
    import subprocess
    import sys
    import yaml
    (tmp_path / "secret").write_text("s3cret-value\n")
    (tmp_path / "secret").chmod(0o600)
    config = {"button": {"pin_factory": "mock"}, "control": {"socket_path": str(tmp_path / "ctl.sock")},
              "tokens": {"device_id": "kitchen", **{k: v.format(tmp=tmp_path) for k, v in tokens.items()}}}
    path = tmp_path / "pivoice.yaml"
    path.write_text(yaml.safe_dump(config))
    result = subprocess.run([sys.executable, "-m", "pivoice", "run", "--config", str(path)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert f"cannot start: {path}: {expected.format(tmp=tmp_path)}" in result.stderr
    assert "s3cret-value" not in result.stderr
