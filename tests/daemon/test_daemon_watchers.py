"""The status fan-out: watchers hear changes of the controller's state, not the clock ticking."""

import logging
import queue
import time

from pivoice import messages as m
from pivoice.controller import Controller
from pivoice.runtime import Runtime
from pivoice.watchers import StatusFanout
from support.controller_rig import SETTINGS
from support.runtime_fakes import InertDownlink, InertMic, InertUplink


def test_a_broken_watcher_is_logged_and_the_others_still_hear(caplog):
    fanout, heard = StatusFanout(), []

    def broken(status):
        raise RuntimeError("LED driver gone")
    fanout.add(broken)
    fanout.add(heard.append)
    with caplog.at_level(logging.ERROR):
        fanout({"state": "active"})
    assert heard == [{"state": "active"}]
    assert "status watcher" in caplog.text and fanout.last == {"state": "active"}
    fanout.remove(heard.append)
    fanout({"state": "idle"})
    assert heard == [{"state": "active"}]


class _SilentTokens:
    """Never answers, so a press stays `connecting`."""

    def request(self, on_ready, on_failed): pass

    def status(self): return {"state": "ok"}


def test_the_runtime_tells_watchers_of_state_changes_only():
    heard: queue.Queue = queue.Queue()
    runtime = Runtime(Controller(SETTINGS), mic=InertMic(), uplink_factory=lambda rate: InertUplink(),
                      downlink=InertDownlink(), tokens=_SilentTokens(), connector=None, on_status=heard.put)
    runtime.start()
    try:
        runtime.post(m.Press("ctl"))
        first = heard.get(timeout=5)
        assert first["state"] == "connecting"
        assert first["token"] == {"state": "ok"} and "metrics" in first   # the whole status, not the snapshot
        time.sleep(0.6)   # ticks pass while connecting: the conversation clock alone moves
        assert heard.empty()
        runtime.post(m.Press("ctl"))   # cancelled while connecting
        assert heard.get(timeout=5)["state"] == "idle"
    finally:
        runtime.stop()
