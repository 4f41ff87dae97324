"""How a conversation ends: a short code, the sentence for the log, and its level.

One rule for levels, so `journalctl -p warning` shows every end the user did not
ask for: the user's own press, the idle timeout, the configured maximum length
and a daemon stop are INFO; a server or network fault is WARNING; what needs an
operator is ERROR (a token failure `errors.needs_operator` names, no audio
device, a refused handshake, a protocol/policy close). `ctl status` shows the
last code and reason.

Pure functions; the controller thread calls them.
"""

from __future__ import annotations

from dataclasses import dataclass

from pivoice.realtime.events import close_name

# codes (stable, for scripts and `ctl status`)
USER = "user"
IDLE = "idle"
MAX_DURATION = "max_duration"
SHUTDOWN = "shutdown"
SERVER_CLOSED = "server_closed"
LINK_LOST = "link_lost"
STALLED = "stalled"
NOT_ACKNOWLEDGED = "not_acknowledged"
CONNECT_FAILED = "connect_failed"
CONNECT_TIMEOUT = "connect_timeout"
TOKEN_FAILED = "token_failed"
AUDIO_FAILED = "audio_failed"
MUTED = "muted"   # the device was muted (ctl, MQTT) under a conversation
# Ends that are no fault: all others count as abnormal (status light, MQTT, the fleet heartbeat).
# "timer" is controller_timers.TIMER (an announcement session's end), named here to avoid a cycle.
NORMAL = frozenset({USER, IDLE, MAX_DURATION, SHUTDOWN, "timer"})

INFO, WARNING, ERROR = "info", "warning", "error"

# Close codes that mean the daemon or its configuration is wrong (RFC 6455 protocol/policy/size
# errors and the application range, where the API puts e.g. 4000 for a retired interface): retrying
# as is will not help, so they go to ERROR.
_OPERATOR_CLOSES = {1002, 1003, 1007, 1008, 1009, 1010}


@dataclass(frozen=True)
class End:
    code: str
    reason: str
    level: str = INFO

    def but(self, suffix: str, level: str | None = None) -> End:
        """The same end with more said, at `level` if that is more severe."""
        return End(self.code, self.reason + suffix, _worse(self.level, level or self.level))

    def cut_off(self, received_ms: float) -> End:
        """The close came before the whole reply arrived."""
        return End(self.code, f"reply cut off after {received_ms:.0f} ms of audio: {self.reason}",
                   _worse(self.level, WARNING))


def _worse(a: str, b: str) -> str:
    order = (INFO, WARNING, ERROR)
    return max(a, b, key=order.index)


def server_closed(code: int | None, reason: str) -> End:
    """The socket of an open session went away: with a close frame (the server ended it) or without."""
    if code is None:
        return End(LINK_LOST, f"connection to the server lost: {reason or 'no reason given'}", WARNING)
    text = f"server closed the session ({close_name(code)})" + (f": {reason}" if reason else "")
    operator = code in _OPERATOR_CLOSES or 4000 <= code <= 4999
    return End(SERVER_CLOSED, text, ERROR if operator else WARNING)


def connect_failed(reason: str) -> End:
    return End(CONNECT_FAILED, f"could not open the Realtime session: {reason}", ERROR)
