"""The main thread's signal loop (pivoice.reload.Service) with recording daemons: the order of a
hand-over, refusals, waiting for the conversation to end, and that no event is dropped meanwhile.
The real daemon process is exercised in test_daemon_systemd_e2e.py."""

from __future__ import annotations

import logging
import signal
from dataclasses import dataclass

import pytest

from pivoice.reload import POLL_S, Service, Switchboard


@dataclass(frozen=True)
class Cfg:
    file: str


class FakeRuntime:
    def __init__(self, name, journal, idle=True, retire_answers=()):
        self.name, self.journal, self.idle = name, journal, idle
        self.retire_answers = list(retire_answers)
        self.events: list = []

    def post(self, event):
        self.events.append(event)

    def status(self):
        return {"state": "idle" if self.idle else "active", "runtime": self.name}

    def retire(self, timeout_s):
        answer = self.retire_answers.pop(0) if self.retire_answers else self.idle
        self.journal.append(f"{self.name}.retire->{answer}")
        return answer


class FakeDaemon:
    def __init__(self, name, journal, *, fail_edges=False, **runtime):
        self.cfg = Cfg(f"/etc/{name}.yaml")
        self.name, self.journal, self.fail_edges = name, journal, fail_edges
        self.runtime = FakeRuntime(name, journal, **runtime)
        self.post = self.get_status = None

    def _log(self, what):
        self.journal.append(f"{self.name}.{what}")

    def start_core(self):
        self._log("start_core")

    def start_edges(self, post, get_status):
        self._log("start_edges")
        if self.fail_edges:
            raise OSError("control.socket_path /nowhere/control.sock: cannot bind: No such file or directory")
        self.post, self.get_status = post, get_status

    def stop_edges(self):
        self._log("stop_edges")

    def stop_core(self):
        self._log("stop_core")

    def stop(self):
        self._log("stop")

    def discard(self):
        self._log("discard")


class Notes:
    def __init__(self):
        self.sent: list[str] = []

    def notify(self, state):
        self.sent.append(state.split("\n")[0])


class Signals:
    """Plays a script of (signal or None, action) as the wait function; each action runs before its
    signal is returned. Ends with SIGTERM, so a test that forgets to stop cannot hang."""

    def __init__(self, *script):
        self.script = list(script)
        self.timeouts: list[float | None] = []

    def __call__(self, timeout_s):
        self.timeouts.append(timeout_s)
        if not self.script:
            return signal.SIGTERM
        sig, action = self.script.pop(0)
        if action is not None:
            action()
        return sig


def make_service(daemon, signals, load, rebuild=None):
    notes = Notes()
    service = Service(daemon, load=load, rebuild=rebuild or (lambda cfg: pytest.fail("unexpected rebuild")),
                      notifier=notes, wait=signals)
    service.start()
    return service, notes


def test_sighup_while_idle_applies_the_new_config_in_order():
    journal = []
    old, new = FakeDaemon("old", journal), FakeDaemon("new", journal)
    service, notes = make_service(old, Signals((signal.SIGHUP, None)), load=lambda: new)
    journal.clear()
    assert service.run() == 0
    assert journal[:6] == ["old.retire->True", "old.stop_core", "new.start_core", "old.stop_edges",
                           "new.start_edges", "new.stop"]
    assert notes.sent == ["RELOADING=1", "READY=1", "STOPPING=1"]
    assert service.reloads == 1 and service.daemon is new
    assert service.status()["config"] == {"file": "/etc/new.yaml", "reloads": 1, "reload_pending": False}


def test_a_bad_config_is_refused_and_the_old_one_keeps_running(caplog):
    journal = []
    old = FakeDaemon("old", journal)

    def load():
        raise ValueError("/etc/old.yaml: tokens.secret_file: secret file /x: does not exist")
    service, notes = make_service(old, Signals((signal.SIGHUP, None)), load=load)
    with caplog.at_level(logging.INFO, logger="pivoice.reload"):
        assert service.run() == 0
    assert "reload refused: /etc/old.yaml: tokens.secret_file: secret file /x: does not exist" in caplog.text
    assert "old.retire->True" not in journal and service.daemon is old and service.reloads == 0
    assert "RELOADING=1" not in notes.sent


def test_an_unexpected_error_while_loading_is_refused_too(caplog):
    journal = []
    old = FakeDaemon("old", journal)

    def load():
        raise RuntimeError("lgpio: cannot open /dev/gpiochip0")
    service, _ = make_service(old, Signals((signal.SIGHUP, None)), load=load)
    with caplog.at_level(logging.ERROR, logger="pivoice.reload"):
        assert service.run() == 0
    assert "reload refused: /etc/old.yaml: RuntimeError: lgpio: cannot open /dev/gpiochip0" in caplog.text
    assert service.daemon is old


def test_a_conversation_in_progress_finishes_before_the_new_config_applies(caplog):
    journal = []
    old, new = FakeDaemon("old", journal, idle=False), FakeDaemon("new", journal)

    def conversation_ends():
        old.runtime.idle = True
    signals = Signals((signal.SIGHUP, None), (None, None), (None, None), (None, conversation_ends))
    service, _ = make_service(old, signals, load=lambda: new)
    journal.clear()
    with caplog.at_level(logging.INFO, logger="pivoice.reload"):
        assert service.run() == 0
    assert "reload: waiting for the conversation to end" in caplog.text
    assert signals.timeouts[:4] == [None, POLL_S, POLL_S, POLL_S]   # polls only while a reload waits
    assert journal.index("old.retire->True") == 0 and service.daemon is new
    assert "reload: applied /etc/new.yaml" in caplog.text


def test_a_press_that_beats_the_retire_request_is_kept_and_the_reload_waits():
    journal = []
    old, new = FakeDaemon("old", journal, retire_answers=[False]), FakeDaemon("new", journal)
    signals = Signals((signal.SIGHUP, None), (None, None))
    service, _ = make_service(old, signals, load=lambda: new)
    journal.clear()
    assert service.run() == 0
    # first try refused (a press got in), the edges went back to the old runtime; the next poll applied it
    assert journal[:3] == ["old.retire->False", "old.retire->True", "old.stop_core"]
    assert service.daemon is new


def test_events_posted_during_the_hand_over_reach_the_new_runtime():
    journal = []
    old, new = FakeDaemon("old", journal), FakeDaemon("new", journal)
    board = Switchboard()
    board.post("early")                 # before any runtime: held
    board.connect(old.runtime)
    board.post("a")
    board.hold()
    board.post("b")                     # mid-swap: held
    board.connect(new.runtime)
    board.post("c")
    assert old.runtime.events == ["early", "a"]
    assert new.runtime.events == ["b", "c"]
    assert board.status()["runtime"] == "new"


def test_a_new_daemon_that_cannot_start_falls_back_to_the_old_config(caplog):
    journal = []
    old = FakeDaemon("old", journal)
    new = FakeDaemon("new", journal, fail_edges=True)
    again = FakeDaemon("again", journal)
    rebuilt_from = []

    def rebuild(cfg):
        rebuilt_from.append(cfg)
        return again
    service, notes = make_service(old, Signals((signal.SIGHUP, None)), load=lambda: new, rebuild=rebuild)
    with caplog.at_level(logging.ERROR, logger="pivoice.reload"):
        assert service.run() == 0
    assert "reload failed: /etc/new.yaml: control.socket_path /nowhere/control.sock: cannot bind" in caplog.text
    assert rebuilt_from == [old.cfg] and service.daemon is again and service.reloads == 0
    assert "new.stop" in journal and journal.index("again.start_edges") > journal.index("new.stop")
    assert notes.sent[-2:] == ["READY=1", "STOPPING=1"]


def test_sigterm_stops_and_discards_a_waiting_reload():
    journal = []
    old, new = FakeDaemon("old", journal, idle=False), FakeDaemon("new", journal)
    service, notes = make_service(old, Signals((signal.SIGHUP, None), (signal.SIGTERM, None)),
                                  load=lambda: new)
    assert service.run() == 0
    assert "new.discard" in journal and "old.stop" in journal and "new.start_core" not in journal
    assert notes.sent == ["STATUS=reload waiting for the conversation to end", "STOPPING=1"]
