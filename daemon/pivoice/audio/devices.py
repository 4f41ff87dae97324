"""PortAudio device discovery: listing, picking a device by name, picking a rate and channel count.

`pivoice devices` prints what exists; the mic and the speaker use the same helpers so their
errors list the same devices. Called from the controller thread (open) or the CLI.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import json
import logging
import sys
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterable

import pyaudio

from pivoice.audio.ports import AudioDeviceError

log = logging.getLogger(__name__)

STANDARD_RATES_HZ = (8000, 16000, 22050, 24000, 32000, 44100, 48000)
INPUT, OUTPUT = "input", "output"


_native_handlers: list = []  # keeps the ctypes callbacks alive for the life of the process


def quiet_native_audio_logs() -> None:
    """Route alsa-lib's and libjack's stderr chatter (dozens of lines per PortAudio start while it
    probes every ALSA plugin PCM) to DEBUG logging. Errors that matter still come back from
    PortAudio as return codes, which we report with the device name. Idempotent."""
    if _native_handlers:
        return
    alsa_handler_t = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_int,
                                      ctypes.c_char_p)
    jack_handler_t = ctypes.CFUNCTYPE(None, ctypes.c_char_p)

    def alsa_message(file, line, function, err, fmt):  # the printf arguments are not reachable
        log.debug("alsa-lib %s:%d %s: %s", (file or b"").decode(errors="replace"), line,
                  (function or b"").decode(errors="replace"), (fmt or b"").decode(errors="replace"))

    def jack_message(msg):
        log.debug("libjack: %s", (msg or b"").decode(errors="replace"))

    _native_handlers.extend([alsa_handler_t(alsa_message), jack_handler_t(jack_message)])
    for name, setters, handler in (("asound", ("snd_lib_error_set_handler",), _native_handlers[0]),
                                   ("jack", ("jack_set_error_function", "jack_set_info_function"),
                                    _native_handlers[1])):
        path = ctypes.util.find_library(name)
        if not path:
            continue
        try:
            lib = ctypes.CDLL(path)
            for setter in setters:
                getattr(lib, setter)(handler)
        except (OSError, AttributeError) as exc:
            log.debug("cannot quiet lib%s: %s", name, exc)


@dataclass(frozen=True)
class DeviceInfo:
    index: int
    name: str
    max_input_channels: int
    max_output_channels: int
    default_rate_hz: int
    input_rates_hz: tuple[int, ...]
    output_rates_hz: tuple[int, ...]


def _max_channels(info: dict, direction: str) -> int:
    return int(info["maxInputChannels" if direction == INPUT else "maxOutputChannels"])


def is_supported(pa: Any, index: int, direction: str, rate_hz: int, channels: int) -> bool:
    kwargs = {f"{direction}_device": index, f"{direction}_channels": channels, f"{direction}_format": pyaudio.paInt16}
    try:
        return bool(pa.is_format_supported(rate_hz, **kwargs))
    except (ValueError, OSError):
        # PyAudio reports "unsupported" as ValueError; a busy ALSA hw device as OSError
        return False


def channels_for(pa: Any, index: int, direction: str, rate_hz: int, max_channels: int) -> int | None:
    """Mono if the device takes it (USB mics usually do), else stereo, else its maximum."""
    for channels in dict.fromkeys((1, min(2, max_channels), max_channels)):
        if channels >= 1 and is_supported(pa, index, direction, rate_hz, channels):
            return channels
    return None


def probe_rates(pa: Any, index: int, direction: str, max_channels: int,
                rates_hz: Iterable[int] = STANDARD_RATES_HZ) -> tuple[int, ...]:
    if max_channels < 1:
        return ()
    return tuple(r for r in rates_hz if channels_for(pa, index, direction, r, max_channels) is not None)


def describe_pa(pa: Any) -> list[DeviceInfo]:
    devices = []
    for index in range(pa.get_device_count()):
        info = pa.get_device_info_by_index(index)
        max_in, max_out = _max_channels(info, INPUT), _max_channels(info, OUTPUT)
        devices.append(DeviceInfo(
            index=index, name=str(info["name"]), max_input_channels=max_in, max_output_channels=max_out,
            default_rate_hz=int(info["defaultSampleRate"]),
            input_rates_hz=probe_rates(pa, index, INPUT, max_in),
            output_rates_hz=probe_rates(pa, index, OUTPUT, max_out)))
    return devices


def list_devices(pyaudio_factory: Callable[[], Any] = pyaudio.PyAudio) -> list[DeviceInfo]:
    quiet_native_audio_logs()
    pa = pyaudio_factory()
    try:
        return describe_pa(pa)
    finally:
        pa.terminate()


def _listing(pa: Any, direction: str) -> str:
    lines = []
    for d in describe_pa(pa):
        rates = d.input_rates_hz if direction == INPUT else d.output_rates_hz
        channels = d.max_input_channels if direction == INPUT else d.max_output_channels
        if channels > 0:
            shown = ", ".join(str(r) for r in rates) or "none of the standard rates"
            lines.append(f"  [{d.index}] {d.name!r} ({channels} ch; rates {shown})")
    return "\n".join(lines) or "  (no devices at all; is the USB device plugged in and the user in group 'audio'?)"


def matching_devices(pa: Any, wanted: str, direction: str) -> list[tuple[int, str]]:
    """(index, name) of every `direction` device `wanted` names, the default device first for "default"."""
    if wanted == "default":
        try:
            info = (pa.get_default_input_device_info() if direction == INPUT
                    else pa.get_default_output_device_info())
            return [(int(info["index"]), str(info["name"]))]
        except (OSError, IOError):
            pass  # no default device: fall through to a name match, which then explains
    matches = []
    for index in range(pa.get_device_count()):
        info = pa.get_device_info_by_index(index)
        if _max_channels(info, direction) > 0 and wanted.lower() in str(info["name"]).lower():
            matches.append((index, str(info["name"])))
    return matches


def find_device(pa: Any, wanted: str, direction: str) -> tuple[int, str]:
    """Index and name of the `direction` device named `wanted` ("default" or a case-insensitive
    substring; an exact name wins over substring matches, else the first match)."""
    matches = matching_devices(pa, wanted, direction)
    if not matches:
        raise AudioDeviceError(f"no audio {direction} device matches {wanted!r}; {direction}s available:\n"
                               f"{_listing(pa, direction)}")
    exact = [m for m in matches if m[1].lower() == wanted.lower()]
    chosen = (exact or matches)[0]
    if len(matches) > 1:
        log.info("audio %s %r matches %d devices (%s); using [%d] %r", direction, wanted, len(matches),
                 ", ".join(repr(n) for _, n in matches), chosen[0], chosen[1])
    return chosen


def choose_format(pa: Any, index: int, name: str, direction: str, wanted_rate_hz: int | None,
                  fallback_rates_hz: Iterable[int]) -> tuple[int, int]:
    """(rate_hz, channels) to open: the configured rate if the device takes it, else the first
    supported fallback rate (the resamplers absorb the difference)."""
    max_channels = _max_channels(pa.get_device_info_by_index(index), direction)
    candidates = list(dict.fromkeys(([wanted_rate_hz] if wanted_rate_hz else []) + list(fallback_rates_hz)))
    for rate_hz in candidates:
        channels = channels_for(pa, index, direction, rate_hz, max_channels)
        if channels is not None:
            if wanted_rate_hz and rate_hz != wanted_rate_hz:
                log.warning("audio %s [%d] %r does not support %d Hz; using %d Hz", direction, index, name,
                            wanted_rate_hz, rate_hz)
            return rate_hz, channels
    supported = probe_rates(pa, index, direction, max_channels) or ("none of " + str(STANDARD_RATES_HZ),)
    asked = ", ".join(map(str, candidates))
    raise AudioDeviceError(f"audio {direction} device [{index}] {name!r} supports none of {asked} Hz "
                           f"(16-bit); it supports: {', '.join(map(str, supported))}")


def format_table(devices: list[DeviceInfo]) -> str:
    out = []
    for direction in (INPUT, OUTPUT):
        out.append(f"{direction.capitalize()}s:")
        out.append(f"  {'idx':>3}  {'name':<32} {'ch':>3}  rates (Hz, 16-bit)")
        rows = 0
        for d in devices:
            channels = d.max_input_channels if direction == INPUT else d.max_output_channels
            if channels < 1:
                continue
            rows += 1
            rates = d.input_rates_hz if direction == INPUT else d.output_rates_hz
            out.append(f"  {d.index:>3}  {d.name[:32]:<32} {channels:>3}  {' '.join(map(str, rates)) or '-'}")
        if not rows:
            out.append(f"  (no {direction} devices: is the sound card/USB device plugged in, the user in group 'audio'?)")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def main(argv: list[str], pyaudio_factory: Callable[[], Any] = pyaudio.PyAudio) -> int:
    parser = argparse.ArgumentParser(prog="pivoice devices",
                                     description="List audio inputs and outputs with their supported sample rates.")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    try:
        devices = list_devices(pyaudio_factory)
    except OSError as exc:
        print(f"pivoice devices: cannot initialise PortAudio: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps([asdict(d) for d in devices], indent=2))
    else:
        sys.stdout.write(format_table(devices))
    return 0
