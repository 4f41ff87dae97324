"""MQTT command topics to device commands: press, end, mute ON/OFF, volume 0..100.

A payload that makes no sense is logged with its topic and an excerpt and otherwise ignored:
whatever arrives on the broker never reaches the controller as anything but a well-formed event.

Thread: the MQTT thread (paho's on_message).
"""

from __future__ import annotations

import logging
import math

from pivoice.device_commands import DeviceCommands
from pivoice.mqtt.discovery import Topics

log = logging.getLogger(__name__)
SOURCE = "mqtt"
EXCERPT_CHARS = 40
MAX_PAYLOAD_BYTES = 256


def excerpt(payload: bytes) -> str:
    text = payload[:EXCERPT_CHARS * 4].decode("utf-8", "replace")
    return repr(text[:EXCERPT_CHARS] + ("…" if len(text) > EXCERPT_CHARS or len(payload) > EXCERPT_CHARS * 4 else ""))


def parse_switch(text: str) -> bool | None:
    word = text.strip().upper()
    return True if word in ("ON", "TRUE", "1") else False if word in ("OFF", "FALSE", "0") else None


def parse_volume(text: str) -> int | None:
    """Home Assistant's number sends "40" or "40.0"; anything else, or outside 0..100, is None."""
    try:
        value = float(text.strip())
    except ValueError:
        return None
    if not math.isfinite(value) or value != round(value) or not 0 <= value <= 100:
        return None
    return int(value)


class CommandHandler:
    def __init__(self, topics: Topics, commands: DeviceCommands) -> None:
        self._t = topics
        self._commands = commands
        self.rejected = 0

    def handle(self, topic: str, payload: bytes) -> bool:
        """Act on one message; False (and a WARNING) if it was refused."""
        problem = self._act(topic, payload)
        if problem is None:
            return True
        self.rejected += 1
        log.warning("mqtt: %s: payload %s refused: %s", topic, excerpt(payload), problem)
        return False

    def _act(self, topic: str, payload: bytes) -> str | None:
        if len(payload) > MAX_PAYLOAD_BYTES:
            return f"longer than {MAX_PAYLOAD_BYTES} bytes"
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError:
            return "not UTF-8 text"
        if topic == self._t.press:
            self._commands.press(SOURCE)
        elif topic == self._t.end:
            self._commands.end(SOURCE)
        elif topic == self._t.mute:
            muted = parse_switch(text)
            if muted is None:
                return "send ON or OFF"
            self._commands.set_mute(muted, SOURCE)
        elif topic == self._t.volume:
            percent = parse_volume(text)
            if percent is None:
                return "send a whole number 0..100"
            try:
                self._commands.set_volume(percent, SOURCE)
            except ValueError as exc:
                return str(exc)
        else:
            return "not a command topic of this device"
        return None
