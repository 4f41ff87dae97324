"""The play path: reply deltas played by the socket's reader thread along the controller's route."""

import threading
import time

import numpy as np

from pivoice import messages as m
from pivoice.audio.playpath import PlayPath
from pivoice.controller import Controller
from pivoice.realtime.scripted import ScriptedConnector, reply_events
from pivoice.runtime import Runtime
from support.controller_rig import SETTINGS
from support.runtime_fakes import InertMic, InertUplink, ReadyTokens


class RecordingDownlink:
    """Records each call with the thread that made it; stop() reports what it was asked to."""

    first_sample_at = None

    def __init__(self):
        self.calls: list[tuple[str, str, int]] = []
        self.drained = None

    def _log(self, what, n=0):
        self.calls.append((what, threading.current_thread().name, n))

    def open(self, on_drained, on_error=None): self.drained = on_drained
    def begin_reply(self): self._log("begin")
    def play(self, payload): self._log("play", len(payload))
    def finish_reply(self): self._log("finish")
    def stop(self): self._log("stop"); return 0
    def check_stream(self): pass
    def stats(self): return {}
    def close(self): pass
    def device_first_sample_at(self): return None


def delta(response_id, payload=b"\x01\x00" * 2400):
    return m.AudioDelta(response_id, "item_1", 0, payload)


def test_only_the_routed_response_and_whole_samples_are_played_and_counted_in_order():
    down, now = RecordingDownlink(), [1.0]
    path = PlayPath(down, "audio/pcm", clock=lambda: now[0])
    assert not path.offer(delta("resp_1"))                 # no route yet: the controller's
    path.route("resp_1")
    assert path.offer(delta("resp_1"))
    now[0] = 2.0
    assert path.offer(delta("resp_1", b"\x01\x00" * 480))
    assert not path.offer(delta("resp_2"))                 # another response: the controller's
    assert not path.offer(delta("resp_1", b"\x01\x00\x02"))  # half a sample: the controller warns
    assert [c[0] for c in down.calls] == ["play", "play"]
    assert path.take_played(before_s=1.5) == [m.PlayedDelta(100.0)]   # only what came before a drain
    assert path.take_played() == [m.PlayedDelta(20.0)] and path.take_played() == []
    path.route(None)
    assert not path.offer(delta("resp_1")) and len(down.calls) == 2


def test_a_reply_plays_on_the_reader_thread_after_its_first_delta_and_a_press_stops_it_for_good():
    down, peer = RecordingDownlink(), ScriptedConnector()
    notes: list[m.Note] = []
    runtime = Runtime(Controller(SETTINGS), mic=InertMic(), uplink_factory=lambda rate: InertUplink(),
                      downlink=down, tokens=ReadyTokens(), connector=peer, on_note=notes.append)
    runtime.start()
    try:
        runtime.post(m.Press())
        conn = peer.wait_for_connection(1)
        audio = b"\x01\x00" * 24000                           # 1 s, in 10 deltas of 100 ms
        events = reply_events("resp_1", "item_1", audio, done=False)
        first = next(i for i, e in enumerate(events) if e["type"] == "response.output_audio.delta")
        conn.play_all(events[:first + 1])                     # up to the first delta
        deadline = time.monotonic() + 5
        while runtime.status().get("response_active") is not True or not runtime.status()["playing"]:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        time.sleep(0.1)                                       # the route opens with that delta's actions
        conn.play_all(events[first + 1:])                     # the rest: played on this (the reader's) thread
        plays = [(thread, n) for what, thread, n in down.calls if what == "play"]
        assert plays[0][0] == "controller" and {t for t, _ in plays[1:]} == {threading.current_thread().name}
        assert sum(n for _, n in plays) == len(audio)
        runtime.post(m.Press())                               # barge-in
        deadline = time.monotonic() + 5
        while not any(n.kind == "truncated" for n in notes):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        before = len(down.calls)
        conn.play_all(reply_events("resp_1", "item_1", audio[:4800], done=False)[-1:])   # a late delta
        time.sleep(0.2)
        assert [c[0] for c in down.calls[before:]] == []      # the cancelled reply never plays again
        truncated = next(n for n in notes if n.kind == "truncated")
        assert "0 ms" in truncated.text                       # what the (fake) speaker says was heard
        assert runtime.controller.reply_received_ms == 1000  # every delta counted, wherever it played
    finally:
        runtime.stop()
