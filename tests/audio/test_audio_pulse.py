"""Real PortAudio devices: the PulseAudio virtual mic and speaker, through ALSA's pulse/default PCMs."""

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from pivoice.audio.capture import PyAudioMic
from pivoice.audio.playback import PyAudioSpeaker
from pivoice.audio.vad_gate import Audio, SpeechEnd, SpeechStart, VadGate
from support.fixtures_audio import make_speech_wav, read_wav, tone

pytestmark = pytest.mark.pulse


def test_mic_captures_speech_fed_through_pulse_and_the_gate_detects_it(pulse_rig, speech_wav):
    frames, lock = [], threading.Lock()

    def on_frames(block):
        with lock:
            frames.extend(block)

    mic = PyAudioMic("default", 16000, 20)
    mic.open(on_frames)
    try:
        time.sleep(0.3)
        feeder = pulse_rig.feed(speech_wav)
        assert feeder.wait(15) == 0, feeder.stderr.read()
        time.sleep(0.3)
    finally:
        mic.close()
    n_after_close = len(frames)
    time.sleep(0.1)
    assert len(frames) == n_after_close  # close() stopped delivery
    assert mic.sample_rate_hz == 16000 and all(len(f) == 640 for f in frames)
    captured = np.frombuffer(b"".join(frames), dtype="<i2")
    source, _, _ = read_wav(speech_wav)
    # align on the loudest part of the source and compare: the rig runs at 16 kHz end to end
    probe = source[16000:24000].astype(float)
    lag = int(np.argmax(np.correlate(captured.astype(float), probe, "valid"))) - 16000
    segment = captured[lag:lag + len(source)]
    assert lag >= 0 and len(segment) == len(source)
    assert np.array_equal(segment, source), "PulseAudio at matching rates should be bit-exact"
    gate = VadGate(16000, 20, trailing_ms=800)
    outs = [o for f in frames for o in gate.process(f)]
    assert [type(o) for o in outs if not isinstance(o, Audio)] == [SpeechStart, SpeechEnd]


def test_mic_resamples_to_a_rate_the_rig_does_not_run_at(pulse_rig, tmp_path):
    short = make_speech_wav(tmp_path / "hello.wav", "Hello there", lead_silence_s=0.3, tail_silence_s=0.4)
    frames = []
    mic = PyAudioMic("pulse", 48000, 20)
    mic.open(frames.extend)
    try:
        feeder = pulse_rig.feed(short)
        assert feeder.wait(15) == 0
    finally:
        mic.close()
    assert mic.device_name == "pulse" and all(len(f) == 1920 for f in frames)
    gate = VadGate(48000, 20, trailing_ms=300)
    kinds = [type(o) for f in frames for o in gate.process(f) if not isinstance(o, Audio)]
    assert kinds[:1] == [SpeechStart]


def test_speaker_plays_into_the_sink_and_parec_gets_it_back(pulse_rig, tmp_path):
    rec_path = tmp_path / "rec.wav"
    drained = threading.Event()
    signal = (tone(700, 0.5, 48000) + tone(1900, 0.5, 48000, 3000)).astype(np.int16)
    signal[signal == 0] = 1  # no zero samples, so the played stretch is easy to find
    recorder = pulse_rig.record(rec_path, rate_hz=48000, channels=1)
    spk = PyAudioSpeaker("default", 48000, prime_ms=60)
    spk.open(drained.set)
    try:
        time.sleep(0.3)
        t0 = time.monotonic()
        spk.write(signal.tobytes())
        time.sleep(0.25)
        mid = spk.played_samples()
        assert drained.wait(3)
        drained_after_s = time.monotonic() - t0
        assert spk.played_samples() == len(signal) and spk.pending_samples() == 0
        time.sleep(0.3)
    finally:
        spk.close()
        pulse_rig.stop_recording(recorder)
    # part-way through, some but not all has played; latency is accounted for
    assert 0 < mid < len(signal)
    assert 0.5 <= drained_after_s <= 0.5 + 0.06 + spk.output_latency_s + 0.2
    rec, rate_hz, _ = read_wav(rec_path)
    assert rate_hz == 48000
    nz = np.flatnonzero(rec)
    got = rec[nz[0]:nz[0] + len(signal)]
    assert np.array_equal(got, signal), "mono 48 kHz -> stereo null sink -> parec mono should be bit-exact"
    assert np.count_nonzero(rec) == len(signal)


def test_speaker_stop_drops_queued_audio(pulse_rig):
    drained = threading.Event()
    spk = PyAudioSpeaker("default", 24000)
    spk.open(drained.set)
    try:
        spk.write(tone(440, 2.0, 24000).tobytes())
        time.sleep(0.4)
        spk.stop()
        at_stop = spk.played_samples()
        time.sleep(0.2 + spk.output_latency_s)
        after = spk.played_samples()
        assert 0.2 * 24000 <= at_stop <= 0.5 * 24000
        # only what was already in the device buffer plays on
        assert after - at_stop <= (spk.output_latency_s + 0.03) * 24000 + 480
        assert not drained.is_set()
    finally:
        spk.close()


def test_pivoice_devices_lists_the_pulse_devices(pulse_rig):
    exe = Path(sys.executable).with_name("pivoice")
    cmd = [str(exe), "devices"] if exe.exists() else [sys.executable, "-m", "pivoice", "devices"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=30, env=os.environ.copy())
    assert out.returncode == 0, out.stderr
    assert "ALSA lib" not in out.stderr and "jack server" not in out.stderr  # native chatter is quieted
    inputs, outputs = out.stdout.split("Outputs:")
    for section in (inputs, outputs):
        assert "pulse" in section and "default" in section and "16000" in section and "48000" in section
