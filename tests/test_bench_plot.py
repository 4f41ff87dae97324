"""`scripts/bench --plot`: the wire tap's frame reader on hand-built frames; then one short real
conversation on the PulseAudio rig collected into a Timeline (its order checked) and drawn (the
PNG checked: signature, size, and each lane's colour inside its own band)."""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts" / "lib"))

from bench_wiretap import CLIENT, SERVER, FrameReader, WireEvent  # noqa: E402

UPGRADE = b"GET /v1/realtime HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n"


def frame(payload: bytes, *, opcode: int = 0x1, fin: bool = True, mask: bytes | None = None) -> bytes:
    head = bytes([(0x80 if fin else 0) | opcode])
    bit = 0x80 if mask else 0
    n = len(payload)
    if n < 126:
        head += bytes([bit | n])
    elif n < 65536:
        head += bytes([bit | 126]) + struct.pack(">H", n)
    else:
        head += bytes([bit | 127]) + struct.pack(">Q", n)
    if mask:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        head += mask
    return head + payload


def test_frame_reader_unmasks_client_frames_split_across_reads_and_skips_control_frames():
    got: list[WireEvent] = []
    reader = FrameReader(CLIENT, got.append)
    append = b'{"type":"input_audio_buffer.append","audio":"' + b"A" * 300 + b'"}'   # 16-bit length
    stream = UPGRADE + frame(b"", opcode=0x9, mask=b"\x01\x02\x03\x04") \
        + frame(append, mask=b"\x9a\x0b\xc3\x44") + frame(b'{"type":"response.create"}', mask=b"\x00\xff\x10\x20")
    cut = len(UPGRADE) + 20
    reader.feed(1.0, stream[:10])          # inside the HTTP upgrade
    reader.feed(2.0, stream[10:cut])       # the ping, then the start of the append
    assert got == []
    reader.feed(3.0, stream[cut:])
    assert [(e.t_s, e.type, e.size_bytes) for e in got] == [(3.0, "input_audio_buffer.append", len(append)),
                                                             (3.0, "response.create", 26)]


def test_frame_reader_joins_fragments_and_reads_64_bit_lengths():
    got: list[WireEvent] = []
    reader = FrameReader(SERVER, got.append)
    delta = b'{"type":"response.output_audio.delta","delta":"' + b"B" * 70000 + b'"}'
    reader.feed(0.5, UPGRADE + frame(delta))
    first, rest = b'{"event_id":"e1","type":"respo', b'nse.created","response":{"type":"x"}}'
    reader.feed(0.7, frame(first, fin=False) + frame(rest, opcode=0x0))
    assert [(e.sender, e.t_s, e.type) for e in got] == [(SERVER, 0.5, "response.output_audio.delta"),
                                                          (SERVER, 0.7, "response.created")]


# ---- one real conversation ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def collected(tmp_path_factory, pulse_rig):
    """A short question and a short spoken reply: about 8 s of conversation."""
    from support.fixtures_audio import make_speech_wav
    from support.stack import offline_stack

    from bench_plot import collect
    work = tmp_path_factory.mktemp("bench-plot")
    question = make_speech_wav(work / "question.wav", "What time is it?", lead_silence_s=0.05, tail_silence_s=1.0)
    with offline_stack(work, "--reply-text", "It is noon.") as stack:
        return collect(stack, pulse_rig, question), work


def test_collected_timeline_is_in_conversation_order(collected):
    tl, _ = collected
    assert tl.press_ms == 0
    gate_open, gate_close = tl.gate_ms[0]
    assert 0 <= gate_open < tl.appends_ms[0] < gate_close, tl.notes
    assert tl.connected_ms is not None and tl.connected_ms < tl.appends_ms[0]
    assert tl.appends_ms == sorted(tl.appends_ms) and len(tl.appends_ms) >= 5
    assert tl.appends_ms[0] < tl.speech_started_ms[0] < tl.speech_stopped_ms[0] <= tl.response_created_ms[0]
    assert tl.response_created_ms[0] < tl.deltas_ms[0] and tl.deltas_ms == sorted(tl.deltas_ms)
    assert tl.deltas_ms[-1] <= tl.response_done_ms[0] < tl.end_ms
    assert "no speech" in tl.end_reason
    # the reply is heard: loud on the speaker after the first delta, until after the last one came
    after = tl.level_ms >= tl.deltas_ms[0]
    assert tl.level_dbfs[after].max() > -30
    assert tl.level_ms[after][tl.level_dbfs[after] > -40].max() > tl.deltas_ms[-1]
    # two independent views of the same latency: the daemon's metric and the tap's stamp
    lat = tl.latencies()
    assert abs(lat["press_to_first_append_wire_ms"] - lat["press_to_first_append_ms"]) < 50, lat
    assert lat["delta_to_speaker_ms"] is not None
    if tl.first_sound_ms is not None:
        assert tl.first_sound_ms >= tl.deltas_ms[0]


def test_drawn_png_shows_every_lane(collected):
    import matplotlib.image

    from bench_plot import LANES, draw
    tl, work = collected
    drawn = draw(tl, work / "timeline.png")
    data = drawn.path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and 10_000 < len(data) < 1_000_000
    pixels = matplotlib.image.imread(drawn.path)[:, :, :3]
    assert (pixels.shape[1], pixels.shape[0]) == drawn.size_px
    left, right = drawn.x_px
    for key, label, colour in LANES:
        assert drawn.artists[key], f"nothing drawn in lane {label}"
        rgb = np.array([int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5)])
        top, bottom = drawn.bands_px[key]
        band = pixels[top:bottom, left:right]
        near = (np.abs(band - rgb).max(axis=2) < 0.08).sum()
        assert near >= 20, f"lane {label}: {near} pixels of its colour in rows {top}..{bottom}"
    # the band geometry is right: the press lane's colour is not where the append ticks are
    top, bottom = drawn.bands_px["appends"]
    press_rgb = np.array([int(LANES[0][2][i:i + 2], 16) / 255 for i in (1, 3, 5)])
    assert (np.abs(pixels[top:bottom, left:right] - press_rgb).max(axis=2) < 0.08).sum() == 0
