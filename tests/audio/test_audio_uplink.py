import numpy as np
import pytest

from pivoice.audio import codec
from pivoice.audio.uplink import Chunk, SpeechEnded, SpeechStarted, Uplink
from pivoice.audio.vad_gate import VadGate
from support.fixtures_audio import read_wav


def feed(uplink, samples, rate_hz, frame_ms=20):
    n = rate_hz * frame_ms // 1000
    items = []
    for i in range(0, len(samples) - n + 1, n):
        items += uplink.process(samples[i:i + n].astype("<i2").tobytes())
    return items


@pytest.mark.parametrize("wire_format", [codec.PCM, codec.PCMU, codec.PCMA])
@pytest.mark.parametrize("mic_rate_hz", [16000, 48000])
def test_chunks_sizes_formats_and_counters(speech_wav, tmp_path, wire_format, mic_rate_hz):
    x, rate_hz, _ = read_wav(speech_wav)
    if mic_rate_hz != rate_hz:
        x = np.repeat(x, mic_rate_hz // rate_hz)  # crude upsampling is enough to exercise the path
    x = np.concatenate([x, np.zeros(mic_rate_hz, dtype=np.int16)])
    up = Uplink(mic_rate_hz, 20, VadGate(mic_rate_hz, 20, trailing_ms=800), wire_format, chunk_ms=40)
    items = feed(up, x, mic_rate_hz)
    assert isinstance(items[0], SpeechStarted) and isinstance(items[-1], SpeechEnded)
    assert [type(i) for i in items].count(SpeechStarted) == 1
    chunks = [i for i in items if isinstance(i, Chunk)]
    full = int(40 * codec.bytes_per_ms(wire_format))
    # the first chunk of a stretch leaves as soon as there is audio; the rest are full-sized
    assert 0 < len(chunks[0].payload) <= full
    assert all(len(c.payload) == full and c.duration_ms == pytest.approx(40) for c in chunks[1:-1])
    assert 0 < len(chunks[-1].payload) <= full  # the partial chunk flushed before SpeechEnded
    assert items[-2] is chunks[-1]
    wire = b"".join(c.payload for c in chunks)
    assert up.raw_bytes == (len(x) // (mic_rate_hz // 50)) * (mic_rate_hz // 50) * 2
    assert up.wire_bytes == len(wire) and up.chunks == len(chunks)
    # the wire audio is the gated speech: decoded and compared with the source at the wire rate
    sent_ms = sum(c.duration_ms for c in chunks)
    assert 3500 <= sent_ms <= 5300  # ~2.8 s speech + 0.5 s pre-roll + 0.8 s trailing (+ frame rounding)
    decoded = np.frombuffer(codec.decode(wire_format, wire), dtype="<i2").astype(float)
    assert np.abs(decoded).max() > 5000  # real speech, not silence
    assert len(decoded) == pytest.approx(sent_ms * codec.wire_rate_hz(wire_format) / 1000, abs=1)


def test_two_utterances_give_two_segments(speech_wav):
    x, rate_hz, _ = read_wav(speech_wav)
    both = np.concatenate([x, x, np.zeros(rate_hz, dtype=np.int16)])  # 1.5 s tail + 1 s lead in between
    up = Uplink(rate_hz, 20, VadGate(rate_hz, 20, trailing_ms=800), codec.PCMU)
    kinds = [type(i) for i in feed(up, both, rate_hz) if not isinstance(i, Chunk)]
    assert kinds == [SpeechStarted, SpeechEnded, SpeechStarted, SpeechEnded]


def test_press_opens_the_gate_before_speech_and_silence_closes_it_unvoiced():
    rate_hz = 16000
    up = Uplink(rate_hz, 20, VadGate(rate_hz, 20, trailing_ms=200), codec.PCM, chunk_ms=40)
    assert [type(i) for i in up.open_now()] == [SpeechStarted]
    first = up.process(bytes(640))   # one 20 ms frame of silence
    assert [type(i) for i in first] == [Chunk]   # sent at once, not after chunk_ms
    items = feed(up, np.zeros(rate_hz, dtype=np.int16), rate_hz)
    ended = [i for i in items if isinstance(i, SpeechEnded)]
    assert len(ended) == 1 and ended[0].voiced is False
    reopened = up.open_now()   # the next press opens it again, with the pre-roll since it closed
    assert isinstance(reopened[0], SpeechStarted) and all(isinstance(i, Chunk) for i in reopened[1:])
    assert up.open_now() == []   # already open: nothing new


@pytest.mark.parametrize("trailing_ms,expected", [
    (1500, [True]),          # speech starts (1.0 s) before the press's stretch times out
    (800, [False, True]),    # the press's stretch closes unvoiced; the speech opens its own
])
def test_speech_after_the_press(speech_wav, trailing_ms, expected):
    x, rate_hz, _ = read_wav(speech_wav)
    up = Uplink(rate_hz, 20, VadGate(rate_hz, 20, trailing_ms=trailing_ms), codec.PCM)
    up.open_now()
    ended = [i.voiced for i in feed(up, np.concatenate([x, np.zeros(rate_hz, dtype=np.int16)]), rate_hz)
             if isinstance(i, SpeechEnded)]
    assert ended == expected


def test_unknown_wire_format_is_named():
    with pytest.raises(ValueError, match="audio/opus"):
        Uplink(16000, 20, VadGate(16000, 20), "audio/opus")
