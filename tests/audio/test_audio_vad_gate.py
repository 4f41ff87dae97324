import subprocess

import numpy as np
import pytest

from pivoice.audio.vad_gate import Audio, SpeechEnd, SpeechStart, VadGate
from support.fixtures_audio import read_wav


class ScriptedVad:
    """webrtcvad stand-in: a frame is speech when its first sample is non-zero."""

    def set_mode(self, mode):
        self.mode = mode

    def is_speech(self, buf, rate_hz):
        return buf[:2] != b"\x00\x00"


def frames(pattern, samples=320):
    """One frame per character; sample 0 says voiced or not, sample 1 carries the frame index."""
    out = []
    for i, c in enumerate(pattern):
        f = np.zeros(samples, dtype="<i2")
        f[0], f[1] = (1000 if c == "1" else 0), i
        out.append(f.tobytes())
    return out


def index_of(frame):
    return int(np.frombuffer(frame, dtype="<i2")[1])


def run(gate, frame_list):
    """[(frame index, output)] for every output."""
    return [(i, out) for i, f in enumerate(frame_list) for out in gate.process(f)]


def scripted_gate(**kw):
    kw = {"preroll_ms": 100, "trailing_ms": 100, "warmup_ms": 0, "vad_factory": ScriptedVad, **kw}
    return VadGate(16000, 20, **kw)


def test_isolated_voiced_frames_do_not_open_three_of_five_do():
    gate = scripted_gate()
    assert run(gate, frames("0100100101001001000")) == []
    outs = run(gate, frames("10101"))
    assert isinstance(outs[0][1], SpeechStart) and outs[0][0] == 4


def test_preroll_trailing_and_extension():
    gate = scripted_gate()  # 5 frames pre-roll, 5 frames trailing
    fl = frames("0" * 10 + "111" + "0000" + "1" + "0" * 8)
    outs = run(gate, fl)
    kinds = [type(o).__name__ for _, o in outs]
    assert kinds[0] == "SpeechStart" and kinds.count("SpeechStart") == 1 and kinds.count("SpeechEnd") == 1
    sent = [index_of(o.frame) for _, o in outs if isinstance(o, Audio)]
    assert sent == list(range(sent[0], 23)), "frames must go out once each, in order"
    # opened at frame 12 (3 of 5): at least 5 frames of pre-roll before the first voiced frame (10)
    opened_at = outs[0][0]
    assert opened_at == 12 and sent[0] <= 10 - 5
    # voice at 17 re-armed the 5-frame trailing countdown: closes right after frame 22
    end_at = [i for i, o in outs if isinstance(o, SpeechEnd)][0]
    assert end_at == 17 + 5 and isinstance(outs[-1][1], SpeechEnd)


def test_warmup_and_reset():
    gate = scripted_gate(warmup_ms=100)
    assert run(gate, frames("11111")) == []  # VAD start-up transient is ignored
    assert isinstance(run(gate, frames("111"))[0][1], SpeechStart)
    gate.reset()
    assert not gate.is_open and run(gate, frames("00")) == []


def test_long_frames_are_voted():
    gate = VadGate(16000, 40, preroll_ms=0, trailing_ms=40, start_ms=40, warmup_ms=0, vad_factory=ScriptedVad)
    half = np.concatenate([np.full(320, 1000), np.zeros(320)]).astype("<i2").tobytes()
    assert gate.is_voiced(half)  # 1 of 2 pieces voiced counts (ties go to speech)
    with pytest.raises(ValueError, match="multiple of 10"):
        VadGate(16000, 25)


def gate_run_on(samples, rate_hz, **kw):
    frame = rate_hz // 50
    gate = VadGate(rate_hz, 20, preroll_ms=500, trailing_ms=800, **kw)
    fl = [samples[i:i + frame].astype("<i2").tobytes() for i in range(0, len(samples) - frame + 1, frame)]
    return fl, run(gate, fl)


def speech_bounds(samples, rate_hz, threshold=500):
    loud = np.flatnonzero(np.abs(samples.astype(int)) > threshold)
    return loud[0] / rate_hz, loud[-1] / rate_hz


def check_one_segment(fl, outs, samples, rate_hz, frame_s=0.02):
    onset_s, end_s = speech_bounds(samples, rate_hz)
    kinds = [type(o) for _, o in outs]
    assert kinds.count(SpeechStart) == 1 and kinds.count(SpeechEnd) == 1, kinds
    audio = [(i, o.frame) for i, o in outs if isinstance(o, Audio)]
    end_i = [i for i, o in outs if isinstance(o, SpeechEnd)][0]
    first_i = end_i + 1 - len(audio)  # the last frame sent is the one that closed the gate
    # what went out is one contiguous stretch of the input, unaltered
    assert b"".join(f for _, f in audio) == b"".join(fl[first_i:first_i + len(audio)])
    assert first_i * frame_s <= onset_s - 0.5, "pre-roll shorter than preroll_ms"
    last_s = (first_i + len(audio)) * frame_s
    assert end_s + 0.8 <= last_s <= end_s + 0.8 + 0.3, "trailing audio not ~trailing_ms"


def test_real_speech_gated(speech_wav):
    x, rate_hz, _ = read_wav(speech_wav)
    fl, outs = gate_run_on(np.concatenate([x, np.zeros(rate_hz, dtype=np.int16)]), rate_hz)
    check_one_segment(fl, outs, x, rate_hz)


def test_silence_and_steady_noise_give_no_output():
    rng = np.random.default_rng(7)
    for samples in (np.zeros(16000 * 3), rng.normal(0, 300, 16000 * 3)):
        assert gate_run_on(samples.astype(np.int16), 16000)[1] == []


def test_speech_in_noise(speech_wav):
    x, rate_hz, _ = read_wav(speech_wav)
    lead = np.zeros(rate_hz, dtype=np.int16)  # 2 s of noise before the speech in total
    clean = np.concatenate([lead, x, np.zeros(rate_hz, dtype=np.int16)])
    noisy = clean + np.random.default_rng(3).normal(0, 300, len(clean))  # ~20 dB SNR
    fl, outs = gate_run_on(np.clip(noisy, -32768, 32767).astype(np.int16), rate_hz)
    check_one_segment(fl, outs, clean, rate_hz)


def test_speech_at_44k1_decides_on_a_16k_copy(speech_wav, tmp_path):
    wav44 = tmp_path / "speech44k1.wav"
    subprocess.run(["sox", str(speech_wav), "-r", "44100", str(wav44)], check=True)
    x, rate_hz, _ = read_wav(wav44)
    assert rate_hz == 44100
    fl, outs = gate_run_on(np.concatenate([x, np.zeros(rate_hz, dtype=np.int16)]), rate_hz)
    check_one_segment(fl, outs, x, rate_hz)
