"""sd_notify without a dependency: datagrams to $NOTIFY_SOCKET, sd_watchdog_enabled semantics."""

from __future__ import annotations

import logging
import os
import socket
import uuid

import pytest

from pivoice.sdnotify import SystemdNotifier, reloading_state, watchdog_interval_s


@pytest.fixture
def notify_socket(tmp_path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.settimeout(2)
    yield sock, str(tmp_path / "notify")
    sock.close()


def test_notify_sends_one_datagram_per_call(notify_socket):
    sock, path = notify_socket
    notifier = SystemdNotifier.from_env({"NOTIFY_SOCKET": path})
    assert notifier.enabled
    notifier.notify("READY=1")
    notifier.notify("WATCHDOG=1")
    assert [sock.recv(4096), sock.recv(4096)] == [b"READY=1", b"WATCHDOG=1"]


def test_notify_reaches_an_abstract_namespace_socket():
    name = f"pivoice-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(2)
        SystemdNotifier("@" + name).notify("STOPPING=1")
        assert sock.recv(4096) == b"STOPPING=1"


def test_without_notify_socket_nothing_is_sent_and_nothing_fails():
    notifier = SystemdNotifier.from_env({})
    assert not notifier.enabled
    notifier.notify("READY=1")   # no socket, no exception


def test_a_dead_notify_socket_is_logged_not_raised(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="pivoice.sdnotify"):
        SystemdNotifier(str(tmp_path / "nobody-listens")).notify("READY=1")
    assert "cannot notify systemd" in caplog.text and "READY" in caplog.text


def test_reloading_carries_a_monotonic_timestamp():
    lines = reloading_state().split("\n")
    assert lines[0] == "RELOADING=1"
    assert lines[1].startswith("MONOTONIC_USEC=") and int(lines[1].split("=")[1]) > 0


@pytest.mark.parametrize("env,expected", [
    ({}, None),
    ({"WATCHDOG_USEC": "15000000"}, 5.0),                               # no PID: meant for us
    ({"WATCHDOG_USEC": "300000", "WATCHDOG_PID": str(os.getpid())}, 0.1),
    ({"WATCHDOG_USEC": "300000", "WATCHDOG_PID": "1"}, None),           # inherited from a parent: not ours
    ({"WATCHDOG_USEC": "0"}, None),
    ({"WATCHDOG_USEC": "-5"}, None),
    ({"WATCHDOG_USEC": "soon"}, None),
    ({"WATCHDOG_USEC": "300000", "WATCHDOG_PID": "me"}, None),
])
def test_watchdog_interval_follows_sd_watchdog_enabled(env, expected):
    interval = watchdog_interval_s(env)
    assert interval == (None if expected is None else pytest.approx(expected))


def test_watchdog_pid_is_compared_with_the_given_pid():
    assert watchdog_interval_s({"WATCHDOG_USEC": "600000", "WATCHDOG_PID": "4242"}, pid=4242) == pytest.approx(0.2)
