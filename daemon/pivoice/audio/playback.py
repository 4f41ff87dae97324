"""Speakers: a PortAudio output stream (`PyAudioSpeaker`) and a WAV-file sink (`WavSpeaker`).

Both keep one stream open for the whole conversation and pull from a `PlayoutBuffer`.
Thread: open/write/stop/played_samples/close from the controller thread; the pull side and
`on_drained` run on the audio thread (PortAudio's callback thread or the WAV pacing thread).
"""

from __future__ import annotations

import logging
import threading
import time
import wave
from typing import Any, Callable

import pyaudio

from pivoice.audio import devices
from pivoice.audio.playout import PlayoutBuffer
from pivoice.audio.ports import AudioDeviceError

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
                 portaudio: devices.PortAudioHost | None = None) -> None:
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

    def open(self, on_drained: Callable[[], None]) -> None:
        if self._stream is not None:
            raise RuntimeError("PyAudioSpeaker is already open")
        self._pa, index, self.device_name = self._host.find(self.device, devices.OUTPUT)
        try:
            rate_hz, self._channels = devices.choose_format(self._pa, index, self.device_name, devices.OUTPUT,
                                                            self._wanted_rate_hz, SPEAKER_FALLBACK_RATES_HZ)
            self.sample_rate_hz = rate_hz
            self._on_drained = on_drained
            self._buffer = PlayoutBuffer(rate_hz, rate_hz * self.prime_ms // 1000)
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
            self._pa = self._stream = None
            raise
        log.info("speaker: [%d] %r at %d Hz, %d ch, output latency %.0f ms", index, self.device_name, rate_hz,
                 self._channels, 1000 * self.output_latency_s)

    def _callback(self, in_data: Any, frame_count: int, time_info: dict, status: int):
        if status & pyaudio.paOutputUnderflow:
            self.underflows += 1
        data, drained = self._buffer.pull(frame_count)
        if self._channels > 1:
            data = upmix(data, self._channels)
        if drained:
            self._on_drained()
        return data, pyaudio.paContinue

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
        stream = self._stream
        self._stream = self._pa = None
        if stream is not None:
            try:
                stream.stop_stream()
                stream.close()
            except OSError as exc:
                log.warning("speaker %r: error while closing: %s", self.device_name, exc)
        # the PortAudio host stays initialised for the next conversation (see PortAudioHost)


class WavSpeaker:
    """Fake sink for demos and tests: writes what it plays to a mono s16le WAV file.

    With `realtime` a pacing thread consumes `tick_ms` per tick against the monotonic clock and
    writes silence too, so the file is a timeline of the speaker and played_samples/stop/on_drained
    behave like a device. Without it, queued audio is written as soon as it arrives (no silence).
    The header is valid after every write and the file is flushed every `flush_s`. Reopened for a
    later conversation, it appends to what it wrote before.
    """

    def __init__(self, path: str, sample_rate_hz: int = 24000, *, realtime: bool = True, tick_ms: int = 20,
                 flush_s: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.path, self.sample_rate_hz, self._realtime = str(path), sample_rate_hz, realtime
        self.tick_ms, self._flush_s, self._clock = tick_ms, flush_s, clock
        # a tick's samples are "playing" during the next tick, like a one-period device buffer
        self._latency_samples = sample_rate_hz * tick_ms // 1000 if realtime else 0
        self._buffer = PlayoutBuffer(sample_rate_hz, 0, self._latency_samples, clock=clock)
        self._opened_before = False
        self._stop_evt = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._file: Any = None
        self._wav: Any = None

    def open(self, on_drained: Callable[[], None]) -> None:
        if self._thread is not None:
            raise RuntimeError("WavSpeaker is already open")
        earlier = b""
        if self._opened_before:  # a later conversation continues the same recording
            with wave.open(self.path, "rb") as w:
                earlier = w.readframes(w.getnframes())
        self._opened_before = True
        self._file = open(self.path, "wb")
        self._wav = wave.open(self._file, "wb")
        self._wav.setnchannels(1)
        self._wav.setsampwidth(2)
        self._wav.setframerate(self.sample_rate_hz)
        self._wav.writeframes(earlier)
        self._buffer = PlayoutBuffer(self.sample_rate_hz, 0, self._latency_samples, clock=self._clock)
        self._stop_evt.clear()
        self._thread = threading.Thread(target=self._run, args=(on_drained,), name="wav-speaker", daemon=True)
        self._thread.start()

    def _run(self, on_drained: Callable[[], None]) -> None:
        tick_s = self.tick_ms / 1000.0
        tick_samples = self.sample_rate_hz * self.tick_ms // 1000
        start_s = last_flush_s = self._clock()
        n = 0
        while not self._stop_evt.is_set():
            if self._realtime:
                delay_s = start_s + n * tick_s - self._clock()
                if delay_s > 0:
                    self._stop_evt.wait(delay_s)
                    continue
                data, drained = self._buffer.pull(tick_samples)
                n += 1
            else:
                self._wake.wait(0.05)
                self._wake.clear()
                data, drained = self._buffer.pull(self._buffer.queued_samples())
            if data:
                self._wav.writeframes(data)  # also rewrites the header sizes
            if self._clock() - last_flush_s >= self._flush_s:
                self._file.flush()
                last_flush_s = self._clock()
            if drained:
                on_drained()

    def write(self, pcm16: bytes) -> None:
        self._buffer.write(pcm16)
        self._wake.set()

    def stop(self) -> None:
        self._buffer.clear()

    def played_samples(self) -> int:
        return self._buffer.played_samples()

    def pending_samples(self) -> int:
        return self._buffer.pending_samples()

    def audible_since_s(self) -> float | None:
        return self._buffer.audible_since_s

    def close(self) -> None:
        self._stop_evt.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        if self._wav is not None:
            self._wav.close()
            self._file.close()
            self._wav = self._file = None
