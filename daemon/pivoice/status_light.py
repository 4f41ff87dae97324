"""The status light: the daemon's state on a GPIO LED, PWM LED or RGB LED (gpiozero).

`light_state(status)` maps a `Runtime.status()` to one of STATES (a pure function, tested as a
table). `StatusLight` is a watcher on the StatusFanout (watchers.py): it works the state out and,
when it changed, sets the driver. An abnormal end shows `error` for ERROR_SHOWN_S, then the light
goes back to what the status says: a timer runs only while the error shows, so an idle daemon
never wakes for the light. Idle is steady off on every driver; blinking and pulsing (gpiozero's
own background thread) are only used by states that pass (thinking, speaking, error) or that need
the user's attention (no key).

Thread: `StatusLight.__call__` on the controller thread (it sets pins, which gpiozero does at
once); the error timer's thread calls back in; one lock orders them. Built and closed on the
main thread (app.py, lifecycle).
"""

from __future__ import annotations

import logging
import threading
from typing import Callable

from pivoice import ends
from pivoice.feedback_config import LightConfig

log = logging.getLogger(__name__)

IDLE, LISTENING, THINKING, SPEAKING, ERROR, NO_KEY, MUTED = STATES = (
    "idle", "listening", "thinking", "speaking", "error", "no_key", "muted")
ERROR_SHOWN_S = 3.0
NO_PWM = "no PWM on this pin with this pin factory; use kind: led, or a pin factory with PWM (lgpio on a Pi)"
# ends the user or the configuration asked for; any other end code shows the error state
NORMAL_ENDS = ends.NORMAL | {None}   # None: no conversation has ended yet
NO_KEY_ENDS = frozenset({"token_failed"})
TOKEN_FAILING = frozenset({"failed", "backing_off"})


def light_state(status: dict, *, error_shown: bool = False) -> str:
    """What the light shows for this status; `error_shown`: an abnormal end is still being shown."""
    state = status.get("state")
    if state == "connecting":
        return LISTENING   # the press was taken: talk now (the mic is already keeping the audio)
    if state == "draining":
        return SPEAKING
    if state == "active":
        if status.get("playing"):
            return SPEAKING
        if status.get("response_active"):
            return THINKING   # (user_speaking is no help here: the local gate closes after the server's VAD)
        return LISTENING
    if error_shown:
        return ERROR
    if status.get("muted"):
        return MUTED
    token = status.get("token") or {}
    if token.get("state") in TOKEN_FAILING or status.get("last_end_code") in NO_KEY_ENDS:
        return NO_KEY
    return IDLE


def abnormal_end(before: dict | None, after: dict) -> bool:
    """A conversation has just ended (the state went to idle) with an end the user did not choose."""
    return (before is not None and before.get("state") not in (None, "idle") and after.get("state") == "idle"
            and after.get("last_end_code") not in NORMAL_ENDS | NO_KEY_ENDS)


class StatusLight:
    def __init__(self, driver, *, error_shown_s: float = ERROR_SHOWN_S,
                 on_change: Callable[[str], None] | None = None,
                 timer_factory: Callable[[float, Callable[[], None]], threading.Timer] = threading.Timer):
        self._driver = driver            # None: only track the state (for the demo's timeline)
        self._error_shown_s = error_shown_s
        self._on_change = on_change
        self._timer_factory = timer_factory
        self._lock = threading.Lock()
        self._status: dict | None = None
        self._error_timer: threading.Timer | None = None
        self.state = IDLE
        self._closed = False

    def __call__(self, status: dict) -> None:
        with self._lock:
            if self._closed:
                return
            before, self._status = self._status, dict(status)
            if abnormal_end(before, status):
                self._start_error_timer()
            elif status.get("state") != "idle":
                self._cancel_error_timer()   # a new press: the error has been seen
            self._show(light_state(status, error_shown=self._error_timer is not None))

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._cancel_error_timer()
            driver, self._driver = self._driver, None
        if driver is not None:
            driver.close()

    def _start_error_timer(self) -> None:
        self._cancel_error_timer()
        timer = self._error_timer = self._timer_factory(self._error_shown_s, self._error_over)
        timer.daemon = True
        timer.start()

    def _cancel_error_timer(self) -> None:
        timer, self._error_timer = self._error_timer, None
        if timer is not None:
            timer.cancel()

    def _error_over(self) -> None:
        with self._lock:
            if self._closed or self._error_timer is None:
                return
            self._error_timer = None
            self._show(light_state(self._status or {}))

    def _show(self, state: str) -> None:
        if state == self.state:
            return
        self.state = state
        if self._driver is not None:
            try:
                self._driver.show(state)
            except Exception:   # a dead pin must not take the conversation with it
                log.exception("status light: cannot show %s", state)
        if self._on_change is not None:
            self._on_change(state)


# ---- drivers: gpiozero devices, one show(state) each ---------------------------------------

class LedDriver:
    """One plain LED: on, off and blink patterns."""

    PATTERNS = {LISTENING: "on", THINKING: (0.1, 0.1), SPEAKING: (0.5, 0.25), ERROR: (0.05, 0.05),
                NO_KEY: (0.15, 1.35), MUTED: (0.05, 2.95), IDLE: "off"}

    def __init__(self, led) -> None:
        self.led = led

    def show(self, state: str) -> None:
        pattern = self.PATTERNS[state]
        if pattern == "on":
            self.led.on()
        elif pattern == "off":
            self.led.off()
        else:
            self.led.blink(on_time=pattern[0], off_time=pattern[1])

    def close(self) -> None:
        self.led.close()


class PwmLedDriver:
    """One LED on a PWM pin: brightness levels and pulses."""

    def __init__(self, led, brightness: float = 1.0) -> None:
        self.led, self.brightness = led, brightness

    def show(self, state: str) -> None:
        b = self.brightness
        if state == IDLE:
            self.led.off()
        elif state == LISTENING:
            self.led.value = b
        elif state == SPEAKING:
            self.led.value = 0.4 * b
        elif state == MUTED:
            self.led.value = 0.05 * b   # a steady glow: no thread, for as long as it stays muted
        elif state == THINKING:
            self.led.pulse(fade_in_time=0.4, fade_out_time=0.4)
        elif state == ERROR:
            self.led.blink(on_time=0.05, off_time=0.05)
        elif state == NO_KEY:
            self.led.blink(on_time=0.15, off_time=1.35)   # gpiozero blinks and pulses at full brightness

    def close(self) -> None:
        self.led.close()


class RgbLedDriver:
    """An RGB LED: a colour per state (steady, except thinking pulses and error blinks)."""

    COLOURS = {LISTENING: (0.0, 0.3, 1.0), THINKING: (0.0, 0.8, 0.8), SPEAKING: (0.0, 1.0, 0.2),
               ERROR: (1.0, 0.0, 0.0), NO_KEY: (1.0, 0.35, 0.0), MUTED: (0.4, 0.0, 0.0), IDLE: (0.0, 0.0, 0.0)}

    def __init__(self, led, brightness: float = 1.0) -> None:
        self.led, self.brightness = led, brightness

    def colour(self, state: str) -> tuple[float, float, float]:
        return tuple(round(c * self.brightness, 4) for c in self.COLOURS[state])

    def show(self, state: str) -> None:
        colour = self.colour(state)
        if state == THINKING:
            self.led.pulse(fade_in_time=0.4, fade_out_time=0.4, on_color=colour)
        elif state == ERROR:
            self.led.blink(on_time=0.1, off_time=0.1, on_color=colour)
        else:
            self.led.color = colour

    def close(self) -> None:
        self.led.close()


def build_driver(cfg: LightConfig, pin_factory=None):
    """The driver for `feedback.light`, or None for `kind: none`. Errors name the key and the pin."""
    if cfg.kind == "none":
        return None
    from gpiozero import LED, PWMLED, RGBLED
    from gpiozero.exc import GPIOZeroError, PinPWMUnsupported

    def pin(name: str):
        return int(name) if name.isdigit() else name

    where = "feedback.light.pin" if cfg.kind != "rgbled" else "feedback.light.pins"
    if cfg.kind == "apa102":
        from pivoice.status_light_apa102 import Apa102, Apa102Driver
        try:
            leds = Apa102(cfg.count, device=cfg.spi_device, pin_factory=pin_factory)
        except GPIOZeroError as exc:
            raise ValueError(f"feedback.light: SPI0 device {cfg.spi_device}: {type(exc).__name__}: {exc} "
                             "(is SPI enabled? dtparam=spi=on)") from None
        return Apa102Driver(leds, cfg.brightness)
    try:
        if cfg.kind == "led":
            return LedDriver(LED(pin(cfg.pin), active_high=cfg.active_high, pin_factory=pin_factory))
        if cfg.kind == "pwmled":
            led = PWMLED(pin(cfg.pin), active_high=cfg.active_high, pin_factory=pin_factory)
            _check_pwm(led, where, cfg.pin)
            return PwmLedDriver(led, cfg.brightness)
        led = RGBLED(*(pin(p) for p in cfg.pins), active_high=cfg.active_high, pin_factory=pin_factory)
        _check_pwm(led, where, ", ".join(cfg.pins))
        return RgbLedDriver(led, cfg.brightness)
    except PinPWMUnsupported:
        raise ValueError(f"{where} {cfg.pin or ', '.join(cfg.pins)}: {NO_PWM}") from None
    except GPIOZeroError as exc:
        raise ValueError(f"{where} {cfg.pin or ', '.join(cfg.pins)}: {type(exc).__name__}: {exc}") from None


def _check_pwm(led, where: str, pins: str) -> None:
    """Some pin factories only fail at the first value written when a pin has no PWM: find out now."""
    from gpiozero.exc import PinPWMUnsupported
    try:
        led.value = led.value
    except PinPWMUnsupported:
        led.close()
        raise ValueError(f"{where} {pins}: {NO_PWM}") from None
