"""Microphones: a PortAudio capture stream (`PyAudioMic`) and a WAV-file stand-in (`WavMic`,
in wavfile.py, re-exported here).

Both deliver mono s16le frames of exactly `frame_ms` to `on_frame`, from their own audio thread
(PortAudio's callback thread or a pacing thread), and report a stream that stops through
`on_error` (the contract is in ports.py). `open`/`close`/`check_stream` come from the controller thread.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable

import pyaudio

from pivoice.audio import devices
from pivoice.audio.codec import to_mono
from pivoice.audio.health import STREAM_STALL_S, StreamWatch, XrunLog, watch_stream
from pivoice.audio.ports import AudioDeviceError, OnError
from pivoice.audio.wavfile import INPUT_KEY, WavMic, read_wav_input

__all__ = ["INPUT_KEY", "MIC_FALLBACK_RATES_HZ", "PyAudioMic", "WavMic", "read_wav_input", "to_mono"]

log = logging.getLogger(__name__)

MIC_FALLBACK_RATES_HZ = (16000, 48000, 44100, 32000, 22050, 8000)


class PyAudioMic:
    """ALSA capture through PortAudio in callback mode (works on plain ALSA hw devices, no sound server).

    Thread: open/close/check_stream from the controller thread; `_callback` runs on PortAudio's
    audio thread; stats() from any thread.
    """

    def __init__(self, device: str = "default", sample_rate_hz: int | None = None, frame_ms: int = 20, *,
                 pyaudio_factory: Callable[[], Any] = pyaudio.PyAudio,
                 portaudio: devices.PortAudioHost | None = None,
                 monotonic: Callable[[], float] = time.monotonic, stall_s: float = STREAM_STALL_S) -> None:
        self.device = device
        self._wanted_rate_hz = sample_rate_hz
        self.sample_rate_hz = sample_rate_hz or 0
        self.frame_ms = frame_ms
        # the daemon passes one host for mic and speaker; standalone use gets a private one
        self._host = portaudio or devices.PortAudioHost(pyaudio_factory)
        self._pa: Any = None
        self._stream: Any = None
        self._channels = 1
        self._frame_bytes = 0
        self._pending = bytearray()
        self._on_frame: Callable[[bytes], None] | None = None
        self.overflows = 0
        self._overflow_log = XrunLog("input overflow", "audio was lost", monotonic)
        self.device_name = ""
        self._watch = StreamWatch(monotonic)
        self._stall_s = stall_s

    def open(self, on_frame: Callable[[bytes], None], on_error: OnError | None = None) -> None:
        if self._stream is not None:
            raise RuntimeError("PyAudioMic is already open")
        self._pa, index, self.device_name = self._host.find(self.device, devices.INPUT)
        try:
            rate_hz, self._channels = devices.choose_format(self._pa, index, self.device_name, devices.INPUT,
                                                            self._wanted_rate_hz, MIC_FALLBACK_RATES_HZ)
            self.sample_rate_hz = rate_hz
            frames_per_buffer = rate_hz * self.frame_ms // 1000
            self._frame_bytes = frames_per_buffer * 2
            self._on_frame = on_frame
            self._pending.clear()
            self._watch.arm(on_error)
            try:
                self._stream = self._pa.open(format=pyaudio.paInt16, channels=self._channels, rate=rate_hz,
                                             input=True, input_device_index=index,
                                             frames_per_buffer=frames_per_buffer, stream_callback=self._callback)
            except (OSError, ValueError) as exc:
                raise AudioDeviceError(f"cannot open audio input [{index}] {self.device_name!r} at {rate_hz} Hz, "
                                       f"{self._channels} ch: {exc} (busy or unplugged?)") from exc
        except BaseException:
            self._watch.disarm()
            self._pa = None
            raise
        log.info("mic: [%d] %r at %d Hz, %d ch, %d ms frames", index, self.device_name, rate_hz,
                 self._channels, self.frame_ms)

    def _callback(self, in_data: bytes, frame_count: int, time_info: dict, status: int):
        # Downmix and re-framing are here only so every frame handed on is exactly frame_ms of mono;
        # PortAudio normally already gives frames_per_buffer, so the loop runs once.
        self._watch.beat()
        try:
            if status & pyaudio.paInputOverflow:
                self.overflows += 1
            self._pending += to_mono(in_data, self._channels)
            while len(self._pending) >= self._frame_bytes:
                frame = bytes(self._pending[:self._frame_bytes])
                del self._pending[:self._frame_bytes]
                self._on_frame(frame)
        except Exception as exc:   # see ports.py: report once, stop the stream, never raise into PortAudio
            self._watch.fail(f"input {self.device_name!r}: audio callback failed ({type(exc).__name__}: {exc})")
            return None, pyaudio.paAbort
        return None, pyaudio.paContinue

    def check_stream(self) -> None:
        watch_stream(self._stream, self._watch, f"input {self.device_name!r}", self._stall_s)
        self._overflow_log.update(f"mic {self.device_name!r}", self.overflows)

    def stats(self) -> dict:
        return {"device": self.device_name or self.device, "overflows": self.overflows, **self._watch.counters()}

    def close(self) -> None:
        self._watch.disarm()
        stream = self._stream
        self._stream = self._pa = None
        if stream is not None:
            try:
                stream.stop_stream()  # returns after the last callback has finished
                stream.close()
            except OSError as exc:
                level = logging.DEBUG if self._watch.failed else logging.WARNING   # already reported
                log.log(level, "mic %r: error while closing: %s", self.device_name, exc)
        # the PortAudio host stays initialised for the next conversation (see PortAudioHost)
