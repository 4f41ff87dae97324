"""WAV files standing in for the microphone (`WavMic`) and the speaker (`WavSpeaker`): the config's
`wav:PATH` devices, for demos, tests and headless runs. Both follow the same contract as the
PortAudio devices (ports.py), with a pacing thread where PortAudio has its callback thread, and
both are checked when built, so a wrong `wav:` path is a start-up error naming its config key
(`read_wav_input`, `check_wav_output`: also what `pivoice check-config` runs).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import wave
from typing import Any, Callable

from pivoice.audio.codec import to_mono
from pivoice.audio.health import StreamWatch
from pivoice.audio.playout import PlayoutBuffer
from pivoice.audio.ports import OnError, OnFrames, WavDeviceError
from pivoice.osthread import name_this_thread

log = logging.getLogger(__name__)

INPUT_KEY = "audio.input.device"
OUTPUT_KEY = "audio.output.device"


def read_wav_input(path: str, key: str = INPUT_KEY, *, header_only: bool = False) -> tuple[bytes, int]:
    """(mono s16le, rate_hz) of a `wav:` mic file, or WavDeviceError naming `key`, the path and the
    problem. `header_only` checks without reading the samples (start-up checks)."""
    try:
        with wave.open(path, "rb") as w:
            width, channels, rate_hz = w.getsampwidth(), w.getnchannels(), w.getframerate()
            data = b"" if header_only else w.readframes(w.getnframes())
    except FileNotFoundError:
        raise WavDeviceError(key, path, "no such file") from None
    except IsADirectoryError:
        raise WavDeviceError(key, path, "is a directory, not a WAV file") from None
    except PermissionError:
        raise WavDeviceError(key, path, f"not readable by this user (uid {os.geteuid()})", permission=True) from None
    except OSError as exc:
        raise WavDeviceError(key, path, f"cannot read it ({exc.strerror or exc})") from None
    except (EOFError, wave.Error) as exc:
        raise WavDeviceError(key, path, f"not a 16-bit PCM WAV file ({exc or 'truncated'})") from None
    if width != 2:
        raise WavDeviceError(key, path, f"{8 * width}-bit samples; need 16-bit signed PCM")
    if channels not in (1, 2):
        raise WavDeviceError(key, path, f"{channels} channels; need mono or stereo")
    return to_mono(data, channels), rate_hz


class WavMic:
    """Plays a WAV file as if it were a microphone, then silence until closed (so a server VAD sees
    the turn end). Paced against the monotonic clock from the start of `open()`; frame n is due at
    t0 + n*frame_ms, so sleep overshoot never accumulates. Like a PortAudio mic, the first frame goes
    alone and later ones in groups of `block_ms`, each group when its last frame is due.

    Thread: open/close/check_stream from the controller thread; `on_frames` and `on_error` from the
    pacing thread. With `realtime=False` the file frames are delivered as fast as possible, the
    trailing silence paced. `key` is the config key the path came from, for error messages.
    """

    def __init__(self, path: str, frame_ms: int = 20, *, block_ms: int | None = None, realtime: bool = True,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                 key: str = INPUT_KEY) -> None:
        self.path = str(path)
        self.frame_ms = frame_ms
        self.block_ms = block_ms or frame_ms
        if self.block_ms % frame_ms:
            raise ValueError(f"block_ms {self.block_ms} is not a multiple of frame_ms {frame_ms}")
        self._realtime = realtime
        self._clock, self._sleep = clock, sleep
        self._key = key
        self._pcm, self.sample_rate_hz = read_wav_input(self.path, key)
        self._frame_bytes = self.sample_rate_hz * frame_ms // 1000 * 2
        if self._frame_bytes == 0:
            raise WavDeviceError(key, self.path, f"{frame_ms} ms is less than one sample at {self.sample_rate_hz} Hz")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._watch = StreamWatch(clock)
        self.frames_delivered = 0

    def open(self, on_frames: OnFrames, on_error: OnError | None = None) -> None:
        if self._thread is not None:
            raise RuntimeError("WavMic is already open")
        self._stop.clear()
        self._watch.arm(on_error)
        self._thread = threading.Thread(target=self._run, args=(on_frames,), name="wav-mic", daemon=True)
        self._thread.start()

    def _run(self, on_frames: OnFrames) -> None:
        name_this_thread("wav-mic")
        try:
            self._pace(on_frames)
        except Exception as exc:   # see ports.py: the pacing thread reports once and ends
            self._watch.fail(f"wav:{self.path}: pacing thread failed ({type(exc).__name__}: {exc})")

    def _pace(self, on_frames: OnFrames) -> None:
        frame_s = self.frame_ms / 1000.0
        group = 1   # the first frame goes alone
        frames: list[bytes] = []
        silence = bytes(self._frame_bytes)
        start_s = self._clock()
        n = 0
        rebased = False
        file_frames = -(-len(self._pcm) // self._frame_bytes)
        while not self._stop.is_set():
            if not self._realtime and n == file_frames and not rebased:
                start_s = self._clock() - n * frame_s  # unpaced file done: pace the silence from now
                rebased = True
            last_of_group = len(frames) == group - 1
            if (self._realtime or n >= file_frames) and last_of_group:
                delay_s = start_s + n * frame_s - self._clock()
                if delay_s > 0:
                    self._sleep(delay_s)
                    continue  # re-check stop and the clock; sleep may return early
            chunk = self._pcm[n * self._frame_bytes:(n + 1) * self._frame_bytes]
            frame = chunk + silence[len(chunk):] if len(chunk) < self._frame_bytes else chunk
            if not self._stop.is_set():
                frames.append(frame)
                n += 1
                if len(frames) == group:
                    on_frames(frames)
                    frames, group = [], self.block_ms // self.frame_ms
                    self.frames_delivered = n

    def check_stream(self) -> None:
        thread = self._thread
        if thread is not None and not thread.is_alive() and not self._stop.is_set():
            self._watch.fail(f"wav:{self.path}: pacing thread ended")

    def stats(self) -> dict:
        return {"device": f"wav:{self.path}", "overflows": 0, "frames": self.frames_delivered,
                **self._watch.counters()}

    def close(self) -> None:
        self._watch.disarm()
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join()


def check_wav_output(path: str, key: str = OUTPUT_KEY) -> None:
    """WavDeviceError naming `key` unless a `wav:` speaker could create or overwrite `path` now."""
    target = os.path.abspath(path)
    directory = os.path.dirname(target)
    if os.path.isdir(target):
        raise WavDeviceError(key, path, "is a directory, not a file")
    if not os.path.isdir(directory):
        raise WavDeviceError(key, path, f"directory {directory} does not exist")
    existing = os.path.exists(target)
    if os.access(target if existing else directory, os.W_OK if existing else os.W_OK | os.X_OK):
        return
    what = "file" if existing else f"directory {directory}"
    if os.statvfs(directory).f_flag & os.ST_RDONLY:
        raise WavDeviceError(key, path, f"{what} not writable (read-only file system)")
    raise WavDeviceError(key, path, f"{what} not writable by this user (uid {os.geteuid()})", permission=True)


class WavSpeaker:
    """Fake sink for demos and tests: writes what it plays to a mono s16le WAV file.

    With `realtime` a pacing thread consumes `tick_ms` per tick against the monotonic clock and
    writes silence too, so the file is a timeline of the speaker and played_samples/stop/on_drained
    behave like a device. Without it, queued audio is written as soon as it arrives (no silence).
    The header is valid after every write and the file is flushed every `flush_s`. Reopened for a
    later conversation, it appends to what it wrote before. A path it cannot write is refused at
    construction (`key` names the config key in the error); a write that fails later (disk full)
    ends the pacing thread and is reported through `on_error`.
    """

    def __init__(self, path: str, sample_rate_hz: int = 24000, *, realtime: bool = True, tick_ms: int = 20,
                 flush_s: float = 1.0, clock: Callable[[], float] = time.monotonic, key: str = OUTPUT_KEY) -> None:
        check_wav_output(str(path), key)
        self.path, self.sample_rate_hz, self._realtime, self._key = str(path), sample_rate_hz, realtime, key
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
        self._watch = StreamWatch(clock)

    def open(self, on_drained: Callable[[], None], on_error: OnError | None = None) -> None:
        if self._thread is not None:
            raise RuntimeError("WavSpeaker is already open")
        earlier = self._earlier() if self._opened_before else b""
        try:
            self._file = open(self.path, "wb")
            self._wav = wave.open(self._file, "wb")
            self._wav.setnchannels(1)
            self._wav.setsampwidth(2)
            self._wav.setframerate(self.sample_rate_hz)
            self._wav.writeframes(earlier)
        except OSError as exc:
            self._close_file()
            raise WavDeviceError(self._key, self.path, f"cannot write it ({exc.strerror or exc})") from None
        self._opened_before = True
        self._buffer = PlayoutBuffer(self.sample_rate_hz, 0, self._latency_samples, clock=self._clock)
        self._stop_evt.clear()
        self._watch.arm(on_error)
        self._thread = threading.Thread(target=self._run, args=(on_drained,), name="wav-speaker", daemon=True)
        self._thread.start()

    def _earlier(self) -> bytes:
        """What an earlier conversation wrote, so this one continues the same recording."""
        try:
            with wave.open(self.path, "rb") as w:
                return w.readframes(w.getnframes())
        except (OSError, EOFError, wave.Error) as exc:   # removed or replaced meanwhile: start afresh
            log.warning("%s wav:%s: cannot read the earlier recording (%s); starting a new one",
                        self._key, self.path, exc)
            return b""

    def _run(self, on_drained: Callable[[], None]) -> None:
        name_this_thread("wav-speaker")
        try:
            self._pace(on_drained)
        except Exception as exc:   # see ports.py: the pacing thread reports once and ends
            detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            self._watch.fail(f"wav:{self.path}: writing failed ({type(exc).__name__}: {detail})")

    def _pace(self, on_drained: Callable[[], None]) -> None:
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

    def check_stream(self) -> None:
        thread = self._thread
        if thread is not None and not thread.is_alive() and not self._stop_evt.is_set():
            self._watch.fail(f"wav:{self.path}: pacing thread ended")

    def stats(self) -> dict:
        return {"device": f"wav:{self.path}", "underflows": 0, **self._watch.counters()}

    def close(self) -> None:
        self._watch.disarm()
        self._stop_evt.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        self._close_file()

    def _close_file(self) -> None:
        wav, file, self._wav, self._file = self._wav, self._file, None, None
        for closable in (wav, file):
            if closable is None:
                continue
            try:
                closable.close()   # wave writes the final header sizes here
            except OSError as exc:
                level = logging.DEBUG if self._watch.failed else logging.WARNING   # already reported
                log.log(level, "%s wav:%s: error while closing: %s", self._key, self.path, exc)
