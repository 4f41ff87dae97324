"""The `button:` block: the primary button, its mode and long press, and an optional second button.

Modes (controller_buttons.py has the rules): `toggle` (a press starts, a press ends), `push_to_talk`
(hold to talk, the release ends the turn) and `one_shot` (one question, one answer). push_to_talk
needs manual turns: when the config leaves `session.audio.input.turn_detection` out, it becomes null
here; a config that sets it to a VAD is refused, naming both keys (the server would end turns
mid-hold and answer on its own).

Main thread, at start-up only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pivoice.session_schema import TurnDetection
from pivoice.settings import ConfigError, Section

TOGGLE, PUSH_TO_TALK, ONE_SHOT = "toggle", "push_to_talk", "one_shot"
MODES = (TOGGLE, PUSH_TO_TALK, ONE_SHOT)
CANCEL, VOLUME_UP, VOLUME_DOWN = "cancel", "volume_up", "volume_down"
SECOND_ACTIONS = (CANCEL, VOLUME_UP, VOLUME_DOWN)
TURN_DETECTION = "audio.input.turn_detection"


@dataclass(frozen=True)
class SecondButtonConfig:
    pin: str
    pull_up: bool = True
    bounce_time_s: float | None = 0.05
    action: str = CANCEL
    step: int = 10          # volume percent per press (volume_up / volume_down)


@dataclass(frozen=True)
class ButtonConfig:
    pin: str
    pull_up: bool
    bounce_time_s: float | None
    pin_factory: str | None
    mode: str = TOGGLE
    long_press_s: float | None = 1.0   # held this long: end the conversation (not in push_to_talk)
    second: SecondButtonConfig | None = None

    @property
    def hold_time_s(self) -> float | None:
        """The long press the GPIO button times: none in push_to_talk, where holding is talking."""
        return None if self.mode == PUSH_TO_TALK else self.long_press_s


def _pin(sec: Section, default: Any) -> str:
    pin = sec.raw("pin", default)
    if isinstance(pin, bool) or not isinstance(pin, (int, str)):
        raise sec.error("pin", "must be a BCM number (17) or a gpiozero pin name (\"GPIO17\", \"BOARD11\")")
    return str(pin)


def read_button(sec: Section) -> ButtonConfig:
    pin = _pin(sec, "GPIO17")
    button = ButtonConfig(
        pin=pin,
        pull_up=sec.bool("pull_up", True),
        bounce_time_s=sec.float("bounce_time_s", 0.05, nullable=True, min=0, max=1),
        pin_factory=sec.str("pin_factory", None, nullable=True),
        mode=sec.str("mode", TOGGLE, choices=MODES),
        long_press_s=sec.float("long_press_s", 1.0, nullable=True, min=0.2, max=10),
        second=_read_second(sec, pin),
    )
    sec.done()
    return button


def _read_second(parent: Section, primary_pin: str) -> SecondButtonConfig | None:
    if parent.raw("second", None) is None:
        return None
    sec = parent.section("second")
    pin = _pin(sec, None) if sec.has("pin") else sec.raw("pin")   # required: raw() names the key
    if pin == primary_pin:
        raise sec.error("pin", f"{pin} is already the button's pin (button.pin); the second button needs its own")
    second = SecondButtonConfig(
        pin=pin,
        pull_up=sec.bool("pull_up", True),
        bounce_time_s=sec.float("bounce_time_s", 0.05, nullable=True, min=0, max=1),
        action=sec.str("action", CANCEL, choices=SECOND_ACTIONS),
        step=sec.int("step", 10, min=1, max=100),
    )
    sec.done()
    return second


def fit_session(button: ButtonConfig, raw_session: Any, payload: dict, td: TurnDetection | None,
                beta_mapped: tuple[tuple[str, str], ...], file: str) -> tuple[dict, TurnDetection | None]:
    """The session for the button's mode: push_to_talk gets manual turns (see the module doc)."""
    if button.mode != PUSH_TO_TALK or td is None:
        return payload, td
    ga_input = ((raw_session or {}).get("audio") or {}).get("input") if isinstance(raw_session, dict) else None
    given = (isinstance(ga_input, dict) and "turn_detection" in ga_input) or \
        any(ga_path == TURN_DETECTION for _, ga_path in beta_mapped)
    if given:
        raise ConfigError(file, f"session.{TURN_DETECTION}",
                          f"must be null with button.mode push_to_talk (the release ends each turn and asks "
                          f"for the reply; a {td.type} would end turns mid-hold): set it to null or remove it")
    payload["audio"]["input"]["turn_detection"] = None
    return payload, None
