"""The GPIO push button, on gpiozero.

gpiozero calls `when_pressed` / `when_released` from its own pin-watching
thread; ours only enqueue a Press/Release event. The pin factory comes from the
config (`button.pin_factory`), else from `GPIOZERO_PIN_FACTORY`, else
gpiozero's own choice (lgpio on a Pi) — `mock` gives gpiozero's MockFactory,
whose pins tests drive low and high.
"""

from __future__ import annotations

import logging
from importlib.metadata import entry_points
from typing import Callable

from gpiozero import Button
from gpiozero.exc import BadPinFactory, GPIOZeroError

log = logging.getLogger(__name__)


class ButtonError(RuntimeError):
    pass


def make_pin_factory(name: str | None):
    """A gpiozero pin factory by its entry-point name (`mock`, `lgpio`, `rpigpio`, ...), or None for the default."""
    if name is None:
        return None
    group = entry_points(group="gpiozero_pin_factories")
    for ep in group:
        if ep.name.lower() == name.lower():
            try:
                return ep.load()()
            except Exception as exc:   # e.g. lgpio off a Pi: "unable to locate Pi revision", no /dev/gpiochip0
                raise ButtonError(f"button.pin_factory {name!r}: gpiozero cannot use it here: {exc}") from None
    known = ", ".join(sorted(ep.name for ep in group))
    raise ButtonError(f"button.pin_factory: unknown gpiozero pin factory {name!r} (known: {known})")


class GpioButton:
    """A debounced button. Callbacks arrive on gpiozero's thread and must only enqueue."""

    def __init__(self, pin: str, *, pull_up: bool, bounce_time_s: float | None, pin_factory=None,
                 on_press: Callable[[], None], on_release: Callable[[], None] | None = None):
        try:
            self._button = Button(int(pin) if pin.isdigit() else pin, pull_up=pull_up,
                                  bounce_time=bounce_time_s or None, pin_factory=pin_factory)
        except (GPIOZeroError, BadPinFactory, ValueError) as exc:
            raise ButtonError(f"button.pin {pin!r}: {exc}") from None
        self._button.when_pressed = lambda: on_press()
        if on_release is not None:
            self._button.when_released = lambda: on_release()
        log.info("button on pin %s (pull-%s, pin factory %s)", pin, "up" if pull_up else "down",
                 type(self._button.pin_factory).__name__)

    @property
    def pin(self):
        """The gpiozero pin object: a MockPin in tests, which `drive_low()`/`drive_high()` press and release."""
        return self._button.pin

    @property
    def is_pressed(self) -> bool:
        return self._button.is_pressed

    def close(self) -> None:
        self._button.close()

