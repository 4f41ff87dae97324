"""Mic and speaker checks: WAV stand-ins, and real PortAudio devices through the PulseAudio rig."""

from __future__ import annotations

import time

import numpy as np
import pytest

from pivoice.audio.host import PortAudioHost
from pivoice.doctor.audio import MicCheck, SpeakerCheck, levels
from support.fixtures_audio import read_wav, tone, write_wav


def test_levels_in_dbfs():
    quiet = levels(tone(440, 0.5, 16000, amplitude=3277).tobytes())   # ~ -20 dBFS peak
    assert -20.5 < quiet["peak_dbfs"] < -19.5 and -23.5 < quiet["rms_dbfs"] < -22.5
    assert quiet["clipped_fraction"] == 0
    assert levels(bytes(640))["peak_dbfs"] == -120.0


@pytest.mark.parametrize("amplitude,status,words", [
    (8000, "ok", "OK (peak -12.2 dBFS"),
    (0, "warn", "silent"),
    (60000, "warn", "clipping"),
])
def test_wav_mic_levels(tmp_path, make_ctx, amplitude, status, words):
    samples = np.clip(np.round(amplitude * np.sin(2 * np.pi * 440 * np.arange(48000) / 16000)), -32768, 32767)
    wav = write_wav(tmp_path / "mic.wav", samples.astype(np.int16), 16000)
    result = MicCheck(lambda: pytest.fail("a WAV mic needs no PortAudio"), mic_s=2).run(make_ctx(mic=f"wav:{wav}"))
    assert result.status == status and words in result.detail, result
    assert result.data["rate_hz"] == 16000 and result.data["seconds"] == 2.0


def test_unreadable_wav_mic_names_the_key(tmp_path, make_ctx):
    result = MicCheck(PortAudioHost).run(make_ctx(mic=f"wav:{tmp_path}/absent.wav"))
    assert result.status == "fail" and "audio.input.device" in result.detail and "absent.wav" in result.detail


def test_wav_speaker_is_checked_without_writing(tmp_path, make_ctx):
    out = tmp_path / "reply.wav"
    assert SpeakerCheck(PortAudioHost).run(make_ctx(speaker=f"wav:{out}")).status == "ok"
    assert not out.exists()
    missing = SpeakerCheck(PortAudioHost).run(make_ctx(speaker=f"wav:{tmp_path}/no/dir/reply.wav"))
    assert missing.status == "fail" and "audio.output.device" in missing.detail


@pytest.mark.pulse
def test_a_wrong_mic_name_fails_naming_the_key_and_the_devices_that_exist(pulse_rig, make_ctx):
    result = MicCheck(PortAudioHost).run(make_ctx(mic="USB PnP Sound Device"))
    assert result.status == "fail"
    assert result.detail.startswith("audio.input.device 'USB PnP Sound Device': no audio input device matches")
    assert "pulse" in result.data["devices"][0] or any("pulse" in d for d in result.data["devices"])
    assert "inputs that exist: " in result.detail and "pulse" in result.detail
    assert "set audio.input.device to one of those names" in result.remedy
    assert result.data["key"] == "audio.input.device"


@pytest.mark.pulse
def test_wrong_speaker_name_fails_the_same_way(pulse_rig, make_ctx):
    result = SpeakerCheck(PortAudioHost).run(make_ctx(speaker="HDMI 7"))
    assert result.status == "fail" and "audio.output.device 'HDMI 7'" in result.detail and "pulse" in result.detail


@pytest.mark.pulse
def test_mic_meter_through_pulse_ok_and_silent(pulse_rig, make_ctx, tmp_path):
    silent = MicCheck(PortAudioHost, mic_s=1).run(make_ctx(mic="pulse", mic_rate_hz=16000))
    assert silent.status == "warn" and "silent" in silent.detail and silent.data["rate_hz"] == 16000

    wav = write_wav(tmp_path / "tone.wav", tone(440, 4.0, 16000, amplitude=8000), 16000)
    feeder = pulse_rig.feed(wav)
    try:
        time.sleep(0.5)   # the feed is flowing before the meter starts
        result = MicCheck(PortAudioHost, mic_s=1.5).run(make_ctx(mic="pulse", mic_rate_hz=16000))
    finally:
        feeder.wait(10)
    assert result.status == "ok", result
    assert -13.5 < result.data["peak_dbfs"] < -11.0 and result.data["clipped_fraction"] == 0
    assert "at 16000 Hz: OK (peak" in result.detail


@pytest.mark.pulse
def test_speaker_tone_comes_out_of_the_device(pulse_rig, make_ctx, tmp_path):
    recording = tmp_path / "speaker.wav"
    recorder = pulse_rig.record(recording, rate_hz=48000)
    time.sleep(0.3)
    try:
        result = SpeakerCheck(PortAudioHost).run(make_ctx(speaker="default"))
        time.sleep(0.3)
    finally:
        pulse_rig.stop_recording(recorder)
    assert result.status == "ok", result
    assert result.data["rate_hz"] == 48000 and 0.4 <= result.data["play_s"] < 2.5
    samples, rate_hz, _ = read_wav(recording)
    loud = samples[np.abs(samples) > 100]
    assert 0.4 * rate_hz < loud.size < 0.7 * rate_hz, "about 0.5 s of tone"
    spectrum = np.abs(np.fft.rfft(samples.astype(float)))
    assert abs(np.argmax(spectrum) * rate_hz / samples.size - 440) < 3
    assert -21 < levels(samples.astype("<i2").tobytes())["peak_dbfs"] < -19
