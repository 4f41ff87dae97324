"""The policy's `transcription:` section: what a device may ask for in a transcription (dictation) session.

null (the default) means the device may not mint transcription sessions. A mapping pins
`audio.input.transcription.model` (and `language` when set; null leaves it to the service and
out of the device's reach unless listed in `allowed_overrides`), extra pinned fields in
`session`, and the paths a device may set itself. Paths that would reach the pinned type,
model or language are refused when the config is read.

Pure functions and frozen data: called from any worker's request handling and from the CLI.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from pivoice.settings import ConfigError, Section

DEFAULT_TRANSCRIPTION_OVERRIDES = ("audio.input.format", "audio.input.noise_reduction", "audio.input.turn_detection",
                                   "audio.input.transcription.prompt", "include")
MODEL_PATH = ("audio", "input", "transcription", "model")
LANGUAGE_PATH = ("audio", "input", "transcription", "language")
_BUILTIN = {"model": "gpt-4o-mini-transcribe", "language": None, "session": {},
            "allowed_overrides": list(DEFAULT_TRANSCRIPTION_OVERRIDES)}


@dataclass(frozen=True)
class TranscriptionPolicy:
    model: str
    language: str | None
    session: dict
    allowed_overrides: tuple[str, ...]

    def as_dict(self) -> dict:
        return {"model": self.model, "language": self.language, "session": copy.deepcopy(self.session),
                "allowed_overrides": list(self.allowed_overrides)}


def override_paths(sec: Section, default: Any) -> tuple[str, ...]:
    """`sec.allowed_overrides`: dotted session paths; ConfigError names the bad entry."""
    allowed = sec.str_list("allowed_overrides", default)
    for i, path in enumerate(allowed):
        if not path or any(not part for part in path.split(".")):
            raise ConfigError(sec.file, f"{sec.key_path('allowed_overrides')}[{i}]",
                              f"must be a dotted session path like audio.output.voice, got {path!r}")
    return allowed


def _has(tree: Any, path: tuple[str, ...]) -> bool:
    for part in path:
        if not isinstance(tree, dict) or part not in tree:
            return False
        tree = tree[part]
    return True


def parse_transcription_policy(sec: Section, default: dict | None) -> TranscriptionPolicy | None:
    """`<policy>.transcription` of `sec`: None, or its keys defaulting to `default` (else the built-ins)."""
    raw = sec.raw("transcription", default)
    if raw is None:
        return None
    sub = Section(raw, sec.file, sec.key_path("transcription"))
    d = default or _BUILTIN
    model = sub.str("model", d["model"])
    language = sub.str("language", d["language"], nullable=True)
    session = sub.raw("session", d["session"])
    if not isinstance(session, dict):
        raise sub.error("session", "must be a mapping of extra pinned transcription session fields")
    for path, hint in [(("type",), "is always transcription"), (MODEL_PATH, "use model"),
                       (LANGUAGE_PATH, "use language")]:
        if _has(session, path):
            raise ConfigError(sec.file, f"{sub.key_path('session')}.{'.'.join(path)}", f"not allowed here: {hint}")
    allowed = override_paths(sub, d["allowed_overrides"])
    pinned = [("type",), MODEL_PATH] + ([LANGUAGE_PATH] if language else [])
    for i, path in enumerate(allowed):
        parts = tuple(path.split("."))
        for leaf in pinned:
            if leaf[:len(parts)] == parts:
                raise ConfigError(sec.file, f"{sub.key_path('allowed_overrides')}[{i}]",
                                  f"{path} would let a device change the pinned {'.'.join(leaf)}; "
                                  "list narrower paths such as audio.input.transcription.prompt")
    sub.done()
    return TranscriptionPolicy(model, language, copy.deepcopy(session), allowed)


def pinned_transcription_session(tp: TranscriptionPolicy) -> dict:
    """The base a device's transcription request is merged onto."""
    session = copy.deepcopy(tp.session)
    session["type"] = "transcription"
    audio = session["audio"] if isinstance(session.get("audio"), dict) else {}
    inp = audio["input"] if isinstance(audio.get("input"), dict) else {}
    current = inp["transcription"] if isinstance(inp.get("transcription"), dict) else {}
    inp["transcription"] = {**current, "model": tp.model, **({"language": tp.language} if tp.language else {})}
    audio["input"] = inp
    session["audio"] = audio
    return session
