"""Microphones: a PortAudio capture stream (`PyAudioMic`) and a WAV-file stand-in (`WavMic`).

Both deliver mono s16le frames of exactly `frame_ms` to `on_frame`, from their own audio thread
(PortAudio's callback thread or a pacing thread). `open`/`close` come from the controller thread.
"""

from __future__ import annotations

import logging
import threading
import time
import wave
from typing import Any, Callable

import numpy as np
import pyaudio

from pivoice.audio import devices
from pivoice.audio.ports import AudioDeviceError

log = logging.getLogger(__name__)

MIC_FALLBACK_RATES_HZ = (16000, 48000, 44100, 32000, 22050, 8000)
OVERFLOW_LOG_INTERVAL_S = 10.0


def to_mono(pcm16: bytes, channels: int) -> bytes:
    if channels == 1:
        return pcm16
    samples = np.frombuffer(pcm16, dtype="<i2").reshape(-1, channels)
    return samples.mean(axis=1).round().astype("<i2").tobytes()


class PyAudioMic:
    """ALSA capture through PortAudio in callback mode (works on plain ALSA hw devices, no sound server).

    Thread: open/close from the controller thread; `_callback` runs on PortAudio's audio thread.
    """

    def __init__(self, device: str = "default", sample_rate_hz: int | None = None, frame_ms: int = 20, *,
                 pyaudio_factory: Callable[[], Any] = pyaudio.PyAudio,
                 portaudio: devices.PortAudioHost | None = None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.device = device
        self._wanted_rate_hz = sample_rate_hz
        self.sample_rate_hz = sample_rate_hz or 0
        self.frame_ms = frame_ms
        # the daemon passes one host for mic and speaker; standalone use gets a private one
        self._host = portaudio or devices.PortAudioHost(pyaudio_factory)
        self._monotonic = monotonic
        self._pa: Any = None
        self._stream: Any = None
        self._channels = 1
        self._frame_bytes = 0
        self._pending = bytearray()
        self._on_frame: Callable[[bytes], None] | None = None
        self.overflows = 0
        self._overflows_logged = 0
        self._last_overflow_log_s = float("-inf")
        self.device_name = ""

    def open(self, on_frame: Callable[[bytes], None]) -> None:
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
            try:
                self._stream = self._pa.open(format=pyaudio.paInt16, channels=self._channels, rate=rate_hz,
                                             input=True, input_device_index=index,
                                             frames_per_buffer=frames_per_buffer, stream_callback=self._callback)
            except (OSError, ValueError) as exc:
                raise AudioDeviceError(f"cannot open audio input [{index}] {self.device_name!r} at {rate_hz} Hz, "
                                       f"{self._channels} ch: {exc} (busy or unplugged?)") from exc
        except BaseException:
            self._pa = None
            raise
        log.info("mic: [%d] %r at %d Hz, %d ch, %d ms frames", index, self.device_name, rate_hz,
                 self._channels, self.frame_ms)

    def _callback(self, in_data: bytes, frame_count: int, time_info: dict, status: int):
        # Downmix and re-framing are here only so every frame handed on is exactly frame_ms of mono;
        # PortAudio normally already gives frames_per_buffer, so the loop runs once.
        if status & pyaudio.paInputOverflow:
            self._count_overflow()
        self._pending += to_mono(in_data, self._channels)
        while len(self._pending) >= self._frame_bytes:
            frame = bytes(self._pending[:self._frame_bytes])
            del self._pending[:self._frame_bytes]
            self._on_frame(frame)
        return None, pyaudio.paContinue

    def _count_overflow(self) -> None:
        self.overflows += 1
        now_s = self._monotonic()
        if now_s - self._last_overflow_log_s >= OVERFLOW_LOG_INTERVAL_S:
            # rate-limited so a starved CPU does not also get a log flood from the audio thread
            log.warning("mic %r: input overflow (%d since open, %d since last report); audio was lost",
                        self.device_name, self.overflows, self.overflows - self._overflows_logged)
            self._last_overflow_log_s = now_s
            self._overflows_logged = self.overflows

    def close(self) -> None:
        stream = self._stream
        self._stream = self._pa = None
        if stream is not None:
            try:
                stream.stop_stream()  # returns after the last callback has finished
                stream.close()
            except OSError as exc:
                log.warning("mic %r: error while closing: %s", self.device_name, exc)
        # the PortAudio host stays initialised for the next conversation (see PortAudioHost)


class WavMic:
    """Plays a WAV file as if it were a microphone, then silence until closed (so a server VAD sees
    the turn end). Paced against the monotonic clock from the start of `open()`; frame n is due at
    t0 + n*frame_ms, so sleep overshoot never accumulates.

    Thread: open/close from the controller thread; `on_frame` from the pacing thread. With
    `realtime=False` the file frames are delivered as fast as possible, the trailing silence paced.
    """

    def __init__(self, path: str, frame_ms: int = 20, *, realtime: bool = True,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
        self.path = str(path)
        self.frame_ms = frame_ms
        self._realtime = realtime
        self._clock, self._sleep = clock, sleep
        self._pcm, self.sample_rate_hz = self._read(self.path)
        self._frame_bytes = self.sample_rate_hz * frame_ms // 1000 * 2
        if self._frame_bytes == 0:
            raise AudioDeviceError(f"WAV mic {self.path!r}: {frame_ms} ms is less than one sample "
                                   f"at {self.sample_rate_hz} Hz")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.frames_delivered = 0

    @staticmethod
    def _read(path: str) -> tuple[bytes, int]:
        try:
            with wave.open(path, "rb") as w:
                width, channels, rate_hz = w.getsampwidth(), w.getnchannels(), w.getframerate()
                data = w.readframes(w.getnframes())
        except (OSError, EOFError, wave.Error) as exc:
            raise AudioDeviceError(f"WAV mic {path!r}: cannot read it as a WAV file: {exc}") from exc
        if width != 2:
            raise AudioDeviceError(f"WAV mic {path!r}: {8 * width}-bit samples; need 16-bit signed PCM")
        if channels not in (1, 2):
            raise AudioDeviceError(f"WAV mic {path!r}: {channels} channels; need mono or stereo")
        return to_mono(data, channels), rate_hz

    def open(self, on_frame: Callable[[bytes], None]) -> None:
        if self._thread is not None:
            raise RuntimeError("WavMic is already open")
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, args=(on_frame,), name="wav-mic", daemon=True)
        self._thread.start()

    def _run(self, on_frame: Callable[[bytes], None]) -> None:
        frame_s = self.frame_ms / 1000.0
        silence = bytes(self._frame_bytes)
        start_s = self._clock()
        n = 0
        rebased = False
        file_frames = -(-len(self._pcm) // self._frame_bytes)
        while not self._stop.is_set():
            if not self._realtime and n == file_frames and not rebased:
                start_s = self._clock() - n * frame_s  # unpaced file done: pace the silence from now
                rebased = True
            if self._realtime or n >= file_frames:
                delay_s = start_s + n * frame_s - self._clock()
                if delay_s > 0:
                    self._sleep(delay_s)
                    continue  # re-check stop and the clock; sleep may return early
            chunk = self._pcm[n * self._frame_bytes:(n + 1) * self._frame_bytes]
            frame = chunk + silence[len(chunk):] if len(chunk) < self._frame_bytes else chunk
            if not self._stop.is_set():
                on_frame(frame)
                n += 1
                self.frames_delivered = n

    def close(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join()
