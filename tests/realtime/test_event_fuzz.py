"""Thousands of mutated server frames through the REAL RealtimeConnection (its reader thread, fed by
a fake websocket) into a real Controller: nothing escapes, the reader lives to the close, the
conversation ends and the next one works. Seeded and bounded (5000 frames, well under 30 s)."""

from __future__ import annotations

import base64
import json
import logging
import math
import random
import threading
import time

from pivoice import messages as m
from pivoice.controller import ACTIVE, IDLE
from pivoice.realtime.scripted import reply_events
from pivoice.realtime.session import RealtimeConnector
from support.controller_rig import PCM_100MS, SETTINGS, Rig
from support.fake_websocket import BINARY, TEXT, FakeDialer, FakeWebSocket, close, text

FRAMES = 5000
SEED = 20261130
PCM = base64.b64encode(PCM_100MS[:960]).decode()

TEMPLATES = [
    {"type": "session.updated", "session": {"type": "realtime", "audio": {"output": {"voice": "marin"}}}},
    {"type": "input_audio_buffer.speech_started", "audio_start_ms": 120, "item_id": "item_u"},
    {"type": "input_audio_buffer.speech_stopped", "audio_end_ms": 980, "item_id": "item_u"},
    {"type": "input_audio_buffer.committed", "item_id": "item_u", "previous_item_id": None},
    {"type": "conversation.item.input_audio_transcription.completed", "item_id": "item_u", "transcript": "hi"},
    {"type": "response.created", "response": {"id": "resp_f", "status": "in_progress", "output": []}},
    {"type": "response.output_audio.delta", "response_id": "resp_f", "item_id": "item_f", "output_index": 0,
     "content_index": 0, "delta": PCM},
    {"type": "response.output_audio.done", "response_id": "resp_f", "item_id": "item_f", "content_index": 0},
    {"type": "response.output_audio_transcript.done", "response_id": "resp_f", "transcript": "hello"},
    {"type": "response.output_text.done", "response_id": "resp_f", "text": "hello"},
    {"type": "response.done", "response": {"id": "resp_f", "status": "completed", "usage": {"output_tokens": 9}}},
    {"type": "error", "error": {"type": "invalid_request_error", "code": "invalid_value", "message": "m",
                                "event_id": "evt_pv_3"}},
    {"type": "rate_limits.updated", "rate_limits": [{"name": "tokens", "remaining": 5}]},
]


def _junk(rng: random.Random):
    choice = rng.randrange(16)
    if choice == 0:
        return None
    if choice == 1:
        return rng.choice([True, False])
    if choice == 2:
        return rng.choice([-1, 0, 1, 2 ** 31, 2 ** 63, -(2 ** 70), 10 ** 40])
    if choice == 3:
        return rng.choice([1.5, -0.0, math.inf, -math.inf, math.nan, 1e308])
    if choice == 4:
        return ""
    if choice == 5:
        return "x" * rng.choice([1, 300, 5000])
    if choice == 6:
        return rng.choice(["zero", "resp_f", "item_f", "!!!", "AAE", "AAEC", "\u0000\ud7ff\n"])
    if choice == 7:
        return []
    if choice == 8:
        return {}
    if choice == 9:
        nested: object = "x"
        for _ in range(rng.choice([5, 50, 400])):
            nested = [nested] if rng.random() < 0.5 else {"a": nested}
        return nested
    if choice == 10:
        return base64.b64encode(rng.randbytes(rng.choice([1, 3, 4801, 48_000]))).decode()
    if choice == 11:
        return {"id": _junk(rng), "usage": _junk(rng)}
    if choice == 12:
        return [_junk(rng) for _ in range(3)]
    return rng.choice(["response.done", "error", "response.created", "response.output_audio.delta"])


def _paths(event: dict, prefix=()) -> list[tuple]:
    out = []
    for key, value in event.items():
        out.append(prefix + (key,))
        if isinstance(value, dict):
            out += _paths(value, prefix + (key,))
    return out


def _mutate_event(rng: random.Random, event: dict) -> dict:
    event = json.loads(json.dumps(event))
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        paths = _paths(event)
        if not paths:
            break
        path = rng.choice(paths)
        parent = event
        for key in path[:-1]:
            parent = parent[key]
        if not isinstance(parent, dict) or path[-1] not in parent:
            continue
        if rng.random() < 0.3:
            del parent[path[-1]]
        else:
            parent[path[-1]] = _junk(rng)
    return event


def fuzz_frames(rng: random.Random, count: int) -> list:
    frames = []
    for _ in range(count):
        roll = rng.random()
        template = rng.choice(TEMPLATES)
        if roll < 0.25:
            frames.append(text(template))                                   # valid
        elif roll < 0.80:
            frames.append(text(json.dumps(_mutate_event(rng, template), allow_nan=True).encode()))
        elif roll < 0.85:
            raw = json.dumps(template).encode()
            frames.append((TEXT, raw[: rng.randrange(len(raw))]))              # truncated JSON
        elif roll < 0.88:
            frames.append((TEXT, rng.randbytes(rng.randrange(1, 200))))          # garbage, often not UTF-8
        elif roll < 0.91:
            frames.append((BINARY, rng.randbytes(rng.randrange(0, 200))))        # binary frames
        elif roll < 0.93:
            depth = rng.choice([1000, 100_000])
            frames.append((TEXT, b'{"type": "error", "error": ' + b"[" * depth + b"]" * depth + b"}"))
        elif roll < 0.95:
            frames.append(text(rng.choice([[], "error", 7, None, [template]])))  # JSON, not an object
        elif roll < 0.955:
            frames.append(text({**TEMPLATES[8], "transcript": "la " * 400_000}))  # a 1.2 MB event
        else:
            frames.append(text({**template, "type": _junk(rng)}))
    return frames


def test_mutated_server_events_through_the_real_connection(thread_crashes, caplog):
    caplog.set_level(logging.DEBUG)
    rng = random.Random(SEED)
    frames = [text({"type": "session.created", "session": {}})] + fuzz_frames(rng, FRAMES) + \
        [close(1001, "going away")]
    follow_up_open = threading.Event()
    follow_up = FakeWebSocket([text({"type": "session.created"}),
                               *map(text, reply_events("resp_ok", "item_ok", PCM_100MS * 3))], hold_open=follow_up_open)
    dialer = FakeDialer(FakeWebSocket(frames), follow_up)
    rig = Rig(SETTINGS, RealtimeConnector("ws://127.0.0.1:9/v1/realtime", "gpt-realtime", connect_timeout_s=1,
                                          create_connection=dialer))
    started = time.monotonic()

    rig.start()
    conn = rig.conn
    while rig.phase == ACTIVE and time.monotonic() - started < 30:
        if rig.pump(wait_s=0.2):
            rig.handle(m.Tick(), rig.now_s + 0.001)
            if rng.random() < 0.05:
                rig.handle(m.PlaybackDrained())
    assert conn.join(5), "the reader thread is still running after the close"
    elapsed_s = time.monotonic() - started

    # the close went through the reader and ended the conversation (after playing out what arrived)
    rig.handle(m.PlaybackDrained(), rig.now_s + 0.1)
    rig.tick_until(rig.now_s + 20)
    assert rig.phase == IDLE and "1001 going away" in rig.ctrl.last_end_reason, rig.ctrl.last_end_reason
    assert rig.handled["SocketClosed"] == 1
    assert rig.handled["ServerEvent"] + rig.handled["AudioDelta"] > FRAMES // 3, rig.handled
    assert not thread_crashes, thread_crashes
    tracebacks = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert not tracebacks, tracebacks[:3]
    assert elapsed_s < 30

    # and the next conversation works
    rig.start(rig.now_s + 1)
    deadline = time.monotonic() + 5
    while not rig.ctrl.reply_complete:
        rig.pump(wait_s=0.2)
        assert time.monotonic() < deadline, rig.kinds()[-5:]
    rig.handle(m.PlaybackDrained())
    assert rig.kinds()[-1] == "reply_played"
    rig.handle(m.Press())
    follow_up_open.set()
    assert rig.ctrl.last_end_code == "user" and rig.phase == IDLE
    print(f"fuzz: {FRAMES} frames in {elapsed_s:.2f} s; handled {dict(rig.handled)}")
