"""The `session:` config block: the API's GA realtime session object, checked key by key.

We validate it ourselves rather than with the `openai` SDK types because the SDK
(and pydantic) are far too heavy for a Pi; a test checks that what we accept
also validates strictly against the SDK's `RealtimeSessionCreateRequest`.
Defaults fill in what a voice device needs (PCM both ways, far-field noise
reduction, server VAD) so a minimal config works. A block in the older beta shape
is moved to this one first (`session_beta.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pivoice.audio import codec
from pivoice.settings import Section

VOICES = ("alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar")
# semantic_vad eagerness -> the longest the server waits before closing a turn (API docs: 8/4/2 s; auto = medium)
SEMANTIC_MAX_WAIT_MS = {"low": 8000, "medium": 4000, "high": 2000, "auto": 4000}
# Keys we pass through unchanged: their shapes are the API's business, and the server reports errors in them.
PASSTHROUGH_KEYS = ("tools", "tool_choice", "truncation", "tracing", "include", "prompt", "reasoning",
                    "parallel_tool_calls")


# Keys of a realtime session that a transcription session does not have.
REALTIME_ONLY_KEYS = ("model", "instructions", "output_modalities", "max_output_tokens", "tools", "tool_choice",
                      "truncation", "tracing", "prompt", "reasoning", "parallel_tool_calls")


@dataclass(frozen=True)
class TurnDetection:
    type: str                     # server_vad | semantic_vad
    create_response: bool
    interrupt_response: bool
    prefix_padding_ms: int        # audio the server keeps before speech; the local pre-roll must cover it
    end_of_turn_ms: int           # the longest silence the server may wait before closing the turn


def _read_format(sec: Section, key: str) -> dict:
    fmt = sec.section(key)
    kind = fmt.str("type", codec.PCM, choices=codec.FORMATS)
    out: dict[str, Any] = {"type": kind}
    if kind == codec.PCM:
        out["rate"] = fmt.int("rate", 24000, choices=(24000,))
    fmt.done()
    return out


def _read_turn_detection(sec: Section, payload: dict) -> TurnDetection | None:
    if sec.has("turn_detection") and sec.raw("turn_detection") is None:
        payload["turn_detection"] = None
        return None
    td = sec.section("turn_detection")
    kind = td.str("type", "server_vad", choices=("server_vad", "semantic_vad"))
    out: dict[str, Any] = {"type": kind}
    if kind == "server_vad":
        out["threshold"] = td.float("threshold", 0.5, min=0.0, max=1.0)
        out["prefix_padding_ms"] = td.int("prefix_padding_ms", 300, min=0, max=5000)
        out["silence_duration_ms"] = td.int("silence_duration_ms", 500, min=0, max=10000)
        idle = td.int("idle_timeout_ms", None, nullable=True, min=5000, max=30000)
        if idle is not None:
            out["idle_timeout_ms"] = idle
        end_ms, prefix_ms = out["silence_duration_ms"], out["prefix_padding_ms"]
    else:
        out["eagerness"] = td.str("eagerness", "auto", choices=tuple(SEMANTIC_MAX_WAIT_MS))
        end_ms, prefix_ms = SEMANTIC_MAX_WAIT_MS[out["eagerness"]], 300
    out["create_response"] = td.bool("create_response", True)
    out["interrupt_response"] = td.bool("interrupt_response", True)
    td.done()
    payload["turn_detection"] = out
    return TurnDetection(kind, out["create_response"], out["interrupt_response"], prefix_ms, end_ms)


def _read_nullable_block(sec: Section, key: str, default: dict | None, reader) -> Any:
    if sec.has(key) and sec.raw(key) is None:
        return None
    if not sec.has(key):
        sec.raw(key, None)
        return default
    block = sec.section(key)
    value = reader(block)
    block.done()
    return value


def _read_noise_reduction(block: Section) -> dict:
    out: dict[str, Any] = {"type": block.str("type", "far_field", choices=("near_field", "far_field"))}
    return out


def _read_transcription(block: Section) -> dict:
    out: dict[str, Any] = {"model": block.str("model", "gpt-4o-mini-transcribe")}
    for key in ("language", "prompt"):
        value = block.str(key, None, nullable=True)
        if value is not None:
            out[key] = value
    return out


def read_transcription_session(sec: Section) -> tuple[dict, TurnDetection | None]:
    """`type: transcription` (dictation): audio in, transcripts out, no model replies. The GA
    `RealtimeTranscriptionSessionCreateRequest`: only `audio.input` and `include`."""
    payload: dict[str, Any] = {"type": "transcription"}
    for key in REALTIME_ONLY_KEYS:
        if sec.has(key):
            raise sec.error(key, "not part of a transcription session (it only transcribes: no model replies)")
    audio = sec.section("audio")
    if audio.has("output"):
        raise audio.error("output", "a transcription session has no audio output (it only transcribes)")
    inp = audio.section("input")
    audio_in: dict[str, Any] = {"format": _read_format(inp, "format")}
    audio_in["noise_reduction"] = _read_nullable_block(inp, "noise_reduction", {"type": "far_field"},
                                                       _read_noise_reduction)
    if inp.has("transcription") and inp.raw("transcription") is None:
        raise inp.error("transcription", "a transcription session needs a transcription model")
    block = inp.section("transcription")
    audio_in["transcription"] = _read_transcription(block)
    block.done()
    td = _read_turn_detection(inp, audio_in)
    inp.done()
    audio.done()
    payload["audio"] = {"input": audio_in}
    include = sec.str_list("include", [])
    if include:
        if set(include) - {"item.input_audio_transcription.logprobs"}:
            raise sec.error("include", "may only hold item.input_audio_transcription.logprobs")
        payload["include"] = list(include)
    sec.done()
    return payload, td


def read_session(sec: Section) -> tuple[dict, TurnDetection | None]:
    """Return the session payload for `session.update` and the turn-detection facts the daemon needs."""
    if sec.raw("type", "realtime") == "transcription":
        return read_transcription_session(sec)
    payload: dict[str, Any] = {
        "type": sec.str("type", "realtime", choices=("realtime", "transcription")),
        "model": sec.str("model", "gpt-realtime"),
    }
    # Unset, the token backend's policy (or the API default) decides; a fleet pins them there.
    instructions = sec.str("instructions", None, nullable=True, non_empty=False)
    if instructions is not None:
        payload["instructions"] = instructions
    modalities = sec.str_list("output_modalities", ["audio"])
    if list(modalities) not in (["audio"], ["text"]):
        raise sec.error("output_modalities", "must be [audio] or [text] (the API does not allow both)")
    payload["output_modalities"] = list(modalities)
    max_tokens = sec.raw("max_output_tokens", None)
    if max_tokens is not None:
        if max_tokens != "inf" and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int)
                                    or not 1 <= max_tokens <= 4096):
            raise sec.error("max_output_tokens", f"must be an integer 1..4096 or \"inf\"; got {max_tokens!r}")
        payload["max_output_tokens"] = max_tokens

    audio = sec.section("audio")
    inp = audio.section("input")
    audio_in: dict[str, Any] = {"format": _read_format(inp, "format")}
    audio_in["noise_reduction"] = _read_nullable_block(inp, "noise_reduction", {"type": "far_field"},
                                                       _read_noise_reduction)
    # Always explicit: null turns transcription off even if the key's session had it on.
    audio_in["transcription"] = _read_nullable_block(inp, "transcription", None, _read_transcription)
    td = _read_turn_detection(inp, audio_in)
    inp.done()

    out = audio.section("output")
    audio_out: dict[str, Any] = {"format": _read_format(out, "format")}
    voice = out.raw("voice", "marin")
    if isinstance(voice, dict):
        voice_sec = out.section("voice")
        voice = {"id": voice_sec.str("id")}
        voice_sec.done()
    elif not isinstance(voice, str) or voice not in VOICES:
        raise out.error("voice", f"must be one of {', '.join(VOICES)} or {{id: voice_...}}; got {voice!r}")
    audio_out["voice"] = voice
    audio_out["speed"] = out.float("speed", 1.0, min=0.25, max=1.5)
    out.done()
    audio.done()
    payload["audio"] = {"input": audio_in, "output": audio_out}

    for key in PASSTHROUGH_KEYS:
        if sec.has(key):
            payload[key] = sec.raw(key)
    sec.done()
    return payload, td
