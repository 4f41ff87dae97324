"""Transcription sessions (`session.type: "transcription"`, reference §1.1, §2, §4) in the dev server.

THERE IS NO ASR HERE. Every committed turn is "transcribed" as the fixed `--transcript` text, with
`{seconds}` replaced by the turn's length in seconds (e.g. `{seconds:.1f}`), so tests can tell
turns apart; a turn whose audio is pure digital silence (every sample within +-SILENCE_PEAK)
fails with `audio_unintelligible` instead, so clients can exercise the `.failed` path.

A transcription session never creates responses: a commit (manual or by VAD) adds the user
item, then, asynchronously like the real service, emits a few
`conversation.item.input_audio_transcription.delta` events and one `.completed` with `usage`
(tokens for the gpt-4o-* / gpt-transcribe models, duration for whisper-1, which also sends
its text as a single delta). Turns are transcribed in commit order.

Guesses, not confirmed against the live API: the error for `response.create` in a
transcription session (RESPONSE_CREATE_*), the default transcription model, and that only
the first `session.update` (before any audio or item) may switch the session type.

Config dicts have the wire shape of `session.created` without id/object/expires_at, like
sessionconfig's. Everything runs on the ASGI event loop.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import math
from typing import Callable

import numpy as np

from . import events, sessionconfig

log = logging.getLogger(__name__)

DEFAULT_TRANSCRIPT = "This is a transcript from the pivoice dev server."
DEFAULT_TRANSCRIPTION_MODEL = "gpt-4o-mini-transcribe"  # our guess at the service default
OBJECT = "realtime.transcription_session"
VAD_DEFAULTS = {"server_vad": {"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300,
                               "silence_duration_ms": 500},
                "semantic_vad": {"type": "semantic_vad", "eagerness": "auto"}}
# the client_secrets response's turn_detection object has only these keys (SDK type)
_SECRET_TD_KEYS = ("type", "threshold", "prefix_padding_ms", "silence_duration_ms")
LOGPROBS = "item.input_audio_transcription.logprobs"
RESPONSE_CREATE_CODE = "invalid_value"  # guessed; see module docstring
RESPONSE_CREATE_MESSAGE = ("Responses are not available in transcription sessions: a transcription session "
                           "only transcribes input audio (session.type is 'transcription').")
SILENCE_PEAK = 8  # |sample| <= this everywhere: no sound at all
DELTA_PIECES = 3
STEP_S = 0.02  # between transcription events: they arrive after the commit, not with it

def is_transcription(config: dict) -> bool:
    return config.get("type") == "transcription"


def default_session() -> dict:
    return {"type": "transcription", "include": None,
            "audio": {"input": {"format": dict(sessionconfig.PCM_FORMAT), "noise_reduction": None,
                                "transcription": {"model": DEFAULT_TRANSCRIPTION_MODEL},
                                "turn_detection": dict(VAD_DEFAULTS["server_vad"])}}}


def from_request(request: dict) -> dict:
    """Effective config for a client_secrets `session` (already SDK-validated) over the defaults."""
    return merge(default_session(), request)


def merge(current: dict, update: dict) -> dict:
    """Apply a validated transcription `session.update.session`; only present keys change."""
    sessionconfig.check(update)
    new = copy.deepcopy(current)
    if "include" in update:
        new["include"] = copy.deepcopy(update["include"])
    inp = (update.get("audio") or {}).get("input") or {}
    new_in = new["audio"]["input"]
    for key in ("transcription", "noise_reduction"):
        if key in inp:
            new_in[key] = copy.deepcopy(inp[key])  # null switches it off
    if "turn_detection" in inp:
        td = inp["turn_detection"]
        if td is None:
            new_in["turn_detection"] = None
        else:
            old = new_in["turn_detection"]
            base = old if old and old.get("type") == td["type"] else VAD_DEFAULTS[td["type"]]
            new_in["turn_detection"] = {**base, **td}
    fmt = inp.get("format")
    if fmt is not None:
        new_in["format"] = (dict(sessionconfig.PCM_FORMAT) if fmt.get("type", "audio/pcm") == "audio/pcm"
                            else {"type": fmt["type"]})
    return new


def switch_type(update: dict, started: bool, current_type: str) -> dict:
    """The config a not-yet-started session gets when a session.update names the other type."""
    if started:
        raise sessionconfig.ConfigRejected(
            f"The session type cannot be changed once the session has audio or items; this session is "
            f"'{current_type}'.", "session.type")
    if update.get("type") == "transcription":
        return from_request(update)
    return sessionconfig.from_request(update)


def session_started(session) -> bool:
    """Whether a RealtimeSession has seen audio, items or responses (its type is then fixed)."""
    return bool(session.buffer.total_ms or len(session.conversation) or session.active or session.out_of_band
                or session.responses)


def wire_session(config: dict, session_id: str, expires_at_s: int) -> dict:
    """The config as sent in session.created / session.updated."""
    return {"type": "transcription", "object": OBJECT, "id": session_id, **copy.deepcopy(config),
            "expires_at": expires_at_s}


def secret_session(config: dict, session_id: str) -> dict:
    """The `session` of a client_secrets response (RealtimeTranscriptionSessionCreateResponse shape)."""
    session = wire_session(config, session_id, 0)
    td = session["audio"]["input"]["turn_detection"]
    if td is not None:
        session["audio"]["input"]["turn_detection"] = {k: td[k] for k in _SECRET_TD_KEYS if k in td}
    return session


def model_of(config: dict) -> str:
    transcription = config["audio"]["input"]["transcription"]
    return (transcription or {}).get("model") or "no transcription model"


def transcript_for(template: str, heard_s: float) -> str:
    try:
        return template.format(seconds=heard_s)
    except (KeyError, IndexError, ValueError):
        return template  # a custom text without (or with odd) placeholders is used verbatim


def pieces(text: str, model: str) -> list[str]:
    """Delta texts whose concatenation is `text` (whisper-1 sends the whole text at once)."""
    words = text.split(" ")
    if model == "whisper-1" or len(words) < 2:
        return [text]
    size = math.ceil(len(words) / DELTA_PIECES)
    groups = [" ".join(words[i:i + size]) for i in range(0, len(words), size)]
    return [groups[0]] + [" " + g for g in groups[1:]]


def usage(model: str, heard_s: float, text: str) -> dict:
    if model == "whisper-1":
        return {"type": "duration", "seconds": round(heard_s, 3)}
    audio_tokens = max(1, round(heard_s * 10))  # rough, like the response usage estimates
    output_tokens = max(1, len(text) // 4)
    return {"type": "tokens", "input_tokens": audio_tokens, "output_tokens": output_tokens,
            "total_tokens": audio_tokens + output_tokens,
            "input_token_details": {"text_tokens": 0, "audio_tokens": audio_tokens}}


def _logprobs(piece: str) -> list[dict]:
    return [{"token": piece, "logprob": -0.01, "bytes": list(piece.encode())}]


def is_silent(pcm16: bytes) -> bool:
    samples = np.frombuffer(pcm16[:len(pcm16) // 2 * 2], dtype=np.int16)
    return samples.size == 0 or int(np.max(np.abs(samples.astype(np.int32)))) <= SILENCE_PEAK


class Transcriber:
    """Emits the transcription events of a transcription session's committed turns, in commit order."""

    def __init__(self, emit: Callable[[dict], None], template: str = DEFAULT_TRANSCRIPT,
                 step_s: float = STEP_S) -> None:
        self._emit, self._template, self._step_s = emit, template, step_s
        self._tail: asyncio.Task | None = None
        self._tasks: set[asyncio.Task] = set()

    def committed(self, config: dict, item: dict, pcm16: bytes, heard_s: float) -> None:
        """Called right after a user item was committed; realtime sessions are left alone."""
        if not is_transcription(config):
            return
        settings = config["audio"]["input"]["transcription"]
        if settings is None:
            log.info("transcription is off (audio.input.transcription is null): item %s is not transcribed",
                     item["id"])
            return
        logprobs = LOGPROBS in (config.get("include") or [])
        task = asyncio.get_running_loop().create_task(
            self._run(self._tail, item, settings.get("model") or DEFAULT_TRANSCRIPTION_MODEL, is_silent(pcm16),
                      heard_s, logprobs), name=f"devserver-transcribe-{item['id']}")
        self._tail = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, previous: asyncio.Task | None, item: dict, model: str, silent: bool, heard_s: float,
                   logprobs: bool) -> None:
        if previous is not None:
            await asyncio.gather(previous, return_exceptions=True)
        await asyncio.sleep(self._step_s)
        item_id = item["id"]
        if silent:
            self._emit(events.event("conversation.item.input_audio_transcription.failed", item_id=item_id,
                                    content_index=0, error={"type": "transcription_error",
                                                            "code": "audio_unintelligible",
                                                            "message": "The audio could not be transcribed.",
                                                            "param": None}))
            return
        text = transcript_for(self._template, heard_s)
        for piece in pieces(text, model):
            extra = {"logprobs": _logprobs(piece)} if logprobs else {}
            self._emit(events.event("conversation.item.input_audio_transcription.delta", item_id=item_id,
                                    content_index=0, delta=piece, **extra))
            await asyncio.sleep(self._step_s)
        item["content"][0]["transcript"] = text  # conversation.item.retrieve now shows it
        extra = {"logprobs": [p for piece in pieces(text, model) for p in _logprobs(piece)]} if logprobs else {}
        self._emit(events.event("conversation.item.input_audio_transcription.completed", item_id=item_id,
                                content_index=0, transcript=text, usage=usage(model, heard_s, text), **extra))

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
