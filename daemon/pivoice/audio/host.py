"""The PortAudio host of the daemon: one initialisation shared by the mic and the speaker, the
streams opened on it, and the device list it re-reads only when that is safe.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable

import pyaudio

from pivoice.audio import devices
from pivoice.audio.devices import INPUT, OUTPUT
from pivoice.audio.ports import AudioDeviceError

log = logging.getLogger(__name__)


class PortAudioHost:
    """One PortAudio initialisation shared by the mic and the speaker, and the streams opened on it.

    Pa_Initialize enumerates every ALSA device (measured: 80 ms), so paying it on each press would
    be most of press-to-first-audio. The device list it takes is a snapshot, though, and the only way
    to read it again is Pa_Terminate + Pa_Initialize. Pa_Terminate frees every stream still open
    (PyAudio closes them first), and an audio thread still inside one of them then crashes the whole
    process (reproduced: terminate while the mic reader waits in a read -> SIGSEGV; so did an unplugged
    USB speaker at every press, when its lookup re-enumerated under the open mic). So the host counts
    the streams opened through it (`open_stream`/`close_stream`) and re-enumerates only while none is
    open. To still find a device plugged in after start-up, the first lookup of a conversation (nothing
    open yet) checks every device the host serves (`serve`), not only the one asked for: a missing
    speaker is noticed, and the list read again, before the mic opens.

    The format each device is opened with is kept too (`choose_format`): PortAudio tests a format by
    opening the device (through PulseAudio's plugin: a connection to the server), 3.5 ms of CPU per
    device per press, paid before the mic could open. It is worked out again after the list is re-read
    or after an open fails.

    Thread: serve/get/find/open_stream/refresh/terminate from the controller thread (or the CLI);
    close_stream from the audio thread that owns the stream, which alone uses it until then.
    """

    def __init__(self, pyaudio_factory: Callable[[], Any] = pyaudio.PyAudio) -> None:
        self._factory = pyaudio_factory
        self._pa: Any = None
        self._served: set[tuple[str, str]] = set()   # (device, direction)
        self._lock = threading.Lock()
        self._open_streams = 0   # guarded by _lock
        self._formats: dict[tuple, tuple[int, int]] = {}

    def serve(self, wanted: str, direction: str) -> None:
        """A mic or speaker on this host will look up `wanted` (checked at each conversation's first lookup)."""
        self._served.add((wanted, direction))

    @property
    def open_streams(self) -> int:
        with self._lock:
            return self._open_streams

    def get(self) -> Any:
        if self._pa is None:
            devices.quiet_native_audio_logs()
            self._pa = self._factory()
        return self._pa

    def refresh(self) -> Any:
        """Read the device list again, unless a stream is open (then the current snapshot stays)."""
        if self.open_streams:
            return self.get()
        self.terminate()
        return self.get()

    def find(self, wanted: str, direction: str) -> tuple[int, str]:
        """(index, name) of the `direction` device `wanted`. With no stream open, the list is read
        again first if it lacks any served device."""
        pa = self.get()
        expected = self._served | {(wanted, direction)}
        if not self.open_streams and not all(devices.matching_devices(pa, w, d) for w, d in expected):
            pa = self.refresh()
        return devices.find_device(pa, wanted, direction)

    def choose_format(self, index: int, name: str, direction: str, wanted_rate_hz: int | None,
                      fallback_rates_hz: tuple[int, ...]) -> tuple[int, int]:
        """(rate_hz, channels) for the device, as `devices.choose_format`, worked out once per device list."""
        key = (index, name, direction, wanted_rate_hz, fallback_rates_hz)
        if key not in self._formats:
            self._formats[key] = devices.choose_format(self.get(), index, name, direction, wanted_rate_hz,
                                                       fallback_rates_hz)
        return self._formats[key]

    def open_stream(self, **kwargs: Any) -> Any:
        """`pa.open(**kwargs)`, counted as open until `close_stream`."""
        try:
            stream = self.get().open(**kwargs)
        except BaseException:
            self._formats.clear()   # the device may not be the one the formats were worked out for
            raise
        with self._lock:
            self._open_streams += 1
        return stream

    def close_stream(self, stream: Any, label: str, already_reported: bool) -> None:
        """Stop and close a stream from `open_stream`. An OSError (a lost device) is logged under
        `label`, at DEBUG if the device's failure was `already_reported`; the stream is closed and
        uncounted either way."""
        try:
            for step in (stream.stop_stream, stream.close):
                try:
                    step()
                except OSError as exc:
                    log.log(logging.DEBUG if already_reported else logging.WARNING,
                            "%s: error while closing: %s", label, exc)
                    already_reported = True   # one line per close
        finally:
            with self._lock:
                self._open_streams -= 1

    def terminate(self) -> None:
        """Pa_Terminate: only once no audio thread uses a stream (closes what PyAudio still has open)."""
        pa, self._pa = self._pa, None
        self._formats.clear()
        if pa is not None:
            pa.terminate()


def warm_up(portaudio: PortAudioHost, input_device: str, output_device: str, wav_prefix: str) -> None:
    """Initialise PortAudio now (80 ms the first press would otherwise pay) and report a missing
    device at start-up. Not fatal: a USB device may be plugged in later, and each press says it again.
    Devices named `wav:...` are files, not PortAudio's. Main thread, at start-up."""
    for direction, device in ((INPUT, input_device), (OUTPUT, output_device)):
        if device.startswith(wav_prefix):
            continue
        try:
            portaudio.find(device, direction)
        except AudioDeviceError as exc:
            log.error("audio.%s.device: %s", direction, exc)
