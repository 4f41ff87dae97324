"""Microphones: a PortAudio capture stream read by our own thread (`PyAudioMic`) and a WAV-file
stand-in (`WavMic`, in wavfile.py, re-exported here).

Both deliver lists of consecutive mono s16le frames of exactly `frame_ms` each to `on_frames`, from
their own audio thread: the first call after `open` carries one frame (a press waits for it), every
later one `block_ms` of audio. They report a stream that stops through `on_error` (the contract is
in ports.py). `open`/`close`/`check_stream` come from the controller thread.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable

import pyaudio

from pivoice.audio import devices
from pivoice.audio.host import PortAudioHost
from pivoice.audio.codec import to_mono
from pivoice.audio.health import STREAM_STALL_S, StreamWatch, XrunLog, failure, watch_blocking
from pivoice.audio.ports import AudioDeviceError, OnError, OnFrames
from pivoice.audio.wavfile import INPUT_KEY, WavMic, read_wav_input
from pivoice.osthread import name_this_thread

__all__ = ["INPUT_KEY", "MIC_FALLBACK_RATES_HZ", "PyAudioMic", "WavMic", "read_wav_input", "to_mono"]

log = logging.getLogger(__name__)

MIC_FALLBACK_RATES_HZ = (16000, 48000, 44100, 32000, 22050, 8000)


class PyAudioMic:
    """ALSA capture through PortAudio in blocking mode, read by our own thread (works on plain ALSA hw
    devices, no sound server).

    Why blocking reads and not PortAudio's callback: the cost of the audio path is set by wakeups, not
    by the work. A PortAudio callback wakes a thread PortAudio owns, and PyAudio builds and destroys a
    Python thread state for every call (measured ~12 % of the daemon's CPU at 50 callbacks/s). Our
    reader thread is an ordinary Python thread: it wakes once per `block_ms` read (10/s at 100 ms),
    and between reads it waits inside PortAudio with the GIL released. The ALSA period is one block
    too: PortAudio's blocking read wakes once per period, so a shorter one costs wakeups that bring
    nothing (40 ms periods: 25/s; measured 13 % of the daemon's CPU in a conversation). The first
    frame after a press does not wait for a period: `_await_first_frame` asks how much is there, and
    a USB device's hardware pointer moves every millisecond or so.

    Overflows: PyAudio drops the samples of a read that reports an overflow if asked to raise, so we
    never ask; instead the reader compares the audio it got with the time that passed: a shortfall
    that grows by more than one period means the device dropped audio.

    Thread: open/close/check_stream from the controller thread; `_read_loop` on the "mic" thread
    (the only user of the stream between open and close); stats() from any thread.
    """

    def __init__(self, device: str = "default", sample_rate_hz: int | None = None, frame_ms: int = 20, *,
                 block_ms: int = 100, period_ms: int | None = None, pyaudio_factory: Callable[[], Any] = pyaudio.PyAudio,
                 portaudio: PortAudioHost | None = None,
                 monotonic: Callable[[], float] = time.monotonic, stall_s: float = STREAM_STALL_S) -> None:
        if block_ms % frame_ms:
            raise ValueError(f"block_ms {block_ms} is not a multiple of frame_ms {frame_ms}")
        self.device = device
        self._wanted_rate_hz = sample_rate_hz
        self.sample_rate_hz = sample_rate_hz or 0
        self.frame_ms, self.block_ms = frame_ms, block_ms
        self.period_ms = period_ms or block_ms
        # the daemon passes one host for mic and speaker; standalone use gets a private one
        self._host = portaudio or PortAudioHost(pyaudio_factory)
        self._host.serve(device, devices.INPUT)
        self._clock = monotonic
        self._stream: Any = None
        self._thread: threading.Thread | None = None
        self._closing = threading.Event()
        self._channels = 1
        self.overflows = 0
        self._overflow_log = XrunLog("input overflow", "audio was lost", monotonic)
        self.device_name = ""
        self._watch = StreamWatch(monotonic)
        self._stall_s = stall_s

    def open(self, on_frames: OnFrames, on_error: OnError | None = None) -> None:
        if self._stream is not None:
            raise RuntimeError("PyAudioMic is already open")
        index, self.device_name = self._host.find(self.device, devices.INPUT)
        try:
            rate_hz, self._channels = self._host.choose_format(index, self.device_name, devices.INPUT,
                                                              self._wanted_rate_hz, MIC_FALLBACK_RATES_HZ)
            self.sample_rate_hz = rate_hz
            frame_samples = rate_hz * self.frame_ms // 1000
            self._watch.arm(on_error)
            try:
                self._stream = self._host.open_stream(format=pyaudio.paInt16, channels=self._channels, rate=rate_hz,
                                                      input=True, input_device_index=index,
                                                      frames_per_buffer=self.period_ms * rate_hz // 1000)
            except (OSError, ValueError) as exc:
                raise AudioDeviceError(f"cannot open audio input [{index}] {self.device_name!r} at {rate_hz} Hz, "
                                       f"{self._channels} ch: {exc} (busy or unplugged?)") from exc
        except BaseException:
            self._watch.disarm()
            raise
        # each reader gets its own flag: one left stuck in the driver by close() must stay closed
        # when the next conversation opens
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._read_loop, name="mic", daemon=True,
                                        args=(self._stream, on_frames, frame_samples, self._closing))
        self._thread.start()
        log.info("mic: [%d] %r at %d Hz, %d ch, %d ms frames read %d ms at a time", index, self.device_name,
                 rate_hz, self._channels, self.frame_ms, self.block_ms)

    def _read_loop(self, stream: Any, on_frames: OnFrames, frame_samples: int, closing: threading.Event) -> None:
        name_this_thread("mic")
        try:
            self._read(stream, on_frames, frame_samples, closing)
        finally:
            # Only this thread may close the stream: closing it while a read is inside PortAudio frees
            # memory the read still uses (a crash, not an error). So close() waits for us, and a reader
            # stuck in the driver takes its stream with it when the driver lets go.
            self._host.close_stream(stream, f"mic {self.device_name!r}", already_reported=self._watch.failed)

    def _read(self, stream: Any, on_frames: OnFrames, frame_samples: int, closing: threading.Event) -> None:
        frame_bytes = 2 * frame_samples
        frames_per_block = self.block_ms // self.frame_ms
        period_s = max(self.block_ms, self.period_ms) / 1000
        n_samples, captured_s, started_s, shortfall_s = frame_samples, 0.0, None, 0.0
        while not closing.is_set():
            try:
                self._watch.busy()
                if started_s is None and not self._await_first_frame(stream, frame_samples, closing):
                    break
                data = stream.read(n_samples, exception_on_overflow=False)
                self._watch.idle()
                if closing.is_set():
                    break
                pcm = to_mono(data, self._channels)
                on_frames([pcm[i:i + frame_bytes] for i in range(0, len(pcm), frame_bytes)])
            except Exception as exc:   # see ports.py: report once and end; PortAudio raises OSError on a lost device
                if not closing.is_set():
                    self._watch.fail(failure(f"input {self.device_name!r}", "reading", exc))
                return
            now_s = self._clock()
            if started_s is None:
                started_s = now_s   # the stream start latency is not a loss: measure from the first read
            else:
                captured_s += n_samples / self.sample_rate_hz
                late_s = (now_s - started_s) - captured_s
                if late_s > shortfall_s + period_s:
                    self.overflows += 1
                    shortfall_s = late_s
            n_samples = frames_per_block * frame_samples

    def _await_first_frame(self, stream: Any, frame_samples: int, closing: threading.Event) -> bool:
        """Wait, sleeping, until the stream holds the first frame; False if closed meanwhile.

        Why not just read: until a freshly started capture stream delivers its first period, PortAudio's
        blocking read spins instead of sleeping (poll keeps returning at once; measured on ALSA's
        pulse plugin: 28-35 ms of CPU for the first 20-30 ms read, more than the rest of a 12 s
        conversation's mic reads together). Asking how much is there every quarter frame costs
        about five wakeups, once per conversation.
        """
        step_s = self.frame_ms / 4000
        while stream.get_read_available() < frame_samples:
            if closing.wait(step_s):
                return False
        return True

    def check_stream(self) -> None:
        watch_blocking(self._thread, self._closing, self._watch, f"input {self.device_name!r}", self._stall_s)
        self._overflow_log.update(f"mic {self.device_name!r}", self.overflows)

    def stats(self) -> dict:
        return {"device": self.device_name or self.device, "overflows": self.overflows, **self._watch.counters()}

    def close(self) -> None:
        self._watch.disarm()
        self._closing.set()
        thread = self._thread
        self._thread = self._stream = None
        if thread is not None:
            # the current read ends within block_ms, and the reader then closes the stream; a stalled
            # device gets no longer than this, and keeps its stream until the driver returns
            thread.join(self.block_ms / 1000 + 1.0)
            if thread.is_alive():
                log.warning("mic %r: the reader is stuck in the driver; its stream will be closed when the "
                            "driver returns (until then the device may be busy)", self.device_name)
        # the PortAudio host stays initialised for the next conversation (see PortAudioHost)
