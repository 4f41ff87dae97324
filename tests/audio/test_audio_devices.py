import json

import pytest

from pivoice.audio import devices
from pivoice.audio.playback import PyAudioSpeaker
from pivoice.audio.ports import AudioDeviceError
from support.fixtures_audio import FakePyAudio

DEVICES = [
    {"name": "bcm2835 Headphones: - (hw:0,0)", "outputs": {44100: (2,), 48000: (2,)}},
    {"name": "USB PnP Sound Device: Audio (hw:1,0)", "inputs": {44100: (1,), 48000: (1,)},
     "outputs": {48000: (1, 2)}, "default_rate": 44100},
    {"name": "default", "inputs": {r: (1, 2) for r in devices.STANDARD_RATES_HZ},
     "outputs": {r: (1, 2) for r in devices.STANDARD_RATES_HZ}},
]


def test_list_devices_probes_rates_per_direction():
    listed = devices.list_devices(FakePyAudio(DEVICES))
    hp, usb, default = listed
    assert hp.input_rates_hz == () and hp.output_rates_hz == (44100, 48000) and hp.max_output_channels == 2
    assert usb.input_rates_hz == (44100, 48000) and usb.output_rates_hz == (48000,)
    assert usb.default_rate_hz == 44100 and default.input_rates_hz == devices.STANDARD_RATES_HZ


def test_main_prints_a_table_and_json(capsys):
    assert devices.main([], pyaudio_factory=FakePyAudio(DEVICES)) == 0
    out = capsys.readouterr().out
    inputs, outputs = out.split("Outputs:")
    assert "USB PnP Sound Device" in inputs and "bcm2835" not in inputs
    assert "44100 48000" in inputs and "bcm2835" in outputs
    assert devices.main(["--json"], pyaudio_factory=FakePyAudio(DEVICES)) == 0
    data = json.loads(capsys.readouterr().out)
    assert data[1]["name"].startswith("USB PnP") and data[1]["input_rates_hz"] == [44100, 48000]


def test_speaker_errors_list_outputs_and_rates():
    pa = FakePyAudio(DEVICES[:2])
    with pytest.raises(AudioDeviceError) as err:
        PyAudioSpeaker("hdmi", pyaudio_factory=pa).open(lambda: None)
    msg = str(err.value)
    assert "no audio output device matches 'hdmi'" in msg
    assert "[0] 'bcm2835 Headphones: - (hw:0,0)' (2 ch; rates 44100, 48000)" in msg and "[1] 'USB PnP" in msg
    spk = PyAudioSpeaker("bcm2835", 24000, pyaudio_factory=pa)
    spk.open(lambda: None)  # 24 kHz unsupported: falls back to the first supported rate
    assert spk.sample_rate_hz == 48000
    spk.close()
    with pytest.raises(AudioDeviceError, match=r"supports none of 48000, 44100, 24000, 16000 Hz .*supports: 22050"):
        PyAudioSpeaker(pyaudio_factory=FakePyAudio([{"name": "old dac", "outputs": {22050: (2,)}}])).open(lambda: None)


def test_speaker_rate_fallback_order():
    spk = PyAudioSpeaker("bcm", pyaudio_factory=FakePyAudio(DEVICES[:1]))
    spk.open(lambda: None)
    assert spk.sample_rate_hz == 48000
    spk.close()
