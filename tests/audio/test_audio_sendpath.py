"""The send path on the mic thread: the routes the controller sets, in order, bounded."""

from pivoice import messages as m
from pivoice.audio.sendpath import BUFFER, DROP, SEND, SendPath
from pivoice.metrics import Metrics


class ScriptUplink:
    """Each frame stands for what the DSP would make of it: b"<" speech starts, b">" it ends,
    anything else is a 100 ms chunk of that payload."""

    def __init__(self):
        self.opened = 0

    def open_now(self):
        self.opened += 1
        return [m.SpeechStarted()]

    def process_frames(self, frames):
        out = []
        for f in frames:
            out.append(m.SpeechStarted() if f == b"<" else m.SpeechEnded() if f == b">" else m.Chunk(f, 100))
        return out


class Wire:
    """The session connection as the path sees it; `log` interleaves sends with posted events."""

    def __init__(self, log):
        self.log = log

    def send_audio(self, payload):
        self.log.append(("append", payload))


def make(max_backlog_ms=30_000):
    log, metrics = [], Metrics()
    path = SendPath(lambda ev: log.append(("post", type(ev).__name__)), metrics, lambda: 5.0,
                    max_backlog_ms=max_backlog_ms)
    return path, log, metrics


def test_frames_before_begin_wait_for_the_uplink_and_the_press_opens_the_gate_first():
    path, log, metrics = make()
    path.on_frames([b"a"])                 # the mic is open before the uplink exists
    assert log == [] and metrics.raw_capture_bytes == 1
    assert [type(e).__name__ for e in path.begin(ScriptUplink())] == ["SpeechStarted"]   # for the caller
    assert log == []                       # the chunk is kept: the route is "buffer" until told
    path.attach(Wire(log))
    assert path.route(SEND) == 100
    assert log == [("append", b"a")]


def test_kept_audio_goes_out_in_order_when_routed_to_send_and_later_chunks_follow():
    path, log, metrics = make()
    path.begin(ScriptUplink())
    path.on_frames([b"1", b"2"])
    path.attach(Wire(log))
    path.on_frames([b"3"])                 # connected but not yet routed: still kept
    assert [e for e in log if e[0] == "append"] == []
    metrics.press_at_s = 4.9
    assert path.route(SEND) == 300
    path.on_frames([b"4", b">"])
    assert log == [("append", b"1"), ("append", b"2"), ("append", b"3"),
                   ("append", b"4"), ("post", "SpeechEnded")]   # the end is posted after its audio left
    assert metrics.wire_audio_bytes == 4
    assert metrics.press_to_first_append.as_dict()["recent_ms"] == [100.0]


def test_the_backlog_is_bounded_dropping_the_oldest():
    path, log, _ = make(max_backlog_ms=500)
    path.begin(ScriptUplink())
    path.on_frames([bytes([i]) for i in range(8)])
    path.attach(Wire(log))
    assert path.route(SEND) == 500
    assert [p for kind, p in log if kind == "append"] == [bytes([i]) for i in range(3, 8)]


def test_drop_discards_and_clears_the_backlog_and_no_socket_means_nothing_sent():
    path, log, metrics = make()
    path.begin(ScriptUplink())
    path.on_frames([b"kept"])
    assert path.route(DROP) == 0
    path.on_frames([b"muted"])
    path.attach(Wire(log))
    assert path.route(SEND) == 0           # what was kept before the drop is gone too
    path.attach(None)
    path.on_frames([b"no socket"])
    assert [e for e in log if e[0] == "append"] == [] and metrics.wire_audio_bytes == 0
    assert path.route(BUFFER) == 0
