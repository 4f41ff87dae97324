"""The `feedback:` config section: earcons (short sounds) and the status light.

```yaml
feedback:
  earcons:            # or `earcons: false` (all off) / `true` (all on, the default)
    listening: true   # true: the generated sound; false: none; "path/to/file.wav": that file
    thinking: true
    ended: true
    error: true
    timer: true
  light:
    kind: none        # none | led | pwmled | rgbled | apa102
    pin: GPIO12       # led, pwmled
    pins: {red: GPIO5, green: GPIO6, blue: GPIO13}   # rgbled
    active_high: true
    brightness: 1.0   # pwmled, rgbled, apa102: the brightest any state goes (0..1]
    count: 3          # apa102: LEDs on the SPI0 strip; spi_device: 0 or 1 (the chip select)
```

A WAV is read and checked here, at load (not found, not PCM16 mono/stereo, longer than
MAX_WAV_S): the error names the key and the file's problem. It is kept as mono PCM16 at its own
rate; app.py converts it to the session's wire format once (earcons.py). A relative path is
taken relative to the config file's directory.

Main thread, at config load only.
"""

from __future__ import annotations

import wave
from dataclasses import dataclass, field
from pathlib import Path

from pivoice.settings import Section

CUES = ("listening", "thinking", "ended", "error", "timer")
MAX_WAV_S = 3.0
LIGHT_KINDS = ("none", "led", "pwmled", "rgbled", "apa102")


@dataclass(frozen=True)
class WavClip:
    """A replacement sound from the config: mono s16le at `rate_hz`."""
    path: str
    rate_hz: int
    pcm16: bytes = field(repr=False)


@dataclass(frozen=True)
class LightConfig:
    kind: str = "none"
    pin: str | None = None
    pins: tuple[str, str, str] | None = None   # red, green, blue
    active_high: bool = True
    brightness: float = 1.0
    count: int = 3             # apa102: LEDs on the strip (3 on a ReSpeaker 2-mic HAT or a Voice Bonnet)
    spi_device: int = 0        # apa102: SPI0 chip select (CE0/CE1; the LEDs ignore it, the kernel does not)


@dataclass(frozen=True)
class FeedbackConfig:
    # (cue, value) per cue; value: True (generated), False (off) or a WavClip. Pairs, so the config hashes.
    earcons: tuple = tuple((cue, True) for cue in CUES)
    light: LightConfig = LightConfig()

    def earcon(self, cue: str):
        return dict(self.earcons).get(cue, False)

    def enabled_cues(self) -> frozenset[str]:
        return frozenset(cue for cue, value in self.earcons if value is not False)


def read_feedback(sec: Section) -> FeedbackConfig:
    earcons = _read_earcons(sec)
    light = _read_light(sec.section("light"))
    sec.done()
    return FeedbackConfig(earcons, light)


def _read_earcons(sec: Section) -> tuple:
    raw = sec.raw("earcons", True)
    if isinstance(raw, bool):
        return tuple((cue, raw) for cue in CUES)
    ear = sec.section("earcons")   # a mapping (Section says so if it is not)
    out = []
    for cue in CUES:
        value = ear.raw(cue, True)
        if isinstance(value, str) and value.strip():
            value = read_wav_clip(ear, cue, value)
        elif not isinstance(value, bool):
            raise ear.error(cue, f"must be true, false or the path of a WAV file, got {value!r}")
        out.append((cue, value))
    ear.done()
    return tuple(out)


def read_wav_clip(sec: Section, key: str, path_text: str) -> WavClip:
    path = Path(path_text).expanduser()
    if not path.is_absolute():
        path = Path(sec.file).resolve().parent / path

    def bad(problem: str):
        return sec.error(key, f"{path}: {problem}")

    if not path.is_file():
        raise bad("not found (or not a file)")
    try:
        with wave.open(str(path), "rb") as w:
            channels, width, rate_hz, frames = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
            if w.getcomptype() != "NONE" or width != 2:
                raise bad(f"not 16-bit PCM ({8 * width}-bit, compression {w.getcomptype()}); "
                          "convert it, e.g. sox in.wav -b 16 out.wav")
            if channels not in (1, 2):
                raise bad(f"has {channels} channels; use mono or stereo")
            if not 8000 <= rate_hz <= 96000:
                raise bad(f"sample rate {rate_hz} Hz is outside 8000..96000")
            if frames / rate_hz > MAX_WAV_S:
                raise bad(f"is {frames / rate_hz:.2f} s long; an earcon may be at most {MAX_WAV_S:.0f} s")
            if frames == 0:
                raise bad("holds no audio")
            data = w.readframes(frames)
    except (wave.Error, EOFError) as exc:
        raise bad(f"not a WAV file PCM16 can be read from ({exc})") from None
    except OSError as exc:
        raise bad(f"cannot read it ({exc.strerror or exc})") from None
    if channels == 2:
        from pivoice.audio import codec
        data = codec.to_mono(data, 2)
    return WavClip(str(path), rate_hz, data)


def _read_light(sec: Section) -> LightConfig:
    kind = sec.str("kind", "none", choices=LIGHT_KINDS)
    pin = pins = None
    if kind in ("led", "pwmled"):
        pin = _pin(sec, "pin", required=True)
    elif kind == "rgbled":
        p = sec.section("pins", required=True)
        pins = (_pin(p, "red", True), _pin(p, "green", True), _pin(p, "blue", True))
        p.done()
    apa102 = {"count": sec.int("count", 3, min=1, max=64), "spi_device": sec.int("spi_device", 0, choices=(0, 1))} \
        if kind == "apa102" else {}
    light = LightConfig(kind=kind, pin=pin, pins=pins, active_high=sec.bool("active_high", True),
                        brightness=sec.float("brightness", 1.0, min=0.01, max=1.0), **apa102)
    if kind == "none":   # nothing else is read; keys given for a light that is off are still checked
        sec.raw("pin", None)
        sec.raw("pins", None)
    sec.done()
    return light


def _pin(sec: Section, key: str, required: bool) -> str:
    value = sec.raw(key) if required else sec.raw(key, None)
    if isinstance(value, bool) or not isinstance(value, (int, str)) or (isinstance(value, str) and not value.strip()):
        raise sec.error(key, "must be a BCM number (12) or a gpiozero pin name (\"GPIO12\", \"BOARD32\")")
    return str(value)
