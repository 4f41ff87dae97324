"""The older (beta) session shape in the `session:` block, mapped to the GA shape before validation.

Configs written for the beta Realtime interface have flat keys (`voice`, `turn_detection`,
`input_audio_format: pcm16`, ...). We accept them so such a config keeps working, move each one to its GA
place, and then validate the GA shape with `session_schema.read_session` as for any other config; an
error inside a moved value is reported under the key the user wrote. Beta keys with no GA field are
refused with the reason. Sources: seed 000 (the beta session object) and realtime-protocol.md §2.

Main thread, at config load only.
"""

from __future__ import annotations

import logging
from typing import Any

from pivoice.audio import codec
from pivoice.session_schema import TurnDetection, read_session
from pivoice.settings import ConfigError, Section

log = logging.getLogger(__name__)

# beta key -> its GA path inside the session object (dotted)
BETA_TO_GA = {
    "modalities": "output_modalities",
    "input_audio_format": "audio.input.format",
    "output_audio_format": "audio.output.format",
    "voice": "audio.output.voice",
    "speed": "audio.output.speed",
    "input_audio_transcription": "audio.input.transcription",
    "input_audio_noise_reduction": "audio.input.noise_reduction",
    "turn_detection": "audio.input.turn_detection",
    "max_response_output_tokens": "max_output_tokens",
}
# Beta keys with no GA field: refused, never dropped, so nobody believes a setting is in effect.
REFUSED = {
    "temperature": "removed in the GA API: the model's sampling is not configurable; delete the key",
    "client_secret": "not part of the GA session: the key's lifetime is set by the token backend when it mints "
                     "the key (GA client_secrets expires_after); delete the key",
    "id": "the session id is assigned by the server (it arrives in session.created); delete the key",
}
# Same name and shape in both: left where they are.
SAME_IN_BOTH = ("model", "instructions", "tools", "tool_choice", "tracing")

_BETA_FORMATS = {
    "pcm16": {"type": codec.PCM, "rate": 24000},
    "g711_ulaw": {"type": codec.PCMU},
    "g711_alaw": {"type": codec.PCMA},
}
# The beta turn_detection was one flat object; GA splits it by type, so these no longer mix.
_VAD_ONLY_KEYS = {"server_vad": ("eagerness",),
                  "semantic_vad": ("threshold", "prefix_padding_ms", "silence_duration_ms", "idle_timeout_ms")}


def _has_path(raw: dict, dotted: str) -> bool:
    node: Any = raw
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            return False
        node = node[key]
    return True


def _put(ga: dict, dotted: str, value: Any, file: str, path: str) -> None:
    """Set `value` at `dotted`, copying each mapping on the way so the caller's data is not changed."""
    *parents, last = dotted.split(".")
    node, where = ga, path
    for key in parents:
        where = f"{where}.{key}"
        child = node.get(key)
        Section(child, file, where)   # a non-mapping here is the user's error, reported at its GA path
        node[key] = child = dict(child or {})
        node = child
    node[last] = value


def _modalities(value: Any, file: str, where: str) -> list[str]:
    if (not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value)
            or not set(value) <= {"audio", "text"}):
        raise ConfigError(file, where, f"must be [audio, text] or [text]; got {value!r}")
    # GA audio output always carries its transcript, so beta's [audio, text] is GA's [audio].
    return ["audio"] if "audio" in value else ["text"]


def _audio_format(value: Any, file: str, where: str) -> dict:
    if not isinstance(value, str) or value not in _BETA_FORMATS:
        raise ConfigError(file, where, f"must be one of {', '.join(_BETA_FORMATS)}; got {value!r} "
                                       "(or write the GA form under audio.input/output.format)")
    return dict(_BETA_FORMATS[value])


def _check_turn_detection(value: Any, file: str, where: str) -> None:
    if not isinstance(value, dict):
        return   # null means manual turns; anything else the GA validator reports
    kind = value.get("type", "server_vad")
    for key in _VAD_ONLY_KEYS.get(kind, ()):
        if key in value:
            raise ConfigError(file, f"{where}.{key}", f"not allowed with type {kind} in the GA API (the beta "
                                                      "object took every field with either type); delete the key "
                                                      "or change the type")


def map_beta(raw: Any, file: str, path: str = "session") -> tuple[dict, list[tuple[str, str]]]:
    """Return the GA-shaped session mapping and the (beta key, GA path) pairs moved, in file order.

    Refused keys, bad beta values and a beta key given with its GA twin raise ConfigError."""
    if raw is None:
        raw = {}
    Section(raw, file, path)   # not a mapping: the same error as for any section
    for key in raw:
        if key in REFUSED:
            raise ConfigError(file, f"{path}.{key}", REFUSED[key])
    ga = dict(raw)
    mapped: list[tuple[str, str]] = []
    for key, value in raw.items():
        target = BETA_TO_GA.get(key)
        if target is None:
            continue
        where = f"{path}.{key}"
        if _has_path(raw, target):
            raise ConfigError(file, where, f"given together with its GA twin {path}.{target}; keep one "
                                           "(the GA key)")
        if key == "modalities":
            value = _modalities(value, file, where)
        elif key in ("input_audio_format", "output_audio_format"):
            value = _audio_format(value, file, where)
        elif key == "turn_detection":
            _check_turn_detection(value, file, where)
        del ga[key]
        _put(ga, target, value, file, path)
        mapped.append((key, target))
    return ga, mapped


def _as_written(exc: ConfigError, mapped: list[tuple[str, str]], path: str) -> ConfigError:
    """The same error, under the beta key the user wrote if it lies inside a moved value."""
    for beta_key, target in mapped:
        ga_path = f"{path}.{target}"
        if exc.key_path == ga_path or exc.key_path.startswith(ga_path + "."):
            return ConfigError(exc.file, f"{path}.{beta_key}" + exc.key_path[len(ga_path):], exc.reason)
    return exc


def read_any_session(raw: Any, file: str, path: str = "session"
                     ) -> tuple[dict, TurnDetection | None, tuple[tuple[str, str], ...]]:
    """`read_session` for a GA- or beta-shaped block: the payload, turn detection and the keys moved."""
    ga, mapped = map_beta(raw, file, path)
    try:
        payload, td = read_session(Section(ga, file, path))
    except ConfigError as exc:
        raise _as_written(exc, mapped, path) from None
    if mapped:
        log.warning("%s: beta-shaped keys mapped to the GA session: %s", path,
                    ", ".join(f"{beta} -> {target}" for beta, target in mapped))
    return payload, td, tuple(mapped)
