"""The GPIO push button, on gpiozero, with no thread that wakes while it is idle.

gpiozero's `Button` starts a hold thread in its constructor that wakes ten
times a second for the life of the button, pressed or not. We build on
`DigitalInputDevice` instead (the same pin, pull, bounce and edge machinery,
without that thread), and run a hold timer only while the button is down, and
only when a long press is asked for (`hold_time_s` + `on_hold`).

gpiozero calls our press/release from its pin-watching thread (lgpio's
callback thread on a Pi; the caller of `drive_low()`/`drive_high()` under
MockFactory); the hold callback comes from a `threading.Timer`. All three only
enqueue. The pin factory comes from the config (`button.pin_factory`), else
from `GPIOZERO_PIN_FACTORY`, else gpiozero's own choice (lgpio on a Pi).
"""

from __future__ import annotations

import logging
import threading
from typing import Callable

from gpiozero import DigitalInputDevice
from gpiozero.exc import BadPinFactory, GPIOZeroError

log = logging.getLogger(__name__)


class ButtonError(RuntimeError):
    pass


def make_pin_factory(name: str | None):
    """A gpiozero pin factory by its entry-point name (`mock`, `lgpio`, `rpigpio`, ...), or None for the default."""
    if name is None:
        return None
    from importlib.metadata import entry_points   # only when the config names a factory
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
    """A debounced button. Built and closed on the main thread; callbacks arrive on gpiozero's
    pin thread (press, release) or the hold timer's thread (hold) and must only enqueue."""

    def __init__(self, pin: str, *, pull_up: bool, bounce_time_s: float | None, pin_factory=None,
                 on_press: Callable[[], None], on_release: Callable[[], None] | None = None,
                 hold_time_s: float | None = None, on_hold: Callable[[], None] | None = None):
        if (hold_time_s is None) != (on_hold is None):
            raise ValueError("a long press needs both hold_time_s and on_hold")
        if hold_time_s is not None and not hold_time_s > 0:
            raise ButtonError(f"button hold time {hold_time_s!r}: must be a number of seconds above 0")
        self._on_press = on_press
        self._on_release = on_release
        self._hold_time_s = hold_time_s
        self._on_hold = on_hold
        self._lock = threading.Lock()
        self._hold_timer: threading.Timer | None = None
        self._closed = False   # a press in flight on the pin thread during close() starts no timer
        try:
            self._device = DigitalInputDevice(int(pin) if pin.isdigit() else pin, pull_up=pull_up,
                                              bounce_time=bounce_time_s or None, pin_factory=pin_factory)
        except (GPIOZeroError, BadPinFactory, ValueError) as exc:
            raise ButtonError(f"button.pin {pin!r}: {exc}") from None
        self._device.when_activated = self._pressed
        self._device.when_deactivated = self._released
        log.info("button on pin %s (pull-%s, pin factory %s)", pin, "up" if pull_up else "down",
                 type(self._device.pin_factory).__name__)

    @property
    def pin(self):
        """The gpiozero pin object: a MockPin in tests, which `drive_low()`/`drive_high()` press and release."""
        return self._device.pin

    @property
    def is_pressed(self) -> bool:
        return self._device.is_active

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._cancel_hold()
        self._device.close()

    def _pressed(self) -> None:
        if self._hold_time_s is not None:
            with self._lock:
                self._cancel_hold()
                if self._closed:
                    return
                # the timer hands itself to _held, so a firing that raced a release can tell it was replaced
                timer = threading.Timer(self._hold_time_s, lambda: self._held(timer))
                timer.name, timer.daemon = "button-hold", True
                self._hold_timer = timer
                timer.start()
        self._on_press()

    def _released(self) -> None:
        with self._lock:
            self._cancel_hold()
        if self._on_release is not None:
            self._on_release()

    def _held(self, timer: threading.Timer) -> None:
        with self._lock:
            # A release that raced the timer's expiry already replaced or cleared it: no hold then.
            if self._hold_timer is not timer:
                return
            self._hold_timer = None
        self._on_hold()

    def _cancel_hold(self) -> None:
        """Called with the lock held."""
        timer, self._hold_timer = self._hold_timer, None
        if timer is not None:
            timer.cancel()
