"""Checks 2 and 3: the mic (a few seconds of level meter) and the speaker (a short quiet tone).

They open the configured devices the way the daemon does (PyAudioMic/PyAudioSpeaker on one
PortAudioHost, or WavMic for `wav:`). Main thread; the audio thread only appends and sets events.
"""

from __future__ import annotations

import math
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable

from pivoice.config import WAV_PREFIX
from pivoice.doctor.report import FAIL, OK, WARN, Context, Result

SILENT_PEAK_DBFS = -60.0
FULL_SCALE = 32767
CLIP_FRACTION_WARN = 0.001       # of samples at full scale: more than the odd transient peak
TONE_HZ, TONE_S, TONE_DBFS = 440.0, 0.5, -20.0
DRAIN_GRACE_S = 2.0              # beyond the tone, for the device buffer and a slow sound server


def dbfs(value: float) -> float:
    return 20 * math.log10(value / FULL_SCALE) if value > 0 else -120.0


def levels(pcm16: bytes) -> dict:
    """peak/RMS in dBFS and the fraction of samples at full scale, of mono s16le."""
    import numpy as np
    samples = np.frombuffer(pcm16, dtype="<i2").astype(np.int32)
    if samples.size == 0:
        return {"peak_dbfs": -120.0, "rms_dbfs": -120.0, "clipped_fraction": 0.0, "samples": 0}
    peak = int(np.max(np.abs(samples)))
    rms = float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))
    clipped = int(np.count_nonzero((samples >= FULL_SCALE) | (samples <= -FULL_SCALE - 1)))
    return {"peak_dbfs": round(dbfs(peak), 1), "rms_dbfs": round(dbfs(rms), 1),
            "clipped_fraction": round(clipped / samples.size, 5), "samples": int(samples.size)}


def _device_list(portaudio, direction: str) -> list[str]:
    """Names of the devices PortAudio has for `direction`, for "what exists instead"."""
    try:
        pa = portaudio.refresh()
        infos = [pa.get_device_info_by_index(i) for i in range(pa.get_device_count())]
    except OSError as exc:
        return [f"(PortAudio cannot list devices: {exc})"]
    key = "maxInputChannels" if direction == "input" else "maxOutputChannels"
    return [f"[{i}] {info['name']}" for i, info in enumerate(infos) if int(info[key]) > 0]


def _device_error(check: str, key: str, value: str, exc: Exception, portaudio) -> Result:
    """A device that is missing (named with the ones that exist), busy, or without a usable rate."""
    direction = "input" if check == "mic" else "output"
    message = str(exc)
    data = {"key": f"audio.{key}.device", "value": value}
    if message.startswith("no audio"):
        names = _device_list(portaudio, direction)
        found = message.splitlines()[0].split(f"; {direction}s available", 1)[0].rstrip(":; ")
        detail = f"audio.{key}.device {value!r}: {found}; {direction}s that exist: {', '.join(names) or 'none'}"
        remedy = (f"set audio.{key}.device to one of those names (`pivoice devices` lists them with rates)"
                  if names else "no audio devices at all: plug the USB device in, check `arecord -l`/`aplay -l` "
                                "and that the user is in group 'audio'")
        return Result(check, FAIL, detail, remedy, {**data, "devices": names})
    if "supports none of" in message:
        return Result(check, FAIL, f"audio.{key}.device {value!r}: {message}",
                      f"set audio.{key}.sample_rate_hz to null or one of the rates the device supports",
                      {**data, "key": f"audio.{key}.sample_rate_hz"})
    return Result(check, FAIL, f"audio.{key}.device {value!r}: {message}",
                  "another program holds the device (`fuser -v /dev/snd/*`; the daemon holds it only during a "
                  "conversation), or it was unplugged", data)


class MicCheck:
    """Records `mic_s` from the configured input and reports silent, clipping or OK levels."""

    name = "mic"

    def __init__(self, portaudio_factory: Callable[[], Any], *, mic_s: float = 2.0):
        self._portaudio_factory = portaudio_factory
        self._mic_s = mic_s

    def run(self, ctx: Context) -> Result:
        from pivoice.audio.capture import PyAudioMic, WavMic
        from pivoice.audio.ports import AudioDeviceError
        inp = ctx.cfg.audio.input
        portaudio = None
        try:
            if inp.device.startswith(WAV_PREFIX):
                mic = WavMic(inp.device[len(WAV_PREFIX):], frame_ms=inp.frame_ms, realtime=False)
                where = f"WAV file {inp.device[len(WAV_PREFIX):]}"
            else:
                portaudio = self._portaudio_factory()
                mic = PyAudioMic(inp.device, inp.sample_rate_hz, inp.frame_ms, portaudio=portaudio)
                where = ""
            frames, enough = [], threading.Event()
            wanted = max(1, int(self._mic_s * 1000 / inp.frame_ms))

            def on_frames(block: list[bytes]) -> None:
                frames.extend(block[:max(0, wanted - len(frames))])
                if len(frames) >= wanted:
                    enough.set()
            started_s = time.monotonic()
            mic.open(on_frames)
            try:
                enough.wait(self._mic_s + 2.0)
            finally:
                mic.close()
            elapsed_s = time.monotonic() - started_s
        except AudioDeviceError as exc:
            if portaudio is None:
                return Result(self.name, FAIL, f"audio.input.device {inp.device!r}: {exc}",
                              "point audio.input.device at a readable 16-bit mono/stereo WAV file",
                              {"key": "audio.input.device", "value": inp.device})
            return _device_error(self.name, "input", inp.device, exc, portaudio)
        rate_hz = mic.sample_rate_hz
        where = where or f"[{getattr(mic, 'device_name', '')}] at {rate_hz} Hz"
        if not frames:
            return Result(self.name, FAIL, f"{where}: opened, but no audio arrived in {elapsed_s:.1f} s",
                          "the device is stuck or taken by another program: `fuser -v /dev/snd/*`; replug it",
                          {"device": inp.device, "rate_hz": rate_hz})
        lv = levels(b"".join(frames))
        data = {"device": inp.device, "device_name": getattr(mic, "device_name", inp.device), "rate_hz": rate_hz,
                "seconds": round(len(frames) * inp.frame_ms / 1000, 2), **lv}
        meter = f"peak {lv['peak_dbfs']:.1f} dBFS, RMS {lv['rms_dbfs']:.1f} dBFS over {data['seconds']:g} s"
        if lv["peak_dbfs"] < SILENT_PEAK_DBFS:
            return Result(self.name, WARN, f"{where}: silent ({meter})",
                          "speak during the check; else unmute/raise the capture level (`alsamixer`, F4, "
                          "select the card with F6) or choose another audio.input.device", data)
        if lv["clipped_fraction"] > CLIP_FRACTION_WARN:
            return Result(self.name, WARN, f"{where}: clipping, {100 * lv['clipped_fraction']:.2f} % of samples "
                                           f"at full scale ({meter})",
                          "lower the capture level (`alsamixer`, F4) or move the mic away from the speaker", data)
        return Result(self.name, OK, f"{where}: OK ({meter})", data=data)


def tone_pcm(rate_hz: int, freq_hz: float = TONE_HZ, duration_s: float = TONE_S, level_dbfs: float = TONE_DBFS) -> bytes:
    """A quiet sine with 10 ms fades (no clicks), mono s16le."""
    import numpy as np
    n = int(rate_hz * duration_s)
    t = np.arange(n) / rate_hz
    wave = np.sin(2 * np.pi * freq_hz * t) * FULL_SCALE * 10 ** (level_dbfs / 20)
    fade = min(n // 2, int(rate_hz * 0.01))
    ramp = np.linspace(0.0, 1.0, fade)
    wave[:fade] *= ramp
    wave[n - fade:] *= ramp[::-1]
    return wave.round().astype("<i2").tobytes()


class SpeakerCheck:
    """Plays a 0.5 s 440 Hz tone at -20 dBFS through the configured output and waits until it played."""

    name = "speaker"

    def __init__(self, portaudio_factory: Callable[[], Any]):
        self._portaudio_factory = portaudio_factory

    def run(self, ctx: Context) -> Result:
        out = ctx.cfg.audio.output
        if out.device.startswith(WAV_PREFIX):
            return self._wav(out.device[len(WAV_PREFIX):])
        from pivoice.audio.playback import PyAudioSpeaker
        from pivoice.audio.ports import AudioDeviceError
        portaudio = self._portaudio_factory()
        speaker = PyAudioSpeaker(out.device, out.sample_rate_hz, prime_ms=out.prime_ms, buffer_ms=out.buffer_ms,
                                 portaudio=portaudio)
        drained = threading.Event()
        try:
            speaker.open(drained.set)
        except AudioDeviceError as exc:
            return _device_error(self.name, "output", out.device, exc, portaudio)
        try:
            started_s = time.monotonic()
            speaker.write(tone_pcm(speaker.sample_rate_hz))
            played = drained.wait(TONE_S + DRAIN_GRACE_S)
            elapsed_s = time.monotonic() - started_s
        finally:
            speaker.close()
        where = f"[{speaker.device_name}] at {speaker.sample_rate_hz} Hz"
        data = {"device": out.device, "device_name": speaker.device_name, "rate_hz": speaker.sample_rate_hz,
                "output_latency_ms": round(1000 * speaker.output_latency_s, 1), "underflows": speaker.underflows,
                "play_s": round(elapsed_s, 3)}
        if not played:
            return Result(self.name, FAIL, f"{where}: the tone did not finish playing within "
                                           f"{TONE_S + DRAIN_GRACE_S:g} s (device stalled)",
                          "the output is stuck or taken by another program: `fuser -v /dev/snd/*`; replug it", data)
        return Result(self.name, OK, f"{where}: played a {TONE_HZ:g} Hz tone for {TONE_S:g} s at {TONE_DBFS:g} dBFS "
                                     f"in {elapsed_s:.2f} s (latency {data['output_latency_ms']:g} ms); "
                                     "if you heard nothing, raise the level in `alsamixer`", data=data)

    def _wav(self, path: str) -> Result:
        # Not written: the daemon's reply file is the user's output, and a root-owned file left
        # behind by `sudo pivoice doctor` would stop the daemon's user from writing it.
        directory = Path(path).parent
        if not directory.is_dir():
            return Result(self.name, FAIL, f"audio.output.device wav:{path}: directory {directory} does not exist",
                          f"create {directory} or set audio.output.device to another path",
                          {"key": "audio.output.device"})
        if not os.access(directory, os.W_OK):
            return Result(self.name, WARN, f"audio.output.device wav:{path}: {directory} is not writable by this user",
                          "make sure the daemon's user can write it (under the unit: a path in /run/pivoice)",
                          {"key": "audio.output.device"})
        return Result(self.name, OK, f"WAV output {path} (writable directory; no tone written to a file)",
                      data={"device": f"wav:{path}"})
