"""Events into and actions out of the controller state machine.

Events are built by edge threads (button, audio, WebSocket, token refresh) and
queued; actions are executed by the runtime on the controller thread. All are
small frozen dataclasses so controller tests can be written as tables.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


# ---- events ------------------------------------------------------------------

@dataclass(frozen=True)
class Press:
    source: str = "button"


@dataclass(frozen=True)
class Release:
    source: str = "button"


@dataclass(frozen=True)
class EndRequest:
    """End the conversation whatever it is doing: a long press, the MQTT end button, `ctl end`."""

    source: str = "button"


@dataclass(frozen=True)
class SetMute:
    """Mute (the device will not listen: presses are refused, a conversation in progress ends) or unmute."""

    muted: bool
    source: str = "ctl"


@dataclass(frozen=True)
class Tick:
    """Sent by the runtime a few times a second so timers can fire."""


@dataclass(frozen=True)
class TokenReady:
    key: Any = field(repr=False)   # tokens.EphemeralKey; never printed


@dataclass(frozen=True)
class TokenFailed:
    code: str
    message: str
    retryable: bool


@dataclass(frozen=True)
class SocketOpened:
    pass


@dataclass(frozen=True)
class SocketClosed:
    """The session socket is gone: `code` from the server's close frame, None when the link was lost
    (or never opened); `reason` says what happened. The last event a connection ever sends."""

    code: int | None
    reason: str


@dataclass(frozen=True)
class ServerEvent:
    """Any server event except audio deltas. Built by `realtime.events.FrameParser`: `data` holds the
    type and only the fields the daemon reads, each checked (absent/None, or of the right type)."""

    data: dict = field(repr=False)

    @property
    def type(self) -> str:
        return str(self.data.get("type", ""))


@dataclass(frozen=True)
class AudioDelta:
    response_id: str
    item_id: str
    content_index: int
    payload: bytes = field(repr=False)   # already base64-decoded, in the session's output format
    received_at_s: float = field(default=0.0, compare=False)   # monotonic, for latency figures


@dataclass(frozen=True)
class SpeechStarted:
    """The local gate heard speech start."""


@dataclass(frozen=True)
class SpeechEnded:
    """The local gate closed: speech ended and the trailing audio has been emitted."""

    voiced: bool = True   # False: the press opened the gate but nobody spoke


@dataclass(frozen=True)
class Chunk:
    """Wire-format audio ready for input_audio_buffer.append; stays on the mic thread (audio/sendpath.py)."""

    payload: bytes = field(repr=False)
    duration_ms: float


@dataclass(frozen=True)
class AudioFailed:
    """The mic or speaker could not be opened (`reason` names the device and what exists), or with
    `stopped` its stream died under a conversation (`reason`: "speaker stopped: ...", audio/ports.py)."""

    reason: str
    stopped: bool = False
    device: str = ""   # "mic" or "speaker" when `stopped`


@dataclass(frozen=True)
class PlaybackDrained:
    at_s: float = field(default=0.0, compare=False)   # monotonic, when the speaker's thread saw it


@dataclass(frozen=True)
class PlayedDelta:
    """A reply delta the socket's reader thread played itself along the playback route
    (audio/playpath.py): the controller only keeps count."""

    duration_ms: float
    at_s: float = field(default=0.0, compare=False)   # monotonic, when it reached the speaker's queue


@dataclass(frozen=True)
class PlaybackStopped:
    played_ms: int


@dataclass(frozen=True)
class Shutdown:
    pass


@dataclass(frozen=True)
class ToolDone:
    """A local function tool finished (tools/runner.py, on its worker thread): `output` is the JSON
    text for the model's `function_call_output`; `effect` asks the controller for something only it
    may do ("end_conversation")."""

    call_id: str
    name: str
    output: str = field(repr=False)
    ok: bool = True
    effect: str | None = None


@dataclass(frozen=True)
class TimerFired:
    """A timer the `set_timer` tool set has run out (its timer thread)."""

    timer_id: str
    label: str | None
    duration_s: float


# ---- actions -----------------------------------------------------------------

@dataclass(frozen=True)
class OpenAudio:
    speaker: bool = True   # False: text replies or dictation, nothing to play (a device may have no speaker)


@dataclass(frozen=True)
class CloseAudio:
    pass


@dataclass(frozen=True)
class RequestToken:
    pass


@dataclass(frozen=True)
class Connect:
    key: Any = field(repr=False)


@dataclass(frozen=True)
class Disconnect:
    reason: str


@dataclass(frozen=True)
class Send:
    event: dict


@dataclass(frozen=True)
class RoutePlayback:
    """Which response's further audio deltas the socket's reader thread may play itself (None: none;
    every delta comes to the controller). audio/playpath.py."""

    response_id: str | None


# The mic routes: keep while connecting, send to the session, or drop.
BUFFER, SEND, DROP = "buffer", "send", "drop"


@dataclass(frozen=True)
class RouteMic:
    """Where the mic thread sends its chunks from now on: BUFFER, SEND or DROP (audio/sendpath.py)."""

    route: str


@dataclass(frozen=True)
class BeginReply:
    pass


@dataclass(frozen=True)
class Play:
    payload: bytes = field(repr=False)


@dataclass(frozen=True)
class FinishReply:
    """All audio of the reply has arrived: let the resampler's held-back tail out to the speaker."""


@dataclass(frozen=True)
class StopPlayback:
    """Drop queued reply audio now; the runtime answers with PlaybackStopped(played_ms)."""


@dataclass(frozen=True)
class Earcon:
    """Play a short feedback sound (earcons.py): listening, thinking, ended, error. Not a reply:
    the controller does not count it as playing."""

    cue: str


@dataclass(frozen=True)
class RunTool:
    """Run a local function tool off the controller thread; it answers with ToolDone."""

    call_id: str
    name: str
    arguments: str = field(repr=False)   # the model's JSON text, checked against the tool's schema by the runner


@dataclass(frozen=True)
class CancelTools:
    call_ids: tuple[str, ...]


@dataclass(frozen=True)
class RecordText:
    """A transcript or a text reply for the log, `ctl status`, the JSONL file and the webhook."""

    kind: str   # "reply_text" | "user_transcript" | "dictation"
    text: str = field(repr=False)


@dataclass(frozen=True)
class Note:
    """A line for the log and the demo timeline; `kind` is a stable machine-readable tag."""

    kind: str
    text: str
    level: str = "info"
