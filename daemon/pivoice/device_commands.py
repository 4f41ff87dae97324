"""What may be done to a running device from outside: press, end, mute, volume (`pivoice ctl`, MQTT).

Press, end and mute become controller events (posted through the edges' `post`, so a press during
a reload waits in the switchboard); volume goes to the shared `Volume` at once (it is software
gain in the downlink, no controller state) and tells the listeners (MQTT republishes its state).

Thread: any (control-socket clients, the MQTT thread); `post` only enqueues, `Volume` is one
assignment, listeners must only enqueue.
"""

from __future__ import annotations

import logging
from typing import Callable

from pivoice import messages as m

log = logging.getLogger(__name__)


class DeviceCommands:
    def __init__(self, post: Callable[[object], None], volume) -> None:
        self._post = post
        self._volume = volume
        self._volume_listeners: tuple[Callable[[], None], ...] = ()

    def add_volume_listener(self, listener: Callable[[], None]) -> None:
        self._volume_listeners = (*self._volume_listeners, listener)

    def press(self, source: str) -> None:
        self._post(m.Press(source))

    def end(self, source: str) -> None:
        self._post(m.EndRequest(source))

    def set_mute(self, muted: bool, source: str) -> None:
        log.info("%s: %s", source, "mute" if muted else "unmute")
        self._post(m.SetMute(muted, source))

    def volume_percent(self) -> int | None:
        return self._volume.volume_percent() if self._volume is not None else None

    def set_volume(self, percent: int, source: str) -> int:
        """ValueError (naming the range) for anything but an integer 0..100."""
        if self._volume is None:
            raise ValueError("this daemon has no output volume control")
        self._volume.set_volume_percent(percent)
        log.info("%s: volume %d %%", source, percent)
        for listener in self._volume_listeners:
            listener()
        return percent


def control_commands(commands: DeviceCommands) -> tuple[dict, dict]:
    """The control socket's handlers for these commands: (no-value commands, value commands).
    A value handler gets the request's "value" (None if absent) and returns the reply's extra keys."""
    def volume(value) -> dict:
        if value is not None:
            commands.set_volume(value, "ctl")   # ValueError for a non-integer or out of range
        return {"volume": commands.volume_percent()}

    def mute(value) -> dict:
        if isinstance(value, bool):
            muted = value
        elif isinstance(value, str) and value in ("on", "off"):
            muted = value == "on"
        else:
            raise ValueError(f"value must be \"on\" or \"off\", got {value!r}")
        commands.set_mute(muted, "ctl")
        return {"muted": muted}

    return {"end": lambda: commands.end("ctl")}, {"volume": volume, "mute": mute}
