"""The button check on gpiozero's MockFactory: a press during the wait is seen, no press times out,
and the factory gpiozero really resolved is named (a fallback on a Pi is a FAIL)."""

from __future__ import annotations

import threading

import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory, MockPin

from pivoice.config import ButtonConfig
from pivoice.doctor.button import LGPIO_REMEDY, ButtonCheck
from pivoice.doctor.report import Context

PI_MODEL = "Raspberry Pi 4 Model B Rev 1.4"


class Cfg:
    def __init__(self, pin="GPIO17", pull_up=True, pin_factory=None):
        self.button = ButtonConfig(pin=pin, pull_up=pull_up, bounce_time_s=0.01, pin_factory=pin_factory)


def ctx(**button):
    c = Context("unused.yaml")
    c.cfg = Cfg(**button)
    return c


def press_when_asked(factory, pin=17, after_s=0.2):
    """A prompt that presses (drives the mock pin low) shortly after "press the button now"."""
    prompts = []

    def prompt(text):
        prompts.append(text)
        threading.Timer(after_s, factory.pin(pin).drive_low).start()
    return prompt, prompts


def test_a_press_during_the_wait_is_seen():
    factory = MockFactory()
    prompt, prompts = press_when_asked(factory)
    result = ButtonCheck(pin_factory=factory, wait_s=5, prompt=prompt, model=lambda: "").run(ctx())
    assert result.status == "ok", result
    assert prompts == ["doctor: press the button now (waiting 5 s)..."]
    assert result.data["press"] == "seen" and 0.15 <= result.data["press_wait_s"] < 2
    assert "pin GPIO17 via MockFactory (pull-up), reads released; press seen" in result.detail


def test_no_press_is_a_timeout_verdict_with_the_wiring_remedy():
    result = ButtonCheck(pin_factory=MockFactory(), wait_s=0.3, prompt=lambda t: None, model=lambda: "").run(ctx())
    assert result.status == "fail" and result.data["press"] == "timeout"
    assert "no press within 0.3 s" in result.detail
    assert "GPIO17" in result.remedy and "GND" in result.remedy and "--no-button" in result.remedy


def test_no_button_skips_the_wait_but_still_reads_the_pin():
    prompts = []
    result = ButtonCheck(pin_factory=MockFactory(), wait_s=None, skip_reason="--no-button",
                         prompt=prompts.append, model=lambda: "").run(ctx())
    assert result.status == "ok" and prompts == [] and result.data["press"] == "skipped"
    assert "press test skipped (--no-button)" in result.detail


class StuckLowPin(MockPin):
    """A line held low whatever the pull: a button wired to 3V3 with pull_up: true reads like this."""

    def _set_pull(self, value):
        super()._set_pull(value)
        self.drive_low()


def test_a_pin_that_reads_pressed_at_start_points_at_pull_up():
    factory = MockFactory(pin_class=StuckLowPin)
    result = ButtonCheck(pin_factory=factory, wait_s=None, model=lambda: "").run(ctx())
    assert result.status == "warn" and "reads pressed" in result.detail and "button.pull_up" in result.remedy


def test_the_configured_mock_factory_is_used_and_flagged_on_a_pi():
    result = ButtonCheck(wait_s=None, model=lambda: PI_MODEL).run(ctx(pin_factory="mock"))
    assert result.status == "warn" and result.data["pin_factory"] == "MockFactory"
    assert "button.pin_factory: null" in result.remedy
    off_pi = ButtonCheck(wait_s=None, model=lambda: "").run(ctx(pin_factory="mock"))
    assert off_pi.status == "ok"


def test_an_unknown_configured_factory_names_the_key():
    result = ButtonCheck(wait_s=None, model=lambda: "").run(ctx(pin_factory="nosuch"))
    assert result.status == "fail" and "button.pin_factory" in result.detail and "mock" in result.detail


def test_gpiozeros_fallbacks_are_reported_and_fail_on_a_pi(monkeypatch):
    """gpiozero's own default resolution, for real: this venv has no lgpio and this VM is no Pi."""
    monkeypatch.delenv("GPIOZERO_PIN_FACTORY", raising=False)
    if Device.pin_factory is not None:
        pytest.skip("another test in this process already set gpiozero's default pin factory")
    result = ButtonCheck(wait_s=None, model=lambda: PI_MODEL).run(ctx())
    assert Device.pin_factory is None
    assert result.status == "fail" and result.remedy == LGPIO_REMEDY
    assert "Falling back from lgpio" in result.detail and result.data["board"] == PI_MODEL
    off_pi = ButtonCheck(wait_s=None, model=lambda: "").run(ctx())
    assert off_pi.status == "fail" and "button.pin_factory: mock" in off_pi.remedy


@pytest.mark.parametrize("argv,isatty,expected", [
    ([], True, (10.0, "")),
    ([], False, (None, "stdin is not a terminal; --button-timeout-s N waits anyway")),
    (["--button-timeout-s", "3"], False, (3.0, "")),
    (["--no-button", "--button-timeout-s", "3"], True, (None, "--no-button")),
])
def test_when_the_press_test_waits(argv, isatty, expected):
    from pivoice.doctor import cli
    assert cli.press_wait(cli.parse_args(argv), isatty) == expected


def test_bad_options_are_refused():
    from pivoice.doctor import cli
    with pytest.raises(SystemExit) as exc:
        cli.parse_args(["--skip", "mic,toaster"])
    assert exc.value.code == 2
