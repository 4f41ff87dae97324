"""Speakers: a PortAudio output stream (`PyAudioSpeaker`) and a WAV-file sink (`WavSpeaker`, in
wavfile.py, re-exported here).

Both keep one stream open for the whole conversation and pull from a `PlayoutBuffer`.
Thread: open/write/stop/played_samples/check_stream/close from the controller thread; the pull
side, `on_drained` and `on_error` run on the audio thread (our writer thread or the WAV pacing
thread). The audio-thread contract and the failure path are described in ports.py.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable

import pyaudio

from pivoice.audio import devices
from pivoice.audio.host import PortAudioHost
from pivoice.audio.playout import PlayoutBuffer
from pivoice.audio.health import STREAM_STALL_S, StreamWatch, XrunLog, failure, watch_blocking
from pivoice.audio.ports import AudioDeviceError, OnError
from pivoice.audio.wavfile import OUTPUT_KEY, WavSpeaker, check_wav_output
from pivoice.osthread import name_this_thread

__all__ = ["OUTPUT_KEY", "PyAudioSpeaker", "SPEAKER_FALLBACK_RATES_HZ", "WavSpeaker", "check_wav_output", "upmix"]

log = logging.getLogger(__name__)

SPEAKER_FALLBACK_RATES_HZ = (48000, 44100, 24000, 16000)


def upmix(pcm16: bytes, channels: int) -> bytes:
    """Mono s16le -> the same samples on every channel. Runs on the writer thread for every period:
    byte slicing costs about half of numpy's repeat there, and silence needs no copying at all."""
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
    """PortAudio output in blocking mode, fed by our own writer thread ("speaker").

    The stream is opened with the conversation but runs only while there is something to play:
    started when a reply's first audio is queued, stopped once it has played out, so between replies
    and while the user talks nothing wakes. While it runs, the writer wakes once per `buffer_ms`
    period: it waits for room in the device buffer on a condition variable, not inside a blocking
    write, so `stop()` (barge-in) reaches it at once. It then stops the stream, which drops what the
    device still holds (PortAudio's ALSA host drops on stop; it never drains), so the speaker falls
    silent within milliseconds of the press instead of after the device buffer.

    Thread: open/write/stop/played_samples/check_stream/close from the controller thread;
    `_write_loop` on the "speaker" thread, which alone touches the stream between open and close;
    `on_drained`/`on_error` from it.
    """

    def __init__(self, device: str = "default", sample_rate_hz: int | None = None, *, prime_ms: int = 60,
                 buffer_ms: int = 40, pyaudio_factory: Callable[[], Any] = pyaudio.PyAudio,
                 portaudio: PortAudioHost | None = None, clock: Callable[[], float] = time.monotonic,
                 stall_s: float = STREAM_STALL_S) -> None:
        self.device, self._wanted_rate_hz = device, sample_rate_hz
        self.sample_rate_hz = sample_rate_hz or 0
        self.prime_ms, self.buffer_ms = prime_ms, buffer_ms
        # the daemon passes one host for mic and speaker; standalone use gets a private one
        self._host = portaudio or PortAudioHost(pyaudio_factory)
        self._host.serve(device, devices.OUTPUT)
        self._stream: Any = None
        self._buffer: PlayoutBuffer | None = None
        self._thread: threading.Thread | None = None
        self._wake = threading.Condition()
        self._closing = threading.Event()
        self._flush = False   # guarded by _wake: stop() asks the writer to drop what the device holds
        # guarded by _wake: the writer waits for audio (not for room), so write() has news for it.
        # While it waits for room, a delta (tens a second while a reply arrives) would only wake it early.
        self._awaiting_audio = False
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
        index, self.device_name = self._host.find(self.device, devices.OUTPUT)
        try:
            rate_hz, self._channels = self._host.choose_format(index, self.device_name, devices.OUTPUT,
                                                              self._wanted_rate_hz, SPEAKER_FALLBACK_RATES_HZ)
            self.sample_rate_hz = rate_hz
            self._buffer = PlayoutBuffer(rate_hz, rate_hz * self.prime_ms // 1000)
            self._watch.arm(on_error)
            try:
                self._stream = self._host.open_stream(format=pyaudio.paInt16, channels=self._channels,
                                                      rate=rate_hz, output=True, output_device_index=index,
                                                      frames_per_buffer=rate_hz * self.buffer_ms // 1000,
                                                      start=False)
            except (OSError, ValueError) as exc:
                raise AudioDeviceError(f"cannot open audio output [{index}] {self.device_name!r} at {rate_hz} Hz, "
                                       f"{self._channels} ch: {exc} (busy or unplugged?)") from exc
            self.output_latency_s = float(self._stream.get_output_latency())
            self._buffer.latency_samples = int(self.output_latency_s * rate_hz)
        except BaseException:
            self._watch.disarm()
            if self._stream is not None:   # no thread has it yet
                self._host.close_stream(self._stream, f"speaker {self.device_name!r}", already_reported=True)
            self._stream = None
            raise
        # each writer gets its own flag: one left stuck in the driver by close() must stay closed
        # when the next conversation opens
        self._closing = threading.Event()
        self._flush = False
        self._thread = threading.Thread(target=self._write_loop, name="speaker", daemon=True,
                                        args=(self._stream, self._buffer, on_drained, self._closing))
        self._thread.start()
        log.info("speaker: [%d] %r at %d Hz, %d ch, output latency %.0f ms", index, self.device_name, rate_hz,
                 self._channels, 1000 * self.output_latency_s)

    def _write_loop(self, stream: Any, buffer: PlayoutBuffer, on_drained: Callable[[], None],
                    closing: threading.Event) -> None:
        name_this_thread("speaker")
        try:
            self._play(stream, buffer, on_drained, closing)
        except Exception as exc:   # see ports.py: report once and end; PortAudio raises OSError on a lost device
            if not closing.is_set():
                self._watch.fail(failure(f"output {self.device_name!r}", "writing", exc))
        finally:
            # only this thread may close the stream (see PyAudioMic._read_loop)
            self._host.close_stream(stream, f"speaker {self.device_name!r}", already_reported=self._watch.failed)

    def _play(self, stream: Any, buffer: PlayoutBuffer, on_drained: Callable[[], None],
              closing: threading.Event) -> None:
        rate_hz = self.sample_rate_hz
        period = rate_hz * self.buffer_ms // 1000
        running = False
        while True:
            with self._wake:
                while not (closing.is_set() or self._flush or buffer.active()):
                    self._watch.idle()
                    self._awaiting_audio = True
                    self._wake.wait()
                    self._awaiting_audio = False
                flush, self._flush = self._flush, False
            if closing.is_set():
                return
            if flush or not buffer.active():
                if running:   # barge-in: drop what the device holds, now
                    stream.stop_stream()
                    running = False
                continue
            if not running:
                stream.start_stream()
                running = True
                # What the device buffer holds (PortAudio reports less: 2 of the 3 periods ALSA keeps):
                # audio counts as played, and the stream may be stopped, only once that much followed it.
                buffer.latency_samples = max(buffer.latency_samples, stream.get_write_available())
            room = stream.get_write_available()
            if room < period:
                self._watch.busy()
                with self._wake:   # stop() and close() wake this wait at once
                    if not (self._flush or closing.is_set()):
                        self._wake.wait((period - room) / rate_hz + 0.002)
                continue
            data, drained = buffer.pull(period)
            try:
                stream.write(upmix(data, self._channels), exception_on_underflow=True)
            except OSError as exc:
                if pyaudio.paOutputUnderflowed not in exc.args[:1] + exc.args[-1:]:
                    raise
                self.underflows += 1   # PortAudio has written the block; it reports the gap before it
            self._watch.idle()
            if drained:
                stream.stop_stream()   # only silence is left in the device: played out
                running = False
                on_drained()

    def check_stream(self) -> None:
        watch_blocking(self._thread, self._closing, self._watch, f"output {self.device_name!r}", self._stall_s)
        self._underflow_log.update(f"speaker {self.device_name!r}", self.underflows)

    def stats(self) -> dict:
        return {"device": self.device_name or self.device, "underflows": self.underflows, **self._watch.counters()}

    def write(self, pcm16: bytes) -> None:
        self._buffer.write(pcm16)
        with self._wake:
            if self._awaiting_audio:
                self._wake.notify()

    def stop(self) -> None:
        if self._buffer is not None:
            self._buffer.clear()
            with self._wake:
                self._flush = True
                self._wake.notify()

    def played_samples(self) -> int:
        return self._buffer.played_samples() if self._buffer else 0

    def pending_samples(self) -> int:
        return self._buffer.pending_samples() if self._buffer else 0

    def audible_since_s(self) -> float | None:
        """Monotonic time the writer thread started handing the current stretch of audio to the device."""
        return self._buffer.audible_since_s if self._buffer else None

    def close(self) -> None:
        self._watch.disarm()
        with self._wake:
            self._closing.set()
            self._wake.notify()
        thread = self._thread
        self._thread = self._stream = None
        if thread is not None:
            # it never waits inside PortAudio for longer than one period, then closes the stream
            thread.join(1.0)
            if thread.is_alive():
                log.warning("speaker %r: the writer is stuck in the driver; its stream will be closed when "
                            "the driver returns (until then the device may be busy)", self.device_name)
        # the PortAudio host stays initialised for the next conversation (see PortAudioHost)
