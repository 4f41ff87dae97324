"""Speakers: a PortAudio output stream (`PyAudioSpeaker`) and a WAV-file sink (`WavSpeaker`, in
wavfile.py, re-exported here).

Both keep one stream open for the whole conversation and pull from a `PlayoutBuffer`.
Thread: open/write/stop/played_samples/check_stream/close from the controller thread; the pull
side, `on_drained` and `on_error` run on the audio thread (PortAudio's callback thread or the WAV
pacing thread). The callback contract and the failure path are described in ports.py.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable

import pyaudio

from pivoice.audio import devices
from pivoice.audio.playout import PlayoutBuffer
from pivoice.audio.health import STREAM_STALL_S, StreamWatch, XrunLog, watch_stream
from pivoice.audio.ports import AudioDeviceError, OnError
from pivoice.audio.wavfile import OUTPUT_KEY, WavSpeaker, check_wav_output

__all__ = ["OUTPUT_KEY", "PyAudioSpeaker", "SPEAKER_FALLBACK_RATES_HZ", "WavSpeaker", "check_wav_output", "upmix"]

log = logging.getLogger(__name__)

SPEAKER_FALLBACK_RATES_HZ = (48000, 44100, 24000, 16000)


def upmix(pcm16: bytes, channels: int) -> bytes:
    """Mono s16le -> the same samples on every channel. Runs in the audio callback 50 times a
    second: byte slicing costs about half of numpy's repeat there, and silence (most callbacks)
    needs no copying at all."""
    if channels == 1:
        return pcm16
    if pcm16 == bytes(len(pcm16)):
        return bytes(len(pcm16) * channels)
    out = bytearray(len(pcm16) * channels)
    low, high, step = pcm16[0::2], pcm16[1::2], 2 * channels
    for channel in range(channels):
        out[2 * channel::step] = low
        out[2 * channel + 1::step] = high
    return bytes(out)


class PyAudioSpeaker:
    """Callback-mode PortAudio output kept open for the whole conversation; silence when idle."""

    def __init__(self, device: str = "default", sample_rate_hz: int | None = None, *, prime_ms: int = 60,
                 buffer_ms: int = 20, pyaudio_factory: Callable[[], Any] = pyaudio.PyAudio,
                 portaudio: devices.PortAudioHost | None = None, clock: Callable[[], float] = time.monotonic,
                 stall_s: float = STREAM_STALL_S) -> None:
        self.device, self._wanted_rate_hz = device, sample_rate_hz
        self.sample_rate_hz = sample_rate_hz or 0
        self.prime_ms, self.buffer_ms = prime_ms, buffer_ms
        # the daemon passes one host for mic and speaker; standalone use gets a private one
        self._host = portaudio or devices.PortAudioHost(pyaudio_factory)
        self._pa: Any = None
        self._stream: Any = None
        self._buffer: PlayoutBuffer | None = None
        self._on_drained: Callable[[], None] = lambda: None
        self._channels = 1
        self.device_name = ""
        self.output_latency_s = 0.0
        self.underflows = 0
        self._underflow_log = XrunLog("output underflow", "the reply had gaps", clock)
        self._watch = StreamWatch(clock)
        self._stall_s = stall_s

    def open(self, on_drained: Callable[[], None], on_error: OnError | None = None) -> None:
        if self._stream is not None:
            raise RuntimeError("PyAudioSpeaker is already open")
        self._pa, index, self.device_name = self._host.find(self.device, devices.OUTPUT)
        try:
            rate_hz, self._channels = devices.choose_format(self._pa, index, self.device_name, devices.OUTPUT,
                                                            self._wanted_rate_hz, SPEAKER_FALLBACK_RATES_HZ)
            self.sample_rate_hz = rate_hz
            self._on_drained = on_drained
            self._buffer = PlayoutBuffer(rate_hz, rate_hz * self.prime_ms // 1000)
            self._watch.arm(on_error)
            try:
                self._stream = self._pa.open(format=pyaudio.paInt16, channels=self._channels, rate=rate_hz,
                                             output=True, output_device_index=index,
                                             frames_per_buffer=rate_hz * self.buffer_ms // 1000,
                                             stream_callback=self._callback, start=False)
            except (OSError, ValueError) as exc:
                raise AudioDeviceError(f"cannot open audio output [{index}] {self.device_name!r} at {rate_hz} Hz, "
                                       f"{self._channels} ch: {exc} (busy or unplugged?)") from exc
            self.output_latency_s = float(self._stream.get_output_latency())
            self._buffer.latency_samples = int(self.output_latency_s * rate_hz)
            self._stream.start_stream()
        except BaseException:
            self._watch.disarm()
            self._pa = self._stream = None
            raise
        log.info("speaker: [%d] %r at %d Hz, %d ch, output latency %.0f ms", index, self.device_name, rate_hz,
                 self._channels, 1000 * self.output_latency_s)

    def _callback(self, in_data: Any, frame_count: int, time_info: dict, status: int):
        self._watch.beat()
        try:
            if status & pyaudio.paOutputUnderflow:
                self.underflows += 1
            data, drained = self._buffer.pull(frame_count)
            if self._channels > 1:
                data = upmix(data, self._channels)
            if drained:
                self._on_drained()
        except Exception as exc:   # see ports.py: report once, stop the stream, never raise into PortAudio
            self._watch.fail(f"output {self.device_name!r}: audio callback failed ({type(exc).__name__}: {exc})")
            return bytes(2 * self._channels * frame_count), pyaudio.paAbort
        return data, pyaudio.paContinue

    def check_stream(self) -> None:
        watch_stream(self._stream, self._watch, f"output {self.device_name!r}", self._stall_s)
        self._underflow_log.update(f"speaker {self.device_name!r}", self.underflows)

    def stats(self) -> dict:
        return {"device": self.device_name or self.device, "underflows": self.underflows, **self._watch.counters()}

    def write(self, pcm16: bytes) -> None:
        self._buffer.write(pcm16)

    def stop(self) -> None:
        if self._buffer is not None:
            self._buffer.clear()

    def played_samples(self) -> int:
        return self._buffer.played_samples() if self._buffer else 0

    def pending_samples(self) -> int:
        return self._buffer.pending_samples() if self._buffer else 0

    def audible_since_s(self) -> float | None:
        """Monotonic time the audio thread started handing the current stretch of audio to the device."""
        return self._buffer.audible_since_s if self._buffer else None

    def close(self) -> None:
        self._watch.disarm()
        stream = self._stream
        self._stream = self._pa = None
        if stream is not None:
            try:
                stream.stop_stream()
                stream.close()
            except OSError as exc:
                level = logging.DEBUG if self._watch.failed else logging.WARNING   # already reported
                log.log(level, "speaker %r: error while closing: %s", self.device_name, exc)
        # the PortAudio host stays initialised for the next conversation (see PortAudioHost)
