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
import time
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
    pin thread (press, release), the settle timer's (a release or press hidden by a bounce) or the
    hold timer's (hold), one at a time, and must only enqueue.

    Debounce: the pin driver gets `bounce_time_s` (lgpio filters in the kernel), and on top of it
    the first edge is taken at once and further edges for `bounce_time_s` are ignored; then the level
    is read again, so a tap shorter than the bounce time still ends in a release. That works with
    any pin factory (MockFactory and some drivers do not debounce at all) and adds no delay to a press.
    The settle timer runs only after an ignored edge: nothing wakes while the button is left alone."""

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
        self._bounce_time_s = bounce_time_s or None
        self._lock = threading.RLock()   # the settle timer reports under it, and may start the next lockout
        self._hold_timer: threading.Timer | None = None
        self._settle_timer: threading.Timer | None = None
        self._down = False                # the level last reported
        self._quiet_at_s = 0.0            # edges before this (monotonic) are bounces
        self._closed = False   # a press in flight on the pin thread during close() starts no timer
        try:
            self._device = DigitalInputDevice(int(pin) if pin.isdigit() else pin, pull_up=pull_up,
                                              bounce_time=self._bounce_time_s, pin_factory=pin_factory)
        except (GPIOZeroError, BadPinFactory, ValueError) as exc:
            raise ButtonError(f"button.pin {pin!r}: {exc}") from None
        self._device.when_activated = lambda: self._edge(True)
        self._device.when_deactivated = lambda: self._edge(False)
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
            settle, self._settle_timer = self._settle_timer, None
            if settle is not None:
                settle.cancel()
        self._device.close()

    def _edge(self, down: bool) -> None:
        with self._lock:
            if self._closed:
                return
            if self._bounce_time_s is not None and time.monotonic() < self._quiet_at_s:
                if self._settle_timer is None:   # look again once the contacts have settled
                    self._settle_timer = self._timer(self._quiet_at_s - time.monotonic(), self._settle, "button-settle")
                return
            self._report(down)

    def _settle(self, timer: threading.Timer) -> None:
        with self._lock:
            if self._settle_timer is not timer or self._closed:
                return
            self._settle_timer = None
            self._report(self._device.is_active)

    def _report(self, down: bool) -> None:
        """Called with the lock held."""
        if down == self._down:
            return
        self._down = down
        if self._bounce_time_s is not None:
            self._quiet_at_s = time.monotonic() + self._bounce_time_s
        self._cancel_hold()
        if down:
            if self._hold_time_s is not None:
                self._hold_timer = self._timer(self._hold_time_s, self._held, "button-hold")
            self._on_press()
        elif self._on_release is not None:
            self._on_release()

    def _timer(self, delay_s: float, then: Callable[[threading.Timer], None], name: str) -> threading.Timer:
        # the timer hands itself over, so a firing that raced a cancel can tell it was replaced
        timer = threading.Timer(max(0.0, delay_s), lambda: then(timer))
        timer.name, timer.daemon = name, True
        timer.start()
        return timer

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


class Buttons:
    """The device's buttons as the daemon wires them: the primary (press, release, long press ->
    `EndRequest("button")`) and the optional second one (cancel, or volume steps). Built and
    closed on the main thread; `post` puts an event on the controller's queue."""

    def __init__(self, cfg, *, post: Callable[[object], None], pin_factory=None, volume=None):
        from pivoice import messages as m
        from pivoice.button_config import CANCEL, VOLUME_UP
        hold_s = cfg.hold_time_s
        self.primary = GpioButton(cfg.pin, pull_up=cfg.pull_up, bounce_time_s=cfg.bounce_time_s,
                                  pin_factory=pin_factory, on_press=lambda: post(m.Press("button")),
                                  on_release=lambda: post(m.Release("button")), hold_time_s=hold_s,
                                  on_hold=None if hold_s is None else lambda: post(m.EndRequest("button")))
        self.second: GpioButton | None = None
        second = cfg.second
        if second is None:
            return
        if second.action == CANCEL:
            action = lambda: post(m.EndRequest("cancel_button"))   # noqa: E731
        else:
            action = _volume_step(volume, second.step if second.action == VOLUME_UP else -second.step)
        try:
            self.second = GpioButton(second.pin, pull_up=second.pull_up, bounce_time_s=second.bounce_time_s,
                                     pin_factory=pin_factory, on_press=action)
        except ButtonError as exc:
            self.primary.close()
            raise ButtonError(f"button.second: {exc}") from None

    @property
    def pin(self):
        return self.primary.pin

    def close(self) -> None:
        self.primary.close()
        if self.second is not None:
            self.second.close()


def _volume_step(volume, step: int) -> Callable[[], None]:
    """A press of the volume button: one step, clamped to 0..100, on the output gain (audio/volume.py)."""
    if volume is None:
        raise ValueError("a volume button needs the output volume")

    def press() -> None:
        percent = volume.set_volume_percent(max(0, min(100, volume.volume_percent() + step)))
        log.info("volume %d %% (second button)", percent)
    return press
