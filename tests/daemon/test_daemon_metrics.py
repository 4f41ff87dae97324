"""`ctl status` figures stay the same size however long the daemon runs."""

import json

from pivoice.metrics import Latency, Metrics


def test_status_figures_do_not_grow_with_conversations():
    metrics = Metrics()
    sizes = []
    for n in range(1, 2001):
        metrics.press_to_first_append.add(30.0 + n % 7)
        metrics.delta_to_speaker.add(1.0)
        metrics.delta_to_device.add(2.0)
        metrics.conversations += 1
        if n in (1000, 2000):
            sizes.append(len(json.dumps(metrics.as_dict())))
    assert sizes[0] == sizes[1]   # (the same number of digits in the counters)
    figures = metrics.as_dict()["press_to_first_append_ms"]
    assert figures["count"] == 2000 and len(figures["recent_ms"]) == 10


def test_summary_figures():
    latency = Latency(window=100)
    assert latency.as_dict()["median_ms"] is None and latency.as_dict()["count"] == 0
    for value in range(1, 101):
        latency.add(float(value))
    latency.add(1000.0)   # pushes 1 out of the window
    d = latency.as_dict()
    assert (d["count"], d["max_ms"], d["median_ms"], d["p95_ms"]) == (101, 1000.0, 51.5, 96.0)
    assert d["recent_ms"][-1] == 1000.0


# ---- per conversation: usage, audio seconds, latencies, ends ----

from pivoice import messages as m   # noqa: E402
from pivoice.metrics import input_format_of   # noqa: E402

USAGE = {"total_tokens": 130, "input_tokens": 80, "output_tokens": 50,
         "input_token_details": {"text_tokens": 20, "audio_tokens": 60, "cached_tokens": 0},
         "output_token_details": {"text_tokens": 10, "audio_tokens": 40}}


def done(usage):
    return m.ServerEvent({"type": "response.done", "response": {"id": "r", "usage": usage}})


def test_usage_and_audio_seconds_add_up_per_conversation_and_since_start():
    metrics = Metrics("audio/pcmu", "audio/pcm")   # 8 bytes/ms up, 48 bytes/ms down
    clock = iter([10.0, 10.25, 10.3]).__next__
    metrics.figures.started(1_700_000_000.0, 10.0)
    metrics.press_at_s = 10.0
    metrics.appended(8000, clock)                 # 1 s of G.711 sent, 250 ms after the press
    metrics.figures.heard(m.AudioDelta("r", "i", 0, b"\0" * 48_000))   # 1 s of 24 kHz PCM
    metrics.figures.heard(m.PlayedDelta(500.0))   # ... and half a second the socket's reader played
    metrics.figures.heard(done(USAGE))
    metrics.figures.heard(done({"output_tokens": 3}))   # a server that sends less: no details, counted as 0
    metrics.figures.first_reply_heard(42.04)
    metrics.figures.first_reply_heard(99.0)       # the first reply's figure stays
    metrics.figures.rolled_over(2)
    live = metrics.figures.as_dict(12.0)
    assert live["last_conversation"]["duration_s"] == 2.0 and live["last_conversation"]["end_code"] is None
    metrics.figures.ended("user", "ended by a press", 2, 40.0)
    metrics.figures.started(1_700_000_100.0, 50.0)   # a second one, with one response
    metrics.figures.heard(done(USAGE))
    metrics.figures.ended("stalled", "server stopped answering", 0, 55.0)
    figures = metrics.figures.as_dict(60.0)
    assert figures["usage"] == {"input_text_tokens": 40, "input_audio_tokens": 120, "output_text_tokens": 20,
                                "output_audio_tokens": 80, "total_tokens": 260, "audio_sent_s": 1.0,
                                "audio_received_s": 1.5, "responses": 3}
    assert figures["ends"] == {"user": 1, "stalled": 1}
    last = figures["last_conversation"]
    assert last == {"input_text_tokens": 20, "input_audio_tokens": 60, "output_text_tokens": 10,
                    "output_audio_tokens": 40, "total_tokens": 130, "audio_sent_s": 0.0, "audio_received_s": 0.0,
                    "responses": 1, "started_at": 1_700_000_100.0, "duration_s": 5.0,
                    "end_reason": "server stopped answering", "end_code": "stalled",
                    "press_to_first_append_ms": None, "delta_to_speaker_ms": None, "rollovers": 0}


def test_the_first_conversations_latencies_and_rollovers_are_kept_with_it():
    metrics = Metrics()
    metrics.figures.started(1.0, 0.0)
    metrics.press_at_s = 0.0
    metrics.appended(4800, lambda: 0.1234)
    metrics.figures.first_reply_heard(42.04)
    metrics.figures.ended("idle", "no speech for 10 s", 3, 30.0)
    last = metrics.figures.as_dict(99.0)["last_conversation"]
    assert (last["press_to_first_append_ms"], last["delta_to_speaker_ms"], last["rollovers"]) == (123.4, 42.0, 3)
    assert last["audio_sent_s"] == 0.1 and last["duration_s"] == 30.0


def test_before_any_conversation_and_the_input_format_of_a_session():
    figures = Metrics().figures.as_dict(0.0)
    assert figures["last_conversation"] is None and figures["ends"] == {} and figures["usage"]["responses"] == 0
    assert input_format_of({"audio": {"input": {"format": {"type": "audio/pcma"}}}}) == "audio/pcma"
    assert input_format_of({"type": "realtime"}) == "audio/pcm"


def test_the_usage_figures_pass_the_frame_parser():
    from pivoice.realtime.events import OPCODE_TEXT, FrameParser
    frame = json.dumps({"type": "response.done", "response": {"id": "r", "usage": USAGE}}).encode()
    metrics = Metrics()
    metrics.figures.heard(FrameParser().parse(OPCODE_TEXT, frame))
    usage = metrics.figures.as_dict(0.0)["usage"]
    assert (usage["input_audio_tokens"], usage["output_audio_tokens"], usage["total_tokens"]) == (60, 40, 130)
