"""Check 4: the GPIO button. Which pin factory gpiozero really uses (and whether it fell back),
the pin and its state, then "press the button now" with a timeout.

Main thread; gpiozero's pin thread only sets an Event.
"""

from __future__ import annotations

import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Callable

from pivoice.doctor.report import FAIL, OK, WARN, Context, Result

DEFAULT_TIMEOUT_S = 10.0
MODEL_FILES = (Path("/proc/device-tree/model"), Path("/sys/firmware/devicetree/base/model"))
LGPIO_REMEDY = ("install a GPIO backend into the daemon's venv: `scripts/install --upgrade`, or "
                "`/opt/pivoice/.venv/bin/pip install lgpio` (Python 3.13: apt install python3-lgpio and a venv "
                "with --system-site-packages)")


def board_model() -> str:
    """The device-tree model ("Raspberry Pi 4 Model B Rev 1.4"), or "" off a Pi."""
    for path in MODEL_FILES:
        try:
            return path.read_bytes().rstrip(b"\0\n").decode(errors="replace")
        except OSError:
            continue
    return ""


class ButtonCheck:
    """`pin_factory` (a gpiozero factory object) replaces the configured one (tests: MockFactory).
    `wait_s` None skips the press test; `prompt` says "press now" (stderr by default)."""

    name = "button"

    def __init__(self, *, pin_factory: Any = None, wait_s: float | None = DEFAULT_TIMEOUT_S,
                 skip_reason: str = "", model: Callable[[], str] = board_model,
                 prompt: Callable[[str], None] | None = None):
        self._pin_factory = pin_factory
        self._wait_s = wait_s
        self._skip_reason = skip_reason
        self._model = model
        self._prompt = prompt or (lambda text: print(text, file=sys.stderr, flush=True))

    def run(self, ctx: Context) -> Result:
        from gpiozero import Button, Device
        from gpiozero.exc import PinFactoryFallback
        from pivoice.button import ButtonError, make_pin_factory
        b = ctx.cfg.button
        model = self._model()
        on_pi = "raspberry pi" in model.lower()
        fallbacks: list[str] = []
        try:
            factory = self._pin_factory
            if factory is None and b.pin_factory is not None:
                factory = make_pin_factory(b.pin_factory)
            if factory is None:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always", PinFactoryFallback)
                    try:
                        Device.ensure_pin_factory()
                    finally:
                        fallbacks = [str(w.message) for w in caught if issubclass(w.category, PinFactoryFallback)]
                factory = Device.pin_factory
        except ButtonError as exc:
            return Result(self.name, FAIL, str(exc), "set button.pin_factory to null (gpiozero's default: lgpio "
                                                     "on a Pi) or one of the names listed", {"key": "button.pin_factory"})
        except Exception as exc:   # gpiozero raises many kinds here (BadPinFactory, ImportError, OSError)
            tried = "; ".join(fallbacks) or str(exc)
            remedy = LGPIO_REMEDY if on_pi else "off a Pi, set button.pin_factory: mock (no real button)"
            return Result(self.name, FAIL, f"no GPIO pin factory works ({tried})", remedy,
                          {"fallbacks": fallbacks, "board": model})
        factory_name = type(factory).__name__
        data = {"pin_factory": factory_name, "pin": b.pin, "pull_up": b.pull_up, "board": model,
                "fallbacks": fallbacks}
        try:
            button = Button(int(b.pin) if b.pin.isdigit() else b.pin, pull_up=b.pull_up,
                            bounce_time=b.bounce_time_s or None, pin_factory=factory)
        except Exception as exc:   # busy line, unknown pin name, no permission on /dev/gpiochip*
            return Result(self.name, FAIL, f"button.pin {b.pin!r} with {factory_name}: {exc}",
                          "if the daemon is running it holds the pin: `sudo systemctl stop pivoice` and re-run; "
                          "else check button.pin (BCM number or GPIOnn) and that the user is in group gpio", data)
        try:
            return self._verdict(button, factory_name, fallbacks, on_pi, data)
        finally:
            button.close()

    def _verdict(self, button, factory_name: str, fallbacks: list[str], on_pi: bool, data: dict) -> Result:
        pressed_now = bool(button.is_pressed)
        data["pressed_at_start"] = pressed_now
        found = f"pin {data['pin']} via {factory_name} (pull-{'up' if data['pull_up'] else 'down'}), " \
                f"reads {'pressed' if pressed_now else 'released'}"
        if fallbacks:
            found += f" after falling back ({'; '.join(fallbacks)})"
        if on_pi and fallbacks and factory_name != "LGPIOFactory":
            return Result(self.name, FAIL, found, LGPIO_REMEDY, data)
        if on_pi and factory_name == "MockFactory":
            return Result(self.name, WARN, f"{found}: the mock factory reads no real button",
                          "set button.pin_factory: null", data)
        if pressed_now:
            return Result(self.name, WARN, f"{found} with nobody pressing it?",
                          "button.pull_up: true for a button wired to GND, false for one wired to 3V3", data)
        if self._wait_s is None:
            data["press"] = "skipped"
            result = Result(self.name, OK, f"{found}; press test skipped ({self._skip_reason})", data=data)
        else:
            result = self._wait_for_press(button, found, data)
        if result.status == OK and fallbacks:   # works here, but not the factory a Pi and the unit need
            result.status, result.remedy = WARN, LGPIO_REMEDY
        return result

    def _wait_for_press(self, button, found: str, data: dict) -> Result:
        pressed = threading.Event()
        button.when_pressed = lambda: pressed.set()   # gpiozero's thread: only set the event
        self._prompt(f"doctor: press the button now (waiting {self._wait_s:g} s)...")
        started_s = time.monotonic()
        seen = pressed.wait(self._wait_s)
        data["press_wait_s"] = round(time.monotonic() - started_s, 3)
        if seen:
            data["press"] = "seen"
            return Result(self.name, OK, f"{found}; press seen after {data['press_wait_s']:.1f} s", data=data)
        data["press"] = "timeout"
        return Result(self.name, FAIL, f"{found}; no press within {self._wait_s:g} s",
                      f"check the wiring: one side of the button on GPIO{str(data['pin']).removeprefix('GPIO')} "
                      "(button.pin, BCM numbering), the other on GND with button.pull_up: true; "
                      "or --no-button to skip this step", data)
