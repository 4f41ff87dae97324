"""The GPIO button on gpiozero's MockFactory: presses, releases, errors, the long press, and no idle thread.

MockFactory needs no thread of its own: `drive_low()`/`drive_high()` call the
edge callbacks synchronously on the test's thread, so any thread that appears
when a button is built is the button's (gpiozero's `Button` adds its hold
thread, which wakes 10 times a second; ours must add none).
"""

from __future__ import annotations

import os
import threading
import time

import pytest
from gpiozero import Button
from gpiozero.pins.mock import MockFactory

from pivoice.button import ButtonError, GpioButton, make_pin_factory

HOLD_THREAD = "button-hold"


@pytest.fixture
def factory():
    f = MockFactory()
    yield f
    f.reset()


def task_ids() -> set[str]:
    """Native threads of this process: also those Python's threading module does not list."""
    return set(os.listdir("/proc/self/task"))


def hold_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == HOLD_THREAD and t.is_alive()]


def new_threads_while_building(build) -> tuple[set[str], list[str], object]:
    tasks_before, threads_before = task_ids(), set(threading.enumerate())
    device = build()
    new_tasks = task_ids() - tasks_before
    new_threads = [t.name for t in set(threading.enumerate()) - threads_before if t.is_alive()]
    return new_tasks, new_threads, device


def test_button_press_and_release_drive_the_callbacks(factory):
    events: list[str] = []
    pressed, released = threading.Event(), threading.Event()
    button = GpioButton("GPIO17", pull_up=True, bounce_time_s=None, pin_factory=factory,
                        on_press=lambda: (events.append("press"), pressed.set()),
                        on_release=lambda: (events.append("release"), released.set()))
    try:
        assert not button.is_pressed
        button.pin.drive_low()    # pull-up wiring: pressed connects the pin to ground
        assert pressed.wait(2) and button.is_pressed
        button.pin.drive_high()
        assert released.wait(2) and not button.is_pressed
        assert events == ["press", "release"]
    finally:
        button.close()


def test_pull_down_button_is_pressed_when_high(factory):
    pressed = threading.Event()
    button = GpioButton("27", pull_up=False, bounce_time_s=0.01, pin_factory=factory, on_press=pressed.set)
    try:
        button.pin.drive_high()
        assert pressed.wait(2) and button.is_pressed
    finally:
        button.close()


def wait_until(predicate, timeout_s: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.005)
    return predicate()


def bounce(pin) -> None:
    """A press as the contacts make it: four edges within a few milliseconds, ending pressed."""
    for _ in range(2):
        pin.drive_low()
        pin.drive_high()
    pin.drive_low()


def test_a_bouncing_press_is_one_press_and_the_bounce_time_reaches_the_pin(factory):
    events: list[str] = []
    button = GpioButton("GPIO17", pull_up=True, bounce_time_s=0.05, pin_factory=factory,
                        on_press=lambda: events.append("press"), on_release=lambda: events.append("release"))
    try:
        assert button.pin.bounce == pytest.approx(0.05)   # lgpio debounces in the kernel too
        started_s = time.monotonic()
        bounce(button.pin)
        assert time.monotonic() - started_s < 0.05          # all within the bounce time
        time.sleep(0.12)                                     # past it: the level read again is still "pressed"
        assert events == ["press"]
        button.pin.drive_high()                              # a real release, long after: counted at once
        assert events == ["press", "release"]
        time.sleep(0.07)          # the release's own bounce time
        button.pin.drive_low()
        button.pin.drive_low()    # the same level again: no edge, no second press
        assert events == ["press", "release", "press"]
    finally:
        button.close()


def test_without_debounce_the_same_bounce_is_three_presses(factory):
    events: list[str] = []
    button = GpioButton("GPIO17", pull_up=True, bounce_time_s=None, pin_factory=factory,
                        on_press=lambda: events.append("press"), on_release=lambda: events.append("release"))
    try:
        bounce(button.pin)
        assert events == ["press", "release", "press", "release", "press"]
    finally:
        button.close()


def test_a_tap_shorter_than_the_bounce_time_still_ends_in_a_release(factory):
    events: list[str] = []
    button = GpioButton("GPIO17", pull_up=True, bounce_time_s=0.05, pin_factory=factory,
                        on_press=lambda: events.append("press"), on_release=lambda: events.append("release"))
    try:
        button.pin.drive_low()
        button.pin.drive_high()   # 1 ms later: inside the lockout, so only the settle timer sees it
        assert events == ["press"] and [t.name for t in threading.enumerate()].count("button-settle") == 1
        assert wait_until(lambda: events == ["press", "release"])
        assert wait_until(lambda: "button-settle" not in [t.name for t in threading.enumerate()])
        assert not button.is_pressed
    finally:
        button.close()


def test_building_the_button_starts_no_thread(factory):
    new_tasks, new_threads, button = new_threads_while_building(
        lambda: GpioButton("GPIO17", pull_up=True, bounce_time_s=0.02, pin_factory=factory,
                           on_press=lambda: None, on_release=lambda: None))
    try:
        assert (new_tasks, new_threads) == (set(), [])
        button.pin.drive_low()
        button.pin.drive_high()   # a press without a long press configured starts no timer either
        assert hold_threads() == []
    finally:
        button.close()


def test_gpiozero_button_would_start_its_hold_thread(factory):
    # The control for the test above: the same measurement sees gpiozero's polling hold thread.
    new_tasks, new_threads, button = new_threads_while_building(
        lambda: Button("GPIO18", pull_up=True, pin_factory=factory))
    try:
        assert len(new_tasks) == 1 and len(new_threads) == 1 and new_threads[0].endswith("(held)")
    finally:
        button.close()


def test_a_long_press_fires_on_hold_once_and_the_timer_lives_only_while_down(factory):
    events: list[str] = []
    held = threading.Event()
    button = GpioButton("GPIO17", pull_up=True, bounce_time_s=None, pin_factory=factory,
                        on_press=lambda: events.append("press"), on_release=lambda: events.append("release"),
                        hold_time_s=0.05, on_hold=lambda: (events.append("hold"), held.set()))
    try:
        assert hold_threads() == []
        pressed_at_s = time.monotonic()
        button.pin.drive_low()
        assert held.wait(2)
        assert time.monotonic() - pressed_at_s >= 0.05
        time.sleep(0.2)   # no repeat: one hold per press
        assert events == ["press", "hold"]
        deadline = time.monotonic() + 2
        while hold_threads() and time.monotonic() < deadline:   # the timer thread ends once it has fired
            time.sleep(0.01)
        assert hold_threads() == []
        button.pin.drive_high()
        assert events == ["press", "hold", "release"]
    finally:
        button.close()


def test_a_short_press_cancels_the_hold_timer(factory):
    events: list[str] = []
    button = GpioButton("GPIO17", pull_up=True, bounce_time_s=None, pin_factory=factory,
                        on_press=lambda: events.append("press"), on_release=lambda: events.append("release"),
                        hold_time_s=0.2, on_hold=lambda: events.append("hold"))
    try:
        button.pin.drive_low()
        assert [t.daemon for t in hold_threads()] == [True]   # the timer runs only while the button is down
        button.pin.drive_high()
        time.sleep(0.4)   # past the hold time: a cancelled timer never fires
        assert events == ["press", "release"]
        assert hold_threads() == []
    finally:
        button.close()


def test_a_quick_release_and_press_again_holds_once_timed_from_the_second_press(factory):
    events: list[str] = []
    held = threading.Event()
    button = GpioButton("GPIO17", pull_up=True, bounce_time_s=None, pin_factory=factory,
                        on_press=lambda: events.append("press"), on_release=lambda: events.append("release"),
                        hold_time_s=0.15, on_hold=lambda: (events.append("hold"), held.set()))
    try:
        button.pin.drive_low()
        time.sleep(0.1)
        button.pin.drive_high()
        second_press_s = time.monotonic()
        button.pin.drive_low()
        assert held.wait(2) and time.monotonic() - second_press_s >= 0.15
        time.sleep(0.2)
        assert events == ["press", "release", "press", "hold"]
        assert len(hold_threads()) == 0
    finally:
        button.close()


def test_close_while_down_cancels_the_hold_timer(factory):
    events: list[str] = []
    button = GpioButton("GPIO17", pull_up=True, bounce_time_s=None, pin_factory=factory,
                        on_press=lambda: events.append("press"), hold_time_s=0.1, on_hold=lambda: events.append("hold"))
    button.pin.drive_low()
    button.close()
    time.sleep(0.3)
    assert events == ["press"] and hold_threads() == []


def test_a_long_press_needs_a_positive_time_and_a_callback(factory):
    with pytest.raises(ButtonError, match=r"hold time -1: must be a number of seconds above 0"):
        GpioButton("GPIO17", pull_up=True, bounce_time_s=None, pin_factory=factory, on_press=lambda: None,
                   hold_time_s=-1, on_hold=lambda: None)
    with pytest.raises(ValueError, match="both hold_time_s and on_hold"):
        GpioButton("GPIO17", pull_up=True, bounce_time_s=None, pin_factory=factory, on_press=lambda: None,
                   hold_time_s=1.0)


def test_bad_pin_and_unknown_factory_are_named(factory):
    with pytest.raises(ButtonError, match="button.pin 'GPIO99'"):
        GpioButton("GPIO99", pull_up=True, bounce_time_s=None, pin_factory=factory, on_press=lambda: None)
    with pytest.raises(ButtonError, match="unknown gpiozero pin factory 'banana'.*mock"):
        make_pin_factory("banana")
    assert isinstance(make_pin_factory("mock"), MockFactory)


def test_a_factory_that_cannot_start_here_names_the_key():
    # `native` needs a Pi's board revision, which this machine (not a Pi) does not have
    with pytest.raises(ButtonError, match=r"button.pin_factory 'native': gpiozero cannot use it here: .*revision"):
        make_pin_factory("native")
