"""Each button mode end to end through real `GpioButton`s on gpiozero's MockFactory: the pins are
driven, `Buttons` posts what the daemon would post, and the controller rig (real send path,
scripted Realtime peer) handles it. Bounce, the long press with a real timer, and the second button."""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import replace

import pytest
from gpiozero.pins.mock import MockFactory

from pivoice import messages as m
from pivoice.audio.volume import Volume
from pivoice.button import Buttons
from pivoice.button_config import ButtonConfig, SecondButtonConfig
from pivoice.controller import ACTIVE, CONNECTING, IDLE
from pivoice.realtime.scripted import reply_events
from support.controller_rig import PCM_100MS, SETTINGS, Key, Rig

CHUNK = b"\x01\x02" * 480


@pytest.fixture
def factory():
    f = MockFactory()
    yield f
    f.reset()


class Wired:
    """Buttons posting onto a queue the test hands to the rig, as the runtime's queue would."""

    def __init__(self, factory, rig: Rig, volume: Volume | None = None, **button):
        cfg = ButtonConfig(**{"pin": "GPIO17", "pull_up": True, "bounce_time_s": 0.05, "pin_factory": None,
                              **button})
        self.posted: queue.Queue = queue.Queue()
        self.rig = rig
        self.buttons = Buttons(cfg, post=self.posted.put, pin_factory=factory, volume=volume)
        self.pin = self.buttons.pin
        self.seen: list = []

    def deliver(self, advance_s: float = 0.01) -> list:
        """Hand what the buttons posted to the controller, in order."""
        got = []
        while True:
            try:
                event = self.posted.get_nowait()
            except queue.Empty:
                break
            got.append(event)
            self.rig.handle(event, self.rig.now_s + advance_s)
        self.seen += got
        return got

    def close(self) -> None:
        self.buttons.close()


def threads_named(name: str) -> int:
    """Pending timers of that name: a cancelled one (finished) may linger a moment before its thread exits."""
    return sum(1 for t in threading.enumerate() if t.name == name and t.is_alive()
               and not (isinstance(t, threading.Timer) and t.finished.is_set()))


def bounce_press(pin) -> None:
    for _ in range(2):
        pin.drive_low()
        pin.drive_high()
    pin.drive_low()


@pytest.mark.parametrize("bounce_time_s,presses,phase", [(0.05, 1, CONNECTING), (None, 3, CONNECTING)])
def test_a_bouncing_press_reaches_the_controller_once(factory, bounce_time_s, presses, phase):
    rig = Rig()
    wired = Wired(factory, rig, bounce_time_s=bounce_time_s)
    try:
        bounce_press(wired.pin)
        got = wired.deliver()
        assert [type(e).__name__ for e in got].count("Press") == presses
        assert rig.phase == phase
        if bounce_time_s is None:   # start, cancel, start again: what a bouncy contact does undebounced
            assert rig.ctrl.last_end_reason == "cancelled by a press while connecting"
        else:
            assert rig.ctrl.last_end_reason is None and got == [m.Press("button")]
    finally:
        wired.close()


def test_toggle_long_press_with_a_real_timer_ends_the_conversation_a_short_one_does_not(factory):
    rig = Rig()
    wired = Wired(factory, rig, long_press_s=0.2)
    try:
        wired.pin.drive_low()
        time.sleep(0.07)
        wired.pin.drive_high()
        wired.deliver()
        rig.handle(m.TokenReady(Key()), rig.now_s + 0.01)
        assert rig.phase == ACTIVE
        rig.conn.play_all(reply_events("resp_1", "item_1", PCM_100MS * 5, done=False))
        time.sleep(0.07)
        wired.pin.drive_low()                   # a short press: interrupts the reply
        assert threads_named("button-hold") == 1
        time.sleep(0.1)
        wired.pin.drive_high()                  # released before 0.2 s: the timer is cancelled
        time.sleep(0.3)
        assert [type(e).__name__ for e in wired.deliver()] == ["Press", "Release"]
        assert rig.phase == ACTIVE and threads_named("button-hold") == 0
        rig.conn.play_all(reply_events("resp_2", "item_2", PCM_100MS * 5, done=False))
        time.sleep(0.07)
        wired.pin.drive_low()                   # now held through the next reply
        deadline = time.monotonic() + 2
        while m.EndRequest("button") not in list(wired.posted.queue) and time.monotonic() < deadline:
            time.sleep(0.01)
        wired.deliver()
        assert rig.phase == IDLE and rig.ctrl.last_end_reason == "ended by a long press"
        wired.pin.drive_high()
        assert wired.deliver() == [m.Release("button")] and rig.phase == IDLE
    finally:
        wired.close()


def test_push_to_talk_through_the_pin_hold_talk_release(factory):
    rig = Rig(replace(SETTINGS, manual_turns=True, interrupt_response=False, button_mode="push_to_talk"))
    wired = Wired(factory, rig, mode="push_to_talk", long_press_s=1.0)
    try:
        wired.pin.drive_low()
        assert threads_named("button-hold") == 0   # holding is talking: no long-press timer, no wakeups
        wired.deliver()
        rig.mic_chunks(CHUNK, CHUNK)               # kept while connecting
        rig.handle(m.TokenReady(Key()), rig.now_s + 0.05)
        rig.mic_chunks(CHUNK)
        rig.handle(m.SpeechEnded(voiced=True), rig.now_s + 0.8)
        time.sleep(0.06)
        wired.pin.drive_high()
        assert wired.deliver() == [m.Release("button")]
        assert rig.conn.sent_types(audio=True) == ["session.update"] + ["input_audio_buffer.append"] * 3 + [
            "input_audio_buffer.commit", "response.create"]
        rig.conn.play_all(reply_events("resp_1", "item_1", PCM_100MS * 3))
        rig.handle(m.PlaybackDrained(), rig.now_s + 0.5)
        assert len(rig.played) == len(PCM_100MS) * 3 and rig.phase == ACTIVE   # push_to_talk: the idle timeout ends it
    finally:
        wired.close()


def test_one_shot_through_the_pin_ends_after_the_reply(factory):
    rig = Rig(replace(SETTINGS, button_mode="one_shot"))
    wired = Wired(factory, rig, mode="one_shot")
    try:
        wired.pin.drive_low()
        time.sleep(0.06)
        wired.pin.drive_high()
        wired.deliver()
        rig.handle(m.TokenReady(Key()), rig.now_s + 0.05)
        rig.conn.play_all(reply_events("resp_1", "item_1", PCM_100MS * 3))
        rig.handle(m.PlaybackDrained(), rig.now_s + 0.5)
        assert rig.phase == IDLE and rig.ctrl.last_end_reason == "one question answered (one_shot)"
    finally:
        wired.close()


def test_second_button_cancel_ends_the_conversation(factory):
    rig = Rig()
    wired = Wired(factory, rig, second=SecondButtonConfig(pin="GPIO27", action="cancel"))
    try:
        wired.pin.drive_low()
        wired.deliver()
        assert rig.phase == CONNECTING
        wired.buttons.second.pin.drive_low()
        assert wired.deliver() == [m.EndRequest("cancel_button")]
        assert rig.phase == IDLE and rig.ctrl.last_end_reason == "ended by the cancel button"
    finally:
        wired.close()


def test_second_button_volume_steps_clamp_at_the_ends(factory):
    volume = Volume(95)
    up = Wired(factory, Rig(), volume, second=SecondButtonConfig(pin="GPIO27", action="volume_up", step=10,
                                                                 bounce_time_s=None))
    try:
        pin = up.buttons.second.pin
        pin.drive_low()
        assert volume.volume_percent() == 100
        pin.drive_high()
        pin.drive_low()
        assert volume.volume_percent() == 100 and up.posted.empty()   # nothing for the controller
    finally:
        up.close()
    down = Wired(factory, Rig(), volume, pin="GPIO5",
                 second=SecondButtonConfig(pin="GPIO6", action="volume_down", step=30, bounce_time_s=None))
    try:
        pin = down.buttons.second.pin
        for expected in (70, 40, 10, 0, 0):
            pin.drive_low()
            pin.drive_high()
            assert volume.volume_percent() == expected
    finally:
        down.close()


def test_buttons_close_both_and_a_bad_second_pin_names_its_key(factory):
    from pivoice.button import ButtonError
    wired = Wired(factory, Rig(), second=SecondButtonConfig(pin="GPIO27"))
    wired.close()
    assert wired.buttons.primary._device.closed and wired.buttons.second._device.closed
    with pytest.raises(ButtonError, match=r"button.second: button.pin 'GPIO99'"):
        Wired(factory, Rig(), second=SecondButtonConfig(pin="GPIO99"))
    Wired(factory, Rig()).close()   # the primary of the failed build was released: its pin is free again


def test_both_buttons_start_no_thread_and_leave_none_behind(factory):
    """Zero idle wakeups: timers exist only while a button is down (hold) or just after a bounce (settle)."""
    before = set(threading.enumerate())
    wired = Wired(factory, Rig(), long_press_s=0.5, second=SecondButtonConfig(pin="GPIO27"))
    try:
        assert set(threading.enumerate()) - before == set()
        wired.pin.drive_low()
        # only ours: an earlier test's cancelled timer thread may not have exited yet (seen in a full run)
        assert [t.name for t in set(threading.enumerate()) - before] == ["button-hold"]
        time.sleep(0.07)
        wired.pin.drive_high()
        wired.buttons.second.pin.drive_low()
        time.sleep(0.07)
        wired.buttons.second.pin.drive_high()
        time.sleep(0.05)
        assert {t.name for t in set(threading.enumerate()) - before if t.is_alive()} == set()
        assert [type(e).__name__ for e in wired.deliver()] == ["Press", "Release", "EndRequest"]
    finally:
        wired.close()
