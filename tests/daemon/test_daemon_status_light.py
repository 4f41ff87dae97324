"""The status light: `light_state` as a table, the LED / PWM LED / RGB LED drivers on gpiozero's MockFactory
pins, the error shown for a while after an abnormal end, and a real Runtime driving the light through a
conversation (listening -> thinking -> speaking -> idle) with the earcons on a WAV speaker."""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import numpy as np
import pytest
from gpiozero import LED
from gpiozero.pins.mock import MockFactory, MockPWMPin

from pivoice import messages as m
from pivoice.audio import codec
from pivoice.audio.downlink import Downlink
from pivoice.audio.wavfile import WavSpeaker
from pivoice.controller import Controller
from pivoice.earcons import Cues, wire_clips
from pivoice.feedback_config import CUES, FeedbackConfig, LightConfig
from pivoice.realtime.scripted import ScriptedConnector, reply_events
from pivoice.runtime import Runtime
from pivoice.status_light import (ERROR, IDLE, LISTENING, MUTED, NO_KEY, SPEAKING, THINKING, LedDriver,
                                  PwmLedDriver, RgbLedDriver, StatusLight, build_driver, light_state)
from pivoice.watchers import StatusFanout
from support.controller_rig import SETTINGS
from support.runtime_fakes import InertMic, InertUplink, ReadyTokens

IDLE_OK = {"state": "idle", "token": {"state": "ok"}, "last_end_code": None}


@pytest.mark.parametrize("status,shown", [
    (IDLE_OK, IDLE),
    ({"state": "connecting"}, LISTENING),
    ({"state": "active", "playing": False, "response_active": False}, LISTENING),
    ({"state": "active", "user_speaking": True, "response_active": False}, LISTENING),
    ({"state": "active", "user_speaking": True, "response_active": True}, THINKING),   # the gate's trailing audio
    ({"state": "active", "response_active": True}, THINKING),
    ({"state": "active", "playing": True, "response_active": True}, SPEAKING),
    ({"state": "draining", "playing": True}, SPEAKING),
    ({**IDLE_OK, "muted": True}, MUTED),
    ({**IDLE_OK, "token": {"state": "backing_off"}}, NO_KEY),
    ({**IDLE_OK, "token": {"state": "failed"}}, NO_KEY),
    ({**IDLE_OK, "last_end_code": "token_failed"}, NO_KEY),
    ({**IDLE_OK, "last_end_code": "user"}, IDLE),
    ({"state": "idle"}, IDLE),   # keys other helpers add may be missing: .get() throughout
])
def test_light_state_table(status, shown):
    assert light_state(status) == shown


def test_while_an_error_is_shown_it_wins_over_the_idle_states_but_not_a_new_conversation():
    assert light_state({**IDLE_OK, "muted": True}, error_shown=True) == ERROR
    assert light_state({"state": "connecting"}, error_shown=True) == LISTENING


class FakeTimer:
    def __init__(self, delay_s, fn):
        self.delay_s, self.fn, self.cancelled, self.started = delay_s, fn, False, False

    def start(self):
        self.started = True

    def cancel(self):
        self.cancelled = True


def test_an_abnormal_end_shows_error_for_a_while_then_idle_and_only_then_a_timer_runs():
    timers: list[FakeTimer] = []
    shown: list[str] = []
    light = StatusLight(None, on_change=shown.append, timer_factory=lambda s, fn: timers.append(FakeTimer(s, fn))
                        or timers[-1])
    light({"state": "connecting"})
    light({"state": "active", "response_active": False})
    light({**IDLE_OK, "last_end_code": "user"})
    assert shown == [LISTENING, IDLE] and timers == []        # a normal end: no timer at all
    light({"state": "active"})
    light({**IDLE_OK, "last_end_code": "stalled"})
    assert shown[-1] == ERROR and len(timers) == 1 and timers[0].delay_s == 3.0
    timers[0].fn()                                             # the timer's thread
    assert shown[-1] == IDLE
    light({"state": "active"})
    light({**IDLE_OK, "last_end_code": "link_lost"})
    light({"state": "connecting"})                              # pressed again during the error
    assert shown[-2:] == [ERROR, LISTENING] and timers[1].cancelled
    light.close()


def mock_factory() -> MockFactory:
    return MockFactory(pin_class=MockPWMPin)


def test_plain_led_on_off_and_blinking_states_with_idle_steady_off():
    factory = MockFactory()
    led = LED(12, pin_factory=factory)
    light = StatusLight(LedDriver(led))
    light({"state": "connecting"})
    assert factory.pin(12).state is True and led._blink_thread is None     # listening: steady on
    light({"state": "active", "response_active": True})
    assert led._blink_thread is not None                                   # thinking: blinks
    seen = set()
    deadline = time.monotonic() + 1.0
    while len(seen) < 2 and time.monotonic() < deadline:
        seen.add(factory.pin(12).state)
        time.sleep(0.01)
    assert seen == {True, False}
    light(IDLE_OK)
    assert factory.pin(12).state is False and led._blink_thread is None    # idle: off, no thread wakes
    light.close()


def test_active_low_led_is_driven_low_for_on():
    factory = MockFactory()
    driver = build_driver(LightConfig(kind="led", pin="GPIO16", active_high=False), factory)
    driver.show(LISTENING)
    assert factory.pin(16).state is False
    driver.show(IDLE)
    assert factory.pin(16).state is True
    driver.close()


def test_pwm_led_brightness_per_state():
    factory = mock_factory()
    driver = build_driver(LightConfig(kind="pwmled", pin="18", brightness=0.5), factory)
    assert isinstance(driver, PwmLedDriver)
    for state, value in [(LISTENING, 0.5), (SPEAKING, 0.2), (MUTED, 0.025), (IDLE, 0.0)]:
        driver.show(state)
        assert factory.pin(18).state == pytest.approx(value), state
    driver.show(THINKING)
    time.sleep(0.15)
    assert 0.0 < factory.pin(18).state < 1.0 and driver.led._blink_thread is not None   # pulsing
    driver.show(IDLE)
    assert factory.pin(18).state == 0 and driver.led._blink_thread is None
    driver.close()


def test_rgb_led_shows_a_colour_per_state():
    factory = mock_factory()
    driver = build_driver(LightConfig(kind="rgbled", pins=("5", "6", "13"), brightness=1.0), factory)
    assert isinstance(driver, RgbLedDriver)
    pins = [factory.pin(n) for n in (5, 6, 13)]
    colours = {}
    for state in (LISTENING, SPEAKING, NO_KEY, MUTED, IDLE):
        driver.show(state)
        colours[state] = tuple(round(p.state, 2) for p in pins)
        assert colours[state] == tuple(round(c, 2) for c in RgbLedDriver.COLOURS[state])
    assert len(set(colours.values())) == len(colours) and colours[IDLE] == (0, 0, 0)
    driver.show(ERROR)
    time.sleep(0.05)
    assert driver.led._blink_thread is not None
    driver.close()


def test_pwm_kinds_on_pins_without_pwm_fail_at_start_naming_the_key():
    with pytest.raises(ValueError, match=r"feedback.light.pin 18: no PWM on this pin"):
        build_driver(LightConfig(kind="pwmled", pin="18"), MockFactory())
    assert build_driver(LightConfig(), MockFactory()) is None


# ---- a real Runtime: the light follows a conversation -------------------------------------

class Shown:
    def __init__(self):
        self.states: list[str] = []
        self.cond = threading.Condition()

    def __call__(self, state):
        with self.cond:
            self.states.append(state)
            self.cond.notify_all()

    def wait(self, state, timeout_s=5.0):
        with self.cond:
            assert self.cond.wait_for(lambda: state in self.states, timeout_s), self.states


def tone(seconds: float) -> bytes:
    t = np.arange(int(24000 * seconds)) / 24000
    return (np.sin(2 * np.pi * 440 * t) * 8000).astype("<i2").tobytes()


def test_a_runtime_drives_the_rgb_light_through_a_conversation_and_plays_the_earcons(tmp_path):
    factory, shown, fanout, peer = mock_factory(), Shown(), StatusFanout(), ScriptedConnector()
    light = StatusLight(build_driver(LightConfig(kind="rgbled", pins=("5", "6", "13")), factory), on_change=shown)
    fanout.add(light)
    notes: list[m.Note] = []
    speaker = WavSpeaker(str(tmp_path / "spk.wav"), 24000)
    settings = replace(SETTINGS, cues=Cues(frozenset(CUES)))
    runtime = Runtime(Controller(settings), mic=InertMic(), uplink_factory=lambda rate: InertUplink(),
                      downlink=Downlink(speaker, codec.PCM), tokens=ReadyTokens(), connector=peer,
                      on_note=notes.append, on_status=fanout,
                      earcon_clips=wire_clips(FeedbackConfig(), codec.PCM))
    runtime.start()
    try:
        runtime.post(m.Press())
        conn = peer.wait_for_connection(1)
        shown.wait(LISTENING)
        conn.play({"type": "input_audio_buffer.speech_started", "audio_start_ms": 100})
        conn.play({"type": "input_audio_buffer.speech_stopped", "audio_end_ms": 900})
        conn.play_all(reply_events("resp_1", "item_1", tone(0.4))[:1])
        shown.wait(THINKING)
        assert light._driver.led._blink_thread is not None   # thinking pulses
        conn.play_all(reply_events("resp_1", "item_1", tone(0.4))[1:])
        shown.wait(SPEAKING)
        deadline = time.monotonic() + 5
        while not any(n.kind == "reply_played" for n in notes):
            assert time.monotonic() < deadline, [n.kind for n in notes]
            time.sleep(0.02)
        runtime.post(m.Press())
        shown.wait(IDLE)
        deadline = time.monotonic() + 3
        while not any(n.text == "earcon: ended" for n in notes):
            assert time.monotonic() < deadline, [n.text for n in notes]
            time.sleep(0.02)
    finally:
        runtime.stop()
        light.close()
    assert shown.states == [LISTENING, THINKING, SPEAKING, LISTENING, IDLE]   # the reply played: your turn
    earcon_notes = [n.text for n in notes if n.kind == "earcon"]
    assert earcon_notes == ["earcon: listening", "earcon: thinking", "earcon: ended"]
    kinds = [n.kind if n.kind != "earcon" else n.text for n in notes]
    # listening at the press, thinking at the end of the turn and before the reply, ended after it
    assert kinds.index("earcon: listening") < kinds.index("earcon: thinking") < kinds.index("reply_audio") \
        < kinds.index("reply_played") < kinds.index("ended") < kinds.index("earcon: ended")


# ---- APA102 LEDs over SPI: gpiozero's MockSPIDevice receives what the driver clocks out ---------

class Apa102Strip:
    """The receiving side: decodes APA102 frames from the bits gpiozero's software SPI sends."""

    def __init__(self, factory, count):
        from gpiozero.pins.mock import MockSPIDevice

        class Receiver(MockSPIDevice):
            def on_start(inner):
                super().on_start()
                self.frames.append(inner)

        self.frames: list = []
        self.count = count
        self.receiver = Receiver(11, 10, 9, 8, pin_factory=factory)   # SCLK, MOSI, MISO, CE0 on SPI0

    def leds(self) -> list[tuple[int, int, int, int]]:
        """(brightness, red, green, blue) per LED, from the last frame received."""
        bits = self.receiver.rx_buf
        data = [int("".join("1" if b else "0" for b in bits[i:i + 8]), 2) for i in range(0, len(bits) // 8 * 8, 8)]
        assert data[:4] == [0, 0, 0, 0], data[:8]             # start frame
        out = []
        for i in range(self.count):
            head, b, g, r = data[4 + 4 * i:8 + 4 * i]
            assert head >> 5 == 0b111
            out.append((head & 31, r, g, b))
        assert data[4 + 4 * self.count:] and all(x == 0xFF for x in data[4 + 4 * self.count:])   # end frame
        return out


@pytest.mark.filterwarnings("ignore::gpiozero.exc.SPISoftwareFallback")   # no spidev here: bit-banged, as wanted
def test_apa102_leds_show_a_steady_colour_per_state_over_spi(monkeypatch):
    from gpiozero import Device
    factory = MockFactory()
    # gpiozero 2.0.1's software SPI bus asks for the default factory besides the one it is given
    monkeypatch.setattr(Device, "pin_factory", factory)
    strip = Apa102Strip(factory, 3)
    driver = build_driver(LightConfig(kind="apa102", count=3, brightness=0.5), factory)
    for state in (LISTENING, THINKING, SPEAKING, ERROR, NO_KEY, MUTED):
        driver.show(state)
        want = tuple(round(255 * c * 0.5) for c in RgbLedDriver.COLOURS[state])
        assert strip.leds() == [(31, *want)] * 3, state
    driver.show(IDLE)
    assert strip.leds() == [(31, 0, 0, 0)] * 3
    driver.show(LISTENING)
    driver.close()                                   # let go dark: APA102s keep their colour otherwise
    assert strip.leds() == [(31, 0, 0, 0)] * 3


def test_apa102_config_and_its_errors():
    from pivoice.feedback_config import read_feedback
    from pivoice.settings import ConfigError, Section
    cfg = read_feedback(Section({"light": {"kind": "apa102", "count": 12, "spi_device": 1}}, "x.yaml", "feedback"))
    assert (cfg.light.count, cfg.light.spi_device) == (12, 1)
    with pytest.raises(ConfigError, match="feedback.light.spi_device"):
        read_feedback(Section({"light": {"kind": "apa102", "spi_device": 2}}, "x.yaml", "feedback"))
