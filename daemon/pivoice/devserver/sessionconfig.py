"""The effective GA session config: defaults, `session.update` merging and semantic checks.

The config is a plain dict in the wire shape of `session.created` (reference §1.1
example) so it can be sent as is. Pure functions.
"""

from __future__ import annotations

import copy

DEFAULT_MODEL = "gpt-realtime"
DEFAULT_INSTRUCTIONS = "You are the pivoice dev server, a local stand-in for the Realtime API."
SERVER_VAD_DEFAULTS = {"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300,
                       "silence_duration_ms": 200, "idle_timeout_ms": None,
                       "create_response": True, "interrupt_response": True}
SEMANTIC_VAD_DEFAULTS = {"type": "semantic_vad", "eagerness": "auto", "create_response": True,
                         "interrupt_response": True}
PCM_FORMAT = {"type": "audio/pcm", "rate": 24000}


class ConfigRejected(ValueError):
    """A semantically invalid update: `param` names the field, `code` the error code."""

    def __init__(self, message: str, param: str, code: str = "invalid_value") -> None:
        super().__init__(message)
        self.param = param
        self.code = code


def default_session(model: str | None = None) -> dict:
    return {
        "type": "realtime", "model": model or DEFAULT_MODEL, "output_modalities": ["audio"],
        "instructions": DEFAULT_INSTRUCTIONS, "tools": [], "tool_choice": "auto", "max_output_tokens": "inf",
        "tracing": None, "truncation": "auto", "prompt": None, "include": None,
        "audio": {
            "input": {"format": dict(PCM_FORMAT), "transcription": None, "noise_reduction": None,
                      "turn_detection": dict(SERVER_VAD_DEFAULTS)},
            "output": {"format": dict(PCM_FORMAT), "voice": "alloy", "speed": 1.0},
        },
    }


def _format(fmt: dict) -> dict:
    return dict(PCM_FORMAT) if fmt.get("type", "audio/pcm") == "audio/pcm" else {"type": fmt["type"]}


def _turn_detection(current: dict | None, update: dict) -> dict:
    defaults = SERVER_VAD_DEFAULTS if update.get("type") == "server_vad" else SEMANTIC_VAD_DEFAULTS
    base = current if current and current.get("type") == update.get("type") else defaults
    return {**base, **update}


def merge(current: dict, update: dict, audio_was_output: bool) -> dict:
    """Apply a validated `session.update.session` to `current`; only present keys change.

    `audio_was_output`: whether the model has produced audio in this session (the voice is then fixed).
    """
    if current.get("type") == "transcription":
        from . import transcription  # late import: transcription builds on this module
        return transcription.merge(current, update)
    check(update)
    new = copy.deepcopy(current)
    if update.get("model") not in (None, current["model"]):
        raise ConfigRejected(f"Cannot change the session model from {current['model']!r} to "
                             f"{update['model']!r} once the session has started.", "session.model")
    for key, value in update.items():
        if key not in ("audio", "type", "model"):
            new[key] = copy.deepcopy(value)
    audio = update.get("audio") or {}
    inp, out = audio.get("input") or {}, audio.get("output") or {}
    new_in, new_out = new["audio"]["input"], new["audio"]["output"]
    for key in ("transcription", "noise_reduction"):
        if key in inp:
            new_in[key] = copy.deepcopy(inp[key])  # null switches it off
    if "turn_detection" in inp:
        td = inp["turn_detection"]
        new_in["turn_detection"] = None if td is None else _turn_detection(new_in["turn_detection"], td)
    if inp.get("format") is not None:
        new_in["format"] = _format(inp["format"])
    if out.get("format") is not None:
        new_out["format"] = _format(out["format"])
    if out.get("speed") is not None:
        new_out["speed"] = out["speed"]
    if out.get("voice") is not None and out["voice"] != new_out["voice"]:
        if audio_was_output:
            raise ConfigRejected("Cannot update a conversation's voice if assistant audio is present.",
                                 "session.audio.output.voice", "cannot_update_voice")
        new_out["voice"] = out["voice"]
    return new


def check(session: dict) -> None:
    """Value rules the SDK types do not encode."""
    modalities = session.get("output_modalities")
    if modalities is not None and len(modalities) != 1:
        raise ConfigRejected("output_modalities must be ['audio'] or ['text']; both at once are not supported.",
                             "session.output_modalities")
    tokens = session.get("max_output_tokens")
    if isinstance(tokens, int) and not 1 <= tokens <= 4096:
        raise ConfigRejected(f"max_output_tokens must be 1..4096 or 'inf', got {tokens}.", "session.max_output_tokens")
    audio = session.get("audio") or {}
    speed = (audio.get("output") or {}).get("speed")
    if speed is not None and not 0.25 <= speed <= 1.5:
        raise ConfigRejected(f"speed must be between 0.25 and 1.5, got {speed}.", "session.audio.output.speed")
    td = (audio.get("input") or {}).get("turn_detection") or {}
    threshold = td.get("threshold")
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise ConfigRejected(f"threshold must be between 0.0 and 1.0, got {threshold}.",
                             "session.audio.input.turn_detection.threshold")
    for key in ("prefix_padding_ms", "silence_duration_ms", "idle_timeout_ms"):
        if td.get(key) is not None and td[key] < 0:
            raise ConfigRejected(f"{key} must not be negative.", f"session.audio.input.turn_detection.{key}")


def from_request(request: dict | None, model: str | None = None) -> dict:
    """Effective config for a client_secrets `session` (already SDK-validated) over the defaults."""
    request = request or {"type": "realtime"}
    base = default_session(request.get("model") or model)
    return merge(base, {k: v for k, v in request.items() if k != "model"}, audio_was_output=False)


def wire_session(config: dict, session_id: str, expires_at_s: int) -> dict:
    """The config as sent in session.created/updated and in a client_secrets response."""
    if config.get("type") == "transcription":
        from . import transcription
        return transcription.wire_session(config, session_id, expires_at_s)
    session = copy.deepcopy(config)
    voice = session["audio"]["output"]["voice"]
    if isinstance(voice, dict):
        # the response model only has a string voice; custom voices are referred to by id
        session["audio"]["output"]["voice"] = voice.get("id")
    return {"type": "realtime", "object": "realtime.session", "id": session_id, **session, "expires_at": expires_at_s}


def for_socket(secret_session: dict | None, query_model: str | None, intent: str | None) -> dict:
    """A new socket's starting config: the secret's session, or the defaults for `?intent=` (reference §1.3).

    `?intent=` names the session type and wins over the secret's type; ConfigRejected for other values.
    """
    from . import transcription
    if intent not in (None, "realtime", "transcription"):
        raise ConfigRejected(f"Invalid value for 'intent': {intent!r}; expected 'realtime' or 'transcription'.",
                             "intent")
    secret_type = secret_session["type"] if secret_session else None
    if (intent or secret_type) == "transcription":
        return copy.deepcopy(secret_session) if secret_type == "transcription" else transcription.default_session()
    secret_session = secret_session if secret_type == "realtime" else None
    model = query_model or (secret_session["model"] if secret_session else None)
    config = copy.deepcopy(secret_session) if secret_session else default_session(model)
    config["model"] = model or config["model"]
    return config


def input_format(config: dict) -> str:
    return config["audio"]["input"]["format"]["type"]


def output_format(config: dict) -> str:
    return config["audio"]["output"]["format"]["type"]
